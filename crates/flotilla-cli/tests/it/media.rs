//! `flotilla process` against real server and worker processes: a photo through the
//! `image-basic` pipeline (transcoding only: the worker runs no AI models), its renditions delivered to a directory target, and a corrupt file
//! failing with its reason in the results table and a non-zero exit.

use std::process::Command;

use crate::support::{ServerProcess, WorkerProcess};

fn ffmpeg(args: &[&str]) {
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y"])
        .args(args)
        .output()
        .expect("ffmpeg is installed (scripts/prereqs.sh)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_runs_the_image_basic_pipeline_and_delivers() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path());
    let objects = dir.path().join("flotilla-objects");
    let archive = dir.path().join("archive");
    let targets = dir.path().join("targets.toml");
    std::fs::write(
        &targets,
        format!(
            "[archive]\ntype = \"dir\"\npath = {:?}\n",
            archive.display().to_string()
        ),
    )
    .unwrap();
    let objects_arg = objects.display().to_string();
    let targets_arg = targets.display().to_string();
    let _worker = WorkerProcess::start(
        &server.url,
        &[
            "--queues",
            "q-ingest,q-transcode,q-distribution",
            "--objects",
            &objects_arg,
            "--targets",
            &targets_arg,
        ],
    );
    let photo = dir.path().join("photo.jpg");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=800x600",
        "-frames:v",
        "1",
        photo.to_str().unwrap(),
    ]);
    let broken = dir.path().join("broken.jpg");
    let bytes = std::fs::read(&photo).unwrap();
    std::fs::write(&broken, &bytes[..bytes.len() / 3]).unwrap();

    let out = Command::new(env!("CARGO_BIN_EXE_flotilla"))
        .args([
            "process",
            "--url",
            &server.url,
            "--pipeline",
            "image-basic",
            "--wait",
        ])
        .args(["--params", r#"{"deliver": {"targets": ["archive"]}}"#])
        .arg(&photo)
        .arg(&broken)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "one asset failed: {stdout}\n{stderr}"
    );
    assert!(stderr.contains("1 of 2 assets failed"), "{stderr}");
    let line = |name: &str| {
        stdout
            .lines()
            .find(|l| l.contains(name))
            .unwrap_or_default()
            .to_owned()
    };
    assert!(line("photo.jpg").contains("processed"), "{stdout}");
    assert!(line("photo.jpg").contains("thumb.jpg"), "{stdout}");
    assert!(line("broken.jpg").contains("failed"), "{stdout}");
    assert!(line("broken.jpg").contains("truncated"), "{stdout}");

    let mut delivered: Vec<String> = std::fs::read_dir(&archive)
        .unwrap()
        .flat_map(|upload| std::fs::read_dir(upload.unwrap().path()).unwrap())
        .map(|f| f.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    delivered.sort();
    assert_eq!(
        delivered,
        ["filtered.png", "large.jpg", "medium.webp", "thumb.jpg"]
    );
}
