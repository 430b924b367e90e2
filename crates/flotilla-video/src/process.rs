//! Running `ffmpeg` and `ffprobe`: spawning in a process group of their own, progress
//! from stdout, the tail of stderr, cancellation and timeouts that kill the whole
//! group, and turning how a run ended into a [`VideoError`].

use std::ffi::{OsStr, OsString};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process_group};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};
use tokio::process::Command;

use crate::VideoError;
use crate::control::{ProgressParser, RunControl};

/// How many of FFmpeg's last stderr lines an error keeps.
pub const STDERR_TAIL_LINES: usize = 20;
/// The most of FFmpeg's stderr an error keeps, in bytes.
pub const STDERR_TAIL_BYTES: usize = 4096;
/// How long a killed FFmpeg's pipes may stay open before the call returns anyway.
const KILL_WAIT: Duration = Duration::from_secs(5);
/// How long one ffprobe may take.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(60);

/// Arguments that every ffmpeg run starts with: no banner, only errors on stderr,
/// never read stdin, machine-readable progress on stdout.
const FFMPEG_COMMON: [&str; 9] = [
    "-hide_banner",
    "-nostdin",
    "-v",
    "error",
    "-nostats",
    "-progress",
    "pipe:1",
    "-stats_period",
    "0.25",
];

/// Phrases in FFmpeg's errors that mean the input, not the run, is at fault.
const BAD_INPUT_PHRASES: [&str; 12] = [
    "invalid data found when processing input",
    "moov atom not found",
    "partial file",
    "error splitting the input into nal units",
    "invalid nal unit size",
    "could not find codec parameters",
    "end of file",
    "corrupt",
    "truncat",
    "no decoder found",
    "does not contain any stream",
    "unsupported codec",
];

/// The URL FFmpeg should open for a local path: `file:` keeps it from reading a name
/// such as `http://…`, `concat:…` or `-y` as anything but a file.
pub(crate) fn file_url(path: &Path) -> OsString {
    let mut url = OsString::from("file:");
    url.push(path.as_os_str());
    url
}

/// Runs ffmpeg with `args` (after [`FFMPEG_COMMON`], in `args.cwd` if set) under
/// `ctl`; returns the tail of its stderr on success. `expected_s`, the output's
/// expected duration, gives [`Progress::fraction`](crate::Progress::fraction).
pub(crate) async fn run_ffmpeg(
    program: &Path,
    args: &Args,
    expected_s: Option<f64>,
    ctl: &RunControl,
) -> Result<String, VideoError> {
    if ctl.cancel.is_cancelled() {
        return Err(VideoError::Cancelled);
    }
    let mut command = Command::new(program);
    if let Some(dir) = &args.cwd {
        command.current_dir(dir);
    }
    let mut child = command
        .args(FFMPEG_COMMON)
        .args(&args.list)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| spawn_error(program, e))?;
    // Kills the group if this future is dropped before the child is reaped.
    let mut group = GroupGuard::new(child.id());
    let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
    let run = async {
        let ((), tail, status) = tokio::join!(
            report_progress(stdout, expected_s, ctl),
            read_tail(stderr),
            child.wait()
        );
        (tail, status)
    };
    let mut run = std::pin::pin!(run);
    let stopped = tokio::select! {
        ended = &mut run => Ok(ended),
        () = ctl.cancel.cancelled() => Err(VideoError::Cancelled),
        () = sleep_or_forever(ctl.timeout) => Err(VideoError::TimedOut(ctl.timeout.unwrap_or_default())),
    };
    let (tail, status) = match stopped {
        Ok(ended) => ended,
        Err(reason) => {
            group.kill();
            // Reaps ffmpeg (SIGKILL cannot be ignored). Bounded in case something
            // outside the group still holds its pipes: then the runtime reaps it.
            let _ = tokio::time::timeout(KILL_WAIT, run).await;
            group.disarm();
            return Err(reason);
        }
    };
    group.disarm();
    let status = status.map_err(|e| VideoError::io("waiting for ffmpeg", e))?;
    outcome("ffmpeg", status, tail)
}

