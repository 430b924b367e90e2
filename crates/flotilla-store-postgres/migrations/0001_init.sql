-- Flotilla PostgreSQL schema, version 1.
-- States are stored as numbers, as in the SQLite store: 0 scheduled, 1 available,
-- 2 running, 3 succeeded, 4 cancelled, 5 dead. Times are timestamptz (microseconds, UTC),
-- always the caller's `now`, never the database's clock.

-- One row per queue: its settings (JSON of QueueConfig, with the columns the statements
-- need spelled out), its rate-limit bucket and the round-robin sequence of its groups. The
-- row is also the lock that serializes claims on a limited, rate-limited or fair queue.
CREATE TABLE queues (
    name            text PRIMARY KEY,
    config          text NOT NULL,
    paused          boolean NOT NULL DEFAULT false,
    grouped         boolean NOT NULL DEFAULT false,
    limited         boolean NOT NULL DEFAULT false,
    lease_ms        bigint NOT NULL,
    timeout_ms      bigint,
    max_attempts    integer NOT NULL,
    bucket_tokens   double precision,
    bucket_at       timestamptz,
    group_seq       bigint NOT NULL DEFAULT 0
) WITH (fillfactor = 70);

-- Job counts per state and throughput counters per queue, changed in the same transaction
-- as the jobs they count. A queue's numbers are the sum of its rows, one per shard: each
-- connection writes to the shard of its backend (pid % 64), so transactions on different
-- connections never wait for each other's counter row (a single counter row per queue
-- would serialize every transaction on the queue through its commit). Reading a queue's
-- numbers sums at most 64 rows. Counters are not indexed, so their updates are HOT; the
-- low fill factor leaves room on the page for the new row versions.
CREATE TABLE queue_counts (
    queue           text     NOT NULL,
    shard           smallint NOT NULL,
    n_scheduled     bigint NOT NULL DEFAULT 0,
    n_available     bigint NOT NULL DEFAULT 0,
    n_running       bigint NOT NULL DEFAULT 0,
    n_succeeded     bigint NOT NULL DEFAULT 0,
    n_cancelled     bigint NOT NULL DEFAULT 0,
    n_dead          bigint NOT NULL DEFAULT 0,
    t_enqueued      bigint NOT NULL DEFAULT 0,
    t_succeeded     bigint NOT NULL DEFAULT 0,
    t_failed        bigint NOT NULL DEFAULT 0,
    t_retried       bigint NOT NULL DEFAULT 0,
    t_dead          bigint NOT NULL DEFAULT 0,
    t_cancelled     bigint NOT NULL DEFAULT 0,
    t_lease_expired bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (queue, shard)
) WITH (fillfactor = 50);

-- Lease tokens: one store-wide sequence without a cache, so a later claim always gets a
-- larger token, whichever server makes it.
CREATE SEQUENCE lease_tokens;

CREATE TABLE jobs (
    id               bigserial PRIMARY KEY,
    queue            text        NOT NULL,
    kind             text        NOT NULL,
    state            smallint    NOT NULL,
    priority         smallint    NOT NULL,
    run_at           timestamptz NOT NULL,
    attempt          integer     NOT NULL DEFAULT 0,
    max_attempts     integer     NOT NULL,
    payload          json        NOT NULL,
    retry            text,
    timeout_ms       bigint,
    lease_ms         bigint,
    unique_key       text,
    group_key        text,
    tags             text[],
    lease_token      bigint,
    lease_worker     text,
    lease_expires_at timestamptz,
    cancel_requested boolean     NOT NULL DEFAULT false,
    progress         json,
    result           json,
    errors           json,
    created_at       timestamptz NOT NULL,
    attempted_at     timestamptz,
    finished_at      timestamptz
);
-- A queue table churns: every claim and completion writes a new row version. Vacuum it
-- early so the partial indexes below do not fill with dead entries.
ALTER TABLE jobs SET (
    autovacuum_vacuum_scale_factor = 0.02,
    autovacuum_vacuum_insert_scale_factor = 0.05,
    autovacuum_analyze_scale_factor = 0.05
);

-- The claim path: available jobs of a queue in claim order.
CREATE INDEX jobs_available ON jobs (queue, priority, run_at, id) WHERE state = 1;
-- The same per group, for fair and group-limited queues.
CREATE INDEX jobs_available_group ON jobs (queue, group_key, priority, run_at, id)
    WHERE state = 1 AND group_key IS NOT NULL;
-- Promotion of due scheduled jobs, queue by queue.
CREATE INDEX jobs_scheduled ON jobs (queue, run_at) WHERE state = 0;
-- Reaping of expired leases.
CREATE INDEX jobs_running ON jobs (lease_expires_at) WHERE state = 2;
-- One live job per (queue, unique key), enforced by the database across every server;
-- enqueues insert with ON CONFLICT DO NOTHING and return the live holder instead.
CREATE UNIQUE INDEX jobs_unique_key ON jobs (queue, unique_key)
    WHERE unique_key IS NOT NULL AND state IN (0, 1, 2);
-- Pruning and dead letters: `finished_at` is set exactly when a job is terminal.
CREATE INDEX jobs_finished ON jobs (queue, state, finished_at) WHERE finished_at IS NOT NULL;

-- Available and running jobs per group key, for round-robin claims and group limits.
-- `served` is the queue's `group_seq` position at which the group was last served.
CREATE TABLE job_groups (
    queue     text   NOT NULL,
    group_key text   NOT NULL,
    available bigint NOT NULL DEFAULT 0,
    running   bigint NOT NULL DEFAULT 0,
    served    bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (queue, group_key)
) WITH (fillfactor = 70);
CREATE INDEX job_groups_served ON job_groups (queue, served, group_key) WHERE available > 0;

CREATE TABLE cron (
    name          text PRIMARY KEY,
    schedule      text        NOT NULL,
    last_fired_at timestamptz NOT NULL
);
