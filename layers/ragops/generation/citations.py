"""Citations, pure: the [n] markers of an answer mapped back to the passages they name."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from ragops.generation.answer import Citation, citation_for
from ragops.generation.prompt import ContextPassage

# [1], [1, 3], [1,3; 4]; adjacent markers like [1][3] are simply two matches.
_MARKER = re.compile(r"\[\s*(\d{1,6}(?:\s*[,;]\s*\d{1,6})*)\s*\]")
_NUMBER = re.compile(r"\d+")


@dataclass(frozen=True)
class MappedCitations:
    citations: list[Citation]
    unknown: list[int]


def cited_indices(text: str) -> list[int]:
    """Every number cited in `text`, once each, in order of first appearance."""
    seen: dict[int, None] = {}
    for marker in _MARKER.finditer(text):
        for number in _NUMBER.findall(marker.group(1)):
            seen.setdefault(int(number), None)
    return list(seen)


def map_citations(text: str, passages: Sequence[ContextPassage]) -> MappedCitations:
    """Citations for the cited passages, keeping the prompt's numbers (the numbers the answer
    text shows); numbers that name no passage are reported apart, not cited."""
    by_index = {p.index: p for p in passages}
    citations: list[Citation] = []
    unknown: list[int] = []
    for index in cited_indices(text):
        passage = by_index.get(index)
        if passage is None:
            unknown.append(index)
        else:
            citations.append(citation_for(index, passage.result))
    return MappedCitations(citations, unknown)
