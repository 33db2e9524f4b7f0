-- Fan-out and fan-in: a group of child jobs and the follow-up job that runs once, when the last child
-- reaches a final state. Each child is counted once (group_counted) after its end is recorded; the count
-- that brings `remaining` to zero enqueues the follow-up in its own transaction.
CREATE TABLE millrace_job_groups (
    id             text PRIMARY KEY,
    total          integer NOT NULL,
    remaining      integer NOT NULL CHECK (remaining >= 0),
    then_queue     text NOT NULL,
    then_function  text NOT NULL,
    then_args      jsonb NOT NULL,
    then_job_id    text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    completed_at   timestamptz
);

ALTER TABLE millrace_jobs
    ADD COLUMN group_id      text,
    ADD COLUMN group_counted boolean NOT NULL DEFAULT false;

-- the children still to count: the sweep that catches ends recorded outside the finish path reads this
CREATE INDEX millrace_jobs_group_uncounted ON millrace_jobs (group_id)
    WHERE group_id IS NOT NULL AND NOT group_counted;
