"""The report as a Markdown table (printed, and written to docs/benchmarks.md with charts)
and as JSON; and a page re-rendered from saved figures, for every benchmark script.

Targets are applied when the page is rendered, so a page re-rendered from older figures
holds them to today's targets.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from baseline import BATCH_SIZE as BASELINE_BATCH_SIZE
from benchmark import (
    COLD_START_TARGET,
    INGEST_EARLIER_TARGET,
    INGEST_SYSTEMS,
    INGEST_TARGET,
    INGEST_TARGET_SYSTEM,
    NDCG_TOLERANCE,
)
from charts import Series, bar_chart, xychart
from sample_store import say
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
        *_eval_rows(report.get("eval")),
        *_cold_start_rows(report["cold_start"]),
        *_search_rows(report["search"]),
        *_memory_rows(report),
    ]


def _ingest_rows(ingest: dict[str, Any]) -> list[Row]:
    """The int8 row against the target; the fp32 row for reference, with none."""
    systems = ingest["systems"]
    baseline = _throughput(systems[BASELINE_SYSTEM])
    # Figures saved before MB/s was measured have chunks/s alone.
    unit = "chunks/s (MB/s)" if "megabytes_per_s" in systems[BASELINE_SYSTEM] else "chunks/s"
    rows = []
    for system, ratio in ingest["ratios"].items():
        held = system == INGEST_TARGET_SYSTEM
        figure = f"Ingest, {system.removeprefix('ragops-')} embedder: {unit}"
        rows.append(
            Row(
                figure + (", higher is better" if held else ", for reference"),
                _throughput(systems[system]),
                baseline,
                _times(ratio),
                f">= {INGEST_TARGET:g}x" if held else "-",
                _yes_no(ratio >= INGEST_TARGET) if held else "-",
            )
        )
    return rows


def _throughput(system: dict[str, Any]) -> str:
    megabytes = system.get("megabytes_per_s")
    chunks = f"{system['chunks_per_s']:.1f}"
    return chunks if megabytes is None else f"{chunks} ({megabytes:.3g} MB/s)"


def _eval_rows(evaluation: dict[str, Any] | None) -> list[Row]:
    """nDCG@10 with the int8 embedder against fp32, in the default mode and vector alone."""
    if evaluation is None:
        return []
    int8, fp32 = evaluation["systems"]["ragops-int8"], evaluation["systems"]["ragops-fp32"]
    vector = (int8["ndcg@10_by_mode"]["vector"], fp32["ndcg@10_by_mode"]["vector"])
    difference = evaluation["difference"]
    return [
        Row(
            f"nDCG@10 on {evaluation['dataset']} ({evaluation['queries']} queries, "
            f"{evaluation['mode']}), int8 embedder vs fp32",
            f"{int8['ndcg@10']:.3f}",
            f"{fp32['ndcg@10']:.3f} (fp32)",
            f"{difference:+.3f} (difference)",
            f"within {NDCG_TOLERANCE:g} of fp32",
            _yes_no(abs(difference) <= NDCG_TOLERANCE),
        ),
        Row(
            "nDCG@10, vector search alone, int8 vs fp32, for reference",
            f"{vector[0]:.3f}",
            f"{vector[1]:.3f} (fp32)",
            f"{vector[0] - vector[1]:+.3f} (difference)",
        ),
    ]


def _cold_start_rows(cold: dict[str, Any]) -> list[Row]:
    systems = cold["systems"]
    return [
        Row(
            "Cold start: launch to first answer (s, lower is better)",
            f"{systems['ragops']['seconds']:.2f}",
            f"{systems[BASELINE_SYSTEM]['seconds']:.2f}",
            _times(cold["ratio"]),
            f"<= {COLD_START_TARGET:g}x",
            _yes_no(cold["ratio"] <= COLD_START_TARGET),
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
            f"Corpus: {corpus['files']} files{_format_mix(corpus)}, {corpus['megabytes']:.2f} MB, "
            f"{corpus['chunks']:,} chunks (avg {corpus['word_pieces_per_chunk']} word pieces) "
            "from installed packages' READMEs and docs.",
            f"Baseline: ragops' own parse, chunk, write and SQL, with {machine['embedder']} "
            f"embedded by sentence-transformers on torch (encode, batch {BASELINE_BATCH_SIZE}, "
            "its fastest here).",
            _targets(report),
            "",
            markdown_table(rows),
            "",
            verdict,
        ]
    )


def _format_mix(corpus: dict[str, Any]) -> str:
    """The mix, as ' (28 .md, 19 .txt, 47 .html, 47 .pdf)'; none in figures saved before."""
    formats = corpus.get("formats")
    if not formats:
        return ""
    mix = ", ".join(f"{count['files']} .{suffix}" for suffix, count in formats.items())
    return f" ({mix})"


def _targets(report: dict[str, Any]) -> str:
    ratio = report["ingest"]["ratios"][INGEST_TARGET_SYSTEM]
    earlier = "meets" if ratio >= INGEST_EARLIER_TARGET else "misses"
    unmeasured = "" if "eval" in report else " (not measured in this run)"
    return (
        f"Targets: ingest with the int8 embedder at least {INGEST_TARGET:g}x the baseline's "
        f"chunks/s end to end (an earlier issue set {INGEST_EARLIER_TARGET:g}x, which "
        f"{_times(ratio)} {earlier}), with nDCG@10 on the project's evaluation set within "
        f"{NDCG_TOLERANCE:g} of fp32's{unmeasured}; cold start to first answer at most "
        f"{COLD_START_TARGET:g}x the baseline's. The fp32 ingest row is for reference."
    )


def charts(report: dict[str, Any]) -> str:
    """Bar charts of ingest throughput (with the target), cold start and search latency."""
    ingest = report["ingest"]["systems"]
    cold = report["cold_start"]["systems"]
    search = report["search"]
    ours, theirs = search["systems"]["ragops"], search["systems"][BASELINE_SYSTEM]
    target = INGEST_TARGET * ingest[BASELINE_SYSTEM]["chunks_per_s"]
    labels = ["ragops int8", "ragops fp32", "torch"]
    throughput = [ingest[s]["chunks_per_s"] for s in INGEST_SYSTEMS]
    return "\n\n".join(
        [
            "## Charts",
            xychart(
                "Ingest end to end (chunks/s, higher is better)",
                labels,
                "chunks/s",
                [
                    Series("chunks/s", throughput, "bar"),
                    Series(f"the target, {INGEST_TARGET:g}x torch", [target] * 3),
                ],
            ),
            bar_chart(
                "Cold start: launch to first answer (s, lower is better)",
                {
                    "ragops": cold["ragops"]["seconds"],
                    "ragops, no rerank": cold["ragops-no-rerank"]["seconds"],
                    "torch": cold[BASELINE_SYSTEM]["seconds"],
                },
                "seconds",
            ),
            bar_chart(
                f"Search p50 at {search['chunks']:,} chunks (ms, lower is better)",
                {
                    "ragops hybrid": ours["hybrid"]["p50_ms"],
                    "ragops hybrid + rerank": ours["hybrid+rerank"]["p50_ms"],
                    "torch hybrid": theirs["hybrid"]["p50_ms"],
                },
                "ms",
            ),
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
            charts(report),
            "",
            "## Method",
            "",
            "- **Ingest**: every run is a new process writing into a new database on the "
            "embedded PostgreSQL, timed from the first file read to the last commit (parse, "
            "chunk, embed, COPY). Model loading and schema setup happen before the clock "
            "starts; cold start measures start-up. The baseline runs ragops' own `Ingestor` "
            f"with `SentenceTransformer.encode(batch_size={BASELINE_BATCH_SIZE})` (torch's fastest "
            "size here) as its embedder, so parsing, "
            "chunking and writing are the same code and store the same chunks. "
            + _corpus_method(report["corpus"]),
            *_eval_method(report.get("eval")),
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


def _corpus_method(corpus: dict[str, Any]) -> str:
    if not {"html", "pdf"} & set(corpus.get("formats", {})):
        return "The corpus is package READMEs and docs (.md, and reST as .txt)."
    return (
        "The corpus is mixed: package READMEs and docs in turn as found (.md, or reST as "
        ".txt), rendered to HTML and rendered to PDF (`bench/corpus.py`). MB/s counts the "
        "bytes of the files read, markup and PDF structure included."
    )


def _eval_method(evaluation: dict[str, Any] | None) -> list[str]:
    if evaluation is None:
        return []
    return [
        f"- **Retrieval quality**: `ragops eval` on `{evaluation['dataset']}` "
        f"({evaluation['queries']} judged queries), once with each embedder "
        "(`RAGOPS_EMBEDDER_VARIANT`), each ingesting the set into a new store; the same code "
        "as `ragops eval --dataset eval/ragops-docs`. The target holds the default mode "
        "(hybrid search, then the cross-encoder); vector search alone shows the embedder's "
        "difference without the reranker."
    ]


def write_report(
    report: dict[str, Any],
    markdown: Path,
    raw: Path,
    render: Callable[[dict[str, Any]], str] = markdown_page,
) -> None:
    """The page, rendered from `report`, and the raw figures it was rendered from."""
    markdown.parent.mkdir(parents=True, exist_ok=True)
    markdown.write_text(render(report))
    raw.parent.mkdir(parents=True, exist_ok=True)
    raw.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")


def add_from_results_option(parser: argparse.ArgumentParser, saved: Path) -> None:
    """--from-results [JSON]: write the page from saved figures instead of measuring."""
    parser.add_argument(
        "--from-results",
        type=Path,
        nargs="?",
        const=saved,
        default=None,
        metavar="JSON",
        help=f"render the page from saved figures (default {saved.name}) without measuring",
    )


def render_saved(saved: Path, render: Callable[[dict[str, Any]], str], page: Path) -> int:
    """Write `page` from the figures in `saved`; 1, with the reason on stderr, if unreadable."""
    try:
        report = json.loads(saved.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        print(f"bench: cannot read saved figures: {exc}", file=sys.stderr)
        return 1
    page.parent.mkdir(parents=True, exist_ok=True)
    page.write_text(render(report))
    say(f"wrote {page} from {saved}")
    return 0


def _times(ratio: float) -> str:
    return f"{ratio:.2f}x"


def _yes_no(met: bool) -> str:
    return "yes" if met else "no"
