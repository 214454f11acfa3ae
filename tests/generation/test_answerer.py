"""The whole path: ingest, retrieve, prompt a real local LLM, map citations; and every way
out that is not a generated answer (no LLM, nothing relevant, an LLM that fails)."""

from __future__ import annotations

import json
import logging
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from ragops.cli import main
from ragops.errors import InvalidQueryError
from ragops.generation.answer import NO_ANSWER
from ragops.generation.answerer import Answerer, StreamEvent
from ragops.generation.llm import LLMClient
from ragops.generation.retry import RetryPolicy
from ragops.service import Service
from tests.generation.servers import FaultServer, LocalLLM, complete, status, stream_tokens

RESPONSE_KEYS = {"answer", "citations", "sources", "usage", "meta"}
META_KEYS = {"model", "mode", "chunks_used", "context_tokens", "timings_ms", "warnings"}
TIMING_KEYS = {"embed", "retrieve", "rerank", "generate", "total"}
CITATION_KEYS = {"index", "document_id", "source", "title", "page", "snippet", "score"}
RYE = "How much does a loaf of rye bread cost?"
LOG = "ragops.generation.answerer"


def answerer(service: Service, base_url: str | None, **llm: Any) -> Answerer:
    client = None
    if base_url is not None:
        options: dict[str, Any] = {
            "max_tokens": 64,
            "total_timeout": 20.0,
            "policy": RetryPolicy(2, 0.01, 0.05, 1.0),
        }
        options.update(llm)
        client = LLMClient(base_url, **options)
    return Answerer.from_service(service, llm=client)


def split(events: list[StreamEvent]) -> tuple[list[str], dict[str, Any]]:
    """The token texts and the final response, checking the order of the events."""
    assert [e.event for e in events[:-1]] == ["token"] * (len(events) - 1)
    assert events[-1].event == "final"
    return [e.data["text"] for e in events[:-1]], events[-1].data


def answer_logs(caplog: pytest.LogCaptureFixture, event: str = "answer") -> list[dict[str, Any]]:
    messages = [r.getMessage() for r in caplog.records if r.name == LOG]
    # At DEBUG the logger also writes plain lines; the answer records are JSON objects.
    records = [json.loads(m) for m in messages if m.startswith("{")]
    return [record for record in records if record.get("event") == event]


# --- generated answers from the real local model ---------------------------------------------


@pytest.mark.parametrize(
    ("question", "source", "fact"),
    [
        (RYE, "s3://docs/bakery.md", "4 euros"),
        ("How many steps does the keeper climb?", "s3://docs/lighthouse.md", "131"),
        ("When did Mount Ferrow last erupt?", "s3://docs/volcano.md", "1923"),
    ],
)
def test_answer_cites_the_document_that_holds_the_fact(
    service: Service,
    corpus: dict[str, uuid.UUID],
    local_llm: LocalLLM,
    question: str,
    source: str,
    fact: str,
) -> None:
    answer = answerer(service, local_llm.base_url).answer(service.searcher.request(question))
    response = answer.to_json()
    assert response.keys() == RESPONSE_KEYS
    assert response["meta"].keys() == META_KEYS
    assert response["meta"]["mode"] == "generative"
    assert fact in response["answer"]
    assert response["citations"], response["answer"]
    for citation in response["citations"]:
        assert citation.keys() == CITATION_KEYS
        assert citation["document_id"] == str(corpus[source])
        assert citation["source"] == source
        assert f"[{citation['index']}]" in response["answer"]
    assert response["sources"] == [
        {
            "document_id": str(corpus[source]),
            "source": source,
            "title": response["citations"][0]["title"],
        }
    ]
    assert response["usage"]["prompt_tokens"] > 0
    assert response["usage"]["completion_tokens"] > 0
    meta = response["meta"]
    assert meta["model"]
    assert meta["chunks_used"] >= 1
    assert meta["context_tokens"] > 0
    assert meta["timings_ms"].keys() == TIMING_KEYS
    assert meta["timings_ms"]["generate"] > 0
    assert meta["timings_ms"]["total"] >= meta["timings_ms"]["generate"]
    assert meta["warnings"] == []


def test_stream_sends_tokens_then_one_final_event_with_citations(
    service: Service, corpus: dict[str, uuid.UUID], local_llm: LocalLLM
) -> None:
    events = list(answerer(service, local_llm.base_url).stream(service.searcher.request(RYE)))
    tokens, final = split(events)
    assert len(tokens) > 3
    assert "".join(tokens) == final["answer"]
    assert final.keys() == RESPONSE_KEYS
    assert final["meta"]["mode"] == "generative"
    assert final["citations"]
    assert {c["source"] for c in final["citations"]} == {"s3://docs/bakery.md"}
    assert final["usage"]["prompt_tokens"] > 0
    assert final["usage"]["completion_tokens"] > 0
    assert events[-1].to_sse().startswith("event: final\ndata: {")
    assert events[0].to_sse().endswith("\n\n")


