-- Attempts are claimed in PostgreSQL before a body runs, under a lease that fences every later write,
-- and each worker process registers here and beats its heart, so that the jobs of a dead one are handed on.

-- The lease of the attempt that holds the job; every claim and every hand-on bumps it, and the write that
-- finishes an attempt applies only with the lease it was claimed under.
ALTER TABLE millrace_jobs ADD COLUMN lease bigint NOT NULL DEFAULT 0;
-- Attempts spent from the current budget: a claim adds one, a deploy handing the job back takes it back,
-- a dead-letter retry starts again from 0. `attempts` still numbers every attempt over the job's life.
ALTER TABLE millrace_jobs ADD COLUMN counted_attempts integer NOT NULL DEFAULT 0;
UPDATE millrace_jobs SET counted_attempts = greatest(attempts - attempt_base, 0);
CREATE INDEX millrace_jobs_in_progress ON millrace_jobs (worker) WHERE status = 'in_progress';

-- 'interrupted': the worker was shut down (a deploy) and handed the job back; it is not counted.
ALTER TABLE millrace_job_attempts DROP CONSTRAINT millrace_job_attempts_outcome_check;
ALTER TABLE millrace_job_attempts ADD CONSTRAINT millrace_job_attempts_outcome_check
    CHECK (outcome IN ('succeeded', 'retrying', 'dead', 'lost', 'interrupted'));

CREATE TABLE millrace_workers (
    id           text PRIMARY KEY,  -- host:pid:queue:token, new for every start of a process
    queue        text NOT NULL,
    host         text NOT NULL,
    pid          integer NOT NULL,
    version      text NOT NULL,
    -- the worker holds the advisory lock (millrace_workers' class, lock_key) in a session of its own:
    -- when its process dies, PostgreSQL ends the session and frees the lock at once
    lock_key     integer NOT NULL,
    -- each worker brings its own timing, so that workers of different settings judge each other fairly
    heartbeat_interval_s double precision NOT NULL,
    silent_after_s       double precision NOT NULL,
    started_at   timestamptz NOT NULL DEFAULT now(),
    heartbeat_at timestamptz NOT NULL DEFAULT now(),
    stopped_at   timestamptz,
    -- 'shutdown', 'silent' (declared dead by another worker), 'event_loop_blocked'
    stop_reason  text,
    running      integer NOT NULL DEFAULT 0,
    jobs_done    bigint NOT NULL DEFAULT 0
);
CREATE INDEX millrace_workers_live ON millrace_workers (heartbeat_at) WHERE stopped_at IS NULL;
