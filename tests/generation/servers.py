"""Test servers: a scripted, fault-injecting chat-completions server on loopback, and the
real llama.cpp server (xllamacpp) serving SmolLM2-135M-Instruct."""

from __future__ import annotations

import itertools
import json
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from ragops.dev.local_llm import local_llm_server

Step = Callable[["_Handler", dict[str, Any]], None]
ANSWER = "According to [1], a loaf of rye costs 4 euros."


@dataclass
class Plan:
    """One scripted endpoint: attempt n gets steps[n] (the last step repeats)."""

    base_url: str
    steps: Sequence[Step]
    requests: list[dict[str, Any]] = field(default_factory=list)

    @property
    def attempts(self) -> int:
        return len(self.requests)


class FaultServer:
    """A threaded HTTP server; each `plan(...)` gets its own base URL and attempt counter."""

    def __init__(self) -> None:
        self.stopping = threading.Event()
        self._plans: dict[str, Plan] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.daemon_threads = True
        self._httpd.fault_server = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    @property
    def address(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def plan(self, *steps: Step) -> Plan:
        plan_id = str(next(self._ids))
        plan = Plan(f"{self.address}/p/{plan_id}/v1", steps)
        with self._lock:
            self._plans[plan_id] = plan
        return plan

    def _take(self, plan_id: str, request: dict[str, Any]) -> Step | None:
        with self._lock:
            plan = self._plans.get(plan_id)
            if plan is None:
                return None
            plan.requests.append(request)
            return plan.steps[min(plan.attempts - 1, len(plan.steps) - 1)]

    def close(self) -> None:
        self.stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"  # one request per connection; a body ends when it closes
    server: Any

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        match = re.fullmatch(r"/p/(\w+)/v1/chat/completions", self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        fault: FaultServer = self.server.fault_server
        step = (
            fault._take(match.group(1), {"body": body, "headers": dict(self.headers)})
            if match
            else None
        )
        if step is None:
            status(404, "no such plan")(self, body)
            return
        # The client may give up first: that is what several tests want.
        with suppress(BrokenPipeError, ConnectionResetError):
            step(self, body)

    def send(self, code: int, content_type: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()

    def write(self, data: bytes) -> None:
        self.wfile.write(data)
        self.wfile.flush()

    @property
    def stopping(self) -> threading.Event:
        stopping: threading.Event = self.server.fault_server.stopping
        return stopping


# --- steps ---------------------------------------------------------------------------------


def _chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
    event = {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}], "model": "fault"}
    event.update(extra)
    return f"data: {json.dumps(event)}\n\n".encode()


def complete(content: str = ANSWER, usage: tuple[int, int] = (40, 12)) -> Step:
    """A good answer: JSON, or SSE word by word when the request asks for a stream."""

    def step(h: _Handler, body: dict[str, Any]) -> None:
        if body.get("stream"):
            stream_tokens(re.findall(r"\S+\s*", content), usage=usage)(h, body)
            return
        payload = {
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content},
                    "finish_reason": "stop",
                }
            ],
            "model": "fault",
            "usage": {"prompt_tokens": usage[0], "completion_tokens": usage[1]},
        }
        data = json.dumps(payload).encode()
        h.send(200, "application/json", {"Content-Length": str(len(data))})
        h.write(data)

    return step


def stream_tokens(
    tokens: Sequence[str], end: str = "done", usage: tuple[int, int] = (40, 12)
) -> Step:
    """SSE deltas, then `done` ([DONE]), `truncate` (close without it) or `malformed`."""

    def step(h: _Handler, body: dict[str, Any]) -> None:
        h.send(200, "text/event-stream")
        h.write(_chunk({"role": "assistant", "content": ""}))
        for token in tokens:
            h.write(_chunk({"content": token}))
        if end == "truncate":
            return
        if end == "malformed":
            h.write(b'data: {"choices": [{"delta": {"content": "x"\n\n')
            return
        h.write(_chunk({}, "stop"))
        usage_event = {
            "choices": [],
            "model": "fault",
            "usage": {"prompt_tokens": usage[0], "completion_tokens": usage[1]},
        }
        h.write(f"data: {json.dumps(usage_event)}\n\n".encode())
        h.write(b"data: [DONE]\n\n")

    return step


def status(code: int, message: str = "", headers: dict[str, str] | None = None) -> Step:
    """An error status with an OpenAI-style error body."""

    def step(h: _Handler, body: dict[str, Any]) -> None:
        data = json.dumps({"error": {"message": message, "type": "test"}}).encode()
        h.send(code, "application/json", {"Content-Length": str(len(data)), **(headers or {})})
        h.write(data)

    return step


def malformed_json() -> Step:
    def step(h: _Handler, body: dict[str, Any]) -> None:
        if body.get("stream"):
            h.send(200, "text/event-stream")
            h.write(b"data: {this is not json}\n\n")
            return
        data = b'{"choices": [{"message": '
        h.send(200, "application/json", {"Content-Length": str(len(data))})
        h.write(data)

    return step


def slow(seconds: float, then: Step | None = None) -> Step:
    """Say nothing for `seconds` (longer than the client's read timeout), then maybe answer."""

    def step(h: _Handler, body: dict[str, Any]) -> None:
        if h.stopping.wait(seconds):
            return
        (then or complete())(h, body)

    return step


def trickle(interval: float, limit: float = 30.0) -> Step:
    """Headers, then a byte every `interval` s, never finishing: defeats a per-read timeout."""

    def step(h: _Handler, body: dict[str, Any]) -> None:
        streaming = bool(body.get("stream"))
        h.send(200, "text/event-stream" if streaming else "application/json")
        ended = time.monotonic() + limit
        while time.monotonic() < ended and not h.stopping.wait(interval):
            h.write(b": ping\n\n" if streaming else b" ")

    return step


# --- the real server -----------------------------------------------------------------------


@dataclass
class LocalLLM:
    base_url: str

    def metric(self, name: str) -> float:
        """A counter from llama.cpp's Prometheus /metrics."""
        text = httpx.get(self.base_url.removesuffix("/v1") + "/metrics", timeout=10).text
        match = re.search(rf"^llamacpp:{name} (\S+)$", text, re.MULTILINE)
        assert match, f"no metric {name}"
        return float(match.group(1))


@contextmanager
def llama_server(model: Path, n_ctx: int = 4096) -> Iterator[LocalLLM]:
    """llama.cpp's OpenAI-compatible server on a free loopback port, one thread."""
    with local_llm_server(model, threads=1, n_ctx=n_ctx) as base_url:
        yield LocalLLM(base_url)
