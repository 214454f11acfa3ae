"""Concurrent load on the HTTP API: `/v1/search` and `/v1/query` (extractive) at 10k and 100k
chunks, from this process against a uvicorn server in another, over loopback, with auth on.

The store is the benchmark corpus ingested by ragops, then copied (vectors jittered, see
search_store.py) up to each size. Each request's stage timings come back in its `meta`, so
the report splits the server's time into embed, SQL and rerank. Every non-200 answer is
counted: under load the service must hold, not shed requests.
"""

from __future__ import annotations

import asyncio
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from benchmark import create_database, drop_database
from charts import Series, xychart
from corpus import build_corpus
from loadclient import JsonConnection, ResponseError
from queries import QUERIES
from ragops.access import keys
from ragops.ingest.pipeline import discover_files
from ragops.service import Service
from ragops.settings import Settings
from report import add_from_results_option, render_saved, write_report
from sample_store import (
    REPO,
    bench_arguments,
    embedded_server,
    markdown_table,
    model_dir_from_env,
    page_path,
    percentile,
    results_path,
    runs_asked,
    say,
)
from search_store import fill_store, read_corpus

# (label, path, body fields besides the query)
ROUTES: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("/v1/search", "/v1/search", {}),
    ("/v1/search, no rerank", "/v1/search", {"rerank": False}),
    ("/v1/query", "/v1/query", {}),
)
CONCURRENCY = (1, 4, 16)
STAGES = ("embed", "retrieve", "rerank")


def main(argv: list[str] | None = None) -> int:
    parser = bench_arguments(3, "passes per route and concurrency", "10k only, fewer requests")
    parser.add_argument("--sizes", default="10000,100000", help="store sizes, comma-separated")
    parser.add_argument("--requests", type=int, default=60, help="requests per pass")
    add_from_results_option(parser, REPO / "bench" / "results" / "load.json")
    args = parser.parse_args(argv)
    if args.from_results:
        return render_saved(args.from_results, render, page_path(args, "load"))
    runs = runs_asked(args, "load")
    if runs is None:
        return 2
    sizes = [10_000] if args.quick else [int(s) for s in args.sizes.split(",")]
    requests = 16 if args.quick else args.requests
    model_dir = model_dir_from_env()
    workdir, server_url = embedded_server()

    say("ingesting the benchmark corpus with ragops")
    corpus = build_corpus(workdir / "corpus", 1200, model_dir)
    source_url = create_database(server_url, "load_source")
    service = Service(Settings(database_url=source_url, model_dir=model_dir, _env_file=None))  # type: ignore[call-arg]
    list(service.ingestor.ingest_paths(discover_files([corpus.folder]), "default"))
    service.close()
    stored = read_corpus(source_url)
    drop_database(server_url, "load_source")

    report: dict[str, Any] = {"requests_per_pass": requests, "runs": runs, "sizes": []}
    for size in sizes:
        url = create_database(server_url, f"load_{size}")
        say(f"writing a {size:,}-chunk store")
        chunks = fill_store(url, stored, size)
        report["sizes"].append(measure_size(url, model_dir, chunks, requests, runs))
        drop_database(server_url, f"load_{size}")
    page = page_path(args, "load")
    write_report(report, page, results_path(args, "load"), render)
    say(f"wrote {page}")
    return 0


def measure_size(
    database_url: str, model_dir: Path, chunks: int, requests: int, runs: int
) -> dict[str, Any]:
    settings = Settings(database_url=database_url, model_dir=model_dir, _env_file=None)  # type: ignore[call-arg]
    service = Service(settings)
    with service.db.pool.connection() as conn:
        _, secret = keys.create_key(conn, "default", "load benchmark")
        storage = _storage_mb(conn)
    service.close()
    port = _free_port()
    env = {
        **os.environ,
        "RAGOPS_DATABASE_URL": database_url,
        "RAGOPS_MODEL_DIR": str(model_dir),
        "RAGOPS_AUTH": "on",
        # The per-key limit would answer 429s by design; this measures the service itself.
        "RAGOPS_RATE_LIMIT_PER_MINUTE": "0",
        # Passes repeat the questions: each request embeds its question, as a new one would.
        "RAGOPS_QUERY_CACHE_SIZE": "0",
        "RAGOPS_LLM_BASE_URL": "",
        "RAGOPS_LOG_LEVEL": "WARNING",
    }
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "ragops.api.app:create_local_app",
            "--factory",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        env=env,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(base)
        results = asyncio.run(_measure_routes(port, secret, requests, runs))
    finally:
        server.terminate()
        server.wait(30)
    return {"chunks": chunks, "storage_mb": storage, "results": results}


