//! Wakeups across servers: `LISTEN`/`NOTIFY`.
//!
//! **Sending.** Every connection of the pool carries the store's channel in the session
//! setting `flotilla.notify` (set at connect time, like `search_path`). The statements that
//! make jobs claimable name the queues concerned, most through `counts::COUNTS` (a job of
//! the queue became available, or a running job of a queue with a concurrency or
//! group-concurrency limit stopped running: a slot was freed); resuming a queue and
//! changing an existing queue's settings name theirs too. A store call collects them in a
//! [`Woken`] and, once its transaction has committed, announces them in one statement of
//! their own on the same connection, outside any transaction:
//! `pg_notify(current_setting('flotilla.notify'), queue)` per queue, each queue once.
//!
//! Why not `NOTIFY` inside the writing transaction, where delivery would be tied to the
//! commit: PostgreSQL holds a cluster-wide lock from a notifying transaction's commit
//! through its WAL flush, so notifying commits cannot share fsyncs. A transaction that
//! writes nothing but the notification flushes no WAL and holds that lock only briefly.
//! The price is that a failure between the commit and the announcement (a lost
//! connection, a full notification queue) loses the announcement: it is logged, the call
//! still succeeds (its change is committed), and waiting workers find the work at their
//! next poll.
//!
//! **Channel.** `flotilla_<schema>` (`public` without a schema), so stores in different
//! schemas of one database never wake each other; a schema name too long for a channel
//! (63 bytes) is shortened and completed with a hash of the whole name.
//!
//! **Listening.** Each [`PgStore`](crate::PgStore) (and its clones) has one background task
//! holding a dedicated connection, outside the pool, that runs `LISTEN` and forwards each
//! payload to a `broadcast` channel ([`CAPACITY`] wakeups; a receiver that lags loses the
//! oldest ones, which is harmless: servers poll as well). A dropped connection, or one that
//! stops answering the periodic ping, is replaced with backoff (100 ms doubling to 5 s);
//! once listening again, the task sends a wakeup for every queue, since notifications sent
//! while it was away are lost. The task ends when the last clone of the store is dropped.

use std::time::Duration;

use deadpool_postgres::GenericClient;
use tokio::sync::{broadcast, oneshot};
use tokio_postgres::{AsyncMessage, NoTls, Row};

use crate::error::PgError;
use crate::row::get;

/// Wakeups a receiver may fall behind by before it loses the oldest.
pub(crate) const CAPACITY: usize = 1024;
/// The session setting that holds the channel; queues are named and announced only when
/// it is set.
pub(crate) const SETTING: &str = "flotilla.notify";
/// First delay before connecting again; doubled on each failure up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How often the idle listening connection is checked, and how long the check may take: a
/// connection that died without closing (a lost network path) is noticed this way.
const PING_EVERY: Duration = Duration::from_secs(30);
const PING_TIMEOUT: Duration = Duration::from_secs(10);

/// Announces the queues `$1` on the connection's channel, when it has one.
const ANNOUNCE: &str = "SELECT pg_notify(current_setting('flotilla.notify'), q)
     FROM unnest($1::text[]) AS q
     WHERE coalesce(current_setting('flotilla.notify', true), '') <> ''";

/// The queues one store call made claimable, announced by [`Woken::send`] after its commit.
#[derive(Debug, Default)]
pub(crate) struct Woken(Vec<String>);

impl Woken {
    /// Adds the queues of a [`WOKEN`](crate::counts::WOKEN) column, column `idx` of `rows`
    /// (every row carries the same list).
    pub(crate) fn read(&mut self, rows: &[Row], idx: usize) -> Result<(), PgError> {
        if let Some(row) = rows.first() {
            let queues: Option<Vec<String>> = get(row, idx)?;
            self.0.extend(queues.into_iter().flatten());
        }
        Ok(())
    }

    /// Adds `queue`.
    pub(crate) fn add(&mut self, queue: &str) {
        self.0.push(queue.to_owned());
    }

    /// Announces the queues (each once) in one statement on `c`, which must not be in a
    /// transaction: call it once the change has committed. A failure is logged, not
    /// returned: the change stands, and a lost wakeup only costs a waiting worker its poll.
    pub(crate) async fn send<C: GenericClient>(mut self, c: &C) {
        if self.0.is_empty() {
            return;
        }
        self.0.sort_unstable();
        self.0.dedup();
        let sent = async {
            let stmt = c.prepare_cached(ANNOUNCE).await?;
            c.execute(&stmt, &[&self.0]).await
        };
        if let Err(e) = sent.await {
            tracing::warn!(queues = ?self.0, error = %e, "postgres: cannot announce wakeups; workers will find the jobs when they poll");
        }
    }
}

