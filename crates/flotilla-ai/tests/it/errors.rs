//! Start-up failures are typed errors that say what to do, never panics.

use flotilla_ai::error::INSTALL_HINT;
use flotilla_ai::{AiError, ClassList, Detector, Device, ModelKind, Runtime, check_model};

use crate::fixture::{installed, model};

#[test]
fn garbage_model_file_is_corrupt_model() {
    installed();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("yolo.onnx");
    std::fs::write(&path, b"this is not an ONNX protobuf \x00\x01\x02 at all").unwrap();
    let config = flotilla_ai::ModelConfig {
        path: path.clone(),
        ..model("objects")
    };
    let err = Detector::load(&config).unwrap_err();
    assert!(
        matches!(&err, AiError::CorruptModel { path: p, .. } if *p == path),
        "{err}"
    );
    assert!(err.to_string().contains("flotilla models install"), "{err}");
}

#[test]
fn missing_model_file_is_missing_model() {
    installed();
    let config = flotilla_ai::ModelConfig {
        path: "/nonexistent/yolo.onnx".into(),
        ..model("objects")
    };
    let err = Detector::load(&config).unwrap_err();
    assert!(
        matches!(&err, AiError::MissingModel { path } if path.ends_with("yolo.onnx")),
        "{err}"
    );
}

#[test]
fn wrong_class_count_is_wrong_shape() {
    let classes = model("objects").classes.resolve().unwrap();
    assert_eq!(classes.len(), 80);
    let config = flotilla_ai::ModelConfig {
        classes: ClassList::Inline(classes[..79].to_vec()),
        ..model("objects")
    };
    let err = Detector::load(&config).unwrap_err();
    match &err {
        AiError::WrongShape {
            model,
            what,
            expected,
            found,
        } => {
            assert_eq!((model.as_str(), what.as_str()), ("objects", "output"));
            assert!(expected.contains("83") && found.contains("84"), "{err}");
        }
        other => panic!("expected WrongShape, got {other}"),
    }
}

#[test]
fn missing_runtime_library_names_the_install_command() {
    let err = Runtime::load("/nonexistent/libonnxruntime.so.1.31.1".as_ref()).unwrap_err();
    assert!(
        matches!(&err, AiError::MissingRuntime { path: Some(_), .. }),
        "{err}"
    );
    let message = err.to_string();
    assert!(
        message.contains("flotilla models install") && message.contains("/nonexistent/"),
        "{message}"
    );
    assert!(INSTALL_HINT.contains("FLOTILLA_ORT_DYLIB"));
}

#[test]
fn explicit_cuda_on_a_cpu_runtime_is_a_device_error() {
    let config = flotilla_ai::ModelConfig {
        device: Device::Cuda(0),
        ..model("faces")
    };
    let err = Detector::load(&config).unwrap_err();
    assert!(
        matches!(&err, AiError::Device { device, .. } if device == "cuda:0"),
        "{err}"
    );
    assert!(err.to_string().contains("onnxruntime-gpu"), "{err}");
}

#[test]
fn speech_model_is_not_a_detector() {
    let config = flotilla_ai::ModelConfig {
        kind: ModelKind::Speech,
        ..model("objects")
    };
    let err = Detector::load(&config).unwrap_err();
    assert!(
        matches!(&err, AiError::Config { field, .. } if field == "models.objects.kind"),
        "{err}"
    );
}

#[test]
fn check_model_loads_and_runs_once() {
    let report = check_model(&model("objects")).unwrap();
    assert_eq!(
        (report.name.as_str(), report.device.as_str()),
        ("objects", "cpu")
    );
    assert!(report.detections.iter().all(|d| d.score >= 0.25));
    let err = check_model(&flotilla_ai::ModelConfig {
        path: "/nonexistent.onnx".into(),
        ..model("objects")
    })
    .unwrap_err();
    assert!(matches!(err, AiError::MissingModel { .. }), "{err}");
}

#[cfg(not(feature = "tract"))]
#[test]
fn tract_backend_without_the_feature_is_a_config_error() {
    let config = flotilla_ai::ModelConfig {
        backend: flotilla_ai::Backend::Tract,
        ..model("objects")
    };
    let err = Detector::load(&config).unwrap_err();
    assert!(
        matches!(&err, AiError::Config { field, .. } if field == "models.objects.backend"),
        "{err}"
    );
}
