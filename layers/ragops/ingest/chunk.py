"""Token-aware chunking on heading, paragraph and sentence boundaries, with overlap.

Sizes are counted in the embedder's own word pieces. BERT's pre-tokenizer splits on
white space, so the word pieces of text joined by white space are the sum of its parts'
word pieces: chunks are packed from counted units without re-tokenizing each candidate.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from ragops.ingest.document import Chunk, Section, embedding_text

# [CLS] and [SEP] take two positions of the model's window.
SPECIAL_TOKENS = 2
# A heading that leaves less of the window than this for text is dropped.
MIN_TEXT_TOKENS = 16
_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")
_SENTENCE_END = re.compile(r"(?<=[.!?。])\s+|\n")


class TokenCounter(Protocol):
    def count_batch(self, texts: Sequence[str]) -> list[int]: ...

    def split(self, text: str, max_tokens: int) -> list[str]: ...


class WordPieceCounter:
    """Counts and splits text with a `tokenizers.Tokenizer` (the embedder's)."""

    def __init__(self, tokenizer: object):
        self._tokenizer = tokenizer

    def count_batch(self, texts: Sequence[str]) -> list[int]:
        if not texts:
            return []
        encodings = self._tokenizer.encode_batch(list(texts), add_special_tokens=False)  # type: ignore[attr-defined]
        return [len(e.ids) for e in encodings]

    def split(self, text: str, max_tokens: int) -> list[str]:
        """Cut `text` into pieces of at most `max_tokens`, preferring word starts."""
        encoding = self._tokenizer.encode(text, add_special_tokens=False)  # type: ignore[attr-defined]
        cuts = _word_cuts(text, encoding.offsets)
        pieces = []
        start, begin_char = 0, 0
        while start < len(cuts):
            end = min(start + max_tokens, len(cuts))
            if end < len(cuts):
                cut = end
                while cut > start and not cuts[cut][0]:
                    cut -= 1
                end = cut if cut > start else end
            end_char = cuts[end][1] if end < len(cuts) else len(text)
            piece = text[begin_char:end_char].strip()
            if piece:
                pieces.append(piece)
            start, begin_char = end, end_char
        return pieces


def _word_cuts(text: str, offsets: list[tuple[int, int]]) -> list[tuple[bool, int]]:
    """Per token: does a word start there, and at which character to cut before it.

    A word starts after white space, so "##" pieces stay with their word, and so does
    the punctuation BERT splits off ("3.14", "word,"); characters the tokenizer skips
    (soft hyphens, zero-width spaces) stay on their side of the white space.
    """
    cuts = []
    previous_end = 0
    for begin, end in offsets:
        gap = text[previous_end:begin]
        space = max((i for i, char in enumerate(gap) if char.isspace()), default=-1)
        cuts.append((space >= 0, previous_end + space + 1 if space >= 0 else begin))
        previous_end = max(previous_end, end)
    return cuts


@dataclass(frozen=True)
class ChunkingPolicy:
    chunk_tokens: int
    overlap_tokens: int
    max_tokens: int  # the embedder's max sequence length, special tokens included


@dataclass(frozen=True)
class _Unit:
    text: str
    tokens: int


def chunk_sections(
    sections: Iterable[Section], counter: TokenCounter, policy: ChunkingPolicy
) -> list[Chunk]:
    """Chunks in document order; none exceeds the model window with its heading."""
    chunks: list[Chunk] = []
    for section in sections:
        heading, heading_tokens = _fitting_heading(section.heading, counter, policy)
        budget = min(policy.chunk_tokens, policy.max_tokens - SPECIAL_TOKENS - heading_tokens)
        for content, tokens in _chunk_text(section.text, heading, budget, counter, policy):
            chunks.append(
                Chunk(
                    ordinal=len(chunks),
                    content=content,
                    token_count=tokens,
                    heading=heading,
                    page=section.page,
                )
            )
    return chunks


def _fitting_heading(
    heading: str | None, counter: TokenCounter, policy: ChunkingPolicy
) -> tuple[str | None, int]:
    """The heading and its size, or no heading if it would crowd the text out of the window."""
    if not heading:
        return None, 0
    tokens = counter.count_batch([heading])[0]
    if policy.max_tokens - SPECIAL_TOKENS - tokens < MIN_TEXT_TOKENS:
        # A heading that eats the window is context no longer worth its room.
        return None, 0
    return heading, tokens


def _chunk_text(
    text: str, heading: str | None, budget: int, counter: TokenCounter, policy: ChunkingPolicy
) -> list[tuple[str, int]]:
    units = _units(text, counter, budget)
    packed = _pack(units, budget, min(policy.overlap_tokens, budget // 2))
    return _enforce_window(packed, counter, heading, policy.max_tokens - SPECIAL_TOKENS)


def _units(text: str, counter: TokenCounter, budget: int) -> list[_Unit]:
    """Paragraphs, or sentences of paragraphs over budget, or token slices of those."""
    paragraphs = [p.strip() for p in _PARAGRAPH_BREAK.split(text) if p.strip()]
    units: list[_Unit] = []
    for paragraph, tokens in zip(paragraphs, counter.count_batch(paragraphs), strict=True):
        if tokens <= budget:
            units.append(_Unit(paragraph, tokens))
            continue
        sentences = [s.strip() for s in _SENTENCE_END.split(paragraph) if s.strip()]
        for sentence, sentence_tokens in zip(
            sentences, counter.count_batch(sentences), strict=True
        ):
            if sentence_tokens <= budget:
                units.append(_Unit(sentence, sentence_tokens))
            else:
                pieces = counter.split(sentence, budget)
                units.extend(
                    _Unit(p, n) for p, n in zip(pieces, counter.count_batch(pieces), strict=True)
                )
    return units


def _pack(units: list[_Unit], budget: int, overlap: int) -> list[tuple[list[_Unit], int]]:
    """Greedy packing; each new chunk starts with the previous chunk's tail units."""
    chunks: list[tuple[list[_Unit], int]] = []
    current: list[_Unit] = []
    size = 0
    fresh = 0  # units in `current` not carried over from the previous chunk
    for unit in units:
        if current and size + unit.tokens > budget:
            if fresh:
                chunks.append((current, size))
            current, size = _tail(current, overlap, budget - unit.tokens)
            fresh = 0
        current.append(unit)
        size += unit.tokens
        fresh += 1
    if current and fresh:
        chunks.append((current, size))
    return chunks


def _tail(units: list[_Unit], overlap: int, room: int) -> tuple[list[_Unit], int]:
    tail: list[_Unit] = []
    size = 0
    for unit in reversed(units):
        if size + unit.tokens > min(overlap, room):
            break
        tail.insert(0, unit)
        size += unit.tokens
    return tail, size


def _enforce_window(
    packed: list[tuple[list[_Unit], int]], counter: TokenCounter, heading: str | None, limit: int
) -> list[tuple[str, int]]:
    """Re-count each chunk as it will be embedded and split any that would be truncated."""
    texts = ["\n\n".join(u.text for u in units) for units, _ in packed]
    full = counter.count_batch([embedding_text(heading, t) for t in texts])
    bare = counter.count_batch(texts)
    out: list[tuple[str, int]] = []
    for text, embedded_tokens, tokens in zip(texts, full, bare, strict=True):
        if embedded_tokens <= limit:
            out.append((text, tokens))
            continue
        heading_tokens = embedded_tokens - tokens
        for piece in counter.split(text, max(limit - heading_tokens - 1, 8)):
            out.extend(_enforce_window([([_Unit(piece, 0)], 0)], counter, heading, limit))
    return out
