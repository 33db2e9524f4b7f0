-- What the sample application's jobs did, written by the jobs themselves: tests read effects from here
-- whichever process ran the job.
CREATE TABLE test_effects (
    id      bigserial PRIMARY KEY,
    job_id  text NOT NULL,
    attempt int NOT NULL,
    kind    text NOT NULL,
    tick_at timestamptz,
    worker  text NOT NULL,
    at      timestamptz NOT NULL DEFAULT clock_timestamp()
);
