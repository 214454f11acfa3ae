"""The ragops-docs evaluation set: well-formed files, consistent judgements, fair paraphrases."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

DATASET = Path(__file__).resolve().parents[2] / "eval" / "ragops-docs"
MIN_PER_KIND = {"plain": 25, "paraphrase": 15, "exact": 15, "unanswerable": 12}
MIN_QUESTIONS = 75
QRELS_HEADER = ["query-id", "corpus-id", "score"]

# Function words and question words: a paraphrase may share these with its passages.
STOPWORD_LIST = """
    a about above after again against all also am an and any are as at be because been before
    being below between both but by can could did do does doing down during each either else
    even ever every few for from further had has have having he her here hers him his how i if
    in into is it its itself just may me might more most must my myself neither no nor not now
    of off on once only or other our ours out over own same shall she should so some such than
    that the their theirs them then there these they this those through to too under until up
    upon us very via was we were what when where whether which while who whom whose why will
    with within without would yet you your yours s t don doesn didn isn aren wasn won
    """
STOPWORDS = frozenset(STOPWORD_LIST.split())


def read_jsonl(name: str) -> list[dict[str, Any]]:
    lines = (DATASET / name).read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


def read_qrels() -> list[list[str]]:
    lines = (DATASET / "qrels" / "test.tsv").read_text(encoding="utf-8").splitlines()
    return [line.split("\t") for line in lines]


CORPUS = read_jsonl("corpus.jsonl")
QUERIES = read_jsonl("queries.jsonl")
QRELS = read_qrels()
PASSAGES = {row["_id"]: row for row in CORPUS}
# query id -> corpus id -> grade; malformed lines are left to the qrels test to report
JUDGED: dict[str, dict[str, int]] = {}
for row in QRELS[1:]:
    if len(row) == 3 and row[2].isdigit():
        JUDGED.setdefault(row[0], {})[row[1]] = int(row[2])


def kind(query: dict[str, Any]) -> str:
    return str(query.get("metadata", {}).get("kind"))


def stems(word: str) -> set[str]:
    """The word and its forms without a plural or verb ending ("caches" -> "cache", "cach")."""
    forms = {word}
    for suffix, endings in (("s", [""]), ("es", [""]), ("ed", ["", "e"]), ("ing", ["", "e"])):
        if word.endswith(suffix):
            forms.update(word[: -len(suffix)] + end for end in endings)
    return {form for form in forms if len(form) >= 3 or form == word}


def content_stems(text: str) -> set[str]:
    words = set(re.findall(r"[a-z0-9]+", text.lower())) - STOPWORDS
    return {form for word in words for form in stems(word)}


def test_corpus_lines_have_an_id_a_title_and_text() -> None:
    bad = [
        row.get("_id")
        for row in CORPUS
        if not all(isinstance(row.get(key), str) and row[key] for key in ("_id", "title", "text"))
    ]
    assert not bad, f"passages missing _id, title or text: {bad}"


def test_query_lines_have_text_a_known_kind_and_an_answer_list() -> None:
    bad = [
        query.get("_id")
        for query in QUERIES
        if not (
            isinstance(query.get("_id"), str)
            and isinstance(query.get("text"), str)
            and query["text"].strip()
            and query.get("metadata", {}).get("kind") in MIN_PER_KIND
            and isinstance(query["metadata"].get("answer"), list)
            and all(isinstance(phrase, str) and phrase for phrase in query["metadata"]["answer"])
        )
    ]
    assert not bad, f"queries missing text, a known kind or an answer list: {bad}"


def test_ids_are_unique() -> None:
    for rows in (CORPUS, QUERIES):
        repeated = [key for key, n in Counter(row["_id"] for row in rows).items() if n > 1]
        assert not repeated, f"repeated ids: {repeated}"


def test_qrels_have_a_header_and_three_columns_of_known_ids_and_grades() -> None:
    assert QRELS[0] == QRELS_HEADER
    query_ids = {query["_id"] for query in QUERIES}
    bad = [
        "\t".join(row)
        for row in QRELS[1:]
        if len(row) != 3
        or row[0] not in query_ids
        or row[1] not in PASSAGES
        or row[2] not in {"1", "2"}
    ]
    assert not bad, f"qrels lines with a bad id, grade or column count: {bad}"


def test_qrels_judge_each_pair_once() -> None:
    pairs = Counter((row[0], row[1]) for row in QRELS[1:])
    assert not [pair for pair, n in pairs.items() if n > 1]


def test_each_kind_has_its_minimum_number_of_questions() -> None:
    counts = Counter(kind(query) for query in QUERIES)
    assert len(QUERIES) >= MIN_QUESTIONS
    short = {name: counts[name] for name, minimum in MIN_PER_KIND.items() if counts[name] < minimum}
    assert not short, f"kinds below their minimum: {short}"


def test_answerable_questions_have_a_passage_that_answers_and_one_to_three_phrases() -> None:
    answerable = [query for query in QUERIES if kind(query) != "unanswerable"]
    no_answer = [q["_id"] for q in answerable if 2 not in JUDGED.get(q["_id"], {}).values()]
    assert not no_answer, f"answerable questions without a score-2 passage: {no_answer}"
    bad_phrases = [q["_id"] for q in answerable if not 1 <= len(q["metadata"]["answer"]) <= 3]
    assert not bad_phrases, f"answerable questions without 1-3 answer phrases: {bad_phrases}"


def test_unanswerable_questions_have_no_judgements_and_no_answer() -> None:
    bad = [
        query["_id"]
        for query in QUERIES
        if kind(query) == "unanswerable" and (query["_id"] in JUDGED or query["metadata"]["answer"])
    ]
    assert not bad, f"unanswerable questions with qrels or answer phrases: {bad}"


def flat(text: str) -> str:
    """Lowercase with runs of white space as one space: phrases may cross a line break."""
    return " ".join(text.lower().split())


def test_answer_phrases_occur_in_a_passage_that_answers() -> None:
    missing: dict[str, list[str]] = {}
    for query in QUERIES:
        answering = [
            flat(PASSAGES[corpus_id]["text"])
            for corpus_id, score in JUDGED.get(query["_id"], {}).items()
            if score == 2
        ]
        absent = [
            phrase
            for phrase in query["metadata"]["answer"]
            if not any(flat(phrase) in text for text in answering)
        ]
        if absent:
            missing[query["_id"]] = absent
    assert not missing, f"answer phrases found in no score-2 passage: {missing}"


def test_paraphrases_share_no_content_word_with_their_passages() -> None:
    shared: dict[str, list[str]] = {}
    for query in QUERIES:
        if kind(query) != "paraphrase":
            continue
        words = content_stems(query["text"])
        for corpus_id in JUDGED.get(query["_id"], {}):
            passage = PASSAGES[corpus_id]
            common = words & content_stems(f"{passage['title']} {passage['text']}")
            if common:
                shared[f"{query['_id']}/{corpus_id}"] = sorted(common)
    assert not shared, f"paraphrases sharing words with a judged passage: {shared}"
