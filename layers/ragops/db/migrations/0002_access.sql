-- Access control: API keys, per-subject request counters, and row-level security so the
-- API's role sees only the collection its transaction names.

CREATE TABLE api_keys (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    collection   text NOT NULL CHECK (collection <> ''),
    name         text,
    -- The first characters of the key, to tell keys apart in `ragops keys list`.
    prefix       text NOT NULL,
    -- SHA-256 of the key: keys are 32 random bytes, so no salt or slow hash is needed.
    key_hash     text NOT NULL UNIQUE,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    revoked_at   timestamptz
);
CREATE INDEX api_keys_collection_idx ON api_keys (collection);

-- One fixed window per subject (an API key or a token's subject), shared by every process.
CREATE TABLE api_request_windows (
    subject      text PRIMARY KEY,
    window_start timestamptz NOT NULL,
    requests     integer NOT NULL
);

-- The role the API takes on for each transaction. Roles are cluster-wide: another
-- database may have created it already (or be creating it right now).
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'ragops_app') THEN
        CREATE ROLE ragops_app NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
    END IF;
EXCEPTION
    WHEN duplicate_object THEN NULL;
    WHEN insufficient_privilege THEN
        RAISE insufficient_privilege USING MESSAGE = format(
            'ragops needs the role ragops_app; ask an administrator to run '
            '"CREATE ROLE ragops_app NOLOGIN; GRANT ragops_app TO %I;"', current_user);
END $$;

DO $$
BEGIN
    IF NOT pg_has_role(current_user, 'ragops_app', 'MEMBER') THEN
        EXECUTE format('GRANT ragops_app TO %I', current_user);
    END IF;
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO ragops_app', current_schema());
END $$;

-- What the API does and nothing more: read, and delete documents (chunks go by cascade).
GRANT SELECT, DELETE ON documents TO ragops_app;
GRANT SELECT ON chunks, store_info, ragops_migrations TO ragops_app;

-- Rows of other collections do not exist for any role but the owner (the admin path).
-- An unset collection matches nothing.
ALTER TABLE documents ENABLE ROW LEVEL SECURITY;
ALTER TABLE chunks ENABLE ROW LEVEL SECURITY;
CREATE POLICY documents_of_collection ON documents
    USING (collection = current_setting('ragops.collection', true))
    WITH CHECK (collection = current_setting('ragops.collection', true));
CREATE POLICY chunks_of_collection ON chunks
    USING (collection = current_setting('ragops.collection', true))
    WITH CHECK (collection = current_setting('ragops.collection', true));
-- No policy and no grant: keys and counters are reached through the two functions below.
ALTER TABLE api_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE api_request_windows ENABLE ROW LEVEL SECURITY;

-- The key with this hash, if it is not revoked. Bodies in BEGIN ATOMIC are bound to their
-- tables when created, so the caller's search_path cannot swap a table in.
CREATE FUNCTION ragops_authenticate(p_key_hash text)
RETURNS TABLE (key_id uuid, collection text)
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    UPDATE api_keys SET last_used_at = now()
    WHERE key_hash = p_key_hash AND revoked_at IS NULL
    RETURNING id, collection;
END;

-- Count one request in the subject's current window: the count so far, and the seconds
-- until the window ends. The database clock, so every process agrees.
CREATE FUNCTION ragops_count_request(p_subject text, p_window_seconds integer)
RETURNS TABLE (requests integer, retry_after double precision)
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    INSERT INTO api_request_windows AS w (subject, window_start, requests)
    VALUES (
        p_subject,
        date_bin(make_interval(secs => p_window_seconds), clock_timestamp(),
                 timestamptz '2000-01-01 00:00:00+00'),
        1)
    ON CONFLICT (subject) DO UPDATE SET
        requests = CASE WHEN w.window_start = EXCLUDED.window_start
                        THEN w.requests + 1 ELSE 1 END,
        window_start = EXCLUDED.window_start
    RETURNING w.requests,
              extract(epoch FROM w.window_start + make_interval(secs => p_window_seconds)
                                 - clock_timestamp())::double precision;
END;

REVOKE ALL ON FUNCTION ragops_authenticate(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION ragops_count_request(text, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ragops_authenticate(text) TO ragops_app;
GRANT EXECUTE ON FUNCTION ragops_count_request(text, integer) TO ragops_app;
