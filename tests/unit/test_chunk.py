"""Chunking against the embedder's real tokenizer: sizes are what the model will see."""

from __future__ import annotations

import itertools
import os
import string
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ragops.errors import ModelsNotBuiltError
from ragops.ingest.chunk import (
    MIN_TEXT_TOKENS,
    SPECIAL_TOKENS,
    ChunkingPolicy,
    WordPieceCounter,
    chunk_sections,
)
from ragops.ingest.document import Chunk, Section
from ragops.models.manifest import Manifest, read_manifest
from ragops.models.runtime import load_tokenizer

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def model_dir() -> Path:
    return Path(os.environ.get("RAGOPS_MODEL_DIR") or REPO / ".ragops" / "models")


@pytest.fixture(scope="module")
def manifest(model_dir: Path) -> Manifest:
    try:
        return read_manifest(model_dir)
    except ModelsNotBuiltError as exc:
        pytest.fail(
            "chunking is tested with the embedder's tokenizer: run `make models` "
            f"(or set RAGOPS_MODEL_DIR to a built model folder). {exc}",
            pytrace=False,
        )


@pytest.fixture(scope="module")
def tokenizer(model_dir: Path, manifest: Manifest) -> Any:
    return load_tokenizer(model_dir, manifest.embedder.tokenizer)


@pytest.fixture(scope="module")
def max_tokens(manifest: Manifest) -> int:
    return manifest.embedder.max_seq_length


@pytest.fixture(scope="module")
def counter(tokenizer: Any) -> WordPieceCounter:
    return WordPieceCounter(tokenizer)


def count(tokenizer: Any, text: str) -> int:
    return len(tokenizer.encode(text, add_special_tokens=False).ids)


def non_space(text: str) -> str:
    return "".join(text.split())


def is_subsequence(needle: str, haystack: str) -> bool:
    remaining = iter(haystack)
    return all(char in remaining for char in needle)


def chunks_by_section(chunks: list[Chunk], sections: list[Section]) -> list[list[Chunk]]:
    """Chunks grouped by section; the tests number each section's page 1, 2, ..."""
    assert [c.page for c in chunks] == sorted(c.page for c in chunks if c.page is not None)
    return [[c for c in chunks if c.page == number] for number in range(1, len(sections) + 1)]


def effective_heading(tokenizer: Any, heading: str | None, max_tokens: int) -> str | None:
    """The heading a chunk carries: dropped when it would crowd text out of the window."""
    if heading and max_tokens - SPECIAL_TOKENS - count(tokenizer, heading) >= MIN_TEXT_TOKENS:
        return heading
    return None


LETTERS = string.ascii_letters + "éüßøçñ"
WORD = st.text(st.sampled_from(LETTERS), min_size=1, max_size=12)
PUNCTUATED_WORD = st.builds(
    lambda w, p: w + p, WORD, st.sampled_from([",", ";", ":", ")", "'s", "-based", "3.14"])
)
UNICODE_WORD = st.text(
    st.characters(exclude_categories=("Cs", "Cc", "Zs", "Zl", "Zp")), min_size=1, max_size=15
)
LONG_WORD = st.text(st.sampled_from(LETTERS + "0123456789"), min_size=20, max_size=400)
RUN_WITHOUT_SPACES = st.text(
    st.sampled_from("ab.,;:!?-/()日本語テキスト"), min_size=50, max_size=1500
)


def joined(parts: st.SearchStrategy[list[str]], separators: list[str]) -> st.SearchStrategy[str]:
    return st.tuples(parts, st.sampled_from(separators)).map(lambda p: p[1].join(p[0]))


SENTENCE = joined(
    st.lists(
        st.one_of(WORD, WORD, WORD, PUNCTUATED_WORD, UNICODE_WORD, LONG_WORD),
        min_size=1,
        max_size=60,
    ),
    [" ", "  ", "\t", "\xa0", "\u3000"],
).map(lambda sentence: sentence + ".")
PARAGRAPH = st.one_of(
    joined(st.lists(SENTENCE, min_size=1, max_size=6), [" ", "\n"]), RUN_WITHOUT_SPACES
)
TEXT = joined(st.lists(PARAGRAPH, min_size=1, max_size=8), ["\n\n", "\n \n", "\n\n\n"])
HEADING = st.one_of(
    st.none(),
    st.lists(WORD, min_size=1, max_size=6).map(" ".join),
    st.lists(WORD, min_size=1, max_size=3).map(" > ".join),
    # Long enough to leave little or no room for text in the model window.
    st.lists(WORD, min_size=100, max_size=260).map(" ".join),
)


@st.composite
def policies(draw: st.DrawFn, max_tokens: int = 256) -> ChunkingPolicy:
    chunk_tokens = draw(st.integers(min_value=1, max_value=400))
    overlap = draw(st.integers(min_value=0, max_value=chunk_tokens - 1))
    return ChunkingPolicy(chunk_tokens=chunk_tokens, overlap_tokens=overlap, max_tokens=max_tokens)


SECTIONS = st.lists(st.tuples(TEXT, HEADING), min_size=1, max_size=3).map(
    lambda items: [Section(text, heading, page) for page, (text, heading) in enumerate(items, 1)]
)


