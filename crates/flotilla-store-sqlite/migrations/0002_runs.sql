-- Pipeline runs (version 2). A run's steps are rows of run_steps; a step's job is created
-- when its dependencies have all succeeded (job_id set, the template `job` cleared).
-- Step and run states are derived from the jobs' states on read.

CREATE TABLE runs (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    pipeline   TEXT    NOT NULL,
    meta       TEXT    NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX runs_pipeline ON runs (pipeline, id);

CREATE TABLE run_steps (
    run_id     INTEGER NOT NULL,
    position   INTEGER NOT NULL,
    name       TEXT    NOT NULL,
    after      TEXT    NOT NULL,  -- JSON array of step names
    waiting_on INTEGER NOT NULL,  -- how many of them have not succeeded yet
    job        TEXT,              -- the NewJob (JSON) while the step waits
    job_id     INTEGER,
    result     TEXT,              -- kept here once it succeeded: jobs are pruned
    PRIMARY KEY (run_id, position)
) WITHOUT ROWID;
CREATE UNIQUE INDEX run_steps_job ON run_steps (job_id) WHERE job_id IS NOT NULL;
