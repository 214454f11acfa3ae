"""The evaluation as a Markdown page, with a PNG chart of the modes next to it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ragops.evaluation.metrics import METRICS

LABELS = {
    "ndcg@10": "nDCG@10",
    "mrr@10": "MRR@10",
    "recall@10": "Recall@10",
    "precision@10": "Precision@10",
    "map@100": "MAP@100",
    "latency_p50_ms": "p50 ms",
    "latency_p95_ms": "p95 ms",
}
ANSWER_LABELS = {
    "citation_precision": "Citation precision",
    "answered": "Answerable questions answered",
    "correct_refusals": "Unanswerable questions refused",
}


def write_report(result: dict[str, Any], path: Path) -> Path:
    """Write the page at `path` and its chart at the same stem with .png; the chart's path."""
    chart = path.with_suffix(".png")
    path.parent.mkdir(parents=True, exist_ok=True)
    write_chart(result["modes"], chart)
    path.write_text(markdown(result, chart.name), encoding="utf-8")
    return chart


def markdown(result: dict[str, Any], chart_name: str) -> str:
    """The page: modes by metrics, the chart, what was evaluated and with which settings."""
    dataset = result["dataset"]
    lines = [
        "# Retrieval evaluation",
        "",
        f"{result['queries']} judged queries over {result['corpus_documents']} corpus "
        f"documents ({result['chunks']} chunks). The default mode, the one the service "
        f"answers with, is **{result['mode']}**.",
        "",
        _table(
            ["Mode", *(LABELS[key] for key in LABELS)],
            [
                [f"**{mode}**" if mode == result["mode"] else mode, *_cells(figures, LABELS)]
                for mode, figures in result["modes"].items()
            ],
        ),
        "",
        "Latency is one search's time in the service (embed, SQL, rerank), in milliseconds.",
        "",
        f"![Metrics by mode]({chart_name})",
        "",
    ]
    by_kind = result.get("ndcg@10_by_kind")
    if by_kind:
        kinds = sorted({kind for figures in by_kind.values() for kind in figures})
        lines += [
            "## nDCG@10 by kind of question",
            "",
            _table(
                ["Mode", *kinds],
                [
                    [mode, *(_cell(figures.get(kind)) for kind in kinds)]
                    for mode, figures in by_kind.items()
                ],
            ),
            "",
        ]
    if "answers" in result:
        answers = result["answers"]
        lines += [
            "## Answers",
            "",
            f"{answers['answerable_queries']} answerable and {answers['unanswerable_queries']} "
            f"unanswerable questions; answers by kind: "
            + ", ".join(f"{kind} {n}" for kind, n in answers["answer_modes"].items())
            + ".",
            "",
            _table(
                ["Measure", "Value"],
                [[label, _cell(answers[key])] for key, label in ANSWER_LABELS.items()],
            ),
            "",
        ]
    lines += [
        "## Dataset",
        "",
        _table(
            ["File", "Path"],
            [[name, f"`{dataset[name]}`"] for name in ("corpus", "queries", "qrels")],
            numbers=False,
        ),
        "",
        f"Corpus sha256 `{dataset['corpus_sha256']}`, collection `{result['collection']}`.",
        "",
        "## Settings",
        "",
        _table(
            ["Setting", "Value"],
            [[key, f"`{value}`"] for key, value in result["settings"].items()],
            numbers=False,
        ),
        "",
    ]
    return "\n".join(lines)


def _table(header: list[str], rows: list[list[str]], numbers: bool = True) -> str:
    """A Markdown table; with `numbers`, every column after the first is right-aligned."""
    aligned = ["---", *(("---:" if numbers else "---") for _ in header[1:])]
    return "\n".join("| " + " | ".join(cells) + " |" for cells in [header, aligned, *rows])


def _cells(figures: dict[str, Any], keys: dict[str, str]) -> list[str]:
    return [_cell(figures.get(key), 1 if key.endswith("_ms") else 3) for key in keys]


def _cell(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def write_chart(modes: dict[str, dict[str, float]], path: Path) -> None:
    """Grouped bars: one group per metric, one bar per mode."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    metrics = list(METRICS)
    width = 0.8 / len(modes)
    figure = Figure(figsize=(9, 4.5), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for index, (mode, figures) in enumerate(modes.items()):
        offsets = [m + (index - (len(modes) - 1) / 2) * width for m in range(len(metrics))]
        axes.bar(offsets, [figures[m] for m in metrics], width, label=mode)
    axes.set_xticks(range(len(metrics)), [LABELS[m] for m in metrics])
    axes.set_ylim(0, 1)
    axes.set_ylabel("mean over judged queries")
    axes.set_title("Retrieval quality by mode")
    axes.grid(axis="y", alpha=0.3)
    axes.legend(loc="upper center", bbox_to_anchor=(0.5, -0.08), ncol=len(modes), frameon=False)
    figure.tight_layout()
    figure.savefig(path, format="png")


def summary(result: dict[str, Any]) -> str:
    """The figures as plain text for the terminal: one line per mode."""
    state = "ingested" if result["ingested"] else "reused"
    lines = [
        f"{result['queries']} judged queries, {result['corpus_documents']} documents "
        f"({result['chunks']} chunks, collection {result['collection']} {state})",
        "",
        f"{'mode':<15}" + "".join(f"{LABELS[key]:>14}" for key in LABELS),
    ]
    for mode, figures in result["modes"].items():
        marker = "*" if mode == result["mode"] else " "
        lines.append(
            f"{mode + marker:<15}" + "".join(f"{cell:>14}" for cell in _cells(figures, LABELS))
        )
    lines.append("(* the default mode; latency in ms per search)")
    if "answers" in result:
        answers = result["answers"]
        lines.append("")
        lines += [f"{label}: {_cell(answers[key])}" for key, label in ANSWER_LABELS.items()]
    return "\n".join(lines)
