//! [`ExecHandler`]: runs a shell command per job, for workers written in any language.
//!
//! The command runs as `sh -c <command>` in a process group of its own, with the payload
//! as JSON on stdin and `FLOTILLA_JOB_ID`, `FLOTILLA_JOB_KIND`, `FLOTILLA_JOB_QUEUE`,
//! `FLOTILLA_JOB_ATTEMPT` and `FLOTILLA_WORKER_ID` in its environment. Its stdout is the
//! result (JSON when it parses, else a JSON string; `null` when empty). A non-zero exit is
//! a retryable failure with the tail of stderr, except exit status 65 ([`EXIT_FATAL`],
//! `EX_DATAERR` of sysexits.h: the input is bad), which fails the job without retries;
//! death by a signal (the OOM killer's SIGKILL, say) fails the job at once with "killed by
//! signal N". On cancellation, timeout or shutdown the whole process group gets SIGTERM,
//! and SIGKILL [`TERM_GRACE`] later if it is still there. The worker's own token
//! (`FLOTILLA_TOKEN`) is not passed on: a command has no business calling the server as
//! the worker.

use std::os::unix::process::ExitStatusExt;
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;

use rustix::process::{Pid, Signal, kill_process_group};
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

use crate::{Handler, HandlerFuture, JobContext, JobError};

/// The exit status that marks a failure as not worth retrying (`EX_DATAERR`).
pub const EXIT_FATAL: i32 = 65;
/// How long a stopped command's process group has between SIGTERM and SIGKILL.
pub const TERM_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// How much of stderr a failure keeps: its last 2 KiB.
pub const STDERR_TAIL_BYTES: usize = 2048;
/// The most stdout a command may print; more fails the job.
pub const MAX_STDOUT_BYTES: usize = 16 * 1024 * 1024;

/// A handler that runs a shell command per job. Use it for one kind with
/// `.handler(kind, ExecHandler::new(cmd))` or for every kind with `.default_handler(...)`.
#[derive(Debug, Clone)]
pub struct ExecHandler {
    command: Arc<str>,
}

impl ExecHandler {
    /// Runs `command` (a shell command line, e.g. `python3 resize.py --fast`) per job.
    pub fn new(command: impl Into<String>) -> Self {
        Self {
            command: command.into().into(),
        }
    }

    /// The command line.
    pub fn command(&self) -> &str {
        &self.command
    }

    async fn run(self, ctx: JobContext) -> Result<Value, JobError> {
        let job = ctx.job();
        let payload = serde_json::to_vec(&job.payload)?;
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(&*self.command)
            .env("FLOTILLA_JOB_ID", job.id.to_string())
            .env("FLOTILLA_JOB_KIND", &job.kind)
            .env("FLOTILLA_JOB_QUEUE", &job.queue)
            .env("FLOTILLA_JOB_ATTEMPT", job.attempt.to_string())
            .env("FLOTILLA_WORKER_ID", ctx.worker_id())
            .env_remove("FLOTILLA_TOKEN")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| JobError::retryable(format!("cannot start `sh -c`: {e}")))?;
        // Kills the group if this future is dropped (the runtime aborts a handler that
        // ignores cancellation) or cancelled; disarmed once the command exits by itself.
        let mut group = GroupGuard(child.id());
        let (stdin, stdout, stderr) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take());
        let feed = async move {
            if let Some(mut stdin) = stdin {
                // A command that does not read its input closes the pipe: not an error.
                let _ = stdin.write_all(&payload).await;
            }
        };
        let run = async {
            let ((), out, err, status) = tokio::join!(
                feed,
                read_capped(stdout, MAX_STDOUT_BYTES),
                read_tail(stderr, STDERR_TAIL_BYTES),
                child.wait()
            );
            (out, err, status)
        };
        // The command keeps its pipes while it stops: one that writes as it handles
        // SIGTERM must not die of SIGPIPE instead.
        let mut run = std::pin::pin!(run);
        let ended = tokio::select! {
            ended = &mut run => Some(ended),
            () = ctx.cancelled() => None,
        };
        let Some((stdout, stderr, status)) = ended else {
            group.signal(Signal::TERM);
            if tokio::time::timeout(TERM_GRACE, &mut run).await.is_err() {
                group.kill();
                let _ = run.await;
            }
            // Children the command left behind go too.
            group.kill();
            return Err(JobError::retryable("cancelled: the command was stopped"));
        };
        group.0 = None;
        let status =
            status.map_err(|e| JobError::retryable(format!("waiting for the command: {e}")))?;
        outcome(status, stdout, &stderr)
    }
}

