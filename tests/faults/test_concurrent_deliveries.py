"""At-least-once, unordered, concurrent deliveries: one final state, the bucket's.

Lambda runs several invocations of the ingest function at once, and SQS may hand the same
message to more than one of them; these tests do the same with threads.
"""

from __future__ import annotations

import itertools
import random
import threading
from collections.abc import Callable
from typing import Any

import psycopg

from ragops.dev.aws import LOCAL_REGION
from ragops.dev.worker import sqs_event
from ragops.resources import get_service
from tests.e2e.conftest import LambdaContext, Stack, query_api
from tests.faults.conftest import TALLY, injected

NOTES = b"""# Lighthouse notes

## Lamp

The lamp of the Kestrel Point lighthouse turns once every twelve seconds and is seen
twenty-two nautical miles out at sea.

## Keeper

The keeper climbs the one hundred and thirty-one steps every evening at dusk.

## Fog

In fog the horn sounds two short blasts every thirty seconds until the fog lifts.
"""
NOTES_V2 = NOTES.replace(b"twelve seconds", b"fifteen seconds").replace(
    b"two short blasts", b"three long blasts"
)


def handle(stack: Stack, messages: list[dict[str, Any]]) -> dict[str, Any]:
    """The ingest function's handler on one SQS batch, as Lambda calls it (no deletes)."""
    from functions.ingest.app import handler

    arn = stack.sqs.get_queue_attributes(
        QueueUrl=stack.resources.queue_url, AttributeNames=["QueueArn"]
    )["Attributes"]["QueueArn"]
    result: dict[str, Any] = handler(sqs_event(messages, arn, LOCAL_REGION), LambdaContext())
    return result


def run_together(calls: list[Callable[[], Any]]) -> list[Any]:
    """Start every call at the same moment, each on its own thread; their results in order."""
    barrier = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)
    errors: list[BaseException] = []

    def run(index: int) -> None:
        barrier.wait()
        try:
            results[index] = calls[index]()
        except BaseException as exc:  # reported below, on the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not errors, errors
    return results


def documents_of(source: str) -> list[dict[str, Any]]:
    with get_service().db.pool.connection() as conn:
        rows = conn.execute(
            "SELECT id, status, chunk_count, sha256 FROM documents WHERE source = %s", (source,)
        ).fetchall()
    return [{"id": r[0], "status": r[1], "chunk_count": r[2], "sha256": r[3]} for r in rows]


def chunk_rows(document_id: Any) -> list[tuple[int, int, str]]:
    """(id, ordinal, content) of a document's chunks."""
    with get_service().db.pool.connection() as conn:
        rows = conn.execute(
            "SELECT id, ordinal, content FROM chunks WHERE document_id = %s ORDER BY ordinal, id",
            (document_id,),
        ).fetchall()
    return [(int(i), int(o), str(c)) for i, o, c in rows]


def chunks_ever_written() -> int:
    """How many chunk rows were ever inserted: the identity sequence counts every one."""
    with get_service().db.pool.connection() as conn:
        row = conn.execute(
            "SELECT coalesce(last_value, 0) FROM pg_sequences WHERE sequencename = "
            "pg_get_serial_sequence('chunks', 'id')::regclass::text"
        ).fetchone()
    return int(row[0]) if row else 0


def assert_matches_bucket(stack: Stack, key: str) -> None:
    """The store holds exactly what the bucket holds for `key`: that content, or nothing."""
    try:
        body = stack.s3.get_object(Bucket=stack.bucket, Key=key)["Body"].read()
    except stack.s3.exceptions.NoSuchKey:
        body = None
    rows = documents_of(stack.source(key))
    TALLY["documents"] += 1
    if body is None:
        assert rows == []
        return
    (row,) = rows
    assert row["status"] == "ready"
    chunks = chunk_rows(row["id"])
    assert [ordinal for _, ordinal, _ in chunks] == list(range(row["chunk_count"]))
    text = " ".join(content for _, _, content in chunks)
    marker = b"fifteen seconds" if b"fifteen seconds" in body else b"twelve seconds"
    assert marker.decode() in text


