"""Answer shapes and the extractive answer (no LLM): the best passages, cited."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from ragops.retrieval.search import SearchResult

SNIPPET_CHARS = 240
_SENTENCE = re.compile(r"(?<=[.!?])\s+")


@dataclass(frozen=True)
class Citation:
    index: int
    document_id: str
    source: str
    title: str | None
    page: int | None
    snippet: str
    score: float

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Answer:
    answer: str
    citations: list[Citation]
    mode: str
    model: str | None = None
    usage: dict[str, int] = field(
        default_factory=lambda: {"prompt_tokens": 0, "completion_tokens": 0}
    )
    warnings: list[str] = field(default_factory=list)


def citation_for(index: int, result: SearchResult) -> Citation:
    text = " ".join(result.content.split())
    snippet = text if len(text) <= SNIPPET_CHARS else text[: SNIPPET_CHARS - 1].rstrip() + "…"
    return Citation(
        index=index,
        document_id=str(result.document_id),
        source=result.source,
        title=result.title,
        page=result.page,
        snippet=snippet,
        score=result.score,
    )


def extractive_answer(results: list[SearchResult], passages: int = 3) -> Answer:
    """The leading sentences of the best passages, each cited by its number."""
    if not results:
        return Answer("The documents do not contain an answer to this question.", [], "extractive")
    chosen = results[:passages]
    parts = []
    for index, result in enumerate(chosen, start=1):
        sentences = _SENTENCE.split(" ".join(result.content.split()))
        lead = " ".join(sentences[:2])
        parts.append(f"{lead} [{index}]")
    citations = [citation_for(i, r) for i, r in enumerate(chosen, start=1)]
    return Answer("\n\n".join(parts), citations, "extractive")
