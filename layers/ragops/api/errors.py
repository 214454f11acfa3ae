"""The API's errors: a status and a `detail` naming the problem, never a stack trace."""

from __future__ import annotations

import logging
from typing import Any

import psycopg
from litestar import MediaType, Request, Response
from litestar.exceptions import ClientException, SerializationException
from litestar.exceptions.responses import create_exception_response

from ragops.errors import (
    AuthenticationError,
    ConfigurationError,
    ForbiddenError,
    InvalidQueryError,
    NotFoundError,
    RagopsError,
    RateLimitedError,
)

log = logging.getLogger("ragops.api.app")


def error_response(
    status: int, message: str, headers: dict[str, str] | None = None
) -> Response[dict[str, Any]]:
    return Response(
        {"status_code": status, "detail": message},
        status_code=status,
        media_type=MediaType.JSON,
        headers=headers,
    )


def ragops_error(request: Request[Any, Any, Any], exc: RagopsError) -> Response[dict[str, Any]]:
    if isinstance(exc, AuthenticationError):
        return error_response(401, str(exc), {"WWW-Authenticate": "Bearer"})
    if isinstance(exc, ForbiddenError):
        return error_response(403, str(exc))
    if isinstance(exc, RateLimitedError):
        return error_response(429, str(exc), {"Retry-After": str(exc.retry_after)})
    if isinstance(exc, InvalidQueryError):
        return error_response(400, str(exc))
    if isinstance(exc, NotFoundError):
        return error_response(404, str(exc))
    if isinstance(exc, ConfigurationError):
        log.error("service misconfigured: %s", exc)
        return error_response(503, str(exc))
    log.exception("unexpected ragops error on %s", request.url.path)
    return error_response(500, "internal error")


def client_error(request: Request[Any, Any, Any], exc: ClientException) -> Response[Any]:
    if isinstance(exc.__cause__, SerializationException):
        # msgspec alone says "Input data was truncated"; name what is wrong with the request.
        return error_response(exc.status_code, f"the request body is not valid JSON: {exc.detail}")
    if exc.status_code == 413:
        limit = request.route_handler.resolve_request_max_body_size()
        return error_response(
            413, f"the request body is larger than {limit} bytes (RAGOPS_MAX_REQUEST_BYTES)"
        )
    return create_exception_response(request, exc)


def database_error(request: Request[Any, Any, Any], exc: psycopg.Error) -> Response[dict[str, Any]]:
    if isinstance(exc, psycopg.DataError):
        # A request value PostgreSQL cannot take (out of range, a NUL character): the
        # client's to fix, and a retry would fail the same way.
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        log.warning("invalid value on %s: %s", request.url.path, reason)
        return error_response(400, f"a value in the request is invalid: {reason}")
    log.error("database error on %s: %s", request.url.path, exc)
    return error_response(503, "the database is unavailable; try again shortly")
