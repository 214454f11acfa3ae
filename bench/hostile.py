"""Hostile inputs through ragops' ingest: what each costs, and what ingest makes of it.

Every input of `tests/hostile_corpus.py` is ingested in a fresh process of its own, so its
`ru_maxrss` is its own, against one embedded PostgreSQL for the whole run. A baseline
process loads the same models and ingests one small good Markdown file; each input's
memory is reported as growth over the baseline measured in the same run.
"""

from __future__ import annotations

import importlib.metadata
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmark import describe_machine
from child import child_environment, reported, stderr_tail
from ragops.settings import Settings
from report import write_report
from sample_store import (
    REPO,
    bench_arguments,
    embedded_server,
    markdown_table,
    model_dir_from_env,
    page_path,
    results_path,
    runs_asked,
    say,
)

MIB = 1024 * 1024
PROCESS_TIMEOUT_S = 600
LIMIT_SETTINGS = ("max_file_bytes", "max_pages", "max_text_chars", "max_inflated_bytes")
GOOD_NAME = "good.md"
GOOD_MARKDOWN = """# Dunlins

Dunlins gather in winter flocks of many thousands on the estuary mudflats, turning in
the air together like smoke.

## Feeding

They probe the mud with short, quick stabs of the bill for worms and small snails, and
follow the tide line out and back.
"""

# Writes every hostile file into a folder and prints what each must come to. It runs in a
# process of its own: the builders hold up to 100 MiB at once, and a process launched from
# one that did would inherit that peak (Linux carries the launcher's peak RSS across exec).
BUILD_CORPUS = """
import json, sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])  # the repository root: the corpus lives in tests/
from tests.hostile_corpus import CORPUS
folder = Path(sys.argv[2])
inputs = []
for item in CORPUS:
    data = item.build()
    (folder / item.name).write_bytes(data)
    inputs.append({"name": item.name, "size_bytes": len(data), "expected_reason": item.reason})
    del data
print(json.dumps(inputs))
"""

# One file through `Ingestor.ingest_paths`, the path of `ragops ingest`: the size is checked
# from the file's stat before it is read, then parsing applies the page, text and inflate
# limits. Before the clock starts the embedder is opened and warmed, and the parsers ingest
# imports on first use are imported, as in a worker that has ingested before: a figure is
# then the input's own, not that of the first PDF a process reads.
INGEST_ONE = """
import time
began = time.perf_counter()
import json, resource, sys
from pathlib import Path
from ragops.service import Service
from ragops.settings import Settings
service = Service(Settings())
ingestor = service.ingestor
ingestor.models.embedder
import charset_normalizer, pypdf
loaded = time.perf_counter()
loaded_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
(outcome,) = ingestor.ingest_paths([Path(sys.argv[2])], sys.argv[1])
ingest_s = time.perf_counter() - loaded
peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
service.close()
print(json.dumps({
    "status": outcome.status, "chunks": outcome.chunks, "error": outcome.error,
    "setup_s": loaded - began, "ingest_s": ingest_s,
    "loaded_rss_mb": loaded_rss / 1024, "peak_rss_mb": peak_rss / 1024,
}))
"""


