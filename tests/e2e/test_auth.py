"""Access through the query function, as API Gateway calls it: keys, tenants, JWT claims,
rate and size limits. Two collections hold documents on the same subject, so a leak
would show up in every search."""

from __future__ import annotations

import importlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest

from ragops.resources import get_service
from tests.e2e.conftest import (
    ApiResponse,
    Stack,
    call_api,
    create_api_key,
    http_event,
    query_api,
    reset_process_resources,
)

ALPHA_KEY = "alpha/lighthouse.md"
BETA_KEY = "beta/lighthouse-private.md"
BETA_BROKEN = "beta/broken.pdf"
ALPHA_DOC = b"""# Kestrel Point lighthouse

The Kestrel Point lamp can be seen 22 nautical miles out at sea. The keeper climbs
114 steps to reach the lantern room every evening.
"""
# Beta's text shares the subject and carries words found nowhere else.
BETA_MARKER = "zanzibarquux"
BETA_DOC = f"""# Kestrel Point lighthouse (private)

The Kestrel Point lamp is serviced by the {BETA_MARKER} crew. The lighthouse keeper's
door code is {BETA_MARKER}-4521 and the lamp is seen 22 nautical miles out at sea.
""".encode()
QUESTION = "How far out at sea can the Kestrel Point lamp be seen?"


@dataclass
class Tenants:
    stack: Stack
    database_url: str
    alpha: str
    beta: str
    beta_document: str
    beta_failed: str

    def call(self, key: str | None, method: str, path: str, body: Any = None, **kw: Any) -> Any:
        headers = {"authorization": f"Bearer {key}"} if key else {}
        event = http_event(method, path, body, authenticated=False, headers=headers, **kw)
        import functions.query.app

        return call_api(functions.query.app.handler, event)


def _ingest(stack: Stack, key: str, body: bytes, collection: str) -> None:
    stack.s3.put_object(
        Bucket=stack.bucket,
        Key=key,
        Body=body,
        Metadata={"collection": collection, "team": "lighthouses"},
    )
    stack.ingest(stack.receive(1))


@pytest.fixture
def tenants(stack: Stack, database_url: str) -> Tenants:
    """Collections alpha and beta, on one subject; beta also has a failed file."""
    _ingest(stack, ALPHA_KEY, ALPHA_DOC, "alpha")
    _ingest(stack, BETA_KEY, BETA_DOC, "beta")
    _ingest(stack, BETA_BROKEN, b"%PDF-1.7 this is not a PDF " + BETA_MARKER.encode(), "beta")
    with psycopg.connect(database_url) as conn:
        rows = dict(
            conn.execute("SELECT source, id::text FROM documents WHERE collection = 'beta'")
        )
        statuses = dict(conn.execute("SELECT source, status FROM documents"))
    assert statuses == {
        stack.source(ALPHA_KEY): "ready",
        stack.source(BETA_KEY): "ready",
        stack.source(BETA_BROKEN): "failed",
    }
    reset_process_resources()
    return Tenants(
        stack,
        database_url,
        alpha=create_api_key(database_url, "alpha"),
        beta=create_api_key(database_url, "beta"),
        beta_document=rows[stack.source(BETA_KEY)],
        beta_failed=rows[stack.source(BETA_BROKEN)],
    )


def _text(response: ApiResponse) -> str:
    return json.dumps(response.body) + json.dumps(response.headers)


ROUTES = [
    ("POST", "/v1/search", {"query": QUESTION}),
    ("POST", "/v1/query", {"query": QUESTION}),
    ("GET", "/v1/documents", None),
    ("GET", "/v1/documents/0b9d5f3e-8f53-4c1e-9d7c-3f1a2b4c5d6e", None),
    ("DELETE", "/v1/documents/0b9d5f3e-8f53-4c1e-9d7c-3f1a2b4c5d6e", None),
    ("GET", "/v1/ingest/stats", None),
]


@pytest.mark.parametrize(("method", "path", "body"), ROUTES)
@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({}, "an API key is required"),
        ({"authorization": "Bearer not-a-key"}, "malformed"),
        ({"x-api-key": "rgo_" + "Q" * 43}, "unknown or revoked"),
        ({"authorization": "Basic YWxwaGE6YmV0YQ=="}, "Bearer"),
    ],
)
def test_every_route_refuses_missing_or_wrong_keys_with_401(
    lambda_env: None, method: str, path: str, body: Any, headers: dict[str, str], reason: str
) -> None:
    response = query_api(method, path, body, authenticated=False, headers=headers)

    assert response.status == 401, response.body
    assert reason in response.body["detail"]
    assert response.headers["www-authenticate"] == "Bearer"


