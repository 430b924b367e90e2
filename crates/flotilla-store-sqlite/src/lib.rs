//! Flotilla's embedded default store: one SQLite file, zero set-up.
//!
//! Durable by default: WAL with `synchronous = FULL`, so a call returns only after its
//! transaction is fsynced ([`Durability::Relaxed`] trades that for speed, explicitly). One writer thread owns the write connection and commits every
//! waiting call together (group commit, see [`writer`]); reads run on a small pool of read
//! connections, which WAL lets proceed while the writer writes.
//!
//! # Layout
//! - [`writer`]: the writer thread, savepoint per call, group commit.
//! - [`schema`]: connection settings and versioned migrations (`migrations/*.sql`).
//! - [`row`]: reading [`Job`]s out of rows; time and JSON conversions.
//! - [`counts`]: per-queue counts, counters and per-group counts kept with each change.
//! - [`insert`], [`claim`], [`ack`], [`admin`], [`maintenance`], [`cron`]: the writes.
//! - [`read`]: the reads.
//!
//! # Invariants
//! - One process owns a database file at a time (an advisory lock on `<file>.lock`); the
//!   writer's caches of queue settings and the token sequence rely on it.
//! - Every write runs on the writer thread; per-queue counts change in the same savepoint
//!   as the rows they count.
//! - The hot path is index-backed: claims read `jobs_available`, promotions
//!   `jobs_scheduled`, reaping `jobs_running`, pruning and dead letters `jobs_finished`, so their cost does
//!   not grow with the number of jobs.

mod ack;
mod admin;
mod claim;
mod counts;
mod cron;
mod import;
mod insert;
mod maintenance;
mod read;
mod row;
mod runs;
mod schema;
mod writer;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use flotilla_core::{
    CronSchedule, DEFAULT_MAX_PAYLOAD_BYTES, Job, JobId, JobState, QueueConfig, Run, RunId,
    Timestamp,
};
use flotilla_store::*;

pub use flotilla_store::Durability;
use rusqlite::Connection;

use writer::{Fsync, Lead, WriterHandle};

/// How to open a SQLite store.
#[derive(Debug, Clone)]
pub struct SqliteOptions {
    /// Largest serialized job payload accepted.
    pub max_payload_bytes: usize,
    /// Read connections kept open.
    pub readers: usize,
    /// When a commit counts as done.
    pub durability: Durability,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        Self {
            max_payload_bytes: DEFAULT_MAX_PAYLOAD_BYTES,
            readers: 4,
            durability: Durability::Full,
        }
    }
}

