-- AI document processing: the uploaded document, the structured answer the model gave about it, and
-- every call made to the provider with its token usage (cost per job and per day).
CREATE TABLE documents (
    id                bigserial PRIMARY KEY,
    user_id           bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    filename          text NOT NULL,
    kind              text NOT NULL CHECK (kind IN ('pdf', 'text')),
    storage_key       text NOT NULL,
    size_bytes        bigint NOT NULL,
    status            text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'completed', 'failed')),
    result            jsonb,
    failure           text,
    job_id            text,
    created_at        timestamptz NOT NULL DEFAULT now(),
    finished_at       timestamptz
);
CREATE INDEX documents_user ON documents (user_id, created_at DESC);

CREATE TABLE ai_calls (
    id                bigserial PRIMARY KEY,
    document_id       bigint NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
    user_id           bigint NOT NULL,
    job_id            text NOT NULL,
    attempt           integer NOT NULL,
    called_at         timestamptz NOT NULL DEFAULT now(),
    -- 'ok', 'invalid' (an answer that failed validation), 'rate_limited', 'error'
    outcome           text NOT NULL,
    prompt_tokens     integer NOT NULL DEFAULT 0,
    completion_tokens integer NOT NULL DEFAULT 0
);
CREATE INDEX ai_calls_document ON ai_calls (document_id);
CREATE INDEX ai_calls_user_day ON ai_calls (user_id, called_at);