def test_health_and_the_openapi_document_need_no_key(lambda_env: None) -> None:
    assert query_api("GET", "/docs/openapi.json", authenticated=False).status == 200
    import functions.health.app

    health = call_api(functions.health.app.handler, http_event("GET", "/health"))
    assert health.status in (200, 503)


def test_the_x_api_key_header_works_as_well(tenants: Tenants) -> None:
    event = http_event(
        "GET", "/v1/documents", authenticated=False, headers={"x-api-key": tenants.alpha}
    )
    import functions.query.app

    response = call_api(functions.query.app.handler, event)
    assert response.status == 200, response.body
    assert [d["collection"] for d in response.body["documents"]] == ["alpha"]


def test_a_key_finds_its_own_collection(tenants: Tenants) -> None:
    """The positive control: beta's key does find beta's passage."""
    response = tenants.call(tenants.beta, "POST", "/v1/search", {"query": QUESTION})
    assert response.status == 200, response.body
    assert BETA_MARKER in _text(response)
    assert {r["source"] for r in response.body["results"]} == {tenants.stack.source(BETA_KEY)}


SEARCHES = [
    {"query": QUESTION},
    {"query": QUESTION, "mode": "vector"},
    {"query": f"{BETA_MARKER} door code", "mode": "lexical"},
    {"query": BETA_MARKER, "mode": "hybrid", "rerank": False, "top_k": 100},
    {"query": QUESTION, "filters": {"source_prefix": "s3://ragops-documents/beta/"}},
    {"query": QUESTION, "filters": {"metadata": {"team": "lighthouses"}}},
]


@pytest.mark.parametrize("body", SEARCHES)
@pytest.mark.parametrize("route", ["/v1/search", "/v1/query"])
def test_searches_and_answers_never_reach_another_collection(
    tenants: Tenants, route: str, body: dict[str, Any]
) -> None:
    response = tenants.call(tenants.alpha, "POST", route, body)

    assert response.status == 200, response.body
    assert BETA_MARKER not in _text(response)
    assert "beta/" not in _text(response)


def test_a_document_id_filter_of_another_collection_finds_nothing(tenants: Tenants) -> None:
    body = {"query": QUESTION, "filters": {"document_id": tenants.beta_document}}
    for route in ("/v1/search", "/v1/query"):
        response = tenants.call(tenants.alpha, "POST", route, body)
        assert response.status == 200, response.body
        assert BETA_MARKER not in _text(response)
    search = tenants.call(tenants.alpha, "POST", "/v1/search", body)
    assert search.body["results"] == []


def test_documents_of_another_collection_cannot_be_read_or_deleted(tenants: Tenants) -> None:
    for document in (tenants.beta_document, tenants.beta_failed):
        path = f"/v1/documents/{document}"
        got = tenants.call(tenants.alpha, "GET", path)
        deleted = tenants.call(tenants.alpha, "DELETE", path)
        assert (got.status, deleted.status) == (404, 404)
        # The same answer as for an id that exists nowhere: nothing tells them apart.
        assert got.body["detail"] == f"no document {document}"
        assert BETA_MARKER not in _text(got) + _text(deleted)
    listed = tenants.call(tenants.alpha, "GET", "/v1/documents", query={"limit": "1000"})
    assert [d["source"] for d in listed.body["documents"]] == [tenants.stack.source(ALPHA_KEY)]
    # Beta's documents are all still there, and its key sees them.
    own = tenants.call(tenants.beta, "GET", f"/v1/documents/{tenants.beta_document}")
    assert own.status == 200
    assert own.body["collection"] == "beta"


def test_ingest_stats_show_only_the_keys_collection(tenants: Tenants) -> None:
    alpha = tenants.call(tenants.alpha, "GET", "/v1/ingest/stats")
    beta = tenants.call(tenants.beta, "GET", "/v1/ingest/stats")

    assert alpha.status == beta.status == 200
    assert alpha.body["counts"] == {"ready": 1, "pending": 0, "failed": 0}
    assert alpha.body["failed"] == []
    assert BETA_MARKER not in _text(alpha)
    assert beta.body["counts"] == {"ready": 1, "pending": 0, "failed": 1}
    assert [f["document_id"] for f in beta.body["failed"]] == [tenants.beta_failed]


