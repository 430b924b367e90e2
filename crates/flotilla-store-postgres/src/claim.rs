//! Claims: queues in strict order, each in its own short transaction.
//!
//! - **Ordinary queue** (no concurrency, group or rate limit, not fair): one statement.
//!   A CTE picks the first available jobs in claim order with `FOR UPDATE SKIP LOCKED`
//!   (so concurrent claimers, on this server or another, take disjoint jobs without
//!   waiting for each other), one `UPDATE ... RETURNING` leases them, and the counts follow
//!   in the same statement. No queue lock is taken.
//! - **Limited queue** (concurrency, group concurrency, rate limit or fairness): a
//!   transaction that first locks the queue's row (`FOR NO KEY UPDATE`), so claims on that
//!   queue run one at a time across every server. Under that lock the running count, the
//!   group counts and the token bucket read from the database are exact: only a claim
//!   raises them, and claims wait for the lock. Completions may lower them concurrently,
//!   which can only make a claim more careful, never let it exceed a limit.
//!
//! Each queue commits on its own, so no transaction ever holds two queue rows and claims
//! cannot deadlock on them. If a later queue of a multi-queue claim fails, the jobs already
//! leased from earlier queues are returned rather than stranded until their lease expires.
//!
//! Due scheduled jobs are promoted first, inline (with `SKIP LOCKED`, never waiting), so a
//! claim never waits for the promoter; the queue's `n_scheduled` lets a claim skip that
//! step when nothing is scheduled.

use std::collections::HashMap;
use std::time::Duration;

use deadpool_postgres::GenericClient;
use flotilla_core::{Job, QueueConfig, Timestamp};
use flotilla_store::{JobClaimParams, StoreError};

use crate::counts::{COUNTS, NO_COUNTERS};
use crate::error::{PgError, storable};
use crate::maintenance::promote_queue;
use crate::row::{JOB_COLUMN_COUNT, JOB_COLUMNS_J, big, get, job_from_row, plus_ms};
use crate::wakeup::Woken;
use crate::{PgStore, retrying};

/// Promotions done inline by a claim, per queue; the rest waits for the promoter.
const PROMOTE_PER_CLAIM: i64 = 1000;

/// What a claim needs to know of a queue before it starts.
struct QueueInfo {
    config: QueueConfig,
    limited: bool,
    n_scheduled: i64,
}

