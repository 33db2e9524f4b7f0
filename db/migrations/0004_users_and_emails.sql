-- The demo service's business records: users, and a guard so each email is sent once.
CREATE TABLE users (
    id         bigserial PRIMARY KEY,
    email      text NOT NULL UNIQUE,
    name       text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE sent_emails (
    template        text NOT NULL,
    recipient       text NOT NULL,
    idempotency_key text NOT NULL,
    job_id          text,
    claimed_at      timestamptz NOT NULL DEFAULT now(),
    sent_at         timestamptz,
    PRIMARY KEY (template, recipient, idempotency_key)
);
