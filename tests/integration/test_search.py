"""Search against a real PostgreSQL + pgvector and the real ONNX models: modes, fusion,
reranking, filters and the filtered-HNSW row count."""

from __future__ import annotations

import itertools
import re
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import psycopg
import pytest
from psycopg import sql
from tests.conftest import PREFER_HNSW

from ragops.db import documents
from ragops.db.documents import DocumentVersion
from ragops.errors import InvalidQueryError
from ragops.ingest.document import Chunk, embedding_text
from ragops.models.reranker import relevance
from ragops.retrieval.search import QueryVectors, Searcher, SearchResult
from ragops.retrieval.sql import SearchFilters, search_statement
from ragops.service import Service
from ragops.settings import SearchMode, Settings

MODES: tuple[SearchMode, ...] = ("vector", "lexical", "hybrid")

# Markdown sections become one chunk each, keyed below by (file, heading).
CORPUS = {
    "billing.md": """## Refunds
Customers can ask for their money back within 30 days of buying a plan. Refunds for a
payment that failed with a timeout are issued automatically.

## Error codes
The code ERR-4521 means the card network did not answer before the deadline, so the
charge was cancelled. Wait a minute and try the charge again.

## Invoices
An invoice is emailed as a PDF on the first day of every month and lists each payment.
""",
    "payments.md": """## Payment service
The payment service retries a gateway timeout three times before it gives up on the order.

## Currencies
Prices are stored in cents and converted with the daily exchange rate published at noon.
""",
    "garden.md": """## Greenhouse
Mirabel Quillonbury runs the greenhouse, where orchids are kept at 24 degrees and misted
every hour.

## Composting
Kitchen scraps, dry leaves and coffee grounds become compost in about three months when
the heap is turned weekly.
""",
    "operations.md": """## Deployments
New releases roll out one availability zone at a time and halt on their own when the
error rate climbs.

## Backups
The database is copied every night and its snapshots are kept for 35 days before they
are deleted.

## On-call
The on-call engineer answers pages within fifteen minutes, day or night.
""",
    "kitchen.md": """## Bread
Sourdough needs a lively starter, a long cold proof in the fridge and a very hot oven.

## Coffee
Espresso is brewed with 18 grams of finely ground beans in about 28 seconds.
""",
    "astronomy.md": """## Moon
The Moon always shows the same face to the Earth because its rotation is tidally locked.

## Comets
A comet's tail points away from the Sun, pushed by the solar wind and radiation pressure.
""",
    "people.md": """## Holidays
Every employee gets 25 days of paid vacation each year, plus public holidays.

## Expenses
Travel expenses are reimbursed after the receipt is uploaded to the expense tool.
""",
}

# Sources in the "filters" collection; `_` and `%` must be literal in a prefix filter.
FILTER_DOCS = {
    "s3://docs/team_a/report.md": {"team": "a", "year": 2024},
    "s3://docs/teamXa/report.md": {"team": "x", "year": 2023},
    "s3://docs/50%off/report.md": {"team": "sales", "year": 2024},
    "s3://docs/50-cents/report.md": {"team": "sales", "year": 2022},
}
FILTER_TEXT = "## Quarterly report\nThe quarterly report for {source} lists revenue and churn.\n"


def source_of(name: str) -> str:
    return f"s3://corpus/{name}"


