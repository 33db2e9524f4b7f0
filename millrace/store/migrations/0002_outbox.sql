-- Jobs written inside a caller's transaction, waiting for the relay to hand them to Redis.
-- A row exists only between its transaction's commit and its delivery: the relay deletes what it delivers.
CREATE TABLE millrace_outbox (
    id          bigserial PRIMARY KEY,
    job_id      text NOT NULL,
    queue       text NOT NULL,
    function    text NOT NULL,
    args        jsonb NOT NULL,
    attempt_base integer NOT NULL DEFAULT 0,
    run_at      timestamptz,
    enqueued_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX millrace_outbox_queue ON millrace_outbox (queue, id);
