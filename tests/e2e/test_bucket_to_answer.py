"""Bucket -> queue -> ingest function -> database -> query function, as deployed.

S3 and SQS are moto (built from template.yaml's definitions); the handlers, the
database (embedded PostgreSQL + pgvector) and the ONNX models are the real ones.
"""

from __future__ import annotations

import copy
import json
from datetime import timedelta
from typing import Any
from urllib.parse import quote_plus

import pytest

from ragops.dev.definitions import load_definition
from ragops.resources import get_service
from tests.e2e.conftest import (
    LOCAL_REGION,
    S3_PUT_EVENT,
    LambdaContext,
    Stack,
    query_api,
)
from tests.pdf_samples import text_pdf

KEY = "docs/Ünïcode notes (1).md"
NOTES = """# Ünïcode notes

## Orchard

The orchard keeper prunes the quince trees every February, before the sap rises.
Pruning late in winter keeps the wounds small and the trees strong.

## Bees

Twelve beehives stand along the eastern wall of the orchard. The bees pollinate the
quince blossoms in April, and the honey is harvested at the end of August.

## Cellar

Cider from the autumn apples rests in oak barrels in the cellar until the following
spring, when it is bottled by hand.
""".encode()
NOTES_V2 = NOTES.replace(b"every February", b"every November").replace(
    b"Twelve beehives", b"Thirty beehives"
)


def ingest_handler(event: dict[str, Any]) -> dict[str, Any]:
    from functions.ingest.app import handler

    result: dict[str, Any] = handler(event, LambdaContext())
    return result


def document(stack: Stack, key: str) -> dict[str, Any] | None:
    """The stored document of a bucket key, as GET /v1/documents lists it."""
    response = query_api("GET", "/v1/documents", query={"limit": "1000"})
    assert response.status == 200, response.body
    rows = [d for d in response.body["documents"] if d["source"] == stack.source(key)]
    assert len(rows) <= 1
    return rows[0] if rows else None


def chunks(document_id: str) -> list[tuple[int, str]]:
    """(id, content) of a document's chunks, in order."""
    with get_service().db.pool.connection() as conn:
        rows = conn.execute(
            "SELECT id, content FROM chunks WHERE document_id = %s ORDER BY ordinal",
            (document_id,),
        ).fetchall()
    return [(int(r[0]), str(r[1])) for r in rows]


