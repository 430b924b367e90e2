//! The writer and its group commit.
//!
//! SQLite allows one writer at a time, so instead of many connections fighting over the
//! write lock, one connection executes every mutating call. Calls wait in `pending`; a
//! leader takes all of them (up to [`MAX_BATCH`]), runs each inside its own savepoint (a
//! failing call rolls back alone) and commits them together: one fsync for the whole
//! batch. Each caller is answered only after that commit, so an acknowledged enqueue is on
//! disk. Under load, batches grow by themselves; when idle, a call commits at once.
//!
//! Who leads:
//! - **The writer thread**, woken for every call that does not lead itself. It lets the
//!   caller's runtime go on parsing and answering requests while a commit waits for its
//!   fsync, and those requests join the next batch. Workers' calls (claims,
//!   acknowledgements) always go this way: a worker's poll and its acknowledgements then
//!   overlap one another's fsyncs (letting them lead halved a worker's drain).
//! - **An enqueue that finds no leader** leads itself, on its own thread: it first yields
//!   once, so that calls already on their way (requests the runtime is about to poll) join
//!   its batch, then commits. This spares a lone producer the two thread hand-offs, each a
//!   wake-up of a sleeping thread, which on a virtual machine cost more than the insert.
//! - **With relaxed durability every call** that finds no leader commits right away on its
//!   own thread (no yield): the commit does not wait for the disk.
//!
//! A leader commits one batch; what arrived meanwhile goes to the writer thread, which
//! leads until nothing is pending. A leader whose future is dropped still hands over.
//!
//! What waits for the disk ([`Durability`]): with `strict` every commit; with `full` (the
//! default) a batch with at least one [`Fsync::Now`] call (enqueues, admin changes): worker
//! traffic alone (claims, heartbeats, outcomes: [`Fsync::Soon`]) is written at once and
//! fsynced by the next durable commit or by the writer thread [`SYNC_WITHIN`] later,
//! whichever comes first. Losing such a commit in a power cut can only make a job run
//! again (its claim or its outcome is forgotten), never lose one; and since a claim's
//! lease tokens may be forgotten too, every start moves the token sequence past
//! [`TOKEN_GAP`] so that no token is ever handed out twice. With `relaxed` nothing waits.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, mpsc};

use std::time::{Duration, Instant};

use flotilla_core::QueueConfig;
use flotilla_store::{Durability, StoreError, StoreResult};
use rusqlite::Connection;
use tokio::sync::oneshot;

use crate::sql_err;

/// The most calls committed together.
const MAX_BATCH: usize = 512;

/// With `full` durability, the longest a [`Fsync::Soon`] commit stays unsynced.
pub(crate) const SYNC_WITHIN: Duration = Duration::from_millis(50);

/// How far each start moves the lease-token sequence: more tokens than can be handed out
/// between two fsyncs, so that tokens of claims a power cut erased are never reused.
pub(crate) const TOKEN_GAP: i64 = 1 << 24;

/// Whether a call's commit must reach the disk before the call is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fsync {
    /// Yes (unless durability is relaxed): enqueues, admin changes, maintenance.
    Now,
    /// Within [`SYNC_WITHIN`] (unless durability is strict): worker traffic, whose loss
    /// only makes a job run again.
    Soon,
}

/// A call to run in a batch (or, given `None`, to refuse because no transaction could be
/// opened); returns what to do once the commit is known.
type Op = Box<dyn FnOnce(Option<&mut Writer>) -> Reply + Send>;
type Reply = Box<dyn FnOnce(Result<(), String>) + Send>;

/// A call waiting for a batch.
struct Pending {
    op: Op,
    sync: Fsync,
}

/// Who may lead a call's batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lead {
    /// Only the writer thread (unless durability is relaxed).
    Thread,
    /// The caller too, when no one leads (enqueues).
    Caller,
}

