-- The W3C trace context a job was enqueued under ({"traceparent": ..., "tracestate": ...}), so that the
-- worker's span continues the producer's trace whichever way the job reaches Redis: pushed at once,
-- delivered by the relay after an outage, put back by the reconciler, retried from the dead letters.
-- NULL when nothing traced the enqueue. A group keeps its follow-up's, written when its last child ends.
ALTER TABLE millrace_jobs ADD COLUMN trace_context jsonb;
ALTER TABLE millrace_outbox ADD COLUMN trace_context jsonb;
ALTER TABLE millrace_job_groups ADD COLUMN then_trace_context jsonb;