/// The SQLite [`Store`].
#[derive(Clone)]
pub struct SqliteStore {
    writer: WriterHandle,
    readers: Arc<Readers>,
    max_payload_bytes: usize,
    _lock: Arc<File>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`, applies pending migrations and
    /// starts the writer thread. Fails if another process has the file open as a store.
    pub fn open(path: impl AsRef<Path>, options: SqliteOptions) -> StoreResult<Self> {
        let path = path.as_ref().to_path_buf();
        let lock = schema::lock_file(&path)?;
        let conn = schema::open_writer(&path, options.durability)?;
        let writer = WriterHandle::spawn(conn, options.durability)?;
        let readers = Arc::new(Readers {
            path,
            idle: Mutex::new(Vec::new()),
            keep: options.readers,
        });
        Ok(Self {
            writer,
            readers,
            max_payload_bytes: options.max_payload_bytes,
            _lock: Arc::new(lock),
        })
    }

    async fn read<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        let readers = self.readers.clone();
        tokio::task::spawn_blocking(move || readers.with(f))
            .await
            .map_err(|e| StoreError::Internal(format!("read task failed: {e}")))?
    }
}

/// A small pool of read connections.
struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    keep: usize,
}

impl Readers {
    fn with<T>(&self, f: impl FnOnce(&Connection) -> StoreResult<T>) -> StoreResult<T> {
        let pooled = self.idle.lock().map_err(|_| poisoned())?.pop();
        let conn = match pooled {
            Some(conn) => conn,
            None => schema::open_reader(&self.path)?,
        };
        let result = f(&conn);
        let mut idle = self.idle.lock().map_err(|_| poisoned())?;
        if idle.len() < self.keep {
            idle.push(conn);
        }
        result
    }
}

fn poisoned() -> StoreError {
    StoreError::Internal("reader pool lock poisoned".into())
}

/// Maps a SQLite error onto [`StoreError`]: busy/locked/I/O and full-disk errors are
/// `Unavailable` (worth retrying), the rest `Internal`.
pub(crate) fn sql_err(e: rusqlite::Error) -> StoreError {
    use rusqlite::ErrorCode as C;
    match e.sqlite_error_code() {
        Some(
            C::DatabaseBusy | C::DatabaseLocked | C::SystemIoFailure | C::DiskFull | C::CannotOpen,
        ) => StoreError::Unavailable(e.to_string()),
        _ => StoreError::Internal(e.to_string()),
    }
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn queue_upsert(&self, config: QueueConfig) -> StoreResult<()> {
        config.validate()?;
        self.writer
            .call(move |w| admin::queue_upsert(w, config))
            .await
    }

    async fn queue_get(&self, name: &str) -> StoreResult<QueueConfig> {
        let name = name.to_owned();
        self.read(move |c| read::queue_config(c, &name)).await
    }

    async fn queue_list(&self) -> StoreResult<Vec<QueueConfig>> {
        self.read(read::queue_configs).await
    }

    async fn queue_set_paused(&self, name: &str, paused: bool) -> StoreResult<()> {
        let name = name.to_owned();
        self.writer
            .call(move |w| admin::queue_set_paused(w, &name, paused))
            .await
    }

    async fn queue_stats(&self, params: QueueStatsParams) -> StoreResult<Vec<QueueStats>> {
        self.read(move |c| read::queue_stats(c, params.queue.as_deref(), params.now))
            .await
    }

    async fn job_insert_many(&self, params: JobInsertManyParams) -> StoreResult<Vec<InsertedJob>> {
        let prepared = insert::prepare(params, self.max_payload_bytes)?;
        self.writer
            .call_led(Lead::Caller, Fsync::Now, move |w| {
                insert::insert_many(w, prepared)
            })
            .await
    }

    async fn job_get(&self, id: JobId) -> StoreResult<Job> {
        self.read(move |c| read::job(c, id)).await
    }

    async fn job_list(&self, params: JobListParams) -> StoreResult<JobPage> {
        self.read(move |c| read::job_list(c, &params)).await
    }

    async fn job_cancel(&self, params: JobCancelParams) -> StoreResult<Job> {
        self.writer.call(move |w| admin::cancel(w, params)).await
    }

    async fn job_retry(&self, params: JobRetryParams) -> StoreResult<Job> {
        self.writer.call(move |w| admin::retry(w, params)).await
    }

    async fn job_claim(&self, params: JobClaimParams) -> StoreResult<Vec<Job>> {
        if params.limit == 0 || params.queues.is_empty() {
            return Ok(Vec::new());
        }
        self.writer
            .call_soon(move |w| claim::claim(w, params))
            .await
    }

    async fn job_heartbeat(&self, params: JobHeartbeatParams) -> StoreResult<Heartbeat> {
        self.writer
            .call_soon(move |w| ack::heartbeat(w, params))
            .await
    }

    async fn job_complete_many(
        &self,
        params: JobCompleteManyParams,
    ) -> StoreResult<ItemResults<()>> {
        self.writer
            .call_soon(move |w| ack::complete_many(w, params))
            .await
    }

    async fn job_fail_many(&self, params: JobFailManyParams) -> StoreResult<ItemResults<JobState>> {
        self.writer
            .call_soon(move |w| ack::fail_many(w, params))
            .await
    }
    async fn job_release(&self, params: JobReleaseParams) -> StoreResult<ItemResults<JobState>> {
        self.writer
            .call_soon(move |w| ack::release(w, params))
            .await
    }

    async fn dead_replay(&self, params: DeadParams) -> StoreResult<u64> {
        self.writer
            .call(move |w| admin::dead_replay(w, params))
            .await
    }

    async fn dead_purge(&self, params: DeadParams) -> StoreResult<u64> {
        self.writer
            .call(move |w| admin::dead_purge(w, params))
            .await
    }

    async fn job_promote_due(&self, params: MaintenanceParams) -> StoreResult<PromoteReport> {
        self.writer
            .call(move |w| maintenance::promote_due(w, params))
            .await
    }

    async fn job_reap_expired(&self, params: MaintenanceParams) -> StoreResult<ReapReport> {
        self.writer
            .call(move |w| maintenance::reap_expired(w, params))
            .await
    }

    async fn job_prune(&self, params: MaintenanceParams) -> StoreResult<u64> {
        self.writer
            .call(move |w| maintenance::prune(w, params))
            .await
    }

    async fn cron_upsert(&self, schedule: CronSchedule, now: Timestamp) -> StoreResult<()> {
        schedule.validate()?;
        let payload = serde_json::to_vec(&schedule.payload)
            .map_err(|e| StoreError::Internal(e.to_string()))?;
        flotilla_core::check_payload_size(payload.len(), self.max_payload_bytes)?;
        self.writer
            .call(move |w| cron::upsert(w, schedule, now))
            .await
    }

    async fn cron_list(&self) -> StoreResult<Vec<CronEntry>> {
        self.read(read::cron_list).await
    }

    async fn cron_delete(&self, name: &str) -> StoreResult<()> {
        let name = name.to_owned();
        self.writer.call(move |w| cron::delete(w, &name)).await
    }

    async fn cron_fire_due(&self, params: MaintenanceParams) -> StoreResult<CronReport> {
        self.writer.call(move |w| cron::fire_due(w, params)).await
    }

    async fn job_import(&self, jobs: Vec<Job>) -> StoreResult<u64> {
        self.writer.call(move |w| import::jobs(w, jobs)).await
    }

    async fn queue_import_totals(&self, queue: &str, totals: Throughput) -> StoreResult<()> {
        let queue = queue.to_owned();
        self.writer
            .call(move |w| import::totals(w, &queue, totals))
            .await
    }

    async fn cron_import(&self, entry: CronEntry) -> StoreResult<()> {
        self.writer.call(move |w| import::cron(w, entry)).await
    }

    async fn run_create(&self, params: RunCreateParams) -> StoreResult<RunCreated> {
        flotilla_core::validate_run(&params.run)?;
        let max_payload = self.max_payload_bytes;
        self.writer
            .call_led(Lead::Caller, Fsync::Now, move |w| {
                runs::create(w, params.run, params.now, max_payload)
            })
            .await
    }

    async fn run_get(&self, id: RunId) -> StoreResult<Run> {
        self.read(move |c| runs::get(c, id)).await
    }

    async fn run_list(&self, params: RunListParams) -> StoreResult<RunPage> {
        self.read(move |c| runs::list(c, &params)).await
    }

    fn wakeups(&self) -> Option<tokio::sync::broadcast::Receiver<String>> {
        Some(self.writer.subscribe())
    }
}