def main(argv: Sequence[str] | None = None) -> int:
    parser = bench_arguments(3, "passes over the hostile corpus", "one pass")
    parser.description = __doc__.splitlines()[0]
    args = parser.parse_args(argv)
    runs = runs_asked(args, "hostile")
    if runs is None:
        return 2
    load_at_start = os.getloadavg()[0]
    model_dir = model_dir_from_env()
    workdir, database_url = embedded_server()
    # No RAGOPS_* setting of this shell reaches the children: every limit at its default.
    env = child_environment(
        RAGOPS_DATABASE_URL=database_url, RAGOPS_MODEL_DIR=str(model_dir.resolve())
    )

    folder = workdir / "inputs"
    folder.mkdir()
    say("building the hostile corpus")
    inputs = build_corpus(folder, workdir)
    good = folder / GOOD_NAME
    good.write_text(GOOD_MARKDOWN)
    # Untimed: applies the migrations, records the store's model, warms the page cache.
    ingest_in_fresh_process(good, "hostile-warm-up", env, workdir)

    baselines: list[dict[str, Any]] = []
    measured: dict[str, list[dict[str, Any]]] = {item["name"]: [] for item in inputs}
    for run in range(1, runs + 1):
        # A collection per run: an input ingested in an earlier run is new again.
        collection = f"hostile-{run}"
        baseline = ingest_in_fresh_process(good, collection, env, workdir)
        if baseline["outcome"] != "ingested":
            raise RuntimeError(f"the baseline was not ingested: {baseline}")
        baselines.append(baseline)
        say(f"run {run}/{runs}: baseline peak RSS {baseline['peak_rss_mb']:.0f} MB")
        for item in inputs:
            result = ingest_in_fresh_process(folder / item["name"], collection, env, workdir)
            measured[item["name"]].append(result)
            say(f"  {item['name']}: {describe(result)}")

    machine = describe_machine(database_url, model_dir)
    machine["load_average_1m"] = {"start": load_at_start, "end": os.getloadavg()[0]}
    machine["pypdf"] = importlib.metadata.version("pypdf")
    report: dict[str, Any] = {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "runs": runs,
        "machine": machine,
        "limits": {name: Settings.model_fields[name].default for name in LIMIT_SETTINGS},
        # Every child starts at least this high (see BUILD_CORPUS); it must stay below them.
        "parent_peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "lowest_child_peak_rss_mb": min(
            result["peak_rss_mb"]
            for result in [*baselines, *(r for rs in measured.values() for r in rs)]
            if "peak_rss_mb" in result
        ),
        "baseline": summarize_baseline(good, baselines),
        "inputs": [summarize_input(item, measured[item["name"]], baselines) for item in inputs],
    }
    page, raw = page_path(args, "hostile"), results_path(args, "hostile")
    write_report(report, page, raw, render)
    print(table(report))
    say(f"wrote {page} and {raw}")
    return 0


