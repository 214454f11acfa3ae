"""Generated answers over real HTTP: time to first token, total time, and the service's overhead.

The query app runs under uvicorn in a thread with a real local LLM (SmolLM2-135M served by
llama.cpp on one thread) on a populated store. Each question is asked streamed
(`"stream": true`, Server-Sent Events) and whole; the service's overhead is the client's
total time less the `generate` time the answer reports. Baseline for the overhead: the
same question through `POST /v1/search` (retrieval only, the same hybrid + rerank).
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from statistics import median
from typing import Any

import httpx

from ragops.dev.local_llm import local_llm_server
from ragops.dev.serve import serve_in_background
from ragops.generation.sse import sse_events
from ragops.resources import get_service
from ragops.retrieval.search import ms_since
from sample_store import (
    bench_arguments,
    markdown_table,
    model_dir_from_env,
    page_path,
    percentile,
    populated_store,
    runs_asked,
    say,
)

QUESTIONS = (
    "Which steps does every file dropped into the documents bucket go through?",
    "How are Latin-1 or UTF-16 text files read?",
    "Does each Markdown chunk know the section it came from?",
    "How are PDF files read?",
    "What does the HTML parser keep and what does it drop?",
    "In what units are chunks measured?",
    "How long can a chunk be at most?",
    "How does the chunker split long paragraphs?",
    "How are a document and its chunks written to PostgreSQL?",
    "What happens when an unchanged file is ingested again?",
    "What happens to a corrupt PDF in a batch?",
    "How does the vector leg find the nearest chunks?",
    "Which PostgreSQL functions does the lexical leg use?",
    "How does Reciprocal Rank Fusion score a chunk?",
    "Which cross-encoder reranks the fused candidates?",
    "How many fused candidates are reranked by default?",
    "Why does ragops turn on iterative index scans for filters?",
    "What triggers the ingest Lambda function?",
    "Why do the query function's cold starts stay short?",
    "Which PostgreSQL versions can be used as the store?",
    "How many dimensions does the embedding model produce?",
    "What happens when the store is opened with a different embedding model?",
)
QUICK_QUESTIONS = 6
LLM_MAX_TOKENS = 128
TIMEOUT = httpx.Timeout(300.0)


def _configure_service(database_url: str, model_dir: Path, llm_base_url: str) -> None:
    """RAGOPS_* for the app's settings, and cold process caches, as a new container has."""
    from ragops.settings import get_settings

    for name in [n for n in os.environ if n.startswith("RAGOPS_")]:
        del os.environ[name]
    os.environ.update(
        RAGOPS_DATABASE_URL=database_url,
        RAGOPS_MODEL_DIR=str(model_dir),
        RAGOPS_LLM_BASE_URL=llm_base_url,
        # The figures are the answer path's; an API key check adds a lookup and an upsert.
        RAGOPS_AUTH="off",
        # Bounds the few questions the tiny model answers at length, so a run fits minutes.
        RAGOPS_LLM_MAX_TOKENS=str(LLM_MAX_TOKENS),
        # Runs repeat the questions: each request embeds its question, as a new one would.
        RAGOPS_QUERY_CACHE_SIZE="0",
    )
    if get_service.cache_info().currsize:
        get_service().close()
    get_service.cache_clear()
    get_settings.cache_clear()


def _sse_events(lines: Iterator[str]) -> Iterator[tuple[str, dict[str, Any]]]:
    for name, data in sse_events(lines):
        yield name, json.loads(data)


def ask_streamed(client: httpx.Client, question: str) -> dict[str, Any]:
    """ms to the first token event and to the final event, and the answer's own timings."""
    started = time.perf_counter()
    first_token = None
    final: dict[str, Any] | None = None
    body = {"query": question, "stream": True}
    with client.stream("POST", "/v1/query", json=body) as response:
        response.raise_for_status()
        for name, data in _sse_events(response.iter_lines()):
            if name == "token" and first_token is None:
                first_token = ms_since(started)
            elif name == "final":
                final = data
    total = ms_since(started)
    if final is None:
        raise RuntimeError(f"no final event for {question!r}")
    # An answer refused before the LLM may come whole in the final event.
    return _figures(final, total, total if first_token is None else first_token)


