"""The database goes away in the middle of an ingest, or drops the pool's connections.

Each test runs its own embedded PostgreSQL, so it can be stopped and started again on the
same data directory; S3 and SQS are moto, the handlers and models the real ones.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import psycopg
import pytest

from ragops.health import HEALTH_CONNECT_SECONDS
from ragops.resources import get_service
from tests.e2e.conftest import ApiResponse, Stack, call_api, http_event, query_api
from tests.faults.conftest import (
    TALLY,
    EmbeddedServer,
    injected,
    pause_copy_at,
    remove_copy_pause,
)

KEY = "docs/harbour-log.md"
PAUSE_AT = 20  # the chunk ordinal the write stops before: the transaction holds 20 rows


def harbour_log(version: str) -> bytes:
    """A long document (with 48-token chunks, about 60 of them), different per version."""
    ships = ["Albatross", "Bittern", "Cormorant", "Dunlin", "Eider", "Fulmar", "Gannet"]
    cargo = ["timber", "salt", "copper", "wool", "grain", "slate", "tea", "coal", "flax"]
    paragraphs = [f"# Harbour log, {version} edition"]
    for day in range(1, 61):
        ship = ships[day % len(ships)]
        goods = cargo[day % len(cargo)]
        paragraphs.append(
            f"On day {day} of the {version} season the {ship} docked at berth {day % 9 + 1} "
            f"with {day * 13} crates of {goods}. The harbour master logged a tide of "
            f"{day % 5 + 2} metres and the crew unloaded before the {version} evening bell."
        )
    return "\n\n".join(paragraphs).encode()


def health() -> ApiResponse:
    import functions.health.app

    return call_api(functions.health.app.handler, http_event("GET", "/health"))


@pytest.fixture
def database_url(own_server: EmbeddedServer) -> str:
    """The ingest and query functions of these tests use the test's own server."""
    return own_server.url


def stored(url: str, source: str) -> tuple[list[tuple[str, int]], list[tuple[int, str]]]:
    """(status, chunk_count) of every document row of `source`, and its chunks in order."""
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT status, chunk_count FROM documents WHERE source = %s", (source,)
        ).fetchall()
        chunks = conn.execute(
            """SELECT c.ordinal, c.content FROM chunks c JOIN documents d ON d.id = c.document_id
               WHERE d.source = %s ORDER BY c.ordinal, c.id""",
            (source,),
        ).fetchall()
    return [(str(s), int(n)) for s, n in rows], [(int(o), str(c)) for o, c in chunks]


def ingest_in_background(stack: Stack, message: dict[str, Any]) -> tuple[threading.Thread, dict]:
    result: dict[str, Any] = {}

    def run() -> None:
        result.update(stack.ingest([message]))

    thread = threading.Thread(target=run, name="ingest-under-fault")
    thread.start()
    return thread, result


def redeliver(stack: Stack, message: dict[str, Any]) -> dict[str, Any]:
    """The failed message back on the queue now, not after the visibility timeout."""
    stack.sqs.change_message_visibility(
        QueueUrl=stack.resources.queue_url,
        ReceiptHandle=message["ReceiptHandle"],
        VisibilityTimeout=0,
    )
    (again,) = stack.receive(1)
    assert again["MessageId"] == message["MessageId"]
    assert int(again["Attributes"]["ApproximateReceiveCount"]) == 2
    return again