impl Handler for ExecHandler {
    fn call(&self, ctx: JobContext) -> HandlerFuture {
        Box::pin(self.clone().run(ctx))
    }
}

/// The job's result or error from how the command ended.
fn outcome(status: ExitStatus, stdout: Option<Vec<u8>>, stderr: &[u8]) -> Result<Value, JobError> {
    let stderr = String::from_utf8_lossy(stderr);
    let stderr = stderr.trim();
    let with_stderr = |what: String| match stderr {
        "" => what,
        tail => format!("{what}: {tail}"),
    };
    if let Some(signal) = status.signal() {
        return Err(JobError::retryable(with_stderr(format!(
            "killed by signal {signal}"
        ))));
    }
    if !status.success() {
        let code = status.code().unwrap_or(-1);
        let error = with_stderr(format!("exited with status {code}"));
        return Err(if code == EXIT_FATAL {
            JobError::fatal(error)
        } else {
            JobError::retryable(error)
        });
    }
    let Some(stdout) = stdout else {
        return Err(JobError::fatal(format!(
            "stdout is over {MAX_STDOUT_BYTES} bytes"
        )));
    };
    let text = String::from_utf8_lossy(&stdout);
    let text = text.trim();
    if text.is_empty() {
        return Ok(Value::Null);
    }
    Ok(serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_string())))
}

/// Reads `pipe` to its end; `None` when it holds more than `cap` bytes.
async fn read_capped(pipe: Option<impl AsyncRead + Unpin>, cap: usize) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut over = false;
    let mut buf = [0u8; 8192];
    let Some(mut pipe) = pipe else {
        return Some(out);
    };
    while let Ok(n @ 1..) = pipe.read(&mut buf).await {
        if out.len() + n > cap {
            over = true; // keep draining so the command is not blocked on a full pipe
        } else {
            out.extend_from_slice(&buf[..n]);
        }
    }
    (!over).then_some(out)
}

/// Reads `pipe` to its end, keeping the last `keep` bytes.
async fn read_tail(pipe: Option<impl AsyncRead + Unpin>, keep: usize) -> Vec<u8> {
    let mut tail = Vec::new();
    let mut buf = [0u8; 8192];
    let Some(mut pipe) = pipe else {
        return tail;
    };
    while let Ok(n @ 1..) = pipe.read(&mut buf).await {
        tail.extend_from_slice(&buf[..n]);
        if tail.len() > 2 * keep {
            tail.drain(..tail.len() - keep);
        }
    }
    if tail.len() > keep {
        tail.drain(..tail.len() - keep);
    }
    tail
}

/// Kills the process group led by the pid it holds when dropped or told to.
struct GroupGuard(Option<u32>);

impl GroupGuard {
    /// Sends `signal` to the group (which may be gone already: nothing to do then).
    fn signal(&self, signal: Signal) {
        let pid = self.0.and_then(|p| i32::try_from(p).ok());
        if let Some(pid) = pid.and_then(Pid::from_raw) {
            let _ = kill_process_group(pid, signal);
        }
    }

