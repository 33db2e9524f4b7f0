-- What the dashboard and the metrics read without scanning the job tables, and what its actions write.

-- Per minute, queue and function: attempts started (with how long each waited past its due time) and
-- attempts finished by outcome (with how long each ran). Written by the same statement that claims or
-- finishes the attempts, so it costs no round trip. Histograms are cumulative: element i counts the
-- values <= the i-th bound of millrace.stats.BUCKETS_S. The row at minute 'epoch' holds what retention
-- folded away, so that totals never go down.
CREATE TABLE millrace_stats (
    queue        text NOT NULL,
    function     text NOT NULL,
    minute       timestamptz NOT NULL,
    started      bigint NOT NULL DEFAULT 0,
    -- first attempts among them: with the jobs pending now, how many jobs were enqueued
    first_started bigint NOT NULL DEFAULT 0,
    wait_le      bigint[] NOT NULL,
    wait_sum_s   double precision NOT NULL DEFAULT 0,
    succeeded    bigint NOT NULL DEFAULT 0,
    retried      bigint NOT NULL DEFAULT 0,
    dead         bigint NOT NULL DEFAULT 0,
    duration_le  bigint[] NOT NULL,
    duration_sum_s double precision NOT NULL DEFAULT 0,
    PRIMARY KEY (queue, function, minute)
);
CREATE INDEX millrace_stats_minute ON millrace_stats (minute);

-- A failure's fingerprint: its function, error type and the frames of its traceback, without line
-- numbers or values, so that one bug is one error group however often it fails.
ALTER TABLE millrace_job_attempts ADD COLUMN fingerprint text;
ALTER TABLE millrace_jobs ADD COLUMN last_fingerprint text;
CREATE INDEX millrace_job_attempts_failed ON millrace_job_attempts (finished_at)
    WHERE outcome IN ('retrying', 'dead', 'lost');
CREATE INDEX millrace_jobs_dead_fingerprint ON millrace_jobs (last_fingerprint) WHERE status = 'dead';
-- the job list's default order, and its time filters
CREATE INDEX millrace_jobs_enqueued ON millrace_jobs (enqueued_at DESC, id DESC);
CREATE INDEX millrace_jobs_status_enqueued ON millrace_jobs (status, enqueued_at DESC);
CREATE INDEX millrace_jobs_key ON millrace_jobs (job_key) WHERE job_key IS NOT NULL;
-- "user_id=42" finds the jobs whose arguments hold it (args @> '{"user_id": 42}'); jsonb_path_ops is the
-- small GIN flavour made for containment, and its pending list keeps inserts cheap
CREATE INDEX millrace_jobs_args ON millrace_jobs USING gin (args jsonb_path_ops);

-- A paused queue's workers take no new job and finish what they hold; they learn of it with their heartbeat.
CREATE TABLE millrace_queue_pauses (
    queue     text PRIMARY KEY,
    paused_at timestamptz NOT NULL DEFAULT now(),
    paused_by text NOT NULL
);

-- Every action a person took from the dashboard or the command line.
CREATE TABLE millrace_audit_log (
    id       bigserial PRIMARY KEY,
    at       timestamptz NOT NULL DEFAULT now(),
    actor    text NOT NULL,
    action   text NOT NULL,
    target   text NOT NULL,
    affected integer NOT NULL DEFAULT 0,
    details  jsonb NOT NULL DEFAULT '{}'
);

-- A dead job retried with edited arguments keeps the arguments it had before, newest last.
ALTER TABLE millrace_jobs ADD COLUMN args_history jsonb NOT NULL DEFAULT '[]';

-- Every cron schedule, as the workers that run it declared it at their start: the dashboard's cron
-- ledger computes the expected ticks from it without importing the application's code.
CREATE TABLE millrace_cron_schedules (
    name        text PRIMARY KEY,
    queue       text NOT NULL,
    fields      jsonb NOT NULL,
    missed      text NOT NULL,
    declared_at timestamptz NOT NULL DEFAULT now()
);