/// State owned by the writer thread: the write connection and caches of what only it
/// changes (queue settings, the lease-token sequence, rate-limit buckets). An op that
/// changes a cache does so as its last step, after its SQL succeeded; a failed commit
/// reloads the caches.
pub(crate) struct Writer {
    pub(crate) conn: Connection,
    pub(crate) queues: HashMap<String, QueueConfig>,
    pub(crate) buckets: HashMap<String, crate::claim::Bucket>,
    pub(crate) next_token: i64,
    /// Queues whose jobs the store itself made claimable (pipeline steps enqueued by a
    /// completion), announced to the server's long-polls.
    pub(crate) wakeups: tokio::sync::broadcast::Sender<String>,
    token_at_begin: i64,
    /// The batch has one call, which then needs no savepoint: the transaction is its own.
    alone: bool,
    /// The lone call failed: roll the transaction back instead of committing.
    alone_failed: bool,
    durability: Durability,
    /// The connection's `synchronous` setting is FULL (commits wait for the disk).
    synchronous_full: bool,
    /// When the oldest commit not yet fsynced was made (`full` durability only).
    unsynced_since: Option<Instant>,
}

/// The handle through which calls reach the writer.
#[derive(Clone)]
pub(crate) struct WriterHandle {
    shared: Arc<Shared>,
    /// Wakes the writer thread to lead; the thread stops when every handle is gone.
    wake: mpsc::SyncSender<()>,
    /// Relaxed durability: every call may lead, without yielding first.
    relaxed: bool,
    wakeups: tokio::sync::broadcast::Sender<String>,
}

/// What the handles and the writer thread share.
struct Shared {
    writer: Mutex<Writer>,
    pending: Mutex<Vec<Pending>>,
    /// A leader is committing and will look at `pending` again before it stops.
    leading: AtomicBool,
    /// How long worker traffic may stay unsynced ([`SYNC_WITHIN`]).
    sync_within: Duration,
}

impl WriterHandle {
    /// Starts the writer thread on `conn`, whose commits wait for the disk as `durability`
    /// says, after moving the lease-token sequence on by [`TOKEN_GAP`].
    pub(crate) fn spawn(conn: Connection, durability: Durability) -> StoreResult<Self> {
        Self::spawn_syncing_within(conn, durability, SYNC_WITHIN)
    }

    /// [`WriterHandle::spawn`] with another bound than [`SYNC_WITHIN`] on unsynced commits.
    fn spawn_syncing_within(
        conn: Connection,
        durability: Durability,
        sync_within: Duration,
    ) -> StoreResult<Self> {
        let relaxed = durability == Durability::Relaxed;
        let wakeups = tokio::sync::broadcast::channel(256).0;
        let mut writer = Writer {
            conn,
            queues: HashMap::new(),
            buckets: HashMap::new(),
            next_token: 0,
            wakeups: wakeups.clone(),
            token_at_begin: 0,
            alone: false,
            alone_failed: false,
            durability,
            synchronous_full: durability != Durability::Relaxed,
            unsynced_since: None,
        };
        writer.skip_tokens()?;
        writer.reload()?;
        let shared = Arc::new(Shared {
            writer: Mutex::new(writer),
            pending: Mutex::new(Vec::new()),
            leading: AtomicBool::new(false),
            sync_within,
        });
        let (wake, woken) = mpsc::sync_channel(1);
        let thread_shared = shared.clone();
        std::thread::Builder::new()
            .name("flotilla-sqlite-writer".into())
            .spawn(move || thread_shared.run(&woken))
            .map_err(|e| StoreError::Internal(format!("cannot start the writer thread: {e}")))?;
        Ok(Self {
            shared,
            wake,
            relaxed,
            wakeups,
        })
    }

    /// Subscribes to the queues the store itself makes claimable (see [`Writer::wakeups`]).
    pub(crate) fn subscribe(&self) -> tokio::sync::broadcast::Receiver<String> {
        self.wakeups.subscribe()
    }

