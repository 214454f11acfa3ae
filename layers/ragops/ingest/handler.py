"""The ingest function's logic: S3 events, direct or in SQS batches, with partial failures."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from ragops.errors import IngestError
from ragops.ingest.bucket import BucketIngest, BucketOutcome
from ragops.ingest.events import object_events
from ragops.observability import metrics
from ragops.observability.logs import log_fields
from ragops.observability.metrics import INGEST_CHUNKS, INGEST_DOCUMENTS, INGEST_FAILURES
from ragops.observability.tracing import stage
from ragops.resources import get_s3_client, get_service

log = logging.getLogger(__name__)
# With ReportBatchItemFailures, a batch whose every message failed is reported like any other
# (each id listed, each retried alone); raising instead would make a one-message batch that
# failed an invocation error, and give the local worker an exception instead of a result.
_processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)


class ObjectIngestError(IngestError):
    """Raised so the message is retried and, after the last attempt, dead-lettered."""


def _bucket_ingest() -> BucketIngest:
    return BucketIngest(get_service(), get_s3_client())


def apply_payload(payload: dict[str, Any]) -> list[BucketOutcome]:
    """Apply every object event of one S3 notification or EventBridge event."""
    outcomes = []
    for event in object_events(payload):
        with stage("ingest_object", action=event.action) as span:
            outcome = _bucket_ingest().apply(event)
        _observe(outcome, span.duration_ms)
        outcomes.append(outcome)
    failed = [o for o in outcomes if o.failed]
    if failed:
        raise ObjectIngestError("; ".join(f"{o.event.source}: {o.detail}" for o in failed))
    return outcomes


def _observe(outcome: BucketOutcome, duration_ms: float | None) -> None:
    """One log line (the source's URI, never its text) and the ingest counters."""
    log.info(
        "object %s: %s",
        outcome.event.action,
        outcome.status,
        extra={
            "action": outcome.event.action,
            "source": outcome.event.source,
            "status": outcome.status,
            "detail": outcome.detail,
            "chunks": outcome.chunks,
            "duration_ms": duration_ms,
        },
    )
    metrics.record(INGEST_DOCUMENTS, outcome=outcome.status)
    if outcome.status == "ingested":
        metrics.record(INGEST_CHUNKS, outcome.chunks)


@contextmanager
def _counted_failure() -> Iterator[None]:
    """Count a record that fails as a whole (and so comes back to be retried)."""
    try:
        yield
    except Exception:
        metrics.record(INGEST_FAILURES)
        raise


def _record_handler(record: SQSRecord) -> None:
    with log_fields(message_id=record.message_id), _counted_failure():
        try:
            payload = json.loads(record.body)
        except json.JSONDecodeError as exc:
            raise ObjectIngestError(f"message {record.message_id} is not JSON: {exc}") from exc
        apply_payload(payload)


def handle_event(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """SQS batches report per-message failures; a direct event fails as a whole."""
    records = event.get("Records") or []
    if records and records[0].get("eventSource") == "aws:sqs":
        return dict(
            process_partial_response(
                event=event, record_handler=_record_handler, processor=_processor, context=context
            )
        )
    with _counted_failure():
        outcomes = apply_payload(event)
    return {"objects": [{"source": o.event.source, "status": o.status} for o in outcomes]}
