"""The benchmark's core path on a tiny corpus: every figure is there and positive."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.fixture
def bench(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(BENCH))
    import benchmark

    return benchmark


def _positive(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value > 0


def test_quick_benchmark_reports_every_figure(
    bench: ModuleType, server_url: str, model_dir: Path, tmp_path: Path
) -> None:
    from report import summary
    from worker import run_task

    plan = bench.Plan(
        runs=1,
        corpus_chunks=12,
        search_chunks=40,
        queries=2,
        warmup_queries=1,
        cold_start_warmup=False,
        eval_queries=2,
    )
    # Ingest and search run in this process: one torch import instead of one per task.
    report = bench.run_benchmark(
        plan, server_url, model_dir, tmp_path, say=lambda _: None, run_task=run_task
    )

    assert report["corpus"]["chunks"] >= 12
    ingest = report["ingest"]
    for system in ("ragops-int8", "ragops-fp32", "torch"):
        assert _positive(ingest["systems"][system]["chunks_per_s"])
        assert _positive(ingest["systems"][system]["peak_rss_mb"])
    assert all(_positive(r) for r in ingest["ratios"].values())
    target = ingest["target"]
    assert target["system"] == "ragops-int8"
    assert target["met"] is (ingest["ratios"]["ragops-int8"] >= target["min_ratio"])
    for system in ("ragops-int8", "ragops-fp32", "torch"):
        assert _positive(ingest["systems"][system]["megabytes_per_s"])

    cold = report["cold_start"]
    for system in ("ragops", "ragops-no-rerank", "torch"):
        assert _positive(cold["systems"][system]["seconds"])
    assert _positive(cold["ratio"])
    assert _positive(cold["ratio_without_rerank"])
    assert isinstance(cold["target"]["met"], bool)

    search = report["search"]
    assert search["chunks"] >= 40
    for system, config in (("ragops", "hybrid"), ("ragops", "hybrid+rerank"), ("torch", "hybrid")):
        figures = search["systems"][system][config]
        assert _positive(figures["p50_ms"])
        assert figures["p95_ms"] >= figures["p50_ms"]
    assert all(_positive(r) for ratios in search["ratios"].values() for r in ratios.values())

    evaluation = report["eval"]
    assert evaluation["queries"] == 2
    for system in ("ragops-int8", "ragops-fp32"):
        assert 0 < evaluation["systems"][system]["ndcg@10"] <= 1
        assert _positive(evaluation["systems"][system]["chunks"])
    assert isinstance(evaluation["target"]["met"], bool)

    table = summary(report)
    assert "| Ingest, int8 embedder" in table
    assert "| Cold start" in table
