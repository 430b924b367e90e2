//! Start-up failures are typed errors that say what to install, never a failed first job.

use flotilla_speech::{SpeechError, SpeechModel, Transcriber};

use crate::fixture::model;

#[tokio::test]
async fn a_missing_model_directory_names_the_install_command() {
    let mut config = model("tiny.en");
    config.model_dir = "/nonexistent/flotilla/whisper".into();
    let err = Transcriber::start(&config).await.unwrap_err();
    assert!(matches!(err, SpeechError::ModelMissing { .. }), "{err}");
    assert!(err.to_string().contains("flotilla models install"), "{err}");
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn a_corrupt_model_file_is_reported_at_start() {
    let tiny = model("tiny.en");
    let dir = tempfile::tempdir().unwrap();
    for file in ["config.json", "tokenizer.json", "vocabulary.txt"] {
        std::fs::copy(tiny.model_dir.join(file), dir.path().join(file)).unwrap();
    }
    std::fs::write(dir.path().join("model.bin"), vec![7u8; 4096]).unwrap();
    let config = SpeechModel {
        model_dir: dir.path().into(),
        ..tiny
    };
    let err = Transcriber::start(&config).await.unwrap_err();
    assert!(matches!(err, SpeechError::ModelCorrupt { .. }), "{err}");
    assert!(err.to_string().contains("flotilla models install"), "{err}");
}

#[tokio::test]
async fn a_runtime_that_cannot_be_imported_says_what_to_install() {
    // A faster_whisper package that fails to import, first on the path: the helper's
    // import error must come back as a typed error, as a missing CTranslate2 would.
    let site = tempfile::tempdir().unwrap();
    let pkg = site.path().join("faster_whisper");
    std::fs::create_dir(&pkg).unwrap();
    std::fs::write(
        pkg.join("__init__.py"),
        "raise ImportError('libctranslate2.so: not found')\n",
    )
    .unwrap();
    let config = SpeechModel {
        pythonpath: Some(site.path().into()),
        ..model("tiny.en")
    };
    let err = Transcriber::start(&config).await.unwrap_err();
    assert!(matches!(err, SpeechError::RuntimeMissing { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("libctranslate2.so") && text.contains("flotilla models install"),
        "{text}"
    );
}

#[tokio::test]
async fn a_missing_python_is_a_runtime_error() {
    let config = SpeechModel {
        python: "/nonexistent/bin/python3".into(),
        ..model("tiny.en")
    };
    let err = Transcriber::start(&config).await.unwrap_err();
    assert!(matches!(err, SpeechError::RuntimeMissing { .. }), "{err}");
}
