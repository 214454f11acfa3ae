"""Choose the defaults with the evaluation: one setting changed at a time around them.

`python eval/sweep.py [--dataset DIR] [--out eval/defaults.md]` runs `ragops eval --json`
once per row below (each a set of RAGOPS_ variables over the defaults) and writes a table
of the default mode's figures per row, so every default has a measured reason. Runs that
keep the chunking reuse its ingested collection; rows with another embedding model get a
store of their own (a store holds one model). Each row is saved as it finishes, and
`--resume` keeps the saved rows whose settings are unchanged.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]

# (label, RAGOPS_ variables over the defaults); the first row is the defaults themselves.
ROWS: list[tuple[str, dict[str, str]]] = [
    ("defaults", {}),
    ("chunk_tokens 96", {"RAGOPS_CHUNK_TOKENS": "96"}),
    ("chunk_tokens 192", {"RAGOPS_CHUNK_TOKENS": "192"}),
    ("chunk_tokens 256", {"RAGOPS_CHUNK_TOKENS": "256"}),
    ("chunk_overlap 0", {"RAGOPS_CHUNK_OVERLAP": "0"}),
    ("chunk_overlap 48", {"RAGOPS_CHUNK_OVERLAP": "48"}),
    ("rerank_candidates 5", {"RAGOPS_RERANK_CANDIDATES": "5"}),
    ("rerank_candidates 20", {"RAGOPS_RERANK_CANDIDATES": "20"}),
    ("rerank_candidates 30", {"RAGOPS_RERANK_CANDIDATES": "30"}),
    ("no vector fallback", {"RAGOPS_RERANK_FALLBACK_PROBABILITY": "0"}),
    ("rrf_k 20", {"RAGOPS_RRF_K": "20"}),
    ("rrf_k 120", {"RAGOPS_RRF_K": "120"}),
    ("candidates 20", {"RAGOPS_CANDIDATES": "20"}),
    ("candidates 100", {"RAGOPS_CANDIDATES": "100"}),
    ("ef_search 40", {"RAGOPS_EF_SEARCH": "40"}),
    ("ef_search 200", {"RAGOPS_EF_SEARCH": "200"}),
    ("embedder fp32", {"RAGOPS_EMBEDDER_VARIANT": "fp32"}),
]
MODES = ("lexical", "vector", "hybrid", "hybrid+rerank")
# Settings that change the embedding model, and so need a store of their own.
MODEL_SETTINGS = ("RAGOPS_EMBEDDER_VARIANT", "RAGOPS_MODEL_DIR", "RAGOPS_EMBEDDER_SOURCE")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", type=Path, default=REPO / "eval" / "ragops-docs")
    parser.add_argument("--out", type=Path, default=REPO / "eval" / "defaults.md")
    parser.add_argument(
        "--row",
        action="append",
        default=[],
        metavar="LABEL=VAR=VALUE[,VAR=VALUE]",
        help="an extra row, e.g. 'bge-small=RAGOPS_MODEL_DIR=/models/bge'",
    )
    parser.add_argument("--resume", action="store_true", help="keep rows saved by a run")
    args = parser.parse_args(argv)
    rows = ROWS + [_extra_row(text) for text in args.row]
    raw = args.out.with_suffix(".json")
    saved = {}
    if args.resume and raw.is_file():
        saved = {(r["row"], json.dumps(r["env"])): r for r in json.loads(raw.read_text())}
    results = []
    for label, env in rows:
        started = time.perf_counter()
        print(f"[sweep] {label}", file=sys.stderr, flush=True)
        result = saved.get((label, json.dumps(env))) or _evaluate(args.dataset, env)
        print(
            f"[sweep]   nDCG@10 {result['ndcg@10']:.3f} in {time.perf_counter() - started:.0f} s",
            file=sys.stderr,
            flush=True,
        )
        results.append((label, env, result))
        saved_rows = [{**result, "row": row, "env": e} for row, e, result in results]
        raw.write_text(json.dumps(saved_rows, indent=1) + "\n")
    args.out.write_text(page(results, args.dataset))
    print(f"[sweep] wrote {args.out}", file=sys.stderr)
    return 0


def _extra_row(text: str) -> tuple[str, dict[str, str]]:
    label, _, assignments = text.partition("=")
    env = dict(item.split("=", 1) for item in assignments.split(",") if "=" in item)
    return label, env


def _evaluate(dataset: Path, env: dict[str, str]) -> dict[str, Any]:
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("RAGOPS_")}
    keep = ("RAGOPS_DATA_DIR", "RAGOPS_MODEL_DIR", "RAGOPS_DATABASE_URL")
    inherited.update({k: os.environ[k] for k in keep if k in os.environ})
    model = {k: v for k, v in env.items() if k in MODEL_SETTINGS}
    if model:
        base = Path(os.environ.get("RAGOPS_DATA_DIR", ".ragops"))
        slug = "-".join(
            f"{k.removeprefix('RAGOPS_').lower()}-{Path(v).name}" for k, v in model.items()
        )
        inherited["RAGOPS_DATA_DIR"] = str(base / "sweep-stores" / slug)
    proc = subprocess.run(
        [sys.executable, "-m", "ragops.cli", "eval", "--dataset", str(dataset), "--json"],
        env={**inherited, **env},
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"ragops eval failed for {env}:\n{proc.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def page(results: list[tuple[str, dict[str, str], dict[str, Any]]], dataset: Path) -> str:
    """The Markdown table: the default mode's figures per row, then the other modes' nDCG."""
    first = results[0][2]
    shown = dataset.relative_to(REPO) if dataset.is_relative_to(REPO) else dataset
    kinds = sorted(first["ndcg@10_by_kind"]["hybrid+rerank"])
    header = ["Setting", "nDCG@10", "MRR@10", "R@10", *(f"nDCG {k}" for k in kinds)]
    header += [f"nDCG {m}" for m in MODES[:3]] + ["p50 ms"]
    lines = [
        "# How the defaults were chosen",
        "",
        f"`python eval/sweep.py` on `{shown}`: "
        f"{first['queries']} judged queries over {first['corpus_documents']} documents. Each "
        "row changes one setting from the defaults (first row); figures are the default "
        "mode's (hybrid search, then the cross-encoder), the last columns the other modes' "
        "nDCG@10. Latency is the median search time on the machine of the run: compare "
        "rows of one run only.",
        "",
        "| " + " | ".join(header) + " |",
        "|---" + "|---:" * (len(header) - 1) + "|",
    ]
    for label, _, result in results:
        by_kind = result["ndcg@10_by_kind"]["hybrid+rerank"]
        cells = [label, *(f"{result[k]:.3f}" for k in ("ndcg@10", "mrr@10", "recall@10"))]
        cells += [f"{by_kind.get(k, 0.0):.3f}" for k in kinds]
        cells += [f"{result['modes'][m]['ndcg@10']:.3f}" for m in MODES[:3]]
        cells.append(f"{result['latency_p50_ms']:.0f}")
        lines.append("| " + " | ".join(cells) + " |")
    settings = first["settings"]
    lines += [
        "",
        "Defaults: " + ", ".join(f"{key} `{value}`" for key, value in settings.items()) + ".",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
