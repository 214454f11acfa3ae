"""The LLM is down or slow: answers degrade to extractive, the rest of the API keeps answering.

The query API runs under a real ASGI server; the LLM is a closed port (connection refused)
or a real local HTTP server that says nothing for longer than the read timeout.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack

import httpx
import pytest

from ragops.dev.serve import serve_in_background
from ragops.resources import get_service
from tests.e2e.conftest import api_headers, reset_process_resources
from tests.faults.conftest import TALLY, injected
from tests.generation.conftest import ingest_corpus
from tests.generation.servers import FaultServer, slow

QUESTION = "How much does a loaf of rye cost at the Juniper Street bakery?"
TOTAL_TIMEOUT = 3.0


def closed_port_url() -> str:
    """A loopback URL nothing listens on: every connection is refused at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


@pytest.fixture
def serve(lambda_env: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], str]]:
    """Serve the query API (with /health) against an LLM at the URL given; corpus ingested."""
    with ExitStack() as servers:

        def start(llm_base_url: str) -> str:
            monkeypatch.setenv("RAGOPS_LLM_BASE_URL", llm_base_url)
            monkeypatch.setenv("RAGOPS_LLM_READ_TIMEOUT", "1")
            monkeypatch.setenv("RAGOPS_LLM_TOTAL_TIMEOUT", str(TOTAL_TIMEOUT))
            monkeypatch.setenv("RAGOPS_CHUNK_TOKENS", "200")
            reset_process_resources()
            ingest_corpus(get_service())
            from ragops.api.app import create_query_app

            return servers.enter_context(serve_in_background(create_query_app(include_health=True)))

        yield start


def ask(url: str) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = httpx.post(
        f"{url}/v1/query", json={"query": QUESTION}, headers=api_headers(), timeout=60
    )
    return response, time.monotonic() - started


def assert_extractive(response: httpx.Response, seconds: float) -> None:
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["meta"]["mode"] == "extractive"
    assert body["citations"][0]["source"] == "s3://docs/bakery.md"
    assert "4 euros" in body["answer"]
    assert any("extractive" in warning for warning in body["meta"]["warnings"])
    # Bounded by the LLM's total timeout, plus retrieval and reranking.
    assert seconds < TOTAL_TIMEOUT + 10


def test_an_llm_refusing_connections_gives_extractive_answers(serve: Callable[[str], str]) -> None:
    url = serve(closed_port_url())
    injected("LLM connection refused")

    for _ in range(3):
        response, seconds = ask(url)
        assert_extractive(response, seconds)
        TALLY["requests"] += 1
    health = httpx.get(f"{url}/health", timeout=30)
    TALLY["requests"] += 1
    assert health.status_code == 200


def test_a_silent_llm_leaves_search_and_health_answering_meanwhile(
    serve: Callable[[str], str],
) -> None:
    fault = FaultServer()
    try:
        plan = fault.plan(slow(30))  # far past the 1 s read timeout and the 3 s total
        url = serve(plan.base_url)
        injected("LLM silent past the read timeout")
        with ThreadPoolExecutor(4) as pool:
            pending = [pool.submit(ask, url) for _ in range(2)]
            time.sleep(0.5)  # the queries are waiting on the LLM now
            meanwhile = []
            while not all(future.done() for future in pending):
                started = time.monotonic()
                search = httpx.post(
                    f"{url}/v1/search",
                    json={"query": "rye bread", "top_k": 2},
                    headers=api_headers(),
                    timeout=30,
                )
                health = httpx.get(f"{url}/health", timeout=30)
                meanwhile.append(
                    (search.status_code, health.status_code, time.monotonic() - started)
                )
            answers = [future.result() for future in pending]
        TALLY["requests"] += 2 + 2 * len(meanwhile)
    finally:
        fault.close()

    for response, seconds in answers:
        assert_extractive(response, seconds)
    assert plan.attempts >= 2  # each query tried the LLM at least once
    assert meanwhile, "the queries finished before anything else was asked"
    for search_status, health_status, seconds in meanwhile:
        assert (search_status, health_status) == (200, 200)
        assert seconds < 5
