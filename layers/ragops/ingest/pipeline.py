"""Ingest: fetch -> parse -> chunk -> embed -> one transaction per document."""

from __future__ import annotations

import hashlib
import logging
import os
import time
import uuid
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, TypeGuard

from ragops.db import documents
from ragops.db.database import Database
from ragops.db.documents import DocumentRow, DocumentVersion
from ragops.errors import FileTooLargeError, IngestError, StaleVersionError
from ragops.ingest.chunk import ChunkingPolicy, WordPieceCounter, chunk_sections
from ragops.ingest.document import Chunk
from ragops.ingest.embedding import Embedded, EmbeddingStream, EmbedFailed
from ragops.ingest.limits import IngestLimits
from ragops.ingest.parse import mime_type_for, parse_document
from ragops.models import Models
from ragops.models.embedder import Vectors
from ragops.settings import Settings

log = logging.getLogger(__name__)

Status = Literal["ingested", "unchanged", "failed"]
# Chunks embedded as one group, cut across documents: length bucketing within a group
# leaves little padding, and the next group is queued before this one is waited for.
# Measured on 1,404 chunks (medians of 3): 256 gives 105 chunks/s, 512 gives 112, 1,024
# gives 114; documents finished in one group are written while the next is embedded.
EMBED_GROUP_CHUNKS = 1024
# Documents embedded but not yet written, at most: bounds the vectors held in memory.
SAVES_QUEUED = 64
# Files parsed and chunked ahead, on their own thread, while the models embed: the
# tokenizer and ONNX Runtime both release the GIL, so the two overlap.
PREPARE_AHEAD = 16


@dataclass
class IngestOutcome:
    source: str
    status: Status
    document_id: uuid.UUID | None = None
    chunks: int = 0
    bytes: int = 0
    error: str | None = None
    seconds: float = 0.0


@dataclass
class _Prepared:
    version: DocumentVersion
    chunks: list[Chunk]
    started: float
    existing: DocumentRow | None = field(default=None)


def file_source(path: Path) -> str:
    """The source URI a local file is stored under."""
    return path.resolve().as_uri()


def discover_files(paths: Iterable[Path]) -> Iterator[Path]:
    """Files named, and files under directories named (recursively, hidden ones skipped).

    Each file comes once, however often it is named (`docs docs/a.md`).
    """
    seen: set[Path] = set()
    for path in paths:
        for file in _walk(path) if path.is_dir() else [path]:
            resolved = file.resolve()
            if resolved not in seen:
                seen.add(resolved)
                yield file


def _walk(folder: Path) -> Iterator[Path]:
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if not name.startswith("."):
                yield Path(root) / name


