"""HNSW against exact search: recall@10 and latency per ef_search, build time and size.

There are not a million distinct passages on this machine to embed, and embedding them
would take hours, so the vectors are drawn from the distribution of real ones: ragops
embeds a few thousand chunks of installed packages' documentation, and the benchmark
draws from two models of them, each normalized like the model's output:

- `clustered`: a real vector plus Gaussian noise shaped like the real vectors' covariance,
  its scale chosen so that a set as large as the real one has the real set's relative
  contrast (mean distance over nearest-neighbour distance, which predicts how hard nearest
  neighbour search is). Real text is clustered by topic, and so are these.
- `gaussian`: a Gaussian with the real vectors' mean and covariance. It keeps their uneven
  spread over the 384 dimensions but none of their clusters; its neighbours are much harder
  to tell apart than real ones (its local intrinsic dimension is several times theirs), so
  it is the pessimistic bound.

The page shows both measures for the real vectors and for each model. Queries are the
evaluation set's questions and real chunks held out of the fit; the exact top 10 of each
comes from a brute-force scan in numpy.

Every size is indexed as ragops builds it (m = 16, ef_construction = 64, cosine); from 1M
clustered vectors on, also with the larger parameters docs/scaling.md recommends there
(`ragops index --m 24 --ef-construction 200`). Each index is read into shared buffers
(pg_prewarm) before it is timed: the embedded server has a quarter of the machine's memory
for them, and a search in an index that does not fit pays for copying pages in.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import psycopg
from pgvector.psycopg import register_vector
from psycopg import sql

from benchmark import EVAL_DATASET
from charts import Series, xychart
from corpus import build_corpus, chunker
from ragops.db.store import IndexParameters
from ragops.evaluation.dataset import DatasetPaths, load_dataset
from ragops.models import Models
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

Vectors = npt.NDArray[np.float32]
EF_SEARCH = (20, 40, 100, 200, 400, 600, 800, 1000)
DEFAULT_INDEX = IndexParameters()  # as migration 0001 builds it
LARGE_INDEX = IndexParameters(m=24, ef_construction=200)
LARGE_FROM = 1_000_000
RECALL_TARGET = 0.95
LATENCY_TARGET_MS = 10.0
QUERIES_HELD_OUT = 100
DISTRIBUTIONS = ("clustered", "gaussian")


def main(argv: list[str] | None = None) -> int:
    parser = bench_arguments(3, "timed passes over the queries per ef_search", "100k only")
    parser.add_argument("--sizes", default="100000,1000000", help="vector counts, comma-separated")
    parser.add_argument("--real", type=int, default=3000, help="real chunks to fit on")
    parser.add_argument(
        "--distributions",
        default="clustered,gaussian=100000",
        help=f"vector models to draw from, comma-separated ({', '.join(DISTRIBUTIONS)}), "
        "each with its own sizes if given as NAME=SIZE+SIZE",
    )
    add_from_results_option(parser, REPO / "bench" / "results" / "hnsw.json")
    args = parser.parse_args(argv)
    if args.from_results:
        return render_saved(args.from_results, render, page_path(args, "hnsw"))
    runs = runs_asked(args, "hnsw")
    if runs is None:
        return 2
    sizes = [20_000] if args.quick else [int(s) for s in args.sizes.split(",")]

    # "clustered,gaussian=100000": a distribution may name its own sizes, joined by "+".
    distributions: dict[str, list[int]] = {}
    for item in filter(None, args.distributions.split(",")):
        name, _, own = item.partition("=")
        distributions[name] = [int(n) for n in own.split("+")] if own and not args.quick else sizes
    if unknown := set(distributions) - set(DISTRIBUTIONS):
        parser.error(f"unknown distributions {sorted(unknown)}; known: {DISTRIBUTIONS}")
    model_dir = model_dir_from_env()
    workdir, url = embedded_server()

    embedded, questions = real_vectors(model_dir, workdir, args.real)
    rng = np.random.default_rng(7)
    real = np.unique(embedded, axis=0)  # repeated chunks (licence texts) would skew the fit
    order = rng.permutation(len(real))
    held_out, real = real[order[:QUERIES_HELD_OUT]], real[order[QUERIES_HELD_OUT:]]
    queries = np.vstack([questions, held_out])
    say(f"{len(real)} distinct real chunk vectors to fit on; {len(queries)} queries")
    models = {name: VectorModel.fit(real, name, rng) for name in distributions}
    report: dict[str, Any] = {
        "real_vectors": len(real),
        "queries": len(queries),
        "real_shape": neighbourhood_shape(real, rng),
        "models": {name: model.describe(rng) for name, model in models.items()},
        "sizes": [],
    }
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_prewarm")
        register_vector(conn)
        report["shared_buffers"] = _scalar(conn, "SHOW shared_buffers")
        for name, model in models.items():
            for size in distributions[name]:
                indexes = [DEFAULT_INDEX]
                if name == "clustered" and size >= LARGE_FROM:
                    indexes.append(LARGE_INDEX)
                for row in measure_size(conn, model, queries, size, runs, rng, indexes):
                    report["sizes"].append({"distribution": name, **row})
    page = page_path(args, "hnsw")
    write_report(report, page, results_path(args, "hnsw"), render)
    say(f"wrote {page}")
    return 0


def real_vectors(model_dir: Path, workdir: Path, count: int) -> tuple[Vectors, Vectors]:
    """ragops' int8 vectors of `count` real chunks, and of the evaluation questions."""
    models = Models(model_dir, "int8")
    corpus = build_corpus(workdir / "corpus", count, model_dir)
    chunk = chunker(model_dir)
    texts: list[str] = []
    for path in sorted(corpus.folder.rglob("*")):
        if path.is_file():
            texts += [c.embedding_text for c in chunk(path.read_bytes(), path.name)]
    say(f"embedding {len(texts)} real chunks")
    chunks = models.embedder.embed(texts)
    queries = load_dataset(DatasetPaths.in_folder(EVAL_DATASET)).queries.values()
    questions = models.embedder.embed([query.text for query in queries])
    return chunks, questions


