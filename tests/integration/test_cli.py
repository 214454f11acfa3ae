"""The `ragops` command line, in-process and as the installed console script."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest
from tests.conftest import ragops_env

from ragops.cli import main
from ragops.ingest.pipeline import file_source

RESULT_KEYS = {
    "document_id",
    "source",
    "title",
    "chunk_id",
    "ordinal",
    "page",
    "content",
    "score",
    "scores",
}
CORPUS = {
    "birds.md": "# Birds\n\nHerons stand still in shallow water waiting for fish.\n\n"
    "## Owls\n\nOwls hunt mice at night on silent feathers.\n",
    "kitchen/kettle.txt": "The kettle boils water in about three minutes.",
    "kitchen/bread.txt": "Bread dough must rise for an hour before baking.",
    "space.html": "<html><head><title>Space</title></head><body><h1>Planets</h1>"
    "<p>Jupiter is the largest planet and has a great red spot.</p></body></html>",
}


class Cli:
    """Runs `ragops.cli.main` in-process, in a folder of its own, against the test database."""

    def __init__(self, root: Path, database_url: str, capsys: pytest.CaptureFixture[str]):
        self.root = root
        self.database_url = database_url
        self._capsys = capsys

    def __call__(self, *argv: str) -> tuple[int, str, str]:
        self._capsys.readouterr()
        code = main(list(argv))
        out, err = self._capsys.readouterr()
        return code, out, err

    def write(self, files: dict[str, str | bytes], under: str = "docs") -> Path:
        folder = self.root / under
        for name, content in files.items():
            path = folder / name
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                path.write_bytes(content)
            else:
                path.write_text(content)
        return folder

    def search(self, *argv: str) -> list[dict[str, Any]]:
        code, out, err = self("search", *argv, "--json")
        assert code == 0, err
        lines = out.splitlines()
        assert len(lines) == 1, out
        payload = json.loads(lines[0])
        assert list(payload) == ["results"]
        results: list[dict[str, Any]] = payload["results"]
        for result in results:
            assert set(result) >= RESULT_KEYS, result
        scores = [r["score"] for r in results]
        assert scores == sorted(scores, reverse=True), "results are not best first"
        return results

    def count(self, query: str, *params: Any) -> int:
        with psycopg.connect(self.database_url) as conn:
            row = conn.execute(query, params).fetchone()
        assert row is not None
        return int(row[0])


@pytest.fixture
def cli(cli_env: Path, database_url: str, capsys: pytest.CaptureFixture[str]) -> Cli:
    return Cli(cli_env, database_url, capsys)


@pytest.fixture
def corpus(cli: Cli) -> Path:
    folder = cli.write(CORPUS)
    code, _, err = cli("ingest", str(folder))
    assert code == 0, err
    return folder


# --- ingest --------------------------------------------------------------------------


def test_ingest_exits_zero_when_every_file_is_ingested(cli: Cli) -> None:
    folder = cli.write(CORPUS)

    code, out, err = cli("ingest", str(folder))

    assert code == 0, err
    for name in CORPUS:
        assert f"ingested   {file_source(folder / name)}" in out
    assert "4 ingested (5 chunks), 0 unchanged, 0 failed" in err
    assert cli.count("SELECT count(*) FROM documents WHERE status = 'ready'") == 4
    assert cli.count("SELECT count(*) FROM chunks") == 5


def test_ingest_of_a_file_named_twice_ingests_it_once(cli: Cli) -> None:
    folder = cli.write(CORPUS)

    code, out, err = cli("ingest", str(folder), "docs/kitchen/kettle.txt")

    assert code == 0, err
    assert out.count(file_source(folder / "kitchen/kettle.txt")) == 1
    assert "4 ingested (5 chunks), 0 unchanged, 0 failed" in err


def test_ingest_again_reports_unchanged_and_exits_zero(cli: Cli, corpus: Path) -> None:
    code, out, err = cli("ingest", str(corpus))

    assert code == 0, err
    assert out.count("unchanged") == 4
    assert "0 ingested (0 chunks), 4 unchanged, 0 failed" in err


def test_ingest_names_each_failure_with_its_reason_and_exits_non_zero(cli: Cli) -> None:
    folder = cli.write(
        {
            "good.txt": "Herons stand still in shallow water.",
            "empty.txt": "",
            "photo.png": b"\x89PNG\r\n\x1a\n" + bytes(32),
            "broken.pdf": b"%PDF-1.4 not really a pdf",
        }
    )

    code, out, err = cli("ingest", str(folder))

    assert code != 0
    failures = dict(
        line.removeprefix("failed     ").split(": ", 1)
        for line in err.splitlines()
        if line.startswith("failed ")
    )
    assert failures.keys() == {
        file_source(folder / name) for name in ("empty.txt", "photo.png", "broken.pdf")
    }
    assert failures[file_source(folder / "empty.txt")] == "the file is empty"
    assert failures[file_source(folder / "photo.png")].startswith("unsupported file type '.png'")
    assert failures[file_source(folder / "broken.pdf")].startswith("corrupt or unreadable PDF")
    assert f"ingested   {file_source(folder / 'good.txt')}" in out
    assert "1 ingested (1 chunks), 0 unchanged, 3 failed" in err
    assert cli.count("SELECT count(*) FROM documents WHERE status = 'failed'") == 3


def test_ingest_json_prints_one_line_per_file(cli: Cli) -> None:
    folder = cli.write({"good.txt": "Owls hunt at night.", "empty.txt": ""})

    code, out, err = cli("ingest", str(folder), "--json")

    assert code != 0
    lines = {row["source"]: row for row in map(json.loads, out.splitlines())}
    assert {k: (v["status"], v["error"]) for k, v in lines.items()} == {
        file_source(folder / "empty.txt"): ("failed", "the file is empty"),
        file_source(folder / "good.txt"): ("ingested", None),
    }
    assert f"ragops: {file_source(folder / 'empty.txt')}: the file is empty" in err


def test_ingest_reports_a_missing_path_and_exits_non_zero(cli: Cli) -> None:
    folder = cli.write({"good.txt": "Owls hunt at night."})

    code, _, err = cli("ingest", str(folder / "good.txt"), "nowhere/missing.md")

    assert code != 0
    assert "ragops: nowhere/missing.md: no such file or directory" in err
    assert "1 ingested (1 chunks), 0 unchanged, 1 failed" in err
    assert cli.count("SELECT count(*) FROM documents WHERE status = 'ready'") == 1


def test_ingest_into_a_collection_keeps_it_apart(cli: Cli) -> None:
    folder = cli.write({"zebra.txt": "Zebras have black and white stripes."}, under="archive")

    code, _, err = cli("ingest", str(folder), "--collection", "archive")

    assert code == 0, err
    assert cli.count("SELECT count(*) FROM documents WHERE collection = 'archive'") == 1
    assert cli.count("SELECT count(*) FROM chunks WHERE collection = 'archive'") == 1
    assert cli.search("zebra stripes", "--mode", "lexical") == []
    [hit] = cli.search("zebra stripes", "--mode", "lexical", "--collection", "archive")
    assert hit["source"] == file_source(folder / "zebra.txt")


# --- search --------------------------------------------------------------------------


def test_search_json_prints_one_object_with_the_best_result_first(cli: Cli, corpus: Path) -> None:
    results = cli.search("How do owls hunt at night?")

    assert 1 <= len(results) <= 5
    best = results[0]
    assert best["source"] == file_source(corpus / "birds.md")
    assert best["content"] == "Owls hunt mice at night on silent feathers."
    assert (best["title"], best["ordinal"], best["page"]) == ("Birds", 1, None)
    assert isinstance(best["chunk_id"], int)
    assert "rerank" in best["scores"]  # the cross-encoder reranks by default
    with psycopg.connect(cli.database_url) as conn:
        row = conn.execute(
            "SELECT document_id::text, content FROM chunks WHERE id = %s", (best["chunk_id"],)
        ).fetchone()
    assert row == (best["document_id"], best["content"])


def test_search_top_k_caps_the_results(cli: Cli, corpus: Path) -> None:
    assert len(cli.search("water", "-k", "2")) == 2
    assert len(cli.search("water", "--top-k", "1")) == 1
    assert len(cli.search("water", "-k", "10", "--no-rerank")) == 5  # every chunk


@pytest.mark.parametrize(
    ("mode", "score_keys"),
    [
        ("vector", {"vector_rank", "vector_score"}),
        ("lexical", {"lexical_rank", "lexical_score"}),
        ("hybrid", {"rrf", "vector_rank", "vector_score", "lexical_rank", "lexical_score"}),
    ],
)
def test_search_mode_ranks_by_its_own_scores(
    cli: Cli, corpus: Path, mode: str, score_keys: set[str]
) -> None:
    results = cli.search("Jupiter largest planet", "--mode", mode, "--no-rerank", "-k", "5")

    assert results[0]["source"] == file_source(corpus / "space.html")
    assert all(set(r["scores"]) == score_keys for r in results)
    primary = {"vector": "vector_score", "lexical": "lexical_score", "hybrid": "rrf"}[mode]
    assert [r["score"] for r in results] == [r["scores"][primary] for r in results]
    if mode == "lexical":  # only chunks holding a query term match
        assert [r["source"] for r in results] == [file_source(corpus / "space.html")]
    else:
        assert len(results) == 5


def test_search_rerank_rescores_what_no_rerank_leaves_fused(cli: Cli, corpus: Path) -> None:
    reranked = cli.search("bread dough rising", "-k", "3")
    fused = cli.search("bread dough rising", "-k", "3", "--no-rerank")

    assert reranked[0]["source"] == fused[0]["source"] == file_source(corpus / "kitchen/bread.txt")
    assert all("rerank" in r["scores"] and 0 <= r["score"] <= 1 for r in reranked)
    assert all("rerank" not in r["scores"] and r["score"] == r["scores"]["rrf"] for r in fused)


def test_search_of_an_empty_query_is_an_error(cli: Cli, corpus: Path) -> None:
    code, out, err = cli("search", "   ", "--json")

    assert code != 0
    assert out == ""
    assert "ragops: error: the query is empty" in err


# --- docs ----------------------------------------------------------------------------


def docs_list(cli: Cli, *argv: str) -> list[dict[str, Any]]:
    code, out, err = cli("docs", "list", "--json", *argv)
    assert code == 0, err
    documents: list[dict[str, Any]] = json.loads(out)["documents"]
    return documents


def test_docs_list_shows_each_document_with_its_status(cli: Cli, corpus: Path) -> None:
    (corpus / "empty.txt").write_text("")
    cli("ingest", str(corpus / "empty.txt"))

    listed = {d["source"]: (d["status"], d["chunk_count"]) for d in docs_list(cli)}

    assert listed == {
        file_source(corpus / "birds.md"): ("ready", 2),
        file_source(corpus / "empty.txt"): ("failed", 0),
        file_source(corpus / "kitchen/bread.txt"): ("ready", 1),
        file_source(corpus / "kitchen/kettle.txt"): ("ready", 1),
        file_source(corpus / "space.html"): ("ready", 1),
    }
    [failed] = docs_list(cli, "--status", "failed")
    assert failed["error"] == "the file is empty"
    code, out, _ = cli("docs", "list")
    assert code == 0
    assert f"failed      0 chunks  {file_source(corpus / 'empty.txt')}  the file is empty" in out


def test_docs_delete_by_id_removes_the_document_and_its_chunks(cli: Cli, corpus: Path) -> None:
    [birds] = [d for d in docs_list(cli) if d["source"].endswith("/birds.md")]

    code, out, err = cli("docs", "delete", birds["id"])

    assert code == 0, err
    assert f"deleted {birds['id']}" in out
    assert cli.count("SELECT count(*) FROM documents WHERE id = %s", birds["id"]) == 0
    assert cli.count("SELECT count(*) FROM chunks WHERE document_id = %s", birds["id"]) == 0
    assert cli.count("SELECT count(*) FROM chunks") == 3
    assert all(r["source"] != birds["source"] for r in cli.search("owls", "--no-rerank"))


def test_docs_delete_by_source_path_removes_the_document_and_its_chunks(
    cli: Cli, corpus: Path
) -> None:
    relative = corpus.relative_to(cli.root) / "kitchen" / "kettle.txt"
    source = file_source(corpus / "kitchen" / "kettle.txt")
    [kettle] = [d for d in docs_list(cli) if d["source"] == source]

    code, _, err = cli("docs", "delete", str(relative))

    assert code == 0, err
    assert cli.count("SELECT count(*) FROM documents WHERE id = %s", kettle["id"]) == 0
    assert cli.count("SELECT count(*) FROM chunks WHERE document_id = %s", kettle["id"]) == 0
    assert len(docs_list(cli)) == 3


def test_docs_delete_of_an_unknown_document_exits_non_zero(cli: Cli, corpus: Path) -> None:
    code, _, err = cli("docs", "delete", "00000000-0000-0000-0000-000000000000")
    assert code != 0
    assert "no document '00000000-0000-0000-0000-000000000000'" in err

    code, _, err = cli("docs", "delete", "docs/never-ingested.txt")
    assert code != 0
    assert "no document 'docs/never-ingested.txt' in collection 'default'" in err
    assert len(docs_list(cli)) == 4


# --- the installed console script ----------------------------------------------------


def test_console_script_ingests_and_searches(
    database_url: str, model_dir: Path, tmp_path: Path
) -> None:
    script = Path(sys.executable).with_name("ragops")
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "owls.md").write_text("# Owls\n\nOwls hunt mice at night on silent feathers.\n")
    (docs / "empty.txt").write_text("")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("RAGOPS_")},
        **ragops_env(database_url, model_dir, tmp_path / "data"),
    }

    def run(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(script), *argv], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120
        )

    ingest = run("ingest", "docs")
    assert ingest.returncode == 1, ingest.stderr
    assert f"failed     {file_source(docs / 'empty.txt')}: the file is empty" in ingest.stderr
    assert f"ingested   {file_source(docs / 'owls.md')} (1 chunks)" in ingest.stdout

    search = run("search", "what do owls eat", "--json", "--no-rerank")
    assert search.returncode == 0, search.stderr
    [result] = json.loads(search.stdout)["results"]
    assert (result["source"], result["title"]) == (file_source(docs / "owls.md"), "Owls")
