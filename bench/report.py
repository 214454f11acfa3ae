"""The report as a Markdown table (printed, and written to docs/benchmarks.md) and as JSON."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from worker import BASELINE_SYSTEM


@dataclass(frozen=True)
class Row:
    figure: str
    ragops: str
    baseline: str
    ratio: str
    target: str = "-"
    met: str = "-"


def table_rows(report: dict[str, Any]) -> list[Row]:
    return [
        *_ingest_rows(report["ingest"]),
        *_cold_start_rows(report["cold_start"]),
        *_search_rows(report["search"]),
        *_memory_rows(report),
    ]


def _ingest_rows(ingest: dict[str, Any]) -> list[Row]:
    systems = ingest["systems"]
    baseline = systems[BASELINE_SYSTEM]["chunks_per_s"]
    target = ingest["target"]
    return [
        Row(
            f"Ingest, {system.removeprefix('ragops-')} embedder (chunks/s, higher is better)",
            f"{systems[system]['chunks_per_s']:.1f}",
            f"{baseline:.1f}",
            _times(ingest["ratios"][system]),
            f">= {target['min_ratio']:g}x",
            _yes_no(target["met"][system]),
        )
        for system in ingest["ratios"]
    ]


def _cold_start_rows(cold: dict[str, Any]) -> list[Row]:
    systems = cold["systems"]
    return [
        Row(
            "Cold start: launch to first answer (s, lower is better)",
            f"{systems['ragops']['seconds']:.2f}",
            f"{systems[BASELINE_SYSTEM]['seconds']:.2f}",
            _times(cold["ratio"]),
            f"<= {cold['target']['max_ratio']:g}x",
            _yes_no(cold["target"]["met"]),
        ),
        Row(
            "Cold start, first search without rerank, for reference (s)",
            f"{systems['ragops-no-rerank']['seconds']:.2f}",
            f"{systems[BASELINE_SYSTEM]['seconds']:.2f}",
            _times(cold["ratio_without_rerank"]),
        ),
    ]


def _search_rows(search: dict[str, Any]) -> list[Row]:
    baseline = search["systems"][BASELINE_SYSTEM]["hybrid"]
    rows = []
    for config, label in (("hybrid", "hybrid"), ("hybrid+rerank", "hybrid + rerank")):
        figures = search["systems"]["ragops"][config]
        for stat in ("p50_ms", "p95_ms"):
            rows.append(
                Row(
                    f"Search {stat[:3]} at {search['chunks']:,} chunks, {label} (ms)",
                    f"{figures[stat]:.1f}",
                    f"{baseline[stat]:.1f}" + (" (no rerank)" if config != "hybrid" else ""),
                    _times(search["ratios"][config][stat]),
                )
            )
    return rows


def _memory_rows(report: dict[str, Any]) -> list[Row]:
    ingest = report["ingest"]["systems"]
    cold = report["cold_start"]["systems"]
    search = report["search"]["systems"]
    pairs = (
        ("Peak RSS, ingest process, int8 (MB)", ingest["ragops-int8"], ingest[BASELINE_SYSTEM]),
        ("Peak RSS at first answer (MB)", cold["ragops"], cold[BASELINE_SYSTEM]),
        ("Peak RSS, search process (MB)", search["ragops"], search[BASELINE_SYSTEM]),
    )
    return [
        Row(
            figure,
            f"{ours['peak_rss_mb']:.0f}",
            f"{theirs['peak_rss_mb']:.0f}",
            _times(ours["peak_rss_mb"] / theirs["peak_rss_mb"]),
        )
        for figure, ours, theirs in pairs
    ]


def markdown_table(rows: list[Row]) -> str:
    lines = [
        "| Figure | ragops | baseline | ratio | target | met |",
        "|---|---:|---:|---:|---|---|",
    ]
    lines += [
        f"| {r.figure} | {r.ragops} | {r.baseline} | {r.ratio} | {r.target} | {r.met} |"
        for r in rows
    ]
    return "\n".join(lines)


def summary(report: dict[str, Any]) -> str:
    """The table with the lines a reader needs to trust it: what, where, how many runs."""
    machine, corpus, plan = report["machine"], report["corpus"], report["plan"]
    load = machine["load_average_1m"]
    packages = ", ".join(f"{name} {version}" for name, version in machine["packages"].items())
    rows = table_rows(report)
    missed = [r.figure for r in rows if r.met == "no"]
    met = sum(r.met == "yes" for r in rows)
    verdict = f"Targets met: {met} of {met + len(missed)}"
    verdict += f" (missed: {'; '.join(missed)})." if missed else "."
    return "\n".join(
        [
            f"Medians over {plan['runs']} run(s) per figure; ratio = ragops / baseline. "
            f"Generated {report['generated_at']}.",
            f"Machine: {machine['cpu']}, {machine['cpus']} CPUs; PostgreSQL "
            f"{machine['postgresql']} + pgvector {machine['pgvector']} (embedded); {packages}; "
            f"load average (1 min) {load['start']:.1f} at start, {load['end']:.1f} at end.",
            f"Corpus: {corpus['files']} files, {corpus['megabytes']:.2f} MB, "
            f"{corpus['chunks']:,} chunks (avg {corpus['word_pieces_per_chunk']} word pieces) "
            "from installed packages' READMEs and docs.",
            f"Baseline: ragops' own parse, chunk, write and SQL, with {machine['embedder']} "
            "embedded by sentence-transformers on torch (encode, batch 32).",
            "",
            markdown_table(rows),
            "",
            verdict,
        ]
    )


def markdown_page(report: dict[str, Any]) -> str:
    search = report["search"]
    return "\n".join(
        [
            "# Benchmarks",
            "",
            "Written by `make bench` (`bench/run.py`); raw figures of the last run are in "
            "`bench/results/latest.json`. Figures come from one shared 2-core machine: "
            "compare ratios, not absolute numbers, across machines.",
            "",
            summary(report),
            "",
            "## Method",
            "",
            "- **Ingest**: every run is a new process writing into a new database on the "
            "embedded PostgreSQL, timed from the first file read to the last commit (parse, "
            "chunk, embed, COPY). Model loading and schema setup happen before the clock "
            "starts; cold start measures start-up. The baseline runs ragops' own `Ingestor` "
            "with `SentenceTransformer.encode(batch_size=32)` as its embedder, so parsing, "
            "chunking and writing are the same code and store the same chunks.",
            "- **Cold start**: a fresh `python -c` process per run, the clock started by the "
            "parent just before launch. ragops builds its `Service` from `RAGOPS_*` settings on "
            "the populated search store and answers one hybrid search with reranking (the "
            "reference row: without reranking); the "
            "baseline imports sentence-transformers, loads MiniLM on torch and embeds one "
            "sentence. One untimed launch of each comes first, so both read warm files.",
            f"- **Search**: a store of {search['chunks']:,} chunks: the corpus's "
            f"{search['distinct_chunks']:,} chunks, embedded once with the int8 embedder and "
            "written again under new sources (`save_ready`) until the store was full; the "
            "copies' vectors are jittered slightly (cosine ~0.995) so the HNSW index holds "
            f"distinct vectors. {search['queries']} varied queries after "
            f"{search['warmup_queries']} warm-up queries per configuration, each timed "
            "in-process around `Searcher.search`: embed the query, one hybrid SQL round trip, "
            f"rerank the top {search['rerank_candidates']} fused candidates when on. The baseline "
            "is the same `Searcher` and SQL with the query embedded on torch. No torch "
            "weights of the cross-encoder exist offline, so the reranked rows are held against "
            "the baseline's unreranked search: their ratio is what reranking costs on top.",
            "- **Peak RSS**: `ru_maxrss` of the measuring process.",
            "",
        ]
    )


def write_report(report: dict[str, Any], markdown: Path, raw: Path) -> None:
    markdown.parent.mkdir(parents=True, exist_ok=True)
    markdown.write_text(markdown_page(report))
    raw.parent.mkdir(parents=True, exist_ok=True)
    raw.write_text(json.dumps(report, indent=2) + "\n")


def _times(ratio: float) -> str:
    return f"{ratio:.2f}x"


def _yes_no(met: bool) -> str:
    return "yes" if met else "no"