class VectorModel:
    """Draws unit vectors like the real ones (see the module docstring)."""

    def __init__(self, name: str, real: Vectors, spread: float) -> None:
        self.name = name
        self.real = real
        self.spread = spread
        self.mean = real.mean(axis=0)
        covariance = np.cov(real, rowvar=False) + 1e-6 * np.eye(real.shape[1])
        self.factor = np.linalg.cholesky(covariance)

    @classmethod
    def fit(cls, real: Vectors, name: str, rng: np.random.Generator) -> VectorModel:
        if name == "gaussian":
            return cls(name, real, 1.0)
        # Relative contrast falls as the noise grows: bisect for the real set's own.
        target = neighbourhood_shape(real, rng)["relative_contrast"]
        low, high = 0.05, 2.0
        for _ in range(14):
            middle = (low + high) / 2
            shape = neighbourhood_shape(cls(name, real, middle).draw(len(real), rng), rng)
            low, high = (middle, high) if shape["relative_contrast"] > target else (low, middle)
        return cls(name, real, (low + high) / 2)

    def describe(self, rng: np.random.Generator) -> dict[str, float]:
        """The model's neighbourhood shape at the real set's size, and its noise scale."""
        shape = neighbourhood_shape(self.draw(len(self.real), rng), rng)
        return {"spread": self.spread, **shape}

    def draw(self, size: int, rng: np.random.Generator) -> Vectors:
        dims = self.real.shape[1]
        out = np.empty((size, dims), dtype=np.float32)
        for start in range(0, size, 100_000):
            stop = min(size, start + 100_000)
            noise = rng.standard_normal((stop - start, dims)) @ self.factor.T
            if self.name == "gaussian":
                draws = self.mean + noise
            else:
                draws = self.real[rng.integers(0, len(self.real), stop - start)]
                draws = draws + self.spread * noise
            out[start:stop] = draws / np.linalg.norm(draws, axis=1, keepdims=True)
        return out


