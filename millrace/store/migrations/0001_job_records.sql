-- Every job Millrace knows of, and every attempt at it. Written by the runtime, never by job bodies.
CREATE TABLE millrace_jobs (
    id              text PRIMARY KEY,
    queue           text NOT NULL,
    function        text NOT NULL,
    args            jsonb NOT NULL DEFAULT '{}',
    job_key         text,
    status          text NOT NULL CHECK (status IN
                        ('queued', 'deferred', 'in_progress', 'retrying', 'succeeded', 'dead', 'cancelled')),
    -- attempts over the job's whole life; attempt_base of them belong to earlier budgets (dead-letter retries)
    attempts        integer NOT NULL DEFAULT 0,
    attempt_base    integer NOT NULL DEFAULT 0,
    run_at          timestamptz,
    enqueued_at     timestamptz NOT NULL DEFAULT now(),
    started_at      timestamptz,
    finished_at     timestamptz,
    worker          text,
    last_error_type text,
    last_error      text,
    updated_at      timestamptz NOT NULL DEFAULT now()
);

-- "The same key while the job is pending gives one job": unique only among jobs not yet started.
CREATE UNIQUE INDEX millrace_jobs_pending_key ON millrace_jobs (job_key)
    WHERE job_key IS NOT NULL AND status IN ('queued', 'deferred', 'retrying');
CREATE INDEX millrace_jobs_queue_status ON millrace_jobs (queue, status, enqueued_at);
CREATE INDEX millrace_jobs_dead ON millrace_jobs (function, last_error_type) WHERE status = 'dead';

CREATE TABLE millrace_job_attempts (
    job_id        text NOT NULL REFERENCES millrace_jobs (id) ON DELETE CASCADE,
    attempt       integer NOT NULL,
    worker        text,
    -- NULL only for a lost attempt whose start was never written (its worker died within milliseconds)
    started_at    timestamptz,
    finished_at   timestamptz,
    duration_ms   double precision,
    -- NULL while running; 'lost' when a later attempt started without this one finishing (its worker died)
    outcome       text CHECK (outcome IN ('succeeded', 'retrying', 'dead', 'lost')),
    error_type    text,
    error_message text,
    traceback     text,
    PRIMARY KEY (job_id, attempt)
);
