"""The store searched for latency: real chunks and vectors, copied until it is big enough.

Embedding 10,000 chunks would take minutes and there is not that much distinct text in
site-packages, so the corpus is embedded once (by an ingest run) and its documents are
written again under new sources. Copies after the first get their vectors jittered
slightly: pgvector's HNSW index folds identical vectors into one graph element, so exact
copies would leave a graph a tenth of the size and flatter the latency.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt
import psycopg
from pgvector.psycopg import register_vector
from psycopg.rows import namedtuple_row

from ragops.db.database import ensure_pgvector
from ragops.db.documents import DocumentVersion, save_ready
from ragops.db.migrate import migrate
from ragops.db.store import check_store_model, stored_model
from ragops.ingest.document import Chunk

# Per-dimension noise on unit vectors of 384 dimensions: cosine to the original ~0.995.
JITTER = 0.005
Vectors = npt.NDArray[np.float32]


@dataclass(frozen=True)
class StoredDocument:
    version: DocumentVersion
    chunks: list[Chunk]
    vectors: Vectors


@dataclass(frozen=True)
class StoredCorpus:
    embedder_id: str
    dimension: int
    documents: list[StoredDocument]

    @property
    def chunks(self) -> int:
        return sum(len(d.chunks) for d in self.documents)


def read_corpus(url: str) -> StoredCorpus:
    """Every ready document of an ingested store, with its chunks and their vectors."""
    with psycopg.connect(url) as conn, conn.cursor(row_factory=namedtuple_row) as cur:
        model = stored_model(conn)
        rows = cur.execute(
            """SELECT d.collection, d.source, d.title, d.mime_type, d.size_bytes, d.sha256,
                      c.ordinal, c.content, c.token_count, c.page, c.heading,
                      c.embedding::real[] AS embedding
               FROM documents d JOIN chunks c ON c.document_id = d.id
               WHERE d.status = 'ready'
               ORDER BY d.source, c.ordinal"""
        ).fetchall()
    if model is None or not rows:
        raise RuntimeError(f"no ingested chunks to copy in {url}")
    grouped: dict[str, tuple[DocumentVersion, list[Chunk], list[Vectors]]] = {}
    for r in rows:
        if r.source not in grouped:
            version = DocumentVersion(
                r.collection, r.source, r.size_bytes, r.sha256, r.title, r.mime_type
            )
            grouped[r.source] = (version, [], [])
        grouped[r.source][1].append(Chunk(r.ordinal, r.content, r.token_count, r.heading, r.page))
        grouped[r.source][2].append(np.asarray(r.embedding, dtype=np.float32))
    documents = [
        StoredDocument(version, chunks, np.stack(vectors))
        for version, chunks, vectors in grouped.values()
    ]
    return StoredCorpus(embedder_id=model[0], dimension=model[1], documents=documents)


def fill_store(
    url: str,
    corpus: StoredCorpus,
    target_chunks: int,
    progress: Callable[[int], None] | None = None,
    seed: int = 0,
) -> int:
    """Write copies of `corpus` into the empty database at `url` until it holds `target_chunks`."""
    rng = np.random.default_rng(seed)
    written = 0
    with psycopg.connect(url, autocommit=True) as conn:
        ensure_pgvector(conn)
        migrate(conn)
        register_vector(conn)
        check_store_model(conn, corpus.embedder_id, corpus.dimension)
        copy = 0
        while written < target_chunks:
            for doc in corpus.documents:
                if written >= target_chunks:
                    break
                vectors = doc.vectors if copy == 0 else _jitter(doc.vectors, rng)
                version = replace(doc.version, source=f"{doc.version.source}#copy-{copy}")
                save_ready(conn, version, doc.chunks, vectors, corpus.embedder_id)
                written += len(doc.chunks)
            copy += 1
            if progress:
                progress(written)
        # A store that has been live a while has planner statistics; a fresh COPY does not.
        conn.execute("ANALYZE documents")
        conn.execute("ANALYZE chunks")
    return written


def _jitter(vectors: Vectors, rng: np.random.Generator) -> Vectors:
    noisy = vectors + rng.normal(0.0, JITTER, vectors.shape).astype(np.float32)
    return (noisy / np.linalg.norm(noisy, axis=1, keepdims=True)).astype(np.float32)
