-- Aborting a running job: a person asks in PostgreSQL, the worker that holds the job hears it at its next
-- heartbeat and cancels the body. The request is durable: a worker that dies first leaves a job that is
-- cancelled, not handed on, and an attempt that fails meanwhile is not retried.
ALTER TABLE millrace_jobs ADD COLUMN abort_requested_at timestamptz;

-- 'aborted': the attempt's body was cancelled on a person's request; the job ends 'cancelled'.
ALTER TABLE millrace_job_attempts DROP CONSTRAINT millrace_job_attempts_outcome_check;
ALTER TABLE millrace_job_attempts ADD CONSTRAINT millrace_job_attempts_outcome_check
    CHECK (outcome IN ('succeeded', 'retrying', 'dead', 'lost', 'interrupted', 'aborted'));
