"""Evaluation inputs that cannot be used fail with an EvalDataError naming file and line."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from ragops.errors import EvalDataError, RagopsError
from ragops.evaluation.dataset import DatasetPaths, load_dataset
from ragops.evaluation.gate import read_baseline

CORPUS = [
    {"_id": "d1", "title": "Owls", "text": "Owls hunt at night."},
    {"_id": "d2", "title": "Herons", "text": "Herons wait in shallow water."},
]
QUERIES = [
    {"_id": "q1", "text": "When do owls hunt?", "metadata": {"answer": "at night"}},
    {"_id": "q2", "text": "Who won?", "metadata": {"kind": "unanswerable"}},
]
QRELS = "query-id\tcorpus-id\tscore\nq1\td1\t1\n"


def _lines(records: list[dict[str, object]]) -> str:
    return "".join(json.dumps(record) + "\n" for record in records)


def write(
    root: Path,
    corpus: str | None = None,
    queries: str | None = None,
    qrels: str | None = None,
) -> DatasetPaths:
    """A valid dataset under `root`, with any of its three files replaced."""
    paths = DatasetPaths.in_folder(root)
    paths.qrels.parent.mkdir(parents=True, exist_ok=True)
    paths.corpus.write_text(_lines(CORPUS) if corpus is None else corpus)
    paths.queries.write_text(_lines(QUERIES) if queries is None else queries)
    paths.qrels.write_text(QRELS if qrels is None else qrels)
    return paths


def load_error(paths: DatasetPaths) -> str:
    with pytest.raises(EvalDataError) as caught:
        load_dataset(paths)
    return str(caught.value)


def test_a_valid_dataset_loads_judged_and_unanswerable_queries(tmp_path: Path) -> None:
    dataset = load_dataset(write(tmp_path))

    assert list(dataset.corpus) == ["d1", "d2"]
    assert dataset.qrels == {"q1": {"d1": 1}}
    assert [q.id for q in dataset.judged_queries] == ["q1"]
    assert [q.id for q in dataset.unanswerable_queries] == ["q2"]
    assert dataset.queries["q1"].answers == ["at night"]


def test_eval_data_errors_are_ragops_errors() -> None:
    assert issubclass(EvalDataError, RagopsError)  # the CLI reports them without a traceback


@pytest.mark.parametrize("name", ["corpus.jsonl", "queries.jsonl", "qrels/test.tsv"])
def test_a_missing_file_is_named(tmp_path: Path, name: str) -> None:
    paths = write(tmp_path)
    (tmp_path / name).unlink()

    assert load_error(paths) == f"{tmp_path / name}: no such file"


def test_a_malformed_json_line_is_named_with_its_line(tmp_path: Path) -> None:
    paths = write(tmp_path, corpus=_lines(CORPUS) + '{"_id": "d3", "text": "unclosed\n')

    assert re.fullmatch(rf"{re.escape(str(paths.corpus))}:3: not valid JSON: .+", load_error(paths))


def test_a_line_that_is_not_an_object_is_named(tmp_path: Path) -> None:
    paths = write(tmp_path, queries=_lines(QUERIES) + '["q3", "text"]\n')

    assert load_error(paths) == f"{paths.queries}:3: expected a JSON object"


def test_blank_lines_are_skipped_but_counted(tmp_path: Path) -> None:
    paths = write(tmp_path, corpus=_lines(CORPUS[:1]) + "\n" + '{"title": "x", "text": "y"}\n')

    assert load_error(paths) == f'{paths.corpus}:3: missing "_id"'


@pytest.mark.parametrize("which", ["corpus", "queries"])
def test_a_record_without_id_is_named(tmp_path: Path, which: str) -> None:
    paths = write(tmp_path, **{which: '{"text": "no id here"}\n'})

    assert load_error(paths) == f'{getattr(paths, which)}:1: missing "_id"'


@pytest.mark.parametrize("which", ["corpus", "queries"])
def test_a_record_without_text_is_named(tmp_path: Path, which: str) -> None:
    paths = write(tmp_path, **{which: '{"_id": "x1", "title": "only a title"}\n'})

    assert load_error(paths) == f'{getattr(paths, which)}:1: missing "text"'


def test_a_text_that_is_not_a_string_is_named(tmp_path: Path) -> None:
    paths = write(tmp_path, corpus='{"_id": "d1", "text": ["a", "list"]}\n')

    assert load_error(paths) == f'{paths.corpus}:1: "text" must be a string'


def test_a_corpus_document_with_neither_title_nor_text_is_named(tmp_path: Path) -> None:
    paths = write(tmp_path, corpus=_lines([*CORPUS, {"_id": "d3", "title": " ", "text": ""}]))

    assert load_error(paths) == f"{paths.corpus}:3: document 'd3' has no text"


@pytest.mark.parametrize("which", ["corpus", "queries"])
def test_a_duplicate_id_names_both_lines(tmp_path: Path, which: str) -> None:
    records = CORPUS if which == "corpus" else QUERIES
    paths = write(tmp_path, **{which: _lines([*records, records[0]])})

    assert load_error(paths) == (
        f"{getattr(paths, which)}:3: duplicate _id {records[0]['_id']!r} (first on line 1)"
    )


def test_query_metadata_must_be_an_object_with_string_answers(tmp_path: Path) -> None:
    paths = write(tmp_path, queries='{"_id": "q1", "text": "t", "metadata": "plain"}\n')
    assert load_error(paths) == f'{paths.queries}:1: "metadata" must be a JSON object'

    paths = write(tmp_path, queries='{"_id": "q1", "text": "t", "metadata": {"answer": [1]}}\n')
    assert load_error(paths) == (
        f'{paths.queries}:1: "metadata.answer" must be a string or a list of strings'
    )


@pytest.mark.parametrize(
    ("line", "found"), [("q1\td1", 2), ("q1 d1 1", 1), ("q1\td1\t1\textra", 4)]
)
def test_a_qrels_line_with_the_wrong_column_count_is_named(
    tmp_path: Path, line: str, found: int
) -> None:
    paths = write(tmp_path, qrels=QRELS + line + "\n")

    assert load_error(paths) == (
        f"{paths.qrels}:3: expected 3 tab-separated columns (query-id, corpus-id, score), "
        f"found {found}"
    )


def test_a_qrels_score_that_is_not_an_integer_is_named(tmp_path: Path) -> None:
    paths = write(tmp_path, qrels=QRELS + "q1\td2\t0.5\n")

    assert load_error(paths) == f"{paths.qrels}:3: score '0.5' is not an integer"


def test_qrels_without_a_header_are_read_from_the_first_line(tmp_path: Path) -> None:
    dataset = load_dataset(write(tmp_path, qrels="q1\td1\t2\n"))

    assert dataset.qrels == {"q1": {"d1": 2}}


def test_a_qrels_line_naming_an_unknown_query_is_named(tmp_path: Path) -> None:
    paths = write(tmp_path, qrels=QRELS + "q9\td1\t1\n")

    assert load_error(paths) == f"{paths.qrels}:3: query-id 'q9' is not in {paths.queries}"


def test_a_qrels_line_naming_an_unknown_document_is_named(tmp_path: Path) -> None:
    paths = write(tmp_path, qrels=QRELS + "q1\td9\t1\n")

    assert load_error(paths) == f"{paths.qrels}:3: corpus-id 'd9' is not in {paths.corpus}"


def test_a_pair_judged_twice_names_both_lines(tmp_path: Path) -> None:
    paths = write(tmp_path, qrels=QRELS + "q1\td1\t2\n")

    assert load_error(paths) == (
        f"{paths.qrels}:3: 'q1' is judged against 'd1' twice (first on line 2)"
    )


def test_an_empty_corpus_is_an_error(tmp_path: Path) -> None:
    paths = write(tmp_path, corpus="\n")

    assert load_error(paths) == f"{paths.corpus}: the corpus has no documents"


def test_qrels_with_no_judgements_are_an_error(tmp_path: Path) -> None:
    paths = write(tmp_path, qrels="query-id\tcorpus-id\tscore\n")

    assert load_error(paths) == (
        f"{paths.qrels}: no judged queries (no query-id, corpus-id, score lines)"
    )


def test_a_file_that_is_not_utf8_is_named_with_its_line(tmp_path: Path) -> None:
    paths = write(tmp_path)
    paths.queries.write_bytes(_lines(QUERIES).encode() + b'{"_id": "q3", "text": "caf\xe9"}\n')

    assert load_error(paths) == f"{paths.queries}:3: not UTF-8 text"


# --- baselines -----------------------------------------------------------------------------


def baseline_error(path: Path, content: str | None) -> str:
    if content is not None:
        path.write_text(content)
    with pytest.raises(EvalDataError) as caught:
        read_baseline(path)
    return str(caught.value)


def test_a_missing_baseline_is_named(tmp_path: Path) -> None:
    path = tmp_path / "baseline.json"

    assert baseline_error(path, None) == f"{path}: no such baseline file"


def test_a_baseline_that_is_not_json_is_named_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "baseline.json"

    assert baseline_error(path, '{\n"ndcg@10": }').startswith(f"{path}:2: not valid JSON")


def test_a_baseline_metric_that_is_not_a_number_is_named(tmp_path: Path) -> None:
    path = tmp_path / "baseline.json"
    content = json.dumps({"modes": {"vector": {"mrr@10": "high"}}})

    assert baseline_error(path, content) == (
        f"{path}: \"modes.vector.mrr@10\" must be a number, got 'high'"
    )


def test_a_baseline_naming_an_unknown_mode_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "baseline.json"
    content = json.dumps({"modes": {"bm25": {"mrr@10": 0.5}}})

    assert baseline_error(path, content).startswith(f"{path}: unknown mode(s) bm25; the modes")


def test_a_baseline_without_metrics_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "baseline.json"

    assert baseline_error(path, '{"latency_p50_ms": 3}') == (
        f"{path}: no metrics to compare (ndcg@10, mrr@10, recall@10, precision@10, map@100)"
    )


def test_a_baseline_reads_the_top_level_as_the_default_mode(tmp_path: Path) -> None:
    path = tmp_path / "baseline.json"
    path.write_text(json.dumps({"ndcg@10": 0.7, "modes": {"lexical": {"ndcg@10": 0.4}}}))

    assert read_baseline(path) == {"hybrid+rerank": {"ndcg@10": 0.7}, "lexical": {"ndcg@10": 0.4}}
