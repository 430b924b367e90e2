//! `flotilla models install|list|check` on the real default models (detectors and Whisper) (installed once, by
//! package name, into the repository's `.flotilla/models`, as the flotilla-ai tests do).

use std::path::PathBuf;
use std::process::{Command, Output};

fn models_dir() -> PathBuf {
    std::env::var_os("FLOTILLA_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.flotilla/models"))
}

fn flotilla(args: &[&str], extra: &[&std::ffi::OsStr]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_flotilla"))
        .args(args)
        .args(extra)
        .arg("--models-dir")
        .arg(models_dir())
        .env("RUST_LOG", "warn")
        .output()
        .expect("run flotilla")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn the_default_models_install_list_with_their_licence_and_check() {
    let out = flotilla(&["models", "install"], &[]);
    assert!(out.status.success(), "{}", text(&out));

    let out = flotilla(&["models", "list"], &[]);
    let listed = text(&out);
    assert!(out.status.success(), "{listed}");
    for expected in [
        "objects", "faces", "AGPL-3.0", "80", "18", "tiny.en", "base", "speech",
    ] {
        assert!(listed.contains(expected), "{expected:?} in {listed}");
    }

    let out = flotilla(&["models", "check"], &[]);
    let checked = text(&out);
    assert!(out.status.success(), "{checked}");
    assert!(checked.contains("objects: ok"), "{checked}");
    assert!(
        checked.contains("person"),
        "yolo11n sees the astronaut: {checked}"
    );
    assert!(
        checked.contains("FACE_FEMALE"),
        "nudenet sees her face: {checked}"
    );
}

#[test]
fn a_corrupt_configured_model_fails_the_check_and_says_why() {
    let out = flotilla(&["models", "install"], &[]);
    assert!(out.status.success(), "{}", text(&out));
    let dir = tempfile::tempdir().unwrap();
    let onnx = dir.path().join("broken.onnx");
    std::fs::write(&onnx, b"this is not an ONNX model").unwrap();
    let config = dir.path().join("flotilla.toml");
    std::fs::write(
        &config,
        format!(
            "[[ai.models]]\nname = \"signs\"\nkind = \"detector\"\npath = {:?}\nclasses = [\"stop\", \"yield\"]\ninput_size = 640\n",
            onnx.display().to_string()
        ),
    )
    .unwrap();
    let out = flotilla(
        &["models", "check", "--models-config"],
        &[config.as_os_str()],
    );
    let checked = text(&out);
    assert!(!out.status.success(), "{checked}");
    assert!(checked.contains("signs: FAILED"), "{checked}");
    assert!(
        checked.contains("objects: ok"),
        "the other models still load: {checked}"
    );
}