@pytest.mark.parametrize(
    ("method", "path", "body", "query"),
    [
        ("POST", "/v1/search", {"query": QUESTION, "collection": "beta"}, None),
        ("POST", "/v1/query", {"query": QUESTION, "collection": "beta"}, None),
        ("GET", "/v1/documents", None, {"collection": "beta"}),
        ("GET", "/v1/ingest/stats", None, {"collection": "beta"}),
    ],
)
def test_naming_another_collection_is_forbidden(
    tenants: Tenants, method: str, path: str, body: Any, query: dict[str, str] | None
) -> None:
    response = tenants.call(tenants.alpha, method, path, body, query=query)

    assert response.status == 403, response.body
    assert "'beta'" in response.body["detail"]
    assert BETA_MARKER not in _text(response)


def test_naming_a_documents_collection_does_not_open_it_to_another_key(
    tenants: Tenants,
) -> None:
    path = f"/v1/documents/{tenants.beta_document}"
    response = tenants.call(tenants.alpha, "DELETE", path, query={"collection": "beta"})
    assert response.status == 403
    assert tenants.call(tenants.beta, "GET", path).status == 200


def test_a_collection_of_ones_own_that_holds_nothing_yet_is_named_as_unknown(
    tenants: Tenants,
) -> None:
    empty = create_api_key(tenants.database_url, "nope")
    named = tenants.call(empty, "POST", "/v1/query", {"query": QUESTION, "collection": "nope"})
    unnamed = tenants.call(empty, "POST", "/v1/search", {"query": QUESTION})

    assert named.status == 404
    assert "'nope'" in named.body["detail"]
    assert (unnamed.status, unnamed.body["results"]) == (200, [])


# --- JWT claims behind API Gateway ---------------------------------------------------------


def _jwt_event(claims: dict[str, Any], path: str = "/v1/search", body: Any = None) -> Any:
    event = http_event("POST", path, body or {"query": QUESTION}, authenticated=False)
    event["requestContext"]["authorizer"] = {"jwt": {"claims": claims, "scopes": None}}
    return event


@pytest.fixture
def jwt_claim(tenants: Tenants, monkeypatch: pytest.MonkeyPatch) -> Tenants:
    monkeypatch.setenv("RAGOPS_JWT_COLLECTIONS_CLAIM", "ragops_collections")
    reset_process_resources()
    return tenants


@pytest.mark.parametrize("claim", ["[beta]", "beta", ["beta"], "gamma beta", "gamma,beta"])
def test_jwt_claims_name_the_collections_without_a_key(jwt_claim: Tenants, claim: Any) -> None:
    import functions.query.app

    event = _jwt_event(
        {"sub": "user-1", "ragops_collections": claim},
        body={"query": QUESTION, "collection": "beta"},
    )
    response = call_api(functions.query.app.handler, event)

    assert response.status == 200, response.body
    assert {r["source"] for r in response.body["results"]} == {jwt_claim.stack.source(BETA_KEY)}


def test_jwt_claims_grant_only_the_collections_they_name(jwt_claim: Tenants) -> None:
    import functions.query.app

    claims = {"sub": "user-1", "ragops_collections": "[alpha]"}
    other = _jwt_event(claims, body={"query": QUESTION, "collection": "beta"})
    own = _jwt_event(claims)
    missing = _jwt_event({"sub": "user-1"})

    assert call_api(functions.query.app.handler, other).status == 403
    response = call_api(functions.query.app.handler, own)
    assert response.status == 200
    assert BETA_MARKER not in _text(response)
    refused = call_api(functions.query.app.handler, missing)
    assert refused.status == 403
    assert "ragops_collections" in refused.body["detail"]


def test_jwt_claims_are_ignored_unless_a_claim_is_configured(tenants: Tenants) -> None:
    import functions.query.app

    event = _jwt_event({"sub": "user-1", "ragops_collections": "beta"})
    response = call_api(functions.query.app.handler, event)

    assert response.status == 401


# --- limits --------------------------------------------------------------------------------


