-- Documents and their chunks. Every document belongs to a collection.
CREATE TABLE store_info (
    singleton       boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    embedding_model text NOT NULL,
    embedding_dim   integer NOT NULL CHECK (embedding_dim > 0),
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE documents (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    collection      text NOT NULL DEFAULT 'default' CHECK (collection <> ''),
    source          text NOT NULL,
    title           text,
    mime_type       text,
    size_bytes      bigint,
    sha256          text,
    etag            text,
    source_mtime    timestamptz,
    status          text NOT NULL CHECK (status IN ('pending', 'ready', 'failed')),
    error           text,
    metadata        jsonb NOT NULL DEFAULT '{}'::jsonb,
    embedding_model text,
    chunk_count     integer NOT NULL DEFAULT 0,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    ingested_at     timestamptz,
    UNIQUE (collection, source)
);
CREATE INDEX documents_status_idx ON documents (status);
CREATE INDEX documents_metadata_idx ON documents USING gin (metadata jsonb_path_ops);
CREATE INDEX documents_source_pattern_idx ON documents (collection, source text_pattern_ops);

CREATE TABLE chunks (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    document_id uuid NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
    -- Copied from the document so collection filters need no join.
    collection  text NOT NULL,
    ordinal     integer NOT NULL CHECK (ordinal >= 0),
    content     text NOT NULL,
    token_count integer NOT NULL CHECK (token_count >= 0),
    page        integer,
    heading     text,
    embedding   vector(384) NOT NULL,
    tsv         tsvector GENERATED ALWAYS AS (
                    setweight(to_tsvector('english'::regconfig, coalesce(heading, '')), 'A')
                    || setweight(to_tsvector('english'::regconfig, content), 'B')
                ) STORED,
    UNIQUE (document_id, ordinal)
);
CREATE INDEX chunks_collection_idx ON chunks (collection);
CREATE INDEX chunks_embedding_idx ON chunks USING hnsw (embedding vector_cosine_ops)
    WITH (m = 16, ef_construction = 64);
CREATE INDEX chunks_tsv_idx ON chunks USING gin (tsv);
