"""S3 object events, from S3 notifications or EventBridge, as one typed shape."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal
from urllib.parse import unquote_plus

from ragops.errors import IngestError

Action = Literal["created", "removed"]


class EventFormatError(IngestError):
    """A message that is not an S3 or EventBridge object event."""


@dataclass(frozen=True)
class ObjectEvent:
    action: Action
    bucket: str
    key: str
    event_time: datetime | None = None
    sequencer: str | None = None
    etag: str | None = None
    size: int | None = None

    @property
    def source(self) -> str:
        return s3_source(self.bucket, self.key)


def s3_source(bucket: str, key: str) -> str:
    """The source URI of a bucket object: the key as the user wrote it (decoded)."""
    return f"s3://{bucket}/{key}"


def object_events(payload: Any) -> list[ObjectEvent]:
    """The object events in one notification; [] for S3's `s3:TestEvent`."""
    if not isinstance(payload, dict):
        raise EventFormatError(
            f"not an S3 event: expected a JSON object, got {type(payload).__name__}"
        )
    if payload.get("Event") == "s3:TestEvent":
        return []
    if isinstance(payload.get("Records"), list):
        return [_from_notification(record) for record in payload["Records"]]
    if payload.get("source") == "aws.s3" and "detail" in payload:
        return [_from_eventbridge(payload)]
    raise EventFormatError(
        "not an S3 event: expected S3 notification Records or an EventBridge aws.s3 event"
    )


def _action(name: str) -> Action:
    if name.startswith(("ObjectCreated", "Object Created")):
        return "created"
    if name.startswith(("ObjectRemoved", "Object Deleted")):
        return "removed"
    raise EventFormatError(f"unsupported S3 event {name!r}; only created and removed are handled")


def _time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def _from_notification(record: dict[str, Any]) -> ObjectEvent:
    try:
        s3 = record["s3"]
        obj = s3["object"]
        bucket = s3["bucket"]["name"]
        # Keys arrive URL-encoded, spaces as '+': 'my+file%281%29.pdf' is 'my file(1).pdf'.
        key = unquote_plus(obj["key"])
        name = record["eventName"]
    except (KeyError, TypeError) as exc:
        raise EventFormatError(f"S3 notification record lacks {exc}") from exc
    return ObjectEvent(
        action=_action(name),
        bucket=bucket,
        key=key,
        event_time=_time(record.get("eventTime")),
        sequencer=obj.get("sequencer"),
        etag=_etag(obj.get("eTag")),
        size=_int(obj.get("size")),
    )


def _from_eventbridge(event: dict[str, Any]) -> ObjectEvent:
    detail = event["detail"]
    try:
        bucket = detail["bucket"]["name"]
        obj = detail["object"]
        key = obj["key"]  # EventBridge keys are not URL-encoded
    except (KeyError, TypeError) as exc:
        raise EventFormatError(f"EventBridge S3 event lacks {exc}") from exc
    return ObjectEvent(
        action=_action(str(event.get("detail-type", ""))),
        bucket=bucket,
        key=key,
        event_time=_time(event.get("time")),
        sequencer=obj.get("sequencer"),
        etag=_etag(obj.get("etag")),
        size=_int(obj.get("size")),
    )


def _etag(value: object) -> str | None:
    return str(value).strip('"') if value else None


def _int(value: object) -> int | None:
    try:
        return int(value)  # type: ignore[call-overload, no-any-return]
    except (TypeError, ValueError):
        return None
