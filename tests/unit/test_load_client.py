"""The load benchmark's HTTP client against a loopback server that answers as scripted."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
# What the server does with each request it reads, by connection and request number.
Script = Callable[[int, int, dict[str, object]], Awaitable[bytes | None]]


@pytest.fixture
def loadclient(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(BENCH))
    import loadclient

    return loadclient


def _json_response(body: object, *extra: str) -> bytes:
    payload = json.dumps(body).encode()
    head = ["HTTP/1.1 200 OK", "content-type: application/json", *extra]
    head.append(f"content-length: {len(payload)}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + payload


def _chunked_response(body: object) -> bytes:
    payload = json.dumps(body).encode()
    parts = [payload[:5], payload[5:]]
    chunks = b"".join(f"{len(p):x}\r\n".encode() + p + b"\r\n" for p in parts)
    return b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n" + chunks + b"0\r\n\r\n"


async def _serve(script: Script) -> tuple[asyncio.Server, int, list[int]]:
    """A server that reads each request and writes what the script returns (None: close)."""
    connections: list[int] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        number = len(connections)
        connections.append(number)
        served = 0
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(
                int(line.split(b":")[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length")
            )
            body = json.loads(await reader.readexactly(length))
            answer = await script(number, served, body)
            served += 1
            if answer is None:
                writer.close()
                return
            writer.write(answer)
            await writer.drain()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1], connections


def test_bodies_sized_or_chunked_come_back_decoded_on_one_connection(
    loadclient: ModuleType,
) -> None:
    async def script(connection: int, served: int, body: dict[str, object]) -> bytes:
        echo = {"you_sent": body, "connection": connection}
        return _chunked_response(echo) if served % 2 else _json_response(echo)

    async def run() -> tuple[list[tuple[int, object]], list[int]]:
        server, port, connections = await _serve(script)
        client = loadclient.JsonConnection("127.0.0.1", port, {"Authorization": "Bearer k"})
        answers = [await client.post("/v1/search", {"query": f"q{i}"}) for i in range(4)]
        await client.close()
        server.close()
        return answers, connections

    answers, connections = asyncio.run(run())
    assert [status for status, _ in answers] == [200] * 4
    assert [body for _, body in answers] == [
        {"you_sent": {"query": f"q{i}"}, "connection": 0} for i in range(4)
    ]
    assert connections == [0]


def test_a_kept_connection_the_server_closed_is_opened_again(loadclient: ModuleType) -> None:
    """Closed after an answer (Connection: close), or closed unanswered: the request is
    sent again once on a new connection."""

    async def script(connection: int, served: int, body: dict[str, object]) -> bytes | None:
        if connection == 0:
            return _json_response({"n": 0}, "connection: close")
        if connection == 1 and served == 1:
            return None  # closes a kept connection without answering
        return _json_response({"connection": connection, "served": served})

    async def run() -> tuple[list[tuple[int, object]], list[int]]:
        server, port, connections = await _serve(script)
        client = loadclient.JsonConnection("127.0.0.1", port)
        answers = [await client.post("/", {"i": i}) for i in range(3)]
        await client.close()
        server.close()
        return answers, connections

    answers, connections = asyncio.run(run())
    assert answers == [
        (200, {"n": 0}),
        (200, {"connection": 1, "served": 0}),
        (200, {"connection": 2, "served": 0}),
    ]
    assert connections == [0, 1, 2]


def test_a_new_connection_closed_unanswered_or_garbled_is_an_error(
    loadclient: ModuleType,
) -> None:
    async def closing(connection: int, served: int, body: dict[str, object]) -> bytes | None:
        return None

    async def garbling(connection: int, served: int, body: dict[str, object]) -> bytes:
        return b"SSH-2.0-OpenSSH\r\n\r\n"

    async def first_answer(script: Script) -> None:
        server, port, _ = await _serve(script)
        try:
            await loadclient.JsonConnection("127.0.0.1", port).post("/", {})
        finally:
            server.close()

    with pytest.raises(loadclient.UnansweredError):
        asyncio.run(first_answer(closing))
    with pytest.raises(loadclient.ResponseError, match="not an HTTP/1\\.1 status line"):
        asyncio.run(first_answer(garbling))


def test_a_rows_stage_medians_pool_every_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(BENCH))
    import load

    def one_pass(
        latencies: list[float], rerank: list[float], outside: list[float]
    ) -> dict[str, object]:
        return {
            "latencies": latencies,
            "stages": {"embed": [4.0] * len(latencies), "retrieve": [10.0, 12.0], "rerank": rerank},
            "outside": outside,
            "errors": [],
            "seconds": 1.0,
        }

    row = load._summarize(
        "/v1/search",
        1,
        [
            one_pass([20.0, 30.0], [100.0, 300.0], [1.0, 2.0]),
            one_pass([40.0, 50.0], [200.0, 400.0], [3.0, 9.0]),
        ],
    )
    assert row["stage_p50_ms"] == {"embed": 4.0, "retrieve": 11.0, "rerank": 250.0}
    assert row["outside_p50_ms"] == 2.5
    assert row["stage_share"]["rerank"] == pytest.approx(1000.0 / (16.0 + 44.0 + 1000.0))
    assert load._stage_medians(row) == "4.0 / 11.0 / 250.0 / 2.5"
    assert load._stage_medians({"route": "older results"}) == "-"