    /// Runs `f` inside the next group commit, led by the writer thread (see the module
    /// doc), and returns its result once that commit is durable.
    pub(crate) async fn call<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Writer) -> StoreResult<T> + Send + 'static,
    {
        self.call_led(Lead::Thread, Fsync::Now, f).await
    }

    /// Like [`WriterHandle::call`] for worker traffic: answered once the commit is
    /// written, fsynced within [`SYNC_WITHIN`] (see the module doc).
    pub(crate) async fn call_soon<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Writer) -> StoreResult<T> + Send + 'static,
    {
        self.call_led(Lead::Thread, Fsync::Soon, f).await
    }

    /// Like [`WriterHandle::call`], with `lead` saying whether the caller may lead and
    /// `sync` whether the commit must reach the disk first.
    pub(crate) async fn call_led<T, F>(&self, lead: Lead, sync: Fsync, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Writer) -> StoreResult<T> + Send + 'static,
    {
        let (reply_tx, reply_rx) = oneshot::channel();
        let op: Op = Box::new(move |w: Option<&mut Writer>| {
            let result = match w {
                Some(w) => w.in_savepoint(f),
                None => Err(StoreError::Unavailable("cannot open a transaction".into())),
            };
            Box::new(move |commit: Result<(), String>| {
                let answer = match commit {
                    Ok(()) => result,
                    Err(e) => Err(StoreError::Unavailable(format!("commit failed: {e}"))),
                };
                let _ = reply_tx.send(answer);
            })
        });
        lock(&self.shared.pending).push(Pending { op, sync });
        let may_lead = self.relaxed || lead == Lead::Caller;
        if may_lead && self.shared.try_lead() {
            let leading = Leading(self);
            if !self.relaxed {
                tokio::task::yield_now().await;
            }
            let unsynced = self.shared.commit_pending();
            drop(leading);
            if unsynced {
                // Only the writer thread syncs worker traffic: make sure it is counting.
                let _ = self.wake.try_send(());
            }
        } else if !self.shared.leading.load(Ordering::SeqCst) {
            // Full: a wake-up is already on its way, as good as this one.
            let _ = self.wake.try_send(());
        }
        reply_rx.await.map_err(|_| stopped())?
    }
}

/// Leadership held by a caller: released on drop (also when the caller's future is
/// dropped), handing what is still pending to the writer thread.
struct Leading<'a>(&'a WriterHandle);

impl Drop for Leading<'_> {
    fn drop(&mut self) {
        if self.0.shared.release() {
            let _ = self.0.wake.try_send(());
        }
    }
}

/// Locks `m`, ignoring poison: a panicking op leaves the connection sound (SQLite rolls
/// an unfinished transaction back at the next BEGIN) and the queue intact.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    fn try_lead(&self) -> bool {
        self.leading
            .compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
    }

    /// Gives up leadership; says whether calls are pending (that no one leads now).
    fn release(&self) -> bool {
        self.leading.store(false, Ordering::SeqCst);
        !lock(&self.pending).is_empty()
    }

    /// Commits the calls pending now (at most [`MAX_BATCH`]) as one batch; says whether
    /// commits are left unsynced (see [`Fsync::Soon`]).
    fn commit_pending(&self) -> bool {
        let ops: Vec<Pending> = {
            let mut pending = lock(&self.pending);
            let n = pending.len().min(MAX_BATCH);
            pending.drain(..n).collect()
        };
        if ops.is_empty() {
            return false;
        }
        let mut writer = lock(&self.writer);
        let run = std::panic::AssertUnwindSafe(|| writer.run_batch(ops));
        if std::panic::catch_unwind(run).is_err() {
            // A bug in a call: the batch's callers get no answer (an `unavailable` error),
            // and the next batch rolls back what it left half done.
            tracing::error!("sqlite: a call panicked; its batch is abandoned");
        }
        writer.unsynced_since.is_some()
    }

    /// The writer thread: when woken, leads until nothing is pending; fsyncs what worker
    /// traffic left unsynced once it is [`SYNC_WITHIN`] old.
    fn run(&self, woken: &mpsc::Receiver<()>) {
        loop {
            let unsynced_since = lock(&self.writer).unsynced_since;
            let wait = match unsynced_since {
                None => woken
                    .recv()
                    .map_err(|_| mpsc::RecvTimeoutError::Disconnected),
                Some(since) => woken.recv_timeout(self.sync_within.saturating_sub(since.elapsed())),
            };
            match wait {
                Ok(()) => {}
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if !self.sync_if_older_than(self.sync_within) {
                        continue;
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            }
            while self.try_lead() {
                loop {
                    self.commit_pending();
                    if lock(&self.pending).is_empty() {
                        break;
                    }
                }
                if !self.release() {
                    break;
                }
            }
        }
    }

    /// Makes the unsynced commits durable when the oldest is `age` old; says whether
    /// calls came meanwhile (that no one leads now).
    fn sync_if_older_than(&self, age: Duration) -> bool {
        if !self.try_lead() {
            return false; // a leader is committing, and syncs or hands over
        }
        lock(&self.writer).sync_if_older_than(age);
        self.release()
    }
}