def test_a_key_over_its_rate_gets_429_with_retry_after(
    tenants: Tenants, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAGOPS_RATE_LIMIT_PER_MINUTE", "3")
    reset_process_resources()
    statuses = [tenants.call(tenants.alpha, "GET", "/v1/documents").status for _ in range(3)]
    limited = tenants.call(tenants.alpha, "GET", "/v1/documents")

    assert statuses == [200, 200, 200]
    assert limited.status == 429
    assert 1 <= int(limited.headers["retry-after"]) <= 60
    assert "RAGOPS_RATE_LIMIT_PER_MINUTE" in limited.body["detail"]
    # Another key has its own allowance; a cold container still counts the first key's.
    assert tenants.call(tenants.beta, "GET", "/v1/documents").status == 200
    reset_process_resources()
    assert tenants.call(tenants.alpha, "GET", "/v1/ingest/stats").status == 429


def test_with_no_rate_limit_a_remembered_key_costs_no_connection(
    tenants: Tenants, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first request looks the key up; later ones reach only the route's own query."""
    monkeypatch.setenv("RAGOPS_RATE_LIMIT_PER_MINUTE", "0")
    reset_process_resources()
    unknown = "rgo_" + "Q" * 43
    assert tenants.call(tenants.alpha, "GET", "/v1/documents").status == 200
    assert tenants.call(unknown, "GET", "/v1/documents").status == 401
    pool = get_service().db.pool
    before = pool.get_stats()["requests_num"]

    again = tenants.call(tenants.alpha, "GET", "/v1/documents")
    refused = tenants.call(unknown, "GET", "/v1/documents")

    assert again.status == 200
    assert [d["source"] for d in again.body["documents"]] == [tenants.stack.source(ALPHA_KEY)]
    assert refused.status == 401
    assert "unknown or revoked" in refused.body["detail"]
    assert pool.get_stats()["requests_num"] - before == 1


def test_a_revoked_key_is_refused_once_the_cache_allows(
    tenants: Tenants, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAGOPS_AUTH_CACHE_SECONDS", "0")
    reset_process_resources()
    assert tenants.call(tenants.alpha, "GET", "/v1/documents").status == 200
    with psycopg.connect(tenants.database_url, autocommit=True) as conn:
        conn.execute("UPDATE api_keys SET revoked_at = now() WHERE collection = 'alpha'")

    response = tenants.call(tenants.alpha, "GET", "/v1/documents")
    assert response.status == 401
    assert "revoked" in response.body["detail"]


@pytest.fixture
def small_bodies(monkeypatch: pytest.MonkeyPatch, lambda_env: None) -> Iterator[None]:
    """A query function started with RAGOPS_MAX_REQUEST_BYTES=2048."""
    import functions.query.app

    monkeypatch.setenv("RAGOPS_MAX_REQUEST_BYTES", "2048")
    reset_process_resources()
    importlib.reload(functions.query.app)
    yield
    monkeypatch.delenv("RAGOPS_MAX_REQUEST_BYTES")
    reset_process_resources()
    importlib.reload(functions.query.app)


def test_a_body_over_the_size_limit_gets_413_naming_the_limit(small_bodies: None) -> None:
    history = [{"role": "user", "content": "word " * 200}] * 3
    response = query_api("POST", "/v1/query", {"query": "bees", "history": history})

    assert response.status == 413, response.body
    assert "2048 bytes" in response.body["detail"]
    assert "RAGOPS_MAX_REQUEST_BYTES" in response.body["detail"]
    assert query_api("POST", "/v1/search", {"query": "bees"}).status == 200


def test_a_history_longer_than_allowed_is_refused(lambda_env: None) -> None:
    history = [{"role": "user", "content": "and then?"}] * 51
    response = query_api("POST", "/v1/query", {"query": "bees", "history": history})

    assert response.status == 400
    assert "history" in str(response.body)


def test_with_auth_off_no_key_is_needed_and_rows_stay_scoped(
    tenants: Tenants, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAGOPS_AUTH", "off")
    reset_process_resources()

    default = tenants.call(None, "GET", "/v1/documents")
    beta = tenants.call(None, "GET", "/v1/documents", query={"collection": "beta"})
    search = tenants.call(None, "POST", "/v1/search", {"query": QUESTION, "collection": "alpha"})
    unknown = tenants.call(None, "POST", "/v1/search", {"query": QUESTION, "collection": "nope"})

    assert default.status == 200
    assert default.body["documents"] == []
    assert {d["collection"] for d in beta.body["documents"]} == {"beta"}
    assert search.status == 200
    assert BETA_MARKER not in _text(search)
    assert unknown.status == 404
