"""Process-wide resources, created on first use and reused by warm invocations."""

from __future__ import annotations

import threading
from functools import lru_cache
from typing import Any

from ragops.service import Service
from ragops.settings import get_settings

_lock = threading.Lock()


@lru_cache(maxsize=1)
def get_service() -> Service:
    """The one Service of this process: one pool, one set of model sessions."""
    return Service(get_settings())


def get_s3_client() -> Any:
    """A boto3 S3 client (imported lazily: the query path never needs boto3)."""
    with _lock:
        return _s3_client()


@lru_cache(maxsize=1)
def _s3_client() -> Any:
    import boto3

    settings = get_settings()
    return boto3.client("s3", endpoint_url=settings.s3_endpoint_url or None)