    /// Kills the group and forgets it.
    fn kill(&mut self) {
        self.signal(Signal::KILL);
        self.0 = None;
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::job;
    use serde_json::json;
    use std::time::Duration;

    async fn run(cmd: &str, payload: Value) -> Result<Value, JobError> {
        let ctx = JobContext::new(job("exec", payload), "w1");
        ExecHandler::new(cmd).call(ctx).await
    }

    #[tokio::test]
    async fn json_stdout_is_the_result_and_the_payload_comes_on_stdin() {
        let out = run(
            r#"read -r line; printf '{"got":%s,"id":"%s"}' "$line" "$FLOTILLA_JOB_ID""#,
            json!({"n": 1}),
        )
        .await
        .unwrap();
        assert_eq!(out, json!({"got": {"n": 1}, "id": "7"}));
        let env =
            "echo $FLOTILLA_JOB_KIND $FLOTILLA_JOB_QUEUE $FLOTILLA_JOB_ATTEMPT $FLOTILLA_WORKER_ID";
        assert_eq!(
            run(env, json!(null)).await.unwrap(),
            json!("exec default 1 w1")
        );
        assert_eq!(run("true", json!(null)).await.unwrap(), Value::Null);
        assert_eq!(run("echo 42", json!(null)).await.unwrap(), json!(42));
    }

    #[tokio::test]
    async fn a_non_zero_exit_is_retryable_with_the_tail_of_stderr() {
        let err = run("echo first >&2; echo boom >&2; exit 3", json!({}))
            .await
            .unwrap_err();
        assert!(err.is_retryable());
        assert_eq!(err.message(), "exited with status 3: first\nboom");
        let err = run(
            "head -c 5000 /dev/zero | tr '\\0' x >&2; echo END >&2; exit 1",
            json!({}),
        )
        .await
        .unwrap_err();
        assert!(err.message().ends_with("xxxxEND"), "{}", err.message());
        assert!(err.message().len() <= STDERR_TAIL_BYTES + 40);
    }

    #[tokio::test]
    async fn death_by_a_signal_fails_at_once() {
        let err = run("echo dying >&2; kill -9 $$", json!({}))
            .await
            .unwrap_err();
        assert!(err.is_retryable());
        assert_eq!(err.message(), "killed by signal 9: dying");
    }

    #[tokio::test]
    async fn cancellation_kills_the_whole_group() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        assert!(made.unwrap().success());
        // The command and a background child of it hold the FIFO open: it reads as ended
        // only once both are dead.
        let cmd = format!(
            "exec 3>'{}'; (echo started >&3; exec sleep 30) & sleep 30",
            fifo.display()
        );
        let ctx = JobContext::new(job("exec", json!({})), "w1");
        let running = tokio::spawn(ExecHandler::new(cmd).call(ctx.clone()));
        let mut fifo = tokio::io::BufReader::new(tokio::fs::File::open(&fifo).await.unwrap());
        let mut line = String::new();
        tokio::io::AsyncBufReadExt::read_line(&mut fifo, &mut line)
            .await
            .unwrap();
        assert_eq!(line, "started\n");

        // What the runtime does on a timeout, a cancel or a hard shutdown.
        ctx.cancellation_token().cancel();
        let err = running.await.unwrap().unwrap_err();
        assert_eq!(err.message(), "cancelled: the command was stopped");
        let mut rest = Vec::new();
        let ended = tokio::time::timeout(Duration::from_secs(10), fifo.read_to_end(&mut rest));
        assert_eq!(
            ended
                .await
                .expect("a process of the group survived")
                .unwrap(),
            0
        );
    }

    #[tokio::test]
    async fn a_stopped_command_gets_sigterm_first() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("terminated");
        let fifo = dir.path().join("fifo");
        assert!(
            std::process::Command::new("mkfifo")
                .arg(&fifo)
                .status()
                .unwrap()
                .success()
        );
        let cmd = format!(
            "trap 'echo bye > \"{}\"; exit 0' TERM; echo started > '{}'; while :; do sleep 0.05; done",
            marker.display(),
            fifo.display()
        );
        let ctx = JobContext::new(job("exec", json!({})), "w1");
        let running = tokio::spawn(ExecHandler::new(cmd).call(ctx.clone()));
        let mut fifo = tokio::io::BufReader::new(tokio::fs::File::open(&fifo).await.unwrap());
        let mut line = String::new();
        tokio::io::AsyncBufReadExt::read_line(&mut fifo, &mut line)
            .await
            .unwrap();
        ctx.cancellation_token().cancel();
        let err = running.await.unwrap().unwrap_err();
        assert_eq!(err.message(), "cancelled: the command was stopped");
        assert_eq!(std::fs::read_to_string(&marker).unwrap(), "bye\n");
    }

    #[tokio::test]
    async fn exit_65_is_not_retried() {
        let err = run("echo 'bad input' >&2; exit 65", json!({}))
            .await
            .unwrap_err();
        assert!(!err.is_retryable());
        assert_eq!(err.message(), "exited with status 65: bad input");
        let err = run("exit 3", json!({})).await.unwrap_err();
        assert!(err.is_retryable());
    }
}
