"""A queue worker: long-polls SQS and hands each batch to the ingest function's handler."""

from __future__ import annotations

import logging
import threading
from typing import Any

from ragops.ingest.handler import handle_event

log = logging.getLogger(__name__)
BATCH_SIZE = 5
WAIT_SECONDS = 2


def sqs_event(messages: list[dict[str, Any]], queue_arn: str, region: str) -> dict[str, Any]:
    """Received messages in the shape Lambda's SQS event source delivers them."""
    return {
        "Records": [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": m.get("Attributes", {}),
                "messageAttributes": m.get("MessageAttributes", {}),
                "md5OfBody": m.get("MD5OfBody", ""),
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": region,
            }
            for m in messages
        ]
    }


def poll_once(sqs: Any, queue_url: str, queue_arn: str, region: str) -> tuple[int, int]:
    """One receive: handle the batch, delete what succeeded; returns (handled, failed)."""
    messages = sqs.receive_message(
        QueueUrl=queue_url,
        MaxNumberOfMessages=BATCH_SIZE,
        WaitTimeSeconds=WAIT_SECONDS,
        AttributeNames=["All"],
    ).get("Messages", [])
    if not messages:
        return 0, 0
    result = handle_event(sqs_event(messages, queue_arn, region), None)
    failed = {item["itemIdentifier"] for item in result.get("batchItemFailures", [])}
    done = [m for m in messages if m["MessageId"] not in failed]
    if done:
        sqs.delete_message_batch(
            QueueUrl=queue_url,
            Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(done)
            ],
        )
    # Failed messages stay: they come back after the visibility timeout and, after the
    # redrive policy's attempts, land in the dead-letter queue.
    return len(messages), len(failed)


def run_worker(sqs: Any, queue_url: str, stop: threading.Event) -> None:
    """Poll until `stop` is set."""
    attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])
    queue_arn = attributes["Attributes"]["QueueArn"]
    region = queue_arn.split(":")[3]
    while not stop.is_set():
        try:
            poll_once(sqs, queue_url, queue_arn, region)
        except Exception:  # the worker must outlive one bad batch or a blip of the endpoint
            log.exception("ingest worker: batch failed")
            stop.wait(1.0)
