//! The test harness: a temporary directory, the system FFmpeg, media generated with
//! lavfi sources, and helpers that look inside outputs (frames as RGB, MP4 box order,
//! running processes).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use flotilla_video::{Ffmpeg, MediaInfo, Progress, RunControl};
use tempfile::TempDir;
use tokio::process::Command;

pub(crate) struct Harness {
    pub(crate) dir: TempDir,
    pub(crate) ffmpeg: Ffmpeg,
}

pub(crate) fn setup() -> Harness {
    Harness {
        dir: tempfile::tempdir().unwrap(),
        ffmpeg: Ffmpeg::from_path().expect("ffmpeg and ffprobe are installed"),
    }
}

impl Harness {
    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub(crate) async fn probe(&self, path: &Path) -> MediaInfo {
        self.ffmpeg.probe(path).await.unwrap()
    }
}

/// A generated clip: lavfi `testsrc2` (or a solid colour) with an optional sine tone.
pub(crate) struct Source {
    width: u32,
    height: u32,
    rate: u32,
    seconds: f64,
    audio: Option<(u32, u32)>,
    colour: Option<&'static str>,
    codec: &'static str,
    faststart: bool,
}

impl Source {
    /// `width`x`height`, 25 fps, 3 s, with 44.1 kHz mono audio, H.264 in MP4.
    pub(crate) fn new(width: u32, height: u32) -> Self {
        Self {
            width,
            height,
            rate: 25,
            seconds: 3.0,
            audio: Some((44_100, 1)),
            colour: None,
            codec: "libx264",
            faststart: false,
        }
    }

    pub(crate) fn rate(mut self, rate: u32) -> Self {
        self.rate = rate;
        self
    }

    pub(crate) fn seconds(mut self, seconds: f64) -> Self {
        self.seconds = seconds;
        self
    }

    pub(crate) fn audio(mut self, sample_rate: u32, channels: u32) -> Self {
        self.audio = Some((sample_rate, channels));
        self
    }

    pub(crate) fn silent(mut self) -> Self {
        self.audio = None;
        self
    }

    /// A solid colour instead of the test pattern.
    pub(crate) fn colour(mut self, colour: &'static str) -> Self {
        self.colour = Some(colour);
        self
    }

    /// Another video codec (`mpeg4`, say), for the container of `name`.
    pub(crate) fn codec(mut self, codec: &'static str) -> Self {
        self.codec = codec;
        self
    }

    /// The MP4 index before the data.
    pub(crate) fn faststart(mut self) -> Self {
        self.faststart = true;
        self
    }

    pub(crate) async fn write(self, harness: &Harness, name: &str) -> PathBuf {
        let path = harness.path(name);
        let (w, h, r, s) = (self.width, self.height, self.rate, self.seconds);
        let video = match self.colour {
            Some(c) => format!("color=c={c}:size={w}x{h}:rate={r}:duration={s}"),
            None => format!("testsrc2=size={w}x{h}:rate={r}:duration={s}"),
        };
        let mut args: Vec<String> = vec!["-f".into(), "lavfi".into(), "-i".into(), video];
        if let Some((sample_rate, channels)) = self.audio {
            let sine = format!("sine=frequency=440:sample_rate={sample_rate}:duration={s}");
            args.extend(
                [
                    "-f",
                    "lavfi",
                    "-i",
                    &sine,
                    "-ac",
                    &channels.to_string(),
                    "-c:a",
                    "aac",
                ]
                .map(String::from),
            );
        }
        args.extend(
            [
                "-c:v",
                self.codec,
                "-pix_fmt",
                "yuv420p",
                "-g",
                &r.to_string(),
            ]
            .map(String::from),
        );
        if self.codec == "libx264" {
            args.extend(["-preset", "ultrafast"].map(String::from));
        }
        if self.faststart {
            args.extend(["-movflags", "+faststart"].map(String::from));
        }
        args.push(path.to_str().unwrap().into());
        ffmpeg(&args).await;
        path
    }
}

