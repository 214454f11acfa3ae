"""What the API tells about each request: one log line, the query metrics, the stage spans.

`RequestObserver` (middleware) gives every routed request an id, returned in `X-Request-Id`,
and logs one line when the response is sent. Inside a search or answer route,
`observe_query` adds what the service reported (collection, mode, per-stage timings, result
counts) to that line, to the stage histograms and to the tracing hooks. The query text is
logged at DEBUG only, cut short; document text never.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from litestar.datastructures import MutableScopeHeaders
from litestar.enums import ScopeType
from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from ragops.observability import metrics
from ragops.observability.logs import log_fields
from ragops.observability.metrics import QUERIES, STAGE_LATENCY
from ragops.observability.tracing import Span, report_stage, stage

if TYPE_CHECKING:
    from ragops.generation.answerer import StreamEvent
    from ragops.retrieval.search import SearchRequest, SearchResponse

log = logging.getLogger("ragops.api")

REQUEST_ID_HEADER = "X-Request-Id"
# A route handler `opt` key: the route's requests count in ragops_queries_total.
COUNTED_AS_QUERY = "counted_as_query"
# A route handler `opt` key: no request line for this route (/metrics, scraped every few s).
UNOBSERVED = "unobserved"
# The service's stages, in the order they run; "total" is the service's whole call.
STAGES = ("embed", "retrieve", "rerank", "generate")
QUERY_LOG_CHARS = 200
# An incoming id is kept only if it is a plain token (it is echoed and logged).
_CLIENT_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/+=-]{0,127}")


@dataclass
class RequestRecord:
    """The request's log line, filled in as the request goes."""

    request_id: str
    method: str
    route: str
    status: int = 500  # until a response starts: an exception escaped
    fields: dict[str, Any] = field(default_factory=dict)


_current: ContextVar[RequestRecord | None] = ContextVar("ragops_request", default=None)


def _extension(scope: Scope, key: str) -> Any:
    """A scope key Litestar's types do not declare (Mangum's `aws.event`, the path template)."""
    return cast("dict[str, Any]", scope).get(key)


def request_id(scope: Scope) -> str:
    """API Gateway's request id behind Mangum, else the client's X-Request-Id, else a new one."""
    event = _extension(scope, "aws.event")
    gateway_id = event.get("requestContext", {}).get("requestId") if event else None
    if gateway_id:
        return str(gateway_id)
    for name, value in scope["headers"]:
        if name.lower() == b"x-request-id":
            incoming = value.decode("latin-1")
            if _CLIENT_REQUEST_ID.fullmatch(incoming):
                return incoming
    return str(uuid.uuid4())


class RequestObserver(ASGIMiddleware):
    """Gives each routed request an id and logs one line for it once it has been answered."""

    scopes = (ScopeType.HTTP,)
    exclude_opt_key = UNOBSERVED

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        record = RequestRecord(
            request_id(scope),
            _extension(scope, "method"),
            _extension(scope, "path_template") or scope["path"],
        )
        context = _extension(scope, "aws.context")
        if context is not None:
            record.fields["lambda_request_id"] = context.aws_request_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                record.status = message["status"]
                MutableScopeHeaders.from_message(message)[REQUEST_ID_HEADER] = record.request_id
            await send(message)

        started = time.perf_counter()
        token = _current.set(record)
        try:
            with log_fields(request_id=record.request_id):
                await next_app(scope, receive, send_with_id)
        finally:
            _current.reset(token)
            duration_ms = round((time.perf_counter() - started) * 1000, 3)
            _finish(scope, record, duration_ms)


def _finish(scope: Scope, record: RequestRecord, duration_ms: float) -> None:
    handler = scope.get("route_handler")
    if handler is not None and handler.opt.get(COUNTED_AS_QUERY):
        mode = str(record.fields.get("mode", "unknown"))
        metrics.record(QUERIES, route=record.route, mode=mode, status=str(record.status))
    log.log(
        logging.ERROR if record.status >= 500 else logging.INFO,
        "%s %s %d",
        record.method,
        record.route,
        record.status,
        extra={
            "request_id": record.request_id,
            "method": record.method,
            "route": record.route,
            "status": record.status,
            "duration_ms": duration_ms,
            **record.fields,
        },
    )


class ObservedQuery:
    """A search or answer under way: what the service reports goes to the request's line."""

    def __init__(self, record: RequestRecord, span: Span):
        self._record = record
        self._span = span

    def searched(self, response: SearchResponse) -> None:
        self._timings(response.timings_ms)
        self._record.fields["results"] = len(response.results)

    def answered(self, body: Mapping[str, Any]) -> None:
        """From the response body (`Answer.to_json()`), so streams and whole answers agree."""
        meta = body["meta"]
        self._timings(meta["timings_ms"])
        self._record.fields.update(
            answer_mode=meta["mode"],
            citations=len(body["citations"]),
            chunks_used=meta["chunks_used"],
            usage=body["usage"],
        )

    def answer_stream(self, events: Iterator[StreamEvent]) -> Iterator[StreamEvent]:
        """The events, unchanged; the final one's figures are recorded as it passes."""
        for event in events:
            if event.event == "final":
                self.answered(event.data)
            yield event

    def _timings(self, timings_ms: Mapping[str, float]) -> None:
        """Log, time and trace the service's stages; a stage it reports as 0 did not run.

        The service reports durations only, so the spans are laid end to end from the
        call's start: their lengths are exact, their starts approximate.
        """
        self._record.fields["timings_ms"] = dict(timings_ms)
        route = self._record.route
        start = self._span.start
        for name in STAGES:
            duration_ms = timings_ms.get(name, 0.0)
            if duration_ms:
                report_stage(name, start, duration_ms, route=route)
                metrics.record(STAGE_LATENCY, duration_ms, route=route, stage=name)
                start += duration_ms / 1000
        if timings_ms.get("total"):
            metrics.record(STAGE_LATENCY, timings_ms["total"], route=route, stage="total")


@contextmanager
def observe_query(name: str, search: SearchRequest) -> Iterator[ObservedQuery]:
    """The service call inside the block as the stage `name`, observed for this request."""
    record = _current.get() or RequestRecord(str(uuid.uuid4()), "", name)
    record.fields.update(
        collection=search.filters.collection,
        mode=search.mode,
        top_k=search.top_k,
        rerank=search.rerank,
    )
    log.debug("query text", extra={"query": search.query[:QUERY_LOG_CHARS]})
    with stage(name, route=record.route) as span:
        yield ObservedQuery(record, span)
