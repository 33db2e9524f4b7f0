-- How far a running job has come, as its body last reported it (written in batches, about once a second).
-- It stays after the job ends: the last word of a failed import says where it stopped.
ALTER TABLE millrace_jobs
    ADD COLUMN progress_done    bigint,
    ADD COLUMN progress_total   bigint,
    ADD COLUMN progress_message text,
    ADD COLUMN progress_at      timestamptz;