def _storage_mb(conn: Any) -> dict[str, float]:
    """The store's size on disk: what each chunk costs, for planning larger stores."""
    sizes = {
        "chunks_table": "pg_table_size('chunks')",
        "hnsw_index": "pg_relation_size('chunks_embedding_idx')",
        "gin_index": "pg_relation_size('chunks_tsv_idx')",
        "database": "pg_database_size(current_database())",
    }
    out = {}
    for name, expression in sizes.items():
        row = conn.execute(f"SELECT {expression}").fetchone()
        out[name] = round(row[0] / 2**20, 1)
    return out


async def _measure_routes(port: int, secret: str, requests: int, runs: int) -> list[dict[str, Any]]:
    headers = {"Authorization": f"Bearer {secret}"}
    connections = [JsonConnection("127.0.0.1", port, headers) for _ in range(max(CONCURRENCY))]
    out = []
    try:
        await _pass(connections[:1], "/v1/search", {}, 4)  # warm-up: models, caches, pool
        for route, path, extra in ROUTES:
            for concurrency in CONCURRENCY:
                clients = connections[:concurrency]
                passes = [await _pass(clients, path, extra, requests) for _ in range(runs)]
                row = _summarize(route, concurrency, passes)
                say(
                    f"  {route} x{concurrency}: p50 {row['p50_ms']:.0f} ms, p95 "
                    f"{row['p95_ms']:.0f} ms, {row['throughput']:.1f} req/s, "
                    f"{row['errors']} errors"
                )
                out.append(row)
    finally:
        for connection in connections:
            await connection.close()
    return out


async def _pass(
    connections: Sequence[JsonConnection],
    path: str,
    extra: dict[str, Any],
    requests: int,
) -> dict[str, Any]:
    """`requests` requests, one at a time on each connection, queries taken in turn.

    A connection that fails counts as an error (status 0) and is opened again.
    """
    latencies: list[float] = []
    stages: dict[str, list[float]] = {stage: [] for stage in STAGES}
    # Per answered request: the client's time less the service's own (HTTP, framework, auth).
    outside: list[float] = []
    errors: list[int] = []
    queue: asyncio.Queue[str] = asyncio.Queue()
    for i in range(requests):
        queue.put_nowait(QUERIES[i % len(QUERIES)])

    async def worker(connection: JsonConnection) -> None:
        while not queue.empty():
            query = queue.get_nowait()
            started = time.perf_counter()
            try:
                status, body = await connection.post(path, {"query": query, **extra})
            except (OSError, ResponseError, asyncio.IncompleteReadError):
                status, body = 0, None
            elapsed_ms = (time.perf_counter() - started) * 1000
            latencies.append(elapsed_ms)
            if status != 200:
                errors.append(status)
                continue
            timings = body["meta"].get("timings_ms", {})
            for stage in STAGES:
                stages[stage].append(float(timings.get(stage, 0.0)))
            if "total" in timings:
                outside.append(elapsed_ms - float(timings["total"]))

    started = time.perf_counter()
    await asyncio.gather(*(worker(connection) for connection in connections))
    seconds = time.perf_counter() - started
    return {
        "latencies": latencies,
        "stages": stages,
        "outside": outside,
        "errors": errors,
        "seconds": seconds,
    }


