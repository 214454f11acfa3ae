"""`ragops eval`: its arguments, and the run that loads, evaluates, reports and gates.

Heavy imports wait until the command runs: building the CLI's parser stays cheap.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ragops.cli import EXIT_FAILED, EXIT_USAGE
from ragops.evaluation.dataset import DatasetPaths
from ragops.settings import Settings

if TYPE_CHECKING:
    from ragops.evaluation.gate import Scores


def add_eval_arguments(parser: argparse.ArgumentParser) -> None:
    """The `eval` subcommand's arguments; it runs `run_eval`."""
    parser.description = (
        "Ingest a BEIR-layout dataset's corpus into a collection of its own (reused while the "
        "corpus and chunking are unchanged), run every judged query in each search mode and "
        "report nDCG@10, MRR@10, Recall@10, Precision@10, MAP@100 and latency."
    )
    data = parser.add_argument_group("dataset (BEIR layout)")
    data.add_argument(
        "--dataset",
        type=Path,
        metavar="DIR",
        help="DIR/corpus.jsonl, DIR/queries.jsonl and DIR/qrels/test.tsv",
    )
    data.add_argument("--corpus", type=Path, metavar="FILE", help="JSON lines: _id, title, text")
    data.add_argument(
        "--queries", type=Path, metavar="FILE", help="JSON lines: _id, text, metadata"
    )
    data.add_argument(
        "--qrels", type=Path, metavar="FILE", help="TSV: header, then query-id, corpus-id, score"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--report", type=Path, metavar="PATH.md", help="write a Markdown page and a .png chart"
    )
    parser.add_argument(
        "--answers",
        action="store_true",
        help="also ask each question: citation precision, answered, correct refusals "
        "(uses RAGOPS_LLM_BASE_URL; extractive answers without it)",
    )
    parser.add_argument(
        "--local-llm",
        action="store_true",
        help="answer with the local SmolLM2 server (as `ragops dev --local-llm` does)",
    )
    parser.add_argument(
        "--baseline",
        type=Path,
        metavar="FILE",
        help="exit non-zero if a metric falls below this baseline less the tolerance",
    )
    parser.add_argument("--tolerance", type=float, default=0.02, help="default 0.02")
    parser.add_argument(
        "--write-baseline", type=Path, metavar="FILE", help="write these metrics as a baseline"
    )
    parser.set_defaults(run=run_eval)


def _paths(args: argparse.Namespace) -> DatasetPaths | None:
    """The three files, from --dataset or named one by one (not both)."""
    files = (args.corpus, args.queries, args.qrels)
    if args.dataset is not None and not any(files):
        return DatasetPaths.in_folder(args.dataset)
    if args.dataset is None and all(files):
        return DatasetPaths(*files)
    return None


def run_eval(args: argparse.Namespace, settings: Settings) -> int:
    """Load, evaluate, print, write what was asked; non-zero when the gate fails."""
    from ragops.evaluation.answers import evaluate_answers
    from ragops.evaluation.dataset import load_dataset
    from ragops.evaluation.gate import read_baseline, write_baseline
    from ragops.evaluation.report import summary, write_report
    from ragops.evaluation.run import evaluate_retrieval
    from ragops.service import Service

    paths = _paths(args)
    if paths is None:
        print(
            "ragops: eval needs --dataset DIR, or --corpus, --queries and --qrels", file=sys.stderr
        )
        return EXIT_USAGE
    if args.tolerance < 0:
        print(f"ragops: --tolerance must be 0 or more, got {args.tolerance}", file=sys.stderr)
        return EXIT_USAGE
    dataset = load_dataset(paths)
    # Read before the run: a bad baseline should not cost a whole evaluation.
    baseline = read_baseline(args.baseline) if args.baseline else None
    if args.answers and not (settings.llm_base_url or args.local_llm):
        print(
            "ragops: warning: no LLM configured (RAGOPS_LLM_BASE_URL): answers are extractive",
            file=sys.stderr,
        )
    with contextlib.ExitStack() as stack:
        if args.local_llm:
            from ragops.dev.local_llm import local_llm_server

            url = stack.enter_context(local_llm_server())
            settings = settings.model_copy(update={"llm_base_url": url})
        service = Service(settings)
        stack.callback(service.close)
        result = evaluate_retrieval(service, dataset)
        if args.answers:
            result["answers"] = evaluate_answers(service, dataset, result["collection"])

    print(json.dumps(result, ensure_ascii=False) if args.json else summary(result))
    if args.report:
        chart = write_report(result, args.report)
        print(f"report written to {args.report} (chart {chart})", file=sys.stderr)
    if args.write_baseline:
        write_baseline(result, args.write_baseline)
        print(f"baseline written to {args.write_baseline}", file=sys.stderr)
    return 0 if baseline is None else _gate(result, baseline, args.baseline, args.tolerance)


def _gate(result: dict[str, Any], baseline: Scores, path: Path, tolerance: float) -> int:
    """Print every metric below the baseline less the tolerance; non-zero if there is one."""
    from ragops.evaluation.gate import regressions

    failed = regressions(result, baseline, tolerance)
    for regression in failed:
        print(f"ragops: eval: {regression}", file=sys.stderr)
    if failed:
        return EXIT_FAILED
    print(f"gate passed: no metric below {path} less {tolerance:g}", file=sys.stderr)
    return 0
