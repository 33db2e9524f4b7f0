-- Each user reaches only their own data: API tokens, kept as SHA-256 hashes (a token is shown once, at signup).
CREATE TABLE api_tokens (
    token_hash bytea PRIMARY KEY,
    user_id    bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX api_tokens_user ON api_tokens (user_id);

-- An address is one account whatever its case. Rows that differ only by case must be merged by a person
-- first: the migration says which, rather than pick one itself.
DO $$
DECLARE
    clash text;
BEGIN
    SELECT string_agg(lower(email), ', ') INTO clash
    FROM (SELECT lower(email) AS email FROM users GROUP BY lower(email) HAVING count(*) > 1) AS clashes;
    IF clash IS NOT NULL THEN
        RAISE EXCEPTION 'users differ only by the case of their email: %; merge them, then migrate again', clash;
    END IF;
END $$;
CREATE UNIQUE INDEX users_email_lower ON users (lower(email));
