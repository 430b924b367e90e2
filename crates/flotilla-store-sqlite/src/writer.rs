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

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, mpsc};

use flotilla_core::QueueConfig;
use flotilla_store::{StoreError, StoreResult};
use rusqlite::Connection;
use tokio::sync::oneshot;

use crate::sql_err;

/// The most calls committed together.
const MAX_BATCH: usize = 512;

/// A call to run in a batch (or, given `None`, to refuse because no transaction could be
/// opened); returns what to do once the commit is known.
type Op = Box<dyn FnOnce(Option<&mut Writer>) -> Reply + Send>;
type Reply = Box<dyn FnOnce(Result<(), String>) + Send>;

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
    pending: Mutex<Vec<Op>>,
    /// A leader is committing and will look at `pending` again before it stops.
    leading: AtomicBool,
}

impl WriterHandle {
    /// Starts the writer thread on `conn`; `relaxed` when commits do not wait for the disk.
    pub(crate) fn spawn(conn: Connection, relaxed: bool) -> StoreResult<Self> {
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
        };
        writer.reload()?;
        let shared = Arc::new(Shared {
            writer: Mutex::new(writer),
            pending: Mutex::new(Vec::new()),
            leading: AtomicBool::new(false),
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
        self.call_led(Lead::Thread, f).await
    }

    /// Like [`WriterHandle::call`], with `lead` saying whether the caller may lead.
    pub(crate) async fn call_led<T, F>(&self, lead: Lead, f: F) -> StoreResult<T>
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
        lock(&self.shared.pending).push(op);
        let may_lead = self.relaxed || lead == Lead::Caller;
        if may_lead && self.shared.try_lead() {
            let leading = Leading(self);
            if !self.relaxed {
                tokio::task::yield_now().await;
            }
            self.shared.commit_pending();
            drop(leading);
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

    /// Commits the calls pending now (at most [`MAX_BATCH`]) as one batch.
    fn commit_pending(&self) {
        let ops: Vec<Op> = {
            let mut pending = lock(&self.pending);
            let n = pending.len().min(MAX_BATCH);
            pending.drain(..n).collect()
        };
        if ops.is_empty() {
            return;
        }
        let mut writer = lock(&self.writer);
        let run = std::panic::AssertUnwindSafe(|| writer.run_batch(ops));
        if std::panic::catch_unwind(run).is_err() {
            // A bug in a call: the batch's callers get no answer (an `unavailable` error),
            // and the next batch rolls back what it left half done.
            tracing::error!("sqlite: a call panicked; its batch is abandoned");
        }
    }

    /// The writer thread: when woken, leads until nothing is pending.
    fn run(&self, woken: &mpsc::Receiver<()>) {
        while woken.recv().is_ok() {
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
}

fn stopped() -> StoreError {
    StoreError::Unavailable("the SQLite writer stopped or the call's batch failed".into())
}

impl Writer {
    fn run_batch(&mut self, ops: Vec<Op>) {
        if !self.conn.is_autocommit() {
            // A batch panicked midway (its callers got no answer, as if the writer had
            // stopped): undo what it left behind, and reload what it may have cached.
            tracing::error!("sqlite: a batch was interrupted; rolling it back");
            let _ = self.exec("ROLLBACK");
            if let Err(e) = self.reload() {
                tracing::error!(error = %e, "sqlite: cannot reload caches after an interrupted batch");
            }
        }
        if let Err(e) = self.exec("BEGIN IMMEDIATE") {
            let msg = e.to_string();
            tracing::error!(error = %msg, "sqlite: cannot begin a transaction");
            for op in ops {
                op(None)(Err(msg.clone()));
            }
            return;
        }
        self.token_at_begin = self.next_token;
        self.alone = ops.len() == 1;
        self.alone_failed = false;
        let replies: Vec<Reply> = ops.into_iter().map(|op| op(Some(self))).collect();
        let commit = if self.alone_failed {
            self.exec("ROLLBACK").map_err(|e| e.to_string())
        } else {
            self.commit()
        };
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
        let dir = tempfile::tempdir().unwrap();
        let conn =
            crate::schema::open_writer(&dir.path().join("w.db"), crate::Durability::Full).unwrap();
        let writer = WriterHandle::spawn(conn, false).unwrap();
        (dir, writer)
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
                w.call_led(lead, |w: &mut Writer| -> StoreResult<()> {
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