/// The channel of the store in `schema`: `flotilla_<schema>`, or for a long name its first
/// 36 characters and a hash of the whole (a channel name has at most 63 bytes).
pub(crate) fn channel(schema: Option<&str>) -> String {
    let schema = schema.unwrap_or("public");
    let full = format!("flotilla_{schema}");
    if full.len() <= 63 {
        return full;
    }
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in schema.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    // Schema names are ASCII (checked at connect), so any cut is a character boundary.
    format!("flotilla_{}_{hash:016x}", &schema[..36])
}

/// The listening task of a store; dropping it stops the task and closes its connection.
pub(crate) struct Listener {
    sender: broadcast::Sender<String>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Listener {
    /// Starts listening on `channel` with a connection made from `config`, and returns once
    /// `LISTEN` has taken effect, so that every change committed after this returns is
    /// announced to its receivers.
    pub(crate) async fn start(
        config: tokio_postgres::Config,
        channel: String,
    ) -> Result<Self, PgError> {
        let (sender, _) = broadcast::channel(CAPACITY);
        let (ready, listening) = oneshot::channel();
        let task = tokio::spawn(run(config, channel, sender.clone(), ready));
        let listener = Self { sender, task };
        match listening.await {
            Ok(Ok(())) => Ok(listener),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(PgError::Decode("the listening task ended".into())),
        }
    }

    /// A new receiver of queue names.
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<String> {
        self.sender.subscribe()
    }
}

/// Listens until aborted: one session after another, with backoff between them.
async fn run(
    config: tokio_postgres::Config,
    channel: String,
    sender: broadcast::Sender<String>,
    ready: oneshot::Sender<Result<(), PgError>>,
) {
    let mut ready = Some(ready);
    let mut delay = MIN_BACKOFF;
    let mut resync = false;
    loop {
        let (listened, error) = session(&config, &channel, &sender, resync, &mut ready).await;
        if listened {
            delay = MIN_BACKOFF;
            resync = true;
        }
        if let Some(ready) = ready.take() {
            // Connecting failed before the first LISTEN: the caller gives up.
            let _ = ready.send(Err(error));
            return;
        }
        tracing::warn!(%channel, error = %error, retry_in = ?delay, "postgres: wakeup listener lost its connection");
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(MAX_BACKOFF);
    }
}

/// One connection: `LISTEN`, then (after a reconnect) a wakeup for every queue, then
/// forwards notifications until the connection fails. Answers whether `LISTEN` took
/// effect, and why the session ended.
async fn session(
    config: &tokio_postgres::Config,
    channel: &str,
    sender: &broadcast::Sender<String>,
    resync: bool,
    ready: &mut Option<oneshot::Sender<Result<(), PgError>>>,
) -> (bool, PgError) {
    let (client, mut connection) = match config.connect(NoTls).await {
        Ok(pair) => pair,
        Err(e) => return (false, e.into()),
    };
    let mut listened = false;
    // Drives the connection (the client's statements too) and forwards notifications.
    let forward = async {
        loop {
            match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                Some(Ok(AsyncMessage::Notification(n))) => {
                    // No receiver at the moment is fine.
                    let _ = sender.send(n.payload().to_owned());
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return PgError::from(e),
                None => return PgError::Decode("the listening connection closed".into()),
            }
        }
    };
    let listen = async {
        if let Err(e) = client.batch_execute(&format!("LISTEN \"{channel}\"")).await {
            return PgError::from(e);
        }
        listened = true;
        if let Some(ready) = ready.take() {
            let _ = ready.send(Ok(()));
        }
        if resync {
            // Whatever was announced while no one listened: every queue may have work.
            match client
                .query("SELECT name FROM queues ORDER BY name", &[])
                .await
            {
                Ok(rows) => {
                    for row in rows {
                        if let Ok(name) = row.try_get::<_, String>(0) {
                            let _ = sender.send(name);
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "postgres: cannot list queues to wake"),
            }
        }
        loop {
            tokio::time::sleep(PING_EVERY).await;
            match tokio::time::timeout(PING_TIMEOUT, client.simple_query("")).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return PgError::from(e),
                Err(_) => {
                    return PgError::Decode("the listening connection stopped answering".into());
                }
            }
        }
    };
    let error = tokio::select! {
        e = forward => e,
        e = listen => e,
    };
    (listened, error)
}

#[cfg(test)]
mod tests {
    use super::channel;

    #[test]
    fn channels_are_per_schema_and_fit() {
        assert_eq!(channel(None), "flotilla_public");
        assert_eq!(channel(Some("tenant_a")), "flotilla_tenant_a");
        let long_a = format!("{}a", "x".repeat(62));
        let long_b = format!("{}b", "x".repeat(62));
        for c in [channel(Some(&long_a)), channel(Some(&long_b))] {
            assert!(c.len() <= 63, "{c}");
        }
        assert_ne!(channel(Some(&long_a)), channel(Some(&long_b)));
        assert_eq!(channel(Some(&long_a)), channel(Some(&long_a)));
    }
}
