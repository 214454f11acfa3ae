"""Litestar apps for the query and health functions, and their error mapping."""

from __future__ import annotations

import logging
from typing import Any

import psycopg
from litestar import Litestar, Response, get
from litestar.di import NamedDependency, Provide
from litestar.exceptions import ClientException
from litestar.handlers import HTTPRouteHandler
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme

from ragops import __version__
from ragops.access.auth import Authenticator
from ragops.api.access import PUBLIC_ROUTE, AccessMiddleware, principal_dependency
from ragops.api.errors import client_error, database_error, ragops_error
from ragops.api.observe import UNOBSERVED, RequestObserver
from ragops.api.routes import DocumentsController, SearchController, ingest_stats
from ragops.db import documents
from ragops.errors import RagopsError
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


def _service_dependency() -> Service:
    return get_service()


@get(
    "/health",
    sync_to_thread=True,
    summary="Service health",
    opt={PUBLIC_ROUTE: True},
    security=[{}],
)
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
        # Local only (`ragops dev`): counts by status, no collection's data.
        opt={UNOBSERVED: True, PUBLIC_ROUTE: True},
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
    rendering that registry (one server for local use; in Lambda, metrics are EMF).

    Every other route needs credentials (RAGOPS_AUTH); key lookups are remembered by the
    app's Authenticator for RAGOPS_AUTH_CACHE_SECONDS.
    """
    handlers: list[Any] = [SearchController, DocumentsController, ingest_stats]
    if include_health:
        handlers.append(health)
    if metrics is not None:
        handlers.append(_metrics_route(metrics))
    return Litestar(
        route_handlers=handlers,
        dependencies={
            "service": Provide(_service_dependency, sync_to_thread=False),
            "principal": Provide(principal_dependency, sync_to_thread=False),
        },
        middleware=[
            RequestObserver(),
            AccessMiddleware(Authenticator()),
        ],
        request_max_body_size=get_settings().max_request_bytes,
        exception_handlers={
            ClientException: client_error,
            RagopsError: ragops_error,
            psycopg.Error: database_error,
        },
        # Logging is the host's to configure (Lambda, `ragops dev`), not the framework's.
        logging_config=None,
        openapi_config=OpenAPIConfig(
            title="ragops",
            version=__version__,
            path="/docs",
            render_plugins=[SwaggerRenderPlugin()],
            components=Components(security_schemes=SECURITY_SCHEMES),
            security=[{"bearer": []}, {"api_key": []}],
        ),
    )


SECURITY_SCHEMES: dict[str, Any] = {
    "bearer": SecurityScheme(
        type="http", scheme="bearer", description="An API key (`ragops keys create`)."
    ),
    "api_key": SecurityScheme(
        type="apiKey", name="X-API-Key", security_scheme_in="header", description="The same."
    ),
}


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
