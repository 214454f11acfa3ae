"""A populated store for the serverless and answer benchmarks: samples/docs/ plus READMEs.

Starts the embedded PostgreSQL once in a temporary folder and ingests the corpus through
ragops' own `Service`, so every figure measured against it reads the same chunks.
"""

from __future__ import annotations

import argparse
import atexit
import math
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from corpus import build_corpus
from ragops.db.embedded import embedded_database_url
from ragops.ingest.pipeline import discover_files
from ragops.service import Service
from ragops.settings import Settings

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "samples" / "docs"
COLLECTION = "default"


@dataclass(frozen=True)
class SampleStore:
    database_url: str
    model_dir: Path
    workdir: Path
    files: int
    chunks: int


def say(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def bench_arguments(runs: int, runs_help: str, quick_help: str) -> argparse.ArgumentParser:
    """The options every benchmark script takes: --runs, --quick and --markdown."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=runs, help=f"{runs_help} (default {runs})")
    parser.add_argument("--quick", action="store_true", help=quick_help)
    parser.add_argument("--markdown", type=Path, default=None, help="where the page goes")
    return parser


def runs_asked(args: argparse.Namespace, name: str) -> int | None:
    """Runs to make (1 with --quick); None, with the reason on stderr, when --runs is below 1."""
    runs: int = 1 if args.quick else args.runs
    if runs < 1:
        print(f"{name}: --runs must be at least 1", file=sys.stderr)
        return None
    return runs


def page_path(args: argparse.Namespace, name: str) -> Path:
    """--markdown, else docs/benchmarks-NAME.md; a quick run never overwrites that page."""
    if args.markdown is not None:
        return Path(args.markdown)
    if args.quick:
        return REPO / "bench" / "results" / f"{name}-quick.md"
    return REPO / "docs" / f"benchmarks-{name}.md"


def results_path(args: argparse.Namespace, name: str) -> Path:
    """bench/results/NAME.json; a quick run keeps its figures apart from the full run's."""
    return REPO / "bench" / "results" / (f"{name}-quick.json" if args.quick else f"{name}.json")


def model_dir_from_env() -> Path:
    return Path(os.environ.get("RAGOPS_MODEL_DIR") or REPO / ".ragops" / "models")


def embedded_server() -> tuple[Path, str]:
    """A temporary folder and an embedded PostgreSQL in it, both gone at exit."""
    workdir = Path(tempfile.mkdtemp(prefix="ragops-bench-"))
    # Registered before the server starts, so it runs after the server's own exit handler
    # has stopped PostgreSQL (atexit runs last-in, first-out).
    atexit.register(shutil.rmtree, workdir, ignore_errors=True)
    os.chmod(workdir, 0o755)  # the embedded server runs as its own user when we are root
    say(f"starting the embedded PostgreSQL in {workdir}")
    return workdir, embedded_database_url(workdir)


def populated_store(model_dir: Path, readme_chunks: int) -> SampleStore:
    """samples/docs/ and about `readme_chunks` chunks of package READMEs, ingested once."""
    workdir, database_url = embedded_server()
    corpus = workdir / "corpus"
    build_corpus(corpus / "readmes", readme_chunks, model_dir)
    shutil.copytree(SAMPLES, corpus / "samples")
    settings = Settings(
        database_url=database_url,
        model_dir=model_dir,
        _env_file=None,  # type: ignore[call-arg]
    )
    service = Service(settings)
    try:
        outcomes = list(service.ingestor.ingest_paths(discover_files([corpus]), COLLECTION))
    finally:
        service.close()
    failed = [o for o in outcomes if o.status != "ingested"]
    if failed:
        raise RuntimeError(f"{len(failed)} files not ingested, e.g. {failed[0].source}")
    chunks = sum(o.chunks for o in outcomes)
    say(f"ingested {len(outcomes)} files, {chunks} chunks")
    return SampleStore(database_url, model_dir, workdir, len(outcomes), chunks)


def percentile(values: list[float], share: float) -> float:
    """Nearest-rank percentile (p95 of 20 values is the 19th)."""
    ordered = sorted(values)
    rank = max(1, math.ceil(round(share * len(ordered), 6)))
    return ordered[rank - 1]


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = [
        "| " + " | ".join(header) + " |",
        "|---|" + "---:|" * (len(header) - 1),
    ]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)
