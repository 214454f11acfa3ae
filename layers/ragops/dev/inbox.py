"""Mirror a local folder into the bucket: new and changed files are put, removed ones deleted."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

from ragops.ingest.parse import MIME_TYPES

log = logging.getLogger(__name__)
SCAN_SECONDS = 1.0


def scan(folder: Path) -> dict[str, tuple[float, int]]:
    """Supported files under `folder` by bucket key, with (mtime, size)."""
    found = {}
    for path in folder.rglob("*"):
        if path.is_file() and not path.name.startswith(".") and path.suffix.lower() in MIME_TYPES:
            stat = path.stat()
            found[path.relative_to(folder).as_posix()] = (stat.st_mtime, stat.st_size)
    return found


def sync_once(
    folder: Path, s3: Any, bucket: str, seen: dict[str, tuple[float, int]]
) -> dict[str, tuple[float, int]]:
    """Apply the difference since `seen`; returns the new state."""
    current = scan(folder)
    for key, stamp in current.items():
        if seen.get(key) != stamp:
            s3.upload_file(str(folder / key), bucket, key)
            log.info("inbox: put s3://%s/%s", bucket, key)
    for key in seen.keys() - current.keys():
        s3.delete_object(Bucket=bucket, Key=key)
        log.info("inbox: deleted s3://%s/%s", bucket, key)
    return current


def mirror_inbox(folder: Path, s3: Any, bucket: str, stop: threading.Event) -> None:
    seen: dict[str, tuple[float, int]] = {}
    while not stop.is_set():
        try:
            seen = sync_once(folder, s3, bucket, seen)
        except Exception:  # a file vanishing mid-scan must not end the mirror
            log.exception("inbox: sync failed")
        stop.wait(SCAN_SECONDS)
