//! Flotilla's PostgreSQL store: several servers share one database.
//!
//! [`PgStore`] implements [`Store`] with `tokio-postgres` and a `deadpool-postgres` pool,
//! and passes the same conformance suite as the SQLite store. Unlike SQLite, there is no
//! single writer: every server (and every task of a server) writes through its own
//! connections, so everything that SQLite gets from its writer thread is done here by the
//! database — row locks, `SKIP LOCKED`, a unique index, sequences — and every statement
//! takes its `now` from the caller, exactly as in SQLite.
//!
//! # Schema (`migrations/0001_init.sql`, `0002_runs.sql`)
//! - `jobs`: one row per job, `bigserial` ids (increasing in enqueue order), states as
//!   `smallint` (0 scheduled … 5 dead, as in SQLite), payload, result, progress and error
//!   history as `json` (kept as written; unlike `jsonb` it accepts any JSON text, including
//!   `\u0000` escapes), tags as `text[]`.
//! - `queues`: settings (the JSON of `QueueConfig`, plus the columns statements need:
//!   `paused`, `grouped`, `limited`, lease, timeout, default attempts), the rate-limit
//!   bucket and the group round-robin sequence. The row is the lock of limited claims.
//! - `queue_counts`: per-state counts (`n_*`) and throughput counters (`t_*`), one row per
//!   queue and *shard*: a transaction adds its changes to the shard of its connection
//!   (`pg_backend_pid() % 64`), and a queue's numbers are the sum of its shards.
//!   `queue_stats` reads at most 64 rows per queue: O(queues).
//! - `job_groups`: available and running jobs per (queue, group key), and when the group
//!   was last served; `cron`: schedules and their last tick; `flotilla_migrations`.
//! - Sequence `lease_tokens`: one store-wide, uncached sequence, so a later claim always
//!   gets a larger token, whichever server makes it.
//! - `runs` and `run_steps` (pipeline runs, see `runs`): per step its dependencies
//!   (`text[]`), how many have not succeeded yet, its job's template while it waits, then
//!   its job id (unique) and, once it succeeded, its result. States are read from the jobs.
//!
//! **Times are `timestamptz`.** PostgreSQL keeps them as 64-bit microseconds since 2000,
//! the precision of [`flotilla_core::Timestamp`], so a value reads back exactly as written,
//! and an operator can read the rows with `psql`. Lease and timeout arithmetic is done in
//! SQL as `now + ms * interval '1 millisecond'`, exact to the microsecond (durations are
//! capped at 100 years, which keeps the product below 2^53 µs); it is the rule of
//! `flotilla_core::lease_expiry` (now plus the lease, never past the attempt's start plus
//! its timeout), written so that one statement can lease a whole batch. Times before
//! 4713 BC are refused with `invalid_argument`. With several servers, each passes its own
//! clock: leases and schedules assume the servers' clocks agree to well within a lease
//! (NTP), and the shared rate-limit bucket never moves its clock backwards.
//!
//! # Indexes: partial, one per hot path
//! | Index | Definition | Used by |
//! |---|---|---|
//! | `jobs_available` | `(queue, priority, run_at, id) WHERE state = 1` | claims in order, oldest available |
//! | `jobs_available_group` | `(queue, group_key, priority, run_at, id) WHERE state = 1 AND group_key IS NOT NULL` | claims per group |
//! | `jobs_scheduled` | `(queue, run_at) WHERE state = 0` | inline and background promotion |
//! | `jobs_running` | `(lease_expires_at) WHERE state = 2` | reaping expired leases |
//! | `jobs_unique_key` | `UNIQUE (queue, unique_key) WHERE unique_key IS NOT NULL AND state IN (0, 1, 2)` | one live job per key |
//! | `jobs_finished` | `(queue, state, finished_at) WHERE finished_at IS NOT NULL` | pruning, dead letters |
//! | `job_groups_served` | `job_groups (queue, served, group_key) WHERE available > 0` | round-robin order |
//!
//! Each hot index holds only the jobs in its state, however many finished jobs the table
//! keeps. The `jobs` table is vacuumed early (`autovacuum_vacuum_scale_factor = 0.02`):
//! every claim and completion leaves a dead row version behind.
//!
//! # Locking, and how limits hold across servers
//! - **Enqueue** is one `INSERT ... SELECT FROM unnest(...)` for the whole batch. It takes
//!   `KEY SHARE` on its queues' rows (so `queue_upsert`, which locks the row `FOR UPDATE`,
//!   cannot change a queue's grouping under it) and inserts with `ON CONFLICT DO NOTHING`:
//!   the partial unique index makes "one live job per (queue, unique key)" hold across
//!   servers, and a conflicting job (also a repeated key within the batch) is answered with
//!   the live holder. Batches with unique keys run in a transaction so that this look-up is
//!   atomic with the insert.
//! - **Claims on an ordinary queue** take no queue lock: one statement picks jobs with
//!   `FOR UPDATE SKIP LOCKED`, leases them with one `UPDATE ... RETURNING`, and adjusts the
//!   counts. Concurrent claimers on any server take disjoint jobs without waiting.
//! - **Claims on a limited queue** (concurrency, group concurrency, rate limit or fairness)
//!   first lock the queue row (`SELECT ... FOR NO KEY UPDATE`): claims on that queue then
//!   run one at a time across every server, and the running count, group counts, token
//!   bucket and round-robin state they read under the lock are exact, because only claims
//!   raise them. Completions lower them concurrently, which only makes a claim more
//!   careful. The bucket is stored in the row, so every server shares one bucket.
//! - **Counts** change in the same statement as the jobs (see `counts`). A counter row is
//!   locked until its transaction commits, so a single row per queue would make every
//!   transaction on the queue wait for the previous one's commit (measured: four claimers
//!   at half the throughput of one). Sharding the counts by connection removes that wait;
//!   transactions on one connection are sequential anyway.
//! - **Lock order**: job rows, then count rows (in queue order), then group rows. The
//!   `queues` row is locked only by limited claims (first; they then never wait for a job
//!   row, thanks to `SKIP LOCKED`), by enqueues (`KEY SHARE`, which does not conflict with
//!   a claim's lock) and by `queue_upsert`. Each queue of a multi-queue claim commits on its
//!   own. A deadlock or serialization failure that slips through anyway rolls the
//!   transaction back, and the operation is run again (a few times, with jittered backoff).
//! - **Cron** locks its schedule rows `FOR UPDATE SKIP LOCKED`: each tick fires once.
//! - **Maintenance** (promote, reap, prune, dead letters) takes its rows with `SKIP LOCKED`,
//!   so the same service on several servers splits the work.
//!
//! # How cost grows with queue length
//! An enqueue is one insert per index that applies (plus one unique-index probe with a
//! key); a claim of `k` jobs is one seek into `jobs_available` (or one per group into
//! `jobs_available_group`) plus `k` primary-key updates; heartbeats, completions, failures
//! and releases are primary-key updates; limits read counter rows instead of counting jobs.
//! All of that grows like log n in the number of queued jobs. Promotion, reaping, pruning
//! and dead letters walk one partial index and stop at their limit. What grows with churn
//! rather than length is the dead row versions in the partial indexes until vacuum removes
//! them (claims skip them; the table is vacuumed early). Limited queues serialize their
//! claims on the queue row, so one limited queue's claim rate is bounded by the length of
//! that short transaction; ordinary queues have no such bound. `job_list` with filters may
//! scan, as in SQLite.
//!
//! # Connecting
//! [`PgStore::connect`] takes a `postgres://` or `postgresql://` URL, or a libpq
//! `key=value` string. A URL's query parameters that tokio-postgres knows (`sslmode`,
//! `application_name`, `options`, `connect_timeout`, `target_session_attrs`, ...) are
//! applied by it; any other is passed through to the server as a session setting, as
//! `-c name=value` in the startup options (`?statement_timeout=30s&lock_timeout=5s`); one
//! the server refuses fails `connect` with `invalid_argument`. The store's own settings
//! come last and win, on every connection (the pool's and the listener's):
//! - **[`PgOptions::schema`] sets `search_path`** to that schema, so every table, index
//!   and sequence of the store is found there (the migrations create the schema). It also
//!   keys the migration lock and names the wakeup channel, so set the schema here rather
//!   than with a `search_path` parameter. Without it, the server's default search path
//!   applies (and the lock and channel use the name `public`).
//! - [`PgOptions::durability`] sets `synchronous_commit`;
//! - [`PgOptions::wakeups`] sets `flotilla.notify`, the channel wakeups are announced on.
//!
//! # Wakeups (`LISTEN`/`NOTIFY`, see `wakeup`)
//! A store call that makes jobs claimable announces the queues concerned with
//! `pg_notify('flotilla_<schema>', queue)`: inserts and imports of available jobs,
//! promotions, failures retried at once (and reaped leases retried at once), releases,
//! replays and run-again, resuming a queue or changing an existing one, and any job leaving
//! `running` in a queue with a concurrency or group-concurrency limit (a slot was freed).
//! The writing statements only name those queues (the same statement that changes the
//! counts decides, see `counts`); the call announces them after its transaction has
//! committed, in one separate statement on the same connection, outside any transaction.
//! One background task per store holds a dedicated connection running `LISTEN` and
//! forwards the queue names to [`Store::wakeups`] receivers; it reconnects with backoff
//! and then wakes every queue.
//!
//! Why after the commit rather than inside the transaction: PostgreSQL serializes the
//! commits of notifying transactions cluster-wide (a lock taken in `PreCommit_Notify` and
//! held through the commit's WAL flush), so under full durability notifying writes could
//! not share fsyncs. The announcing statement writes nothing, so it flushes no WAL and
//! holds the lock only briefly. Measured with 8 concurrent single-job enqueues under full
//! durability on a shared 2-core machine (`enqueue_rate_with_and_without_wakeups` in
//! `tests/wakeups.rs`, run back to back): 7,000/s without wakeups, 3,600/s notifying
//! inside the transaction, 5,200/s announcing after the commit; what remains is the
//! second statement each such call sends. (An earlier measurement, in other conditions:
//! 2,400/s without wakeups, 470/s notifying inside the transaction.) Batches pay it once.
//!
//! The price: an announcement is not atomic with its change. If the connection fails or
//! the statement is refused between the commit and the announcement, the call still
//! succeeds (its change is committed) and the failure is logged (`warn`); a worker waiting
//! for that queue then finds the jobs at its next poll instead of at once. Servers poll
//! anyway, so a lost wakeup costs latency, never a job. [`PgOptions::wakeups`] `= false`
//! turns wakeups off (no `NOTIFY`, no listener; servers then rely on polling).
//!
//! # Pipeline runs (see `runs`)
//! `run_create` inserts the run, its first steps' jobs (through the ordinary insert) and
//! its step rows in one transaction. A completion that finishes a step enqueues its ready
//! successors in the same transaction: the completion statement, which runs outside any
//! transaction, leaves the batch's steps alone and names them (one index scan for the
//! batch, in the same round trip), and only then does a transaction complete them and run
//! the hook. A batch without steps therefore costs one statement, as before; the
//! successors' queues are announced after the commit like any enqueue's.
//!
//! # Copying between stores (see `import`)
//! `job_import` inserts jobs exactly as given, 1,000 per statement, skipping ids that
//! exist (`ON CONFLICT (id) DO NOTHING`), with counts and groups updated like any insert;
//! it first moves the id and lease-token sequences forwards past the copied values. It is
//! meant for a store that is not yet taking work: an enqueue that drew an id in the copied
//! range before the sequence moved would collide with a copied job.
//! `queue_import_totals` raises one shard by the missing difference. Pipeline runs are
//! not copied: their step jobs arrive as plain jobs, and completing them enqueues nothing.
//!
//! # Errors
//! Connection failures, pool timeouts and a server that is shutting down or out of
//! resources are [`StoreError::Unavailable`]; text PostgreSQL cannot store (a NUL
//! character in a key, tag, worker id or schedule name) and times out of its range are
//! `invalid_argument` (SQLite would store them); everything unexpected is
//! [`StoreError::Internal`]. Domain errors carry the same codes as SQLite.

