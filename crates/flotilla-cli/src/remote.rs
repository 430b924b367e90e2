//! The commands that talk to a running server: `enqueue`, `jobs`, `queues`, `dead`,
//! `workers`. Human tables by default, `--json` for scripts; errors exit non-zero with the
//! server's code and message.

use std::io::BufRead;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use flotilla_client::Client;
use flotilla_core::{JobId, JobState, NewJob};
use flotilla_proto::{DeadRequest, EnqueueBatchRequest, Job, JobListQuery};
use serde::Serialize;

/// Where the server is.
#[derive(Args, Debug, Clone)]
pub(crate) struct Remote {
    /// Server URL.
    #[arg(
        long,
        env = "FLOTILLA_URL",
        default_value = "http://127.0.0.1:7070",
        global = true
    )]
    url: String,
    /// Bearer token.
    #[arg(long, env = "FLOTILLA_TOKEN", global = true, hide_env_values = true)]
    token: Option<String>,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
}

impl Remote {
    /// The server URL.
    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// The bearer token, if any.
    pub(crate) fn token(&self) -> Option<String> {
        self.token.clone()
    }

    /// Whether to print JSON instead of tables.
    pub(crate) fn json(&self) -> bool {
        self.json
    }

    pub(crate) fn client(&self) -> anyhow::Result<Client> {
        Ok(Client::new(&self.url, self.token.clone())?)
    }

    pub(crate) fn print<T: Serialize>(
        &self,
        value: &T,
        table: impl FnOnce(&T) -> String,
    ) -> anyhow::Result<()> {
        let text = if self.json {
            serde_json::to_string_pretty(value)? + "\n"
        } else {
            table(value)
        };
        write_stdout(&text)
    }
}

/// Writes `text` to stdout. A reader that went away (`flotilla jobs list | head -1`) is
/// not an error: `print!` would panic there.
fn write_stdout(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        written => Ok(written.context("cannot write to stdout")?),
    }
}

/// `flotilla enqueue`.
#[derive(Args, Debug)]
pub(crate) struct EnqueueArgs {
    /// Queue (not with --stdin).
    #[arg(required_unless_present = "stdin")]
    queue: Option<String>,
    /// Job kind, i.e. the handler (not with --stdin).
    #[arg(required_unless_present = "stdin")]
    kind: Option<String>,
    /// Payload, as JSON.
    #[arg(default_value = "{}")]
    payload: String,
    /// 0 (first) to 9.
    #[arg(long, default_value_t = 0)]
    priority: i32,
    /// Run no earlier than this from now, e.g. 30s or 2h.
    #[arg(long, value_parser = humantime::parse_duration)]
    delay: Option<Duration>,
    /// Idempotency key: while a job with it is live, no second one is created.
    #[arg(long)]
    unique_key: Option<String>,
    /// Fairness / concurrency group (e.g. a tenant).
    #[arg(long)]
    group: Option<String>,
    /// Tags (repeatable).
    #[arg(long = "tag")]
    tags: Vec<String>,
    /// Read jobs as JSON lines (each a full job: {"queue","kind","payload",...}) from
    /// stdin and enqueue them in batches of 1,000, with a progress bar.
    #[arg(long, conflicts_with_all = ["queue", "kind"])]
    stdin: bool,
}

pub(crate) async fn enqueue(remote: &Remote, args: EnqueueArgs) -> anyhow::Result<()> {
    let client = remote.client()?;
    if args.stdin {
        return enqueue_lines(remote, &client).await;
    }
    let payload = serde_json::from_str(&args.payload).context("the payload is not valid JSON")?;
    let mut job = NewJob::new(
        args.queue.unwrap_or_default(),
        args.kind.unwrap_or_default(),
        payload,
    )
    .priority(args.priority);
    job.delay_ms = args.delay.map(|d| d.as_millis() as u64);
    job.unique_key = args.unique_key;
    job.group_key = args.group;
    job.tags = args.tags;
    let accepted = client.enqueue(&job).await?;
    remote.print(&accepted, |a| {
        let dup = if a.duplicate {
            " (duplicate of a live job)"
        } else {
            ""
        };
        format!("job {} {}{dup}\n", a.id, a.state)
    })
}

