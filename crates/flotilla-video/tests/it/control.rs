use std::os::unix::fs::PermissionsExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use flotilla_video::{Ffmpeg, RunControl, TranscodeSpec, VideoError};
use tokio::sync::oneshot;

use crate::support::{Harness, ProgressLog, Source, is_alive, processes_mentioning, setup};

/// Settings that keep FFmpeg busy for many seconds on a small input.
fn slow_spec() -> TranscodeSpec {
    TranscodeSpec {
        preset: "veryslow".into(),
        crf: 10,
        ..TranscodeSpec::default()
    }
}

/// A control whose first progress report (FFmpeg is running) resolves the receiver, and
/// a flag set if FFmpeg ever reports the end of its work (`progress=end`).
fn signal_on_first_progress(
    ctl: RunControl,
) -> (RunControl, oneshot::Receiver<()>, Arc<AtomicBool>) {
    let (tx, rx) = oneshot::channel();
    let tx = Mutex::new(Some(tx));
    let finished = Arc::new(AtomicBool::new(false));
    let seen = finished.clone();
    let ctl = ctl.with_progress(move |p| {
        if p.done {
            seen.store(true, Ordering::SeqCst);
        }
        if let Some(tx) = tx.lock().unwrap().take() {
            let _ = tx.send(());
        }
    });
    (ctl, rx, finished)
}

#[tokio::test]
async fn progress_rises_to_a_final_fraction_near_one() {
    let h = setup();
    let input = Source::new(640, 480).seconds(5.0).write(&h, "in.mp4").await;
    let log = ProgressLog::default();
    let spec = TranscodeSpec {
        preset: "medium".into(),
        ..TranscodeSpec::default()
    };

    h.ffmpeg
        .transcode(&input, &h.path("out.mp4"), &spec, &log.control())
        .await
        .unwrap();

    let reports = log.reports();
    assert!(reports.len() >= 2, "several reports: {reports:?}");
    for pair in reports.windows(2) {
        assert!(
            pair[1].out_time_s >= pair[0].out_time_s,
            "out_time never decreases: {reports:?}"
        );
    }
    assert!(
        reports.last().unwrap().out_time_s > reports[0].out_time_s,
        "out_time rises"
    );
    let last = reports.last().unwrap();
    assert!(last.done, "the last report is FFmpeg's end");
    assert!(
        last.fraction.unwrap() > 0.95,
        "final fraction {:?}",
        last.fraction
    );
    assert!(
        reports
            .iter()
            .all(|p| (0.0..=1.0).contains(&p.fraction.unwrap()))
    );
    assert!(
        last.frame.unwrap() >= 120,
        "5 s at 25 fps: {:?}",
        last.frame
    );
}

/// Starts a slow transcode, waits until FFmpeg reports progress, and returns the
/// pids running it, the control and the pending run.
async fn start_slow_run(
    h: &Harness,
    ffmpeg: Ffmpeg,
    ctl: RunControl,
) -> (
    Vec<u32>,
    tokio::task::JoinHandle<Result<(), VideoError>>,
    String,
    Arc<AtomicBool>,
) {
    let input = Source::new(640, 480).seconds(4.0).write(h, "in.mp4").await;
    let output = h.path("out-slow.mp4");
    let needle = output.to_str().unwrap().to_string();
    let (ctl, started, finished) = signal_on_first_progress(ctl);
    let run = tokio::spawn(async move {
        ffmpeg
            .transcode(&input, &output, &slow_spec(), &ctl)
            .await
            .map(drop)
    });
    tokio::time::timeout(Duration::from_secs(20), started)
        .await
        .unwrap()
        .unwrap();
    let pids = processes_mentioning(&needle);
    assert!(!pids.is_empty(), "ffmpeg is running");
    (pids, run, needle, finished)
}

#[tokio::test]
async fn cancel_kills_ffmpeg_and_returns_cancelled_quickly() {
    let h = setup();
    let ctl = RunControl::new();
    let cancel = ctl.cancel.clone();
    let (pids, run, needle, finished) = start_slow_run(&h, h.ffmpeg.clone(), ctl).await;

    cancel.cancel();
    let err = run.await.unwrap().unwrap_err();

    assert!(
        !finished.load(Ordering::SeqCst),
        "FFmpeg was stopped mid-run, not left to finish its work"
    );
    assert!(matches!(err, VideoError::Cancelled), "{err}");
    assert_eq!((err.code(), err.is_retryable()), ("cancelled", true));
    assert!(
        pids.iter().all(|pid| !is_alive(*pid)),
        "ffmpeg {pids:?} is gone"
    );
    assert_eq!(processes_mentioning(&needle), Vec::<u32>::new());
    assert!(
        !h.path("out-slow.mp4").exists(),
        "the partial output is removed"
    );
}

