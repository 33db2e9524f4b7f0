-- The demo service's event flows: webhook inbox, subscriptions and invoices, notifications.

-- Every webhook event received, once: the primary key is what makes a redelivery a no-op.
CREATE TABLE webhook_events (
    provider     text NOT NULL,
    event_id     text NOT NULL,
    event_type   text NOT NULL,
    -- when the provider says the event happened: what orders events that arrive out of order
    occurred_at  timestamptz NOT NULL,
    payload      jsonb NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now(),
    processed_at timestamptz,
    PRIMARY KEY (provider, event_id)
);

CREATE TABLE subscriptions (
    user_id          bigint PRIMARY KEY REFERENCES users (id),
    status           text NOT NULL CHECK (status IN ('trialing', 'active', 'past_due', 'canceled', 'expired')),
    plan             text NOT NULL,
    features_enabled boolean NOT NULL,
    trial_ends_at    timestamptz,
    -- occurred_at of the newest event applied: an older event never overwrites a newer state
    state_changed_at timestamptz NOT NULL,
    state_event_id   text NOT NULL,  -- ties on occurred_at are broken by event id, so order never matters
    updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX subscriptions_trial_ends ON subscriptions (trial_ends_at) WHERE status = 'trialing';

CREATE TABLE invoices (
    id                  text PRIMARY KEY,
    user_id             bigint NOT NULL REFERENCES users (id),
    amount_cents        bigint NOT NULL,
    currency            text NOT NULL,
    status              text NOT NULL CHECK (status IN ('open', 'paid')),
    created_at          timestamptz NOT NULL,
    paid_at             timestamptz,
    reminded_3d_at      timestamptz,
    reminded_7d_at      timestamptz
);
CREATE INDEX invoices_open ON invoices (created_at) WHERE status = 'open';

ALTER TABLE users
    ADD COLUMN phone text,
    ADD COLUMN slack_webhook_url text,
    ADD COLUMN notify_in_app boolean NOT NULL DEFAULT true,
    ADD COLUMN notify_slack boolean NOT NULL DEFAULT false,
    ADD COLUMN notify_sms boolean NOT NULL DEFAULT false;

CREATE TABLE notifications (
    id         bigserial PRIMARY KEY,
    user_id    bigint NOT NULL REFERENCES users (id),
    event_key  text NOT NULL,
    title      text NOT NULL,
    body       text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    read_at    timestamptz,
    UNIQUE (user_id, event_key)
);

CREATE TABLE password_resets (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id    bigint NOT NULL REFERENCES users (id),
    created_at timestamptz NOT NULL DEFAULT now(),
    used_at    timestamptz
);

CREATE TABLE tasks (
    id          bigserial PRIMARY KEY,
    title       text NOT NULL,
    assignee_id bigint NOT NULL REFERENCES users (id),
    created_at  timestamptz NOT NULL DEFAULT now()
);
