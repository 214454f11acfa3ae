"""Connecting: pick the database, check pgvector, migrate, and open the pool."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field

import psycopg
from pgvector.psycopg import register_vector
from psycopg.conninfo import make_conninfo
from psycopg_pool import ConnectionPool

from ragops.db.embedded import embedded_database_url
from ragops.db.migrate import migrate
from ragops.errors import DatabaseSetupError
from ragops.settings import Settings

log = logging.getLogger(__name__)

MIN_PGVECTOR = (0, 7)
ITERATIVE_SCAN_PGVECTOR = (0, 8)
# The pool retries a lost connection with a doubling delay until this many seconds pass, then
# gives up and connects again on the next request. Left at psycopg's 300 s, the delay grows so
# long during an outage that the service stays down for about as long again after it ends.
POOL_RECONNECT_SECONDS = 5.0
# The role the API's transactions run as (created by migration 0002): it owns nothing, cannot
# bypass row-level security, and sees only the collection its transaction names.
APP_ROLE = "ragops_app"
# Row-level security on documents and chunks compares `collection` with this setting.
COLLECTION_SETTING = "ragops.collection"


def version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split(".") if part.isdigit())


def ensure_pgvector(conn: psycopg.Connection) -> str:
    """Create the vector extension if needed and allowed; return its version."""
    row = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()
    if row is None:
        available = conn.execute(
            "SELECT 1 FROM pg_available_extensions WHERE name = 'vector'"
        ).fetchone()
        if available is None:
            raise DatabaseSetupError(
                "the pgvector extension is not installed on this PostgreSQL server; use a "
                "server with pgvector >= 0.7 (RDS, Aurora, the pgvector/pgvector image) or "
                "unset RAGOPS_DATABASE_URL to use the embedded PostgreSQL"
            )
        try:
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        except psycopg.errors.InsufficientPrivilege as exc:
            dbname = conn.info.dbname
            raise DatabaseSetupError(
                f"the database user {conn.info.user!r} may not create the pgvector extension; "
                f"ask an administrator to run `CREATE EXTENSION vector;` in database {dbname!r}"
            ) from exc
        row = conn.execute(
            "SELECT extversion FROM pg_extension WHERE extname = 'vector'"
        ).fetchone()
    assert row is not None
    version = str(row[0])
    if version_tuple(version) < MIN_PGVECTOR:
        raise DatabaseSetupError(
            f"pgvector {version} is too old; ragops needs >= 0.7 "
            "(`ALTER EXTENSION vector UPDATE;` after upgrading the server package)"
        )
    return version


@dataclass
class Database:
    """The connection pool and what ragops learned about the server when it connected."""

    url: str
    pool: ConnectionPool
    pgvector_version: str
    # Set in every scoped transaction rather than on the session: a pooled connection keeps
    # no state of its own, so a transaction-pooling proxy (RDS Proxy) need not pin it.
    search_settings: dict[str, str] = field(default_factory=dict)

    @property
    def iterative_scan(self) -> bool:
        return version_tuple(self.pgvector_version) >= ITERATIVE_SCAN_PGVECTOR

    def close(self) -> None:
        self.pool.close()

    @contextmanager
    def scoped(self, collection: str) -> Iterator[psycopg.Connection]:
        """A pooled connection in a transaction that sees only `collection`'s rows."""
        with (
            self.pool.connection() as conn,
            collection_scope(conn, collection, self.search_settings),
        ):
            yield conn


@contextmanager
def collection_scope(
    conn: psycopg.Connection, collection: str, extra: Mapping[str, str] | None = None
) -> Iterator[psycopg.Connection]:
    """A transaction as the API's role, limited to `collection` by row-level security.

    Every setting (and `extra`, such as the HNSW search settings) is local to the
    transaction, so the pooled connection goes back to the pool with the login's own role;
    an empty collection matches no row at all.
    """
    local = {"role": APP_ROLE, COLLECTION_SETTING: collection, **(extra or {})}
    calls = ", ".join(["set_config(%s, %s, true)"] * len(local))
    with conn.transaction():
        conn.execute(f"SELECT {calls}", [item for pair in local.items() for item in pair])
        yield conn


def resolve_database_url(settings: Settings) -> str:
    """The URL in settings, else the login in a Secrets Manager secret, else the embedded one."""
    if settings.database_url:
        return settings.database_url
    if settings.database_secret_arn:
        return database_url_from_secret(settings.database_secret_arn)
    return embedded_database_url(settings.data_dir, settings.embedded_shared_buffers_mb)


def database_url_from_secret(secret_arn: str) -> str:
    """A URL from a secret holding a URL or RDS's JSON (username, password, host, port, dbname)."""
    import boto3

    secret = boto3.client("secretsmanager").get_secret_value(SecretId=secret_arn)["SecretString"]
    return url_from_secret_string(secret_arn, secret)


def url_from_secret_string(secret_arn: str, secret: str) -> str:
    if secret.startswith(("postgresql://", "postgres://")):
        return secret
    try:
        login = json.loads(secret)
        return make_conninfo(
            host=login["host"],
            port=str(login.get("port", 5432)),
            user=login["username"],
            password=login["password"],
            dbname=login.get("dbname", "postgres"),
            sslmode=login.get("sslmode", "require"),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise DatabaseSetupError(
            f"secret {secret_arn} holds neither a PostgreSQL URL nor RDS JSON with "
            f"username, password and host ({type(exc).__name__}: {exc})"
        ) from exc


def connect(settings: Settings) -> Database:
    """Connect to the configured (or embedded) database, migrated and ready."""
    url = resolve_database_url(settings)
    try:
        with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
            version = ensure_pgvector(conn)
            applied = migrate(conn)
    except psycopg.OperationalError as exc:
        raise DatabaseSetupError(f"cannot connect to the database: {exc}") from exc
    for migration in applied:
        log.info("applied migration %04d_%s", migration.version, migration.name)
    search_settings = {
        "hnsw.ef_search": str(settings.ef_search),
        # A prepared search planned once for any parameters cannot see how many chunks a
        # question matches or which leg is cheap: measured at 10,000 chunks, hybrid, 44 ms
        # with the generic plan against 10 ms planned for each search (planning about 1 ms).
        # PostgreSQL picks per-search plans on its own while they look cheaper; this holds it.
        "plan_cache_mode": "force_custom_plan",
    }
    if version_tuple(version) >= ITERATIVE_SCAN_PGVECTOR:
        # Filters apply after the HNSW scan; without iterative scans a selective
        # filter silently returns fewer rows than asked for.
        search_settings["hnsw.iterative_scan"] = "relaxed_order"
    prepare_threshold = settings.db_prepare_threshold or None

    def configure(conn: psycopg.Connection) -> None:
        register_vector(conn)
        conn.prepare_threshold = prepare_threshold

    pool = ConnectionPool(
        url,
        min_size=settings.pool_min_size,
        max_size=settings.pool_max_size,
        kwargs={"autocommit": True},
        configure=configure,
        check=ConnectionPool.check_connection,
        reconnect_timeout=POOL_RECONNECT_SECONDS,
        open=True,
        name="ragops",
    )
    return Database(url=url, pool=pool, pgvector_version=version, search_settings=search_settings)
