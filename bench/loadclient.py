"""A lean HTTP/1.1 load client: one keep-alive connection per worker, JSON bodies both ways.

A full client is measurement error here: on this 2-core machine httpx's AsyncClient adds
about 2.6 ms to each request over this client (same server, requests alternating between
the two: 5.8 ms between the client's time and the server's own against 3.2 ms). The load
benchmark times the service, so it writes requests and reads responses with asyncio
streams and nothing else: a status line, headers, and a body sized by Content-Length or
sent in chunks.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any


class ResponseError(Exception):
    """The server answered with something that is not an HTTP/1.1 response."""


class UnansweredError(ResponseError):
    """The server closed the connection before it sent a status line."""


class JsonConnection:
    """One connection to `host:port`, opened on first use and kept open between requests."""

    def __init__(self, host: str, port: int, headers: dict[str, str] | None = None):
        self.host = host
        self.port = port
        fixed = {"Host": f"{host}:{port}", **(headers or {})}
        self._fixed = "".join(f"{name}: {value}\r\n" for name, value in fixed.items())
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def post(self, path: str, body: Any) -> tuple[int, Any]:
        """POST `body` as JSON; returns the status and the decoded body (None if empty).

        A kept connection the server has closed meanwhile (uvicorn closes one idle for 5 s)
        is opened again, and the request sent again if the server closed it unanswered.
        """
        payload = json.dumps(body).encode()
        head = (
            f"POST {path} HTTP/1.1\r\n{self._fixed}Content-Type: application/json\r\n"
            f"Content-Length: {len(payload)}\r\n\r\n"
        ).encode()
        if self._streams is not None and self._streams[0].at_eof():
            await self.close()
        reused = self._streams is not None
        try:
            status, raw, keep_alive = await self._exchange(head + payload)
        except UnansweredError:
            if not reused:
                raise
            status, raw, keep_alive = await self._exchange(head + payload)
        if not keep_alive:
            await self.close()
        return status, json.loads(raw) if raw else None

    async def _exchange(self, request: bytes) -> tuple[int, bytes, bool]:
        if self._streams is None:
            self._streams = await asyncio.open_connection(self.host, self.port)
        reader, writer = self._streams
        try:
            writer.write(request)
            return await _read_response(reader)
        except (ResponseError, asyncio.IncompleteReadError, ConnectionError):
            await self.close()
            raise

    async def close(self) -> None:
        if self._streams is not None:
            _, writer = self._streams
            self._streams = None
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    """(status, body, whether the connection stays open) of the next response."""
    status_line = await reader.readline()
    if not status_line:
        raise UnansweredError("the server closed the connection without an answer")
    version, _, rest = status_line.partition(b" ")
    if not version.startswith(b"HTTP/1.") or not rest[:3].isdigit():
        raise ResponseError(f"not an HTTP/1.1 status line: {status_line[:80]!r}")
    status = int(rest[:3])
    length: int | None = None
    chunked = False
    keep_alive = version == b"HTTP/1.1"
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b"\n", b""):
            break
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        value = value.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding":
            chunked = b"chunked" in value
        elif name == b"connection":
            keep_alive = value != b"close"
    if chunked:
        return status, await _read_chunks(reader), keep_alive
    if length is None:
        return status, await reader.read(), False
    return status, await reader.readexactly(length), keep_alive


async def _read_chunks(reader: asyncio.StreamReader) -> bytes:
    parts = []
    while True:
        size_line = await reader.readline()
        try:
            size = int(size_line.split(b";")[0], 16)
        except ValueError:
            raise ResponseError(f"bad chunk size line: {size_line[:80]!r}") from None
        if size == 0:
            while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                pass  # trailers
            return b"".join(parts)
        parts.append(await reader.readexactly(size))
        await reader.readexactly(2)
