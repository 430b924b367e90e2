//! Claims: queues in strict order; per queue, due scheduled jobs are promoted first, then
//! the pause flag, concurrency limit and rate limit bound how many jobs it may give, and
//! the jobs are picked in claim order (priority, run_at, id) or, for fair and
//! group-limited queues, round-robin across groups.

use std::collections::HashMap;

use std::time::Duration;

use flotilla_core::{
    Event, Job, JobState, Lease, LeaseToken, QueueConfig, Timestamp, lease_expiry, transition,
};
use flotilla_store::{JobClaimParams, StoreResult};
use rusqlite::{Connection, params};

use crate::counts::Changes;
use crate::row::{JOB_COLUMNS, job_from_row, micros};
use crate::sql_err;
use crate::writer::Writer;

/// Promotions done inline by a claim, per queue; the rest waits for the promoter.
const PROMOTE_PER_CLAIM: u32 = 1000;

/// A queue's rate-limit token bucket: `rate` tokens per second, holding at most `rate`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bucket {
    tokens: f64,
    at: Timestamp,
}

impl Bucket {
    /// Refills for the time since the last claim and returns the whole tokens available.
    fn refill(&mut self, rate: u32, now: Timestamp) -> usize {
        let elapsed = (now - self.at).to_std().map_or(0.0, |d| d.as_secs_f64());
        self.tokens = (self.tokens + elapsed * f64::from(rate)).min(f64::from(rate));
        self.at = self.at.max(now);
        self.tokens.floor() as usize
    }
}

/// See `Store::job_claim`.
pub(crate) fn claim(w: &mut Writer, p: JobClaimParams) -> StoreResult<Vec<Job>> {
    let now = micros(p.now);
    let limit = usize::try_from(p.limit).unwrap_or(usize::MAX);
    let mut changes = Changes::default();
    let mut claimed = Vec::new();
    let mut seen = Vec::with_capacity(p.queues.len());
    for queue in &p.queues {
        if claimed.len() >= limit {
            break;
        }
        if seen.contains(&queue) {
            continue;
        }
        seen.push(queue);
        let config = w.queue(queue)?.clone();
        if config.paused {
            continue;
        }
        crate::maintenance::promote_queue(&w.conn, queue, now, PROMOTE_PER_CLAIM, &mut changes)?;
        let allowed = allowance(w, &config, limit - claimed.len(), p.now)?;
        if allowed == 0 {
            continue;
        }
        let picked = if config.claims_by_group() {
            pick_by_group(w, &config, allowed)?
        } else {
            pick_in_order(&w.conn, queue, allowed)?
        };
        if let Some(rate) = config.rate_limit
            && let Some(bucket) = w.buckets.get_mut(queue)
        {
            let _ = bucket.refill(rate, p.now);
            bucket.tokens -= picked.len() as f64;
        }
        lease(
            w,
            &config,
            picked,
            &p.worker_id,
            p.now,
            &mut changes,
            &mut claimed,
        )?;
    }
    changes.flush(&w.conn)?;
    Ok(claimed)
}

/// How many jobs `config`'s queue may hand out now, at most `wanted`.
fn allowance(
    w: &mut Writer,
    config: &QueueConfig,
    wanted: usize,
    now: Timestamp,
) -> StoreResult<usize> {
    let mut allowed = wanted;
    if let Some(max) = config.concurrency {
        let running: i64 = w
            .conn
            .prepare_cached("SELECT n_running FROM queues WHERE name = ?1")
            .map_err(sql_err)?
            .query_row([&config.name], |r| r.get(0))
            .map_err(sql_err)?;
        let free = i64::from(max).saturating_sub(running).max(0);
        allowed = allowed.min(usize::try_from(free).unwrap_or(0));
    }
    if let Some(rate) = config.rate_limit {
        let bucket = w.buckets.entry(config.name.clone()).or_insert(Bucket {
            tokens: f64::from(rate),
            at: now,
        });
        allowed = allowed.min(bucket.refill(rate, now));
    }
    Ok(allowed)
}

/// An available job picked for a claim, with its stored group key.
struct Picked {
    job: Job,
    group: Option<String>,
}

fn picked(r: &rusqlite::Row<'_>) -> rusqlite::Result<Picked> {
    Ok(Picked {
        job: job_from_row(r)?,
        group: r.get(25)?,
    })
}

/// The queue's first `n` available jobs in claim order, read by the same index scan that
/// finds them.
fn pick_in_order(conn: &Connection, queue: &str, n: usize) -> StoreResult<Vec<Picked>> {
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {JOB_COLUMNS}, group_key FROM jobs INDEXED BY jobs_available WHERE state = 1 AND queue = ?1
             ORDER BY priority, run_at, id LIMIT ?2"
        ))
        .map_err(sql_err)?;
    let jobs = stmt
        .query_map(params![queue, n as i64], picked)
        .map_err(sql_err)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(sql_err)?;
    Ok(jobs)
}