@contextmanager
def fresh_database(server_url: str) -> Iterator[str]:
    """A new database on the test server, dropped afterwards."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield psycopg.conninfo.make_conninfo(server_url, dbname=name)
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def make_settings(url: str, model_dir: Path, data_dir: Path, **overrides: object) -> Settings:
    return Settings(
        database_url=url,
        model_dir=model_dir,
        data_dir=data_dir,
        pool_min_size=0,
        pool_max_size=2,
        _env_file=None,  # type: ignore[call-arg]
        **overrides,  # type: ignore[arg-type]
    )


def ingest_markdown(
    service: Service,
    text: str,
    source: str,
    collection: str = "default",
    metadata: dict[str, object] | None = None,
) -> uuid.UUID:
    data = text.encode()
    version = DocumentVersion(
        collection=collection, source=source, size_bytes=len(data), metadata=metadata or {}
    )
    outcome = service.ingestor.ingest_bytes(data, version, name="doc.md")
    assert outcome.status == "ingested", outcome.error
    assert outcome.document_id is not None
    return outcome.document_id


@dataclass
class Corpus:
    service: Service
    settings: Settings
    chunk_ids: dict[tuple[str, str], int]
    filter_doc_ids: dict[str, uuid.UUID]

    def searcher(self, **overrides: object) -> Searcher:
        """A searcher on the shared pool and models with other retrieval settings."""
        settings = self.settings.model_copy(update=overrides)
        return Searcher(self.service.db, self.service.models, settings)

    def search(
        self, query: str, mode: SearchMode, top_k: int = 5, rerank: bool = False, **filters: object
    ) -> list[SearchResult]:
        searcher = self.service.searcher
        request = searcher.request(
            query,
            top_k=top_k,
            mode=mode,
            rerank=rerank,
            filters=SearchFilters(**filters) if filters else None,  # type: ignore[arg-type]
        )
        return searcher.search(request).results

    def key_of(self, chunk_id: int) -> tuple[str, str]:
        return next(key for key, value in self.chunk_ids.items() if value == chunk_id)


@pytest.fixture(scope="module")
def corpus(
    server_url: str, model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Corpus]:
    """One store shared by the read-only tests of this module."""
    with fresh_database(server_url) as url:
        settings = make_settings(url, model_dir, tmp_path_factory.mktemp("corpus"))
        service = Service(settings)
        try:
            for name, text in CORPUS.items():
                ingest_markdown(service, text, source_of(name))
            filter_ids = {
                source: ingest_markdown(
                    service, FILTER_TEXT.format(source=source), source, "filters", metadata
                )
                for source, metadata in FILTER_DOCS.items()
            }
            with service.db.pool.connection() as conn:
                rows = conn.execute(
                    """SELECT d.source, c.heading, c.id FROM chunks c
                       JOIN documents d ON d.id = c.document_id WHERE c.collection = 'default'"""
                ).fetchall()
            chunk_ids = {(source.rsplit("/", 1)[1], heading): id_ for source, heading, id_ in rows}
            assert len(chunk_ids) == sum(t.count("## ") for t in CORPUS.values())
            yield Corpus(service, settings, chunk_ids, filter_ids)
        finally:
            service.close()


def ids(results: Sequence[SearchResult]) -> list[int]:
    return [r.chunk_id for r in results]


# --- modes -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("How long do I have to get my money back after purchasing?", ("billing.md", "Refunds")),
        ("How many days off do staff receive annually?", ("people.md", "Holidays")),
        ("Why do we only ever see one side of the lunar surface?", ("astronomy.md", "Moon")),
    ],
)
def test_vector_mode_finds_paraphrased_questions(
    corpus: Corpus, question: str, expected: tuple[str, str]
) -> None:
    results = corpus.search(question, "vector")
    assert corpus.key_of(results[0].chunk_id) == expected
    scores = [r.score for r in results]
    assert scores == sorted(scores, reverse=True)
    assert [r.scores["vector_rank"] for r in results] == list(range(1, len(results) + 1))


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("ERR-4521", ("billing.md", "Error codes")),
        ("Quillonbury", ("garden.md", "Greenhouse")),
    ],
)
@pytest.mark.parametrize("mode", ["lexical", "hybrid"])
def test_exact_terms_are_found_by_lexical_and_hybrid(
    corpus: Corpus, mode: SearchMode, question: str, expected: tuple[str, str]
) -> None:
    results = corpus.search(question, mode)
    assert corpus.key_of(results[0].chunk_id) == expected
    if mode == "lexical":
        # Only chunks holding the term match: the code and the name are each in one chunk.
        assert len(results) == 1


def test_hybrid_mode_answers_paraphrases_too(corpus: Corpus) -> None:
    results = corpus.search("How long do I have to get my money back after purchasing?", "hybrid")
    assert ("billing.md", "Refunds") in [corpus.key_of(i) for i in ids(results[:3])]


def test_lexical_question_with_extra_words_still_matches(corpus: Corpus) -> None:
    question = "what does ERR-4521 mean for my invoice"
    target = corpus.chunk_ids[("billing.md", "Error codes")]
    with corpus.service.db.pool.connection() as conn:
        row = conn.execute(
            "SELECT tsv @@ websearch_to_tsquery('english', %s) FROM chunks WHERE id = %s",
            (question, target),
        ).fetchone()
    assert row == (False,), "the chunk lacks some terms, so only OR semantics can match it"
    results = corpus.search(question, "lexical")
    assert results[0].chunk_id == target
    assert corpus.chunk_ids[("billing.md", "Invoices")] in ids(results)


@pytest.mark.parametrize("negation", ["-refunds", '-"issued automatically"'])
def test_lexical_negation_requires_every_other_term(corpus: Corpus, negation: str) -> None:
    only_payment = corpus.chunk_ids[("billing.md", "Invoices")]
    both_and_negated = corpus.chunk_ids[("billing.md", "Refunds")]
    both = corpus.chunk_ids[("payments.md", "Payment service")]
    plain = ids(corpus.search("payment timeout", "lexical", top_k=20))
    assert {only_payment, both_and_negated, both} <= set(plain)

    results = corpus.search(f"payment timeout {negation}", "lexical", top_k=20)
    assert ids(results) == [both]


# Every match ranked, as the lexical leg would rank them without counting tiers first.
RANK_EVERY_MATCH = """
SELECT c.id, (SELECT count(*) FROM unnest(t.parts) AS part WHERE c.tsv @@ part)
             + ts_rank_cd(c.tsv, t.query, 1 | 32) AS score