async fn enqueue_lines(remote: &Remote, client: &Client) -> anyhow::Result<()> {
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_style(indicatif::ProgressStyle::with_template(
        "{spinner} {pos} jobs enqueued ({per_sec})",
    )?);
    let mut batch = Vec::with_capacity(1000);
    let mut total = 0u64;
    for (n, line) in std::io::stdin().lock().lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let job: NewJob =
            serde_json::from_str(&line).with_context(|| format!("line {}: not a job", n + 1))?;
        batch.push(job);
        if batch.len() == 1000 {
            total += send(client, &mut batch).await?;
            bar.set_position(total);
        }
    }
    total += send(client, &mut batch).await?;
    bar.finish_and_clear();
    remote.print(&serde_json::json!({ "enqueued": total }), |_| {
        format!("{total} jobs enqueued\n")
    })
}

async fn send(client: &Client, batch: &mut Vec<NewJob>) -> anyhow::Result<u64> {
    if batch.is_empty() {
        return Ok(0);
    }
    let jobs = std::mem::take(batch);
    Ok(client
        .enqueue_batch(&EnqueueBatchRequest { jobs })
        .await?
        .jobs
        .len() as u64)
}

/// `flotilla jobs …`.
#[derive(Subcommand, Debug)]
pub(crate) enum JobsCommand {
    /// Lists jobs, newest first.
    List(ListArgs),
    /// Shows one job with its error history.
    Get {
        /// Job id.
        id: i64,
    },
    /// Cancels a job (a running one on its next heartbeat).
    Cancel {
        /// Job id.
        id: i64,
    },
    /// Runs a job again now (replays a dead or cancelled one).
    Retry {
        /// Job id.
        id: i64,
    },
}

/// Filters of `jobs list` and `dead list`.
#[derive(Args, Debug)]
pub(crate) struct ListArgs {
    /// Only this queue.
    #[arg(long)]
    queue: Option<String>,
    /// Only this state.
    #[arg(long)]
    state: Option<String>,
    /// Only this kind.
    #[arg(long)]
    kind: Option<String>,
    /// Only jobs with this tag.
    #[arg(long)]
    tag: Option<String>,
    /// At most this many.
    #[arg(long, default_value_t = 50)]
    limit: u32,
}

impl ListArgs {
    fn query(&self) -> anyhow::Result<JobListQuery> {
        let state = self
            .state
            .as_deref()
            .map(str::parse::<JobState>)
            .transpose()?;
        Ok(JobListQuery {
            queue: self.queue.clone(),
            state,
            kind: self.kind.clone(),
            tag: self.tag.clone(),
            limit: Some(self.limit),
            ..JobListQuery::default()
        })
    }
}

pub(crate) async fn jobs(remote: &Remote, command: JobsCommand) -> anyhow::Result<()> {
    let client = remote.client()?;
    match command {
        JobsCommand::List(args) => {
            let page = client.jobs(&args.query()?).await?;
            remote.print(&page.jobs, |jobs| job_table(jobs))
        }
        JobsCommand::Get { id } => remote.print(&client.job(JobId(id)).await?, job_detail),
        JobsCommand::Cancel { id } => remote.print(&client.cancel(JobId(id)).await?, job_detail),
        JobsCommand::Retry { id } => remote.print(&client.retry(JobId(id)).await?, job_detail),
    }
}

/// `flotilla queues …`.
#[derive(Subcommand, Debug)]
pub(crate) enum QueuesCommand {
    /// Every queue with its depth by state.
    List,
    /// Stops handing out a queue's jobs (it still accepts new ones).
    Pause {
        /// Queue.
        name: String,
    },
    /// Resumes a paused queue.
    Resume {
        /// Queue.
        name: String,
    },
}

pub(crate) async fn queues(remote: &Remote, command: QueuesCommand) -> anyhow::Result<()> {
    let client = remote.client()?;
    let views = match command {
        QueuesCommand::List => client.queues().await?,
        QueuesCommand::Pause { name } => vec![client.pause(&name).await?],
        QueuesCommand::Resume { name } => vec![client.resume(&name).await?],
    };
    remote.print(&views, |views| {
        let rows = views.iter().map(|q| {
            let c = q.counts;
            vec![
                q.name.clone(),
                if q.paused {
                    "paused".into()
                } else {
                    "active".into()
                },
                c.scheduled.to_string(),
                c.available.to_string(),
                c.running.to_string(),
                c.succeeded.to_string(),
                c.dead.to_string(),
                q.oldest_available_age_ms
                    .map_or("-".into(), |ms| format!("{:.1}s", ms as f64 / 1000.0)),
            ]
        });
        table(
            &[
                "QUEUE",
                "STATUS",
                "SCHEDULED",
                "AVAILABLE",
                "RUNNING",
                "SUCCEEDED",
                "DEAD",
                "OLDEST",
            ],
            rows,
        )
    })
}

