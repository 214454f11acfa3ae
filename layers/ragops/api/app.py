"""Litestar apps for the query and health functions, and their error mapping."""

from __future__ import annotations

import logging
from typing import Any

import psycopg
from litestar import Litestar, MediaType, Request, Response, get
from litestar.di import NamedDependency, Provide
from litestar.exceptions import ClientException, SerializationException
from litestar.exceptions.responses import create_exception_response
from litestar.handlers import HTTPRouteHandler
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import SwaggerRenderPlugin

from ragops import __version__
from ragops.api.observe import UNOBSERVED, RequestObserver
from ragops.api.routes import DocumentsController, SearchController, ingest_stats
from ragops.db import documents
from ragops.errors import ConfigurationError, InvalidQueryError, NotFoundError, RagopsError
from ragops.health import check_health
from ragops.observability.logs import configure_service_logging
from ragops.observability.metrics import (
    DOCUMENTS,
    PROMETHEUS_CONTENT_TYPE,
    LabelValues,
    PrometheusRegistry,
    set_recorder,
)
from ragops.resources import get_service
from ragops.service import Service
from ragops.settings import get_settings

log = logging.getLogger(__name__)


def _error(status: int, message: str) -> Response[dict[str, Any]]:
    return Response(
        {"status_code": status, "detail": message}, status_code=status, media_type=MediaType.JSON
    )


def _ragops_error(request: Request[Any, Any, Any], exc: RagopsError) -> Response[dict[str, Any]]:
    if isinstance(exc, InvalidQueryError):
        return _error(400, str(exc))
    if isinstance(exc, NotFoundError):
        return _error(404, str(exc))
    if isinstance(exc, ConfigurationError):
        log.error("service misconfigured: %s", exc)
        return _error(503, str(exc))
    log.exception("unexpected ragops error on %s", request.url.path)
    return _error(500, "internal error")


def _client_error(request: Request[Any, Any, Any], exc: ClientException) -> Response[Any]:
    if isinstance(exc.__cause__, SerializationException):
        # msgspec alone says "Input data was truncated"; name what is wrong with the request.
        return _error(exc.status_code, f"the request body is not valid JSON: {exc.detail}")
    return create_exception_response(request, exc)


def _database_error(
    request: Request[Any, Any, Any], exc: psycopg.Error
) -> Response[dict[str, Any]]:
    if isinstance(exc, psycopg.DataError):
        # A request value PostgreSQL cannot take (out of range, a NUL character): the
        # client's to fix, and a retry would fail the same way.
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        log.warning("invalid value on %s: %s", request.url.path, reason)
        return _error(400, f"a value in the request is invalid: {reason}")
    log.error("database error on %s: %s", request.url.path, exc)
    return _error(503, "the database is unavailable; try again shortly")


def _service_dependency() -> Service:
    return get_service()


@get("/health", sync_to_thread=True, summary="Service health")
def health(service: NamedDependency[Service]) -> Response[dict[str, Any]]:
    """200 when every check passes, 503 naming the failing checks otherwise."""
    report = check_health(service)
    return Response(report.to_json(), status_code=503 if report.failing else 200)


def _metrics_route(registry: PrometheusRegistry) -> HTTPRouteHandler:
    @get(
        "/metrics",
        sync_to_thread=True,
        include_in_schema=False,
        media_type=PROMETHEUS_CONTENT_TYPE,
        opt={UNOBSERVED: True},
    )
    def metrics(service: NamedDependency[Service]) -> str:
        """The registry in Prometheus text format, with documents by status read now."""
        return registry.render({DOCUMENTS: _documents_by_status(service)})

    return metrics


def _documents_by_status(service: Service) -> dict[LabelValues, float]:
    """One indexed GROUP BY; none at all when the database is down (the scrape still works)."""
    try:
        with service.db.pool.connection() as conn:
            counts = documents.status_counts(conn)
    except (psycopg.Error, RagopsError) as exc:
        log.warning("metrics: documents by status unavailable: %s", exc)
        return {}
    return {(status,): counts.get(status, 0) for status in ("pending", "ready", "failed")}


def create_query_app(
    include_health: bool = False, metrics: PrometheusRegistry | None = None
) -> Litestar:
    """The query API; with `include_health`, also /health, and with `metrics`, GET /metrics
    rendering that registry (one server for local use; in Lambda, metrics are EMF)."""
    handlers: list[Any] = [SearchController, DocumentsController, ingest_stats]
    if include_health:
        handlers.append(health)
    if metrics is not None:
        handlers.append(_metrics_route(metrics))
    return Litestar(
        route_handlers=handlers,
        dependencies={"service": Provide(_service_dependency, sync_to_thread=False)},
        middleware=[RequestObserver()],
        exception_handlers={
            ClientException: _client_error,
            RagopsError: _ragops_error,
            psycopg.Error: _database_error,
        },
        # Logging is the host's to configure (Lambda, `ragops dev`), not the framework's.
        logging_config=None,
        openapi_config=OpenAPIConfig(
            title="ragops",
            version=__version__,
            path="/docs",
            render_plugins=[SwaggerRenderPlugin()],
        ),
    )


def create_local_app() -> Litestar:
    """The query API as served locally (`ragops dev`, uvicorn): /health and /metrics too,
    this process's metrics in that registry, and JSON log lines as in Lambda."""
    configure_service_logging(get_settings().log_level)
    registry = PrometheusRegistry()
    set_recorder(registry)
    return create_query_app(include_health=True, metrics=registry)


def create_health_app() -> Litestar:
    return Litestar(
        route_handlers=[health],
        dependencies={"service": Provide(_service_dependency, sync_to_thread=False)},
        middleware=[RequestObserver()],
        openapi_config=None,
        logging_config=None,
    )
