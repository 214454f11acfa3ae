"""`ragops eval` end to end on the tiny committed dataset, against a real store and models."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
from tests.generation.servers import FaultServer, complete

from ragops.cli import main
from ragops.evaluation.dataset import CorpusDocument, DatasetPaths, load_dataset
from ragops.evaluation.run import collection_name, corpus_file
from ragops.generation.answer import NO_ANSWER
from ragops.ingest.parse import parse_document
from ragops.settings import Settings

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "eval-tiny"
METRICS = {"ndcg@10", "mrr@10", "recall@10", "precision@10", "map@100"}
LATENCY = {"latency_p50_ms", "latency_p95_ms"}
MODES = {"lexical", "vector", "hybrid", "hybrid+rerank"}
SETTINGS = {"chunk_tokens", "chunk_overlap", "candidates", "rerank_candidates", "rrf_k"}
SETTINGS |= {"ef_search", "embedder"}

Run = Callable[..., tuple[int, str, str]]


@pytest.fixture
def run(cli_env: Path, capsys: pytest.CaptureFixture[str]) -> Run:
    """`ragops eval ARGS` in-process against the test's database: (exit code, stdout, stderr)."""

    def run_eval(*argv: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = main(["eval", *argv])
        out, err = capsys.readouterr()
        return code, out, err

    return run_eval


def eval_json(run: Run, *argv: str) -> dict[str, Any]:
    code, out, err = run("--dataset", str(FIXTURE), "--json", *argv)
    assert code == 0, err
    result: dict[str, Any] = json.loads(out)
    return result


def count(database_url: str, query: str, *params: Any) -> int:
    with psycopg.connect(database_url) as conn:
        row = conn.execute(query, params).fetchone()
    assert row is not None
    return int(row[0])


# --- retrieval figures ---------------------------------------------------------------------


def test_eval_json_reports_each_mode_with_metrics_between_0_and_1(run: Run) -> None:
    result = eval_json(run)

    assert set(result) >= METRICS | LATENCY | {"modes", "queries", "corpus_documents", "chunks"}
    assert set(result["modes"]) == MODES
    assert result["mode"] == "hybrid+rerank"
    for figures in [result, *result["modes"].values()]:
        assert all(0.0 <= figures[metric] <= 1.0 for metric in METRICS), figures
        assert all(figures[key] > 0 for key in LATENCY), figures
    assert {k: result[k] for k in METRICS} == {
        k: result["modes"]["hybrid+rerank"][k] for k in METRICS
    }
    # 9 judged queries: the unanswerable and the unjudged query are not searched.
    assert (result["queries"], result["corpus_documents"]) == (9, 12)
    assert result["chunks"] >= 12
    assert set(result["settings"]) >= SETTINGS
    assert result["ingested"] is True


def test_eval_hybrid_rerank_finds_the_obvious_answers(run: Run) -> None:
    figures = eval_json(run)["modes"]["hybrid+rerank"]

    assert figures["mrr@10"] >= 0.7
    assert figures["recall@10"] >= 0.8
    assert figures["ndcg@10"] >= 0.7


def test_eval_text_output_shows_a_line_per_mode(run: Run) -> None:
    code, out, _ = run("--dataset", str(FIXTURE))

    assert code == 0
    assert "9 judged queries, 12 documents" in out
    lines = out.splitlines()
    for mode in MODES:
        assert any(line.startswith(f"{mode} ") or line.startswith(f"{mode}*") for line in lines)


# --- the collection --------------------------------------------------------------------------


def test_eval_second_run_reuses_the_ingested_collection(run: Run, database_url: str) -> None:
    first = eval_json(run)
    paths = DatasetPaths.in_folder(FIXTURE)
    code, out, err = run(
        "--corpus", str(paths.corpus), "--queries", str(paths.queries), "--qrels", str(paths.qrels)
    )
    assert code == 0, err
    second = eval_json(run)

    assert first["ingested"] is True
    assert second["ingested"] is False
    assert second["collection"] == first["collection"]
    assert "reused" in out
    in_collection = "SELECT count(*) FROM documents WHERE collection = %s"
    assert count(database_url, in_collection, first["collection"]) == 12
    assert count(database_url, "SELECT count(*) FROM documents") == 12
    assert count(database_url, "SELECT count(*) FROM chunks") == first["chunks"]
    mapped_back = """SELECT count(*) FROM documents
        WHERE source = 'beir://' || (metadata->>'corpus_id') AND status = 'ready'"""
    assert count(database_url, mapped_back) == 12


def test_eval_of_a_changed_corpus_ingests_a_new_collection(run: Run, tmp_path: Path) -> None:
    changed = tmp_path / "changed"
    shutil.copytree(FIXTURE, changed)
    with (changed / "corpus.jsonl").open("a") as corpus:
        corpus.write(json.dumps({"_id": "kites", "title": "Kites", "text": "Kites fly."}) + "\n")
    first = eval_json(run)

    code, out, err = run("--dataset", str(changed), "--json")

    assert code == 0, err
    second = json.loads(out)
    assert second["collection"] != first["collection"]
    assert (second["ingested"], second["corpus_documents"]) == (True, 13)


def test_the_collection_follows_the_corpus_content_and_the_chunking(tmp_path: Path) -> None:
    dataset = load_dataset(DatasetPaths.in_folder(FIXTURE))
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    name = collection_name(dataset, settings, "embedder@int8")

    assert name == collection_name(dataset, settings, "embedder@int8")
    assert name != collection_name(dataset, settings, "other@int8")
    other_chunks = settings.model_copy(update={"chunk_tokens": 64})
    assert name != collection_name(dataset, other_chunks, "embedder@int8")
    dataset.corpus_sha256 = "0" * 64
    assert name != collection_name(dataset, settings, "embedder@int8")


def test_a_corpus_document_keeps_its_title_as_heading_and_its_text_as_text() -> None:
    text = "Intro line.\n# not a heading\nSetext text\n---\nEnd."
    data, name = corpus_file(CorpusDocument("d1", "The  title", text))

    parsed = parse_document(data, name)

    assert parsed.title == "The title"
    assert [s.heading for s in parsed.sections] == ["The title"]
    assert " ".join(parsed.sections[0].text.split()) == " ".join(text.split())
    untitled_data, untitled_name = corpus_file(CorpusDocument("d2", "", "# plain text"))
    assert parse_document(untitled_data, untitled_name).sections[0].text == "# plain text"


# --- report and gate ---------------------------------------------------------------------------


def test_eval_report_writes_markdown_and_a_png_chart_next_to_it(run: Run, tmp_path: Path) -> None:
    report = tmp_path / "out" / "eval.md"

    code, _, err = run("--dataset", str(FIXTURE), "--report", str(report))

    assert code == 0, err
    page = report.read_text()
    assert "| Mode | nDCG@10 | MRR@10 | Recall@10 | Precision@10 | MAP@100 |" in page
    assert "| **hybrid+rerank** |" in page
    assert "![Metrics by mode](eval.png)" in page
    assert "chunk_tokens" in page
    assert (tmp_path / "out" / "eval.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_eval_gate_fails_against_an_impossible_baseline_naming_the_metric(
    run: Run, tmp_path: Path
) -> None:
    perfect = dict.fromkeys(METRICS, 1.0)
    baseline = tmp_path / "baseline.json"
    baseline.write_text(json.dumps({**perfect, "modes": dict.fromkeys(MODES, perfect)}))

    code, out, err = run(
        "--dataset", str(FIXTURE), "--json", "--baseline", str(baseline), "--tolerance", "0"
    )

    assert code != 0
    figure = json.loads(out)["modes"]["vector"]["precision@10"]
    assert f"vector precision@10: {figure:.4f}, below the baseline 1.0000" in err


def test_eval_gate_passes_against_a_baseline_written_from_the_same_data(
    run: Run, tmp_path: Path
) -> None:
    baseline = tmp_path / "eval" / "baseline.json"
    code, _, err = run("--dataset", str(FIXTURE), "--write-baseline", str(baseline))
    assert code == 0, err
    written = json.loads(baseline.read_text())
    assert set(written["modes"]) == MODES

    code, _, err = run("--dataset", str(FIXTURE), "--baseline", str(baseline), "--tolerance", "0")

    assert code == 0, err
    assert "gate passed" in err


# --- bad invocations ---------------------------------------------------------------------------


def test_eval_without_a_dataset_is_a_usage_error(run: Run) -> None:
    code, _, err = run("--corpus", str(FIXTURE / "corpus.jsonl"))

    assert code == 2
    assert "eval needs --dataset DIR, or --corpus, --queries and --qrels" in err


def test_eval_of_a_malformed_dataset_names_the_file_and_line(run: Run, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(FIXTURE, broken)
    with (broken / "qrels" / "test.tsv").open("a") as qrels:
        qrels.write("q-tea\tno-such-doc\t1\n")

    code, out, err = run("--dataset", str(broken))

    assert code == 1
    assert out == ""
    assert f"ragops: error: {broken / 'qrels' / 'test.tsv'}:14: corpus-id 'no-such-doc'" in err


# --- answers -----------------------------------------------------------------------------------


def test_eval_answers_scores_citations_answers_and_refusals(
    run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    unanswerable = ("mercury", "World Cup")

    def reply(handler: Any, body: dict[str, Any]) -> None:
        question = body["messages"][-1]["content"]
        refuse = any(word in question for word in unanswerable)
        complete(NO_ANSWER if refuse else "According to [1], that is so.")(handler, body)

    server = FaultServer()
    try:
        monkeypatch.setenv("RAGOPS_LLM_BASE_URL", server.plan(reply).base_url)
        answers = eval_json(run, "--answers")["answers"]
    finally:
        server.close()

    assert (answers["answerable_queries"], answers["unanswerable_queries"]) == (9, 2)
    assert answers["answer_modes"].get("generative", 0) >= 7
    assert answers["correct_refusals"] == 1.0
    assert answers["answered"] >= 0.75
    assert answers["citation_precision"] >= 0.7
    assert answers["citations_checked"] >= 7


def test_eval_answers_with_the_local_llm_generates_with_smollm2(run: Run) -> None:
    answers = eval_json(run, "--answers", "--local-llm")["answers"]

    assert (answers["answerable_queries"], answers["unanswerable_queries"]) == (9, 2)
    assert answers["llm_models"], "the answers came from the local server's model"
    assert answers["answer_modes"].get("generative", 0) >= 1
    for share in ("citation_precision", "answered", "correct_refusals"):
        assert answers[share] is None or 0.0 <= answers[share] <= 1.0
