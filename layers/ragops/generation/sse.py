"""Server-sent events: reading a text/event-stream (the LLM's, and our own in clients)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator


def sse_events(lines: Iterable[str]) -> Iterator[tuple[str, str]]:
    """(event name, data) per event; multi-line data joined by newlines, comments skipped.

    An event without an `event:` field is a "message", as the SSE specification says. A
    final event the stream did not close with a blank line is still delivered, so a
    payload cut off mid-way reaches the caller (and fails to parse there) instead of
    vanishing.
    """
    name = "message"
    data: list[str] = []
    for raw in lines:
        line = raw.rstrip("\r\n")
        if not line:
            if data:
                yield name, "\n".join(data)
            name, data = "message", []
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if field == "data":
            data.append(value)
        elif field == "event":
            name = value
    if data:
        yield name, "\n".join(data)


def sse_data(lines: Iterable[str]) -> Iterator[str]:
    """Each event's data."""
    for _, data in sse_events(lines):
        yield data