@pytest.mark.parametrize("replacing", [False, True], ids=["new-document", "new-version"])
def test_a_database_stopped_mid_write_loses_nothing_and_the_retry_ingests_once(
    own_server: EmbeddedServer, stack: Stack, replacing: bool
) -> None:
    body = harbour_log("winter")
    stack.put_and_ingest("control/harbour-log.md", body)
    _, clean = stored(own_server.url, stack.source("control/harbour-log.md"))
    assert len(clean) > PAUSE_AT + 10
    before: tuple[list[tuple[str, int]], list[tuple[int, str]]] = ([], [])
    if replacing:
        stack.put_and_ingest(KEY, harbour_log("summer"))
        before = stored(own_server.url, stack.source(KEY))
        assert before[0][0][0] == "ready"

    pause = pause_copy_at(own_server.url, PAUSE_AT)
    stack.s3.put_object(Bucket=stack.bucket, Key=KEY, Body=body)
    (message,) = stack.receive(1)
    worker, result = ingest_in_background(stack, message)
    own_server.wait_for_backend("COPY chunks", "advisory")
    # The write transaction is open with PAUSE_AT rows in it: readers still see the old state.
    statuses, chunks = stored(own_server.url, stack.source(KEY))
    assert chunks == before[1]

    own_server.stop("immediate")
    injected("database stopped mid-write")
    time.sleep(1.0)  # the outage: the writer fails, its failure record waits for the pool
    own_server.start()
    pause.release()
    worker.join(timeout=120)
    assert not worker.is_alive()
    TALLY["deliveries"] += 1

    # The delivery failed as a whole and is retried; nothing of the half-written version shows.
    assert result == {"batchItemFailures": [{"itemIdentifier": message["MessageId"]}]}
    remove_copy_pause(own_server.url)
    statuses, chunks = stored(own_server.url, stack.source(KEY))
    assert chunks == before[1]
    if replacing:
        assert statuses == before[0]  # the last good version keeps serving
    else:
        assert len(statuses) == 1
        assert statuses[0][1] == 0

    retry = redeliver(stack, message)
    assert stack.ingest([retry]) == {"batchItemFailures": []}
    TALLY["deliveries"] += 1

    statuses, chunks = stored(own_server.url, stack.source(KEY))
    assert statuses == [("ready", len(clean))]
    assert [ordinal for ordinal, _ in chunks] == list(range(len(clean)))
    assert chunks == clean
    # The query function, on the same process-wide pool, answers from the new version.
    search = query_api("POST", "/v1/search", {"query": "crates of copper at berth", "top_k": 3})
    TALLY["requests"] += 1
    assert search.status == 200, search.body
    assert stack.source(KEY) in {r["source"] for r in search.body["results"]}
    TALLY["documents"] += 1


def test_connections_the_server_dropped_are_replaced(
    own_server: EmbeddedServer, stack: Stack
) -> None:
    stack.put_and_ingest("docs/first.md", harbour_log("spring"))
    assert query_api("POST", "/v1/search", {"query": "tide in metres"}).status == 200
    pool = get_service().db.pool
    assert pool.get_stats()["pool_available"] >= 1

    with psycopg.connect(own_server.url, autocommit=True) as admin:
        terminated = admin.execute(
            """SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
               WHERE datname = current_database() AND pid <> pg_backend_pid()
                 AND backend_type = 'client backend'"""
        ).fetchone()
    assert terminated is not None
    assert terminated[0] >= 1
    injected("pool connections terminated", int(terminated[0]))

    search = query_api("POST", "/v1/search", {"query": "crates of grain", "top_k": 3})
    assert search.status == 200, search.body
    assert search.body["results"]
    stack.put_and_ingest("docs/second.md", harbour_log("autumn"))
    TALLY["requests"] += 2
    TALLY["deliveries"] += 2
    # The pool noticed the dead connections on checkout and opened new ones.
    assert pool.get_stats().get("connections_lost", 0) >= 1
    statuses, _ = stored(own_server.url, stack.source("docs/second.md"))
    assert statuses
    assert statuses[0][0] == "ready"
    TALLY["documents"] += 2


def test_health_names_the_database_while_it_is_down_and_recovers(
    own_server: EmbeddedServer, stack: Stack
) -> None:
    stack.put_and_ingest("docs/first.md", harbour_log("spring"))
    assert health().status == 200

    own_server.stop("immediate")
    injected("database stopped")
    # A long outage: the pool's reconnection attempts back off further and further meanwhile.
    outage_ends = time.monotonic() + 15
    while time.monotonic() < outage_ends:
        started = time.monotonic()
        down = health()
        down_seconds = time.monotonic() - started
        TALLY["requests"] += 1
        assert down.status == 503
        assert "database" in down.body["failing"]
        # Within the health check's own bound, not the pool's 30 s wait for a connection.
        assert down_seconds < HEALTH_CONNECT_SECONDS + 3
    own_server.start()
    restarted = time.monotonic()
    up = health()
    while up.status != 200 and time.monotonic() - restarted < 60:
        up = health()
    recovery_seconds = time.monotonic() - restarted
    search = query_api("POST", "/v1/search", {"query": "crates of salt"})
    TALLY["requests"] += 2

    assert up.status == 200, up.body
    # The first request after the outage reconnects: no backed-off retry to wait out.
    assert recovery_seconds < 3, f"recovered {recovery_seconds:.1f} s after the restart"
    assert search.status == 200
    assert stack.source("docs/first.md") in {r["source"] for r in search.body["results"]}
    TALLY["documents"] += 1