def ask_whole(client: httpx.Client, question: str) -> dict[str, Any]:
    started = time.perf_counter()
    response = client.post("/v1/query", json={"query": question})
    total = ms_since(started)
    response.raise_for_status()
    return _figures(response.json(), total, None)


def search(client: httpx.Client, question: str) -> float:
    started = time.perf_counter()
    response = client.post("/v1/search", json={"query": question})
    total = ms_since(started)
    response.raise_for_status()
    if not response.json()["results"]:
        raise RuntimeError(f"no search results for {question!r}")
    return total


def _figures(answer: dict[str, Any], total_ms: float, ttft_ms: float | None) -> dict[str, Any]:
    generate = answer["meta"]["timings_ms"]["generate"]
    return {
        "mode": answer["meta"]["mode"],
        "ttft_ms": ttft_ms,
        "total_ms": total_ms,
        "generate_ms": generate,
        "overhead_ms": total_ms - generate,
        "completion_tokens": answer["usage"]["completion_tokens"],
    }


def measure(base_url: str, questions: Sequence[str], runs: int) -> dict[str, Any]:
    """Every question, each run: streamed, whole, and searched; one untimed pass first."""
    samples: dict[str, list[Any]] = {"streamed": [], "whole": [], "search": []}
    with httpx.Client(base_url=base_url, timeout=TIMEOUT) as client:
        for question in questions[:2]:
            ask_whole(client, question)
            search(client, question)
        for run in range(runs):
            # One pass per kind: back-to-back identical prompts would let the LLM server
            # answer the second from its prompt cache.
            for question in questions:
                samples["streamed"].append(ask_streamed(client, question))
            for question in questions:
                samples["whole"].append(ask_whole(client, question))
            for question in questions:
                samples["search"].append(search(client, question))
            say(f"answers run {run + 1}/{runs} done")
    return samples


def summarise(samples: dict[str, list[Any]], runs: int, questions: int) -> dict[str, Any]:
    """p50/p95 over every request of the run whose median they are, medians over runs."""

    def per_run(values: list[float], stat: float) -> float:
        chunks = [values[r * questions : (r + 1) * questions] for r in range(runs)]
        return median([percentile(chunk, stat) for chunk in chunks])

    streamed, whole = samples["streamed"], samples["whole"]
    figures: dict[str, Any] = {}
    for stat, share in (("p50", 0.5), ("p95", 0.95)):
        figures[stat] = {
            "ttft_ms": per_run([s["ttft_ms"] for s in streamed], share),
            "stream_total_ms": per_run([s["total_ms"] for s in streamed], share),
            "stream_overhead_ms": per_run([s["overhead_ms"] for s in streamed], share),
            "whole_total_ms": per_run([s["total_ms"] for s in whole], share),
            "whole_overhead_ms": per_run([s["overhead_ms"] for s in whole], share),
            "search_ms": per_run(samples["search"], share),
        }
    modes = [s["mode"] for s in whole]
    figures["generative_share"] = modes.count("generative") / len(modes)
    figures["completion_tokens_median"] = median([s["completion_tokens"] for s in whole])
    return figures


HEADER = ["Figure", "ragops", "baseline: POST /v1/search", "ratio"]


def rows(figures: dict[str, Any]) -> list[list[str]]:
    table = []
    for stat in ("p50", "p95"):
        f = figures[stat]
        search_ms = f["search_ms"]
        table += [
            [f"Time to first token, streamed, {stat} (ms)", f"{f['ttft_ms']:.0f}", "-", "-"],
            [f"Total, streamed, {stat} (ms)", f"{f['stream_total_ms']:.0f}", "-", "-"],
            [f"Total, not streamed, {stat} (ms)", f"{f['whole_total_ms']:.0f}", "-", "-"],
            [
                f"Service overhead (total - generate), streamed, {stat} (ms)",
                f"{f['stream_overhead_ms']:.0f}",
                f"{search_ms:.0f}",
                f"{f['stream_overhead_ms'] / search_ms:.2f}x",
            ],
            [
                f"Service overhead (total - generate), not streamed, {stat} (ms)",
                f"{f['whole_overhead_ms']:.0f}",
                f"{search_ms:.0f}",
                f"{f['whole_overhead_ms'] / search_ms:.2f}x",
            ],
        ]
    return table