FROM chunks c,
     (SELECT replace(q::text, ' & ', ' | ')::tsquery AS query,
             string_to_array(replace(q::text, ' | ', ' & '), ' & ')::tsquery[] AS parts
      FROM websearch_to_tsquery('english', %s) AS q) AS t
WHERE c.tsv @@ t.query AND c.collection = 'default'
ORDER BY score DESC, c.id"""


@pytest.mark.parametrize("candidates", [1, 2, 3])
@pytest.mark.parametrize(
    "question",
    [
        "payment timeout refunds invoice charge",
        "payment card charge timeout retries order",
        "every day, hour, minute and month",
        # A phrase is one term; a repeated word counts once for each time it is asked.
        '"gateway timeout" payment payments charge',
    ],
)
def test_lexical_leg_ranks_only_the_best_tiers_yet_orders_as_ranking_every_match(
    corpus: Corpus, question: str, candidates: int
) -> None:
    with corpus.service.db.pool.connection() as conn:
        every = conn.execute(RANK_EVERY_MATCH, (question,)).fetchall()
    # Scores are matched terms + cover density in [0, 1): the integer part is the tier.
    floor = int(every[candidates - 1][1]) if len(every) >= candidates else 0
    assert any(int(score) < floor for _, score in every), "some matches must go unranked"
    searcher = corpus.searcher(candidates=candidates)
    request = searcher.request(question, top_k=candidates, mode="lexical", rerank=False)
    results = searcher.search(request).results
    assert [(r.chunk_id, pytest.approx(r.score)) for r in results] == every[:candidates]


# --- query embeddings ---------------------------------------------------------------------


class CountedEmbedder:
    """The real embedder, counting the questions it embeds."""

    def __init__(self, embedder: object):
        self.embedder = embedder
        self.questions: list[str] = []

    def embed_query(self, text: str) -> np.ndarray:
        self.questions.append(text)
        return self.embedder.embed_query(text)  # type: ignore[attr-defined,no-any-return]


class CountedModels:
    def __init__(self, models: object):
        self.embedder = CountedEmbedder(models.embedder)  # type: ignore[attr-defined]
        self.embedder_id = models.embedder_id  # type: ignore[attr-defined]


def test_a_repeated_question_is_embedded_once_and_finds_the_same(corpus: Corpus) -> None:
    searcher = corpus.searcher()
    counted = CountedModels(searcher.models)
    searcher.query_vectors = QueryVectors(counted, size=8)  # type: ignore[arg-type]
    question = "What happens when a payment times out?"
    runs = [searcher.search(searcher.request(question, rerank=False)) for _ in range(3)]
    assert counted.embedder.questions == [question]
    assert [ids(run.results) for run in runs[1:]] == [ids(runs[0].results)] * 2
    kept = searcher.query_vectors.vector(question)
    np.testing.assert_array_equal(kept, searcher.models.embedder.embed_query(question))
    with pytest.raises(ValueError, match="read-only"):
        kept[0] = 1.0


def test_query_vectors_drop_the_least_recently_used(corpus: Corpus) -> None:
    counted = CountedModels(corpus.service.models)
    vectors = QueryVectors(counted, size=2)  # type: ignore[arg-type]
    for question in ["refunds", "invoices", "refunds", "backups", "refunds", "invoices"]:
        vectors.vector(question)
    # "invoices" was the least recently used when "backups" came, so it is embedded again.
    assert counted.embedder.questions == ["refunds", "invoices", "backups", "invoices"]
    assert len(vectors) == 2


def test_query_vectors_of_size_zero_keep_nothing(corpus: Corpus) -> None:
    counted = CountedModels(corpus.service.models)
    vectors = QueryVectors(counted, size=0)  # type: ignore[arg-type]
    for _ in range(3):
        vectors.vector("refunds")
    assert counted.embedder.questions == ["refunds"] * 3
    assert len(vectors) == 0


# --- fusion and reranking ----------------------------------------------------------------


def fuse_rrf(rankings: Sequence[Sequence[int]], rrf_k: int) -> list[tuple[int, Fraction]]:
    """Reciprocal rank fusion: score = sum over rankings of 1 / (rrf_k + rank), ranks from 1;
    ties broken by id, as the SQL does."""
    scores: dict[int, Fraction] = defaultdict(Fraction)
    for ranking in rankings:
        for rank, item in enumerate(ranking, start=1):
            scores[item] += Fraction(1, rrf_k + rank)
    return sorted(scores.items(), key=lambda item: (-item[1], item[0]))


@pytest.mark.parametrize(
    "question",
    ["What happens when a payment times out?", "how are backups, holidays and coffee handled"],
)
def test_hybrid_order_is_rrf_of_the_two_legs(corpus: Corpus, question: str) -> None:
    candidates, rrf_k = 6, 10
    searcher = corpus.searcher(candidates=candidates, rrf_k=rrf_k)

    def run(mode: SearchMode) -> list[SearchResult]:
        request = searcher.request(question, top_k=candidates, mode=mode, rerank=False)
        return searcher.search(request).results

    vector, lexical, hybrid = run("vector"), run("lexical"), run("hybrid")
    assert len(vector) == candidates
    assert len(lexical) >= 2
    assert set(ids(vector)) != set(ids(lexical)), "the legs must disagree for the test to bite"

    expected = fuse_rrf([ids(vector), ids(lexical)], rrf_k)[:candidates]
    assert ids(hybrid) == [chunk_id for chunk_id, _ in expected]
    by_vector = {r.chunk_id: (rank, r) for rank, r in enumerate(vector, start=1)}
    by_lexical = {r.chunk_id: (rank, r) for rank, r in enumerate(lexical, start=1)}
    for result, (_, rrf) in zip(hybrid, expected, strict=True):
        assert result.scores["rrf"] == pytest.approx(float(rrf), rel=1e-12)
        assert result.score == result.scores["rrf"]
        for leg, prefix in ((by_vector, "vector"), (by_lexical, "lexical")):
            if result.chunk_id in leg:
                rank, leg_result = leg[result.chunk_id]
                assert result.scores[f"{prefix}_rank"] == rank
                assert result.scores[f"{prefix}_score"] == pytest.approx(leg_result.score)
            else:
                assert result.scores[f"{prefix}_rank"] is None
                assert result.scores[f"{prefix}_score"] is None


@pytest.mark.parametrize("mode", MODES)
def test_rerank_orders_the_top_fused_candidates_by_cross_encoder(
    corpus: Corpus, mode: SearchMode
) -> None:
    question = "What happens when a payment times out?"
    rerank_candidates, top_k = 3, 2
    searcher = corpus.searcher(rerank_candidates=rerank_candidates)
    everything = searcher.search(
        searcher.request(question, top_k=20, mode=mode, rerank=False)
    ).results
    assert len(everything) > rerank_candidates, "rows past the rerank window must exist"
    fused = everything[:rerank_candidates]
    reranked = searcher.search(
        searcher.request(question, top_k=top_k, mode=mode, rerank=True)
    ).results

    logits = corpus.service.models.reranker.score(
        question,
        [embedding_text(r.heading, r.content) for r in fused],
        max_tokens=corpus.settings.rerank_max_tokens,
    )
    expected = sorted(zip(ids(fused), logits, strict=True), key=lambda item: -item[1])[:top_k]
    assert ids(reranked) == [chunk_id for chunk_id, _ in expected]
    for result, (_, logit) in zip(reranked, expected, strict=True):
        assert result.scores["rerank"] == pytest.approx(float(logit), abs=1e-4)
        assert result.score == pytest.approx(float(relevance(np.array([logit]))[0]), abs=1e-4)


def test_when_the_cross_encoder_finds_nothing_relevant_the_vector_order_stands(
    corpus: Corpus,
) -> None:
    # No probability reaches 1.0, so every reranked hybrid search takes the fallback.
    question = "How long are database snapshots retained?"
    top_k = 3
    searcher = corpus.searcher(rerank_candidates=2, rerank_fallback_probability=1.0)
    vector = searcher.search(searcher.request(question, top_k=top_k, mode="vector", rerank=False))
    fused = searcher.search(searcher.request(question, top_k=2, mode="hybrid", rerank=False))
    result = searcher.search(searcher.request(question, top_k=top_k, mode="hybrid", rerank=True))

    assert ids(result.results) == ids(vector.results)
    # Past the reranked window too: the vector leg's rows come with the fused candidates.
    assert set(ids(result.results)) - set(ids(fused.results))
    logits = corpus.service.models.reranker.score(
        question,
        [embedding_text(r.heading, r.content) for r in result.results],
        max_tokens=corpus.settings.rerank_max_tokens,
    )
    # Scored in other batches: int8 logits move by tenths at most with the padding.
    for item, logit in zip(result.results, logits, strict=True):
        assert item.scores["rerank"] == pytest.approx(float(logit), abs=0.2)
        assert item.score == pytest.approx(float(relevance(np.array([logit]))[0]), abs=0.01)


def test_a_relevant_candidate_keeps_the_cross_encoder_order(corpus: Corpus) -> None:
    question = "How long are database snapshots retained?"
    searcher = corpus.searcher(rerank_candidates=5)
    result = searcher.search(searcher.request(question, top_k=3, mode="hybrid", rerank=True))
    scores = [r.score for r in result.results]
    assert scores[0] >= corpus.settings.rerank_fallback_probability
    assert scores == sorted(scores, reverse=True)
    assert result.results[0].heading == "Backups"


# --- filters -----------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_collections_are_isolated(corpus: Corpus, mode: SearchMode) -> None:
    default_ids = set(corpus.chunk_ids.values())
    in_default = corpus.search("quarterly report revenue", mode, top_k=50)
    assert in_default or mode == "lexical"
    assert set(ids(in_default)) <= default_ids

    in_filters = corpus.search("quarterly report revenue", mode, top_k=50, collection="filters")
    assert {r.document_id for r in in_filters} == set(corpus.filter_doc_ids.values())
    assert not set(ids(in_filters)) & default_ids


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    ("prefix", "expected"),
    [
        ("s3://docs/team_a/", ["s3://docs/team_a/report.md"]),
        ("s3://docs/50%", ["s3://docs/50%off/report.md"]),
        ("s3://docs/", sorted(FILTER_DOCS)),
        ("s3://other/", []),
    ],
)
def test_source_prefix_is_matched_literally(
    corpus: Corpus, mode: SearchMode, prefix: str, expected: list[str]
) -> None:
    results = corpus.search(
        "quarterly report", mode, top_k=50, collection="filters", source_prefix=prefix
    )
    assert sorted({r.source for r in results}) == expected


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("spelling", [str, lambda u: u.hex.upper(), lambda u: f"urn:uuid:{u}"])
def test_document_id_filter_keeps_one_document(
    corpus: Corpus, mode: SearchMode, spelling: Callable[[uuid.UUID], str]
) -> None:
    target = corpus.filter_doc_ids["s3://docs/teamXa/report.md"]
    results = corpus.search(
        "quarterly report", mode, top_k=50, collection="filters", document_id=spelling(target)
    )
    assert results
    assert {r.document_id for r in results} == {target}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    "metadata", [{"team": "a"}, {"year": 2024}, {"team": "sales", "year": 2022}, {"team": "b"}]
)
def test_metadata_filter_matches_key_values(
    corpus: Corpus, mode: SearchMode, metadata: dict[str, object]
) -> None:
    results = corpus.search(
        "quarterly report", mode, top_k=50, collection="filters", metadata=metadata
    )
    expected = {
        corpus.filter_doc_ids[source]
        for source, meta in FILTER_DOCS.items()
        if metadata.items() <= meta.items()
    }
    assert {r.document_id for r in results} == expected


@pytest.mark.parametrize("status", ["pending", "failed"])
def test_only_ready_documents_are_searchable(corpus: Corpus, status: str) -> None:
    collection = f"status_{status}"
    hidden = ingest_markdown(
        corpus.service,
        "## Zephyrine\nThe Zephyrine valve seals the tank.\n",
        "s3://s/hidden.md",
        collection,
    )
    shown = ingest_markdown(
        corpus.service,
        "## Valves\nA Zephyrine valve is also sold.\n",
        "s3://s/shown.md",
        collection,
    )
    question = "Zephyrine valve"
    for mode in MODES:
        found = corpus.search(question, mode, top_k=10, collection=collection)
        assert {r.document_id for r in found} == {hidden, shown}

    with corpus.service.db.pool.connection() as conn:
        conn.execute("UPDATE documents SET status = %s WHERE id = %s", (status, hidden))
        chunks = conn.execute(
            "SELECT count(*) FROM chunks WHERE document_id = %s", (hidden,)
        ).fetchone()
    assert chunks is not None
    assert chunks[0] > 0, "its rows are still there"
    for mode in MODES:
        for rerank in (False, True):
            found = corpus.search(question, mode, top_k=10, rerank=rerank, collection=collection)
            assert {r.document_id for r in found} == {shown}


# --- invalid requests --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"query": ""}, "the query is empty"),
        ({"query": "   \n\t"}, "the query is empty"),
        ({"mode": "semantic"}, "unknown mode 'semantic'; use one of hybrid, vector, lexical"),
        ({"top_k": 0}, "top_k must be between 1 and 100, got 0"),
        ({"top_k": 101}, "top_k must be between 1 and 100, got 101"),
        (
            {"filters": SearchFilters(document_id="not-a-uuid")},
            "'not-a-uuid' is not a document id (a UUID)",
        ),
    ],
)
def test_invalid_requests_are_refused_clearly(
    corpus: Corpus, kwargs: dict[str, object], message: str
) -> None:
    arguments: dict[str, object] = {"query": "refunds", **kwargs}
    with pytest.raises(InvalidQueryError, match=f"^{re.escape(message)}$"):
        corpus.service.searcher.request(**arguments)  # type: ignore[arg-type]


# --- filtered HNSW -----------------------------------------------------------------------

ADJECTIVES = ["red", "quiet", "ancient", "rapid", "frozen", "golden", "hidden", "noisy"]
NOUNS = ["river", "engine", "library", "garden", "satellite", "harbor", "violin", "forest"]
VERBS = ["glows", "waits", "collapses", "sings", "drifts", "grows", "burns", "sleeps"]
BIG_DOCS, BIG_DOC_CHUNKS = 30, 100
SMALL_DOCS, SMALL_DOC_CHUNKS = 3, 10


@contextmanager
def sentence_store(
    url: str,
    model_dir: Path,
    data_dir: Path,
    texts: list[str],
    layout: list[tuple[str, str, list[int]]],
) -> Iterator[Service]:
    """A store of real embeddings of `texts`, analyzed: one ready document per (collection,
    source, the indexes of its chunks' texts) of `layout`."""
    service = Service(make_settings(url, model_dir, data_dir))
    try:
        embedder = service.models.embedder
        vectors = embedder.embed(texts)
        sizes = [embedder.count_tokens(text) for text in texts]
        with service.db.pool.connection() as conn:
            for collection, source, picks in layout:
                documents.save_ready(
                    conn,
                    DocumentVersion(collection, source, 1),
                    [Chunk(i, texts[j], sizes[j]) for i, j in enumerate(picks)],
                    vectors[picks],
                    service.models.embedder_id,
                )
            conn.execute("ANALYZE")
        yield service
    finally:
        service.close()


@pytest.fixture(scope="module")
def big_store(
    server_url: str, model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Service]:
    """3,000 chunks in collection `big`, 30 in `small`; embeddings of 300 real sentences."""
    words = itertools.product(ADJECTIVES, NOUNS, VERBS)
    texts = [f"The {a} {n} {v} at dawn." for a, n, v in itertools.islice(words, 300)]
    layout = [
        (
            collection,
            f"s3://{collection}/{doc}.txt",
            [(doc * 37 + i * 7) % len(texts) for i in range(chunks)],
        )
        for collection, doc_count, chunks in [
            ("big", BIG_DOCS, BIG_DOC_CHUNKS),
            ("small", SMALL_DOCS, SMALL_DOC_CHUNKS),
        ]
        for doc in range(doc_count)
    ]
    with fresh_database(server_url) as url:
        url = psycopg.conninfo.make_conninfo(url, options=PREFER_HNSW)
        with sentence_store(url, model_dir, tmp_path_factory.mktemp("big"), texts, layout) as s:
            yield s


def test_filtered_vector_search_returns_top_k_through_hnsw(big_store: Service) -> None:
    searcher = big_store.searcher
    request = searcher.request(
        "a glowing tower in the morning",
        top_k=20,
        mode="vector",
        rerank=False,
        filters=SearchFilters(collection="small"),
    )
    statement, params = search_statement("vector", request.filters)
    params.update(
        embedding=big_store.models.embedder.embed_query(request.query),
        candidates=big_store.settings.candidates,
        limit=request.top_k,
    )
    with big_store.db.pool.connection() as conn:
        plan = "\n".join(row[0] for row in conn.execute(sql.SQL("EXPLAIN ") + statement, params))
        assert re.search(r"Index Scan using chunks_embedding_idx on chunks", plan), plan
        # Control: a plain HNSW scan stops at ef_search candidates, most of them filtered out.
        with conn.transaction():
            conn.execute("SET LOCAL hnsw.iterative_scan = off")
            plain_rows = len(conn.execute(statement, params).fetchall())
    assert plain_rows < request.top_k

    results = searcher.search(request).results
    assert len(results) == request.top_k
    with big_store.db.pool.connection() as conn:
        small_ids = {
            row[0] for row in conn.execute("SELECT id FROM chunks WHERE collection = 'small'")
        }
    assert set(ids(results)) <= small_ids
    distances = [1 - r.score for r in results]
    assert distances == sorted(distances)


@pytest.mark.parametrize("mode", ["vector", "hybrid"])
def test_filtered_search_in_a_small_collection_fills_top_k(
    big_store: Service, mode: SearchMode
) -> None:
    searcher = big_store.searcher
    request = searcher.request(
        "a quiet harbor sleeps",
        top_k=20,
        mode=mode,
        rerank=False,
        filters=SearchFilters(collection="small"),
    )
    assert len(searcher.search(request).results) == 20


MANY_DOCUMENTS = 2_500


@pytest.fixture(scope="module")
def many_documents(
    server_url: str, model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Service]:
    """2,500 one-chunk documents, every chunk naming a lantern (real embeddings of 64)."""
    words = list(itertools.product(ADJECTIVES, NOUNS))
    texts = [f"The {a} lantern by the {n} stays lit." for a, n in words]
    layout = [
        ("default", f"s3://default/{doc}.txt", [doc % len(texts)]) for doc in range(MANY_DOCUMENTS)
    ]
    with (
        fresh_database(server_url) as url,
        sentence_store(url, model_dir, tmp_path_factory.mktemp("many"), texts, layout) as s,
    ):
        yield s


def test_many_full_text_matches_meet_their_documents_in_one_hash(many_documents: Service) -> None:
    """Probing the documents' key once a match costs about 3 us each: thousands of matches
    (a question of common words) join the documents table read once instead."""
    searcher = many_documents.searcher
    request = searcher.request("lantern", top_k=10, mode="lexical", rerank=False)
    statement, params = search_statement("lexical", request.filters)
    params.update(
        query=request.query,
        match_all=False,
        candidates=many_documents.settings.candidates,
        limit=request.top_k,
    )
    with many_documents.db.scoped("default") as conn:
        plan = "\n".join(row[0] for row in conn.execute(sql.SQL("EXPLAIN ") + statement, params))
    assert "Seq Scan on documents" in plan, plan
    # The one probe left fetches the documents of the 10 results.
    assert plan.count("Index Scan using documents_pkey on documents") == 1, plan

    results = searcher.search(request).results
    assert len(results) == 10
    assert all("lantern" in r.content for r in results)
