//! The installation's manifest, its shell twin and the class lists it records.

use std::process::Command;

use flotilla_ai::config::{FACES_MODEL, OBJECTS_MODEL};
use flotilla_ai::{InstalledModels, ModelsConfig, install_defaults};

use crate::fixture::{installed, models_dir};

#[test]
fn manifest_records_existing_absolute_paths() {
    let installed = installed();
    assert_eq!(&InstalledModels::read(&models_dir()).unwrap(), installed);
    assert!(installed.runtime.is_absolute() && installed.runtime.is_file());
    for model in &installed.models {
        assert!(model.file.is_file() && model.classes.is_file(), "{model:?}");
        assert!(model.licence.contains("AGPL-3.0"));
    }
    for photo in flotilla_ai::install::SAMPLE_PHOTOS {
        assert!(installed.sample(photo).is_file(), "{photo}");
    }
}

#[test]
fn reinstalling_is_idempotent() {
    let again = install_defaults(&models_dir()).unwrap();
    assert_eq!(&again, installed());
}

#[test]
fn class_lists_are_in_the_packages_order() {
    let config = ModelsConfig::defaults(installed());
    let coco = config
        .get(OBJECTS_MODEL)
        .unwrap()
        .classes
        .resolve()
        .unwrap();
    assert_eq!(
        (
            coco.len(),
            coco[0].as_str(),
            coco[15].as_str(),
            coco[79].as_str()
        ),
        (80, "person", "cat", "toothbrush")
    );
    let nudenet = config.get(FACES_MODEL).unwrap().classes.resolve().unwrap();
    assert_eq!(nudenet.len(), 18);
    assert_eq!(
        (nudenet[1].as_str(), nudenet[12].as_str()),
        ("FACE_FEMALE", "FACE_MALE")
    );
    assert_eq!(config.get(FACES_MODEL).unwrap().input_size, 320);
}

#[test]
fn shell_twin_writes_the_same_manifest() {
    let installed = installed();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/models.sh");
    let output = Command::new("bash")
        .arg(script)
        .arg(models_dir())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("already installed"));
    assert_eq!(&InstalledModels::read(&models_dir()).unwrap(), installed);
}