class Ingestor:
    """Ingests sources into the store; each source succeeds or fails on its own."""

    def __init__(self, db: Database, models: Models, settings: Settings):
        self.db = db
        self.models = models
        self.settings = settings
        self.policy = ChunkingPolicy(
            chunk_tokens=settings.chunk_tokens,
            overlap_tokens=settings.chunk_overlap,
            max_tokens=models.manifest.embedder.max_seq_length,
            max_chunks=settings.max_chunks,
        )
        self.limits = IngestLimits.from_settings(settings)

    def ingest_paths(self, paths: Iterable[Path], collection: str) -> Iterator[IngestOutcome]:
        """Ingest local files; a document is written while later ones are still embedded."""
        with ThreadPoolExecutor(1, thread_name_prefix="ingest-writer") as writer:
            saving: deque[Future[IngestOutcome]] = deque()
            for item in self._embedded_documents(paths, collection):
                if isinstance(item, IngestOutcome):
                    yield item
                    continue
                saving.append(writer.submit(self._save, item.document, item.vectors))
                while saving and (saving[0].done() or len(saving) > SAVES_QUEUED):
                    yield saving.popleft().result()
            while saving:
                yield saving.popleft().result()

    def _embedded_documents(
        self, paths: Iterable[Path], collection: str
    ) -> Iterator[IngestOutcome | Embedded[_Prepared]]:
        stream = self._embedding_stream()
        for prepared in self._prepared_ahead(paths, collection):
            if isinstance(prepared, IngestOutcome):
                yield prepared
                continue
            yield from self._embed_failures(stream.add(prepared, prepared.chunks))
        yield from self._embed_failures(stream.finish())

    def _embedding_stream(self) -> EmbeddingStream[_Prepared]:
        return EmbeddingStream(
            self.models.embedder, EMBED_GROUP_CHUNKS, self.settings.embed_batch_size
        )

    def _embed_failures(
        self, released: Iterable[Embedded[_Prepared] | EmbedFailed[_Prepared]]
    ) -> Iterator[IngestOutcome | Embedded[_Prepared]]:
        """Documents the model failed on, recorded as failed; the embedded ones as they are."""
        for item in released:
            if isinstance(item, EmbedFailed):
                yield self._write_failed(item.document, f"could not embed: {item.reason}")
            else:
                yield item

    def _prepared_ahead(
        self, paths: Iterable[Path], collection: str
    ) -> Iterator[_Prepared | IngestOutcome]:
        """Each path prepared, in order, with up to PREPARE_AHEAD files read ahead."""
        with ThreadPoolExecutor(1, thread_name_prefix="ingest-prepare") as preparer:
            pending: deque[Future[_Prepared | IngestOutcome]] = deque()
            for path in paths:
                pending.append(preparer.submit(self._prepare_path, path, collection))
                if len(pending) > PREPARE_AHEAD:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()

    def ingest_bytes(
        self,
        data: bytes,
        version: DocumentVersion,
        name: str,
        existing: DocumentRow | None = None,
    ) -> IngestOutcome:
        """Ingest one source whose bytes are already fetched (an S3 object, an upload).

        `existing` is the stored row when the caller has just read it; else it is looked up.
        """
        started = time.perf_counter()
        if existing is None:
            with self.db.pool.connection() as conn:
                existing = documents.find_document(conn, version.collection, version.source)
        prepared = self._prepare_bytes(data, version, name, existing, started)
        if isinstance(prepared, IngestOutcome):
            return prepared
        stream = self._embedding_stream()
        released = [*stream.add(prepared, prepared.chunks), *stream.finish()]
        (item,) = self._embed_failures(released)
        if isinstance(item, IngestOutcome):
            return item
        return self._save(item.document, item.vectors)

    def _prepare_path(self, path: Path, collection: str) -> _Prepared | IngestOutcome:
        started = time.perf_counter()
        source = file_source(path)
        try:
            stat = path.stat()
        except OSError as exc:
            return IngestOutcome(source, "failed", error=f"cannot read file: {exc.strerror}")
        version = DocumentVersion(
            collection=collection,
            source=source,
            size_bytes=stat.st_size,
            source_mtime=datetime.fromtimestamp(stat.st_mtime, tz=UTC),
        )
        with self.db.pool.connection() as conn:
            existing = documents.find_document(conn, collection, source)
        if self._unchanged_by_stat(existing, version):
            assert existing is not None
            return IngestOutcome(source, "unchanged", existing.id, existing.chunk_count)
        try:
            self.check_size(version.size_bytes)
            mime_type_for(path.name)
            data = path.read_bytes()
        except IngestError as exc:
            return self.record_failure(version, str(exc), started)
        except OSError as exc:
            return self.record_failure(version, f"cannot read file: {exc.strerror}", started)
        return self._prepare_bytes(data, version, path.name, existing, started)

    def _prepare_bytes(
        self,
        data: bytes,
        version: DocumentVersion,
        name: str,
        existing: DocumentRow | None,
        started: float,
    ) -> _Prepared | IngestOutcome:
        version.size_bytes = len(data)
        version.sha256 = hashlib.sha256(data).hexdigest()
        if self._unchanged_by_content(existing, version):
            assert existing is not None
            with self.db.pool.connection() as conn:
                documents.touch_unchanged(conn, existing.id, version)
            return IngestOutcome(version.source, "unchanged", existing.id, existing.chunk_count)
        try:
            self.check_size(len(data))
            parsed = parse_document(data, name, self.limits)
            counter = WordPieceCounter(self.models.embedder.tokenizer)
            chunks = chunk_sections(parsed.sections, counter, self.policy)
        except IngestError as exc:
            return self.record_failure(version, str(exc), started)
        except Exception as exc:  # a parser bug on one file must not stop the batch
            log.exception("unexpected error parsing %s", version.source)
            return self.record_failure(
                version, f"could not parse: {type(exc).__name__}: {exc}", started
            )
        version.title = version.title or parsed.title
        version.mime_type = parsed.mime_type
        if existing is None:
            with self.db.pool.connection() as conn:
                documents.mark_pending(conn, version)
        return _Prepared(version, chunks, started, existing)

    def _save(self, item: _Prepared, vectors: Vectors) -> IngestOutcome:
        """One transaction for the document; a failure is recorded and the batch goes on."""
        try:
            with self.db.pool.connection() as conn:
                saved = documents.save_ready(
                    conn, item.version, item.chunks, vectors, self.models.embedder_id
                )
        except StaleVersionError as exc:
            return self._superseded(item.version, exc)
        except Exception as exc:  # rolled back: nothing of this version was written
            log.exception("could not save %s", item.version.source)
            first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            return self._write_failed(item, f"could not save the chunks: {first_line}")
        return IngestOutcome(
            item.version.source,
            "ingested" if saved.written else "unchanged",
            saved.document_id,
            chunks=len(item.chunks),
            bytes=item.version.size_bytes,
            seconds=time.perf_counter() - item.started,
        )

    def _write_failed(self, item: _Prepared, reason: str) -> IngestOutcome:
        """Record a version that could not be embedded or saved, without losing the batch."""
        document_id = None
        try:
            with self.db.pool.connection() as conn:
                document_id = documents.save_write_failed(conn, item.version, reason)
        except Exception:  # the database itself is failing: report, and go on with the batch
            log.exception("could not record the failure of %s", item.version.source)
        return IngestOutcome(
            item.version.source,
            "failed",
            document_id,
            bytes=item.version.size_bytes,
            error=reason,
            seconds=time.perf_counter() - item.started,
        )

    def check_size(self, size: int) -> None:
        limit = self.settings.max_file_bytes
        if size > limit:
            raise FileTooLargeError(
                f"file is {size:,} bytes, over the {limit:,}-byte limit (RAGOPS_MAX_FILE_BYTES)"
            )

    def is_current(self, existing: DocumentRow | None) -> TypeGuard[DocumentRow]:
        """Whether a stored document is ready and embedded with the configured model."""
        return existing is not None and existing.is_ready_with(self.models.embedder_id)

    def _unchanged_by_stat(self, existing: DocumentRow | None, version: DocumentVersion) -> bool:
        return self.is_current(existing) and (existing.size_bytes, existing.source_mtime) == (
            version.size_bytes,
            version.source_mtime,
        )

    def _unchanged_by_content(self, existing: DocumentRow | None, version: DocumentVersion) -> bool:
        return self.is_current(existing) and existing.sha256 == version.sha256

    def _superseded(self, version: DocumentVersion, exc: StaleVersionError) -> IngestOutcome:
        """A late delivery of an older version: the store already holds a newer one."""
        log.info("skipping %s", exc)
        return IngestOutcome(version.source, "unchanged", error=str(exc))

    def record_failure(
        self, version: DocumentVersion, reason: str, started: float | None = None
    ) -> IngestOutcome:
        """Mark this version failed with `reason`; its stale chunks go."""
        started = time.perf_counter() if started is None else started
        try:
            with self.db.pool.connection() as conn:
                document_id = documents.save_failed(conn, version, reason)
        except StaleVersionError as exc:
            return self._superseded(version, exc)
        return IngestOutcome(
            version.source,
            "failed",
            document_id,
            bytes=version.size_bytes,
            error=reason,
            seconds=time.perf_counter() - started,
        )