def _summarize(route: str, concurrency: int, passes: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Medians over passes of each pass's percentiles; stage shares of the server's time."""

    def median_of(share: float) -> float:
        return statistics.median(percentile(p["latencies"], share) for p in passes)

    stage_ms = {s: sum(sum(p["stages"][s]) for p in passes) for s in STAGES}
    total = sum(stage_ms.values()) or 1.0
    return {
        "route": route,
        "concurrency": concurrency,
        "p50_ms": median_of(0.50),
        "p95_ms": median_of(0.95),
        "p99_ms": median_of(0.99),
        "throughput": statistics.median(len(p["latencies"]) / p["seconds"] for p in passes),
        "requests": sum(len(p["latencies"]) for p in passes),
        "errors": sum(len(p["errors"]) for p in passes),
        "stage_share": {s: stage_ms[s] / total for s in STAGES},
        "stage_p50_ms": {
            s: statistics.median([t for p in passes for t in p["stages"][s]] or [0.0])
            for s in STAGES
        },
        "outside_p50_ms": statistics.median([t for p in passes for t in p["outside"]] or [0.0]),
    }


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_healthy(base: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/health", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"the API at {base} did not become healthy in {timeout:.0f} s")


def render(report: dict[str, Any]) -> str:
    lines = [
        "# Load benchmark",
        "",
        "Generated by `bench/load.py`: a uvicorn server of the query API (auth on, one process)",
        "and a lean asyncio client (bench/loadclient.py) in another process on loopback. Each row: "
        f"{report['requests_per_pass']} requests per pass; percentiles are medians over "
        f"{report['runs']} pass(es).",
        "`/v1/query` has no LLM configured, so it answers extractively: retrieval, reranking",
        "and the answer's assembly. Stage shares are of the server's embed + SQL + rerank time;",
        "the stage medians are the server's, and \"outside\" is the client's time less the",
        "service's own (HTTP, the framework, authentication and JSON, both ends).",
        "",
    ]
    for size in report["sizes"]:
        rows = [
            [
                r["route"],
                str(r["concurrency"]),
                f"{r['p50_ms']:.0f}",
                f"{r['p95_ms']:.0f}",
                f"{r['p99_ms']:.0f}",
                f"{r['throughput']:.1f}",
                f"{r['errors']} of {r['requests']}",
                " / ".join(f"{r['stage_share'][s]:.0%}" for s in STAGES),
                _stage_medians(r),
            ]
            for r in size["results"]
        ]
        storage = size.get("storage_mb")
        on_disk = (
            [
                f"On disk: chunks table {storage['chunks_table']:,.0f} MB, HNSW index "
                f"{storage['hnsw_index']:,.0f} MB, GIN index {storage['gin_index']:,.0f} MB, "
                f"database {storage['database']:,.0f} MB.",
                "",
            ]
            if storage
            else []
        )
        lines += [
            f"## {size['chunks']:,} chunks",
            "",
            *on_disk,
            markdown_table(
                [
                    "route",
                    "clients",
                    "p50 ms",
                    "p95 ms",
                    "p99 ms",
                    "req/s",
                    "errors",
                    "embed / SQL / rerank",
                    "p50 ms: embed / SQL / rerank / outside",
                ],
                rows,
            ),
            "",
            _charts(size),
            "",
        ]
    return "\n".join(lines)


def _stage_medians(row: dict[str, Any]) -> str:
    """The server's median per stage and the time outside it (absent from older results)."""
    stages = row.get("stage_p50_ms")
    if stages is None:
        return "-"
    return " / ".join([*(f"{stages[s]:.1f}" for s in STAGES), f"{row['outside_p50_ms']:.1f}"])


def _charts(size: dict[str, Any]) -> str:
    """p50 and p95 against the number of clients, a line per route, for one store size."""
    results = size["results"]
    routes = list(dict.fromkeys(r["route"] for r in results))
    clients = sorted({r["concurrency"] for r in results})
    by_key = {(r["route"], r["concurrency"]): r for r in results}
    return "\n\n".join(
        xychart(
            f"{stat} latency against concurrent clients, {size['chunks']:,} chunks (ms)",
            [str(c) for c in clients],
            "ms",
            [Series(route, [by_key[route, c][f"{stat}_ms"] for c in clients]) for route in routes],
            x_label="clients",
        )
        for stat in ("p50", "p95")
    )


if __name__ == "__main__":
    sys.exit(main())