mod ack;
mod admin;
mod claim;
mod counts;
mod cron;
mod error;
mod import;
mod insert;
mod maintenance;
mod read;
mod row;
mod runs;
mod schema;
mod url;
mod wakeup;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use flotilla_core::{
    CronSchedule, DEFAULT_MAX_PAYLOAD_BYTES, Job, JobId, JobState, QueueConfig, Run, RunId,
};
use flotilla_store::*;
use tokio_postgres::NoTls;

pub use flotilla_store::Durability;

use crate::error::PgError;

/// How many times an operation rolled back by a deadlock or serialization failure runs
/// again before the caller gets `unavailable`.
const MAX_RETRIES: u32 = 5;

/// How to connect a PostgreSQL store.
#[derive(Debug, Clone)]
pub struct PgOptions {
    /// Connections in the pool (at most).
    pub pool_size: usize,
    /// The schema the store lives in (created by the migrations): `search_path` is set to
    /// it on every connection. `None` uses the server's default search path. Lower-case
    /// letters, digits and `_`, starting with a letter or `_`, at most 63 characters.
    pub schema: Option<String>,
    /// When a commit counts as done: `synchronous_commit` is `on` (strict and full) or
    /// `off` (relaxed) on every connection.
    pub durability: Durability,
    /// Whether [`PgStore::connect`] applies pending migrations (the default).
    pub migrate: bool,
    /// Largest serialized job payload accepted.
    pub max_payload_bytes: usize,
    /// How long to wait for a connection from the pool, or for a new one to open.
    pub connect_timeout: Duration,
    /// Whether this store announces claimable work to other servers and listens for their
    /// announcements (`LISTEN`/`NOTIFY`, see [`Store::wakeups`]; on by default). Off, it
    /// sends no `NOTIFY` and opens no listening connection, and `wakeups()` is `None`:
    /// for a single server, or where the announcing statements (one per store call that
    /// makes work claimable, see the crate documentation) cost more than the polls they
    /// save.
    pub wakeups: bool,
}

