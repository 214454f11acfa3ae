"""The ingest's embedding stream, with the real fp32 embedder (its vectors do not depend
on how texts are batched, so each document's vectors can be compared with embedding it
alone)."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ragops.ingest.document import Chunk
from ragops.ingest.embedding import Embedded, EmbeddingStream, EmbedFailed
from ragops.models import Models
from ragops.models.embedder import Embedder

Released = list[Embedded[str] | EmbedFailed[str]]


@pytest.fixture(scope="module")
def embedder(model_dir: Path) -> Embedder:
    return Models(model_dir, "fp32").embedder


def chunks(name: str, count: int) -> list[Chunk]:
    return [
        Chunk(
            ordinal=i, content=f"{name}: passage {i} is about lighthouse number {i}.", token_count=9
        )
        for i in range(count)
    ]


def names(released: Iterable[Embedded[str] | EmbedFailed[str]]) -> list[str]:
    return [item.document for item in released]


def test_every_document_is_released_once_with_the_vectors_it_has_alone(
    embedder: Embedder,
) -> None:
    documents = {"a": chunks("a", 3), "b": chunks("b", 21), "empty": [], "c": chunks("c", 5)}
    stream: EmbeddingStream[str] = EmbeddingStream(embedder, group_chunks=8, batch_size=4)
    released: Released = []
    for name, doc_chunks in documents.items():
        released.extend(stream.add(name, doc_chunks))
    released.extend(stream.finish())

    assert sorted(names(released)) == sorted(documents)
    for item in released:
        assert isinstance(item, Embedded)
        alone = embedder.embed([c.embedding_text for c in documents[item.document]])
        assert item.vectors.shape == (len(documents[item.document]), embedder.dimension)
        assert np.allclose(item.vectors, alone, atol=1e-5), item.document


def test_a_document_is_released_as_soon_as_its_last_chunk_is_embedded(
    embedder: Embedder,
) -> None:
    stream: EmbeddingStream[str] = EmbeddingStream(embedder, group_chunks=4, batch_size=4)
    first = list(stream.add("small", chunks("small", 2)))
    # "big" fills the small one's group and two more: the first group is waited for
    # once the next is queued, before the stream is finished.
    while_adding = list(stream.add("big", chunks("big", 10)))
    assert first == []
    assert names(while_adding) == ["small"]
    assert names(stream.finish()) == ["big"]


def test_a_model_failure_fails_the_documents_of_its_group_and_no_others(
    embedder: Embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    poison = embedder.tokenizer.encode("zeppelin", add_special_tokens=False).ids[0]
    run = embedder._run

    def failing_run(pieces: list[list[int]]) -> Any:
        if any(poison in p for p in pieces):
            raise RuntimeError("the model failed on this batch")
        return run(pieces)

    monkeypatch.setattr(embedder, "_run", failing_run)
    spans = chunks("spans", 6)
    spans[1] = Chunk(1, "a zeppelin over the bay", 6)
    documents: dict[str, Sequence[Chunk]] = {
        "before": chunks("before", 4),  # its own group: fine
        "shares": chunks("shares", 2),  # shares the failing group with "spans"
        "spans": spans,  # over two groups, the first of which fails
        "after": chunks("after", 4),
    }
    stream: EmbeddingStream[str] = EmbeddingStream(embedder, group_chunks=4, batch_size=8)
    released: Released = []
    for name, doc_chunks in documents.items():
        released.extend(stream.add(name, doc_chunks))
    released.extend(stream.finish())

    outcome = {item.document: type(item).__name__ for item in released}
    assert len(released) == len(documents)
    assert outcome == {
        "before": "Embedded",
        "shares": "EmbedFailed",
        "spans": "EmbedFailed",
        "after": "Embedded",
    }
    failure = next(item for item in released if isinstance(item, EmbedFailed))
    assert "the model failed on this batch" in failure.reason


def test_one_run_is_embedded_in_the_calling_thread_and_several_on_the_workers(
    embedder: Embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A query is one run: a worker would only add a thread switch to the search."""
    threads: list[int] = []
    run = embedder._run

    def recording_run(pieces: list[list[int]]) -> Any:
        threads.append(threading.get_ident())
        return run(pieces)

    monkeypatch.setattr(embedder, "_run", recording_run)
    texts = [f"passage {i} names lighthouse {i * 7}" for i in range(12)]
    query = embedder.embed_query("which lighthouse is number 21?")
    assert threads == [threading.get_ident()]

    threads.clear()
    together = embedder.embed(texts, batch_size=2)
    assert len(threads) == 6
    if embedder._runner.workers > 1:  # one worker runs every batch in the caller
        assert threading.get_ident() not in threads
    alone = np.stack([embedder.embed([text])[0] for text in texts])
    assert np.allclose(together, alone, atol=1e-5)
    assert query.shape == (embedder.dimension,)
