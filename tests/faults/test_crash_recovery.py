"""kill -9 of the embedded PostgreSQL and of the process that owns it, then a restart.

A separate Python process runs ragops on an embedded server in the test's folder, ingests
one document, and starts writing a second; the test kills the postmaster and that process
while the second document's write transaction is open, then starts the server again.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import psutil  # type: ignore[import-untyped]
import psycopg

from ragops.service import Service
from ragops.settings import Settings
from tests.faults.conftest import (
    TALLY,
    EmbeddedServer,
    injected,
    pause_copy_at,
    release_server,
    remove_copy_pause,
)
from tests.faults.test_database_outage import PAUSE_AT, harbour_log

OWNER = """
import json, sys
from pathlib import Path
from ragops.db.documents import DocumentVersion
from ragops.service import Service
from ragops.settings import Settings

data_dir, model_dir, kept, torn = sys.argv[1:5]
settings = Settings(
    model_dir=Path(model_dir), data_dir=Path(data_dir), chunk_tokens=48, chunk_overlap=8,
    _env_file=None,
)
service = Service(settings)

def ingest(source, path):
    data = Path(path).read_bytes()
    version = DocumentVersion("default", source, size_bytes=len(data))
    return service.ingestor.ingest_bytes(data, version, "log.md")

outcome = ingest("s3://harbour/kept.md", kept)
print(json.dumps({"url": service.db.url, "kept": outcome.status, "chunks": outcome.chunks}))
sys.stdout.flush()
sys.stdin.readline()  # the test has set its trap
ingest("s3://harbour/torn.md", torn)
print("the torn write finished", flush=True)
"""


def test_kill_9_keeps_committed_documents_and_drops_the_open_write(
    tmp_path: Path, model_dir: Path
) -> None:
    data_dir = tmp_path / "crash"
    kept, torn = tmp_path / "kept.md", tmp_path / "torn.md"
    kept.write_bytes(harbour_log("kept"))
    torn.write_bytes(harbour_log("torn"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAGOPS_")}
    owner = subprocess.Popen(
        [sys.executable, "-c", OWNER, str(data_dir), str(model_dir), str(kept), str(torn)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    server: EmbeddedServer | None = None
    try:
        assert owner.stdout is not None
        assert owner.stdin is not None
        first = json.loads(owner.stdout.readline())
        assert first["kept"] == "ingested"
        server = EmbeddedServer(data_dir, first["url"])
        pause = pause_copy_at(server.url, PAUSE_AT)
        owner.stdin.write("go\n")
        owner.stdin.flush()
        server.wait_for_backend("COPY chunks", "advisory")

        postmaster = server.kill()
        owner.kill()
        owner.wait(timeout=30)
        pause.release()
        injected("kill -9 of the postmaster and its owning process")

        server.start()  # this process now; the package's handles still list the dead one
        restarted = server.postmaster_pid()
        assert restarted != postmaster
        remove_copy_pause(server.url)
        with psycopg.connect(server.url, autocommit=True) as conn:
            rows = conn.execute(
                """SELECT d.source, d.status, d.chunk_count, count(c.id), count(DISTINCT c.ordinal)
                   FROM documents d LEFT JOIN chunks c ON c.document_id = d.id
                   GROUP BY d.id ORDER BY d.source"""
            ).fetchall()
        settings = Settings(
            database_url=server.url, model_dir=model_dir, data_dir=data_dir, _env_file=None
        )
        service = Service(settings)
        try:
            request = service.searcher.request("crates of copper at berth", top_k=3)
            results = service.searcher.search(request).results
        finally:
            service.close()
    finally:
        if owner.poll() is None:
            owner.kill()
            owner.wait(timeout=30)
        if server is not None:
            release_server(server.pgdata)

    chunks = first["chunks"]
    assert chunks > PAUSE_AT
    # The committed document survived whole; the torn one has no chunk (its row is the
    # pending marker written before embedding, committed long before the kill).
    assert rows == [
        ("s3://harbour/kept.md", "ready", chunks, chunks, chunks),
        ("s3://harbour/torn.md", "pending", 0, 0, 0),
    ]
    assert results
    assert {r.source for r in results} == {"s3://harbour/kept.md"}
    TALLY["documents"] += 2
    # The last process to let go stopped the server, though the killed one never let go.
    deadline = time.monotonic() + 10
    while _running(restarted) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _running(restarted)
    assert not (data_dir / "pgdata" / "postmaster.pid").exists()


def _running(pid: int) -> bool:
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False
