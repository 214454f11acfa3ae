"""Litestar apps for the query and health functions, and their error mapping."""

from __future__ import annotations

import logging
from typing import Any

import psycopg
from litestar import Litestar, MediaType, Request, Response, get
from litestar.di import NamedDependency, Provide
from litestar.exceptions import ClientException, SerializationException
from litestar.exceptions.responses import create_exception_response
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import SwaggerRenderPlugin

from ragops import __version__
from ragops.api.routes import DocumentsController, SearchController, ingest_stats
from ragops.errors import ConfigurationError, InvalidQueryError, NotFoundError, RagopsError
from ragops.health import check_health
from ragops.resources import get_service
from ragops.service import Service

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


def create_query_app(include_health: bool = False) -> Litestar:
    """The query API; with `include_health`, also /health (one server for local use)."""
    handlers: list[Any] = [SearchController, DocumentsController, ingest_stats]
    if include_health:
        handlers.append(health)
    return Litestar(
        route_handlers=handlers,
        dependencies={"service": Provide(_service_dependency, sync_to_thread=False)},
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


def create_health_app() -> Litestar:
    return Litestar(
        route_handlers=[health],
        dependencies={"service": Provide(_service_dependency, sync_to_thread=False)},
        openapi_config=None,
        logging_config=None,
    )
