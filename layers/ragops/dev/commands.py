"""CLI commands of the local stack: `ragops dev`, `ragops put`, `ragops worker`."""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from ragops.errors import ConfigurationError
from ragops.settings import Settings


def add_commands(commands: Any) -> None:
    dev = commands.add_parser("dev", help="run the whole stack locally (no Docker, no AWS)")
    dev.add_argument("--host", default="127.0.0.1")
    dev.add_argument("--port", type=int, default=8000, help="API port")
    dev.add_argument("--s3-port", type=int, default=4566, help="moto S3/SQS port")
    dev.add_argument("--inbox", type=Path, default=Path("inbox"), help="folder mirrored to S3")
    dev.add_argument("--no-inbox", action="store_true")
    dev.add_argument("--seed", type=Path, default=None, help="files to put into an empty bucket")
    dev.add_argument(
        "--local-llm",
        action="store_true",
        help="serve SmolLM2-135M locally for generated answers (unless RAGOPS_LLM_BASE_URL is set)",
    )
    dev.set_defaults(run=_dev)

    put = commands.add_parser("put", help="drop files into the bucket of `ragops dev`")
    put.add_argument("paths", nargs="+", type=Path, metavar="FILE")
    put.add_argument("--prefix", default="", help="key prefix, e.g. handbook/")
    put.add_argument("--collection", default=None, help="stored as x-amz-meta-collection")
    put.set_defaults(run=_put)

    worker = commands.add_parser("worker", help="poll the ingest queue (RAGOPS_INGEST_QUEUE_URL)")
    worker.set_defaults(run=_worker)


def _stop_on_sigterm() -> None:
    """`docker stop`, systemd and `timeout` send SIGTERM: stop as on Ctrl-C, so the embedded
    PostgreSQL and the other servers are shut down rather than left running."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, interrupt)


def _dev(args: argparse.Namespace, settings: Settings) -> int:
    from ragops.dev.stack import DevOptions, run_dev

    _stop_on_sigterm()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    options = DevOptions(
        host=args.host,
        api_port=args.port,
        s3_port=args.s3_port,
        inbox=None if args.no_inbox else args.inbox,
        seed=args.seed,
        local_llm=args.local_llm,
    )
    try:
        return run_dev(settings, options)
    except KeyboardInterrupt:
        return 0


def _put(args: argparse.Namespace, settings: Settings) -> int:
    from ragops.dev.aws import client
    from ragops.dev.stack import read_state

    state = read_state(settings)
    if state is None:
        raise ConfigurationError(
            f"no running `ragops dev` found ({settings.data_dir / 'dev.json'} is missing); "
            "start it first, or use `aws s3 cp --endpoint-url ...`"
        )
    s3 = client("s3", state["endpoint_url"])
    extra = {"Metadata": {"collection": args.collection}} if args.collection else None
    status = 0
    for path in args.paths:
        if not path.is_file():
            print(f"ragops: {path}: not a file", file=sys.stderr)
            status = 1
            continue
        key = f"{args.prefix}{path.name}"
        s3.upload_file(str(path), state["bucket"], key, ExtraArgs=extra)
        print(f"put s3://{state['bucket']}/{key}")
    return status


def _worker(args: argparse.Namespace, settings: Settings) -> int:
    import boto3

    from ragops.dev.worker import run_worker

    if not settings.ingest_queue_url:
        raise ConfigurationError("set RAGOPS_INGEST_QUEUE_URL to the ingest queue's URL")
    sqs = boto3.client("sqs", endpoint_url=settings.sqs_endpoint_url or None)
    print(f"polling {settings.ingest_queue_url}", flush=True)
    _stop_on_sigterm()
    with contextlib.suppress(KeyboardInterrupt):
        run_worker(sqs, settings.ingest_queue_url, threading.Event())
    return 0
