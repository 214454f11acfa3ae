"""The store's embedding model: recorded once, checked on every open, changed only by reembed."""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
import psycopg

from ragops.errors import StoreModelMismatchError
from ragops.ingest.document import embedding_text

log = logging.getLogger(__name__)


def stored_model(conn: psycopg.Connection) -> tuple[str, int] | None:
    row = conn.execute("SELECT embedding_model, embedding_dim FROM store_info").fetchone()
    return (str(row[0]), int(row[1])) if row else None


def column_dimension(conn: psycopg.Connection) -> int:
    row = conn.execute(
        """SELECT atttypmod FROM pg_attribute
           WHERE attrelid = 'chunks'::regclass AND attname = 'embedding'"""
    ).fetchone()
    assert row is not None
    return int(row[0])


def check_store_model(conn: psycopg.Connection, model_id: str, dimension: int) -> None:
    """Record the model on first use; refuse a store embedded with another model."""
    with conn.transaction():
        conn.execute("LOCK TABLE store_info IN EXCLUSIVE MODE")
        current = stored_model(conn)
        if current is None:
            if column_dimension(conn) != dimension:
                _set_dimension(conn, dimension)
            conn.execute(
                "INSERT INTO store_info (embedding_model, embedding_dim) VALUES (%s, %s)",
                (model_id, dimension),
            )
            return
    if current != (model_id, dimension):
        raise StoreModelMismatchError(
            f"this store was embedded with {current[0]} ({current[1]} dimensions) but the "
            f"configured model is {model_id} ({dimension} dimensions); run `ragops reembed` "
            "to re-embed every chunk with the configured model, or configure the store's "
            "model again (RAGOPS_EMBEDDER_VARIANT, RAGOPS_MODEL_DIR)"
        )


def _set_dimension(conn: psycopg.Connection, dimension: int) -> None:
    conn.execute("DROP INDEX IF EXISTS chunks_embedding_idx")
    conn.execute("ALTER TABLE chunks DROP COLUMN embedding")
    conn.execute(f"ALTER TABLE chunks ADD COLUMN embedding vector({int(dimension)}) NOT NULL")
    _create_embedding_index(conn)


def _create_embedding_index(conn: psycopg.Connection) -> None:
    conn.execute(
        """CREATE INDEX chunks_embedding_idx ON chunks USING hnsw (embedding vector_cosine_ops)
           WITH (m = 16, ef_construction = 64)"""
    )


Embed = Callable[[list[str]], np.ndarray]


def reembed(
    conn: psycopg.Connection,
    model_id: str,
    dimension: int,
    embed: Embed,
    batch_size: int = 256,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Re-embed every chunk with `embed` in one transaction; returns the chunks done.

    Ingest waits until the commit. Searches keep reading the old vectors while the chunks
    are embedded (the slow part) and wait only for the final swap of the column and the
    rebuild of its index; after the commit they see only new vectors.
    """
    done = 0
    with conn.transaction():
        # Ingest locks a document and then its chunks: take them in the same order, so
        # ingest waits instead of deadlocking with this transaction.
        conn.execute("LOCK TABLE documents IN SHARE ROW EXCLUSIVE MODE")
        conn.execute("LOCK TABLE chunks IN SHARE ROW EXCLUSIVE MODE")
        conn.execute(
            f"""CREATE TEMPORARY TABLE reembedded (
                    id bigint PRIMARY KEY, embedding vector({int(dimension)}) NOT NULL
                ) ON COMMIT DROP"""
        )
        with conn.cursor(name="reembed_chunks") as cur:
            cur.itersize = batch_size
            cur.execute("SELECT id, heading, content FROM chunks ORDER BY id")
            while rows := cur.fetchmany(batch_size):
                vectors = embed([embedding_text(heading, content) for _, heading, content in rows])
                _copy_vectors(conn, [row[0] for row in rows], vectors)
                done += len(rows)
                if progress:
                    progress(len(rows))
        # The swap: from here to the commit, searches wait.
        conn.execute("LOCK TABLE store_info IN EXCLUSIVE MODE")
        conn.execute("DROP INDEX IF EXISTS chunks_embedding_idx")
        conn.execute("ALTER TABLE chunks DROP COLUMN embedding")
        conn.execute(f"ALTER TABLE chunks ADD COLUMN embedding vector({int(dimension)})")
        conn.execute(
            "UPDATE chunks c SET embedding = r.embedding FROM reembedded r WHERE r.id = c.id"
        )
        conn.execute("ALTER TABLE chunks ALTER COLUMN embedding SET NOT NULL")
        _create_embedding_index(conn)
        conn.execute("DELETE FROM store_info")
        conn.execute(
            "INSERT INTO store_info (embedding_model, embedding_dim) VALUES (%s, %s)",
            (model_id, dimension),
        )
        conn.execute(
            "UPDATE documents SET embedding_model = %s WHERE status = 'ready'", (model_id,)
        )
    log.info("re-embedded %d chunks with %s", done, model_id)
    return done


def _copy_vectors(conn: psycopg.Connection, ids: list[int], vectors: np.ndarray) -> None:
    copy_sql = "COPY reembedded (id, embedding) FROM STDIN (FORMAT BINARY)"
    with conn.cursor() as cur, cur.copy(copy_sql) as copy:
        copy.set_types(["int8", "vector"])
        for chunk_id, vector in zip(ids, vectors, strict=True):
            copy.write_row((chunk_id, vector))