@settings(max_examples=60, deadline=None)
@given(sections=SECTIONS, policy=policies())
def test_chunks_fit_the_window_count_true_and_lose_nothing(
    tokenizer: Any, counter: WordPieceCounter, sections: list[Section], policy: ChunkingPolicy
) -> None:
    chunks = chunk_sections(sections, counter, policy)

    assert [c.ordinal for c in chunks] == list(range(len(chunks)))
    for chunk in chunks:
        assert count(tokenizer, chunk.embedding_text) <= policy.max_tokens - SPECIAL_TOKENS
        assert chunk.token_count == count(tokenizer, chunk.content)
        assert chunk.content.strip()
        # The word pieces the embedder will run on are the embedding text's own.
        expected = tokenizer.encode(chunk.embedding_text, add_special_tokens=False).ids
        assert chunk.pieces == expected

    for section, own in zip(sections, chunks_by_section(chunks, sections), strict=True):
        heading = effective_heading(tokenizer, section.heading, policy.max_tokens)
        assert own, "every section with text yields chunks"
        assert {(c.heading, c.page) for c in own} == {(heading, section.page)}
        # Never across sections: every paragraph of a chunk is text of its own section.
        for chunk in own:
            for part in chunk.content.split("\n\n"):
                assert part in section.text
        # No text lost: every character survives, in order (overlap only repeats some).
        assert is_subsequence(non_space(section.text), "".join(non_space(c.content) for c in own))
        # Words that fit a chunk are never cut.
        budget = min(
            policy.chunk_tokens,
            policy.max_tokens - SPECIAL_TOKENS - (count(tokenizer, heading) if heading else 0),
        )
        for word in set(section.text.split()):
            if count(tokenizer, word) <= budget:
                assert any(word in c.content for c in own), word


# Common words of one word piece each: a numbered paragraph is at most 10 word pieces.
COMMON_WORD = st.sampled_from(["the", "duck", "down", "a", "quiet", "river", "in", "light"])
SMALL_PARAGRAPHS = st.lists(
    st.lists(COMMON_WORD, min_size=1, max_size=8), min_size=2, max_size=40
).map(lambda paragraphs: [f"{n} {' '.join(words)}." for n, words in enumerate(paragraphs)])


@settings(max_examples=60, deadline=None)
@given(
    paragraphs=SMALL_PARAGRAPHS,
    chunk_tokens=st.integers(min_value=60, max_value=150),
    overlap=st.integers(min_value=10, max_value=30),
)
def test_overlap_repeats_the_previous_chunks_last_paragraph(
    tokenizer: Any,
    counter: WordPieceCounter,
    max_tokens: int,
    paragraphs: list[str],
    chunk_tokens: int,
    overlap: int,
) -> None:
    policy = ChunkingPolicy(
        chunk_tokens=chunk_tokens, overlap_tokens=overlap, max_tokens=max_tokens
    )
    assert all(count(tokenizer, p) <= 10 for p in paragraphs)
    chunks = chunk_sections([Section("\n\n".join(paragraphs))], counter, policy)
    assert len(chunks) > 1 or count(tokenizer, "\n\n".join(paragraphs)) <= chunk_tokens
    for previous, current in itertools.pairwise(chunks):
        before, after = previous.content.split("\n\n"), current.content.split("\n\n")
        carried = [p for p in after if p in before]  # paragraphs are numbered, so unique
        assert carried, "the next chunk starts with the previous chunk's tail"
        assert carried == before[-len(carried) :] == after[: len(carried)]
        assert count(tokenizer, "\n\n".join(carried)) <= overlap
        assert len(after) > len(carried), "and goes on with new text"
    # Without the repeats, the chunks are the text.
    fresh = [p for c in chunks for p in c.content.split("\n\n")]
    assert list(dict.fromkeys(fresh)) == paragraphs


def test_small_paragraphs_pack_into_chunks_within_chunk_tokens(
    tokenizer: Any, counter: WordPieceCounter, max_tokens: int
) -> None:
    text = "\n\n".join(f"Paragraph {n} explains one small point about ducks." for n in range(60))
    policy = ChunkingPolicy(chunk_tokens=64, overlap_tokens=0, max_tokens=max_tokens)
    chunks = chunk_sections([Section(text, "Ducks", 3)], counter, policy)
    assert len(chunks) > 5
    assert all(c.token_count <= 64 for c in chunks)
    assert all(c.heading == "Ducks" and c.page == 3 for c in chunks)
    # Without overlap each paragraph lands in exactly one chunk.
    parts = [p for c in chunks for p in c.content.split("\n\n")]
    assert parts == text.split("\n\n")