fn stopped() -> StoreError {
    StoreError::Unavailable("the SQLite writer stopped or the call's batch failed".into())
}

impl Writer {
    fn run_batch(&mut self, ops: Vec<Pending>) {
        if !self.conn.is_autocommit() {
            // A batch panicked midway (its callers got no answer, as if the writer had
            // stopped): undo what it left behind, and reload what it may have cached.
            tracing::error!("sqlite: a batch was interrupted; rolling it back");
            let _ = self.exec("ROLLBACK");
            if let Err(e) = self.reload() {
                tracing::error!(error = %e, "sqlite: cannot reload caches after an interrupted batch");
            }
        }
        let durable = ops.iter().any(|p| p.sync == Fsync::Now);
        let began = self
            .wait_for_disk(durable)
            .and_then(|()| self.exec("BEGIN IMMEDIATE"));
        if let Err(e) = began {
            let msg = e.to_string();
            tracing::error!(error = %msg, "sqlite: cannot begin a transaction");
            for p in ops {
                (p.op)(None)(Err(msg.clone()));
            }
            return;
        }
        self.token_at_begin = self.next_token;
        self.alone = ops.len() == 1;
        self.alone_failed = false;
        let replies: Vec<Reply> = ops.into_iter().map(|p| (p.op)(Some(self))).collect();
        let commit = if self.alone_failed {
            self.exec("ROLLBACK").map_err(|e| e.to_string())
        } else {
            self.commit()
        };
        if commit.is_ok() {
            self.committed();
        }
        if let Err(e) = &commit {
            tracing::error!(error = %e, "sqlite: commit failed; the batch is rolled back");
            let _ = self.conn.execute_batch("ROLLBACK");
            if let Err(e) = self.reload() {
                tracing::error!(error = %e, "sqlite: cannot reload caches after a failed commit");
            }
        }
        for reply in replies {
            reply(commit.clone());
        }
    }

    fn commit(&mut self) -> Result<(), String> {
        if self.next_token != self.token_at_begin {
            self.conn
                .execute(
                    "UPDATE meta SET value = ?1 WHERE key = 'next_token'",
                    [self.next_token],
                )
                .map_err(|e| e.to_string())?;
        }
        self.exec("COMMIT").map_err(|e| e.to_string())
    }

    /// Sets whether the next commit waits for the disk: always with `strict`, never with
    /// `relaxed`, with `full` when the batch is `durable` (see the module doc).
    fn wait_for_disk(&mut self, durable: bool) -> rusqlite::Result<()> {
        let full = match self.durability {
            Durability::Strict => true,
            Durability::Full => durable,
            Durability::Relaxed => false,
        };
        if full != self.synchronous_full {
            let setting = if full { "FULL" } else { "NORMAL" };
            self.conn
                .execute_batch(&format!("PRAGMA synchronous = {setting}"))?;
            self.synchronous_full = full;
        }
        Ok(())
    }

    /// Notes a commit: a synced one syncs every commit before it too.
    fn committed(&mut self) {
        if self.synchronous_full {
            self.unsynced_since = None;
        } else if self.durability == Durability::Full && self.unsynced_since.is_none() {
            self.unsynced_since = Some(Instant::now());
        }
    }

