"""Evaluation datasets in the BEIR layout: corpus.jsonl, queries.jsonl and a qrels TSV.

Every problem is an `EvalDataError` naming the file, and the line when there is one.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ragops.errors import EvalDataError

UNANSWERABLE = "unanswerable"


@dataclass(frozen=True)
class DatasetPaths:
    corpus: Path
    queries: Path
    qrels: Path

    @classmethod
    def in_folder(cls, folder: Path) -> DatasetPaths:
        """The BEIR layout: DIR/corpus.jsonl, DIR/queries.jsonl, DIR/qrels/test.tsv."""
        return cls(folder / "corpus.jsonl", folder / "queries.jsonl", folder / "qrels" / "test.tsv")


@dataclass(frozen=True)
class CorpusDocument:
    id: str
    title: str
    text: str


@dataclass(frozen=True)
class Query:
    id: str
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def unanswerable(self) -> bool:
        return self.metadata.get("kind") == UNANSWERABLE

    @property
    def kind(self) -> str:
        """`metadata.kind` (plain, paraphrase, exact...), or "unlabelled"."""
        kind = self.metadata.get("kind")
        return kind if isinstance(kind, str) else "unlabelled"

    @property
    def answers(self) -> list[str]:
        """The phrases a passage answering this query contains (`metadata.answer`)."""
        answer = self.metadata.get("answer")
        if answer is None:
            return []
        return [answer] if isinstance(answer, str) else list(answer)


@dataclass
class Dataset:
    paths: DatasetPaths
    corpus: dict[str, CorpusDocument]
    queries: dict[str, Query]
    # query id -> corpus id -> grade, for the judged queries only
    qrels: dict[str, dict[str, int]]
    corpus_sha256: str

    @property
    def judged_queries(self) -> list[Query]:
        return [self.queries[query_id] for query_id in self.qrels]

    @property
    def answerable_queries(self) -> list[Query]:
        return [q for q in self.judged_queries if not q.unanswerable]

    @property
    def unanswerable_queries(self) -> list[Query]:
        """Queries marked `metadata.kind == "unanswerable"`, judged or not."""
        return [q for q in self.queries.values() if q.unanswerable]


def load_dataset(paths: DatasetPaths) -> Dataset:
    """Read and check the three files; a corpus or query id the qrels name must exist."""
    corpus_bytes = _read_bytes(paths.corpus)
    corpus = _load_corpus(paths.corpus, _text(paths.corpus, corpus_bytes))
    queries = _load_queries(paths.queries, _text(paths.queries, _read_bytes(paths.queries)))
    qrels = _load_qrels(paths, _text(paths.qrels, _read_bytes(paths.qrels)), corpus, queries)
    return Dataset(paths, corpus, queries, qrels, hashlib.sha256(corpus_bytes).hexdigest())


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise EvalDataError(f"{path}: no such file") from None
    except OSError as exc:
        raise EvalDataError(f"{path}: cannot read: {exc.strerror}") from None


def _text(path: Path, data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise EvalDataError(f"{path}:{line}: not UTF-8 text") from None


def _json_lines(path: Path, text: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-blank line."""
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise EvalDataError(f"{path}:{number}: not valid JSON: {exc.msg}") from None
        if not isinstance(record, dict):
            raise EvalDataError(f"{path}:{number}: expected a JSON object")
        yield number, record


def _identifier(path: Path, number: int, record: dict[str, Any], seen: dict[str, int]) -> str:
    value = record.get("_id")
    if value is None:
        raise EvalDataError(f'{path}:{number}: missing "_id"')
    # BEIR ids are strings; a bare number is taken as the same text the qrels hold.
    if isinstance(value, bool) or not isinstance(value, str | int) or str(value).strip() == "":
        raise EvalDataError(f'{path}:{number}: "_id" must be a non-empty string')
    identifier = str(value)
    if identifier in seen:
        raise EvalDataError(
            f"{path}:{number}: duplicate _id {identifier!r} (first on line {seen[identifier]})"
        )
    seen[identifier] = number
    return identifier