def neighbourhood_shape(
    vectors: Vectors, rng: np.random.Generator, probes: int = 300, k: int = 10
) -> dict[str, float]:
    """Medians over probe points of the relative contrast (mean cosine distance to all
    points over the distance to the nearest) and of the local intrinsic dimension from
    the k nearest (the maximum-likelihood estimate): the higher the contrast and the
    lower the dimension, the easier nearest-neighbour search."""
    picked = rng.choice(len(vectors), min(probes, len(vectors)), replace=False)
    distances = 1.0 - vectors[picked] @ vectors.T
    distances[np.arange(len(picked)), picked] = np.inf  # not its own neighbour
    nearest = np.sort(np.partition(distances, k, axis=1)[:, :k], axis=1)
    nearest = np.maximum(nearest, 1e-9)
    finite = np.where(np.isinf(distances), np.nan, distances)
    contrast = np.nanmean(finite, axis=1) / nearest[:, 0]
    lid = -1.0 / np.mean(np.log(nearest[:, :-1] / nearest[:, -1:]), axis=1)
    return {
        "relative_contrast": float(np.median(contrast)),
        "local_dimension": float(np.median(lid)),
        "nearest_cosine": float(np.median(1.0 - nearest[:, 0])),
    }


def exact_top10(vectors: Vectors, queries: Vectors) -> list[set[int]]:
    """Ids (1-based, as stored) of each query's 10 nearest vectors by cosine."""
    best = np.full((len(queries), 10), -np.inf, dtype=np.float32)
    ids = np.zeros((len(queries), 10), dtype=np.int64)
    for start in range(0, len(vectors), 200_000):
        scores = queries @ vectors[start : start + 200_000].T
        top = np.argpartition(-scores, 10, axis=1)[:, :10]
        merged_scores = np.hstack([best, np.take_along_axis(scores, top, axis=1)])
        merged_ids = np.hstack([ids, top + start + 1])
        keep = np.argsort(-merged_scores, axis=1)[:, :10]
        best = np.take_along_axis(merged_scores, keep, axis=1)
        ids = np.take_along_axis(merged_ids, keep, axis=1)
    return [set(row.tolist()) for row in ids]


def measure_size(
    conn: psycopg.Connection,
    model: VectorModel,
    queries: Vectors,
    size: int,
    runs: int,
    rng: np.random.Generator,
    indexes: list[IndexParameters],
) -> list[dict[str, Any]]:
    """One row per index: the vectors loaded once, indexed with each set of parameters."""
    say(f"{size:,} {model.name} vectors: drawing and loading")
    vectors = model.draw(size, rng)
    truth = exact_top10(vectors, queries)
    conn.execute("DROP TABLE IF EXISTS hnsw_bench")
    conn.execute("CREATE TABLE hnsw_bench (id integer PRIMARY KEY, embedding vector(384))")
    with (
        conn.cursor() as cur,
        cur.copy("COPY hnsw_bench (id, embedding) FROM STDIN WITH (FORMAT BINARY)") as copy,
    ):
        copy.set_types(["int4", "vector"])
        for i, vector in enumerate(vectors, start=1):
            copy.write_row((i, vector))
    conn.execute("VACUUM ANALYZE hnsw_bench")
    # Enough memory that the graph is built in memory, as pgvector advises; one worker
    # beside the leader on two cores.
    conn.execute("SET maintenance_work_mem = '6GB'")
    conn.execute("SET max_parallel_maintenance_workers = 1")
    table_mb = _scalar(conn, "SELECT pg_table_size('hnsw_bench')") / 2**20
    exact_ms = _exact_latency(conn, queries[:5])
    rows = []
    for index in indexes:
        conn.execute("DROP INDEX IF EXISTS hnsw_bench_idx")
        say(f"{size:,} vectors: building the index, {index}")
        started = time.perf_counter()
        conn.execute(
            sql.SQL(
                "CREATE INDEX hnsw_bench_idx ON hnsw_bench "
                "USING hnsw (embedding vector_cosine_ops) {}"
            ).format(index.clause())
        )
        build_s = time.perf_counter() - started
        index_mb = _scalar(conn, "SELECT pg_relation_size('hnsw_bench_idx')") / 2**20
        say(f"  built in {build_s:.0f} s, {index_mb:.0f} MB")
        conn.execute("SELECT pg_prewarm('hnsw_bench'), pg_prewarm('hnsw_bench_idx')")
        rows.append(
            {
                "vectors": size,
                "m": index.m,
                "ef_construction": index.ef_construction,
                "build_s": build_s,
                "index_mb": index_mb,
                "table_mb": table_mb,
                "exact_p50_ms": exact_ms,
                "sweep": _sweep(conn, queries, truth, runs),
            }
        )
    return rows


