"""A populated store for the serverless and answer benchmarks: samples/docs/ plus READMEs.

Starts the embedded PostgreSQL once in a temporary folder and ingests the corpus through
ragops' own `Service`, so every figure measured against it reads the same chunks.
"""

from __future__ import annotations

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


def model_dir_from_env() -> Path:
    return Path(os.environ.get("RAGOPS_MODEL_DIR") or REPO / ".ragops" / "models")


def populated_store(model_dir: Path, readme_chunks: int) -> SampleStore:
    """samples/docs/ and about `readme_chunks` chunks of package READMEs, ingested once."""
    workdir = Path(tempfile.mkdtemp(prefix="ragops-bench-"))
    # Registered before the server starts, so it runs after the server's own exit handler
    # has stopped PostgreSQL (atexit runs last-in, first-out).
    atexit.register(shutil.rmtree, workdir, ignore_errors=True)
    os.chmod(workdir, 0o755)  # the embedded server runs as its own user when we are root
    say(f"starting the embedded PostgreSQL in {workdir}")
    database_url = embedded_database_url(workdir)
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


def median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    return (ordered[middle - 1] + ordered[middle]) / 2


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
