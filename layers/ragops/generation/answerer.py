"""The answerer: rewrite a follow-up, retrieve, keep the relevant passages, ask the LLM and
map its citations back; extractive when no LLM is configured or the LLM fails."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import closing
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

from ragops.errors import InvalidQueryError
from ragops.generation.answer import NO_ANSWER, Answer, extractive_answer
from ragops.generation.citations import map_citations
from ragops.generation.llm import (
    ChatDelta,
    ChatResult,
    LLMClient,
    LLMError,
    LLMRequestError,
    LLMResponseError,
    Usage,
)
from ragops.generation.prompt import (
    ChatMessage,
    Context,
    TokenCounter,
    answer_messages,
    condense_messages,
    select_context,
)
from ragops.retrieval.search import Searcher, SearchRequest, SearchResult, ms_since
from ragops.settings import Settings

if TYPE_CHECKING:
    from ragops.service import Service

log = logging.getLogger(__name__)

Turn = Mapping[str, str]
ROLES = ("user", "assistant")
# Each history turn is cut to this many characters before it reaches a prompt.
TURN_CHARS = 1000
CONDENSE_MAX_TOKENS = 96
# User text is logged at DEBUG only, and cut: logs are not a copy of what people asked.
QUERY_LOG_CHARS = 200


@dataclass(frozen=True)
class StreamEvent:
    """`token` events carry {"text"}; the one `final` event carries the whole response."""

    event: Literal["token", "final"]
    data: dict[str, Any]

    def to_sse(self) -> str:
        """The event as text/event-stream lines."""
        return f"event: {self.event}\ndata: {json.dumps(self.data, ensure_ascii=False)}\n\n"


@dataclass
class _Prepared:
    """What is known before generation: the question, its passages and the time spent."""

    query: str
    original_query: str
    started: float
    results: list[SearchResult]
    relevant: list[SearchResult]
    context: Context | None
    timings: dict[str, float]
    usage: Usage = field(default_factory=Usage)
    warnings: list[str] = field(default_factory=list)
    llm_error: LLMError | None = None


class Answerer:
    """Answers a search request with citations; one per service, safe to share across threads."""

    def __init__(
        self,
        searcher: Searcher,
        settings: Settings,
        count_tokens: TokenCounter,
        llm: LLMClient | None = None,
    ):
        self.searcher = searcher
        self.settings = settings
        self.count_tokens = count_tokens
        self.llm = llm

    @classmethod
    def from_service(cls, service: Service, llm: LLMClient | None = None) -> Answerer:
        """The service's searcher and embedder tokenizer; the LLM from settings unless given."""
        settings = service.settings
        if llm is None and settings.llm_base_url:
            llm = LLMClient.from_settings(settings)
        return cls(
            service.searcher,
            settings,
            lambda text: service.models.embedder.count_tokens(text),
            llm,
        )

    def answer(self, request: SearchRequest, history: Sequence[Turn] | None = None) -> Answer:
        """The whole answer at once; LLM failures become an extractive answer with a warning."""
        prepared = self._prepare(request, history)
        context = prepared.context
        if context is None or self.llm is None or prepared.llm_error is not None:
            return self._finish(prepared, self._without_generation(prepared), 0.0)
        started = time.perf_counter()
        messages = answer_messages(prepared.query, context)
        log.debug("answer prompt: %s", json.dumps(messages))
        try:
            result = self.llm.chat(messages)
        except LLMError as exc:
            answer = self._fallback(prepared, exc)
        else:
            answer = self._generated(context, result)
        return self._finish(prepared, answer, ms_since(started))

    def stream(
        self, request: SearchRequest, history: Sequence[Turn] | None = None
    ) -> Iterator[StreamEvent]:
        """Token events as the answer is generated, then one final event (`Answer.to_json()`).

        Retrieval runs before this returns, so bad input raises here rather than mid-stream.
        The final answer equals the concatenated tokens, unless the LLM broke off mid-answer:
        then the final event carries the extractive answer and says so in meta.warnings.
        """
        prepared = self._prepare(request, history)
        return self._events(prepared)

    def _events(self, prepared: _Prepared) -> Iterator[StreamEvent]:
        context = prepared.context
        if context is None or self.llm is None or prepared.llm_error is not None:
            answer = self._finish(prepared, self._without_generation(prepared), 0.0)
            yield StreamEvent("token", {"text": answer.answer})
            yield StreamEvent("final", answer.to_json())
            return
        started = time.perf_counter()
        messages = answer_messages(prepared.query, context)
        log.debug("answer prompt: %s", json.dumps(messages))
        sent = False
        try:
            result: ChatResult | None = None
            # Closed even when our consumer stops early: the connection (and generation) ends.
            with closing(self.llm.stream(messages)) as pieces:
                for item in pieces:
                    if isinstance(item, ChatDelta):
                        sent = True
                        yield StreamEvent("token", {"text": item.text})
                    else:
                        result = item
            if result is None:
                raise LLMResponseError("the stream ended without its final result")
            answer = self._generated(context, result)
        except LLMError as exc:
            answer = self._fallback(prepared, exc)
            if sent:
                answer.warnings.append(
                    "the streamed tokens were replaced by this extractive answer"
                )
            else:
                yield StreamEvent("token", {"text": answer.answer})
        answer = self._finish(prepared, answer, ms_since(started))
        yield StreamEvent("final", answer.to_json())

    # --- before generation -------------------------------------------------------------

    def _prepare(self, request: SearchRequest, history: Sequence[Turn] | None) -> _Prepared:
        started = time.perf_counter()
        turns = self._bounded_history(history)
        query, usage, warnings, condense_ms, llm_error = self._standalone(request.query, turns)
        response = self.searcher.search(replace(request, query=query))
        timings = {
            "embed": response.timings_ms.get("embed", 0.0),
            "retrieve": response.timings_ms.get("retrieve", 0.0),
            "rerank": response.timings_ms.get("rerank", 0.0),
            "generate": condense_ms,
        }
        relevant = self._relevant(response.results, request.rerank)
        context = None
        if relevant:
            context = select_context(
                relevant, self.settings.context_budget_tokens, self.count_tokens
            )
            if context.dropped:
                warnings.append(
                    f"{context.dropped} passage(s) left out to fit RAGOPS_CONTEXT_BUDGET_TOKENS "
                    f"({self.settings.context_budget_tokens})"
                )
        return _Prepared(
            query=query,
            original_query=request.query,
            started=started,
            results=response.results,
            relevant=relevant,
            context=context,
            timings=timings,
            usage=usage,
            warnings=warnings,
            llm_error=llm_error,
        )

    def _relevant(self, results: list[SearchResult], reranked: bool) -> list[SearchResult]:
        """Results whose reranker probability reaches the threshold (all when not reranked:
        fusion and similarity scores have no comparable scale)."""
        if not reranked:
            return list(results)
        return [r for r in results if r.score >= self.settings.relevance_threshold]

    def _bounded_history(self, history: Sequence[Turn] | None) -> list[ChatMessage]:
        if not history:
            return []
        turns: list[ChatMessage] = []
        for position, turn in enumerate(history):
            role = turn.get("role") if isinstance(turn, Mapping) else None
            content = turn.get("content") if isinstance(turn, Mapping) else None
            if role not in ROLES or not isinstance(content, str):
                raise InvalidQueryError(
                    f"history[{position}] must be {{'role': 'user' | 'assistant', 'content': text}}"
                )
            turns.append({"role": role, "content": content[:TURN_CHARS]})
        limit = self.settings.history_turns
        return turns[-limit:] if limit else []

    def _standalone(
        self, question: str, turns: list[ChatMessage]
    ) -> tuple[str, Usage, list[str], float, LLMError | None]:
        """The question rewritten to stand alone, what the rewrite cost, warnings, and the
        LLM's error if it failed (then the answer skips the LLM too: it would fail again)."""
        if not turns:
            return question, Usage(), [], 0.0, None
        joined = _joined_with_last_user_turn(turns, question)
        if self.llm is None:
            return joined, Usage(), [], 0.0, None
        started = time.perf_counter()
        try:
            result = self.llm.chat(condense_messages(turns, question), CONDENSE_MAX_TOKENS)
        except LLMError as exc:
            warning = "the question was not rewritten with the conversation; used the last turn"
            return joined, Usage(), [warning], ms_since(started), exc
        rewritten = _clean_rewrite(result.content)
        warnings = []
        if not rewritten.endswith("?") or len(rewritten) > 4 * len(question) + 200:
            rewritten = joined
            warnings.append("the LLM's rewrite of the question was unusable; used the last turn")
        return rewritten, result.usage, warnings, ms_since(started), None

    # --- answers -----------------------------------------------------------------------

    def _without_generation(self, prepared: _Prepared) -> Answer:
        if not prepared.relevant:
            return Answer(NO_ANSWER, [], "no_answer", chunks_used=0)
        if prepared.llm_error is not None:
            return self._fallback(prepared, prepared.llm_error)
        return extractive_answer(prepared.relevant)

    def _fallback(self, prepared: _Prepared, exc: LLMError) -> Answer:
        _log_llm_failure(exc)
        answer = extractive_answer(prepared.relevant)
        answer.warnings.append(f"the LLM failed, so this answer is extractive: {exc}")
        return answer

    def _generated(self, context: Context, result: ChatResult) -> Answer:
        mapped = map_citations(result.content, context.passages)
        warnings: list[str] = []
        if mapped.unknown:
            numbers = ", ".join(f"[{n}]" for n in mapped.unknown)
            warnings.append(f"the answer cites {numbers}, which name no passage; not cited")
        if not mapped.citations and NO_ANSWER not in result.content:
            warnings.append("the answer cites no passage")
        if result.finish_reason == "length":
            warnings.append("the answer was cut off at RAGOPS_LLM_MAX_TOKENS")
        return Answer(
            answer=result.content,
            citations=mapped.citations,
            mode="generative",
            model=result.model or self.settings.llm_model,
            usage=result.usage.to_json(),
            warnings=warnings,
            chunks_used=len(context.passages),
            context_tokens=context.tokens,
        )

    def _finish(self, prepared: _Prepared, answer: Answer, generate_ms: float) -> Answer:
        timings = dict(prepared.timings)
        timings["generate"] = round(timings["generate"] + generate_ms, 3)
        timings["total"] = ms_since(prepared.started)
        answer.timings_ms = timings
        answer.usage = (prepared.usage + Usage(**answer.usage)).to_json()
        answer.warnings = [*prepared.warnings, *answer.warnings]
        if answer.model is None and self.llm is not None and answer.mode == "generative":
            answer.model = self.llm.model
        self._log(prepared, answer)
        return answer

    def _log(self, prepared: _Prepared, answer: Answer) -> None:
        """One INFO line per answer with no user or document text; the question (and its
        rewrite) only at DEBUG."""
        if log.isEnabledFor(logging.DEBUG):
            rewritten = prepared.query if prepared.query != prepared.original_query else None
            question = {
                "event": "answer_question",
                "query": prepared.original_query[:QUERY_LOG_CHARS],
                "standalone_query": rewritten[:QUERY_LOG_CHARS] if rewritten else None,
            }
            log.debug(json.dumps(question, ensure_ascii=False))
        if not log.isEnabledFor(logging.INFO):
            return
        record = {
            "event": "answer",
            "rewritten": prepared.query != prepared.original_query,
            "mode": answer.mode,
            "model": answer.model,
            "chunks": [
                {"chunk_id": r.chunk_id, "document_id": str(r.document_id), "score": r.score}
                for r in prepared.results
            ],
            "used": len(prepared.context.passages) if prepared.context else 0,
            "cited": [c.index for c in answer.citations],
            "answer_chars": len(answer.answer),
            "usage": answer.usage,
            "context_tokens": answer.context_tokens,
            "timings_ms": answer.timings_ms,
            "warnings": answer.warnings,
        }
        log.info(json.dumps(record, ensure_ascii=False))


def _joined_with_last_user_turn(turns: list[ChatMessage], question: str) -> str:
    last = next((t["content"] for t in reversed(turns) if t["role"] == "user"), "")
    return f"{' '.join(last.split())} {question}".strip()


def _clean_rewrite(text: str) -> str:
    """The first line of the LLM's rewrite, without a label or quotes around it."""
    line = next((ln.strip() for ln in text.strip().splitlines() if ln.strip()), "")
    for label in ("rewritten question:", "standalone question:", "question:"):
        if line.lower().startswith(label):
            line = line[len(label) :].strip()
    return line.strip("\"'“”").strip()


def _log_llm_failure(exc: LLMError) -> None:
    # A refused request (bad key, wrong URL) is a configuration problem someone must fix.
    level = logging.ERROR if isinstance(exc, LLMRequestError) else logging.WARNING
    log.log(level, "LLM call failed: %s", exc)
