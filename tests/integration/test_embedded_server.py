"""The embedded PostgreSQL's sizing: shared buffers set when ragops starts the server."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ragops.db.embedded import (
    MIN_SHARED_BUFFERS_MB,
    _postmaster_alive,
    default_shared_buffers_mb,
)

# Starts the server for a data folder (argv[1]) with shared buffers (argv[2], "" for the
# default), prints what the server reports, and exits: the package stops the server then.
START = """
import sys
from pathlib import Path
import psycopg
from ragops.db.embedded import embedded_database_url
megabytes = int(sys.argv[2]) if sys.argv[2] else None
url = embedded_database_url(Path(sys.argv[1]), megabytes)
with psycopg.connect(url) as conn:
    print(conn.execute("SHOW shared_buffers").fetchone()[0])
"""


def _start_once(data_dir: Path, megabytes: int | None) -> str:
    done = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", START, str(data_dir), str(megabytes or "")],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return done.stdout.strip()


def _postmaster_running(data_dir: Path) -> bool:
    return _postmaster_alive((data_dir / "pgdata").resolve())


def test_a_started_server_gets_the_asked_shared_buffers_and_is_still_stopped_at_exit(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"
    # A fresh folder: initialized with PostgreSQL's 128 MB, then restarted with 160.
    assert _start_once(data_dir, 160) == "160MB"
    # The restarted server is the one the package stops when the process exits.
    assert not _postmaster_running(data_dir)
    # The setting stays in the folder; a new size is applied at the next start.
    assert _start_once(data_dir, 192) == "192MB"
    assert not _postmaster_running(data_dir)


def test_an_unset_size_is_the_default_for_this_machine(tmp_path: Path) -> None:
    assert _start_once(tmp_path / "data", None) == f"{default_shared_buffers_mb()}MB"


def test_the_default_is_a_quarter_of_the_memory_under_a_container_limit(
    tmp_path: Path,
) -> None:
    v2, v1 = tmp_path / "memory.max", tmp_path / "memory.limit_in_bytes"
    v2.write_text("max\n")  # cgroup v2 without a limit
    v1.write_text("2147483648\n")  # a 2 GiB container
    assert default_shared_buffers_mb((v2, v1)) == 512


def test_the_default_is_a_quarter_of_physical_memory_without_a_limit(tmp_path: Path) -> None:
    unlimited = tmp_path / "memory.max"
    unlimited.write_text("max\n")
    physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    expected = max(MIN_SHARED_BUFFERS_MB, physical // 4 // 2**20)
    assert default_shared_buffers_mb((unlimited, tmp_path / "missing")) == expected


@pytest.mark.parametrize("limit", [64 * 2**20, 300 * 2**20])
def test_the_default_never_goes_below_postgresqls_own(tmp_path: Path, limit: int) -> None:
    small = tmp_path / "memory.max"
    small.write_text(f"{limit}\n")
    assert default_shared_buffers_mb((small,)) == MIN_SHARED_BUFFERS_MB