#[tokio::test]
async fn timeout_kills_ffmpeg_and_returns_timed_out() {
    let h = setup();
    let ctl = RunControl::new().with_timeout(Duration::from_secs(3));
    let (pids, run, needle, finished) = start_slow_run(&h, h.ffmpeg.clone(), ctl).await;

    let err = run.await.unwrap().unwrap_err();

    assert!(matches!(err, VideoError::TimedOut(_)), "{err}");
    assert_eq!((err.code(), err.is_retryable()), ("timed_out", true));
    assert!(
        !finished.load(Ordering::SeqCst),
        "FFmpeg was stopped mid-run"
    );
    assert!(
        pids.iter().all(|pid| !is_alive(*pid)),
        "ffmpeg {pids:?} is gone"
    );
    assert_eq!(processes_mentioning(&needle), Vec::<u32>::new());
}

/// FFmpeg started by a wrapper script is a grandchild: only killing the process group
/// stops it.
#[tokio::test]
async fn cancel_kills_the_whole_process_group() {
    let h = setup();
    let wrapper = h.path("ffmpeg-wrapper.sh");
    let real = which("ffmpeg");
    std::fs::write(&wrapper, format!("#!/bin/sh\n{} \"$@\" &\nwait $!\n", real)).unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let ffmpeg = Ffmpeg::new(wrapper, which("ffprobe").into());
    let ctl = RunControl::new();
    let cancel = ctl.cancel.clone();
    let (pids, run, needle, _) = start_slow_run(&h, ffmpeg, ctl).await;
    assert!(pids.len() >= 2, "the wrapper and ffmpeg: {pids:?}");

    cancel.cancel();
    let err = run.await.unwrap().unwrap_err();

    assert!(matches!(err, VideoError::Cancelled), "{err}");
    // The group got SIGKILL and the wrapper was reaped; the grandchild is not our child,
    // so it may take a moment to finish dying (and be reaped by init): wait, bounded.
    let deadline = Instant::now() + Duration::from_secs(5);
    while pids.iter().any(|pid| is_alive(*pid)) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        pids.iter().all(|pid| !is_alive(*pid)),
        "wrapper and ffmpeg {pids:?} are gone"
    );
    assert_eq!(processes_mentioning(&needle), Vec::<u32>::new());
}

#[tokio::test]
async fn dropping_the_future_kills_ffmpeg() {
    let h = setup();
    let (pids, run, needle, _) = start_slow_run(&h, h.ffmpeg.clone(), RunControl::new()).await;

    run.abort();
    assert!(run.await.unwrap_err().is_cancelled());

    // The runtime reaps the killed child in the background: wait for it, bounded.
    let deadline = Instant::now() + Duration::from_secs(5);
    while pids.iter().any(|pid| is_alive(*pid)) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        pids.iter().all(|pid| !is_alive(*pid)),
        "ffmpeg {pids:?} is gone"
    );
    assert_eq!(processes_mentioning(&needle), Vec::<u32>::new());
}

#[tokio::test]
async fn an_already_cancelled_run_does_not_start() {
    let h = setup();
    let input = Source::new(320, 240).seconds(1.0).write(&h, "in.mp4").await;
    let ctl = RunControl::new();
    ctl.cancel.cancel();
    let calls = Arc::new(Mutex::new(0));
    let counter = calls.clone();
    let ctl = ctl.with_progress(move |_| *counter.lock().unwrap() += 1);

    let err = h
        .ffmpeg
        .transcode(&input, &h.path("out.mp4"), &TranscodeSpec::default(), &ctl)
        .await;

    assert!(matches!(err, Err(VideoError::Cancelled)));
    assert_eq!(*calls.lock().unwrap(), 0);
    assert!(!h.path("out.mp4").exists());
}

fn which(program: &str) -> String {
    let ffmpeg = Ffmpeg::from_path().unwrap();
    let path = if program == "ffmpeg" {
        ffmpeg.ffmpeg_path()
    } else {
        ffmpeg.ffprobe_path()
    };
    path.to_str().unwrap().to_string()
}