def table_counts() -> tuple[int, int]:
    with get_service().db.pool.connection() as conn:
        row = conn.execute(
            "SELECT (SELECT count(*) FROM documents), (SELECT count(*) FROM chunks)"
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def ready_document(stack: Stack, key: str) -> dict[str, Any]:
    row = document(stack, key)
    assert row is not None, f"no document for {key}"
    assert row["status"] == "ready", row
    assert row["chunk_count"] > 1
    return row


def search_sources(query: str) -> list[str]:
    response = query_api("POST", "/v1/search", {"query": query, "top_k": 10})
    assert response.status == 200, response.body
    return [r["source"] for r in response.body["results"]]


def test_the_stack_is_built_from_template_yaml(stack: Stack) -> None:
    definition = load_definition()
    attributes = stack.sqs.get_queue_attributes(
        QueueUrl=stack.resources.queue_url, AttributeNames=["RedrivePolicy"]
    )["Attributes"]
    dead_letter_arn = stack.sqs.get_queue_attributes(
        QueueUrl=stack.resources.dead_letter_queue_url, AttributeNames=["QueueArn"]
    )["Attributes"]["QueueArn"]
    assert json.loads(attributes["RedrivePolicy"]) == {
        "deadLetterTargetArn": dead_letter_arn,
        "maxReceiveCount": definition.max_receive_count,
    }
    configurations = stack.s3.get_bucket_notification_configuration(Bucket=stack.bucket)[
        "QueueConfigurations"
    ]
    routed = {
        (c["Events"][0], c["Filter"]["Key"]["FilterRules"][0]["Value"]) for c in configurations
    }
    assert routed == {
        (event, suffix)
        for event in ("s3:ObjectCreated:*", "s3:ObjectRemoved:*")
        for suffix in (".txt", ".md", ".pdf", ".html")
    }


def test_object_put_in_the_bucket_is_answered_citing_its_decoded_key(stack: Stack) -> None:
    stack.s3.put_object(Bucket=stack.bucket, Key=KEY, Body=NOTES)
    messages = stack.receive(1)
    # S3 URL-encodes keys in notifications; the stored source must be the decoded key.
    assert quote_plus(KEY) in messages[0]["Body"]

    assert stack.ingest(messages) == {"batchItemFailures": []}

    source = f"s3://{stack.bucket}/{KEY}"
    for encoded in (False, True):
        response = query_api(
            "POST",
            "/v1/query",
            {"query": "When does the keeper prune the quince trees?"},
            base64_body=encoded,
        )
        assert response.status == 200, response.body
        assert "every February" in response.body["answer"]
        assert [s["source"] for s in response.body["sources"]] == [source]
        assert response.body["citations"][0]["source"] == source
        assert "prunes the quince trees every February" in response.body["citations"][0]["snippet"]

        response = query_api(
            "POST",
            "/v1/search",
            {"query": "how many beehives are there", "top_k": 3},
            base64_body=encoded,
        )
        assert response.status == 200, response.body
        top = response.body["results"][0]
        assert top["source"] == source
        assert "Twelve beehives stand along the eastern wall" in top["content"]


def test_deleting_the_object_deletes_the_document_and_its_chunks(stack: Stack) -> None:
    stack.put_and_ingest(KEY, NOTES)
    row = ready_document(stack, KEY)
    assert query_api("GET", f"/v1/documents/{row['id']}").status == 200

    stack.s3.delete_object(Bucket=stack.bucket, Key=KEY)
    messages = stack.receive(1)
    assert "ObjectRemoved" in messages[0]["Body"]
    assert stack.ingest(messages) == {"batchItemFailures": []}

    gone = query_api("GET", f"/v1/documents/{row['id']}")
    assert gone.status == 404
    assert row["id"] in gone.body["detail"]
    assert chunks(row["id"]) == []
    assert table_counts() == (0, 0)
    assert search_sources("quince trees") == []


def test_a_message_delivered_twice_in_one_batch_ingests_once(stack: Stack) -> None:
    stack.s3.put_object(Bucket=stack.bucket, Key=KEY, Body=NOTES)
    (first,) = stack.receive(1)
    stack.sqs.send_message(QueueUrl=stack.resources.queue_url, MessageBody=first["Body"])
    (second,) = stack.receive(1)

    assert stack.ingest([first, second]) == {"batchItemFailures": []}

    row = ready_document(stack, KEY)
    assert table_counts() == (1, row["chunk_count"])


def test_a_message_delivered_again_in_a_later_batch_keeps_the_same_chunks(stack: Stack) -> None:
    stack.s3.put_object(Bucket=stack.bucket, Key=KEY, Body=NOTES)
    (message,) = stack.receive(1)
    assert stack.ingest([message]) == {"batchItemFailures": []}
    row = ready_document(stack, KEY)
    before = chunks(row["id"])

    stack.sqs.send_message(QueueUrl=stack.resources.queue_url, MessageBody=message["Body"])
    assert stack.ingest(stack.receive(1)) == {"batchItemFailures": []}

    assert ready_document(stack, KEY)["id"] == row["id"]
    assert chunks(row["id"]) == before
    assert table_counts() == (1, len(before))


def test_a_multipart_upload_ingests_one_document(stack: Stack) -> None:
    key = "docs/big upload.md"
    # Every part but the last must be at least 5 MB; padding whitespace parses to nothing.
    first_part = NOTES + b"\n" + b" " * (5 * 1024 * 1024) + b"\n"
    last_part = b"\n## Well\n\nThe well behind the barn is forty feet deep.\n"
    upload = stack.s3.create_multipart_upload(Bucket=stack.bucket, Key=key)
    parts = []
    for number, data in enumerate((first_part, last_part), start=1):
        part = stack.s3.upload_part(
            Bucket=stack.bucket, Key=key, UploadId=upload["UploadId"], PartNumber=number, Body=data
        )
        parts.append({"PartNumber": number, "ETag": part["ETag"]})
    stack.s3.complete_multipart_upload(
        Bucket=stack.bucket,
        Key=key,
        UploadId=upload["UploadId"],
        MultipartUpload={"Parts": parts},
    )
    messages = stack.receive(2)  # moto, like S3 at times, reports the upload twice
    assert all("ObjectCreated" in m["Body"] for m in messages)

    assert stack.ingest(messages[:1]) == {"batchItemFailures": []}
    row = ready_document(stack, key)
    before = chunks(row["id"])
    assert any("forty feet deep" in content for _, content in before)

    assert stack.ingest(messages[1:]) == {"batchItemFailures": []}
    assert chunks(row["id"]) == before
    assert table_counts() == (1, len(before))


def test_a_removal_processed_after_the_key_was_recreated_keeps_the_document(
    stack: Stack,
) -> None:
    stack.put_and_ingest(KEY, NOTES)
    stack.s3.delete_object(Bucket=stack.bucket, Key=KEY)
    (removed,) = stack.receive(1)
    stack.s3.put_object(Bucket=stack.bucket, Key=KEY, Body=NOTES_V2)
    (created,) = stack.receive(1)

    # The queue delivers the re-creation first and the older removal after it.
    assert stack.ingest([created]) == {"batchItemFailures": []}
    assert stack.ingest([removed]) == {"batchItemFailures": []}

    row = ready_document(stack, KEY)
    assert any("Thirty beehives" in content for _, content in chunks(row["id"]))
    assert search_sources("how many beehives are there")[0] == stack.source(KEY)


def test_a_removal_event_older_than_the_current_object_is_ignored(stack: Stack) -> None:
    stack.put_and_ingest(KEY, NOTES)
    modified = stack.s3.head_object(Bucket=stack.bucket, Key=KEY)["LastModified"]
    stack.s3.delete_object(Bucket=stack.bucket, Key=KEY)
    (removed,) = stack.receive(1)
    stack.s3.put_object(Bucket=stack.bucket, Key=KEY, Body=NOTES_V2)
    (created,) = stack.receive(1)
    payload = json.loads(removed["Body"])
    earlier = modified - timedelta(seconds=30)
    payload["Records"][0]["eventTime"] = earlier.strftime("%Y-%m-%dT%H:%M:%S.000Z")
    removed["Body"] = json.dumps(payload)

    assert stack.ingest([created, removed]) == {"batchItemFailures": []}

    row = ready_document(stack, KEY)
    assert any("Thirty beehives" in content for _, content in chunks(row["id"]))


def test_a_created_event_for_a_key_that_no_longer_exists_stores_nothing(stack: Stack) -> None:
    stack.s3.put_object(Bucket=stack.bucket, Key=KEY, Body=NOTES)
    stack.s3.delete_object(Bucket=stack.bucket, Key=KEY)
    created, removed = stack.receive(2)
    assert "ObjectCreated" in created["Body"]

    assert stack.ingest([created]) == {"batchItemFailures": []}
    assert document(stack, KEY) is None
    assert stack.ingest([removed]) == {"batchItemFailures": []}
    assert table_counts() == (0, 0)


def test_a_created_event_for_a_deleted_key_removes_the_stale_document(stack: Stack) -> None:
    stack.put_and_ingest(KEY, NOTES)
    stack.s3.put_object(Bucket=stack.bucket, Key=KEY, Body=NOTES_V2)
    stack.s3.delete_object(Bucket=stack.bucket, Key=KEY)
    created, removed = stack.receive(2)

    assert stack.ingest([created]) == {"batchItemFailures": []}
    assert document(stack, KEY) is None
    assert stack.ingest([removed]) == {"batchItemFailures": []}
    assert table_counts() == (0, 0)


def test_an_older_versions_event_after_the_newer_one_does_not_overwrite_it(stack: Stack) -> None:
    stack.s3.put_object(Bucket=stack.bucket, Key=KEY, Body=NOTES)
    stack.s3.put_object(Bucket=stack.bucket, Key=KEY, Body=NOTES_V2)
    older, newer = stack.receive(2)
    assert json.loads(older["Body"])["Records"][0]["s3"]["object"]["size"] == len(NOTES)

    assert stack.ingest([newer]) == {"batchItemFailures": []}
    row = ready_document(stack, KEY)
    newest = chunks(row["id"])
    assert stack.ingest([older]) == {"batchItemFailures": []}

    assert chunks(row["id"]) == newest
    contents = " ".join(content for _, content in newest)
    assert "every November" in contents
    assert "every February" not in contents


def test_a_corrupt_pdf_fails_alone_in_its_batch(stack: Stack) -> None:
    good_pdf = text_pdf(["The lighthouse keeper lights the lamp at dusk every evening."])
    stack.s3.put_object(Bucket=stack.bucket, Key="docs/lighthouse.pdf", Body=good_pdf)
    stack.s3.put_object(Bucket=stack.bucket, Key="docs/broken.pdf", Body=b"%PDF-1.7\n\x00garbage")
    stack.s3.put_object(Bucket=stack.bucket, Key=KEY, Body=NOTES)
    messages = stack.receive(3)
    broken = next(m for m in messages if "broken.pdf" in m["Body"])

    result = stack.ingest(messages)

    assert result == {"batchItemFailures": [{"itemIdentifier": broken["MessageId"]}]}
    ready_document(stack, KEY)
    lighthouse = document(stack, "docs/lighthouse.pdf")
    assert lighthouse is not None
    assert lighthouse["status"] == "ready"
    assert search_sources("when is the lighthouse lamp lit")[0] == stack.source(
        "docs/lighthouse.pdf"
    )
    assert search_sources("beehives")[0] == stack.source(KEY)
    failed = document(stack, "docs/broken.pdf")
    assert failed is not None
    assert failed["status"] == "failed"
    assert failed["error"]
    stats = query_api("GET", "/v1/ingest/stats")
    assert stats.status == 200
    assert stats.body["counts"] == {"ready": 2, "pending": 0, "failed": 1}
    assert [(f["source"], f["error"]) for f in stats.body["failed"]] == [
        (stack.source("docs/broken.pdf"), failed["error"])
    ]
    # The failed message stays on the queue for a retry (and then the dead-letter queue).
    attributes = stack.sqs.get_queue_attributes(
        QueueUrl=stack.resources.queue_url, AttributeNames=["ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    assert attributes["ApproximateNumberOfMessagesNotVisible"] == "1"


def test_a_message_that_keeps_failing_moves_to_the_dead_letter_queue(stack: Stack) -> None:
    stack.s3.put_object(Bucket=stack.bucket, Key="docs/broken.pdf", Body=b"%PDF-1.7 broken")
    (message,) = stack.receive(1)
    attempts = 0
    while message is not None:
        attempts += 1
        result = stack.ingest([message])
        assert result == {"batchItemFailures": [{"itemIdentifier": message["MessageId"]}]}
        # Make the failed message visible again now rather than after the visibility timeout.
        stack.sqs.change_message_visibility(
            QueueUrl=stack.resources.queue_url,
            ReceiptHandle=message["ReceiptHandle"],
            VisibilityTimeout=0,
        )
        received = stack.sqs.receive_message(
            QueueUrl=stack.resources.queue_url, AttributeNames=["All"]
        ).get("Messages", [])
        message = received[0] if received else None

    assert attempts == load_definition().max_receive_count
    dead = stack.sqs.receive_message(QueueUrl=stack.resources.dead_letter_queue_url)["Messages"]
    assert [json.loads(m["Body"])["Records"][0]["s3"]["object"]["key"] for m in dead] == [
        "docs%2Fbroken.pdf"
    ]
    failed = document(stack, "docs/broken.pdf")
    assert failed is not None
    assert failed["status"] == "failed"


def test_the_s3_test_event_is_skipped_without_failure(stack: Stack) -> None:
    response = stack.sqs.receive_message(QueueUrl=stack.resources.queue_url, MaxNumberOfMessages=10)
    messages = response["Messages"]
    assert [json.loads(m["Body"])["Event"] for m in messages] == ["s3:TestEvent"]

    assert stack.ingest(messages) == {"batchItemFailures": []}
    assert table_counts() == (0, 0)


def test_a_non_json_message_fails_only_itself(stack: Stack) -> None:
    stack.s3.put_object(Bucket=stack.bucket, Key=KEY, Body=NOTES)
    (good,) = stack.receive(1)
    stack.sqs.send_message(QueueUrl=stack.resources.queue_url, MessageBody="not json {")
    (bad,) = stack.receive(1)

    result = stack.ingest([bad, good])

    assert result == {"batchItemFailures": [{"itemIdentifier": bad["MessageId"]}]}
    ready_document(stack, KEY)


def test_eventbridge_object_created_events_ingest(stack: Stack) -> None:
    import boto3

    events = boto3.client("events", region_name=LOCAL_REGION)
    target_url = stack.sqs.create_queue(QueueName="ragops-eventbridge")["QueueUrl"]
    target_arn = stack.sqs.get_queue_attributes(QueueUrl=target_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    events.put_rule(
        Name="documents",
        EventPattern=json.dumps({"source": ["aws.s3"], "detail-type": ["Object Created"]}),
    )
    events.put_targets(Rule="documents", Targets=[{"Id": "ingest", "Arn": target_arn}])
    configuration = stack.s3.get_bucket_notification_configuration(Bucket=stack.bucket)
    configuration.pop("ResponseMetadata")
    stack.s3.put_bucket_notification_configuration(
        Bucket=stack.bucket,
        NotificationConfiguration={**configuration, "EventBridgeConfiguration": {}},
    )

    stack.s3.put_object(Bucket=stack.bucket, Key=KEY, Body=NOTES)
    (message,) = stack.receive(1, queue_url=target_url)
    event = json.loads(message["Body"])
    assert (event["source"], event["detail-type"]) == ("aws.s3", "Object Created")
    assert event["detail"]["object"]["key"] == KEY

    # An EventBridge rule targets a queue (SQS event) or the function itself (direct).
    assert stack.ingest([message], queue_url=target_url) == {"batchItemFailures": []}
    row = ready_document(stack, KEY)
    assert ingest_handler(event) == {
        "objects": [{"source": stack.source(KEY), "status": "unchanged"}]
    }
    assert chunks(row["id"]) == chunks(ready_document(stack, KEY)["id"])


def test_a_direct_s3_notification_event_ingests(stack: Stack) -> None:
    stack.s3.put_object(Bucket=stack.bucket, Key=KEY, Body=NOTES)
    stack.receive(1)
    event = copy.deepcopy(S3_PUT_EVENT)
    record = event["Records"][0]
    record["awsRegion"] = LOCAL_REGION
    record["s3"]["bucket"]["name"] = stack.bucket
    record["s3"]["bucket"]["arn"] = f"arn:aws:s3:::{stack.bucket}"
    record["s3"]["object"]["key"] = quote_plus(KEY)
    record["s3"]["object"]["size"] = len(NOTES)

    result = ingest_handler(event)

    assert result == {"objects": [{"source": stack.source(KEY), "status": "ingested"}]}
    ready_document(stack, KEY)


@pytest.mark.parametrize("body", ["[1, 2]", '"text"', '{"Records": [{"eventName": "x"}]}'])
def test_a_json_message_that_is_no_s3_event_fails_only_itself(stack: Stack, body: str) -> None:
    stack.s3.put_object(Bucket=stack.bucket, Key=KEY, Body=NOTES)
    (good,) = stack.receive(1)
    stack.sqs.send_message(QueueUrl=stack.resources.queue_url, MessageBody=body)
    (bad,) = stack.receive(1)

    result = stack.ingest([good, bad])

    assert result == {"batchItemFailures": [{"itemIdentifier": bad["MessageId"]}]}
    ready_document(stack, KEY)