/// Runs ffprobe with `args`, at most [`PROBE_TIMEOUT`]; returns its stdout on success.
pub(crate) async fn run_ffprobe(program: &Path, args: &[OsString]) -> Result<Vec<u8>, VideoError> {
    let child = Command::new(program)
        .args(["-hide_banner", "-v", "error"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| spawn_error(program, e))?;
    let output = tokio::time::timeout(PROBE_TIMEOUT, child.wait_with_output())
        .await
        .map_err(|_| VideoError::TimedOut(PROBE_TIMEOUT))?
        .map_err(|e| VideoError::io("waiting for ffprobe", e))?;
    if output.status.success() {
        return Ok(output.stdout);
    }
    let status = match output.status.signal() {
        Some(signal) => format!("was killed by signal {signal}"),
        None => format!("exited with status {}", output.status.code().unwrap_or(-1)),
    };
    let stderr = tail_lines(&output.stderr);
    Err(VideoError::FfmpegFailed {
        program: "ffprobe",
        status,
        stderr,
    })
}

fn spawn_error(program: &Path, error: std::io::Error) -> VideoError {
    if error.kind() == std::io::ErrorKind::NotFound {
        VideoError::FfmpegMissing {
            program: program.display().to_string(),
        }
    } else {
        VideoError::io(format!("starting {}", program.display()), error)
    }
}

async fn sleep_or_forever(timeout: Option<Duration>) {
    match timeout {
        Some(timeout) => tokio::time::sleep(timeout).await,
        None => std::future::pending().await,
    }
}

/// Success, bad input, or an FFmpeg failure, from the exit status and stderr tail.
/// A run that exits 0 but read a truncated file ("partial file") fails too: its output
/// is cut short.
fn outcome(program: &'static str, status: ExitStatus, tail: String) -> Result<String, VideoError> {
    let truncated = first_line_with(&tail, &["partial file"]);
    if status.success() {
        return match truncated {
            Some(line) => Err(truncated_or_corrupt(line)),
            None => Ok(tail),
        };
    }
    if let Some(signal) = status.signal() {
        let status = format!("was killed by signal {signal}");
        return Err(VideoError::FfmpegFailed {
            program,
            status,
            stderr: tail,
        });
    }
    if let Some(line) = first_line_with(&tail, &BAD_INPUT_PHRASES) {
        return Err(truncated_or_corrupt(line));
    }
    let code = status.code().unwrap_or(-1);
    let status = format!("exited with status {code}");
    Err(VideoError::FfmpegFailed {
        program,
        status,
        stderr: tail,
    })
}

fn truncated_or_corrupt(line: &str) -> VideoError {
    VideoError::invalid_media(format!("the file is truncated or corrupt: {line}"))
}

/// The first line of `text` containing one of `phrases` (case-insensitive), without
/// FFmpeg's `[demuxer @ 0x…]` prefix.
pub(crate) fn first_line_with<'t>(text: &'t str, phrases: &[&str]) -> Option<&'t str> {
    text.lines()
        .find(|line| {
            let lower = line.to_ascii_lowercase();
            phrases.iter().any(|p| lower.contains(p))
        })
        .map(strip_context)
}

/// `line` without FFmpeg's `[demuxer @ 0x…] ` prefix.
pub(crate) fn strip_context(line: &str) -> &str {
    match line
        .strip_prefix('[')
        .and_then(|rest| rest.split_once("] "))
    {
        Some((context, message)) if context.contains(" @ ") => message,
        _ => line,
    }
}

/// Reads FFmpeg's `-progress` output and sends throttled [`Progress`](crate::Progress)
/// values to the callback.
async fn report_progress(
    stdout: Option<impl AsyncRead + Unpin>,
    expected_s: Option<f64>,
    ctl: &RunControl,
) {
    let Some(stdout) = stdout else { return };
    let mut lines = BufReader::new(stdout).lines();
    let mut parser = ProgressParser::new(expected_s);
    while let Ok(Some(line)) = lines.next_line().await {
        let progress = parser.line(&line, Instant::now());
        if let (Some(progress), Some(callback)) = (progress, &ctl.progress) {
            callback(progress);
        }
    }
}

/// Reads `pipe` to its end and keeps the tail, see [`tail_lines`].
async fn read_tail(pipe: Option<impl AsyncRead + Unpin>) -> String {
    let mut tail = Vec::new();
    let mut buf = [0u8; 8192];
    let Some(mut pipe) = pipe else {
        return String::new();
    };
    while let Ok(n @ 1..) = pipe.read(&mut buf).await {
        tail.extend_from_slice(&buf[..n]);
        if tail.len() > 4 * STDERR_TAIL_BYTES {
            tail.drain(..tail.len() - 2 * STDERR_TAIL_BYTES);
        }
    }
    tail_lines(&tail)
}

