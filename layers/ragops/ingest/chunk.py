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
        tokens: list[str] = encoding.tokens
        offsets: list[tuple[int, int]] = encoding.offsets
        pieces = []
        start = 0
        while start < len(tokens):
            end = min(start + max_tokens, len(tokens))
            if end < len(tokens):
                cut = end
                while cut > start + 1 and tokens[cut].startswith("##"):
                    cut -= 1
                end = cut if cut > start + 1 else end
            begin_char = offsets[start][0]
            end_char = offsets[end][0] if end < len(tokens) else len(text)
            piece = text[begin_char:end_char].strip()
            if piece:
                pieces.append(piece)
            start = end
        return pieces


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
        for content, tokens in _chunk_section(section, counter, policy):
            chunks.append(
                Chunk(
                    ordinal=len(chunks),
                    content=content,
                    token_count=tokens,
                    heading=section.heading,
                    page=section.page,
                )
            )
    return chunks


def _chunk_section(
    section: Section, counter: TokenCounter, policy: ChunkingPolicy
) -> list[tuple[str, int]]:
    heading_tokens = counter.count_batch([section.heading])[0] if section.heading else 0
    window = policy.max_tokens - SPECIAL_TOKENS - heading_tokens
    if window < 16:
        # A heading that eats the window is context no longer worth its room.
        return _chunk_section(Section(section.text, None, section.page), counter, policy)
    budget = min(policy.chunk_tokens, window)
    units = _units(section.text, counter, budget)
    packed = _pack(units, budget, min(policy.overlap_tokens, budget // 2))
    return _enforce_window(packed, counter, section.heading, policy.max_tokens - SPECIAL_TOKENS)


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
