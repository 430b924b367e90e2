//! The single writer thread and its group commit.
//!
//! SQLite allows one writer at a time, so instead of many connections fighting over the
//! write lock, one thread owns the write connection and executes every mutating call. It
//! takes all calls waiting in its channel (up to [`MAX_BATCH`]), runs each inside its own
//! savepoint (a failing call rolls back alone), and commits them together: one fsync for
//! the whole batch. Each caller is answered only after that commit, so an acknowledged
//! enqueue is on disk. Under load, batches grow by themselves; when idle, a call commits
//! at once. The thread lets the caller's runtime go on parsing and answering requests
//! while a commit waits for its fsync, and those requests join the next batch.
//!
//! With relaxed durability a commit does not wait for the disk, so a call that finds the
//! writer idle (nothing queued, the connection free) runs right away on the caller's
//! thread: it costs tens of microseconds, and skipping the two thread hand-offs (each a
//! wake-up of a sleeping thread) makes a lone call about a third faster. With full
//! durability that would stall the caller's runtime thread for the fsync, so every call
//! goes through the writer thread. (Tried and measured: letting the caller lead full
//! commits too nearly doubled a lone producer's rate but halved a worker's drain, whose
//! poll and acknowledgement requests then no longer overlapped an fsync.)

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, mpsc};

use flotilla_core::QueueConfig;
use flotilla_store::{StoreError, StoreResult};
use rusqlite::Connection;
use tokio::sync::oneshot;

use crate::sql_err;

/// The most calls committed together.
const MAX_BATCH: usize = 512;

/// A call to run on the writer thread (or, given `None`, to refuse because no transaction
/// could be opened); returns what to do once the commit is known.
type Op = Box<dyn FnOnce(Option<&mut Writer>) -> Reply + Send>;
type Reply = Box<dyn FnOnce(Result<(), String>) + Send>;

/// State owned by the writer thread: the write connection and caches of what only it
/// changes (queue settings, the lease-token sequence, rate-limit buckets). An op that
/// changes a cache does so as its last step, after its SQL succeeded; a failed commit
/// reloads the caches.
pub(crate) struct Writer {
    pub(crate) conn: Connection,
    pub(crate) queues: HashMap<String, QueueConfig>,
    pub(crate) buckets: HashMap<String, crate::claim::Bucket>,
    pub(crate) next_token: i64,
    token_at_begin: i64,
    /// The batch has one call, which then needs no savepoint: the transaction is its own.
    alone: bool,
    /// The lone call failed: roll the transaction back instead of committing.
    alone_failed: bool,
}

/// The handle through which calls reach the writer.
#[derive(Clone)]
pub(crate) struct WriterHandle {
    tx: mpsc::Sender<Op>,
    shared: Arc<Shared>,
    /// Whether an idle writer may run a call on the caller's thread.
    inline: bool,
}

/// What the handles and the writer thread share.
struct Shared {
    /// Held while a batch runs, by the writer thread or an inline caller.
    writer: Mutex<Writer>,
    /// Calls sent to the writer thread and not yet taken by it.
    queued: AtomicUsize,
}

impl WriterHandle {
    /// Starts the writer thread on `conn`; `inline` lets calls that find the writer idle
    /// run on the caller's thread (for commits that do not wait for the disk).
    pub(crate) fn spawn(conn: Connection, inline: bool) -> StoreResult<Self> {
        let mut writer = Writer {
            conn,
            queues: HashMap::new(),
            buckets: HashMap::new(),
            next_token: 0,
            token_at_begin: 0,
            alone: false,
            alone_failed: false,
        };
        writer.reload()?;
        let shared = Arc::new(Shared {
            writer: Mutex::new(writer),
            queued: AtomicUsize::new(0),
        });
        let (tx, rx) = mpsc::channel::<Op>();
        let thread_shared = shared.clone();
        std::thread::Builder::new()
            .name("flotilla-sqlite-writer".into())
            .spawn(move || thread_shared.run(&rx))
            .map_err(|e| StoreError::Internal(format!("cannot start the writer thread: {e}")))?;
        Ok(Self { tx, shared, inline })
    }

    /// Runs `f` on the writer thread inside the next group commit and returns its result
    /// once that commit is durable.
    pub(crate) async fn call<T, F>(&self, f: F) -> StoreResult<T>
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
        if self.inline
            && self.shared.queued.load(Ordering::Acquire) == 0
            && let Ok(mut writer) = self.shared.writer.try_lock()
        {
            writer.run_batch(vec![op]);
        } else {
            self.shared.queued.fetch_add(1, Ordering::AcqRel);
            self.tx.send(op).map_err(|_| stopped())?;
        }
        reply_rx.await.map_err(|_| stopped())?
    }
}

/// Locks `m`, ignoring poison: a panicking op leaves the connection sound (SQLite rolls
/// an unfinished transaction back at the next BEGIN).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    /// The writer thread: takes every call waiting (up to [`MAX_BATCH`]) and runs them as
    /// one batch.
    fn run(&self, rx: &mpsc::Receiver<Op>) {
        while let Ok(first) = rx.recv() {
            let mut ops = vec![first];
            while ops.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(op) => ops.push(op),
                    Err(_) => break,
                }
            }
            self.queued.fetch_sub(ops.len(), Ordering::AcqRel);
            lock(&self.writer).run_batch(ops);
        }
    }
}

fn stopped() -> StoreError {
    StoreError::Unavailable("the SQLite writer thread has stopped".into())
}

impl Writer {
    fn run_batch(&mut self, ops: Vec<Op>) {
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
