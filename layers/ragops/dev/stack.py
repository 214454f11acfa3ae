"""`ragops dev`: the whole stack on one machine, no Docker and no AWS account."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ragops.dev.api_key import dev_api_key
from ragops.dev.aws import LOCAL_REGION, LocalResources, client, create_resources
from ragops.dev.definitions import load_definition
from ragops.dev.inbox import mirror_inbox
from ragops.dev.local_llm import MODEL_NAME as LOCAL_MODEL_NAME
from ragops.dev.local_llm import local_llm_server
from ragops.dev.worker import run_worker
from ragops.settings import Settings, get_settings

log = logging.getLogger(__name__)
STATE_FILE = "dev.json"


@dataclass(frozen=True)
class DevOptions:
    host: str = "127.0.0.1"
    api_port: int = 8000
    s3_port: int = 4566
    inbox: Path | None = Path("inbox")
    seed: Path | None = None
    local_llm: bool = False


def state_path(settings: Settings) -> Path:
    return settings.data_dir / STATE_FILE


def read_state(settings: Settings) -> dict[str, Any] | None:
    """Where a running `ragops dev` listens, or None."""
    path = state_path(settings)
    return json.loads(path.read_text()) if path.is_file() else None


def _use_local_aws(endpoint_url: str) -> None:
    # Everything in this process (the ingest handler's boto3 client included) talks to moto.
    os.environ.update(
        {
            "RAGOPS_S3_ENDPOINT_URL": endpoint_url,
            "RAGOPS_SQS_ENDPOINT_URL": endpoint_url,
            "AWS_ACCESS_KEY_ID": os.environ.get("AWS_ACCESS_KEY_ID", "local"),
            "AWS_SECRET_ACCESS_KEY": os.environ.get("AWS_SECRET_ACCESS_KEY", "local"),
            "AWS_DEFAULT_REGION": LOCAL_REGION,
        }
    )
    get_settings.cache_clear()


def _snapshot_dir(settings: Settings) -> Path:
    return settings.data_dir / "bucket"


def put_folder(resources: LocalResources, folder: Path, prefix: str = "") -> int:
    """Put every file under `folder` into the bucket, keyed by its relative path."""
    s3 = client("s3", resources.endpoint_url)
    count = 0
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        s3.upload_file(str(path), resources.bucket, prefix + path.relative_to(folder).as_posix())
        count += 1
    return count


def save_bucket(resources: LocalResources, snapshot: Path) -> int:
    """Mirror the bucket to disk, so the next `ragops dev` starts with the same objects."""
    s3 = client("s3", resources.endpoint_url)
    keys: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=resources.bucket):
        keys.extend(obj["Key"] for obj in page.get("Contents", []))
    snapshot.mkdir(parents=True, exist_ok=True)
    wanted = set()
    for key in keys:
        target = (snapshot / key).resolve()
        if snapshot.resolve() not in target.parents:
            continue  # a key like '../x' must not escape the snapshot folder
        target.parent.mkdir(parents=True, exist_ok=True)
        s3.download_file(resources.bucket, key, str(target))
        wanted.add(target)
    for path in snapshot.rglob("*"):
        if path.is_file() and path.resolve() not in wanted:
            path.unlink()
    return len(keys)


def run_dev(settings: Settings, options: DevOptions) -> int:
    """Start everything, print where it listens, run until Ctrl-C, then stop cleanly."""
    import uvicorn
    from moto.server import ThreadedMotoServer

    from ragops.api.app import create_local_app
    from ragops.resources import get_service

    # From here the service logs JSON lines, and the API and the ingest worker record their
    # metrics into the registry the API serves at /metrics.
    app = create_local_app()
    # Request lines of the moto server would bury the service's own output.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    exits = contextlib.ExitStack()
    llm_url = settings.llm_base_url
    if options.local_llm and not llm_url:
        llm_url = exits.enter_context(local_llm_server(threads=2))
        os.environ["RAGOPS_LLM_BASE_URL"] = llm_url
        os.environ.setdefault("RAGOPS_LLM_MODEL", LOCAL_MODEL_NAME)
    moto = ThreadedMotoServer(ip_address=options.host, port=options.s3_port, verbose=False)
    moto.start()
    endpoint = f"http://{options.host}:{options.s3_port}"
    _use_local_aws(endpoint)
    stop = threading.Event()
    threads: list[threading.Thread] = []
    resources = None
    try:
        service = get_service()
        # Start PostgreSQL and migrate before anything listens; then the API's key.
        api_key = dev_api_key(settings, service.db) if settings.auth == "on" else None
        resources = create_resources(endpoint, load_definition())
        # The objects saved at the last shutdown come back (their ingest is a no-op);
        # an empty bucket gets the example documents.
        restored = put_folder(resources, _snapshot_dir(settings))
        if options.seed is not None and restored == 0:
            restored = put_folder(resources, options.seed, prefix="samples/")
        threads.append(
            threading.Thread(
                target=run_worker,
                args=(client("sqs", endpoint), resources.queue_url, stop),
                name="ingest-worker",
                daemon=True,
            )
        )
        if options.inbox is not None:
            options.inbox.mkdir(parents=True, exist_ok=True)
            threads.append(
                threading.Thread(
                    target=mirror_inbox,
                    args=(options.inbox, client("s3", endpoint), resources.bucket, stop),
                    name="inbox",
                    daemon=True,
                )
            )
        for thread in threads:
            thread.start()
        api = f"http://{options.host}:{options.api_port}"
        state = {"api_url": api, **asdict(resources)}
        state_path(settings).write_text(json.dumps(state, indent=2) + "\n")
        _print_banner(api, resources, options, restored, llm_url, api_key)
        server = uvicorn.Server(
            uvicorn.Config(
                app,
                host=options.host,
                port=options.api_port,
                log_level="warning",
                lifespan="off",
            )
        )
        server.run()
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=10)
        if resources is not None:
            saved = save_bucket(resources, _snapshot_dir(settings))
            print(f"saved {saved} bucket objects to {_snapshot_dir(settings)}")
        state_path(settings).unlink(missing_ok=True)
        moto.stop()
        get_service().close()
        exits.close()
    return 0


def _print_banner(
    api: str,
    resources: LocalResources,
    options: DevOptions,
    restored: int,
    llm_url: str | None,
    api_key: str | None,
) -> None:
    lines = [
        "ragops dev is running (Ctrl-C stops it; data is kept between runs)",
        f"  API            {api}   (docs: {api}/docs, health: {api}/health)",
        f"  API key        {api_key or 'none: RAGOPS_AUTH=off'}"
        + ("   (default collection; `ragops keys create` makes more)" if api_key else ""),
        f"  metrics        {api}/metrics   (Prometheus)",
        f"  S3 + SQS       {resources.endpoint_url}   (moto)",
        f"  bucket         s3://{resources.bucket}   ({restored} objects at start)",
        f"  queue          {resources.queue_url}",
        f"  dead letters   {resources.dead_letter_queue_url}",
        f"  LLM            {llm_url or 'none: answers are extractive (--local-llm starts one)'}",
    ]
    if options.inbox is not None:
        lines.append(f"  inbox          {options.inbox.resolve()}   (mirrored into the bucket)")
    lines += [
        "",
        "  ragops put FILE...                     drop files into the bucket",
        f"  curl -s {api}/v1/query -H 'content-type: application/json' \\",
        *([f"       -H 'authorization: Bearer {api_key}' \\"] if api_key else []),
        '       -d \'{"query": "What does ragops do?"}\'',
    ]
    print("\n".join(lines), flush=True)
