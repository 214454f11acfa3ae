"""Logs, metrics and stage spans of real requests: the local app (Prometheus at /metrics) and
the Lambda functions (CloudWatch EMF on stdout), over a real database and real models."""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import TestClient

from ragops.api.app import create_local_app
from ragops.db import documents
from ragops.db.documents import DocumentVersion
from ragops.dev.aws import LOCAL_REGION
from ragops.dev.worker import sqs_event
from ragops.ingest.handler import handle_event
from ragops.observability import metrics, tracing
from ragops.observability.tracing import Span
from ragops.resources import get_service
from tests.e2e.conftest import Stack, api_headers, query_api
from tests.e2e.test_bucket_to_answer import KEY, NOTES
from tests.unit.test_observability import emf_objects, samples, service_logging

QUERY = "how many beehives are there"
SEARCH = {"query": QUERY}
STAGES = ("embed", "retrieve", "rerank", "total")


@pytest.fixture
def client(stack: Stack) -> Iterator[TestClient[Litestar]]:
    """The app `ragops dev` serves, over one document ingested as its worker does it."""
    with service_logging():
        app = create_local_app()
        try:
            stack.s3.put_object(Bucket=stack.bucket, Key=KEY, Body=NOTES)
            arn = stack.sqs.get_queue_attributes(
                QueueUrl=stack.resources.queue_url, AttributeNames=["QueueArn"]
            )["Attributes"]["QueueArn"]
            result = handle_event(sqs_event(stack.receive(1), arn, LOCAL_REGION), None)
            assert result == {"batchItemFailures": []}
            with TestClient(app) as test_client:
                test_client.headers.update(api_headers())
                yield test_client
        finally:
            metrics.set_recorder(metrics.NullRecorder())


def log_lines(capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in capsys.readouterr().err.splitlines() if line]


def test_a_search_logs_one_info_line_with_its_figures_and_without_the_query(
    client: TestClient[Litestar], capsys: pytest.CaptureFixture[str]
) -> None:
    assert client.post("/v1/search", json=SEARCH).status_code == 200  # warm: pool, models
    capsys.readouterr()

    response = client.post("/v1/search", json=SEARCH, headers={"X-Request-Id": "trace-me-1"})

    assert response.status_code == 200, response.text
    assert response.headers["x-request-id"] == "trace-me-1"
    lines = log_lines(capsys)
    (line,) = [line for line in lines if line["level"] == "INFO"]
    assert line["request_id"] == "trace-me-1"
    assert (line["route"], line["status"], line["method"]) == ("/v1/search", 200, "POST")
    assert (line["collection"], line["mode"], line["rerank"]) == ("default", "hybrid", True)
    assert line["results"] == len(response.json()["results"]) > 0
    assert set(STAGES) <= set(line["timings_ms"])
    assert line["timings_ms"] == response.json()["meta"]["timings_ms"]
    everything = json.dumps(lines)
    assert "beehives" not in everything
    assert "Twelve" not in everything  # the document's text


def test_at_debug_the_query_text_is_logged_cut_short(
    client: TestClient[Litestar], capsys: pytest.CaptureFixture[str]
) -> None:
    logging.getLogger("ragops").setLevel(logging.DEBUG)
    long_query = QUERY + " please" * 100
    response = client.post("/v1/search", json={"query": long_query, "rerank": False})
    assert response.status_code == 200, response.text
    lines = [line for line in log_lines(capsys) if line["logger"] == "ragops.api"]
    (debug,) = [line for line in lines if line["level"] == "DEBUG"]
    assert debug["query"] == long_query[:200]
    assert debug["request_id"] == response.headers["x-request-id"]
    (info,) = [line for line in lines if line["level"] == "INFO"]
    assert "query" not in info
    assert "beehives" not in json.dumps(info)