/// The last [`STDERR_TAIL_LINES`] non-empty lines of `bytes`, at most
/// [`STDERR_TAIL_BYTES`] of them, newline-separated.
pub(crate) fn tail_lines(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.is_empty())
        .collect();
    let mut tail = lines[lines.len().saturating_sub(STDERR_TAIL_LINES)..].join("\n");
    if tail.len() > STDERR_TAIL_BYTES {
        let mut cut = tail.len() - STDERR_TAIL_BYTES;
        while !tail.is_char_boundary(cut) {
            cut += 1;
        }
        tail.drain(..cut);
    }
    tail
}

/// Kills the process group led by the pid it holds: on [`kill`](Self::kill), or on
/// drop unless [`disarm`](Self::disarm)ed (which must happen once the leader is
/// reaped, as its pid may then be reused).
struct GroupGuard(Option<Pid>);

impl GroupGuard {
    fn new(pid: Option<u32>) -> Self {
        Self(pid.and_then(|pid| Pid::from_raw(i32::try_from(pid).ok()?)))
    }

    fn kill(&self) {
        if let Some(pid) = self.0 {
            // ESRCH (already gone) is fine.
            let _ = kill_process_group(pid, Signal::KILL);
        }
    }

    fn disarm(&mut self) {
        self.0 = None;
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `arg` as an owned OS string, for building argument lists.
pub(crate) fn os(arg: impl AsRef<OsStr>) -> OsString {
    arg.as_ref().to_os_string()
}

/// An FFmpeg argument list, and the directory to run in. Paths only ever go in as
/// whole arguments, as `file:` URLs.
#[derive(Debug, Default)]
pub(crate) struct Args {
    pub(crate) list: Vec<OsString>,
    pub(crate) cwd: Option<PathBuf>,
}

impl Args {
    /// Appends arguments.
    pub(crate) fn add<I, S>(&mut self, args: I) -> &mut Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.list.extend(args.into_iter().map(os));
        self
    }

    /// Appends a local input file, after its input options: only the `file` protocol
    /// may be used while reading it.
    pub(crate) fn input(&mut self, path: &Path) -> &mut Self {
        self.add(["-protocol_whitelist", "file", "-i"]);
        self.list.push(file_url(path));
        self
    }

    /// Appends the output file (overwritten if it exists).
    pub(crate) fn output(&mut self, path: &Path) -> &mut Self {
        self.add(["-y"]);
        self.list.push(file_url(path));
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_the_last_lines_within_the_byte_cap() {
        let text: String = (0..100).map(|i| format!("line {i}\n\n")).collect();
        let tail = tail_lines(text.as_bytes());
        assert_eq!(tail.lines().count(), STDERR_TAIL_LINES);
        assert!(tail.ends_with("line 99"));
        let long = "é".repeat(10_000);
        assert!(tail_lines(long.as_bytes()).len() <= STDERR_TAIL_BYTES);
    }

    #[test]
    fn bad_input_lines_are_found_without_their_context() {
        let tail = "[mov,mp4,m4a,3gp,3g2,mj2 @ 0x5590be748240] moov atom not found\n\
                    file:x.mp4: Invalid data found when processing input";
        assert_eq!(
            first_line_with(tail, &BAD_INPUT_PHRASES),
            Some("moov atom not found")
        );
        assert_eq!(
            first_line_with("Conversion failed!", &BAD_INPUT_PHRASES),
            None
        );
    }

    #[test]
    fn exit_codes_and_signals_are_classified() {
        let exited = |code: i32| ExitStatus::from_raw(code << 8);
        let bad = outcome(
            "ffmpeg",
            exited(1),
            "x: Invalid data found when processing input".into(),
        );
        assert_eq!(bad.unwrap_err().code(), "invalid_media");
        let disk = outcome("ffmpeg", exited(1), "No space left on device".into()).unwrap_err();
        assert_eq!((disk.code(), disk.is_retryable()), ("ffmpeg_failed", true));
        let killed = outcome("ffmpeg", ExitStatus::from_raw(9), String::new()).unwrap_err();
        assert!(killed.to_string().contains("signal 9") && killed.is_retryable());
        let cut = outcome(
            "ffmpeg",
            exited(0),
            "[mov @ 0x1] stream 0, offset 0x9: partial file".into(),
        );
        assert_eq!(cut.unwrap_err().code(), "invalid_media");
    }
}
