"""The API's access check: every route needs credentials unless it opts out (/health).

The check runs before the route: the request is authenticated (API key, or JWT claims
behind API Gateway), counted against its rate limit, and its Principal is handed to the
route, which scopes every database transaction to a collection the Principal grants.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import Any, cast

import anyio.to_thread
import psycopg
from litestar import Request, Response
from litestar.datastructures import Headers
from litestar.enums import ScopeType
from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, Receive, Scope, Send

from ragops.access.auth import Authenticator, Principal
from ragops.api.errors import database_error, ragops_error
from ragops.errors import RagopsError
from ragops.resources import get_service
from ragops.service import Service

# A route handler `opt` key: the route needs no credentials.
PUBLIC_ROUTE = "public_route"


class AccessMiddleware(ASGIMiddleware):
    """Authenticates each request (in a worker thread when it needs the database: lookups
    and rate-limit counts are blocking calls).

    A refusal is answered here, inside the request observer, so it is logged with its
    status and request id like any other response.
    """

    scopes = (ScopeType.HTTP,)
    exclude_opt_key = PUBLIC_ROUTE

    def __init__(self, authenticator: Authenticator):
        self.authenticator = authenticator
        self.should_bypass_for_scope = _schema_request

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        try:
            principal = await self._principal(scope)
        except (RagopsError, psycopg.Error) as exc:
            request: Request[Any, Any, Any] = Request(scope, receive)
            response: Response[Any] = (
                ragops_error(request, exc)
                if isinstance(exc, RagopsError)
                else database_error(request, exc)
            )
            await response.to_asgi_response(app=None, request=request)(scope, receive, send)
            return
        scope["user"] = principal
        await next_app(scope, receive, send)

    async def _principal(self, scope: Scope) -> Principal:
        service = get_service()
        event = cast("dict[str, Any]", scope).get("aws.event")
        headers = Headers.from_scope(scope)
        # A remembered key with no request to count is answered here, without a thread.
        known = self.authenticator.remembered(service.settings, headers, event)
        if known is not None:
            return known
        check = partial(self._authenticate, service, headers, event)
        return await anyio.to_thread.run_sync(check)

    def _authenticate(
        self, service: Service, headers: Mapping[str, str], event: Mapping[str, Any] | None
    ) -> Principal:
        # service.db may open the pool on a cold start: blocking, so it stays in this thread.
        return self.authenticator.authenticate(service.db, service.settings, headers, event)


def _schema_request(scope: Scope) -> bool:
    """The OpenAPI document and its viewer are public."""
    return scope["path"] == "/docs" or scope["path"].startswith("/docs/")


def principal_dependency(request: Request[Any, Any, Any]) -> Principal:
    """The Principal the access check put on the request."""
    return cast("Principal", request.user)
