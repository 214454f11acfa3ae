"""The service's logs: one JSON object per line on stderr.

Every line has timestamp, level, logger and message, then the fields bound to the work in
progress (`log_fields`: a request's id, an SQS message's id), then the record's own `extra`.
The CLI keeps its human format; this is for the Lambda functions and `ragops dev`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

# Context variables follow the work into Litestar's handler threads (anyio copies them).
_bound: ContextVar[Mapping[str, Any] | None] = ContextVar("ragops_log_fields", default=None)
# What every LogRecord has: anything else on a record came from `extra`.
_RECORD_ATTRIBUTES = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


@contextlib.contextmanager
def log_fields(**fields: Any) -> Iterator[None]:
    """Add `fields` to every line logged inside the block (in this context and its threads)."""
    token = _bound.set({**(_bound.get() or {}), **fields})
    try:
        yield
    finally:
        _bound.reset(token)


class JsonFormatter(logging.Formatter):
    """A record as one line of JSON; values JSON cannot hold are written as strings."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "timestamp": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(_bound.get() or {})
        entry.update(
            (key, value) for key, value in vars(record).items() if key not in _RECORD_ATTRIBUTES
        )
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


class JsonLinesHandler(logging.Handler):
    """Writes to whatever `sys.stderr` is when the record is emitted (test capture included)."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(JsonFormatter())

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
            sys.stderr.write(line + "\n")
            sys.stderr.flush()
        except Exception:
            self.handleError(record)


def running_in_lambda() -> bool:
    """Whether this process is a Lambda execution environment (its runtime API is set)."""
    return "AWS_LAMBDA_RUNTIME_API" in os.environ


def configure_service_logging(level: str) -> logging.Handler:
    """JSON lines on stderr for the `ragops` loggers at `level`, other libraries at WARNING.

    The root logger's other handlers go (the Lambda runtime's text lines, the CLI's human
    format under `ragops dev`), so each record is written once. Calling it again changes the
    level only.
    """
    root = logging.getLogger()
    handler = next((h for h in root.handlers if isinstance(h, JsonLinesHandler)), None)
    for other in [h for h in root.handlers if h is not handler]:
        root.removeHandler(other)
    if handler is None:
        handler = JsonLinesHandler()
        root.addHandler(handler)
    root.setLevel(logging.WARNING)
    logging.getLogger("ragops").setLevel(level)
    return handler
