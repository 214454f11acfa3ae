"""The query and health functions through their Mangum handlers, as API Gateway calls them."""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

import ragops.service
from ragops.resources import get_service
from ragops.settings import get_settings
from tests.e2e.conftest import (
    Stack,
    api_headers,
    call_api,
    http_event,
    query_api,
    reset_process_resources,
)
from tests.e2e.test_bucket_to_answer import KEY, NOTES

SEARCH = {"query": "how many beehives are there"}


@pytest.fixture
def seeded(stack: Stack) -> Stack:
    """One document ingested through the bucket, then a cold query container."""
    stack.put_and_ingest(KEY, NOTES)
    reset_process_resources()
    return stack


def health_api() -> Any:
    import functions.health.app

    return call_api(functions.health.app.handler, http_event("GET", "/health"))


def test_warm_invocations_reuse_the_service_pool_and_model_sessions(
    seeded: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened: list[object] = []
    connect = ragops.service.connect

    def counting_connect(*args: Any, **kwargs: Any) -> Any:
        opened.append(args)
        return connect(*args, **kwargs)

    monkeypatch.setattr(ragops.service, "connect", counting_connect)

    seen = []
    for _ in range(2):
        response = query_api("POST", "/v1/query", SEARCH)
        assert response.status == 200, response.body
        assert response.body["sources"][0]["source"] == seeded.source(KEY)
        service = get_service()
        seen.append(
            (
                service,
                service.db,
                service.db.pool,
                service.models.embedder._session,
                service.models.reranker._session,
            )
        )

    first, second = seen
    for before, after in zip(first, second, strict=True):
        assert before is after
    assert len(opened) == 1
    assert not first[2].closed
    assert get_service.cache_info().misses == 1


@pytest.fixture
def named_stage(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The query function deployed on the HTTP API stage `prod` (a fresh container)."""
    import functions.query.app

    monkeypatch.setenv("RAGOPS_API_BASE_PATH", "prod")
    reset_process_resources()
    importlib.reload(functions.query.app)
    yield
    monkeypatch.delenv("RAGOPS_API_BASE_PATH")
    reset_process_resources()
    importlib.reload(functions.query.app)


def test_a_named_stage_prefix_is_stripped_from_request_paths(
    seeded: Stack, named_stage: None
) -> None:
    import functions.query.app

    event = http_event("POST", "/prod/v1/search", SEARCH)
    event["requestContext"]["stage"] = "prod"

    response = call_api(functions.query.app.handler, event)

    assert response.status == 200, response.body
    assert response.body["results"][0]["source"] == seeded.source(KEY)
    listed = query_api("GET", "/prod/v1/documents")
    assert listed.status == 200
    assert [d["source"] for d in listed.body["documents"]] == [seeded.source(KEY)]


UNKNOWN_ID = "0b9d5f3e-8f53-4c1e-9d7c-3f1a2b4c5d6e"


def bad(name: str, method: str, path: str, named: str = "", status: int = 400, **parts: Any) -> Any:
    """A bad request, the status it must get, and the field or value its error must name."""
    return pytest.param(method, path, parts, status, named, id=name)


BAD_REQUESTS = [
    bad("malformed-json", "POST", "/v1/search", "not valid JSON", raw_body='{"query": "bees"'),
    bad("not-json", "POST", "/v1/query", "not valid JSON", raw_body="not json"),
    bad("body-not-an-object", "POST", "/v1/search", body=["bees"]),
    bad("query-missing", "POST", "/v1/search", "query", body={}),
    bad("query-not-a-string", "POST", "/v1/search", "query", body={"query": 5}),
    bad("top-k-not-a-number", "POST", "/v1/search", "top_k", body={**SEARCH, "top_k": "three"}),
    bad("rerank-not-a-bool", "POST", "/v1/search", "rerank", body={**SEARCH, "rerank": "yes"}),
    bad("query-empty", "POST", "/v1/search", "query", body={"query": ""}),
    bad("query-blank", "POST", "/v1/query", "empty", body={"query": " \t\n "}),
    bad("query-nul", "POST", "/v1/search", "query", body={"query": "bees\x00"}),
    bad(
        "query-too-long", "POST", "/v1/query", "RAGOPS_MAX_QUERY_CHARS", body={"query": "a" * 2001}
    ),
    bad("top-k-0", "POST", "/v1/search", "top_k", body={**SEARCH, "top_k": 0}),
    bad("top-k-101", "POST", "/v1/search", "top_k", body={**SEARCH, "top_k": 101}),
    bad("unknown-mode", "POST", "/v1/search", "mode", body={**SEARCH, "mode": "semantic"}),
    bad("unknown-field", "POST", "/v1/search", "limit", body={**SEARCH, "limit": 3}),
    bad(
        "unknown-filter",
        "POST",
        "/v1/search",
        "tenant",
        body={**SEARCH, "filters": {"tenant": "a"}},
    ),
    bad(
        "filter-document-id-not-a-uuid",
        "POST",
        "/v1/search",
        "document_id",
        body={**SEARCH, "filters": {"document_id": "x"}},
    ),
    bad(
        "metadata-nul",
        "POST",
        "/v1/search",
        "metadata",
        body={**SEARCH, "filters": {"metadata": {"team": "a\x00"}}},
    ),
    # The key owns the default collection: naming another is refused before it is looked up
    # (an unknown collection of one's own is a 404: tests/e2e/test_auth.py).
    bad(
        "other-collection",
        "POST",
        "/v1/query",
        "'nope'",
        403,
        body={**SEARCH, "collection": "nope"},
    ),
    bad("document-id-not-a-uuid", "GET", "/v1/documents/not-a-uuid", "not-a-uuid"),
    bad("delete-id-not-a-uuid", "DELETE", "/v1/documents/42", "not a UUID"),
    bad("unknown-document", "GET", f"/v1/documents/{UNKNOWN_ID}", UNKNOWN_ID, 404),
    bad("delete-unknown-document", "DELETE", f"/v1/documents/{UNKNOWN_ID}", UNKNOWN_ID, 404),
    bad("list-limit-0", "GET", "/v1/documents", "limit", query={"limit": "0"}),
    bad("list-offset-beyond-bigint", "GET", "/v1/documents", "offset", query={"offset": "9" * 20}),
    bad("list-unknown-status", "GET", "/v1/documents", "status", query={"status": "done"}),
    bad("list-collection-nul", "GET", "/v1/documents", "collection", query={"collection": "a\x00"}),
]


@pytest.mark.parametrize(("method", "path", "request_parts", "status", "named"), BAD_REQUESTS)
def test_bad_input_gets_a_clear_4xx(
    lambda_env: None,
    method: str,
    path: str,
    request_parts: dict[str, Any],
    status: int,
    named: str,
) -> None:
    response = query_api(method, path, **request_parts)

    assert response.status == status, response.body
    assert isinstance(response.body, dict), response.body
    detail = response.body["detail"]
    assert isinstance(detail, str)
    assert detail
    # The field or value at fault is named in the detail or in the validation errors.
    assert named in detail + str(response.body.get("extra", "")), response.body


def test_bad_input_is_base64_encoded_too(lambda_env: None) -> None:
    response = query_api("POST", "/v1/search", {"query": "bees", "top_k": 0}, base64_body=True)
    assert response.status == 400
    assert "top_k" in str(response.body)


def test_health_reports_every_check(seeded: Stack) -> None:
    response = health_api()

    assert response.status == 200, response.body
    assert response.body["status"] == "ok"
    assert response.body["failing"] == []
    checks = response.body["checks"]
    assert {"models", "database", "pgvector", "migrations", "store_model"} <= set(checks)
    assert all(check["ok"] for check in checks.values())
    assert response.body["documents"] == {"ready": 1, "pending": 0, "failed": 0}


def test_health_names_the_failing_check_when_the_models_are_missing(
    seeded: Stack, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    empty = tmp_path / "no-models"
    empty.mkdir()
    monkeypatch.setenv("RAGOPS_MODEL_DIR", str(empty))
    reset_process_resources()

    response = health_api()

    assert response.status == 503, response.body
    assert response.body["status"] == "degraded"
    assert response.body["failing"] == ["models"]
    assert str(empty) in response.body["checks"]["models"]["detail"]
    assert response.body["checks"]["database"]["ok"]
    # The query function says the same, as a 503 rather than a crash.
    query = query_api("POST", "/v1/search", SEARCH)
    assert query.status == 503, query.body
    assert str(empty) in query.body["detail"]


def _query_app() -> Any:
    import functions.query.app

    # Importing the function read the settings at collection time: start every test cold.
    get_settings.cache_clear()
    return functions.query.app.app


# The query API's own OpenAPI document, served in-process by the function's ASGI app.
schema = schemathesis.openapi.from_asgi("/docs/openapi.json", _query_app())


@schema.parametrize()
@settings(
    max_examples=25,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_fuzzed_requests_never_get_a_server_error(seeded: Stack, case: schemathesis.Case) -> None:
    case.call_and_validate(headers=api_headers(), checks=[not_a_server_error])
