//! Per-queue counts by state, throughput counters and per-group counts, changed by the same
//! statement as the jobs they count.
//!
//! A writing statement names the jobs it moved in a CTE called `moved`, with the columns
//! `queue, group_key, from_state, to_state` (a `NULL` state: created or deleted) and one
//! integer per throughput counter (`enq, succ, failed, retried, dead, cancelled,
//! lease_expired`), and appends [`COUNTS`]: one `UPDATE queues` row per queue touched and
//! one `job_groups` upsert per group touched, not one per job.
//!
//! Lock order. Every transaction takes the `queues` rows it changes before the
//! `job_groups` rows: the group upsert reads an aggregate of the queue update, so it cannot
//! start before the queue update is done. Claims on limited queues take the queue row
//! first (explicitly) and then only skip locked jobs, so they never wait for a job row
//! while holding a queue row; everything else locks its job rows before the queue rows.

/// The tail of a statement that has a `moved` CTE: the count and counter updates. It
/// starts with a comma, to follow the statement's other CTEs.
pub(crate) const COUNTS: &str = ",
counted AS (
    UPDATE queues q SET
        n_scheduled = q.n_scheduled + d.s, n_available = q.n_available + d.a,
        n_running = q.n_running + d.r, n_succeeded = q.n_succeeded + d.ok,
        n_cancelled = q.n_cancelled + d.c, n_dead = q.n_dead + d.x,
        t_enqueued = q.t_enqueued + d.te, t_succeeded = q.t_succeeded + d.ts,
        t_failed = q.t_failed + d.tf, t_retried = q.t_retried + d.tr, t_dead = q.t_dead + d.td,
        t_cancelled = q.t_cancelled + d.tc, t_lease_expired = q.t_lease_expired + d.tl
    FROM (
        SELECT queue,
            count(*) FILTER (WHERE to_state = 0) - count(*) FILTER (WHERE from_state = 0) AS s,
            count(*) FILTER (WHERE to_state = 1) - count(*) FILTER (WHERE from_state = 1) AS a,
            count(*) FILTER (WHERE to_state = 2) - count(*) FILTER (WHERE from_state = 2) AS r,
            count(*) FILTER (WHERE to_state = 3) - count(*) FILTER (WHERE from_state = 3) AS ok,
            count(*) FILTER (WHERE to_state = 4) - count(*) FILTER (WHERE from_state = 4) AS c,
            count(*) FILTER (WHERE to_state = 5) - count(*) FILTER (WHERE from_state = 5) AS x,
            sum(enq) AS te, sum(succ) AS ts, sum(failed) AS tf, sum(retried) AS tr,
            sum(dead) AS td, sum(cancelled) AS tc, sum(lease_expired) AS tl
        FROM moved GROUP BY queue ORDER BY queue
    ) d
    WHERE q.name = d.queue
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

/// The counter columns of a `moved` row that changes no throughput counter.
pub(crate) const NO_COUNTERS: &str = "0 AS enq, 0 AS succ, 0 AS failed, 0 AS retried, 0 AS dead, \
     0 AS cancelled, 0 AS lease_expired";