/// See `Store::job_claim`.
pub(crate) async fn claim(s: &PgStore, p: &JobClaimParams) -> Result<Vec<Job>, PgError> {
    storable("worker_id", &p.worker_id)?;
    let limit = usize::try_from(p.limit).unwrap_or(usize::MAX);
    let mut names: Vec<&str> = Vec::with_capacity(p.queues.len());
    for q in &p.queues {
        if !names.contains(&q.as_str()) {
            names.push(q);
        }
    }
    if let [name] = names[..] {
        return claim_one(s, name, limit, p).await;
    }
    let infos = retrying(|| queue_infos(s, &names)).await?;
    if let Some(missing) = names.iter().find(|n| !infos.contains_key(**n)) {
        return Err(StoreError::QueueNotFound((*missing).to_owned()).into());
    }
    let mut out: Vec<Job> = Vec::new();
    for name in names {
        if out.len() >= limit {
            break;
        }
        let info = &infos[name];
        if info.config.paused {
            continue;
        }
        let want = limit - out.len();
        let got = if info.limited {
            retrying(|| claim_limited(s, name, want, p)).await
        } else {
            let (lease, timeout) = queue_ms(&info.config);
            let plain = Plain {
                name,
                lease,
                timeout,
                promote: info.n_scheduled > 0,
            };
            retrying(|| claim_plain(s, &plain, want, p)).await
        };
        match got {
            Ok(jobs) => out.extend(jobs),
            Err(e) if !out.is_empty() => {
                // Earlier queues committed their leases: hand those jobs out rather than
                // leave them to expire.
                tracing::warn!(queue = name, error = %e, "claim stopped early");
                break;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// A claim from one queue, the common case (a worker's poll): one statement reads the
/// queue's row and, when the queue is ordinary, not paused and has no due scheduled job,
/// claims in the same round trip. Otherwise it claims nothing and says why: a paused queue
/// gives nothing, a limited one is claimed by [`claim_limited`], and due scheduled jobs
/// are promoted before an ordinary claim.
async fn claim_one(
    s: &PgStore,
    name: &str,
    limit: usize,
    p: &JobClaimParams,
) -> Result<Vec<Job>, PgError> {
    match retrying(|| claim_fused(s, name, limit, p)).await? {
        Fused::NotFound => Err(StoreError::QueueNotFound(name.to_owned()).into()),
        Fused::Claimed(jobs) => Ok(jobs),
        // Asked for nothing: the queue exists, that is all.
        _ if limit == 0 => Ok(Vec::new()),
        Fused::Limited => retrying(|| claim_limited(s, name, limit, p)).await,
        Fused::Due { lease, timeout } => {
            let plain = Plain {
                name,
                lease,
                timeout,
                promote: true,
            };
            retrying(|| claim_plain(s, &plain, limit, p)).await
        }
    }
}

/// What [`claim_fused`] did.
enum Fused {
    NotFound,
    /// The queue is ordinary and has no due scheduled job: its claimed jobs (none if it is
    /// paused or empty).
    Claimed(Vec<Job>),
    /// The queue is limited; nothing was claimed.
    Limited,
    /// The queue is ordinary but has due scheduled jobs; nothing was claimed.
    Due {
        lease: i64,
        timeout: Option<i64>,
    },
}

/// The queue's row and, when it is ordinary, unpaused and without due scheduled jobs, the
/// claim, in one statement. `$1` queue, `$2` worker, `$3` now, `$4` how many. Each row: the
/// queue's `paused, limited, due, lease_ms, timeout_ms`, then a claimed job's columns
/// (`NULL` when none was); no row for an unknown queue.
///
/// Whether a scheduled job is due is asked as the earliest `run_at` (one step into
/// `jobs_scheduled`): an `EXISTS` with the time bound may be planned as a scan of the whole
/// table when the statistics say scheduled jobs are due soon.
fn fused_sql() -> String {
    let by_lease = plus_ms("$3::timestamptz", "coalesce(j.lease_ms, qi.lease_ms)");
    let by_timeout = plus_ms("$3::timestamptz", "coalesce(j.timeout_ms, qi.timeout_ms)");
    format!(
        "WITH qi AS (
            SELECT q.paused, q.limited, q.lease_ms, q.timeout_ms,
                coalesce((SELECT min(d.run_at) FROM jobs d WHERE d.state = 0 AND d.queue = q.name)
                    <= $3::timestamptz, false) AS due
            FROM queues q WHERE q.name = $1::text
        ),
        picked AS (
            SELECT id FROM jobs WHERE state = 1 AND queue = $1::text
                AND (SELECT NOT (paused OR limited OR due) FROM qi)
            ORDER BY priority, run_at, id LIMIT $4::bigint FOR UPDATE SKIP LOCKED
        ),
        claimed AS (
            UPDATE jobs j SET state = 2, attempt = j.attempt + 1,
                lease_token = nextval('lease_tokens'), lease_worker = $2::text,
                lease_expires_at = LEAST({by_lease}, {by_timeout}),
                attempted_at = $3::timestamptz, progress = NULL
            FROM picked, qi WHERE j.id = picked.id
            RETURNING {JOB_COLUMNS_J}
        ),
        moved AS (
            SELECT queue, group_key, 1::smallint AS from_state, 2::smallint AS to_state, {NO_COUNTERS}
            FROM claimed
        ){COUNTS}
        SELECT qi.paused, qi.limited, qi.due, qi.lease_ms, qi.timeout_ms, c.*
        FROM qi LEFT JOIN claimed c ON true"
    )
}

/// The columns of a [`fused_sql`] row before the job's.
const FUSED_QUEUE_COLUMNS: usize = 5;

async fn claim_fused(
    s: &PgStore,
    name: &str,
    want: usize,
    p: &JobClaimParams,
) -> Result<Fused, PgError> {
    let c = s.client().await?;
    let stmt = c.prepare_cached(&fused_sql()).await?;
    let rows = c
        .query(&stmt, &[&name, &p.worker_id, &p.now, &big(want)])
        .await?;
    let Some(first) = rows.first() else {
        return Ok(Fused::NotFound);
    };
    let (paused, limited, due): (bool, bool, bool) =
        (get(first, 0)?, get(first, 1)?, get(first, 2)?);
    let timeout: Option<i64> = get(first, 4)?;
    if paused {
        return Ok(Fused::Claimed(Vec::new()));
    }
    if limited {
        return Ok(Fused::Limited);
    }
    if due {
        return Ok(Fused::Due {
            lease: get(first, 3)?,
            timeout,
        });
    }
    let mut jobs = Vec::with_capacity(rows.len());
    for r in &rows {
        if get::<Option<i64>>(r, FUSED_QUEUE_COLUMNS)?.is_none() {
            continue;
        }
        let mut job = job_from_row(r, FUSED_QUEUE_COLUMNS)?;
        job.timeout_ms = job
            .timeout_ms
            .or(timeout.and_then(|t| u64::try_from(t).ok()));
        jobs.push(job);
    }
    jobs.sort_by_key(|j| (j.priority, j.run_at, j.id));
    Ok(Fused::Claimed(jobs))
}

async fn queue_infos(s: &PgStore, names: &[&str]) -> Result<HashMap<String, QueueInfo>, PgError> {
    let c = s.client().await?;
    let stmt = c
        .prepare_cached(
            "SELECT q.name, q.config, q.paused, q.limited,
                    coalesce((SELECT sum(c.n_scheduled) FROM queue_counts c WHERE c.queue = q.name), 0)::bigint
             FROM queues q WHERE q.name = ANY($1::text[])",
        )
        .await?;
    let rows = c.query(&stmt, &[&names]).await?;
    let mut out = HashMap::with_capacity(rows.len());
    for r in &rows {
        let mut config = crate::read::parse_config(&get::<String>(r, 1)?)?;
        config.paused = get(r, 2)?;
        out.insert(
            get::<String>(r, 0)?,
            QueueInfo {
                config,
                limited: get(r, 3)?,
                n_scheduled: get(r, 4)?,
            },
        );
    }
    Ok(out)
}

/// The lease columns set by a claim, and the jobs returned, for a `picked(id)` CTE.
/// Parameters: `$1` queue, `$2` worker, `$3` now, `$4` queue lease (ms), `$5` queue timeout
/// (ms, nullable); the picking CTE uses `$6` and after.
fn claim_sql(picked: &str) -> String {
    let by_lease = plus_ms("$3::timestamptz", "coalesce(j.lease_ms, $4::bigint)");
    let by_timeout = plus_ms("$3::timestamptz", "coalesce(j.timeout_ms, $5::bigint)");
    format!(
        "WITH picked AS ({picked}),
        claimed AS (
            UPDATE jobs j SET state = 2, attempt = j.attempt + 1,
                lease_token = nextval('lease_tokens'), lease_worker = $2::text,
                lease_expires_at = LEAST({by_lease}, {by_timeout}),
                attempted_at = $3::timestamptz, progress = NULL
            FROM picked WHERE j.id = picked.id
            RETURNING {JOB_COLUMNS_J}
        ),
        moved AS (
            SELECT queue, group_key, 1::smallint AS from_state, 2::smallint AS to_state, {NO_COUNTERS}
            FROM claimed
        ){COUNTS}
        SELECT * FROM claimed"
    )
}

/// Picks the queue's first `$6` available jobs in claim order, skipping those another
/// transaction holds.
const PICK_IN_ORDER: &str = "SELECT id FROM jobs WHERE state = 1 AND queue = $1::text
     ORDER BY priority, run_at, id LIMIT $6::bigint FOR UPDATE SKIP LOCKED";

/// Picks, per group `$6[i]`, its first `$7[i]` available jobs in claim order.
const PICK_BY_GROUP: &str = "SELECT x.id FROM unnest($6::text[], $7::bigint[]) AS g(key, n)
     CROSS JOIN LATERAL (
        SELECT id FROM jobs WHERE state = 1 AND queue = $1::text AND group_key = g.key
        ORDER BY priority, run_at, id LIMIT g.n FOR UPDATE SKIP LOCKED) x";

/// Reads the leased jobs, each with its effective timeout (its own, else its queue's) for
/// the worker to enforce.
fn leased(rows: &[tokio_postgres::Row], timeout: Option<i64>) -> Result<Vec<Job>, PgError> {
    debug_assert!(rows.iter().all(|r| r.len() == JOB_COLUMN_COUNT));
    let timeout = timeout.map(|t| u64::try_from(t).unwrap_or(0));
    let mut jobs = rows
        .iter()
        .map(|r| {
            let mut job = job_from_row(r, 0)?;
            job.timeout_ms = job.timeout_ms.or(timeout);
            Ok(job)
        })
        .collect::<Result<Vec<_>, PgError>>()?;
    jobs.sort_by_key(|j| (j.priority, j.run_at, j.id));
    Ok(jobs)
}

fn queue_ms(config: &QueueConfig) -> (i64, Option<i64>) {
    let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
    (ms(config.lease), config.timeout.map(ms))
}

/// An ordinary queue, as [`claim_plain`] needs it.
struct Plain<'a> {
    name: &'a str,
    /// The queue's lease and timeout, in milliseconds.
    lease: i64,
    timeout: Option<i64>,
    /// Whether to promote due scheduled jobs first.
    promote: bool,
}

/// An ordinary queue: promote, then one claiming statement, each committing on its own;
/// then the promotion is announced (the claim may leave some of the jobs).
async fn claim_plain(
    s: &PgStore,
    q: &Plain<'_>,
    want: usize,
    p: &JobClaimParams,
) -> Result<Vec<Job>, PgError> {
    let c = s.client().await?;
    let mut woken = Woken::default();
    if q.promote {
        promote_queue(&c, q.name, p.now, PROMOTE_PER_CLAIM, &mut woken).await?;
    }
    let claimed = async {
        let stmt = c.prepare_cached(&claim_sql(PICK_IN_ORDER)).await?;
        let rows = c
            .query(
                &stmt,
                &[
                    &q.name,
                    &p.worker_id,
                    &p.now,
                    &q.lease,
                    &q.timeout,
                    &big(want),
                ],
            )
            .await?;
        leased(&rows, q.timeout)
    };
    let claimed = claimed.await;
    woken.send(&c).await;
    claimed
}

/// A queue's rate-limit token bucket: `rate` tokens per second, holding at most `rate`.
struct Bucket {
    tokens: f64,
    at: Timestamp,
}

impl Bucket {
    /// Refills for the time since the last claim and returns the whole tokens available.
    fn refill(&mut self, rate: u32, now: Timestamp) -> usize {
        let elapsed = (now - self.at).to_std().map_or(0.0, |d| d.as_secs_f64());
        self.tokens = (self.tokens + elapsed * f64::from(rate)).min(f64::from(rate));
        self.at = self.at.max(now);
        self.tokens.floor().max(0.0) as usize
    }
}

/// A limited queue: everything under the queue row's lock, in one transaction.
async fn claim_limited(
    s: &PgStore,
    name: &str,
    want: usize,
    p: &JobClaimParams,
) -> Result<Vec<Job>, PgError> {
    let mut c = s.client().await?;
    let tx = c.transaction().await?;
    let stmt = tx
        .prepare_cached(
            "SELECT config, paused, bucket_tokens, bucket_at, group_seq
             FROM queues WHERE name = $1 FOR NO KEY UPDATE",
        )
        .await?;
    let Some(row) = tx.query_opt(&stmt, &[&name]).await? else {
        return Err(StoreError::QueueNotFound(name.to_owned()).into());
    };
    let config = crate::read::parse_config(&get::<String>(&row, 0)?)?;
    let paused: bool = get(&row, 1)?;
    let mut bucket = Bucket {
        tokens: get::<Option<f64>>(&row, 2)?.unwrap_or(f64::from(config.rate_limit.unwrap_or(0))),
        at: get::<Option<Timestamp>>(&row, 3)?.unwrap_or(p.now),
    };
    let group_seq: i64 = get(&row, 4)?;
    // The counts are read by a statement of their own, after the lock is held: its
    // snapshot then includes every claim that held the lock before.
    let stmt = tx
        .prepare_cached(
            "SELECT coalesce(sum(n_running), 0)::bigint, coalesce(sum(n_scheduled), 0)::bigint
             FROM queue_counts WHERE queue = $1",
        )
        .await?;
    let row = tx.query_one(&stmt, &[&name]).await?;
    let running: i64 = get(&row, 0)?;
    let scheduled: i64 = get(&row, 1)?;
    if paused {
        tx.commit().await?;
        return Ok(Vec::new());
    }
    let mut woken = Woken::default();
    if scheduled > 0 {
        promote_queue(&tx, name, p.now, PROMOTE_PER_CLAIM, &mut woken).await?;
    }
    let mut allowed = want;
    if let Some(max) = config.concurrency {
        let free = i64::from(max).saturating_sub(running).max(0);
        allowed = allowed.min(usize::try_from(free).unwrap_or(0));
    }
    if let Some(rate) = config.rate_limit {
        allowed = allowed.min(bucket.refill(rate, p.now));
    }
    if allowed == 0 {
        tx.commit().await?;
        woken.send(&c).await;
        return Ok(Vec::new());
    }
    let (jobs, group_seq) = if config.claims_by_group() {
        claim_by_group(&tx, &config, allowed, group_seq, p).await?
    } else {
        let stmt = tx.prepare_cached(&claim_sql(PICK_IN_ORDER)).await?;
        let (lease, timeout) = queue_ms(&config);
        let rows = tx
            .query(
                &stmt,
                &[&name, &p.worker_id, &p.now, &lease, &timeout, &big(allowed)],
            )
            .await?;
        (leased(&rows, timeout)?, group_seq)
    };
    let (tokens, at) = if config.rate_limit.is_some() {
        (Some(bucket.tokens - jobs.len() as f64), Some(bucket.at))
    } else {
        (None, None)
    };
    let stmt = tx
        .prepare_cached(
            "UPDATE queues SET bucket_tokens = $2, bucket_at = $3, group_seq = $4 WHERE name = $1",
        )
        .await?;
    tx.execute(&stmt, &[&name, &tokens, &at, &group_seq])
        .await?;
    tx.commit().await?;
    woken.send(&c).await;
    Ok(jobs)
}

/// Round-robin across the queue's groups, least recently served first, each group giving
/// its jobs in claim order and no more than its free group slots. Returns the jobs in the
/// order served and the queue's new `group_seq`.
async fn claim_by_group<C: GenericClient>(
    tx: &C,
    config: &QueueConfig,
    n: usize,
    group_seq: i64,
    p: &JobClaimParams,
) -> Result<(Vec<Job>, i64), PgError> {
    let group_limit = config.group_concurrency.map(i64::from);
    let stmt = tx
        .prepare_cached(
            "SELECT group_key, available, running FROM job_groups
             WHERE queue = $1 AND available > 0 AND ($2::bigint IS NULL OR running < $2::bigint)
             ORDER BY served, group_key LIMIT $3",
        )
        .await?;
    let rows = tx
        .query(&stmt, &[&config.name, &group_limit, &big(n)])
        .await?;
    let mut groups: Vec<(String, i64)> = Vec::with_capacity(rows.len());
    for r in &rows {
        let (available, running): (i64, i64) = (get(r, 1)?, get(r, 2)?);
        let free = group_limit.map_or(available, |l| available.min(l - running));
        groups.push((get(r, 0)?, free));
    }
    let order = flotilla_core::round_robin(&groups.iter().map(|g| g.1).collect::<Vec<_>>(), n);
    if order.is_empty() {
        return Ok((Vec::new(), group_seq));
    }
    let mut shares = vec![0i64; groups.len()];
    for &g in &order {
        shares[g] += 1;
    }
    let (keys, counts): (Vec<&str>, Vec<i64>) = groups
        .iter()
        .zip(&shares)
        .filter(|(_, n)| **n > 0)
        .map(|((k, _), n)| (k.as_str(), *n))
        .unzip();
    let stmt = tx.prepare_cached(&claim_sql(PICK_BY_GROUP)).await?;
    let (lease, timeout) = queue_ms(config);
    let rows = tx
        .query(
            &stmt,
            &[
                &config.name,
                &p.worker_id,
                &p.now,
                &lease,
                &timeout,
                &keys,
                &counts,
            ],
        )
        .await?;
    // Each group's jobs in claim order, then served one per group per round.
    let mut per_group: HashMap<String, std::collections::VecDeque<Job>> = HashMap::new();
    for job in leased(&rows, timeout)? {
        let key = job.group_key.clone().unwrap_or_default();
        per_group.entry(key).or_default().push_back(job);
    }
    let base = group_seq + 1;
    let mut served: HashMap<usize, i64> = HashMap::new();
    let mut jobs = Vec::with_capacity(rows.len());
    for (position, &g) in order.iter().enumerate() {
        if let Some(job) = per_group.get_mut(&groups[g].0).and_then(|q| q.pop_front()) {
            jobs.push(job);
            served.insert(g, base + big(position));
        }
    }
    let (served_keys, served_at): (Vec<&str>, Vec<i64>) = served
        .iter()
        .map(|(&g, &seq)| (groups[g].0.as_str(), seq))
        .unzip();
    let stmt = tx
        .prepare_cached(
            "UPDATE job_groups g SET served = s.seq
             FROM unnest($2::text[], $3::bigint[]) AS s(key, seq)
             WHERE g.queue = $1 AND g.group_key = s.key",
        )
        .await?;
    tx.execute(&stmt, &[&config.name, &served_keys, &served_at])
        .await?;
    Ok((jobs, base + big(order.len())))
}

#[cfg(test)]
mod tests {
    use super::Bucket;

    #[test]
    fn bucket_refills_at_its_rate_up_to_its_size() {
        let t0 = flotilla_core::ManualClock::at_epoch();
        use flotilla_core::Clock;
        let mut b = Bucket {
            tokens: 0.0,
            at: t0.now(),
        };
        assert_eq!(b.refill(5, t0.now()), 0);
        t0.advance(std::time::Duration::from_millis(200));
        assert_eq!(b.refill(5, t0.now()), 1);
        t0.advance(std::time::Duration::from_secs(60));
        assert_eq!(b.refill(5, t0.now()), 5);
    }
}
