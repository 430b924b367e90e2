//! Per-queue counts by state, throughput counters and per-group counts, changed by the same
//! statement as the jobs they count.
//!
//! A writing statement names the jobs it moved in a CTE called `moved`, with the columns
//! `queue, group_key, from_state, to_state` (a `NULL` state: created or deleted) and one
//! integer per throughput counter (`enq, succ, failed, retried, dead, cancelled,
//! lease_expired`), and appends [`COUNTS`]: one `queue_counts` upsert per queue touched
//! (into the shard of the connection's backend, `pg_backend_pid() % 64`) and one
//! `job_groups` upsert per group touched, not one per job.
//!
//! Why shards: a counter row is locked from its update to the commit (the fsync, under
//! full durability). With one row per queue, every transaction on a queue would wait for
//! the previous one's commit, and more claimers would make a queue slower (measured: four
//! claimers at half the throughput of one). With a shard per connection, transactions on
//! different connections touch different rows and commit together. A queue's numbers are
//! the sum of its shards (at most 64 rows), read in one statement, so they are as
//! consistent as a single row.
//!
//! Lock order. Every transaction takes the `queue_counts` rows it changes (in queue order)
//! before the `job_groups` rows: the group upsert reads an aggregate of the count upsert,
//! so it cannot start before that is done. Job rows come before both; the `queues` row is
//! only locked by claims on limited queues (first, and they then only skip locked jobs)
//! and by `queue_upsert`.

/// The tail of a statement that has a `moved` CTE: the queues to wake (see `wakeup`), then
/// the count and counter updates. It starts with a comma, to follow the statement's other
/// CTEs. `wake` names each queue the statement made claimable: a job of it became
/// available, or a job left `running` in a queue with a concurrency or group-concurrency
/// limit (a slot was freed); none when the connection does not announce (`flotilla.notify`
/// unset). It is a plain `SELECT`, run only if something reads it: a statement that can
/// make jobs claimable selects [`WOKEN`], and its caller announces those queues after the
/// commit (`wakeup::Woken`); the others (claims, cancels, deletes) pay nothing for it.
pub(crate) const COUNTS: &str = ",
wake AS (
    SELECT m.queue
    FROM (
        SELECT queue, bool_or(to_state = 1) AS ready FROM moved
        WHERE (to_state = 1 OR from_state = 2)
            AND coalesce(current_setting('flotilla.notify', true), '') <> ''
        GROUP BY queue
    ) m JOIN queues qs ON qs.name = m.queue
    WHERE m.ready
        OR (qs.limited AND (qs.config::json ->> 'concurrency' IS NOT NULL
                            OR qs.config::json ->> 'group_concurrency' IS NOT NULL))
),
counted AS (
    INSERT INTO queue_counts AS q (queue, shard, n_scheduled, n_available, n_running,
        n_succeeded, n_cancelled, n_dead, t_enqueued, t_succeeded, t_failed, t_retried, t_dead,
        t_cancelled, t_lease_expired)
    SELECT queue, (pg_backend_pid() % 64)::smallint,
        count(*) FILTER (WHERE to_state = 0) - count(*) FILTER (WHERE from_state = 0),
        count(*) FILTER (WHERE to_state = 1) - count(*) FILTER (WHERE from_state = 1),
        count(*) FILTER (WHERE to_state = 2) - count(*) FILTER (WHERE from_state = 2),
        count(*) FILTER (WHERE to_state = 3) - count(*) FILTER (WHERE from_state = 3),
        count(*) FILTER (WHERE to_state = 4) - count(*) FILTER (WHERE from_state = 4),
        count(*) FILTER (WHERE to_state = 5) - count(*) FILTER (WHERE from_state = 5),
        sum(enq), sum(succ), sum(failed), sum(retried), sum(dead), sum(cancelled),
        sum(lease_expired)
    FROM moved GROUP BY queue ORDER BY queue
    ON CONFLICT (queue, shard) DO UPDATE SET
        n_scheduled = q.n_scheduled + excluded.n_scheduled,
        n_available = q.n_available + excluded.n_available,
        n_running = q.n_running + excluded.n_running,
        n_succeeded = q.n_succeeded + excluded.n_succeeded,
        n_cancelled = q.n_cancelled + excluded.n_cancelled,
        n_dead = q.n_dead + excluded.n_dead,
        t_enqueued = q.t_enqueued + excluded.t_enqueued,
        t_succeeded = q.t_succeeded + excluded.t_succeeded,
        t_failed = q.t_failed + excluded.t_failed,
        t_retried = q.t_retried + excluded.t_retried,
        t_dead = q.t_dead + excluded.t_dead,
        t_cancelled = q.t_cancelled + excluded.t_cancelled,
        t_lease_expired = q.t_lease_expired + excluded.t_lease_expired
    RETURNING 1
),
grouped_counts AS (
    INSERT INTO job_groups AS g (queue, group_key, available, running)
    SELECT m.queue, m.group_key,
        count(*) FILTER (WHERE m.to_state = 1) - count(*) FILTER (WHERE m.from_state = 1),
        count(*) FILTER (WHERE m.to_state = 2) - count(*) FILTER (WHERE m.from_state = 2)
    FROM moved m, (SELECT count(*) FROM counted) AS after_queues
    WHERE m.group_key IS NOT NULL
    GROUP BY m.queue, m.group_key
    HAVING count(*) FILTER (WHERE m.to_state = 1) <> count(*) FILTER (WHERE m.from_state = 1)
        OR count(*) FILTER (WHERE m.to_state = 2) <> count(*) FILTER (WHERE m.from_state = 2)
    ORDER BY m.queue, m.group_key
    ON CONFLICT (queue, group_key) DO UPDATE SET
        available = g.available + excluded.available, running = g.running + excluded.running
    RETURNING 1
)";

/// The queues to wake, as a result column (`text[]`, `NULL` for none) of a statement ending
/// in [`COUNTS`]; read with `wakeup::Woken::read`. Every row of the result carries the
/// same list.
pub(crate) const WOKEN: &str = "(SELECT array_agg(w.queue) FROM wake w)";

/// The counter columns of a `moved` row that changes no throughput counter.
pub(crate) const NO_COUNTERS: &str = "0 AS enq, 0 AS succ, 0 AS failed, 0 AS retried, 0 AS dead, \
     0 AS cancelled, 0 AS lease_expired";
