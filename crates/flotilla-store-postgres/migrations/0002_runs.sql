-- Flotilla PostgreSQL schema, version 2: pipeline runs.
-- A run's steps are rows of run_steps. A step's job is created when its dependencies have
-- all succeeded: job_id is then set and the template `job` cleared. Step and run states
-- are derived from the jobs' states on read; what is kept here is only what the jobs
-- cannot tell: whether a step was enqueued yet, and its result (jobs are pruned, results
-- stay). JSON columns are `json`, like the jobs' payloads: kept as written.

CREATE TABLE runs (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    pipeline   text        NOT NULL,
    meta       json        NOT NULL,
    created_at timestamptz NOT NULL
);
-- Listing a pipeline's runs, newest first.
CREATE INDEX runs_pipeline ON runs (pipeline, id);

CREATE TABLE run_steps (
    run_id     bigint  NOT NULL REFERENCES runs (id),
    position   integer NOT NULL,   -- the step's place in the run, as given
    name       text    NOT NULL,
    after      text[]  NOT NULL,   -- the steps it waits for
    waiting_on integer NOT NULL,   -- how many of them have not succeeded yet
    job        json,               -- the NewJob while the step waits
    job_id     bigint,             -- its job, once enqueued (no foreign key: jobs are pruned)
    result     json,               -- its job's result, once it succeeded
    PRIMARY KEY (run_id, position),
    UNIQUE (run_id, name)
);
-- The completion hook: is a completed job a step? One probe per completed job, into an
-- index that holds only enqueued steps.
CREATE UNIQUE INDEX run_steps_job ON run_steps (job_id) WHERE job_id IS NOT NULL;
