"""`make bench`: ragops against a sentence-transformers/torch baseline on this machine.

Prints progress to stderr and the table to stdout, writes the Markdown page and the raw
JSON. Exits non-zero only when the benchmark itself fails; a missed target is reported.
`--from-results` writes the page from saved figures instead, measuring nothing.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from benchmark import FULL, QUICK, run_benchmark
from ragops.errors import RagopsError
from ragops.models.manifest import read_manifest
from report import add_from_results_option, markdown_page, render_saved, summary, write_report
from sample_store import embedded_server, model_dir_from_env, say

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=None, help="runs per figure (default 3)")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run: 1 run, a small corpus and store; writes bench/results/quick.md "
        "and quick.json",
    )
    parser.add_argument("--markdown", type=Path, default=None, help="where the page goes")
    parser.add_argument("--json", type=Path, default=None, help="where the raw figures go")
    add_from_results_option(parser, RESULTS / "latest.json")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    plan = QUICK if args.quick else FULL
    if args.runs is not None:
        if args.runs < 1:
            print("bench: --runs must be at least 1", file=sys.stderr)
            return 2
        plan = replace(plan, runs=args.runs)
    # A quick run must not overwrite the figures of a full one.
    default_page = RESULTS / "quick.md" if args.quick else REPO / "docs" / "benchmarks.md"
    markdown = args.markdown or default_page
    if args.from_results:
        return render_saved(args.from_results, markdown_page, markdown)
    raw = args.json or RESULTS / ("quick.json" if args.quick else "latest.json")
    model_dir = model_dir_from_env()
    try:
        read_manifest(model_dir)
        workdir, server_url = embedded_server()
        report = run_benchmark(plan, server_url, model_dir, workdir)
        write_report(report, markdown, raw)
    except (RagopsError, RuntimeError, OSError) as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        return 1
    print(summary(report))
    say(f"wrote {markdown} and {raw}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
