-- A job's priority: seconds of head start over the queue's normal jobs (0 to a day). It is
-- kept with the record and the outbox row, so that a job the relay, the reaper or the reconciler puts
-- into Redis again keeps its place in the line.
ALTER TABLE millrace_jobs ADD COLUMN priority integer NOT NULL DEFAULT 0;
ALTER TABLE millrace_outbox ADD COLUMN priority integer NOT NULL DEFAULT 0;
