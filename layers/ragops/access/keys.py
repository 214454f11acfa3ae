"""API keys: created, listed and revoked on the admin path; only their hash is stored.

A key is `rgo_` and 32 random bytes (URL-safe base64). With that much entropy a plain
SHA-256 is as good as a slow, salted hash: there is nothing to guess.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

from ragops.errors import NotFoundError

KEY_PREFIX = "rgo_"
# What `ragops keys list` shows of a key: the prefix and 8 random characters.
SHOWN_CHARS = 12
_KEY = re.compile(r"rgo_[A-Za-z0-9_-]{43}")


@dataclass(frozen=True)
class ApiKey:
    """A stored key, without its secret."""

    id: uuid.UUID
    collection: str
    name: str | None
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "collection": self.collection,
            "name": self.name,
            "prefix": self.prefix,
            "created_at": self.created_at.isoformat(),
            "last_used_at": self.last_used_at.isoformat() if self.last_used_at else None,
            "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
        }


@dataclass(frozen=True)
class KeyGrant:
    """What a valid key grants: its one collection."""

    key_id: uuid.UUID
    collection: str


def new_secret() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def key_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def is_well_formed(secret: str) -> bool:
    """Whether `secret` has the shape of a ragops key (checked before any lookup)."""
    return _KEY.fullmatch(secret) is not None


_COLUMNS = "id, collection, name, prefix, created_at, last_used_at, revoked_at"


def create_key(
    conn: psycopg.Connection, collection: str, name: str | None = None
) -> tuple[ApiKey, str]:
    """A new key for `collection`: the stored record and the secret, which is not kept."""
    secret = new_secret()
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            f"""INSERT INTO api_keys (collection, name, prefix, key_hash)
                VALUES (%s, %s, %s, %s) RETURNING {_COLUMNS}""",
            (collection, name, secret[:SHOWN_CHARS], key_hash(secret)),
        ).fetchone()
    assert row is not None
    return ApiKey(**row), secret


def list_keys(
    conn: psycopg.Connection, collection: str | None = None, include_revoked: bool = False
) -> list[ApiKey]:
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            f"""SELECT {_COLUMNS} FROM api_keys
                WHERE (%(collection)s::text IS NULL OR collection = %(collection)s)
                  AND (%(all)s OR revoked_at IS NULL)
                ORDER BY collection, created_at""",
            {"collection": collection, "all": include_revoked},
        ).fetchall()
    return [ApiKey(**row) for row in rows]


def revoke_key(conn: psycopg.Connection, reference: str) -> ApiKey:
    """Revoke the key with this id or shown prefix; an unknown or ambiguous one is refused."""
    try:
        condition, value = "id = %s", str(uuid.UUID(reference))
    except ValueError:
        condition, value = "prefix = %s", reference
    with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            f"""UPDATE api_keys SET revoked_at = coalesce(revoked_at, now())
                WHERE {condition} RETURNING {_COLUMNS}""",
            (value,),
        ).fetchall()
        if len(rows) > 1:
            # Leaving the transaction by an exception rolls the revocations back.
            raise NotFoundError(f"{len(rows)} keys start with {reference!r}; revoke one by its id")
    if not rows:
        raise NotFoundError(f"no API key with id or prefix {reference!r} (see `ragops keys list`)")
    return ApiKey(**rows[0])


def authenticate(conn: psycopg.Connection, secret: str) -> KeyGrant | None:
    """The grant of a valid, unrevoked key; None for any other. Records its use."""
    row = conn.execute(
        "SELECT key_id, collection FROM ragops_authenticate(%s)", (key_hash(secret),)
    ).fetchone()
    return KeyGrant(key_id=row[0], collection=str(row[1])) if row else None