/// `flotilla dead …`.
#[derive(Subcommand, Debug)]
pub(crate) enum DeadCommand {
    /// Lists dead jobs, newest first.
    List(ListArgs),
    /// Replays dead jobs (attempts reset): the ids given, or all of --queue.
    Replay(DeadArgs),
    /// Deletes dead jobs: the ids given, or all of --queue.
    Purge(DeadArgs),
}

/// Which dead jobs.
#[derive(Args, Debug)]
pub(crate) struct DeadArgs {
    /// Job ids (none: every dead job, of --queue if given).
    ids: Vec<i64>,
    /// Only this queue.
    #[arg(long)]
    queue: Option<String>,
    /// At most this many.
    #[arg(long, default_value_t = 1000)]
    limit: u32,
}

pub(crate) async fn dead(remote: &Remote, command: DeadCommand) -> anyhow::Result<()> {
    let client = remote.client()?;
    let request = |a: DeadArgs| DeadRequest {
        ids: a.ids.into_iter().map(JobId).collect(),
        queue: a.queue,
        limit: a.limit,
    };
    match command {
        DeadCommand::List(args) => remote.print(&client.dead(&args.query()?).await?.jobs, |jobs| {
            job_table(jobs)
        }),
        DeadCommand::Replay(args) => {
            let n = client.dead_replay(&request(args)).await?;
            remote.print(&n, |n| format!("{} dead jobs replayed\n", n.count))
        }
        DeadCommand::Purge(args) => {
            let n = client.dead_purge(&request(args)).await?;
            remote.print(&n, |n| format!("{} dead jobs purged\n", n.count))
        }
    }
}

pub(crate) async fn workers(remote: &Remote) -> anyhow::Result<()> {
    let workers = remote.client()?.workers().await?;
    remote.print(&workers, |workers| {
        let rows = workers.iter().map(|w| {
            vec![
                w.id.clone(),
                serde_json::to_value(w.health)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default(),
                w.queues.join(","),
                format!("{}/{}", w.running.len(), w.concurrency),
                w.succeeded.to_string(),
                w.failed.to_string(),
                w.last_seen_at.format("%H:%M:%S").to_string(),
            ]
        });
        table(
            &[
                "WORKER",
                "HEALTH",
                "QUEUES",
                "RUNNING",
                "SUCCEEDED",
                "FAILED",
                "LAST SEEN",
            ],
            rows,
        )
    })
}

fn job_table(jobs: &[Job]) -> String {
    let rows = jobs.iter().map(|j| {
        vec![
            j.id.to_string(),
            j.queue.clone(),
            j.kind.clone(),
            j.state.to_string(),
            format!("{}/{}", j.attempt, j.max_attempts),
            j.created_at.format("%Y-%m-%d %H:%M:%S").to_string(),
            j.errors
                .last()
                .map(|e| e.error.chars().take(60).collect())
                .unwrap_or_default(),
        ]
    });
    table(
        &[
            "ID",
            "QUEUE",
            "KIND",
            "STATE",
            "ATTEMPT",
            "CREATED",
            "LAST ERROR",
        ],
        rows,
    )
}

fn job_detail(job: &Job) -> String {
    serde_json::to_string_pretty(job).unwrap_or_default() + "\n"
}

/// Left-aligned columns, as wide as their widest cell.
pub(crate) fn table(headers: &[&str], rows: impl Iterator<Item = Vec<String>>) -> String {
    let rows: Vec<Vec<String>> = rows.collect();
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        padded.join("  ").trim_end().to_owned() + "\n"
    };
    let mut out = line(headers.iter().map(|h| (*h).to_owned()).collect());
    for row in rows {
        out.push_str(&line(row));
    }
    out
}
