"""Who a request acts for: an API key's collection, a JWT's collections, or anyone (auth off).

Behind API Gateway with a JWT authorizer, the gateway has verified the token and Mangum
passes its claims in the event; they are trusted only when RAGOPS_JWT_COLLECTIONS_CLAIM
names the claim to read. Everywhere else a request needs an API key.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ragops.access.keys import KeyGrant, authenticate, is_well_formed, key_hash
from ragops.access.ratelimit import enforce_rate_limit
from ragops.db.database import Database, collection_scope
from ragops.errors import AuthenticationError, ForbiddenError
from ragops.settings import Settings

# Key lookups a process remembers; past this, expired ones go first, then the oldest.
CACHE_ENTRIES = 4096
# The request counter and a key's last-used time are all these transactions write: one lost
# in a crash is harmless, so their commits do not wait for the WAL to reach the disk (0.25 ms
# a request on this machine's disk; more where each commit also waits for a standby).
NO_FLUSH = {"synchronous_commit": "off"}
_CLAIM_SEPARATORS = re.compile(r"[\s,]+")


@dataclass(frozen=True)
class Principal:
    """The collections a request may use (None: any) and what its rate limit counts."""

    collections: tuple[str, ...] | None
    subject: str | None = None

    def collection_for(self, requested: str | None, default: str) -> str:
        """The collection a request acts on: the one it names, if allowed, else its own."""
        if self.collections is None:
            return requested or default
        if requested is None:
            return self.collections[0]
        if requested not in self.collections:
            raise ForbiddenError(f"these credentials do not grant collection {requested!r}")
        return requested


ANYONE = Principal(collections=None)


def _key_principal(grant: KeyGrant | None) -> Principal:
    if grant is None:
        raise AuthenticationError("the API key is not valid (unknown or revoked)")
    return Principal((grant.collection,), f"key:{grant.key_id}")


def _claims_principal(claims: Mapping[str, Any], claim: str) -> Principal:
    subject = claims.get("sub")
    return Principal(claimed_collections(claims, claim), f"jwt:{subject}" if subject else None)


def presented_key(headers: Mapping[str, str]) -> str:
    """The API key in `Authorization: Bearer` or `X-API-Key`; a clear 401 if there is none."""
    authorization = headers.get("authorization")
    if authorization:
        scheme, _, value = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise AuthenticationError("the Authorization header must be `Bearer <API key>`")
        secret = value.strip()
    else:
        secret = (headers.get("x-api-key") or "").strip()
    if not secret:
        raise AuthenticationError(
            "an API key is required: send `Authorization: Bearer <key>` or `X-API-Key: <key>`"
        )
    if not is_well_formed(secret):
        raise AuthenticationError("the API key is malformed (ragops keys start with rgo_)")
    return secret


def jwt_claims(event: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    """The claims API Gateway's JWT authorizer put into the event, if it did."""
    if not event:
        return None
    authorizer = (event.get("requestContext") or {}).get("authorizer") or {}
    claims = (authorizer.get("jwt") or {}).get("claims")
    return claims if isinstance(claims, Mapping) else None


def claimed_collections(claims: Mapping[str, Any], claim: str) -> tuple[str, ...]:
    """A claim holding a list, or a space or comma separated string (API Gateway renders a
    JSON array claim as `[a b]`)."""
    value = claims.get(claim)
    if isinstance(value, list):
        names = [str(item).strip() for item in value]
    elif isinstance(value, str):
        names = _CLAIM_SEPARATORS.split(value.strip().removeprefix("[").removesuffix("]"))
    else:
        names = []
    collections = tuple(dict.fromkeys(name for name in names if name))
    if not collections:
        raise ForbiddenError(f"the token's {claim!r} claim names no collection")
    return collections


class Authenticator:
    """Turns a request's credentials into a Principal; remembers key lookups for a while."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[float, KeyGrant | None]] = {}

    def authenticate(
        self,
        db: Database,
        settings: Settings,
        headers: Mapping[str, str],
        event: Mapping[str, Any] | None = None,
    ) -> Principal:
        """The request's principal, its request counted; raises 401, 403 or 429 errors."""
        known = self.remembered(settings, headers, event)
        if known is not None:
            return known
        claims = jwt_claims(event) if settings.jwt_collections_claim else None
        if claims is not None and settings.jwt_collections_claim:
            principal = _claims_principal(claims, settings.jwt_collections_claim)
            if principal.subject and settings.rate_limit_per_minute:
                with db.pool.connection() as conn, collection_scope(conn, "", NO_FLUSH):
                    enforce_rate_limit(conn, principal.subject, settings.rate_limit_per_minute)
            return principal
        secret = presented_key(headers)
        # Both lookups run as the API's role, which reaches keys and counters only through
        # the two functions of migration 0002; an empty collection shows no document.
        with db.pool.connection() as conn, collection_scope(conn, "", NO_FLUSH):
            principal = _key_principal(self._grant(conn, secret, settings.auth_cache_seconds))
            if principal.subject and settings.rate_limit_per_minute:
                enforce_rate_limit(conn, principal.subject, settings.rate_limit_per_minute)
        return principal

    def remembered(
        self,
        settings: Settings,
        headers: Mapping[str, str],
        event: Mapping[str, Any] | None = None,
    ) -> Principal | None:
        """The principal when the database has nothing to add, else None (`authenticate`).

        With no rate limit to count, that is: auth off, a token's claims, or a key looked up
        less than RAGOPS_AUTH_CACHE_SECONDS ago. No I/O, so an event loop may call it; it
        refuses what `authenticate` would refuse, with the same errors.
        """
        if settings.auth == "off":
            return ANYONE
        if settings.rate_limit_per_minute:
            return None
        claims = jwt_claims(event) if settings.jwt_collections_claim else None
        if claims is not None and settings.jwt_collections_claim:
            return _claims_principal(claims, settings.jwt_collections_claim)
        cached = self._cached(key_hash(presented_key(headers)))
        return None if cached is None else _key_principal(cached[1])

    def _cached(self, digest: str) -> tuple[float, KeyGrant | None] | None:
        """The unexpired lookup of a key's hash: (expiry, its grant or None if refused)."""
        with self._lock:
            cached = self._cache.get(digest)
        return cached if cached is not None and cached[0] > self._clock() else None

    def _grant(self, conn: Any, secret: str, ttl: float) -> KeyGrant | None:
        # Remembered by hash: the process keeps no key it was sent.
        digest = key_hash(secret)
        cached = self._cached(digest)
        if cached is not None:
            return cached[1]
        now = self._clock()
        grant = authenticate(conn, secret)
        if ttl > 0:
            self._remember(digest, now + ttl, grant)
        return grant

    def _remember(self, digest: str, expires: float, grant: KeyGrant | None) -> None:
        with self._lock:
            if len(self._cache) >= CACHE_ENTRIES:
                now = self._clock()
                for key in [k for k, (at, _) in self._cache.items() if at <= now]:
                    del self._cache[key]
                while len(self._cache) >= CACHE_ENTRIES:
                    del self._cache[next(iter(self._cache))]
            self._cache[digest] = (expires, grant)

    def forget(self) -> None:
        """Drop every remembered lookup (a revocation takes effect at once in this process)."""
        with self._lock:
            self._cache.clear()