def test_a_question_the_documents_cannot_answer_never_reaches_the_llm(
    service: Service, corpus: dict[str, uuid.UUID], local_llm: LocalLLM
) -> None:
    calls: list[httpx.Request] = []
    http = httpx.Client(event_hooks={"request": [calls.append]})
    client = LLMClient(local_llm.base_url, max_tokens=64, http=http)
    subject = Answerer.from_service(service, llm=client)
    decoded = local_llm.metric("n_decode_total")
    request = service.searcher.request("What is the capital of Australia?")

    answer = subject.answer(request)
    tokens, final = split(list(subject.stream(request)))

    assert calls == []
    assert local_llm.metric("n_decode_total") == decoded
    assert answer.answer == final["answer"] == "".join(tokens) == NO_ANSWER
    assert answer.mode == final["meta"]["mode"] == "no_answer"
    assert answer.citations == []
    assert final["sources"] == []
    assert final["usage"] == {"prompt_tokens": 0, "completion_tokens": 0}


def test_follow_up_is_rewritten_by_the_llm_before_retrieval(
    service: Service,
    corpus: dict[str, uuid.UUID],
    local_llm: LocalLLM,
    caplog: pytest.LogCaptureFixture,
) -> None:
    history = [
        {"role": "user", "content": "When was the Kestrel Point lighthouse built?"},
        {"role": "assistant", "content": "According to [1], it was built in 1887."},
    ]
    caplog.set_level(logging.DEBUG, logger=LOG)
    answer = answerer(service, local_llm.base_url).answer(
        service.searcher.request("How many steps does its keeper climb?"), history
    )
    (record,) = answer_logs(caplog, "answer_question")
    rewritten = record["standalone_query"]
    assert rewritten
    assert rewritten.endswith("?")
    assert not rewritten.startswith(history[0]["content"])  # not the no-LLM fallback
    assert answer.warnings == []
    assert answer.mode == "generative"
    assert {c.source for c in answer.citations} == {"s3://docs/lighthouse.md"}
    # Two LLM calls: the rewrite and the answer, both counted.
    assert answer.usage["prompt_tokens"] > 300


# --- without an LLM, and when the LLM fails --------------------------------------------------


def test_without_an_llm_the_answer_is_extractive(
    service: Service, corpus: dict[str, uuid.UUID]
) -> None:
    response = answerer(service, None).answer(service.searcher.request(RYE)).to_json()
    assert response["meta"]["mode"] == "extractive"
    assert response["meta"]["model"] is None
    assert "4 euros" in response["answer"]
    assert "[1]" in response["answer"]
    assert response["citations"][0]["document_id"] == str(corpus["s3://docs/bakery.md"])
    assert response["usage"] == {"prompt_tokens": 0, "completion_tokens": 0}


def test_without_an_llm_a_follow_up_joins_the_last_user_turn(
    service: Service, corpus: dict[str, uuid.UUID], caplog: pytest.LogCaptureFixture
) -> None:
    history = [
        {"role": "user", "content": "Tell me about   Mount Ferrow."},
        {"role": "assistant", "content": "It is a volcano."},
    ]
    caplog.set_level(logging.DEBUG, logger=LOG)
    answer = answerer(service, None).answer(
        service.searcher.request("How wide is its lake?"), history
    )
    (record,) = answer_logs(caplog, "answer_question")
    assert record["standalone_query"] == "Tell me about Mount Ferrow. How wide is its lake?"
    assert record["query"] == "How wide is its lake?"
    (info,) = answer_logs(caplog)
    assert info["rewritten"] is True
    # At INFO, neither the question nor any passage text is logged.
    info_text = " ".join(r.getMessage() for r in caplog.records if r.levelno >= logging.INFO)
    assert "lake" not in info_text
    assert "Ferrow" not in info_text
    assert answer.citations[0].source == "s3://docs/volcano.md"


def test_history_is_bounded_before_it_reaches_the_rewrite_prompt(
    service: Service, corpus: dict[str, uuid.UUID], fault_server: FaultServer
) -> None:
    plan = fault_server.plan(complete("How wide is the crater lake of Mount Ferrow?"), complete())
    history = [
        {"role": "user" if n % 2 == 0 else "assistant", "content": f"turn number {n}"}
        for n in range(10)
    ]
    settings = service.settings.model_copy(update={"history_turns": 2})
    subject = Answerer(
        service.searcher,
        settings,
        service.models.embedder.count_tokens,
        LLMClient(plan.base_url, http=httpx.Client()),
    )
    answer = subject.answer(service.searcher.request("How wide is it?"), history)
    rewrite_prompt = plan.requests[0]["body"]["messages"][-1]["content"]
    assert "turn number 8" in rewrite_prompt
    assert "turn number 9" in rewrite_prompt
    assert "turn number 7" not in rewrite_prompt
    answer_prompt = plan.requests[1]["body"]["messages"][-1]["content"]
    assert "Question: How wide is the crater lake of Mount Ferrow?" in answer_prompt
    assert answer.citations[0].source == "s3://docs/volcano.md"
    assert answer.usage == {"prompt_tokens": 80, "completion_tokens": 24}


