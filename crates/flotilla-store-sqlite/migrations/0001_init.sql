-- Flotilla SQLite schema, version 1.
-- States are stored as numbers: 0 scheduled, 1 available, 2 running, 3 succeeded,
-- 4 cancelled, 5 dead. Times are microseconds since the Unix epoch, UTC.

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO meta (key, value) VALUES ('next_token', 1);

-- One row per queue: its settings (JSON of QueueConfig), its job counts per state and its
-- throughput counters, kept in the same transaction as the jobs they count.
CREATE TABLE queues (
    name            TEXT PRIMARY KEY,
    config          TEXT NOT NULL,
    n_scheduled     INTEGER NOT NULL DEFAULT 0,
    n_available     INTEGER NOT NULL DEFAULT 0,
    n_running       INTEGER NOT NULL DEFAULT 0,
    n_succeeded     INTEGER NOT NULL DEFAULT 0,
    n_cancelled     INTEGER NOT NULL DEFAULT 0,
    n_dead          INTEGER NOT NULL DEFAULT 0,
    t_enqueued      INTEGER NOT NULL DEFAULT 0,
    t_succeeded     INTEGER NOT NULL DEFAULT 0,
    t_failed        INTEGER NOT NULL DEFAULT 0,
    t_retried       INTEGER NOT NULL DEFAULT 0,
    t_dead          INTEGER NOT NULL DEFAULT 0,
    t_cancelled     INTEGER NOT NULL DEFAULT 0,
    t_lease_expired INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;

CREATE TABLE jobs (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    queue            TEXT    NOT NULL,
    kind             TEXT    NOT NULL,
    state            INTEGER NOT NULL,
    priority         INTEGER NOT NULL,
    run_at           INTEGER NOT NULL,
    attempt          INTEGER NOT NULL DEFAULT 0,
    max_attempts     INTEGER NOT NULL,
    payload          TEXT    NOT NULL,
    retry            TEXT,
    timeout_ms       INTEGER,
    lease_ms         INTEGER,
    unique_key       TEXT,
    group_key        TEXT,
    tags             TEXT,
    lease_token      INTEGER,
    lease_worker     TEXT,
    lease_expires_at INTEGER,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    progress         TEXT,
    result           TEXT,
    errors           TEXT,
    created_at       INTEGER NOT NULL,
    attempted_at     INTEGER,
    finished_at      INTEGER
);

-- The claim path: available jobs of a queue in claim order.
CREATE INDEX jobs_available ON jobs (queue, priority, run_at, id) WHERE state = 1;
-- The same per group, for fair and group-limited queues.
CREATE INDEX jobs_available_group ON jobs (queue, group_key, priority, run_at, id)
    WHERE state = 1 AND group_key IS NOT NULL;
-- Promotion of due scheduled jobs.
CREATE INDEX jobs_scheduled ON jobs (queue, run_at) WHERE state = 0;
-- Reaping of expired leases.
CREATE INDEX jobs_running ON jobs (lease_expires_at) WHERE state = 2;
-- Unique keys. Uniqueness among live jobs is enforced by the single writer (check, then
-- insert, in one call). A UNIQUE partial index on `state` would make SQLite keep a
-- statement journal for every state change, which costs about a sixth of claim throughput.
CREATE INDEX jobs_unique_key ON jobs (queue, unique_key) WHERE unique_key IS NOT NULL;
-- Pruning and dead-letter listing. `finished_at` is set exactly when a job is terminal, so
-- this index does not mention `state` and claims never have to consider it. (SQLite uses a
-- partial index only when the query implies its WHERE clause: `finished_at < ?` does.)
CREATE INDEX jobs_finished ON jobs (queue, state, finished_at) WHERE finished_at IS NOT NULL;

-- Available and running jobs per group key, for round-robin claims and group limits.
-- `served` is the sequence number of the claim that last served the group.
CREATE TABLE job_groups (
    queue     TEXT    NOT NULL,
    group_key TEXT    NOT NULL,
    available INTEGER NOT NULL DEFAULT 0,
    running   INTEGER NOT NULL DEFAULT 0,
    served    INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (queue, group_key)
) WITHOUT ROWID;
CREATE INDEX job_groups_served ON job_groups (queue, served) WHERE available > 0;

CREATE TABLE cron (
    name          TEXT PRIMARY KEY,
    schedule      TEXT    NOT NULL,
    last_fired_at INTEGER NOT NULL
) WITHOUT ROWID;
