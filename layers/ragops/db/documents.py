"""Documents and chunks: every write of a document and its chunks is one transaction."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import numpy.typing as npt
import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from ragops.errors import StaleVersionError
from ragops.ingest.document import Chunk

DOCUMENT_COLUMNS = """id, collection, source, title, mime_type, size_bytes, sha256, etag,
    source_mtime, status, error, metadata, embedding_model, chunk_count, created_at,
    updated_at, ingested_at"""


@dataclass
class DocumentVersion:
    """One version of a source, as ingest sees it before writing."""

    collection: str
    source: str
    size_bytes: int
    sha256: str | None = None
    title: str | None = None
    mime_type: str | None = None
    etag: str | None = None
    source_mtime: datetime | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    # S3 LastModified only grows per key, so an older one is a late, superseded delivery.
    # A local file's mtime can go back (a restored backup), so it is not compared.
    reject_older: bool = False

    def superseded_by(self, stored_mtime: datetime | None) -> bool:
        """Whether a stored version modified at `stored_mtime` is newer than this one."""
        return (
            self.reject_older
            and self.source_mtime is not None
            and stored_mtime is not None
            and stored_mtime > self.source_mtime
        )


@dataclass
class DocumentRow:
    id: uuid.UUID
    collection: str
    source: str
    title: str | None
    mime_type: str | None
    size_bytes: int | None
    sha256: str | None
    etag: str | None
    source_mtime: datetime | None
    status: str
    error: str | None
    metadata: dict[str, Any]
    embedding_model: str | None
    chunk_count: int
    created_at: datetime
    updated_at: datetime
    ingested_at: datetime | None

    def is_ready_with(self, embedding_model: str) -> bool:
        """Searchable, with vectors of `embedding_model`: nothing to re-embed."""
        return self.status == "ready" and self.embedding_model == embedding_model

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in self.__dict__.items():
            if isinstance(value, uuid.UUID):
                value = str(value)
            elif isinstance(value, datetime):
                value = value.isoformat()
            out[key] = value
        return out


def _lock_source(conn: psycopg.Connection, collection: str, source: str) -> None:
    """Serialize writers of one source (concurrent deliveries of the same object)."""
    conn.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (f"{collection}\x1f{source}",)
    )


def _lock_version(conn: psycopg.Connection, version: DocumentVersion) -> None:
    """Lock the source; refuse a version older than the stored one when versions are ordered."""
    _lock_source(conn, version.collection, version.source)
    if not version.reject_older:
        return
    row = conn.execute(
        "SELECT source_mtime FROM documents WHERE collection = %s AND source = %s",
        (version.collection, version.source),
    ).fetchone()
    if row is not None and version.superseded_by(row[0]):
        raise StaleVersionError(
            f"{version.source}: a newer version (modified {row[0].isoformat()}) is already stored"
        )


def find_document(conn: psycopg.Connection, collection: str, source: str) -> DocumentRow | None:
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            f"SELECT {DOCUMENT_COLUMNS} FROM documents WHERE collection = %s AND source = %s",
            (collection, source),
        ).fetchone()
    return DocumentRow(**row) if row else None


def get_document(conn: psycopg.Connection, document_id: uuid.UUID) -> DocumentRow | None:
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            f"SELECT {DOCUMENT_COLUMNS} FROM documents WHERE id = %s", (document_id,)
        ).fetchone()
    return DocumentRow(**row) if row else None


def list_documents(
    conn: psycopg.Connection,
    collection: str | None = None,
    status: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[DocumentRow]:
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            f"""SELECT {DOCUMENT_COLUMNS} FROM documents
                WHERE (%(collection)s::text IS NULL OR collection = %(collection)s)
                  AND (%(status)s::text IS NULL OR status = %(status)s)
                ORDER BY collection, source
                LIMIT %(limit)s OFFSET %(offset)s""",
            {"collection": collection, "status": status, "limit": limit, "offset": offset},
        ).fetchall()
    return [DocumentRow(**row) for row in rows]


def mark_pending(conn: psycopg.Connection, version: DocumentVersion) -> None:
    """Record a new source as pending; an existing row keeps serving its last version."""
    conn.execute(
        """INSERT INTO documents (collection, source, size_bytes, status, metadata)
           VALUES (%s, %s, %s, 'pending', %s)
           ON CONFLICT (collection, source) DO NOTHING""",
        (version.collection, version.source, version.size_bytes, Jsonb(version.metadata)),
    )


_UPSERT = """
INSERT INTO documents AS d (collection, source, title, mime_type, size_bytes, sha256, etag,
    source_mtime, status, error, metadata, embedding_model, chunk_count, ingested_at)
VALUES (%(collection)s, %(source)s, %(title)s, %(mime_type)s, %(size_bytes)s, %(sha256)s,
    %(etag)s, %(source_mtime)s, %(status)s, %(error)s, %(metadata)s, %(embedding_model)s,
    %(chunk_count)s, CASE WHEN %(status)s = 'ready' THEN now() END)
ON CONFLICT (collection, source) DO UPDATE SET
    title = EXCLUDED.title, mime_type = EXCLUDED.mime_type, size_bytes = EXCLUDED.size_bytes,
    sha256 = EXCLUDED.sha256, etag = EXCLUDED.etag, source_mtime = EXCLUDED.source_mtime,
    status = EXCLUDED.status, error = EXCLUDED.error, metadata = EXCLUDED.metadata,
    embedding_model = EXCLUDED.embedding_model, chunk_count = EXCLUDED.chunk_count,
    ingested_at = coalesce(EXCLUDED.ingested_at, d.ingested_at), updated_at = now()
