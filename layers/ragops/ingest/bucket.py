"""Applying bucket events: fetch and ingest created objects, delete removed ones.

Deliveries are at-least-once and unordered, so every decision is made against the
object's current state in S3 and the stored document, never the event alone.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Literal

from botocore.exceptions import BotoCoreError, ClientError

from ragops.db import documents
from ragops.db.documents import DocumentVersion
from ragops.errors import FileTooLargeError
from ragops.ingest.events import ObjectEvent
from ragops.service import Service

log = logging.getLogger(__name__)

Status = Literal["ingested", "unchanged", "failed", "deleted", "skipped"]
# Object metadata (x-amz-meta-collection) that files an object into a collection.
COLLECTION_METADATA_KEY = "collection"


@dataclass(frozen=True)
class BucketOutcome:
    event: ObjectEvent
    status: Status
    detail: str = ""
    chunks: int = 0

    @property
    def failed(self) -> bool:
        return self.status == "failed"


class BucketIngest:
    """Keeps the store in step with a bucket, one object event at a time."""

    def __init__(self, service: Service, s3: Any):
        self.service = service
        self.s3 = s3

    def apply(self, event: ObjectEvent) -> BucketOutcome:
        if event.action == "removed":
            return self._removed(event)
        return self._created(event)

    def _created(self, event: ObjectEvent) -> BucketOutcome:
        outcome = self._fetch_and_ingest(event)
        if outcome.status != "ingested":
            return outcome
        return self._settled(outcome)

    def _settled(self, outcome: BucketOutcome) -> BucketOutcome:
        """Undo a write that a deletion overtook while the object was embedded.

        A removal handled between this fetch and this write found nothing to delete, and
        no later event would remove what this write stored.
        """
        event = outcome.event
        try:
            self.s3.head_object(Bucket=event.bucket, Key=event.key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in ("404", "NoSuchKey", "NotFound"):
                raise
            self._delete_source(event.source)
            return BucketOutcome(event, "deleted", "object was deleted while it was ingested")
        return outcome

    def _fetch_and_ingest(self, event: ObjectEvent) -> BucketOutcome:
        try:
            response = self.s3.get_object(Bucket=event.bucket, Key=event.key)
        except self.s3.exceptions.NoSuchKey:
            # Deleted since the event was sent: the removal event finishes the job, and
            # deleting now keeps an out-of-order pair from resurrecting the document.
            deleted = self._delete_source(event.source)
            return BucketOutcome(event, "deleted" if deleted else "skipped", "object is gone")
        except (ClientError, BotoCoreError) as exc:
            # botocore has already retried throttling, 5xx and dropped connections.
            return self._unreadable(event, exc)
        body = response["Body"]
        try:
            return self._ingest_response(event, response)
        except (ClientError, BotoCoreError) as exc:  # the body broke off while being read
            return self._unreadable(event, exc)
        finally:
            body.close()

    def _unreadable(self, event: ObjectEvent, exc: ClientError | BotoCoreError) -> BucketOutcome:
        """Record why the object cannot be read; the message fails, so it is retried.

        A ready document keeps serving its last version with the error noted; a new one is
        marked failed (in the default collection: the object's own metadata is unreadable).
        """
        if isinstance(exc, ClientError):
            error = exc.response.get("Error", {})
            cause = f"{error.get('Code', 'error')}: {error.get('Message') or exc}"
        else:
            cause = f"{type(exc).__name__}: {exc}"
        reason = f"cannot read the object from S3 ({cause})"
        version = DocumentVersion(
            collection=self.service.settings.default_collection,
            source=event.source,
            size_bytes=event.size or 0,
            etag=event.etag,
        )
        with self.service.db.pool.connection() as conn:
            documents.save_write_failed(conn, version, reason)
        return BucketOutcome(event, "failed", reason)

    def _ingest_response(self, event: ObjectEvent, response: dict[str, Any]) -> BucketOutcome:
        settings = self.service.settings
        metadata = {k.lower(): v for k, v in (response.get("Metadata") or {}).items()}
        collection = metadata.pop(COLLECTION_METADATA_KEY, None) or settings.default_collection
        version = DocumentVersion(
            collection=collection,
            source=event.source,
            size_bytes=int(response.get("ContentLength") or 0),
            etag=str(response.get("ETag") or "").strip('"') or None,
            source_mtime=response.get("LastModified"),
            metadata=metadata,
            reject_older=True,
        )
        with self.service.db.pool.connection() as conn:
            existing = documents.find_document(conn, collection, event.source)
        # Checked again under the write lock; here it saves downloading a superseded body.
        if existing is not None and version.superseded_by(existing.source_mtime):
            return BucketOutcome(
                event, "skipped", "a newer version of the object is already stored"
            )
        ingestor = self.service.ingestor
        if ingestor.is_current(existing) and existing.etag == version.etag:
            # Same ETag, same bytes: a duplicate delivery or a multipart upload's second event.
            return BucketOutcome(event, "unchanged", "same ETag", existing.chunk_count)
        try:
            ingestor.check_size(version.size_bytes)
        except FileTooLargeError as exc:
            # Refused before downloading: the body is never read.
            refused = ingestor.record_failure(version, str(exc))
            return BucketOutcome(
                event,
                "skipped" if refused.status == "unchanged" else "failed",
                refused.error or str(exc),
            )
        data = response["Body"].read()
        outcome = ingestor.ingest_bytes(data, version, event.key, existing)
        if outcome.status == "unchanged" and outcome.error:
            return BucketOutcome(event, "skipped", outcome.error)
        if outcome.status == "failed":
            return BucketOutcome(event, "failed", outcome.error or "ingest failed")
        with self.service.db.pool.connection() as conn:
            documents.delete_source(conn, event.source, except_collection=collection)
        return BucketOutcome(event, outcome.status, chunks=outcome.chunks)

    def _removed(self, event: ObjectEvent) -> BucketOutcome:
        try:
            head = self.s3.head_object(Bucket=event.bucket, Key=event.key)
        except self.s3.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in ("404", "NoSuchKey", "NotFound"):
                raise
            head = None
        if head is not None:
            # S3 reads are strongly consistent: an object that exists now was re-created after
            # this deletion, and its ObjectCreated event keeps the store in step. Comparing the
            # event's time with LastModified cannot decide it: LastModified has whole seconds,
            # so a re-creation in the same second as the deletion would look older.
            return BucketOutcome(event, "skipped", "object exists again")
        deleted = self._delete_source(event.source)
        return BucketOutcome(event, "deleted" if deleted else "skipped")

    def _delete_source(self, source: str) -> bool:
        with self.service.db.pool.connection() as conn:
            return documents.delete_source(conn, source)