def _string(path: Path, number: int, record: dict[str, Any], key: str, required: bool) -> str:
    value = record.get(key)
    if value is None and not required:
        return ""
    if value is None:
        raise EvalDataError(f'{path}:{number}: missing "{key}"')
    if not isinstance(value, str):
        raise EvalDataError(f'{path}:{number}: "{key}" must be a string')
    return value


def _load_corpus(path: Path, text: str) -> dict[str, CorpusDocument]:
    corpus: dict[str, CorpusDocument] = {}
    seen: dict[str, int] = {}
    for number, record in _json_lines(path, text):
        identifier = _identifier(path, number, record, seen)
        body = _string(path, number, record, "text", required=True)
        title = _string(path, number, record, "title", required=False)
        if not (body.strip() or title.strip()):
            raise EvalDataError(f"{path}:{number}: document {identifier!r} has no text")
        corpus[identifier] = CorpusDocument(identifier, title.strip(), body)
    if not corpus:
        raise EvalDataError(f"{path}: the corpus has no documents")
    return corpus


def _load_queries(path: Path, text: str) -> dict[str, Query]:
    queries: dict[str, Query] = {}
    seen: dict[str, int] = {}
    for number, record in _json_lines(path, text):
        identifier = _identifier(path, number, record, seen)
        query_text = _string(path, number, record, "text", required=True)
        if not query_text.strip():
            raise EvalDataError(f'{path}:{number}: query {identifier!r} has an empty "text"')
        metadata = record.get("metadata", {})
        if not isinstance(metadata, dict):
            raise EvalDataError(f'{path}:{number}: "metadata" must be a JSON object')
        _check_metadata(path, number, metadata)
        queries[identifier] = Query(identifier, query_text, metadata)
    return queries


def _check_metadata(path: Path, number: int, metadata: dict[str, Any]) -> None:
    kind = metadata.get("kind")
    if kind is not None and not isinstance(kind, str):
        raise EvalDataError(f'{path}:{number}: "metadata.kind" must be a string')
    answer = metadata.get("answer")
    if answer is None or isinstance(answer, str):
        return
    if not isinstance(answer, list) or not all(isinstance(a, str) for a in answer):
        raise EvalDataError(
            f'{path}:{number}: "metadata.answer" must be a string or a list of strings'
        )


def _load_qrels(
    paths: DatasetPaths,
    text: str,
    corpus: dict[str, CorpusDocument],
    queries: dict[str, Query],
) -> dict[str, dict[str, int]]:
    path = paths.qrels
    qrels: dict[str, dict[str, int]] = {}
    seen: dict[tuple[str, str], int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        columns = line.rstrip("\r").split("\t")
        if len(columns) != 3:
            raise EvalDataError(
                f"{path}:{number}: expected 3 tab-separated columns "
                f"(query-id, corpus-id, score), found {len(columns)}"
            )
        query_id, corpus_id, score = (c.strip() for c in columns)
        try:
            grade = int(score)
        except ValueError:
            if number == 1:  # the header line: query-id, corpus-id, score
                continue
            raise EvalDataError(f"{path}:{number}: score {score!r} is not an integer") from None
        if query_id not in queries:
            raise EvalDataError(f"{path}:{number}: query-id {query_id!r} is not in {paths.queries}")
        if corpus_id not in corpus:
            raise EvalDataError(
                f"{path}:{number}: corpus-id {corpus_id!r} is not in {paths.corpus}"
            )
        if (query_id, corpus_id) in seen:
            raise EvalDataError(
                f"{path}:{number}: {query_id!r} is judged against {corpus_id!r} twice "
                f"(first on line {seen[query_id, corpus_id]})"
            )
        seen[query_id, corpus_id] = number
        qrels.setdefault(query_id, {})[corpus_id] = grade
    if not qrels:
        raise EvalDataError(f"{path}: no judged queries (no query-id, corpus-id, score lines)")
    return qrels