impl Default for PgOptions {
    fn default() -> Self {
        Self {
            pool_size: 16,
            schema: None,
            durability: Durability::Full,
            migrate: true,
            max_payload_bytes: DEFAULT_MAX_PAYLOAD_BYTES,
            connect_timeout: Duration::from_secs(10),
            wakeups: true,
        }
    }
}

/// The PostgreSQL [`Store`]. Cloning it shares its pool.
#[derive(Clone)]
pub struct PgStore {
    pool: Pool,
    schema: Option<String>,
    max_payload_bytes: usize,
    /// The listening task, shared by the clones; it stops when the last one is dropped.
    listener: Option<Arc<wakeup::Listener>>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("schema", &self.schema)
            .field("pool", &self.pool.status())
            .finish()
    }
}

/// Whether `name` is a schema name this store accepts.
fn plain_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && name.len() <= 63
}

impl PgStore {
    /// Connects to the database at `url` (a `postgres://` or `postgresql://` URL, or a
    /// libpq `key=value` string; see "Connecting" in the crate documentation), checks that
    /// it answers, applies pending migrations unless `options.migrate` is off, and starts
    /// listening for wakeups unless `options.wakeups` is off.
    pub async fn connect(url: &str, options: PgOptions) -> StoreResult<Self> {
        let invalid = |reason: String| {
            StoreError::Invalid(flotilla_core::Error::InvalidArgument {
                field: "postgres",
                reason,
            })
        };
        let url::Parsed {
            mut config,
            settings,
        } = url::parse(url).map_err(invalid)?;
        // The URL's options, then its other parameters, then ours (the last one wins).
        let mut session = config.get_options().unwrap_or_default().to_owned();
        session.push(' ');
        session.push_str(&settings);
        if let Some(schema) = &options.schema {
            if !plain_identifier(schema) {
                return Err(invalid(format!(
                    "schema {schema:?}: use lower-case letters, digits and _ (at most 63)"
                )));
            }
            session.push_str(&format!(" -c search_path={schema}"));
        }
        let channel = wakeup::channel(options.schema.as_deref());
        if options.wakeups {
            session.push_str(&format!(" -c {}={channel}", wakeup::SETTING));
        }
        let synchronous = match options.durability {
            Durability::Strict | Durability::Full => "on",
            Durability::Relaxed => "off",
        };
        session.push_str(&format!(" -c synchronous_commit={synchronous}"));
        config.options(session.trim());
        if config.get_application_name().is_none() {
            config.application_name("flotilla");
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(options.connect_timeout);
        }
        let manager = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(options.pool_size.max(1))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(options.connect_timeout))
            .create_timeout(Some(options.connect_timeout))
            .recycle_timeout(Some(options.connect_timeout))
            .build()
            .map_err(|e| StoreError::Internal(format!("cannot build the pool: {e}")))?;
        let mut store = Self {
            pool,
            schema: options.schema,
            max_payload_bytes: options.max_payload_bytes,
            listener: None,
        };
        // Fail now, not at the first call, when the database cannot be reached.
        drop(store.client().await.map_err(StoreError::from)?);
        if options.migrate {
            store.migrate().await?;
        }
        if options.wakeups {
            // Listening before `connect` returns: nothing committed afterwards is missed.
            let listener = wakeup::Listener::start(config, channel)
                .await
                .map_err(StoreError::from)?;
            store.listener = Some(Arc::new(listener));
        }
        Ok(store)
    }

    /// Applies pending migrations, each in one transaction under an advisory lock keyed by
    /// the schema, so servers starting together migrate once. Returns the versions this
    /// call applied (none when they were applied already, by this server or another).
    pub async fn migrate(&self) -> StoreResult<Vec<u32>> {
        let run = async {
            let mut c = self.client().await?;
            schema::migrate(&mut c, self.schema.as_deref()).await
        };
        run.await.map_err(StoreError::from)
    }

    /// The schema version of the database: the highest migration applied.
    pub async fn schema_version(&self) -> StoreResult<u32> {
        let run = async {
            let c = self.client().await?;
            schema::version(&c).await
        };
        run.await.map_err(StoreError::from)
    }

    /// The schema this store lives in, if one was given.
    pub fn schema(&self) -> Option<&str> {
        self.schema.as_deref()
    }

    /// A connection from the pool.
    pub(crate) async fn client(&self) -> Result<deadpool_postgres::Object, PgError> {
        Ok(self.pool.get().await?)
    }
}

