"""Answer shapes and the extractive answer (no LLM): the best passages, cited."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

from ragops.retrieval.search import SearchResult

SNIPPET_CHARS = 240
NO_ANSWER = "The documents do not contain an answer to this question."
TIMING_KEYS = ("embed", "retrieve", "rerank", "generate", "total")
_SENTENCE = re.compile(r"(?<=[.!?])\s+")

AnswerMode = Literal["generative", "extractive", "no_answer"]


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
    mode: AnswerMode
    model: str | None = None
    usage: dict[str, int] = field(
        default_factory=lambda: {"prompt_tokens": 0, "completion_tokens": 0}
    )
    warnings: list[str] = field(default_factory=list)
    chunks_used: int | None = None
    context_tokens: int = 0
    timings_ms: dict[str, float] = field(default_factory=dict)

    @property
    def sources(self) -> list[dict[str, Any]]:
        """The cited documents, once each, in citation order."""
        seen: dict[str, dict[str, Any]] = {}
        for c in self.citations:
            seen.setdefault(
                c.document_id, {"document_id": c.document_id, "source": c.source, "title": c.title}
            )
        return list(seen.values())

    def to_json(self) -> dict[str, Any]:
        """The query response: answer, citations, sources, usage and meta."""
        return {
            "answer": self.answer,
            "citations": [c.to_json() for c in self.citations],
            "sources": self.sources,
            "usage": dict(self.usage),
            "meta": {
                "model": self.model,
                "mode": self.mode,
                "chunks_used": (
                    len(self.citations) if self.chunks_used is None else self.chunks_used
                ),
                "context_tokens": self.context_tokens,
                "timings_ms": {key: self.timings_ms.get(key, 0.0) for key in TIMING_KEYS},
                "warnings": list(self.warnings),
            },
        }


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
        return Answer(NO_ANSWER, [], "extractive", chunks_used=0)
    chosen = results[:passages]
    parts = []
    for index, result in enumerate(chosen, start=1):
        sentences = _SENTENCE.split(" ".join(result.content.split()))
        lead = " ".join(sentences[:2])
        parts.append(f"{lead} [{index}]")
    citations = [citation_for(i, r) for i, r in enumerate(chosen, start=1)]
    return Answer("\n\n".join(parts), citations, "extractive", chunks_used=len(chosen))
