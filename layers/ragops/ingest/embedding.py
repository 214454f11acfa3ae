"""Many documents' chunks embedded as one stream.

Chunks are embedded in fixed-size groups cut across document boundaries, the next group is
queued on the model's workers before the last one is waited for, and each document is
released as soon as its last chunk is embedded. So the cores never wait at a group's end,
and a document is written while later ones are still being embedded, however big it is.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np

from ragops.ingest.document import Chunk
from ragops.models.embedder import Embedder, PendingVectors, Vectors

log = logging.getLogger(__name__)

D = TypeVar("D")


@dataclass
class Embedded(Generic[D]):
    """Every chunk of `document` embedded: one vector per chunk, in order."""

    document: D
    vectors: Vectors


@dataclass
class EmbedFailed(Generic[D]):
    """The model failed on a group holding chunks of `document`."""

    document: D
    reason: str


@dataclass
class _Progress(Generic[D]):
    document: D
    chunks: Sequence[Chunk]
    vectors: Vectors
    remaining: int
    failed: bool = False


@dataclass
class _Span(Generic[D]):
    progress: _Progress[D]
    start: int
    stop: int


@dataclass
class _Group(Generic[D]):
    spans: list[_Span[D]]
    pending: PendingVectors


class EmbeddingStream(Generic[D]):
    """Feed documents with `add`, then call `finish`; both yield the documents released."""

    # Groups queued at once: the one running and the next, so the workers never run dry.
    IN_FLIGHT = 2

    def __init__(self, embedder: Embedder, group_chunks: int, batch_size: int):
        self.embedder = embedder
        self.group_chunks = group_chunks
        self.batch_size = batch_size
        self._filling: list[_Span[D]] = []
        self._filled = 0
        self._in_flight: deque[_Group[D]] = deque()

    def add(self, document: D, chunks: Sequence[Chunk]) -> Iterator[Embedded[D] | EmbedFailed[D]]:
        vectors = np.empty((len(chunks), self.embedder.dimension), dtype=np.float32)
        progress = _Progress(document, chunks, vectors, remaining=len(chunks))
        if not chunks:
            yield Embedded(document, vectors)
            return
        start = 0
        while start < len(chunks):
            stop = min(len(chunks), start + self.group_chunks - self._filled)
            self._filling.append(_Span(progress, start, stop))
            self._filled += stop - start
            start = stop
            if self._filled >= self.group_chunks:
                yield from self._start_group()

    def finish(self) -> Iterator[Embedded[D] | EmbedFailed[D]]:
        if self._filling:
            self._in_flight.append(self._queue(self._filling))
            self._filling, self._filled = [], 0
        while self._in_flight:
            yield from self._collect(self._in_flight.popleft())

    def _start_group(self) -> Iterator[Embedded[D] | EmbedFailed[D]]:
        self._in_flight.append(self._queue(self._filling))
        self._filling, self._filled = [], 0
        while len(self._in_flight) >= self.IN_FLIGHT:
            yield from self._collect(self._in_flight.popleft())

    def _queue(self, spans: list[_Span[D]]) -> _Group[D]:
        chunks = [chunk for s in spans for chunk in s.progress.chunks[s.start : s.stop]]
        pieces = [chunk.pieces for chunk in chunks if chunk.pieces is not None]
        pending = self.embedder.start(
            [chunk.embedding_text for chunk in chunks],
            batch_size=self.batch_size,
            pieces=pieces if len(pieces) == len(chunks) else None,
        )
        return _Group(spans, pending)

    def _collect(self, group: _Group[D]) -> Iterator[Embedded[D] | EmbedFailed[D]]:
        try:
            vectors = group.pending.result()
        except Exception as exc:  # a model failure fails this group's documents, no others
            log.exception("embedding failed for a group of %d documents", len(group.spans))
            for span in group.spans:
                if not span.progress.failed:
                    span.progress.failed = True
                    yield EmbedFailed(span.progress.document, f"{type(exc).__name__}: {exc}")
            return
        offset = 0
        for span in group.spans:
            size = span.stop - span.start
            progress = span.progress
            if not progress.failed:
                progress.vectors[span.start : span.stop] = vectors[offset : offset + size]
                progress.remaining -= size
                if progress.remaining == 0:
                    yield Embedded(progress.document, progress.vectors)
            offset += size
