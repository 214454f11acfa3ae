"""S3 reads that fail: transient errors are retried, permanent ones recorded and dead-lettered.

moto cannot fail on its own, so a botocore `before-send` hook on the ingest function's S3
client answers GetObject with an S3 error response before moto sees the request; botocore
then parses and retries it exactly as it would a real one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse
from moto.core.botocore_stubber import MockRawResponse

from ragops.dev.aws import LOCAL_REGION
from ragops.dev.definitions import load_definition
from ragops.dev.worker import poll_once
from ragops.resources import get_s3_client, get_service
from tests.e2e.conftest import Stack, query_api
from tests.faults.conftest import TALLY, injected

KEY = "docs/tide-tables.md"
TIDES = b"""# Tide tables

High water at Kestrel Point comes forty minutes after high water at the harbour mouth.

## Spring tides

At spring tides the range reaches six metres and the causeway floods for three hours.

## Neap tides

At neap tides the range is under three metres and the causeway stays dry at noon.
"""


@dataclass
class GetObjectFault:
    """Answers the first `times` GetObject calls with an S3 error; counts every call."""

    status: int
    code: str
    message: str
    times: int
    calls: int = 0
    injected: int = 0

    def __call__(self, request: Any, **kwargs: Any) -> AWSResponse | None:
        self.calls += 1
        if self.injected >= self.times:
            return None  # moto answers
        self.injected += 1
        injected(f"S3 GetObject {self.status} {self.code}")
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>'
            f"<Error><Code>{self.code}</Code><Message>{self.message}</Message>"
            "<RequestId>fault</RequestId></Error>"
        )
        return AWSResponse(
            request.url, self.status, {"Content-Type": "application/xml"}, MockRawResponse(body)
        )


def fail_get_object(status: int, code: str, message: str, times: int) -> GetObjectFault:
    fault = GetObjectFault(status, code, message, times)
    # First: moto's own before-send handler would answer otherwise.
    get_s3_client().meta.events.register_first("before-send.s3.GetObject", fault)
    return fault


def stored(source: str) -> dict[str, Any] | None:
    with get_service().db.pool.connection() as conn:
        row = conn.execute(
            """SELECT status, error, chunk_count,
                      (SELECT count(*) FROM chunks c WHERE c.document_id = d.id)
               FROM documents d WHERE source = %s""",
            (source,),
        ).fetchall()
    assert len(row) <= 1
    if not row:
        return None
    status, error, chunk_count, chunks = row[0]
    return {"status": status, "error": error, "chunk_count": chunk_count, "chunks": chunks}


def test_a_throttled_read_is_retried_by_the_client_and_the_object_ingested(stack: Stack) -> None:
    fault = fail_get_object(503, "SlowDown", "Please reduce your request rate.", times=2)

    stack.put_and_ingest(KEY, TIDES)
    TALLY["deliveries"] += 1

    assert (fault.injected, fault.calls) == (2, 3)
    row = stored(stack.source(KEY))
    assert row is not None
    assert row["status"] == "ready"
    assert row["error"] is None
    assert row["chunks"] == row["chunk_count"] > 1
    TALLY["documents"] += 1


def test_reads_failing_past_the_clients_retries_fail_the_message_until_s3_recovers(
    stack: Stack,
) -> None:
    fault = fail_get_object(500, "InternalError", "We encountered an internal error.", 1000)
    stack.s3.put_object(Bucket=stack.bucket, Key=KEY, Body=TIDES)
    (message,) = stack.receive(1)

    result = stack.ingest([message])
    TALLY["deliveries"] += 1

    assert result == {"batchItemFailures": [{"itemIdentifier": message["MessageId"]}]}
    assert fault.calls > 1  # botocore retried before the delivery failed
    row = stored(stack.source(KEY))
    assert row is not None
    assert row["status"] == "failed"
    assert "InternalError" in row["error"]
    assert row["chunks"] == 0

    fault.times = 0  # S3 recovers; SQS delivers the message again
    stack.sqs.change_message_visibility(
        QueueUrl=stack.resources.queue_url,
        ReceiptHandle=message["ReceiptHandle"],
        VisibilityTimeout=0,
    )
    (again,) = stack.receive(1)
    assert stack.ingest([again]) == {"batchItemFailures": []}
    TALLY["deliveries"] += 1
    row = stored(stack.source(KEY))
    assert row is not None
    assert (row["status"], row["error"]) == ("ready", None)
    assert row["chunks"] == row["chunk_count"] > 1
    TALLY["documents"] += 1


def test_access_denied_marks_the_document_failed_and_dead_letters_the_message(
    stack: Stack,
) -> None:
    fault = fail_get_object(403, "AccessDenied", "Access Denied", times=1000)
    queue_url = stack.resources.queue_url
    stack.sqs.set_queue_attributes(QueueUrl=queue_url, Attributes={"VisibilityTimeout": "1"})
    arn = stack.sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])
    stack.s3.put_object(Bucket=stack.bucket, Key=KEY, Body=TIDES)
    max_receives = load_definition().max_receive_count

    # The local worker's loop: receive, hand the batch to the handler, delete what succeeded.
    failures = 0
    for _ in range(4 * max_receives):
        handled, failed = poll_once(
            stack.sqs, queue_url, arn["Attributes"]["QueueArn"], LOCAL_REGION
        )
        failures += failed
        TALLY["deliveries"] += handled
        if failures and not handled and _dead_letters(stack):
            break

    assert fault.calls == failures == max_receives  # 403 is not retried by the client
    (dead,) = _dead_letters(stack)
    assert json.loads(dead["Body"])["Records"][0]["s3"]["object"]["key"] == "docs%2Ftide-tables.md"
    row = stored(stack.source(KEY))
    assert row is not None
    assert row["status"] == "failed"
    assert "AccessDenied" in row["error"]
    assert "Access Denied" in row["error"]
    stats = query_api("GET", "/v1/ingest/stats")
    TALLY["requests"] += 1
    assert stats.status == 200
    assert [(f["source"], f["error"]) for f in stats.body["failed"]] == [
        (stack.source(KEY), row["error"])
    ]


def _dead_letters(stack: Stack) -> list[dict[str, Any]]:
    response = stack.sqs.receive_message(
        QueueUrl=stack.resources.dead_letter_queue_url, VisibilityTimeout=0
    )
    messages: list[dict[str, Any]] = response.get("Messages", [])
    return messages


@pytest.mark.parametrize("code", ["AccessDenied", "InvalidObjectState"])
def test_an_unreadable_new_version_leaves_the_last_good_one_serving(
    stack: Stack, code: str
) -> None:
    stack.put_and_ingest(KEY, TIDES)
    before = stored(stack.source(KEY))
    fail_get_object(403, code, "The object cannot be read", times=1000)
    stack.s3.put_object(Bucket=stack.bucket, Key=KEY, Body=TIDES.replace(b"six", b"seven"))
    (message,) = stack.receive(1)

    result = stack.ingest([message])
    TALLY["deliveries"] += 2

    assert result == {"batchItemFailures": [{"itemIdentifier": message["MessageId"]}]}
    row = stored(stack.source(KEY))
    assert before is not None
    assert row is not None
    assert row["status"] == "ready"
    assert row["chunks"] == before["chunks"]
    assert code in row["error"]
    search = query_api("POST", "/v1/search", {"query": "spring tide range", "top_k": 3})
    TALLY["requests"] += 1
    assert search.status == 200
    assert search.body["results"][0]["source"] == stack.source(KEY)
    assert "six metres" in search.body["results"][0]["content"]
    TALLY["documents"] += 1
