-- The guarded steps a job has done, each written in the transaction that made its effect: a later attempt
-- of the same job (after a crash between that commit and the attempt's record) finds it and skips it.
CREATE TABLE millrace_job_steps (
    job_id  text NOT NULL REFERENCES millrace_jobs (id) ON DELETE CASCADE,
    step    text NOT NULL,
    lease   bigint NOT NULL,
    attempt integer NOT NULL,
    done_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (job_id, step)
);