RETURNING id
"""

_COPY_CHUNKS = """COPY chunks (document_id, collection, ordinal, content, token_count, page,
    heading, embedding) FROM STDIN (FORMAT BINARY)"""


def _upsert(
    conn: psycopg.Connection,
    version: DocumentVersion,
    status: str,
    error: str | None,
    embedding_model: str | None,
    chunk_count: int,
) -> uuid.UUID:
    params = {
        **version.__dict__,
        "metadata": Jsonb(version.metadata),
        "status": status,
        "error": error,
        "embedding_model": embedding_model,
        "chunk_count": chunk_count,
    }
    row = conn.execute(_UPSERT, params).fetchone()
    assert row is not None
    return uuid.UUID(str(row[0]))


@dataclass(frozen=True)
class Saved:
    document_id: uuid.UUID
    # False when the same content, embedded by the same model, was already stored and ready.
    written: bool


def save_ready(
    conn: psycopg.Connection,
    version: DocumentVersion,
    chunks: Sequence[Chunk],
    vectors: npt.NDArray[np.float32],
    embedding_model: str,
) -> Saved:
    """Replace the document's chunks with these, atomically: readers see old or new, never half."""
    with conn.transaction():
        _lock_version(conn, version)
        stored = find_document(conn, version.collection, version.source)
        if (
            stored is not None
            and stored.is_ready_with(embedding_model)
            and stored.sha256 == version.sha256
        ):
            # Concurrent deliveries of one object all embed it; the first to get the lock
            # writes, the others find their content there and keep its chunks.
            touch_unchanged(conn, stored.id, version)
            return Saved(stored.id, written=False)
        document_id = _upsert(conn, version, "ready", None, embedding_model, len(chunks))
        conn.execute("DELETE FROM chunks WHERE document_id = %s", (document_id,))
        with conn.cursor() as cur, cur.copy(_COPY_CHUNKS) as copy:
            copy.set_types(["uuid", "text", "int4", "text", "int4", "int4", "text", "vector"])
            for chunk, vector in zip(chunks, vectors, strict=True):
                copy.write_row(
                    (
                        document_id,
                        version.collection,
                        chunk.ordinal,
                        chunk.content,
                        chunk.token_count,
                        chunk.page,
                        chunk.heading,
                        vector,
                    )
                )
    return Saved(document_id, written=True)


def save_failed(conn: psycopg.Connection, version: DocumentVersion, error: str) -> uuid.UUID:
    """Record why the current version failed; its stale chunks go, so none can be served."""
    with conn.transaction():
        _lock_version(conn, version)
        document_id = _upsert(conn, version, "failed", error, None, 0)
        conn.execute("DELETE FROM chunks WHERE document_id = %s", (document_id,))
    return document_id


def save_write_failed(conn: psycopg.Connection, version: DocumentVersion, error: str) -> uuid.UUID:
    """Record a version whose chunks could not be written (the model or database failed).

    A ready document keeps serving its last good version and notes the error; the next
    ingest retries. Anything else is marked failed, like a file that cannot be parsed.
    """
    with conn.transaction():
        _lock_source(conn, version.collection, version.source)
        row = conn.execute(
            """UPDATE documents SET error = %s, updated_at = now()
               WHERE collection = %s AND source = %s AND status = 'ready'
               RETURNING id""",
            (error, version.collection, version.source),
        ).fetchone()
        if row is not None:
            return uuid.UUID(str(row[0]))
        return save_failed(conn, version, error)


def touch_unchanged(
    conn: psycopg.Connection, document_id: uuid.UUID, version: DocumentVersion
) -> None:
    """Same content seen again (a new mtime or ETag): remember it, keep the chunks."""
    conn.execute(
        """UPDATE documents SET source_mtime = coalesce(%s, source_mtime),
                  etag = coalesce(%s, etag), updated_at = now()
           WHERE id = %s""",
        (version.source_mtime, version.etag, document_id),
    )


def delete_document(conn: psycopg.Connection, document_id: uuid.UUID) -> bool:
    """Delete a document and (by cascade) its chunks; False when there was none."""
    with conn.transaction():
        row = conn.execute(
            "DELETE FROM documents WHERE id = %s RETURNING id", (document_id,)
        ).fetchone()
    return row is not None


def delete_by_source(conn: psycopg.Connection, collection: str, source: str) -> bool:
    with conn.transaction():
        _lock_source(conn, collection, source)
        row = conn.execute(
            "DELETE FROM documents WHERE collection = %s AND source = %s RETURNING id",
            (collection, source),
        ).fetchone()
    return row is not None


def status_counts(conn: psycopg.Connection) -> dict[str, int]:
    rows = conn.execute("SELECT status, count(*) FROM documents GROUP BY status").fetchall()
    return {str(status): int(count) for status, count in rows}


def collection_exists(conn: psycopg.Connection, collection: str) -> bool:
    row = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM documents WHERE collection = %s)", (collection,)
    ).fetchone()
    return bool(row and row[0])


def delete_source(
    conn: psycopg.Connection, source: str, except_collection: str | None = None
) -> bool:
    """Delete a source's documents in every collection (but `except_collection`)."""
    with conn.transaction():
        rows = conn.execute(
            """DELETE FROM documents
               WHERE source = %s AND collection IS DISTINCT FROM %s RETURNING id""",
            (source, except_collection),
        ).fetchall()
    return bool(rows)
