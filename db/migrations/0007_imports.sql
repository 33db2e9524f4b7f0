-- Contact imports from CSV and Excel files: the upload, its progress and summary, the rows it brought in
-- and the rows it turned away (each with its line and reason, for the error report).
CREATE TABLE imports (
    id               bigserial PRIMARY KEY,
    user_id          bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    filename         text NOT NULL,
    kind             text NOT NULL CHECK (kind IN ('csv', 'xlsx')),
    upload_key       text NOT NULL,
    size_bytes       bigint NOT NULL,
    status           text NOT NULL DEFAULT 'pending'
                         CHECK (status IN ('pending', 'processing', 'completed', 'failed')),
    columns          text[],
    total_rows       integer,
    chunks           integer,
    group_id         text,
    inserted_rows    integer,
    rejected_rows    integer,
    notes            text[] NOT NULL DEFAULT '{}',
    failure          text,
    error_report_key text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    finished_at      timestamptz
);
CREATE INDEX imports_user ON imports (user_id, created_at DESC);

CREATE TABLE contacts (
    id         bigserial PRIMARY KEY,
    user_id    bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    import_id  bigint REFERENCES imports (id) ON DELETE SET NULL,
    -- the line of the file it came from: an import run twice (after a crash) inserts each line once
    line       integer,
    email      text NOT NULL,
    name       text NOT NULL,
    company    text,
    phone      text,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (import_id, line)
);
CREATE INDEX contacts_user ON contacts (user_id, id);

CREATE TABLE import_rejections (
    import_id bigint NOT NULL REFERENCES imports (id) ON DELETE CASCADE,
    line      integer NOT NULL,
    reason    text NOT NULL,
    -- the row as it was read, cut short: enough for a person to find and fix it
    raw       text NOT NULL,
    PRIMARY KEY (import_id, line)
);