def write_page(report: dict[str, Any], path: Path) -> None:
    figures = report["figures"]
    text = f"""# Benchmarks: generated answers over HTTP

Written by `bench/answers.py`. {report["questions"]} questions x {report["runs"]} run(s);
each p50/p95 is taken over one run's questions, then the median over runs is shown.
Ratio = ragops overhead / the baseline's search time, measured in the same run on this
machine ({os.cpu_count()} CPUs). Generated {time.strftime("%Y-%m-%dT%H:%M:%S%z")}.

{markdown_table(HEADER, rows(figures))}

Answers generated by the LLM (the rest were refused before it, below the relevance
threshold): {figures["generative_share"]:.0%}; median completion tokens
{figures["completion_tokens_median"]:.0f}.

## Method

- **Store**: the embedded PostgreSQL, {report["store"]["files"]} files
  ({report["store"]["chunks"]} chunks): samples/docs/ plus package READMEs from
  `bench/corpus.py`. The questions are answerable from samples/docs/ (`QUESTIONS`).
- **Server**: `create_query_app(include_health=True)` under uvicorn in a thread of the
  benchmark process, configured by `RAGOPS_*` variables only (default retrieval: hybrid +
  rerank), with SmolLM2-135M-Instruct served by llama.cpp (`local_llm_server(threads=1)`)
  and `RAGOPS_LLM_MAX_TOKENS={LLM_MAX_TOKENS}` (default 512) so a run fits in minutes.
  The client is httpx in the same process, over loopback.
- **Per run**: every question through `POST /v1/query` with `"stream": true` (time to the
  first `token` event, time to the `final` event), then every question without streaming,
  then every question through `POST /v1/search` (separate passes, so no request repeats
  the prompt just before it). Two untimed questions warm the pool and the models first.
- **Overhead** = the client's total time less `meta.timings_ms.generate` of the answer:
  retrieval, reranking, prompt building, citation mapping, serialisation and HTTP. Its
  baseline is the retrieval alone through the same HTTP API, so the ratio says how much
  the answer path adds around the LLM beyond what search already costs.
- The LLM is tiny and on one thread, so TTFT and totals mostly measure it: compare the
  overhead rows, not the absolute totals, across machines.
"""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def main(argv: Sequence[str] | None = None) -> int:
    parser = bench_arguments(3, "runs over the questions", f"1 run of {QUICK_QUESTIONS} questions")
    parser.description = __doc__.splitlines()[0]
    args = parser.parse_args(argv)
    runs = runs_asked(args, "answers")
    if runs is None:
        return 2
    questions = QUESTIONS[:QUICK_QUESTIONS] if args.quick else QUESTIONS
    model_dir = model_dir_from_env()
    store = populated_store(model_dir, readme_chunks=100 if args.quick else 300)
    with local_llm_server(threads=1) as llm_base_url:
        _configure_service(store.database_url, model_dir, llm_base_url)
        from ragops.api.app import create_query_app

        try:
            with serve_in_background(create_query_app(include_health=True)) as base_url:
                samples = measure(base_url, questions, runs)
        finally:
            get_service().close()
    report = {
        "runs": runs,
        "questions": len(questions),
        "store": {"files": store.files, "chunks": store.chunks},
        "figures": summarise(samples, runs, len(questions)),
    }
    print(markdown_table(HEADER, rows(report["figures"])))
    page = page_path(args, "answers")
    write_page(report, page)
    say(f"wrote {page}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