/// Round-robin across the queue's groups, least recently served first, each group giving
/// its jobs in claim order and no more than its free group slots.
fn pick_by_group(w: &mut Writer, config: &QueueConfig, n: usize) -> StoreResult<Vec<Picked>> {
    let group_limit = config.group_concurrency.map(i64::from);
    let groups: Vec<(String, i64)> = w
        .conn
        .prepare_cached(
            "SELECT group_key, available, running FROM job_groups
             WHERE queue = ?1 AND available > 0 AND (?2 IS NULL OR running < ?2)
             ORDER BY served, group_key LIMIT ?3",
        )
        .map_err(sql_err)?
        .query_map(params![config.name, group_limit, n as i64], |r| {
            let (available, running): (i64, i64) = (r.get(1)?, r.get(2)?);
            let free = group_limit.map_or(available, |l| available.min(l - running));
            Ok((r.get(0)?, free))
        })
        .map_err(sql_err)?
        .collect::<Result<_, _>>()
        .map_err(sql_err)?;
    let order = flotilla_core::round_robin(&groups.iter().map(|g| g.1).collect::<Vec<_>>(), n);
    let mut per_group: Vec<std::vec::IntoIter<Picked>> = Vec::with_capacity(groups.len());
    for (i, (group, _)) in groups.iter().enumerate() {
        let share = order.iter().filter(|&&g| g == i).count();
        per_group.push(pick_group(&w.conn, &config.name, group, share)?.into_iter());
    }
    let base = w.take_tokens(order.len());
    let mut served: HashMap<usize, i64> = HashMap::new();
    let mut jobs = Vec::with_capacity(order.len());
    for (position, &g) in order.iter().enumerate() {
        if let Some(job) = per_group[g].next() {
            jobs.push(job);
            served.insert(g, base + position as i64);
        }
    }
    let mut mark = w
        .conn
        .prepare_cached("UPDATE job_groups SET served = ?3 WHERE queue = ?1 AND group_key = ?2")
        .map_err(sql_err)?;
    for (g, seq) in served {
        mark.execute(params![config.name, groups[g].0, seq])
            .map_err(sql_err)?;
    }
    Ok(jobs)
}

fn pick_group(conn: &Connection, queue: &str, group: &str, n: usize) -> StoreResult<Vec<Picked>> {
    if n == 0 {
        return Ok(Vec::new());
    }
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {JOB_COLUMNS}, group_key FROM jobs INDEXED BY jobs_available_group
             WHERE state = 1 AND queue = ?1 AND group_key = ?2
             ORDER BY priority, run_at, id LIMIT ?3"
        ))
        .map_err(sql_err)?;
    let jobs = stmt
        .query_map(params![queue, group, n as i64], picked)
        .map_err(sql_err)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(sql_err)?;
    Ok(jobs)
}

/// Moves the picked jobs to running under fresh leases, appending them to `out`.
fn lease(
    w: &mut Writer,
    config: &QueueConfig,
    picked: Vec<Picked>,
    worker: &str,
    now: Timestamp,
    changes: &mut Changes,
    out: &mut Vec<Job>,
) -> StoreResult<()> {
    let first_token = w.take_tokens(picked.len());
    let mut stmt = w
        .conn
        .prepare_cached(
            "UPDATE jobs SET state = 2, attempt = attempt + 1, lease_token = ?2, lease_worker = ?3,
                    lease_expires_at = ?4, attempted_at = ?5, progress = NULL
             WHERE id = ?1",
        )
        .map_err(sql_err)?;
    for (i, Picked { mut job, group }) in picked.into_iter().enumerate() {
        let token = LeaseToken(first_token + i as i64);
        let timeout = job.timeout_ms.map(Duration::from_millis).or(config.timeout);
        let expires_at = lease_expiry(now, job.lease_duration(config.lease), now, timeout);
        stmt.execute(params![
            job.id.0,
            token.0,
            worker,
            micros(expires_at),
            micros(now)
        ])
        .map_err(sql_err)?;
        job.state = transition(job.state, Event::Claim)?;
        job.attempt += 1;
        job.attempted_at = Some(now);
        // The worker enforces the timeout too: hand it the effective one.
        job.timeout_ms = timeout.map(|t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX));
        job.progress = None;
        job.lease = Some(Lease {
            token,
            worker_id: worker.to_owned(),
            expires_at,
        });
        changes.moved(
            &job.queue,
            group.as_deref(),
            Some(JobState::Available),
            Some(JobState::Running),
        );
        out.push(job);
    }
    Ok(())
}
