-- Report exports: what a user asked for (a type and its filters), and the CSV file a job made of it.
CREATE TABLE reports (
    id          bigserial PRIMARY KEY,
    user_id     bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    report_type text NOT NULL CHECK (report_type IN ('contacts')),
    filters     jsonb NOT NULL DEFAULT '{}',
    status      text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'processing', 'completed', 'failed')),
    total_rows  bigint,
    storage_key text,
    failure     text,
    -- the export's job, whose record holds its progress
    job_id      text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz
);
CREATE INDEX reports_user ON reports (user_id, created_at DESC);