def test_ten_concurrent_deliveries_of_one_event_write_the_document_once(stack: Stack) -> None:
    stack.put_and_ingest("control/notes.md", NOTES)
    (control,) = documents_of(stack.source("control/notes.md"))
    clean = [(o, c) for _, o, c in chunk_rows(control["id"])]
    written_before = chunks_ever_written()
    key = "docs/notes.md"
    stack.s3.put_object(Bucket=stack.bucket, Key=key, Body=NOTES)
    (message,) = stack.receive(1)

    results = run_together([lambda: handle(stack, [message]) for _ in range(10)])
    injected("concurrent duplicate deliveries", 9)
    TALLY["deliveries"] += 10

    assert results == [{"batchItemFailures": []}] * 10
    (row,) = documents_of(stack.source(key))
    assert (row["status"], row["chunk_count"]) == ("ready", len(clean))
    assert [(o, c) for _, o, c in chunk_rows(row["id"])] == clean
    # Every delivery embedded the object; only the first to take the source's lock wrote it.
    assert chunks_ever_written() - written_before == len(clean)
    TALLY["documents"] += 1


def test_a_create_processed_across_a_delete_does_not_resurrect_the_document(
    stack: Stack, database_url: str
) -> None:
    key = "docs/notes.md"
    stack.s3.put_object(Bucket=stack.bucket, Key=key, Body=NOTES)
    (created,) = stack.receive(1)
    get_service().ingestor  # noqa: B018 (models and pool open before the race)
    # Hold the source's write lock: the delivery fetches and embeds, then waits to write.
    holder = psycopg.connect(database_url, autocommit=True)
    holder.execute(
        "SELECT pg_advisory_lock(hashtextextended(%s, 0))",
        (f"default\x1f{stack.source(key)}",),
    )
    result: dict[str, Any] = {}
    writer = threading.Thread(target=lambda: result.update(handle(stack, [created])))
    writer.start()
    _wait_for_lock_waiter(holder)

    # Meanwhile the object is deleted and the deletion's event handled in full.
    stack.s3.delete_object(Bucket=stack.bucket, Key=key)
    (removed,) = stack.receive(1)
    assert handle(stack, [removed]) == {"batchItemFailures": []}
    holder.close()  # the create, fetched before the delete, now writes
    writer.join(timeout=120)
    injected("create/delete interleaved")
    TALLY["deliveries"] += 2

    assert result == {"batchItemFailures": []}
    assert_matches_bucket(stack, key)
    search = query_api("POST", "/v1/search", {"query": "lighthouse lamp", "top_k": 5})
    TALLY["requests"] += 1
    assert stack.source(key) not in {r["source"] for r in search.body["results"]}


def _wait_for_lock_waiter(conn: psycopg.Connection[Any], timeout: float = 60) -> None:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = conn.execute(
            """SELECT 1 FROM pg_stat_activity WHERE wait_event = 'advisory'
               AND query LIKE 'SELECT pg_advisory_xact_lock%'"""
        ).fetchone()
        if row is not None:
            return
        time.sleep(0.02)
    raise AssertionError("the delivery never waited for the source's lock")


SCENARIOS = {
    # put, delete, put again with other content: the second content stays
    "recreated": [("put", NOTES), ("delete", None), ("put", NOTES_V2)],
    # put, replace, delete: nothing stays
    "deleted": [("put", NOTES), ("put", NOTES_V2), ("delete", None)],
}


def test_create_and_delete_events_delivered_concurrently_in_any_order_match_the_bucket(
    stack: Stack,
) -> None:
    get_service().ingestor  # noqa: B018
    rng = random.Random(20)
    rounds = 0
    for name, steps in SCENARIOS.items():
        for order in itertools.permutations(range(len(steps))):
            key = f"race/{name}-{rounds}.md"
            rounds += 1
            for action, body in steps:
                if action == "put":
                    stack.s3.put_object(Bucket=stack.bucket, Key=key, Body=body)
                else:
                    stack.s3.delete_object(Bucket=stack.bucket, Key=key)
            messages = stack.receive(len(steps))
            # Each event twice (at-least-once), in this round's order, all at once.
            deliveries = [messages[i] for i in order] * 2
            rng.shuffle(deliveries)
            results = run_together([lambda m=m: handle(stack, [m]) for m in deliveries])
            injected("out-of-order concurrent deliveries", len(deliveries))
            TALLY["deliveries"] += len(deliveries)
            for message in messages:
                stack.sqs.delete_message(
                    QueueUrl=stack.resources.queue_url, ReceiptHandle=message["ReceiptHandle"]
                )
            assert results == [{"batchItemFailures": []}] * len(deliveries), (name, order)
            assert_matches_bucket(stack, key)
    assert rounds == 12
