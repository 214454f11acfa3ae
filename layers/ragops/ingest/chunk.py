"""Token-aware chunking on heading, paragraph and sentence boundaries, with overlap.

Sizes are counted in the embedder's own word pieces. BERT's pre-tokenizer splits on
white space, so the word pieces of text joined by white space are the sum of its parts'
word pieces: chunks are packed from counted units without re-tokenizing each candidate.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

from ragops.ingest.document import Chunk, Section, embedding_text
from ragops.ingest.limits import check_chunk_count

# [CLS] and [SEP] take two positions of the model's window.
SPECIAL_TOKENS = 2
# A heading that leaves less of the window than this for text is dropped.
MIN_TEXT_TOKENS = 16
_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")
# Paragraphs longer than this are cut (at white space) before they are tokenized: the
# tokenizer needs about 120 bytes per character of one text it encodes with offsets, so a
# megabyte-long line would cost a gigabyte of memory.
MAX_PARAGRAPH_CHARS = 16_384
_SENTENCE_END = re.compile(r"(?<=[.!?。])\s+|\n")
R = TypeVar("R")


class TokenCounter(Protocol):
    def count_batch(self, texts: Sequence[str]) -> list[int]: ...

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]: ...

    def split(self, text: str, max_tokens: int) -> list[str]: ...


class WordPieceCounter:
    """Counts and splits text with a `tokenizers.Tokenizer` (the embedder's)."""

    def __init__(self, tokenizer: object):
        self._tokenizer = tokenizer

    def count_batch(self, texts: Sequence[str]) -> list[int]:
        return [len(ids) for ids in self.encode_batch(texts)]

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """The word-piece ids of each text, special tokens excluded."""
        if not texts:
            return []
        encodings = self._tokenizer.encode_batch(list(texts), add_special_tokens=False)  # type: ignore[attr-defined]
        return [e.ids for e in encodings]

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
    max_chunks: int | None = None  # more fails the document (LimitExceededError)


@dataclass(frozen=True)
class _Unit:
    text: str
    tokens: int


def chunk_sections(
    sections: Iterable[Section], counter: TokenCounter, policy: ChunkingPolicy
) -> list[Chunk]:
    """Chunks in document order; none exceeds the model window with its heading.

    The whole document is tokenized in a few batched calls (one per level of splitting),
    not per section: per call, the tokenizer costs more than the text it reads.
    """
    sections = list(sections)
    headings = _fitting_headings([s.heading for s in sections], counter, policy)
    budgets = [
        min(policy.chunk_tokens, policy.max_tokens - SPECIAL_TOKENS - tokens)
        for _, tokens in headings
    ]
    units: list[list[_Unit]] = [[] for _ in sections]
    paragraphs = [
        _Piece(index, part)
        for index, section in enumerate(sections)
        for paragraph in _PARAGRAPH_BREAK.split(section.text)
        for part in _bounded(paragraph.strip(), MAX_PARAGRAPH_CHARS)
    ]
    sizes = counter.count_batch([piece.text for piece in paragraphs])
    # Checked before the long paragraphs are split (which tokenizes them again, offsets and
    # all): no chunk holds more than its budget, so this many chunks at least are coming.
    check_chunk_count(_fewest_chunks(paragraphs, sizes, budgets), policy.max_chunks, at_least=True)
    refined = _refine(paragraphs, counter, budgets, sizes)
    for piece, found in zip(paragraphs, refined, strict=True):
        units[piece.section].extend(found)

    drafts = [
        _Piece(index, "\n\n".join(u.text for u in chunk_units))
        for index, budget in enumerate(budgets)
        for chunk_units, _ in _pack(units[index], budget, min(policy.overlap_tokens, budget // 2))
    ]
    # Fitting to the window only ever splits drafts further.
    check_chunk_count(len(drafts), policy.max_chunks, at_least=True)
    window = policy.max_tokens - SPECIAL_TOKENS
    chunks: list[Chunk] = []
    for draft, fitted in zip(drafts, _fit_window(drafts, headings, counter, window), strict=True):
        heading, heading_tokens = headings[draft.section]
        for content, pieces in fitted:
            chunks.append(
                Chunk(
                    ordinal=len(chunks),
                    content=content,
                    token_count=len(pieces) - heading_tokens,
                    heading=heading,
                    page=sections[draft.section].page,
                    pieces=pieces,
                )
            )
    check_chunk_count(len(chunks), policy.max_chunks)
    return chunks


def _bounded(text: str, limit: int) -> Iterator[str]:
    """`text` in parts of at most `limit` characters, cut at the last white space that
    leaves a part non-empty (anywhere, if there is none)."""
    start = 0
    while len(text) - start > limit:
        end = start + limit
        space = max(text.rfind(" ", start + 1, end + 1), text.rfind("\n", start + 1, end + 1))
        cut = space if space > start else end
        part = text[start:cut].strip()
        if part:
            yield part
        start = cut
    part = text[start:].strip()
    if part:
        yield part


def _fewest_chunks(pieces: list[_Piece], sizes: list[int], budgets: list[int]) -> int:
    tokens = [0] * len(budgets)
    for piece, size in zip(pieces, sizes, strict=True):
        tokens[piece.section] += size
    return sum(-(-total // budget) for total, budget in zip(tokens, budgets, strict=True))


@dataclass(frozen=True)
class _Piece:
    section: int  # index of the section the text belongs to
    text: str
    depth: int = 0  # 0 a paragraph, 1 a sentence, 2 a token slice


def _fitting_headings(
    headings: Sequence[str | None], counter: TokenCounter, policy: ChunkingPolicy
) -> list[tuple[str | None, int]]:
    """Each heading and its size, or none if it would crowd the text out of the window."""
    named = [heading for heading in headings if heading]
    sizes = iter(counter.count_batch(named))
    fitting: list[tuple[str | None, int]] = []
    for heading in headings:
        tokens = next(sizes) if heading else 0
        if not heading or policy.max_tokens - SPECIAL_TOKENS - tokens < MIN_TEXT_TOKENS:
            # A heading that eats the window is context no longer worth its room.
            fitting.append((None, 0))
        else:
            fitting.append((heading, tokens))
    return fitting


def _refine(
    pieces: list[_Piece],
    counter: TokenCounter,
    budgets: list[int],
    sizes: list[int] | None = None,
) -> list[list[_Unit]]:
    """Per piece, in order: itself if it fits its section's budget, else its sentences, or
    token slices of those, refined the same way. One tokenizer call per level (none for
    this one if the pieces' `sizes` are given)."""
    if sizes is None:
        sizes = counter.count_batch([piece.text for piece in pieces])
    found: list[list[_Unit]] = []
    finer: list[tuple[int, list[_Piece]]] = []
    for piece, tokens in zip(pieces, sizes, strict=True):
        budget = budgets[piece.section]
        if tokens <= budget or piece.depth == 2:
            found.append([_Unit(piece.text, tokens)])
            continue
        parts = (
            [s.strip() for s in _SENTENCE_END.split(piece.text) if s.strip()]
            if piece.depth == 0
            else counter.split(piece.text, budget)
        )
        finer.append((len(found), [_Piece(piece.section, p, piece.depth + 1) for p in parts]))
        found.append([])
    _splice(found, finer, lambda parts: _refine(parts, counter, budgets))
    return found


def _fit_window(
    drafts: list[_Piece],
    headings: list[tuple[str | None, int]],
    counter: TokenCounter,
    limit: int,
) -> list[list[tuple[str, list[int]]]]:
    """Per draft chunk: itself with the word pieces of its embedding text, or, if those
    would be truncated, its token slices, each fitted the same way."""
    encoded = counter.encode_batch([embedding_text(headings[d.section][0], d.text) for d in drafts])
    fitted: list[list[tuple[str, list[int]]]] = []
    finer: list[tuple[int, list[_Piece]]] = []
    for draft, pieces in zip(drafts, encoded, strict=True):
        if len(pieces) <= limit:
            fitted.append([(draft.text, pieces)])
            continue
        heading_tokens = len(pieces) - counter.count_batch([draft.text])[0]
        parts = counter.split(draft.text, max(limit - heading_tokens - 1, 8))
        finer.append((len(fitted), [_Piece(draft.section, part) for part in parts]))
        fitted.append([])
    _splice(fitted, finer, lambda parts: _fit_window(parts, headings, counter, limit))
    return fitted


def _splice(
    found: list[list[R]],
    finer: list[tuple[int, list[_Piece]]],
    refine: Callable[[list[_Piece]], list[list[R]]],
) -> None:
    """Fill each slot of `found` named in `finer` with its parts' results, all parts of all
    slots refined in one call."""
    if not finer:
        return
    results = iter(refine([part for _, parts in finer for part in parts]))
    for slot, parts in finer:
        for _ in parts:
            found[slot].extend(next(results))


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