def test_sections_are_chunked_apart_in_order(
    tokenizer: Any, counter: WordPieceCounter, max_tokens: int
) -> None:
    sections = [
        Section("Alpha text. " * 50, "A", 1),
        Section("Beta text.", None, None),
        Section("Gamma text. " * 50, "A > C", 2),
    ]
    policy = ChunkingPolicy(chunk_tokens=40, overlap_tokens=10, max_tokens=max_tokens)
    chunks = chunk_sections(sections, counter, policy)
    labels = [(c.content.split()[0], c.heading, c.page) for c in chunks]
    assert list(dict.fromkeys(labels)) == [
        ("Alpha", "A", 1),
        ("Beta", None, None),
        ("Gamma", "A > C", 2),
    ]
    firsts = [first for first, _, _ in labels]
    assert firsts == sorted(firsts, key=["Alpha", "Beta", "Gamma"].index)
    for chunk in chunks:
        assert len({word for word in chunk.content.split() if word != "text."}) == 1


def test_heading_too_long_for_the_window_is_dropped_from_the_chunk(
    tokenizer: Any, counter: WordPieceCounter, max_tokens: int
) -> None:
    heading = " ".join(["Heading"] * 300)
    policy = ChunkingPolicy(chunk_tokens=200, overlap_tokens=20, max_tokens=max_tokens)
    chunks = chunk_sections([Section("word " * 1000, heading, 4)], counter, policy)
    assert chunks
    for chunk in chunks:
        assert chunk.heading is None
        assert chunk.page == 4
        assert count(tokenizer, chunk.embedding_text) <= max_tokens - SPECIAL_TOKENS


def test_heading_that_leaves_room_is_kept_and_shrinks_the_chunks(
    tokenizer: Any, counter: WordPieceCounter, max_tokens: int
) -> None:
    heading = " ".join(["Heading"] * 200)
    policy = ChunkingPolicy(chunk_tokens=200, overlap_tokens=0, max_tokens=max_tokens)
    chunks = chunk_sections([Section("word " * 1000, heading)], counter, policy)
    room = max_tokens - SPECIAL_TOKENS - count(tokenizer, heading)
    assert all(c.heading == heading for c in chunks)
    assert all(c.token_count <= room for c in chunks)
    assert sum(c.token_count for c in chunks) == 1000


def test_chunk_tokens_beyond_the_window_are_capped(
    tokenizer: Any, counter: WordPieceCounter, max_tokens: int
) -> None:
    policy = ChunkingPolicy(chunk_tokens=10_000, overlap_tokens=100, max_tokens=max_tokens)
    chunks = chunk_sections([Section("sentence number one. " * 800, "H")], counter, policy)
    assert len(chunks) > 1
    assert all(count(tokenizer, c.embedding_text) <= max_tokens - SPECIAL_TOKENS for c in chunks)


def test_overlap_near_chunk_size_still_makes_progress(
    tokenizer: Any, counter: WordPieceCounter, max_tokens: int
) -> None:
    text = " ".join(f"w{n}" for n in range(300))
    policy = ChunkingPolicy(chunk_tokens=10, overlap_tokens=9, max_tokens=max_tokens)
    chunks = chunk_sections([Section(text)], counter, policy)
    assert len(chunks) == len({c.content for c in chunks})
    assert all(c.token_count <= 10 for c in chunks)
    assert is_subsequence(non_space(text), "".join(non_space(c.content) for c in chunks))


@pytest.mark.parametrize(
    "text",
    [
        "a.b," * 3000,
        "日本語のテキストです。" * 400,
        "x" * 100_000,
        "supercalifragilistic" * 4,
        "🙂" * 2000,
    ],
    ids=["punctuation-run", "cjk-run", "one-huge-word", "long-word", "emoji-run"],
)
def test_runs_without_spaces_are_split_to_fit(
    tokenizer: Any, counter: WordPieceCounter, max_tokens: int, text: str
) -> None:
    policy = ChunkingPolicy(chunk_tokens=50, overlap_tokens=0, max_tokens=max_tokens)
    chunks = chunk_sections([Section(text)], counter, policy)
    assert all(count(tokenizer, c.content) == c.token_count <= 50 for c in chunks)
    assert "".join(non_space(c.content) for c in chunks) == non_space(text)


def test_counter_counts_word_pieces_without_special_tokens(
    tokenizer: Any, counter: WordPieceCounter
) -> None:
    texts = ["hello", "Hello, world!", "unbelievably tokenized", "日本語", ""]
    assert counter.count_batch(texts) == [count(tokenizer, t) for t in texts]
    assert counter.count_batch(["hello"]) == [1]
    assert counter.count_batch([]) == []


def test_counter_split_keeps_words_whole_and_pieces_small(
    tokenizer: Any, counter: WordPieceCounter
) -> None:
    text = " ".join(f"item-{n}, (value {n}.5);" for n in range(200))
    pieces = counter.split(text, 17)
    assert all(count(tokenizer, p) <= 17 for p in pieces)
    assert " ".join(pieces) == text
    words = set(text.split())
    assert all(set(p.split()) <= words for p in pieces)


def test_counter_split_cuts_a_word_longer_than_the_limit(
    tokenizer: Any, counter: WordPieceCounter
) -> None:
    word = "abcdefghij" * 9  # 90 characters: word pieces, not [UNK]
    assert count(tokenizer, word) > 8
    pieces = counter.split(word, 8)
    assert len(pieces) > 1
    assert "".join(pieces) == word