/// Runs `op` again while it fails with a deadlock or serialization failure (its
/// transaction was rolled back, so running it again is safe), with jittered backoff.
pub(crate) async fn retrying<T, F, Fut>(mut op: F) -> Result<T, PgError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, PgError>>,
{
    let mut attempt = 0;
    loop {
        match op().await {
            Err(e) if e.is_transient() && attempt < MAX_RETRIES => {
                attempt += 1;
                let ceiling = 5u64 << attempt;
                let ms = rand::random_range(1..=ceiling);
                tracing::debug!(error = %e, attempt, "postgres: transaction rolled back; running it again");
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
            other => return other,
        }
    }
}

/// Runs an operation with [`retrying`] and turns its error into a [`StoreError`].
macro_rules! run {
    ($op:expr) => {
        retrying(|| $op).await.map_err(StoreError::from)
    };
}

#[async_trait]
impl Store for PgStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    fn wakeups(&self) -> Option<tokio::sync::broadcast::Receiver<String>> {
        self.listener.as_ref().map(|l| l.subscribe())
    }

    async fn queue_upsert(&self, config: QueueConfig) -> StoreResult<()> {
        config.validate()?;
        run!(admin::queue_upsert(self, &config))
    }

    async fn queue_get(&self, name: &str) -> StoreResult<QueueConfig> {
        run!(read::queue_config(self, name))
    }

    async fn queue_list(&self) -> StoreResult<Vec<QueueConfig>> {
        run!(read::queue_configs(self))
    }

    async fn queue_set_paused(&self, name: &str, paused: bool) -> StoreResult<()> {
        run!(admin::queue_set_paused(self, name, paused))
    }

    async fn queue_stats(&self, params: QueueStatsParams) -> StoreResult<Vec<QueueStats>> {
        run!(read::queue_stats(self, params.queue.as_deref(), params.now))
    }

    async fn job_insert_many(&self, params: JobInsertManyParams) -> StoreResult<Vec<InsertedJob>> {
        let batch = insert::prepare(params, self.max_payload_bytes)?;
        let batch = &batch;
        if batch.has_unique_keys() {
            run!(async move {
                let mut c = self.client().await?;
                let mut woken = wakeup::Woken::default();
                let tx = c.transaction().await?;
                let out = insert::insert(&tx, batch, &mut woken).await?;
                tx.commit().await?;
                woken.send(&c).await;
                Ok(out)
            })
        } else {
            run!(async move {
                let c = self.client().await?;
                let mut woken = wakeup::Woken::default();
                let out = insert::insert(&c, batch, &mut woken).await?;
                woken.send(&c).await;
                Ok(out)
            })
        }
    }

    async fn job_get(&self, id: JobId) -> StoreResult<Job> {
        run!(read::job(self, id))
    }

    async fn job_list(&self, params: JobListParams) -> StoreResult<JobPage> {
        run!(read::job_list(self, &params))
    }

    async fn job_cancel(&self, params: JobCancelParams) -> StoreResult<Job> {
        run!(admin::cancel(self, &params))
    }

    async fn job_retry(&self, params: JobRetryParams) -> StoreResult<Job> {
        run!(admin::retry(self, &params))
    }

    async fn job_claim(&self, params: JobClaimParams) -> StoreResult<Vec<Job>> {
        if params.limit == 0 || params.queues.is_empty() {
            return Ok(Vec::new());
        }
        // Retries happen per queue inside: a queue that committed is not claimed again.
        claim::claim(self, &params).await.map_err(StoreError::from)
    }

    async fn job_heartbeat(&self, params: JobHeartbeatParams) -> StoreResult<Heartbeat> {
        run!(ack::heartbeat(self, &params))
    }

    async fn job_complete_many(
        &self,
        params: JobCompleteManyParams,
    ) -> StoreResult<ItemResults<()>> {
        // Retries happen per part inside: a part that committed is not run again.
        ack::complete_many(self, &params)
            .await
            .map_err(StoreError::from)
    }

    async fn job_fail_many(&self, params: JobFailManyParams) -> StoreResult<ItemResults<JobState>> {
        run!(ack::fail_many(self, &params))
    }

    async fn job_release(&self, params: JobReleaseParams) -> StoreResult<ItemResults<JobState>> {
        run!(ack::release(self, &params))
    }

    async fn dead_replay(&self, params: DeadParams) -> StoreResult<u64> {
        run!(admin::dead_replay(self, &params))
    }

    async fn dead_purge(&self, params: DeadParams) -> StoreResult<u64> {
        run!(admin::dead_purge(self, &params))
    }

    async fn job_promote_due(&self, params: MaintenanceParams) -> StoreResult<PromoteReport> {
        run!(maintenance::promote_due(self, &params))
    }

    async fn job_reap_expired(&self, params: MaintenanceParams) -> StoreResult<ReapReport> {
        run!(maintenance::reap_expired(self, &params))
    }

    async fn job_prune(&self, params: MaintenanceParams) -> StoreResult<u64> {
        run!(maintenance::prune(self, &params))
    }

    async fn cron_upsert(
        &self,
        schedule: CronSchedule,
        now: flotilla_core::Timestamp,
    ) -> StoreResult<()> {
        schedule.validate()?;
        let payload = serde_json::to_vec(&schedule.payload)
            .map_err(|e| StoreError::Internal(e.to_string()))?;
        flotilla_core::check_payload_size(payload.len(), self.max_payload_bytes)?;
        run!(cron::upsert(self, &schedule, now))
    }

    async fn cron_list(&self) -> StoreResult<Vec<CronEntry>> {
        run!(read::cron_list(self))
    }

    async fn cron_delete(&self, name: &str) -> StoreResult<()> {
        run!(cron::delete(self, name))
    }

    async fn cron_fire_due(&self, params: MaintenanceParams) -> StoreResult<CronReport> {
        run!(cron::fire_due(self, &params))
    }

    async fn run_create(&self, params: RunCreateParams) -> StoreResult<RunCreated> {
        let (run, now) = (&params.run, params.now);
        runs::check(run, now, self.max_payload_bytes)?;
        run!(runs::create(self, run, now))
    }

    async fn run_get(&self, id: RunId) -> StoreResult<Run> {
        run!(runs::get_run(self, id))
    }

    async fn run_list(&self, params: RunListParams) -> StoreResult<RunPage> {
        run!(runs::list(self, &params))
    }

    async fn job_import(&self, jobs: Vec<Job>) -> StoreResult<u64> {
        let jobs = &jobs;
        run!(import::jobs(self, jobs))
    }

    async fn queue_import_totals(&self, queue: &str, totals: Throughput) -> StoreResult<()> {
        run!(import::totals(self, queue, &totals))
    }

    async fn cron_import(&self, entry: CronEntry) -> StoreResult<()> {
        entry.schedule.validate()?;
        let payload = serde_json::to_vec(&entry.schedule.payload)
            .map_err(|e| StoreError::Internal(e.to_string()))?;
        flotilla_core::check_payload_size(payload.len(), self.max_payload_bytes)?;
        run!(import::cron(self, &entry))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url() -> String {
        std::env::var("FLOTILLA_TEST_PG")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
    }

    async fn setting(store: &PgStore, name: &str) -> String {
        let c = store.client().await.expect("a connection");
        let row = c
            .query_one("SELECT current_setting($1)", &[&name])
            .await
            .expect("current_setting");
        row.get(0)
    }

    #[tokio::test]
    async fn every_connection_gets_the_schema_and_durability() {
        for (durability, expected) in [
            (Durability::Strict, "on"),
            (Durability::Full, "on"),
            (Durability::Relaxed, "off"),
        ] {
            let options = PgOptions {
                pool_size: 2,
                schema: Some("flotilla_settings_check".into()),
                durability,
                migrate: false,
                ..PgOptions::default()
            };
            let store = PgStore::connect(&url(), options).await.expect("connect");
            assert_eq!(setting(&store, "synchronous_commit").await, expected);
            assert_eq!(
                setting(&store, "search_path").await,
                "flotilla_settings_check"
            );
        }
    }

    #[tokio::test]
    async fn bad_schema_names_and_urls_are_refused() {
        for schema in ["", "Upper", "has space", "x;drop", &"a".repeat(64)] {
            let options = PgOptions {
                schema: Some(schema.into()),
                ..PgOptions::default()
            };
            let err = PgStore::connect(&url(), options).await.expect_err(schema);
            assert_eq!(
                err.code(),
                flotilla_core::ErrorCode::InvalidArgument,
                "{schema:?}"
            );
        }
        let err = PgStore::connect("postgres://[bad", PgOptions::default())
            .await
            .expect_err("a bad url");
        assert_eq!(err.code(), flotilla_core::ErrorCode::InvalidArgument);
    }

    #[tokio::test]
    async fn urls_pass_their_parameters_through() {
        let base = url();
        let (_, rest) = base.split_once("://").expect("a URL");
        let sep = if rest.contains('?') { '&' } else { '?' };
        for scheme in ["postgres", "postgresql"] {
            let url = format!(
                "{scheme}://{rest}{sep}sslmode=disable&application_name=flotilla-url\
                 &options=-c%20lock_timeout%3D4321&statement_timeout=1234&connect_timeout=5"
            );
            let options = PgOptions {
                pool_size: 1,
                schema: Some("flotilla_settings_check".into()),
                migrate: false,
                wakeups: false,
                ..PgOptions::default()
            };
            let store = PgStore::connect(&url, options).await.expect(&url);
            assert_eq!(setting(&store, "application_name").await, "flotilla-url");
            assert_eq!(setting(&store, "lock_timeout").await, "4321ms");
            assert_eq!(setting(&store, "statement_timeout").await, "1234ms");
            assert_eq!(
                setting(&store, "search_path").await,
                "flotilla_settings_check"
            );
        }
        let err = PgStore::connect(
            &format!("{base}{sep}no_such_setting=1"),
            PgOptions::default(),
        )
        .await
        .expect_err("an unknown setting");
        assert_eq!(
            err.code(),
            flotilla_core::ErrorCode::InvalidArgument,
            "{err}"
        );
    }

    #[test]
    fn schema_names() {
        assert!(plain_identifier("t_1_2_3_abc"));
        assert!(plain_identifier("_x"));
        assert!(!plain_identifier("1x"));
        assert!(!plain_identifier("a-b"));
    }
}
