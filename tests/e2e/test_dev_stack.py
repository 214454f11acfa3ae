"""`ragops dev` as a user runs it: a real process, real ports, files in, answers out, Ctrl-C."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]
RAGOPS = [sys.executable, "-m", "ragops.cli"]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_for(check: object, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if check():  # type: ignore[operator]
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def test_dev_stack_ingests_dropped_files_answers_and_keeps_them(
    tmp_path: Path, model_dir: Path
) -> None:
    env = {
        **os.environ,
        "RAGOPS_MODEL_DIR": str(model_dir),
        "RAGOPS_DATA_DIR": str(tmp_path / "data"),
        "RAGOPS_POOL_MIN_SIZE": "0",
    }
    env.pop("RAGOPS_DATABASE_URL", None)
    api_port, s3_port = _free_port(), _free_port()
    api = f"http://127.0.0.1:{api_port}"
    command = [*RAGOPS, "dev", "--port", str(api_port), "--s3-port", str(s3_port)]
    inbox = tmp_path / "inbox"
    command += ["--inbox", str(inbox), "--seed", str(REPO / "samples" / "docs")]
    dev = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, text=True)
    try:
        _wait_for(lambda: httpx.get(f"{api}/health").status_code == 200, 90, "the API")
        samples = len(list((REPO / "samples" / "docs").iterdir()))
        # The key the banner shows, kept in the data dir for the next start.
        key = (tmp_path / "data" / "dev-api-key").read_text().strip()
        auth = {"authorization": f"Bearer {key}"}
        assert httpx.get(f"{api}/v1/ingest/stats").status_code == 401

        def ready() -> int:
            stats = httpx.get(f"{api}/v1/ingest/stats", headers=auth).json()
            return int(stats["counts"]["ready"])

        _wait_for(lambda: ready() == samples, 90, "the seeded samples")
        note = tmp_path / "kestrel.md"
        note.write_text(
            "# Kestrel Point\n\nThe Kestrel Point lamp is seen 22 nautical miles out.\n"
        )
        put = subprocess.run(
            [*RAGOPS, "put", str(note), "--prefix", "field notes/"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        assert put.returncode == 0, put.stderr
        assert "s3://ragops-documents/field notes/kestrel.md" in put.stdout
        (inbox / "dropped.md").write_text("# Dropped\n\nFiles dropped into the inbox arrive.\n")
        _wait_for(lambda: ready() == samples + 2, 60, "the put and dropped files")

        answer = httpx.post(
            f"{api}/v1/query",
            json={"query": "How far out can the Kestrel Point lamp be seen?"},
            headers=auth,
            timeout=60,
        ).json()
        assert answer["meta"]["mode"] == "extractive"
        assert answer["citations"][0]["source"] == "s3://ragops-documents/field notes/kestrel.md"

        (inbox / "dropped.md").unlink()
        _wait_for(lambda: ready() == samples + 1, 60, "the removal of the dropped file")
    finally:
        dev.send_signal(signal.SIGINT)
        output, _ = dev.communicate(timeout=60)
    assert dev.returncode == 0, output
    assert f"API key        {key}" in output
    assert f"authorization: Bearer {key}" in output
    saved = tmp_path / "data" / "bucket"
    assert (saved / "field notes" / "kestrel.md").is_file()
    assert not (saved / "dropped.md").exists()
    assert len(list((saved / "samples").iterdir())) == samples


def test_sigterm_stops_the_dev_stack_and_its_embedded_database(
    tmp_path: Path, model_dir: Path
) -> None:
    """`docker stop`, systemd and `timeout` stop a process with SIGTERM, not Ctrl-C."""
    env = {
        **os.environ,
        "RAGOPS_MODEL_DIR": str(model_dir),
        "RAGOPS_DATA_DIR": str(tmp_path / "data"),
    }
    env.pop("RAGOPS_DATABASE_URL", None)
    api_port, s3_port = _free_port(), _free_port()
    command = [*RAGOPS, "dev", "--port", str(api_port), "--s3-port", str(s3_port), "--no-inbox"]
    dev = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, text=True)
    try:
        _wait_for(
            lambda: httpx.get(f"http://127.0.0.1:{api_port}/health").status_code == 200,
            90,
            "the API",
        )
        postmaster = tmp_path / "data" / "pgdata" / "postmaster.pid"
        assert postmaster.is_file()
        server_pid = int(postmaster.read_text().splitlines()[0])
    finally:
        dev.send_signal(signal.SIGTERM)
        output, _ = dev.communicate(timeout=60)
    assert dev.returncode == 0, output
    assert not postmaster.exists()
    _wait_for(lambda: not Path(f"/proc/{server_pid}").exists(), 10, "the postmaster to exit")