def _sweep(
    conn: psycopg.Connection, queries: Vectors, truth: list[set[int]], runs: int
) -> list[dict[str, float]]:
    """Recall@10 and latency at each ef_search."""
    sweep = []
    for ef in EF_SEARCH:
        conn.execute(f"SET hnsw.ef_search = {ef}")
        recall, latencies = _query_all(conn, queries, truth, runs)
        row = {
            "ef_search": ef,
            "recall_at_10": recall,
            "p50_ms": statistics.median(latencies),
            "p95_ms": percentile(latencies, 0.95),
        }
        sweep.append(row)
        say(f"  ef_search {ef}: recall@10 {recall:.4f}, p50 {row['p50_ms']:.2f} ms")
    return sweep


def _query_all(
    conn: psycopg.Connection, queries: Vectors, truth: list[set[int]], runs: int
) -> tuple[float, list[float]]:
    """Mean recall@10 over the queries, and every query's latency over `runs` passes."""
    statement = "SELECT id FROM hnsw_bench ORDER BY embedding <=> %s LIMIT 10"
    latencies: list[float] = []
    recalls: list[float] = []
    for run in range(runs + 1):  # the first pass warms the cache and is not timed
        for query, expected in zip(queries, truth, strict=True):
            started = time.perf_counter()
            found = {row[0] for row in conn.execute(statement, (query,)).fetchall()}
            elapsed = (time.perf_counter() - started) * 1000
            if run == 0:
                recalls.append(len(found & expected) / 10)
            else:
                latencies.append(elapsed)
    return float(np.mean(recalls)), latencies


def _exact_latency(conn: psycopg.Connection, queries: Vectors) -> float:
    """A full scan's latency: what HNSW saves. Adding 0 to the distance makes an order the
    index cannot give, so every row is read whatever the planner's settings (the plan is
    checked)."""
    statement = "SELECT id FROM hnsw_bench ORDER BY (embedding <=> %s) + 0 LIMIT 10"
    plan = conn.execute("EXPLAIN " + statement, (queries[0],)).fetchall()
    assert not any("Index Scan" in row[0] for row in plan), plan
    times = []
    for query in queries:
        started = time.perf_counter()
        conn.execute(statement, (query,)).fetchall()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def _scalar(conn: psycopg.Connection, query: str) -> Any:
    row = conn.execute(query).fetchone()
    assert row is not None
    return row[0]


