//! The single writer thread and its group commit.
//!
//! SQLite allows one writer at a time, so instead of many connections fighting over the
//! write lock, one thread owns the write connection and executes every mutating call. It
//! takes all calls waiting in its channel (up to [`MAX_BATCH`]), runs each inside its own
//! savepoint (a failing call rolls back alone), and commits them together: one fsync for
//! the whole batch. Each caller is answered only after that commit, so an acknowledged
//! enqueue is on disk. Under load, batches grow by themselves; when idle, a call commits
//! at once.

use std::collections::HashMap;
use std::sync::mpsc;

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

/// The handle through which calls reach the writer thread.
#[derive(Clone)]
pub(crate) struct WriterHandle {
    tx: mpsc::Sender<Op>,
}

impl WriterHandle {
    /// Starts the writer thread on `conn`.
    pub(crate) fn spawn(conn: Connection) -> StoreResult<Self> {
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
        let (tx, rx) = mpsc::channel::<Op>();
        std::thread::Builder::new()
            .name("flotilla-sqlite-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| StoreError::Internal(format!("cannot start the writer thread: {e}")))?;
        Ok(Self { tx })
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
        self.tx.send(op).map_err(|_| stopped())?;
        reply_rx.await.map_err(|_| stopped())?
    }
}

fn stopped() -> StoreError {
    StoreError::Unavailable("the SQLite writer thread has stopped".into())
}

impl Writer {
    fn run(mut self, rx: mpsc::Receiver<Op>) {
        while let Ok(first) = rx.recv() {
            let mut ops = vec![first];
            while ops.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(op) => ops.push(op),
                    Err(_) => break,
                }
            }
            self.run_batch(ops);
        }
    }

    fn run_batch(&mut self, ops: Vec<Op>) {
        if let Err(e) = self.conn.execute_batch("BEGIN IMMEDIATE") {
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
            self.conn
                .execute_batch("ROLLBACK")
                .map_err(|e| e.to_string())
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
        self.conn.execute_batch("COMMIT").map_err(|e| e.to_string())
    }

    /// Runs `f` inside a savepoint, rolled back if `f` fails.
    fn in_savepoint<T>(&mut self, f: impl FnOnce(&mut Writer) -> StoreResult<T>) -> StoreResult<T> {
        if self.alone {
            let result = f(self);
            self.alone_failed = result.is_err();
            return result;
        }
        self.conn.execute_batch("SAVEPOINT op").map_err(sql_err)?;
        let result = f(self);
        let end = if result.is_ok() {
            "RELEASE op"
        } else {
            "ROLLBACK TO op; RELEASE op"
        };
        self.conn.execute_batch(end).map_err(sql_err)?;
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
