"""Cold start: from launching a fresh `python -c` process to its first useful answer.

ragops: build the Service from RAGOPS_* settings on an already-ingested store and answer
one hybrid search with reranking (or, to show what the reranker adds, without).
Baseline: import sentence-transformers, load MiniLM on torch and embed one sentence.
The clock starts in the parent just before the launch (CLOCK_MONOTONIC is shared by all
processes on Linux), so interpreter start-up counts.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from child import reported, stderr_tail

QUESTION = "How do I configure a connection pool for PostgreSQL?"

RAGOPS_FIRST_SEARCH = """
import sys, time
from ragops.service import Service
from ragops.settings import Settings
service = Service(Settings())
searcher = service.searcher
rerank = sys.argv[2] == "rerank"
response = searcher.search(searcher.request(sys.argv[1], mode="hybrid", rerank=rerank))
answered = time.monotonic()
import json, resource
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"answered": answered, "results": len(response.results), "peak_rss_mb": rss}))
service.close()
"""

TORCH_FIRST_EMBEDDING = """
import sys, time
from sentence_transformers import SentenceTransformer
model = SentenceTransformer(sys.argv[2], device="cpu")
vectors = model.encode([sys.argv[1]])
answered = time.monotonic()
import json, resource
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"answered": answered, "results": len(vectors), "peak_rss_mb": rss}))
"""


def ragops_first_search(
    database_url: str, model_dir: Path, cwd: Path, rerank: bool = True
) -> dict[str, Any]:
    """Seconds from launch to the first hybrid search answered, and peak RSS."""
    env = {
        **os.environ,
        "RAGOPS_DATABASE_URL": database_url,
        "RAGOPS_MODEL_DIR": str(model_dir),
        "RAGOPS_EMBEDDER_VARIANT": "int8",
    }
    mode = "rerank" if rerank else "no-rerank"
    return time_to_answer(RAGOPS_FIRST_SEARCH, [QUESTION, mode], env, cwd)


def torch_first_embedding(weights: Path, cwd: Path) -> dict[str, Any]:
    """Seconds from launch to the first sentence embedded on torch, and peak RSS."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    return time_to_answer(TORCH_FIRST_EMBEDDING, [QUESTION, str(weights)], env, cwd)


def time_to_answer(code: str, args: list[str], env: dict[str, str], cwd: Path) -> dict[str, Any]:
    """Run `code` in a fresh interpreter; seconds from launch to the answer it reports."""
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=600,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"cold-start process failed:\n{stderr_tail(proc.stderr)}")
    result: dict[str, Any] = reported(proc.stdout)
    if result["results"] < 1:
        raise RuntimeError("cold-start process answered with nothing")
    return {
        "seconds": round(result["answered"] - started, 3),
        "peak_rss_mb": round(result["peak_rss_mb"], 1),
    }