def render(report: dict[str, Any]) -> str:
    lines = [
        "# HNSW benchmark",
        "",
        "Generated by `bench/hnsw.py`. Recall@10 is against an exact brute-force scan of",
        f"the same vectors; {report['queries']} queries (the evaluation questions and real",
        "chunks held out of the fit). Vectors are drawn from models of "
        f"{report['real_vectors']} real ragops",
        "vectors (see the script's docstring). Index: m = 16, ef_construction = 64 (ragops'",
        "default), and at 1M also the larger parameters docs/scaling.md recommends there.",
        f"Target: recall@10 >= {RECALL_TARGET} with p50 <= {LATENCY_TARGET_MS:.0f} ms at 1M.",
        "",
    ]
    if "shared_buffers" in report:
        lines += [
            f"PostgreSQL's shared buffers: {report['shared_buffers']} (the embedded server's",
            "default, a quarter of the machine's memory); each index is read into them before",
            "it is timed.",
            "",
        ]
    if "real_shape" in report:
        lines += _shapes(report)
    for size in report["sizes"]:
        distribution = size.get("distribution", "gaussian")
        m, ef_construction = size.get("m", 16), size.get("ef_construction", 64)
        lines += [
            f"## {size['vectors']:,} vectors, {distribution}, "
            f"m = {m}, ef_construction = {ef_construction}",
            "",
            f"Build {size['build_s']:.0f} s; index {size['index_mb']:.0f} MB; table "
            f"{size['table_mb']:.0f} MB; exact scan p50 {size['exact_p50_ms']:.0f} ms.",
            "",
        ]
        rows = []
        for row in size["sweep"]:
            met = row["recall_at_10"] >= RECALL_TARGET and row["p50_ms"] <= LATENCY_TARGET_MS
            rows.append(
                [
                    str(row["ef_search"]),
                    f"{row['recall_at_10']:.4f}",
                    f"{row['p50_ms']:.2f}",
                    f"{row['p95_ms']:.2f}",
                    f"{size['exact_p50_ms'] / row['p50_ms']:.0f}x",
                    "yes" if met else "no",
                ]
            )
        lines.append(
            markdown_table(
                ["ef_search", "recall@10", "p50 ms", "p95 ms", "faster than exact", "target met"],
                rows,
            )
        )
        lines += ["", _charts(size), ""]
    return "\n".join(lines)


def _shapes(report: dict[str, Any]) -> list[str]:
    """How hard each vector set is, against the real vectors, at the real set's size."""
    sets = [("real vectors", report["real_shape"], "-")]
    for name, described in report["models"].items():
        sets.append((f"{name} model", described, f"{described['spread']:.3f}"))
    rows = [
        [
            label,
            f"{shape['relative_contrast']:.2f}",
            f"{shape['local_dimension']:.1f}",
            f"{shape['nearest_cosine']:.3f}",
            spread,
        ]
        for label, shape, spread in sets
    ]
    table = markdown_table(
        ["set", "relative contrast", "local dimension", "nearest cosine", "noise scale"], rows
    )
    return [
        f"Neighbourhoods at {report['real_vectors']:,} vectors (medians over probe points;",
        "higher contrast and lower dimension make search easier):",
        "",
        table,
        "",
    ]


def _charts(size: dict[str, Any]) -> str:
    """Recall@10 (with its target) and latency against ef_search, for one size."""
    sweep = size["sweep"]
    efs = [str(row["ef_search"]) for row in sweep]
    recalls = [row["recall_at_10"] for row in sweep]
    # From the tenth below the lowest recall, so the curve's bend shows.
    low = int(min(*recalls, RECALL_TARGET) * 10) / 10
    vectors = (
        f"{size['vectors']:,} {size.get('distribution', 'gaussian')} vectors, m {size.get('m', 16)}"
    )
    recall = xychart(
        f"Recall@10 against ef_search, {vectors}",
        efs,
        "recall@10",
        [
            Series("recall@10", recalls),
            Series(f"the target, {RECALL_TARGET}", [RECALL_TARGET] * len(efs)),
        ],
        y_range=(low, 1.0),
        x_label="ef_search",
    )
    latency = xychart(
        f"Latency against ef_search, {vectors} (ms)",
        efs,
        "ms",
        [
            Series("p50", [row["p50_ms"] for row in sweep]),
            Series("p95", [row["p95_ms"] for row in sweep]),
        ],
        x_label="ef_search",
    )
    return f"{recall}\n\n{latency}"


if __name__ == "__main__":
    sys.exit(main())
