-- Quotations: what a sales user submitted (customer, lines, totals), and where its PDF stands. A
-- quotation is never lost: it is pending, then sent, or failed with the reason and can be tried again.
CREATE TABLE quotations (
    id              bigserial PRIMARY KEY,
    user_id         bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    customer_name   text NOT NULL,
    customer_email  text NOT NULL,
    currency        text NOT NULL,
    lines           jsonb NOT NULL,
    subtotal_cents  bigint NOT NULL,
    tax_rate        numeric(5, 2) NOT NULL,
    tax_cents       bigint NOT NULL,
    total_cents     bigint NOT NULL,
    status          text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent', 'failed')),
    failure         text,
    pdf_key         text,
    job_id          text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    sent_at         timestamptz
);
CREATE INDEX quotations_user ON quotations (user_id, created_at DESC);
