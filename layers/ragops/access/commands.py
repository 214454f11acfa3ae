"""`ragops keys create|list|revoke`: API keys, managed on the database directly (the admin
path: the CLI logs in as the tables' owner and needs no key)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg

from ragops.access import keys
from ragops.settings import Settings

EXIT_USAGE = 2
# As the API's schemas allow: the longest collection name, and no NUL (PostgreSQL refuses it).
MAX_COLLECTION_CHARS = 200


def add_commands(commands: Any) -> None:
    parser = commands.add_parser("keys", help="create, list or revoke API keys")
    keys_commands = parser.add_subparsers(dest="keys_command", required=True)

    create = keys_commands.add_parser("create", help="create a key for one collection")
    create.add_argument("--collection", required=True, help="the collection the key may use")
    create.add_argument("--name", default=None, help="who or what the key is for")
    create.add_argument("--json", action="store_true", help="print the key and its record")
    create.set_defaults(run=_create)

    listing = keys_commands.add_parser("list", help="list keys (never their secrets)")
    listing.add_argument("--collection", default=None)
    listing.add_argument("--all", action="store_true", help="include revoked keys")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(run=_list)

    revoke = keys_commands.add_parser("revoke", help="revoke a key by id or shown prefix")
    revoke.add_argument("key", metavar="ID|PREFIX")
    revoke.set_defaults(run=_revoke)


@contextmanager
def _admin_connection(settings: Settings) -> Iterator[psycopg.Connection]:
    """A connection as the configured login, migrated (no models needed)."""
    from ragops.db.database import connect

    db = connect(settings)
    try:
        with db.pool.connection() as conn:
            yield conn
    finally:
        db.close()


def _collection_problem(collection: str) -> str | None:
    if not collection.strip():
        return "--collection must name a collection"
    if len(collection) > MAX_COLLECTION_CHARS:
        return f"--collection is longer than {MAX_COLLECTION_CHARS} characters"
    if "\x00" in collection:
        return "--collection may not hold a NUL character"
    return None


def _create(args: argparse.Namespace, settings: Settings) -> int:
    problem = _collection_problem(args.collection)
    if problem:
        print(f"ragops: {problem}", file=sys.stderr)
        return EXIT_USAGE
    with _admin_connection(settings) as conn:
        record, secret = keys.create_key(conn, args.collection, args.name)
    if args.json:
        print(json.dumps({"key": secret, **record.to_json()}))
        return 0
    print(secret)
    print(
        f"API key {record.prefix}… for collection {record.collection!r} (id {record.id}); "
        "it is shown only now: store it safely",
        file=sys.stderr,
    )
    return 0


def _list(args: argparse.Namespace, settings: Settings) -> int:
    with _admin_connection(settings) as conn:
        records = keys.list_keys(conn, args.collection, include_revoked=args.all)
    if args.json:
        print(json.dumps({"keys": [record.to_json() for record in records]}))
        return 0
    if not records:
        print("no API keys", file=sys.stderr)
        return 0
    for record in records:
        used = record.last_used_at.isoformat(timespec="seconds") if record.last_used_at else "never"
        state = f"revoked {record.revoked_at:%Y-%m-%d}" if record.revoked_at else "active"
        print(
            f"{record.prefix}…  {record.id}  {record.collection}  {record.name or '-'}  "
            f"created {record.created_at:%Y-%m-%d}  last used {used}  {state}"
        )
    return 0


def _revoke(args: argparse.Namespace, settings: Settings) -> int:
    with _admin_connection(settings) as conn:
        record = keys.revoke_key(conn, args.key)
    print(
        f"revoked {record.prefix}… ({record.id}) of collection {record.collection!r}; "
        "processes that looked it up stop accepting it within RAGOPS_AUTH_CACHE_SECONDS"
    )
    return 0
