"""POST /v1/query with a real local LLM: over real HTTP (streaming) and through Mangum."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from ragops.dev.serve import serve_in_background
from ragops.generation.sse import sse_events
from ragops.resources import get_service
from tests.e2e.conftest import api_headers, query_api, reset_process_resources
from tests.generation.conftest import ingest_corpus, local_llm  # noqa: F401 (a fixture)
from tests.generation.servers import LocalLLM

QUESTION = "How many nautical miles out at sea can the Kestrel Point lamp be seen?"
LIGHTHOUSE = "s3://docs/lighthouse.md"


@pytest.fixture
def llm_env(
    lambda_env: None,
    monkeypatch: pytest.MonkeyPatch,
    local_llm: LocalLLM,  # noqa: F811
) -> None:
    """The query function's environment with the local LLM configured, the corpus ingested."""
    monkeypatch.setenv("RAGOPS_LLM_BASE_URL", local_llm.base_url)
    monkeypatch.setenv("RAGOPS_CHUNK_TOKENS", "200")
    monkeypatch.setenv("RAGOPS_CHUNK_OVERLAP", "32")
    reset_process_resources()
    ingest_corpus(get_service())


@pytest.fixture
def api_url(llm_env: None) -> Iterator[str]:
    """The query app under a real ASGI server on a free loopback port."""
    from ragops.api.app import create_query_app

    with serve_in_background(create_query_app(include_health=True)) as url:
        yield url


def _sse_events(lines: Iterator[str]) -> list[tuple[str, dict[str, Any]]]:
    return [(name, json.loads(data)) for name, data in sse_events(lines)]


def test_generated_answer_cites_the_source_that_holds_it(api_url: str) -> None:
    response = httpx.post(
        f"{api_url}/v1/query", json={"query": QUESTION}, headers=api_headers(), timeout=120
    )
    assert response.status_code == 200
    body = response.json()
    assert body["meta"]["mode"] == "generative"
    assert body["usage"]["prompt_tokens"] > 0
    assert body["usage"]["completion_tokens"] > 0
    assert body["citations"], body["answer"]
    assert {c["source"] for c in body["citations"]} == {LIGHTHOUSE}
    assert set(body["meta"]["timings_ms"]) >= {"embed", "retrieve", "rerank", "generate", "total"}


def test_streamed_answer_sends_tokens_then_the_citations(api_url: str) -> None:
    with httpx.stream(
        "POST",
        f"{api_url}/v1/query",
        json={"query": QUESTION, "stream": True},
        headers=api_headers(),
        timeout=120,
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["x-accel-buffering"] == "no"
        events = _sse_events(response.iter_lines())
    names = [name for name, _ in events]
    assert names[-1] == "final"
    assert names.count("final") == 1
    assert len(names) > 2
    assert set(names[:-1]) == {"token"}
    final = events[-1][1]
    assert "".join(data["text"] for _, data in events[:-1]) == final["answer"]
    assert {c["source"] for c in final["citations"]} == {LIGHTHOUSE}
    assert final["usage"]["completion_tokens"] > 0


def test_stream_request_behind_api_gateway_answers_whole_and_says_why(llm_env: None) -> None:
    response = query_api("POST", "/v1/query", {"query": QUESTION, "stream": True})
    assert response.status == 200
    assert response.headers["x-ragops-streaming"] == "unavailable"
    body = response.body
    assert body["meta"]["mode"] == "generative"
    assert any("streaming is not available" in w for w in body["meta"]["warnings"])
    assert {c["source"] for c in body["citations"]} == {LIGHTHOUSE}


def test_question_the_documents_cannot_answer_is_refused_without_the_llm(
    api_url: str,
    local_llm: LocalLLM,  # noqa: F811
) -> None:
    decoded = local_llm.metric("n_decode_total")
    response = httpx.post(
        f"{api_url}/v1/query",
        json={"query": "Who won the 1966 football world cup?"},
        headers=api_headers(),
        timeout=60,
    )
    body = response.json()
    assert response.status_code == 200
    assert body["meta"]["mode"] == "no_answer"
    assert body["citations"] == []
    assert local_llm.metric("n_decode_total") == decoded