    /// Fsyncs the unsynced commits when the oldest is `age` old (a failure is logged, and
    /// the next attempt tries again).
    fn sync_if_older_than(&mut self, age: Duration) {
        if self
            .unsynced_since
            .is_some_and(|since| since.elapsed() >= age)
            && let Err(e) = self.sync()
        {
            tracing::error!(error = %e, "sqlite: cannot fsync worker traffic; retrying");
        }
    }

    /// Fsyncs every commit so far, with a commit that waits for the disk (SQLite syncs
    /// the whole log, earlier commits included).
    fn sync(&mut self) -> rusqlite::Result<()> {
        self.wait_for_disk(true)?;
        self.conn.execute_batch(
            "BEGIN IMMEDIATE; UPDATE meta SET value = value WHERE key = 'next_token'; COMMIT",
        )?;
        self.committed();
        Ok(())
    }

    /// Moves the lease-token sequence on by [`TOKEN_GAP`], durably, before any claim.
    fn skip_tokens(&mut self) -> StoreResult<()> {
        self.wait_for_disk(true).map_err(sql_err)?;
        self.conn
            .execute(
                "UPDATE meta SET value = value + ?1 WHERE key = 'next_token'",
                [TOKEN_GAP],
            )
            .map_err(sql_err)?;
        Ok(())
    }

    /// Runs a statement without parameters through the statement cache.
    fn exec(&self, sql: &str) -> rusqlite::Result<()> {
        self.conn.prepare_cached(sql)?.execute([]).map(drop)
    }

    /// Runs `f` inside a savepoint, rolled back if `f` fails.
    fn in_savepoint<T>(&mut self, f: impl FnOnce(&mut Writer) -> StoreResult<T>) -> StoreResult<T> {
        if self.alone {
            let result = f(self);
            self.alone_failed = result.is_err();
            return result;
        }
        self.exec("SAVEPOINT op").map_err(sql_err)?;
        let result = f(self);
        if result.is_err() {
            self.exec("ROLLBACK TO op").map_err(sql_err)?;
        }
        self.exec("RELEASE op").map_err(sql_err)?;
        result
    }

    /// Reloads the caches from the database.
    fn reload(&mut self) -> StoreResult<()> {
        self.queues = crate::read::queue_configs(&self.conn)?
            .into_iter()
            .map(|q| (q.name.clone(), q))
            .collect();
        self.next_token = self
            .conn
            .query_row("SELECT value FROM meta WHERE key = 'next_token'", [], |r| {
                r.get(0)
            })
            .map_err(sql_err)?;
        Ok(())
    }

    /// The settings of `name`, or `QueueNotFound`.
    pub(crate) fn queue(&self, name: &str) -> StoreResult<&QueueConfig> {
        self.queues
            .get(name)
            .ok_or_else(|| StoreError::QueueNotFound(name.into()))
    }

