"""One measurement in a fresh process, so no run inherits another's warm model or pool.

`python bench/worker.py '<task as JSON>'` runs the task and prints its result as one JSON
line. Systems: `ragops` or `ragops-int8`, and `ragops-fp32` (ragops' Service with that
embedder) and `torch` (the same ragops pipeline with sentence-transformers on torch embedding).
Tasks: `ingest` (a corpus folder), `search` (queries on a store) and `eval` (`ragops eval`'s
retrieval evaluation of a BEIR-layout dataset; ragops systems only).
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from child import reported, stderr_tail

WORKER = Path(__file__).resolve()
BASELINE_SYSTEM = "torch"
COLLECTION = "default"


class WorkerError(RuntimeError):
    """A measurement process failed; carries the end of its stderr."""


def run_in_fresh_process(task: dict[str, Any], timeout: float = 3600) -> dict[str, Any]:
    """Run `task` in a new Python process and return its result."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, str(WORKER), json.dumps(task)],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )
    if proc.returncode != 0:
        tail = stderr_tail(proc.stderr)
        raise WorkerError(f"{task['kind']} task for {task['system']} failed:\n{tail}")
    result: dict[str, Any] = reported(proc.stdout)
    return result


def peak_rss_mb() -> float:
    """This process's peak resident set size (Linux reports KiB)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _settings(task: dict[str, Any]) -> Any:
    from ragops.settings import Settings

    return Settings(
        database_url=task["database_url"],
        model_dir=Path(task["model_dir"]),
        # ragops' default embedder, unless the task asks for fp32; the baseline ignores it.
        embedder_variant="fp32" if task["system"] == "ragops-fp32" else "int8",
        # Warm-up questions come back among the timed ones: each search embeds its question.
        query_cache_size=0,
        _env_file=None,  # type: ignore[call-arg]
    )


def _open(task: dict[str, Any]) -> tuple[Any, Any, Any]:
    """(database, models, settings) for the task's system, models loaded and warmed."""
    settings = _settings(task)
    if task["system"] == BASELINE_SYSTEM:
        from baseline import TorchModels, minilm_weights
        from ragops.db.database import connect
        from ragops.db.store import check_store_model

        models: Any = TorchModels(settings.models_path, minilm_weights())
        db = connect(settings)
        # A search store holds ragops' int8 vectors of the same MiniLM: the baseline queries
        # it as it is; only a store it ingests itself records the baseline as its model.
        if task["kind"] == "ingest":
            with db.pool.connection() as conn:
                check_store_model(conn, models.embedder_id, models.dimension)
    else:
        from ragops.service import Service

        service = Service(settings)
        models, db = service.models, service.db
    models.embedder.embed(["warm-up"])
    return db, models, settings


def ingest(task: dict[str, Any]) -> dict[str, Any]:
    """Ingest the corpus folder into the (fresh) database; time parse to last commit."""
    from ragops.ingest.pipeline import Ingestor, discover_files

    db, models, settings = _open(task)
    files = list(discover_files([Path(task["corpus"])]))
    ingestor = Ingestor(db, models, settings)
    started = time.perf_counter()
    outcomes = list(ingestor.ingest_paths(files, COLLECTION))
    seconds = time.perf_counter() - started
    db.close()
    failed = [o for o in outcomes if o.status != "ingested"]
    if failed:
        first = failed[0]
        raise WorkerError(f"{len(failed)} files not ingested, e.g. {first.source}: {first.error}")
    chunks = sum(o.chunks for o in outcomes)
    size = sum(file.stat().st_size for file in files)
    return {
        "files": len(outcomes),
        "chunks": chunks,
        "bytes": size,
        "seconds": round(seconds, 3),
        "chunks_per_s": round(chunks / seconds, 2),
        "megabytes_per_s": round(size / 1e6 / seconds, 4),
    }


def search(task: dict[str, Any]) -> dict[str, Any]:
    """Time each query of each configuration (rerank on or off) after warm-up queries."""
    from ragops.retrieval.search import Searcher

    db, models, settings = _open(task)
    searcher = Searcher(db, models, settings)
    queries: list[str] = task["queries"]
    configs: dict[str, Any] = {}
    for rerank in task["rerank"]:
        requests = [searcher.request(q, mode="hybrid", rerank=rerank) for q in queries]
        for request in requests[: task["warmup"]]:
            searcher.search(request)
        latencies, stages = [], []
        for request in requests:
            started = time.perf_counter()
            response = searcher.search(request)
            latencies.append(round((time.perf_counter() - started) * 1000, 3))
            stages.append(response.timings_ms)
        configs["hybrid+rerank" if rerank else "hybrid"] = {
            "latencies_ms": latencies,
            "stage_medians_ms": {
                stage: round(statistics.median(t[stage] for t in stages), 3)
                for stage in ("embed", "retrieve", "rerank")
                if stage in stages[0]
            },
        }
    db.close()
    return {"configs": configs}


def evaluate(task: dict[str, Any]) -> dict[str, Any]:
    """`ragops eval --dataset DIR --json` on the task's store: ingest, then every judged query
    (the first `queries` of them when given) in every search mode."""
    from ragops.evaluation.dataset import DatasetPaths, load_dataset
    from ragops.evaluation.run import evaluate_retrieval
    from ragops.service import Service

    dataset = load_dataset(DatasetPaths.in_folder(Path(task["dataset"])))
    if task.get("queries"):
        dataset.qrels = dict(list(dataset.qrels.items())[: task["queries"]])
    service = Service(_settings(task))
    try:
        return evaluate_retrieval(service, dataset)
    finally:
        service.close()


TASKS = {"ingest": ingest, "search": search, "eval": evaluate}


def run_task(task: dict[str, Any]) -> dict[str, Any]:
    """Run one task in this process; `run_in_fresh_process` is the isolated way."""
    result = TASKS[task["kind"]](task)
    result.update(system=task["system"], peak_rss_mb=peak_rss_mb())
    if task["system"] == BASELINE_SYSTEM:
        from baseline import torch_threads

        result["torch_threads"] = torch_threads()
    return result


def main(argv: list[str]) -> int:
    print(json.dumps(run_task(json.loads(argv[1]))))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
