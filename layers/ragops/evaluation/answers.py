"""Answer-level evaluation: the Answerer asked each judged and each unanswerable query.

- citation precision: the share of cited chunks holding one of the query's
  `metadata.answer` phrases (case and spacing ignored);
- answered: the share of answerable queries given an answer that cites a passage and
  is not a refusal;
- correct refusals: the share of unanswerable queries given a refusal (no answer).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import psycopg

from ragops.evaluation.dataset import Dataset, Query
from ragops.generation.answer import NO_ANSWER, Answer, Citation
from ragops.progress import progress_bar
from ragops.retrieval.sql import SearchFilters

if TYPE_CHECKING:
    from ragops.service import Service

SNIPPET_END = "…"


@dataclass(frozen=True)
class AnswerCheck:
    """How one answer fared; `cited_correct` is None when the query names no answer phrase."""

    unanswerable: bool
    mode: str
    model: str | None
    answered: bool
    refused: bool
    cited: int
    cited_correct: int | None
    latency_ms: float


def is_refusal(answer: Answer) -> bool:
    """Whether the answer says the documents hold no answer (by itself or from the LLM)."""
    return answer.mode == "no_answer" or NO_ANSWER in answer.answer


def holds_phrase(text: str, phrases: Sequence[str]) -> bool:
    """Whether `text` contains one of `phrases`, ignoring case and runs of whitespace."""
    haystack = " ".join(text.split()).casefold()
    return any(" ".join(phrase.split()).casefold() in haystack for phrase in phrases)


def check_answer(query: Query, answer: Answer, cited_texts: Sequence[str]) -> AnswerCheck:
    """Score one answer, given the full text of each chunk it cites."""
    refused = is_refusal(answer)
    phrases = query.answers
    return AnswerCheck(
        unanswerable=query.unanswerable,
        mode=answer.mode,
        model=answer.model,
        answered=bool(answer.citations) and not refused,
        refused=refused,
        cited=len(cited_texts),
        cited_correct=(
            sum(holds_phrase(text, phrases) for text in cited_texts) if phrases else None
        ),
        latency_ms=answer.timings_ms.get("total", 0.0),
    )


def answer_scores(checks: Sequence[AnswerCheck]) -> dict[str, Any]:
    """The three shares (None where no query counts towards one), counts and latency."""
    answerable = [c for c in checks if not c.unanswerable]
    unanswerable = [c for c in checks if c.unanswerable]
    scored = [c for c in answerable if c.cited_correct is not None]
    cited = sum(c.cited for c in scored)
    latencies = [c.latency_ms for c in checks]
    p50, p95 = np.percentile(latencies, [50, 95]) if latencies else (0.0, 0.0)
    return {
        "citation_precision": _share(sum(c.cited_correct or 0 for c in scored), cited),
        "answered": _share(sum(c.answered for c in answerable), len(answerable)),
        "correct_refusals": _share(sum(c.refused for c in unanswerable), len(unanswerable)),
        "answerable_queries": len(answerable),
        "unanswerable_queries": len(unanswerable),
        "citations_checked": cited,
        "answer_modes": dict(sorted(Counter(c.mode for c in checks).items())),
        "llm_models": sorted({c.model for c in checks if c.model}),
        "latency_p50_ms": round(float(p50), 1),
        "latency_p95_ms": round(float(p95), 1),
    }


def _share(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def cited_chunk_text(conn: psycopg.Connection, citation: Citation) -> str:
    """The full text of the cited chunk.

    A citation names its document and carries the start of the chunk's text (the snippet),
    not the chunk id: the chunk is the one of that document whose text starts so.
    """
    prefix = citation.snippet.removesuffix(SNIPPET_END)
    rows = conn.execute(
        "SELECT content FROM chunks WHERE document_id = %s ORDER BY ordinal",
        (citation.document_id,),
    ).fetchall()
    for (content,) in rows:
        if " ".join(content.split()).startswith(prefix):
            return str(content)
    return citation.snippet


def evaluate_answers(service: Service, dataset: Dataset, collection: str) -> dict[str, Any]:
    """Ask the Answerer every answerable and unanswerable query; the scores as JSON."""
    queries = dataset.answerable_queries + dataset.unanswerable_queries
    filters = SearchFilters(collection=collection)
    answerer = service.answerer
    checks = []
    with progress_bar(len(queries), "answer", "query") as bar:
        for query in queries:
            answer = answerer.answer(service.searcher.request(query.text, filters=filters))
            with service.db.pool.connection() as conn:
                texts = [cited_chunk_text(conn, citation) for citation in answer.citations]
            checks.append(check_answer(query, answer, texts))
            bar.update(1)
    return answer_scores(checks)
