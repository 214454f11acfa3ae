"""Server-sent events: the `data:` payloads of a text/event-stream, one per event."""

from __future__ import annotations

from collections.abc import Iterable, Iterator


def sse_data(lines: Iterable[str]) -> Iterator[str]:
    """Each event's data (multi-line data joined by newlines); comments and other fields skipped.

    A final event the stream did not close with a blank line is still delivered, so a
    payload cut off mid-way reaches the caller (and fails to parse there) instead of
    vanishing.
    """
    data: list[str] = []
    for raw in lines:
        line = raw.rstrip("\r\n")
        if not line:
            if data:
                yield "\n".join(data)
                data = []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        if name == "data":
            data.append(value[1:] if value.startswith(" ") else value)
    if data:
        yield "\n".join(data)