def test_metrics_count_queries_and_time_their_stages(client: TestClient[Litestar]) -> None:
    for _ in range(2):
        assert client.post("/v1/search", json=SEARCH).status_code == 200
    assert client.post("/v1/search", json={"query": "x" * 5000}).status_code == 400

    response = client.get("/metrics")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    values = samples(response.text)
    ok = 'ragops_queries_total{route="/v1/search",mode="hybrid",status="200"}'
    assert values[ok] == 2
    assert values['ragops_queries_total{route="/v1/search",mode="unknown",status="400"}'] == 1
    for stage in STAGES:
        series = f'route="/v1/search",stage="{stage}"'
        assert values[f"ragops_stage_duration_seconds_count{{{series}}}"] == 2
        assert values[f'ragops_stage_duration_seconds_bucket{{{series},le="+Inf"}}'] == 2
        assert values[f'ragops_stage_duration_seconds_bucket{{{series},le="0.005"}}'] <= 2
        assert values[f"ragops_stage_duration_seconds_sum{{{series}}}"] > 0
    # The fixture's document went through the ingest handler into the same registry.
    assert values['ragops_ingest_documents_total{outcome="ingested"}'] == 1
    assert values["ragops_ingest_chunks_total"] >= 1
    assert "ragops_ingest_failures_total" not in values
    # Local only, and kept out of the API's description.
    assert "/metrics" not in client.get("/docs/openapi.json").json()["paths"]


def test_the_documents_gauge_reflects_a_pending_document(client: TestClient[Litestar]) -> None:
    version = DocumentVersion("default", "s3://ragops-documents/big.pdf", size_bytes=10)
    with get_service().db.pool.connection() as conn:
        documents.mark_pending(conn, version)

    values = samples(client.get("/metrics").text)

    assert values['ragops_documents{status="pending"}'] == 1
    assert values['ragops_documents{status="ready"}'] == 1
    assert values['ragops_documents{status="failed"}'] == 0


class StageNames:
    def __init__(self) -> None:
        self.ended: list[Span] = []

    def start(self, span: Span) -> None:
        pass

    def end(self, span: Span) -> None:
        self.ended.append(span)


def test_the_tracing_hook_receives_each_stage(client: TestClient[Litestar]) -> None:
    hook = StageNames()
    tracing.add_hook(hook)
    try:
        assert client.post("/v1/search", json=SEARCH).status_code == 200
    finally:
        tracing.remove_hook(hook)
    assert [span.name for span in hook.ended] == ["embed", "retrieve", "rerank", "search"]
    assert all(span.duration_ms and span.duration_ms > 0 for span in hook.ended)
    assert {span.attributes["route"] for span in hook.ended} == {"/v1/search"}


@pytest.fixture
def emf_enabled(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("POWERTOOLS_DEV", "POWERTOOLS_METRICS_DISABLED", "POWERTOOLS_METRICS_NAMESPACE"):
        monkeypatch.delenv(name, raising=False)


def by_metric(objects: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [o for o in objects if name in o]


def test_the_lambda_functions_print_their_metrics_as_emf(
    stack: Stack, emf_enabled: None, capsys: pytest.CaptureFixture[str]
) -> None:
    stack.put_and_ingest(KEY, NOTES)
    ingest = emf_objects(capsys.readouterr().out)
    (documents_metric,) = by_metric(ingest, "IngestDocuments")
    assert documents_metric["outcome"] == "ingested"
    assert documents_metric["service"] == "ragops-ingest"
    (chunks_metric,) = by_metric(ingest, "IngestChunks")
    assert chunks_metric["IngestChunks"][0] >= 1

    response = query_api("POST", "/v1/search", SEARCH)

    assert response.status == 200, response.body
    # API Gateway's request id (the fixture event's requestContext.requestId) is the id.
    assert response.headers["x-request-id"] == "id"
    objects = emf_objects(capsys.readouterr().out)
    (queries,) = by_metric(objects, "Queries")
    (directive,) = queries["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == "ragops"
    assert sorted(directive["Dimensions"][0]) == ["mode", "route", "service", "status"]
    assert (queries["route"], queries["mode"], queries["status"], queries["Queries"]) == (
        "/v1/search",
        "hybrid",
        "200",
        [1.0],
    )
    latencies = {o["stage"]: o["StageLatency"] for o in by_metric(objects, "StageLatency")}
    assert set(latencies) == set(STAGES)
    assert all(len(values) == 1 and values[0] > 0 for values in latencies.values())


def test_a_lambda_invocation_without_metrics_prints_none_and_never_warns(
    stack: Stack, emf_enabled: None, capsys: pytest.CaptureFixture[str]
) -> None:
    assert query_api("GET", "/v1/documents").status == 200  # cold start: pool, migrations
    capsys.readouterr()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        response = query_api("GET", "/v1/documents")
        # /metrics is local only: the query function has no such route.
        assert query_api("GET", "/metrics").status == 404
    assert response.status == 200, response.body
    assert emf_objects(capsys.readouterr().out) == []
