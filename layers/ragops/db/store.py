"""The store's embedding model: recorded once, checked on every open, changed only by reembed;
and the HNSW index over its vectors, rebuilt with other parameters on request."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import psycopg
from psycopg import sql

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
                # An empty store: nothing to fill the new column with.
                _replace_embedding_column(conn, dimension)
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


def _replace_embedding_column(
    conn: psycopg.Connection, dimension: int, fill: str | None = None
) -> None:
    """A new `vector(dimension)` embedding column in place of the old one, filled by the
    statement `fill` (if any), then indexed with the old index's parameters."""
    parameters = index_parameters(conn)
    _drop_index(conn, INDEX_NAME)
    conn.execute("ALTER TABLE chunks DROP COLUMN embedding")
    conn.execute(f"ALTER TABLE chunks ADD COLUMN embedding vector({int(dimension)})")
    if fill is not None:
        conn.execute(fill)
    conn.execute("ALTER TABLE chunks ALTER COLUMN embedding SET NOT NULL")
    conn.execute(_create_index(INDEX_NAME, parameters))


# --- the HNSW index ------------------------------------------------------------------------

INDEX_NAME = "chunks_embedding_idx"
_REBUILT_NAME = "chunks_embedding_idx_rebuilt"


@dataclass(frozen=True)
class IndexParameters:
    """HNSW build parameters: links per vector (`m`) and the candidate list while linking.

    Larger values give a graph that finds more of the true nearest neighbours at the same
    ef_search, for a slower build and slower inserts. The defaults are pgvector's own.
    """

    m: int = 16
    ef_construction: int = 64

    def __post_init__(self) -> None:
        # pgvector's bounds, checked here so the error names the option, not a server error.
        if not 2 <= self.m <= 100:
            raise ValueError(f"m must be between 2 and 100, not {self.m}")
        if not 4 <= self.ef_construction <= 1000:
            raise ValueError(
                f"ef_construction must be between 4 and 1000, not {self.ef_construction}"
            )
        if self.ef_construction < 2 * self.m:
            raise ValueError(
                f"ef_construction must be at least twice m ({2 * self.m}), "
                f"not {self.ef_construction}"
            )

    def clause(self) -> sql.Composable:
        return sql.SQL("WITH (m = {}, ef_construction = {})").format(
            sql.Literal(self.m), sql.Literal(self.ef_construction)
        )


def index_parameters(conn: psycopg.Connection) -> IndexParameters:
    """The vector index's parameters (pgvector's defaults for any it was not built with)."""
    row = conn.execute(
        "SELECT reloptions FROM pg_class WHERE oid = to_regclass(%s)", (INDEX_NAME,)
    ).fetchone()
    options = dict(option.split("=", 1) for option in (row[0] or [])) if row else {}
    defaults = IndexParameters()
    return IndexParameters(
        m=int(options.get("m", defaults.m)),
        ef_construction=int(options.get("ef_construction", defaults.ef_construction)),
    )


def _create_index(
    name: str, parameters: IndexParameters, concurrently: bool = False
) -> sql.Composed:
    return sql.SQL(
        "CREATE INDEX {}{} ON chunks USING hnsw (embedding vector_cosine_ops) {}"
    ).format(
        sql.SQL("CONCURRENTLY ") if concurrently else sql.SQL(""),
        sql.Identifier(name),
        parameters.clause(),
    )


def _drop_index(conn: psycopg.Connection, name: str) -> None:
    conn.execute(sql.SQL("DROP INDEX IF EXISTS {}").format(sql.Identifier(name)))


def rebuild_index(
    conn: psycopg.Connection, parameters: IndexParameters, maintenance_work_mem: str
) -> float:
    """Build the vector index again with `parameters` and swap it in; returns the seconds.

    The new index is built beside the old one (CREATE INDEX CONCURRENTLY), so searches and
    ingest go on meanwhile; only the swap at the end locks the table, for a moment. The
    build is fast only while the graph fits in `maintenance_work_mem` (about 2 GB a million
    384-d vectors); beyond that it goes on much more slowly. `conn` must be in autocommit.
    """
    started = time.perf_counter()
    # An index left by an interrupted rebuild (invalid, but still updated by every insert).
    _drop_index(conn, _REBUILT_NAME)
    conn.execute("SELECT set_config('maintenance_work_mem', %s, false)", (maintenance_work_mem,))
    try:
        conn.execute(_create_index(_REBUILT_NAME, parameters, concurrently=True))
        with conn.transaction():
            _drop_index(conn, INDEX_NAME)
            conn.execute(
                sql.SQL("ALTER INDEX {} RENAME TO {}").format(
                    sql.Identifier(_REBUILT_NAME), sql.Identifier(INDEX_NAME)
                )
            )
    except BaseException:
        try:
            _drop_index(conn, _REBUILT_NAME)
        except psycopg.Error as exc:
            # Blocked by the same writers or timeouts as the build, most likely.
            log.warning(
                "the rebuild left the unfinished index %s (%s); the next rebuild drops it, "
                "or DROP INDEX CONCURRENTLY %s",
                _REBUILT_NAME,
                exc,
                _REBUILT_NAME,
            )
        raise
    finally:
        with contextlib.suppress(psycopg.Error):
            conn.execute("RESET maintenance_work_mem")
    seconds = time.perf_counter() - started
    log.info("rebuilt the vector index with %s in %.1f s", parameters, seconds)
    return seconds


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
        _replace_embedding_column(
            conn,
            dimension,
            fill="UPDATE chunks c SET embedding = r.embedding FROM reembedded r WHERE r.id = c.id",
        )
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
