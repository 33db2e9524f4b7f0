-- Effects a job makes only while it holds its lease (JobContext.hold_lease): never more than one a job.
CREATE TABLE test_guarded_effects (
    id      bigserial PRIMARY KEY,
    job_id  text NOT NULL,
    attempt int NOT NULL,
    worker  text NOT NULL
);
