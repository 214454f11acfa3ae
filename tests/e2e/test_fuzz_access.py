"""Fuzzing the query API with credentials on, and SQL injection in every field it reads.

The app is served in-process (the ASGI app the query function wraps) over two collections;
requests carry a key for the first, and nothing the second holds may ever come back.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from litestar import Litestar
from litestar.testing import TestClient
from schemathesis.checks import (
    content_type_conformance,
    ignored_auth,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from ragops.api.app import create_query_app
from tests.e2e.conftest import Stack, create_api_key, reset_process_resources

OWN_KEY = "own/beehives.md"
OTHER_KEY = "other/beehives.md"
OWN_DOC = b"# Beehives\n\nThe orchard keeps twelve beehives along the south wall.\n"
OTHER_MARKER = "quillowisp"
OTHER_DOC = f"# Beehives\n\nThe {OTHER_MARKER} orchard keeps forty beehives by the gate.\n".encode()


@dataclass
class Fixture:
    key: str
    other_document: str
    database_url: str


def _ingest(stack: Stack, key: str, body: bytes, collection: str) -> None:
    stack.s3.put_object(
        Bucket=stack.bucket, Key=key, Body=body, Metadata={"collection": collection}
    )
    assert stack.ingest(stack.receive(1)) == {"batchItemFailures": []}


@pytest.fixture
def tenants(stack: Stack, database_url: str) -> Fixture:
    _ingest(stack, OWN_KEY, OWN_DOC, "default")
    _ingest(stack, OTHER_KEY, OTHER_DOC, "other")
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT id::text FROM documents WHERE collection = 'other'").fetchone()
    assert row is not None
    reset_process_resources()
    return Fixture(create_api_key(database_url, "default"), row[0], database_url)


# --- schemathesis ----------------------------------------------------------------------------

schema = schemathesis.openapi.from_asgi("/docs/openapi.json", create_query_app())


@schema.parametrize()
@settings(
    max_examples=12,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_fuzzed_requests_with_a_key_conform_and_never_fail(
    tenants: Fixture, case: schemathesis.Case
) -> None:
    response = case.call_and_validate(
        headers={"Authorization": f"Bearer {tenants.key}"},
        checks=[
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_headers_conformance,
            response_schema_conformance,
            ignored_auth,
        ],
    )
    assert OTHER_MARKER not in response.text


# --- SQL injection -------------------------------------------------------------------------

PAYLOADS = [
    "' OR '1'='1",
    "' OR 1=1 --",
    "'; DROP TABLE documents; --",
    '"; DROP TABLE chunks; --',
    "x') UNION SELECT content, 1, 1 FROM chunks --",
    "default' OR collection <> 'default",
    "1; SELECT set_config('ragops.collection', 'other', false); --",
    "'); RESET ROLE; SELECT * FROM api_keys; --",
    "%' OR '%'='",
    "\\'; TRUNCATE api_keys; --",
    "other",
    "$$; DELETE FROM documents; $$",
]


def _cases(payload: str, other_document: str) -> list[tuple[str, str, Any, dict[str, str]]]:
    """The payload in every string field, filter, metadata key and value, path and query."""
    query = {"query": "beehives"}
    return [
        ("POST", "/v1/search", {"query": payload}, {}),
        ("POST", "/v1/search", {**query, "mode": "lexical", "query": payload}, {}),
        ("POST", "/v1/search", {**query, "collection": payload}, {}),
        ("POST", "/v1/search", {**query, "filters": {"source_prefix": payload}}, {}),
        ("POST", "/v1/search", {**query, "filters": {"document_id": payload}}, {}),
        ("POST", "/v1/search", {**query, "filters": {"metadata": {payload: "x"}}}, {}),
        ("POST", "/v1/search", {**query, "filters": {"metadata": {"team": payload}}}, {}),
        ("POST", "/v1/search", {**query, "mode": payload}, {}),
        (
            "POST",
            "/v1/query",
            {**query, "history": [{"role": "user", "content": payload}]},
            {},
        ),
        ("POST", "/v1/query", {"query": payload, "collection": payload}, {}),
        ("GET", f"/v1/documents/{payload}", None, {}),
        ("DELETE", f"/v1/documents/{payload}", None, {}),
        ("GET", f"/v1/documents/{other_document}", None, {"collection": payload}),
        ("GET", "/v1/documents", None, {"collection": payload}),
        ("GET", "/v1/documents", None, {"status": payload}),
        ("GET", "/v1/documents", None, {"limit": payload, "offset": payload}),
        ("GET", "/v1/ingest/stats", None, {"collection": payload}),
    ]


def _table_state(database_url: str) -> dict[str, Any]:
    with psycopg.connect(database_url) as conn:
        counts = {
            table: conn.execute(f"SELECT count(*) FROM {table}").fetchone()
            for table in ("documents", "chunks", "api_keys", "store_info")
        }
        tables = conn.execute(
            "SELECT relname, relrowsecurity FROM pg_class WHERE relkind = 'r' ORDER BY relname"
        ).fetchall()
        role = conn.execute(
            "SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = 'ragops_app'"
        ).fetchone()
        revoked = conn.execute("SELECT count(*) FROM api_keys WHERE revoked_at IS NOT NULL")
        return {"counts": counts, "tables": tables, "role": role, "revoked": revoked.fetchone()}


@pytest.fixture
def client(tenants: Fixture) -> Iterator[TestClient[Litestar]]:
    with TestClient(create_query_app()) as test_client:
        test_client.headers.update({"authorization": f"Bearer {tenants.key}"})
        yield test_client


@pytest.mark.parametrize("payload", PAYLOADS)
def test_sql_injection_in_any_field_gets_a_4xx_or_own_results_and_harms_nothing(
    tenants: Fixture, client: TestClient[Litestar], payload: str
) -> None:
    before = _table_state(tenants.database_url)
    for method, path, body, params in _cases(payload, tenants.other_document):
        response = client.request(method, path, json=body, params=params)
        where = f"{method} {path} {json.dumps(body)} {params}"
        assert response.status_code < 500, f"{where}: {response.text}"
        assert OTHER_MARKER not in response.text, where
        assert "other/" not in response.text, where
        if response.status_code != 200:
            assert 400 <= response.status_code < 500, where
            assert response.json()["detail"], where
            continue
        payload_json = response.json()
        for result in payload_json.get("results", []):
            assert result["source"].endswith(OWN_KEY), where
        for document in payload_json.get("documents", []):
            assert document["collection"] == "default", where
    assert _table_state(tenants.database_url) == before
