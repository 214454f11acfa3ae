"""The chunk limit, checked before the expensive splitting, and chunking of one huge line in
bounded memory (with the embedder's real tokenizer)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from ragops.errors import LimitExceededError
from ragops.ingest.chunk import (
    MAX_PARAGRAPH_CHARS,
    ChunkingPolicy,
    WordPieceCounter,
    chunk_sections,
)
from ragops.ingest.document import Section
from ragops.models.manifest import read_manifest
from ragops.models.runtime import load_tokenizer

REPO = Path(__file__).resolve().parents[2]


class RecordingCounter(WordPieceCounter):
    """The real word-piece counter, noting which of its methods ran."""

    def __init__(self, tokenizer: object):
        super().__init__(tokenizer)
        self.calls: list[str] = []

    def count_batch(self, texts: Sequence[str]) -> list[int]:
        self.calls.append("count_batch")
        return super().count_batch(texts)

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        self.calls.append("encode_batch")
        return super().encode_batch(texts)

    def split(self, text: str, max_tokens: int) -> list[str]:
        self.calls.append("split")
        return super().split(text, max_tokens)


@pytest.fixture(scope="module")
def tokenizer(model_dir: Path) -> Any:
    return load_tokenizer(model_dir, read_manifest(model_dir).embedder.tokenizer)


def policy(max_chunks: int | None) -> ChunkingPolicy:
    return ChunkingPolicy(chunk_tokens=32, overlap_tokens=4, max_tokens=256, max_chunks=max_chunks)


SECTIONS = [Section(" ".join(f"plover{n} runs along the tideline." for n in range(400)))]


def test_a_document_within_the_chunk_limit_is_chunked(tokenizer: Any) -> None:
    made = len(chunk_sections(SECTIONS, WordPieceCounter(tokenizer), policy(None)))

    assert len(chunk_sections(SECTIONS, WordPieceCounter(tokenizer), policy(made))) == made
    with pytest.raises(
        LimitExceededError, match=r"over the [\d,]+-chunk limit \(RAGOPS_MAX_CHUNKS\)"
    ):
        chunk_sections(SECTIONS, WordPieceCounter(tokenizer), policy(made - 1))


def test_far_too_many_chunks_are_refused_before_any_paragraph_is_split(tokenizer: Any) -> None:
    counter = RecordingCounter(tokenizer)

    with pytest.raises(LimitExceededError) as refused:
        chunk_sections(SECTIONS, counter, policy(10))

    assert str(refused.value).startswith("the text makes at least ")
    assert str(refused.value).endswith("chunks, over the 10-chunk limit (RAGOPS_MAX_CHUNKS)")
    # The headings and the paragraphs counted, and nothing more: no sentences counted, no
    # token slices cut, no window fitting.
    assert counter.calls.count("count_batch") == 2
    assert "split" not in counter.calls


def test_a_line_longer_than_a_paragraph_is_chunked_whole(tokenizer: Any) -> None:
    words = [f"w{n}" for n in range(3 * MAX_PARAGRAPH_CHARS // 4)]
    line = " ".join(words)
    assert len(line) > 2 * MAX_PARAGRAPH_CHARS

    chunks = chunk_sections([Section(line)], WordPieceCounter(tokenizer), policy(None))

    assert all(chunk.token_count <= 32 for chunk in chunks)
    seen = {word for chunk in chunks for word in chunk.content.split()}
    assert seen == set(words)


# Chunks a 1 MB single line (no paragraph or sentence break) and reports RSS growth.
_ONE_LINE_PROBE = textwrap.dedent(
    """
    import json, resource, sys
    from pathlib import Path
    from ragops.ingest.chunk import ChunkingPolicy, WordPieceCounter, chunk_sections
    from ragops.ingest.document import Section
    from ragops.models.manifest import read_manifest
    from ragops.models.runtime import load_tokenizer

    model_dir = Path(sys.argv[1])
    tokenizer = load_tokenizer(model_dir, read_manifest(model_dir).embedder.tokenizer)
    line = "kittiwakes wheel above the harbour wall " * 25_000
    policy = ChunkingPolicy(chunk_tokens=128, overlap_tokens=24, max_tokens=256)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    chunks = chunk_sections([Section(line)], WordPieceCounter(tokenizer), policy)
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    print(json.dumps({"chars": len(line), "chunks": len(chunks), "grown_kib": grown}))
    """
)


def test_one_huge_line_is_chunked_in_bounded_memory(model_dir: Path) -> None:
    probe = subprocess.run(
        [sys.executable, "-c", _ONE_LINE_PROBE, str(model_dir)],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
        cwd=REPO,
    )
    report = json.loads(probe.stdout)

    assert report["chunks"] > 1_500
    # Measured: tokenized whole, the line grows the process by about 160 MB (and 4 MB by
    # 650 MB); cut into paragraphs first, by about 40 MB.
    assert report["grown_kib"] < 100 * 1024, report