def build_corpus(folder: Path, cwd: Path) -> list[dict[str, Any]]:
    """Write the hostile files into `folder`; each one's name, size and expected reason."""
    proc = subprocess.run(
        [sys.executable, "-c", BUILD_CORPUS, str(REPO), str(folder)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=PROCESS_TIMEOUT_S,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"building the hostile corpus failed:\n{stderr_tail(proc.stderr)}")
    inputs: list[dict[str, Any]] = reported(proc.stdout)
    return inputs


def ingest_in_fresh_process(
    path: Path, collection: str, env: dict[str, str], cwd: Path
) -> dict[str, Any]:
    """Ingest `path` in a new interpreter; its outcome, timings and peak RSS.

    A process that dies or hangs is an outcome too ("crashed", "timed out"), not an error
    of the benchmark. The cwd is the work folder, so no .env of the repository is read.
    """
    started = time.perf_counter()
    try:
        proc = subprocess.run(
            [sys.executable, "-c", INGEST_ONE, collection, str(path)],
            capture_output=True,
            text=True,
            env=env,
            cwd=cwd,
            timeout=PROCESS_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return {"outcome": "timed out", "reason": f"no answer in {PROCESS_TIMEOUT_S} s"}
    process_s = time.perf_counter() - started
    if proc.returncode != 0:
        return {
            "outcome": "crashed",
            "reason": f"exit code {proc.returncode}: {stderr_tail(proc.stderr, 1)}",
            "process_s": process_s,
        }
    child: dict[str, Any] = reported(proc.stdout)
    outcome = {"failed": "refused"}.get(child["status"], child["status"])
    return {
        "outcome": outcome,
        "reason": child["error"],
        "chunks": child["chunks"],
        "ingest_s": child["ingest_s"],
        "setup_s": child["setup_s"],
        "process_s": process_s,
        "loaded_rss_mb": child["loaded_rss_mb"],
        "peak_rss_mb": child["peak_rss_mb"],
    }


def summarize_baseline(path: Path, runs: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "name": path.name,
        "size_bytes": path.stat().st_size,
        "outcome": "ingested",
        "reason": None,
        "chunks": runs[0]["chunks"],
        "as_expected": True,
        **_medians(runs, ("ingest_s", "process_s", "setup_s", "peak_rss_mb")),
        "runs": runs,
    }


def summarize_input(
    item: dict[str, Any], runs: list[dict[str, Any]], baselines: list[dict[str, Any]]
) -> dict[str, Any]:
    """Medians over runs; growth and ratios against the baseline of the same run."""
    expected_reason = item["expected_reason"]
    outcomes = {(r["outcome"], r["reason"], r.get("chunks")) for r in runs}
    outcome, reason, chunks = outcomes.pop() if len(outcomes) == 1 else ("varied", None, None)
    if expected_reason is None:
        as_expected = outcome == "ingested" and bool(chunks)
    else:
        as_expected = outcome == "refused" and expected_reason in (reason or "")
    against: list[dict[str, Any]] = []
    for result, baseline in zip(runs, baselines, strict=True):
        if "peak_rss_mb" not in result:
            continue
        against.append(
            {
                "rss_growth_mb": result["peak_rss_mb"] - baseline["peak_rss_mb"],
                "rss_ratio": result["peak_rss_mb"] / baseline["peak_rss_mb"],
                "ingest_ratio": result["ingest_s"] / baseline["ingest_s"],
            }
        )
    return {
        "name": item["name"],
        "size_bytes": item["size_bytes"],
        "expected": "ingested" if expected_reason is None else "refused",
        "expected_reason": expected_reason,
        "outcome": outcome,
        "reason": reason,
        "chunks": chunks,
        "as_expected": as_expected,
        **_medians(runs, ("ingest_s", "process_s", "setup_s", "peak_rss_mb")),
        **_medians(against, ("rss_growth_mb", "rss_ratio", "ingest_ratio")),
        "runs": runs,
    }


def _medians(rows: list[dict[str, Any]], keys: Sequence[str]) -> dict[str, float | None]:
    """The median of each key over the rows that have it (a crashed run has no figures)."""
    out: dict[str, float | None] = {}
    for key in keys:
        values = [row[key] for row in rows if row.get(key) is not None]
        out[key] = round(statistics.median(values), 4) if values else None
    return out


def describe(result: dict[str, Any]) -> str:
    if "peak_rss_mb" not in result:
        return f"{result['outcome']} ({result['reason']})"
    return (
        f"{result['outcome']}, ingest {_duration(result['ingest_s'])}, "
        f"peak RSS {result['peak_rss_mb']:.0f} MB"
    )


def render(report: dict[str, Any]) -> str:
    machine = report["machine"]
    load = machine["load_average_1m"]
    return "\n".join(
        [
            "# Benchmarks: hostile inputs",
            "",
            "Written by `bench/hostile.py`; raw figures in `bench/results/hostile.json`. "
            f"Medians over {report['runs']} run(s). Generated {report['generated_at']}.",
            f"Machine: {machine['cpu']}, {machine['cpus']} CPUs; PostgreSQL "
            f"{machine['postgresql']} + pgvector {machine['pgvector']} (embedded); onnxruntime "
            f"{machine['packages'].get('onnxruntime')}, pypdf {machine['pypdf']}; Python "
            f"{machine['python']}; load average (1 min) {load['start']:.1f} at start, "
            f"{load['end']:.1f} at end.",
            "",
            method(report),
            "",
            table(report),
            "",
        ]
    )


def method(report: dict[str, Any]) -> str:
    """The method as one paragraph, with what this run's figures say about themselves."""
    limits, baseline = report["limits"], report["baseline"]
    parent_mb, lowest_mb = report["parent_peak_rss_mb"], report["lowest_child_peak_rss_mb"]
    unexpected = [row["name"] for row in report["inputs"] if not row["as_expected"]]
    sentences = [
        "Each input of `tests/hostile_corpus.py` is ingested in a fresh `python -c` process of "
        "its own, against one embedded PostgreSQL shared by the whole run, with every "
        f"`RAGOPS_*` limit at its default (file {limits['max_file_bytes']:,} bytes, "
        f"{limits['max_pages']:,} pages, {limits['max_text_chars']:,} characters of text, "
        f"{limits['max_inflated_bytes']:,} inflated bytes).",
        "The process builds ragops' `Service`, opens the pool, loads and warms the embedder and "
        "imports the parsers that ingest imports on first use (pypdf, charset-normalizer), "
        "untimed; *ingest time* is then the call `Ingestor.ingest_paths([file])`, the path of "
        "`ragops ingest` (size checked from the file's stat, then parse, chunk, embed and one "
        "transaction), and *process time* is the parent's clock from launch to exit.",
        "*Peak RSS* is the process' `ru_maxrss`; *RSS growth* is it less the peak of the "
        f"baseline, a process that does the same with `{baseline['name']}` "
        f"({baseline['size_bytes']:,} bytes, {baseline['chunks']} chunks) just before the "
        "inputs of the same run, with the ratio of the two.",
        f"The lowest peak of any process was {lowest_mb:.0f} MB against the baseline's "
        f"{baseline['peak_rss_mb']:.0f} MB: a difference that small is noise between "
        "processes, not the input.",
        "Each run ingests into a collection of its own, so no input is unchanged from an "
        "earlier run; one untimed process first applies the migrations and warms the page "
        "cache.",
        f"The benchmark process itself peaked at {parent_mb:.0f} MB, "
        + (
            "below every child, so no child's figure is its launcher's (Linux carries the "
            "launcher's peak across exec); it builds the files in a helper process to stay low."
            if parent_mb < lowest_mb
            else "not below every child: a child's figure may be its launcher's peak, which "
            "Linux carries across exec."
        ),
        f"Not as `tests/hostile_corpus.py` expects: {', '.join(unexpected)}."
        if unexpected
        else "Every input came out as `tests/hostile_corpus.py` expects.",
    ]
    return " ".join(sentences)


def table(report: dict[str, Any]) -> str:
    header = [
        "input",
        "size",
        "outcome",
        "reason",
        "ingest time",
        "process time",
        "peak RSS",
        "RSS growth",
    ]
    baseline = report["baseline"]
    rows = [
        [
            f"baseline: {baseline['name']}",
            _size(baseline["size_bytes"]),
            f"ingested, {baseline['chunks']} chunks",
            "-",
            _duration(baseline["ingest_s"]),
            _duration(baseline["process_s"]),
            _megabytes(baseline["peak_rss_mb"]),
            "-",
        ]
    ]
    for row in report["inputs"]:
        growth = "-"
        if row["rss_growth_mb"] is not None:
            growth = f"{round(row['rss_growth_mb']):+d} MB ({row['rss_ratio']:.2f}x)"
        rows.append(
            [
                row["name"],
                _size(row["size_bytes"]),
                _outcome(row),
                (row["reason"] or "-").replace("|", "\\|"),
                _duration(row["ingest_s"]),
                _duration(row["process_s"]),
                _megabytes(row["peak_rss_mb"]),
                growth,
            ]
        )
    return markdown_table(header, rows)


def _outcome(row: dict[str, Any]) -> str:
    text = row["outcome"]
    if text == "ingested":
        text = f"ingested, {row['chunks']} chunk{'s' if row['chunks'] != 1 else ''}"
    if not row["as_expected"]:
        text += f" (expected: {row['expected']})"
    return str(text)


def _size(size: int) -> str:
    if size < 1024:
        return f"{size} B"
    if size < MIB:
        return f"{size / 1024:.1f} KiB"
    return f"{size / MIB:.1f} MiB"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 0.01:
        return f"{seconds * 1000:.1f} ms"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    return f"{seconds:.2f} s"


def _megabytes(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f} MB"


if __name__ == "__main__":
    sys.exit(main())