    /// Reserves `n` fresh lease tokens and returns the first.
    pub(crate) fn take_tokens(&mut self, n: usize) -> i64 {
        let first = self.next_token;
        self.next_token += i64::try_from(n).unwrap_or(i64::MAX);
        first
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handle() -> (tempfile::TempDir, WriterHandle) {
        handle_with(Durability::Full, SYNC_WITHIN)
    }

    fn handle_with(
        durability: Durability,
        sync_within: Duration,
    ) -> (tempfile::TempDir, WriterHandle) {
        let dir = tempfile::tempdir().unwrap();
        let conn = crate::schema::open_writer(&dir.path().join("w.db"), durability).unwrap();
        let writer = WriterHandle::spawn_syncing_within(conn, durability, sync_within).unwrap();
        (dir, writer)
    }

    fn unsynced(writer: &WriterHandle) -> bool {
        lock(&writer.shared.writer).unsynced_since.is_some()
    }

    async fn add_cron(writer: &WriterHandle, sync: Fsync, name: &'static str) {
        writer
            .call_led(Lead::Thread, sync, move |w: &mut Writer| {
                w.conn
                    .execute(
                        "INSERT INTO cron (name, schedule, last_fired_at) VALUES (?1, '{}', 0)",
                        [name],
                    )
                    .map(drop)
                    .map_err(sql_err)
            })
            .await
            .unwrap();
    }

    /// With `full` durability, worker traffic alone is left unsynced and the next durable
    /// commit syncs it; `strict` syncs every commit, `relaxed` none (nothing to track).
    #[tokio::test]
    async fn worker_traffic_waits_for_the_disk_as_durability_says() {
        let hour = Duration::from_secs(3600);
        let (_dir, full) = handle_with(Durability::Full, hour);
        add_cron(&full, Fsync::Soon, "a").await;
        assert!(
            unsynced(&full),
            "worker traffic alone is not fsynced at once"
        );
        add_cron(&full, Fsync::Soon, "b").await;
        assert!(unsynced(&full));
        add_cron(&full, Fsync::Now, "c").await;
        assert!(!unsynced(&full), "a durable commit syncs what came before");
        for durability in [Durability::Strict, Durability::Relaxed] {
            let (_dir, writer) = handle_with(durability, hour);
            add_cron(&writer, Fsync::Soon, "a").await;
            assert!(!unsynced(&writer), "{durability:?}");
        }
    }

    /// The writer syncs worker traffic once it is old enough, without any other commit
    /// coming.
    #[tokio::test]
    async fn unsynced_worker_traffic_is_synced_when_due() {
        let (_dir, writer) = handle_with(Durability::Full, Duration::from_secs(3600));
        add_cron(&writer, Fsync::Soon, "a").await;
        // The writer thread itself waits an hour; the check it makes then, made now:
        lock(&writer.shared.writer).sync_if_older_than(Duration::from_secs(3600));
        assert!(unsynced(&writer), "not due yet");
        lock(&writer.shared.writer).sync_if_older_than(Duration::ZERO);
        assert!(!unsynced(&writer), "due: synced");
    }

    /// Every start moves the lease-token sequence on by [`TOKEN_GAP`], durably: tokens a
    /// power cut erased with their claims are never handed out again.
    #[test]
    fn every_start_skips_a_gap_of_lease_tokens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.db");
        let next_token = |writer: &WriterHandle| lock(&writer.shared.writer).next_token;
        let first = {
            let conn = crate::schema::open_writer(&path, Durability::Full).unwrap();
            let writer = WriterHandle::spawn(conn, Durability::Full).unwrap();
            next_token(&writer)
        };
        let conn = crate::schema::open_writer(&path, Durability::Full).unwrap();
        let writer = WriterHandle::spawn(conn, Durability::Full).unwrap();
        assert_eq!(next_token(&writer), first + TOKEN_GAP);
    }

    async fn count(writer: &WriterHandle) -> i64 {
        writer
            .call(|w| {
                w.conn
                    .query_row("SELECT count(*) FROM cron", [], |r| r.get(0))
                    .map_err(sql_err)
            })
            .await
            .unwrap()
    }

    /// A call that panics (a bug) loses its own answer, and its half-done transaction is
    /// rolled back; the writer keeps serving, whoever led the batch.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panicking_call_does_not_stop_the_writer() {
        let (_dir, writer) = handle();
        for lead in [Lead::Caller, Lead::Thread] {
            let w = writer.clone();
            let panicked = tokio::spawn(async move {
                w.call_led(lead, Fsync::Now, |w: &mut Writer| -> StoreResult<()> {
                    w.conn
                        .execute(
                            "INSERT INTO cron (name, schedule, last_fired_at) VALUES ('x', '{}', 0)",
                            [],
                        )
                        .map_err(sql_err)?;
                    panic!("a bug");
                })
                .await
            })
            .await;
            let answer = panicked.expect("the panic stays in the writer");
            assert_eq!(
                answer.unwrap_err().code(),
                flotilla_core::ErrorCode::Unavailable
            );
            assert_eq!(
                count(&writer).await,
                0,
                "the half-done insert was rolled back"
            );
        }
    }
}
