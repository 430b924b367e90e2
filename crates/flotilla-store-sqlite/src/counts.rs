//! Per-queue counts by state, throughput counters and per-group counts, changed in the same
//! savepoint as the jobs they count. A write collects its changes in [`Changes`] and
//! flushes them once at its end: one statement per queue and per group touched, not per job.

use std::collections::HashMap;

use flotilla_core::JobState;
use flotilla_store::StoreResult;
use rusqlite::{Connection, params};

use crate::sql_err;

/// A throughput counter.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Counter {
    Enqueued,
    Succeeded,
    Failed,
    Retried,
    Dead,
    Cancelled,
    LeaseExpired,
}

#[derive(Default)]
struct QueueDelta {
    counts: [i64; 6],
    totals: [i64; 7],
}

/// The count changes of one write.
#[derive(Default)]
pub(crate) struct Changes {
    queues: HashMap<String, QueueDelta>,
    /// (queue, group) → (available, running) changes.
    groups: HashMap<(String, String), (i64, i64)>,
}

impl Changes {
    /// A job of `queue` (in `group`) moved from `from` to `to`; `None` means it was
    /// created or deleted.
    pub(crate) fn moved(
        &mut self,
        queue: &str,
        group: Option<&str>,
        from: Option<JobState>,
        to: Option<JobState>,
    ) {
        if from == to {
            return;
        }
        let delta = self.queue(queue);
        if let Some(s) = from {
            delta.counts[s as usize] -= 1;
        }
        if let Some(s) = to {
            delta.counts[s as usize] += 1;
        }
        if let Some(group) = group {
            let (mut available, mut running) = (0, 0);
            for (state, sign) in [(from, -1), (to, 1)] {
                match state {
                    Some(JobState::Available) => available += sign,
                    Some(JobState::Running) => running += sign,
                    _ => {}
                }
            }
            if available != 0 || running != 0 {
                let entry = self
                    .groups
                    .entry((queue.to_owned(), group.to_owned()))
                    .or_default();
                entry.0 += available;
                entry.1 += running;
            }
        }
    }

    /// `n` jobs of `queue` in a state that no group counts (scheduled or terminal) were
    /// deleted.
    pub(crate) fn deleted(&mut self, queue: &str, state: JobState, n: i64) {
        debug_assert!(!matches!(state, JobState::Available | JobState::Running));
        self.queue(queue).counts[state as usize] -= n;
    }

    /// Adds `n` to a throughput counter of `queue`.
    pub(crate) fn count(&mut self, queue: &str, counter: Counter, n: i64) {
        self.queue(queue).totals[counter as usize] += n;
    }

    fn queue(&mut self, queue: &str) -> &mut QueueDelta {
        if !self.queues.contains_key(queue) {
            self.queues.insert(queue.to_owned(), QueueDelta::default());
        }
        self.queues.get_mut(queue).expect("inserted above")
    }

    /// Writes the changes.
    pub(crate) fn flush(self, conn: &Connection) -> StoreResult<()> {
        if !self.queues.is_empty() {
            let mut stmt = conn
                .prepare_cached(
                    "UPDATE queues SET
                        n_scheduled = n_scheduled + ?2, n_available = n_available + ?3,
                        n_running = n_running + ?4, n_succeeded = n_succeeded + ?5,
                        n_cancelled = n_cancelled + ?6, n_dead = n_dead + ?7,
                        t_enqueued = t_enqueued + ?8, t_succeeded = t_succeeded + ?9,
                        t_failed = t_failed + ?10, t_retried = t_retried + ?11, t_dead = t_dead + ?12,
                        t_cancelled = t_cancelled + ?13, t_lease_expired = t_lease_expired + ?14
                     WHERE name = ?1",
                )
                .map_err(sql_err)?;
            for (queue, d) in &self.queues {
                let [s, a, r, ok, c, dead] = d.counts;
                let [te, ts, tf, tr, td, tc, tl] = d.totals;
                stmt.execute(params![
                    queue, s, a, r, ok, c, dead, te, ts, tf, tr, td, tc, tl
                ])
                .map_err(sql_err)?;
            }
        }
        if !self.groups.is_empty() {
            let mut upsert = conn
                .prepare_cached(
                    "INSERT INTO job_groups (queue, group_key, available, running) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (queue, group_key) DO UPDATE SET
                        available = available + excluded.available, running = running + excluded.running",
                )
                .map_err(sql_err)?;
            let mut prune = conn
                .prepare_cached(
                    "DELETE FROM job_groups WHERE queue = ?1 AND group_key = ?2 AND available <= 0 AND running <= 0",
                )
                .map_err(sql_err)?;
            for ((queue, group), (available, running)) in &self.groups {
                upsert
                    .execute(params![queue, group, available, running])
                    .map_err(sql_err)?;
                prune.execute(params![queue, group]).map_err(sql_err)?;
            }
        }
        Ok(())
    }
}

/// Recomputes the group counts of `queue` from its jobs (after its grouping changed).
pub(crate) fn rebuild_groups(conn: &Connection, queue: &str) -> StoreResult<()> {
    conn.execute("DELETE FROM job_groups WHERE queue = ?1", [queue])
        .map_err(sql_err)?;
    conn.execute(
        "INSERT INTO job_groups (queue, group_key, available, running)
         SELECT queue, group_key, SUM(state = 1), SUM(state = 2) FROM jobs
         WHERE queue = ?1 AND group_key IS NOT NULL AND state IN (1, 2)
         GROUP BY group_key",
        [queue],
    )
    .map_err(sql_err)?;
    Ok(())
}