/// Runs the system ffmpeg (test setup only) and fails the test if it fails.
pub(crate) async fn ffmpeg(args: &[String]) -> Vec<u8> {
    let output = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-v", "error", "-y"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "ffmpeg {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

/// A still image: a solid colour PNG.
pub(crate) async fn png(harness: &Harness, name: &str, colour: &str, size: u32) -> PathBuf {
    let path = harness.path(name);
    let source = format!("color=c={colour}:size={size}x{size}");
    let args = [
        "-f",
        "lavfi",
        "-i",
        &source,
        "-frames:v",
        "1",
        path.to_str().unwrap(),
    ];
    ffmpeg(&args.map(String::from)).await;
    path
}

/// One decoded frame as packed RGB.
pub(crate) struct Rgb {
    pub(crate) width: u32,
    pub(crate) height: u32,
    pub(crate) data: Vec<u8>,
}

impl Rgb {
    /// Decodes the frame at `at_s` of `path`.
    pub(crate) async fn frame(path: &Path, at_s: f64, width: u32, height: u32) -> Self {
        let args = [
            "-ss",
            &at_s.to_string(),
            "-i",
            path.to_str().unwrap(),
            "-frames:v",
            "1",
        ]
        .into_iter()
        .chain(["-f", "rawvideo", "-pix_fmt", "rgb24", "-"])
        .map(String::from)
        .collect::<Vec<_>>();
        let data = ffmpeg(&args).await;
        assert_eq!(
            data.len(),
            (width * height * 3) as usize,
            "a {width}x{height} frame"
        );
        Self {
            width,
            height,
            data,
        }
    }

    pub(crate) fn pixel(&self, x: u32, y: u32) -> [u8; 3] {
        assert!(
            x < self.width && y < self.height,
            "({x}, {y}) is outside the frame"
        );
        let at = ((y * self.width + x) * 3) as usize;
        [self.data[at], self.data[at + 1], self.data[at + 2]]
    }

    /// The mean colour of the square of side `2r` around (x, y).
    pub(crate) fn mean(&self, x: u32, y: u32, r: u32) -> [f64; 3] {
        let mut sum = [0.0; 3];
        let mut n = 0.0;
        for yy in y - r..y + r {
            for xx in x - r..x + r {
                let p = self.pixel(xx, yy);
                for c in 0..3 {
                    sum[c] += f64::from(p[c]);
                }
                n += 1.0;
            }
        }
        sum.map(|s| s / n)
    }
}

/// The types of an MP4's top-level boxes, in file order.
pub(crate) fn top_level_boxes(bytes: &[u8]) -> Vec<String> {
    let mut boxes = Vec::new();
    let mut at = 0usize;
    while at + 8 <= bytes.len() {
        let size = u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        boxes.push(String::from_utf8_lossy(&bytes[at + 4..at + 8]).into_owned());
        let size = match size {
            0 => break, // to the end of the file
            1 => u64::from_be_bytes(bytes[at + 8..at + 16].try_into().unwrap()) as usize,
            n => n,
        };
        at += size;
    }
    boxes
}

/// Every progress report of a run, in order.
#[derive(Clone, Default)]
pub(crate) struct ProgressLog(pub Arc<Mutex<Vec<Progress>>>);

impl ProgressLog {
    pub(crate) fn control(&self) -> RunControl {
        let log = self.0.clone();
        RunControl::new().with_progress(move |p| log.lock().unwrap().push(p))
    }

    pub(crate) fn reports(&self) -> Vec<Progress> {
        self.0.lock().unwrap().clone()
    }
}

/// The pids of running (not zombie) processes whose command line mentions `needle`.
pub(crate) fn processes_mentioning(needle: &str) -> Vec<u32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).contains(needle) && is_alive(pid) {
            pids.push(pid);
        }
    }
    pids
}

/// Whether `pid` exists and is not a zombie.
pub(crate) fn is_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // "pid (comm) S ...": the state follows the last ')'.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

pub(crate) fn assert_close(actual: f64, expected: f64, tolerance: f64, what: &str) {
    assert!(
        (actual - expected).abs() <= tolerance,
        "{what}: {actual} is not within {tolerance} of {expected}"
    );
}