@pytest.mark.parametrize(
    "history",
    [[{"role": "system", "content": "x"}], [{"role": "user"}], ["just text"]],
)
def test_malformed_history_is_a_clear_error(
    service: Service, corpus: dict[str, uuid.UUID], history: list[Any]
) -> None:
    with pytest.raises(InvalidQueryError, match=r"history\[0\]"):
        answerer(service, None).answer(service.searcher.request(RYE), history)


def test_an_llm_that_keeps_failing_gives_the_extractive_answer_with_a_warning(
    service: Service, corpus: dict[str, uuid.UUID], fault_server: FaultServer
) -> None:
    plan = fault_server.plan(status(500, "out of memory"))
    subject = answerer(service, plan.base_url)
    request = service.searcher.request(RYE)

    answer = subject.answer(request)
    tokens, final = split(list(subject.stream(request)))

    assert plan.attempts == 2 * 3  # two calls, each with its two retries
    for response in (answer.to_json(), final):
        assert response["meta"]["mode"] == "extractive"
        assert response["citations"][0]["source"] == "s3://docs/bakery.md"
        (warning,) = response["meta"]["warnings"]
        assert "extractive" in warning
        assert "500" in warning
        assert "out of memory" in warning
    assert "".join(tokens) == final["answer"] == answer.answer


def test_a_rejected_api_key_gives_the_extractive_answer_naming_the_cause(
    service: Service, corpus: dict[str, uuid.UUID], fault_server: FaultServer
) -> None:
    plan = fault_server.plan(status(401, "invalid api key"))
    answer = answerer(service, plan.base_url, api_key="sk-bad").answer(
        service.searcher.request(RYE)
    )
    assert answer.mode == "extractive"
    assert plan.attempts == 1
    assert any("401" in w and "RAGOPS_LLM_API_KEY" in w for w in answer.warnings)


def test_a_stream_that_breaks_mid_answer_ends_with_the_extractive_answer(
    service: Service, corpus: dict[str, uuid.UUID], fault_server: FaultServer
) -> None:
    plan = fault_server.plan(stream_tokens(["According ", "to ", "[1], "], end="truncate"))
    events = list(answerer(service, plan.base_url).stream(service.searcher.request(RYE)))
    tokens, final = split(events)
    assert tokens == ["According ", "to ", "[1], "]
    assert final["meta"]["mode"] == "extractive"
    assert "4 euros" in final["answer"]
    assert any("replaced" in w for w in final["meta"]["warnings"])
    assert any("truncated" in w for w in final["meta"]["warnings"])


# --- what gets logged ------------------------------------------------------------------------


def test_each_query_logs_one_json_line_without_document_text_or_the_key(
    service: Service,
    corpus: dict[str, uuid.UUID],
    local_llm: LocalLLM,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    answer = answerer(service, local_llm.base_url, api_key="sk-secret-4242").answer(
        service.searcher.request(RYE)
    )
    (record,) = answer_logs(caplog)
    assert record["mode"] == "generative"
    assert record["answer_chars"] == len(answer.answer)
    assert record["chunks"]
    assert {"chunk_id", "document_id", "score"} == set(record["chunks"][0])
    assert record["chunks"][0]["document_id"] == str(corpus["s3://docs/bakery.md"])
    assert record["timings_ms"] == answer.timings_ms
    everything = "\n".join(r.getMessage() for r in caplog.records)
    assert "sk-secret-4242" not in everything
    assert "wood-fired oven" not in everything
    assert "croissants cost" not in everything


# --- the command line ------------------------------------------------------------------------


def test_ragops_ask_json_prints_the_response_object(
    service: Service,
    corpus: dict[str, uuid.UUID],
    local_llm: LocalLLM,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    monkeypatch.chdir(tmp_path)
    settings = service.settings
    monkeypatch.setenv("RAGOPS_DATABASE_URL", str(settings.database_url))
    monkeypatch.setenv("RAGOPS_MODEL_DIR", str(settings.models_path))
    monkeypatch.setenv("RAGOPS_LLM_BASE_URL", local_llm.base_url)
    monkeypatch.setenv("RAGOPS_LLM_MAX_TOKENS", "64")

    assert main(["ask", RYE, "--json", "-k", "3", "--collection", "default"]) == 0
    response = json.loads(capsys.readouterr().out)
    assert response.keys() == RESPONSE_KEYS
    assert response["meta"]["mode"] == "generative"
    assert response["citations"][0]["source"] == "s3://docs/bakery.md"

    monkeypatch.delenv("RAGOPS_LLM_BASE_URL")
    assert main(["ask", RYE]) == 0
    out = capsys.readouterr().out
    assert "4 euros" in out
    assert "[1] Juniper Street bakery (s3://docs/bakery.md)" in out
