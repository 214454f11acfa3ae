"""Ingest a dataset's corpus into its own collection and run every judged query in each mode,
through the service's own Searcher (the code path of the API)."""

from __future__ import annotations

import hashlib
import os
import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ragops.db import documents
from ragops.db.documents import DocumentRow, DocumentVersion
from ragops.errors import EvalDataError
from ragops.evaluation.dataset import CorpusDocument, Dataset
from ragops.evaluation.metrics import distinct, mean_scores
from ragops.ingest.pipeline import IngestOutcome
from ragops.progress import progress_bar
from ragops.retrieval.search import SearchResult
from ragops.retrieval.sql import SearchFilters
from ragops.settings import SearchMode, Settings

if TYPE_CHECKING:
    from ragops.service import Service

# Mode name -> (search mode, rerank). The default is what the service answers with.
MODES: dict[str, tuple[SearchMode, bool]] = {
    "lexical": ("lexical", False),
    "vector": ("vector", False),
    "hybrid": ("hybrid", False),
    "hybrid+rerank": ("hybrid", True),
}
DEFAULT_MODE = "hybrid+rerank"
# Chunks retrieved per query: documents have several chunks, and the metrics need the top
# 10 distinct documents. Reranking still rescores only RAGOPS_RERANK_CANDIDATES of them.
CHUNK_DEPTH = 50
# Part of the collection name: bump it when the documents built from corpus records change.
DOCUMENT_FORMAT = 1
SOURCE_SCHEME = "beir://"
# Lines Markdown would read as a heading (ATX, or a setext underline): indented, they stay text.
_HEADING_LIKE = re.compile(r"^ {0,3}(?:#|=+[ \t]*$|-+[ \t]*$)")


@dataclass
class CorpusIngest:
    collection: str
    ingested: bool  # whether this run (re-)ingested any document
    chunks: int
    seconds: float


@dataclass
class ModeRun:
    """Per judged query, the corpus ids retrieved (best first), and each search's time."""

    rankings: dict[str, list[str]] = field(default_factory=dict)
    latencies_ms: list[float] = field(default_factory=list)


def collection_name(dataset: Dataset, settings: Settings, embedder_id: str) -> str:
    """A collection per corpus content and chunking: a re-run finds its ingest, a change
    of either gets a fresh one."""
    key = "\n".join(
        [
            dataset.corpus_sha256,
            str(settings.chunk_tokens),
            str(settings.chunk_overlap),
            embedder_id,
            str(DOCUMENT_FORMAT),
        ]
    )
    return "eval-" + hashlib.sha256(key.encode()).hexdigest()[:16]


def corpus_source(corpus_id: str) -> str:
    """The source URI a corpus document is stored under."""
    return SOURCE_SCHEME + corpus_id


def corpus_file(document: CorpusDocument) -> tuple[bytes, str]:
    """The document as ingest reads it, and a file name giving its type.

    With a title, Markdown: the title becomes every chunk's heading, as a document's
    section heading does. The text's heading-like lines are indented so they stay text.
    """
    title = " ".join(document.title.split())
    if not title or not document.text.strip():
        return (document.text.strip() or title).encode(), "document.txt"
    body = "\n".join(
        "    " + line if _HEADING_LIKE.match(line) else line for line in document.text.splitlines()
    )
    return f"# {title}\n\n{body}\n".encode(), "document.md"


def ingest_corpus(service: Service, dataset: Dataset, collection: str) -> CorpusIngest:
    """Ingest the documents the collection lacks (all of them the first time)."""
    started = time.perf_counter()
    ingestor = service.ingestor
    with service.db.pool.connection() as conn:
        rows = documents.list_documents(conn, collection=collection, limit=len(dataset.corpus))
    stored = {row.source: row for row in rows}
    missing = [
        doc
        for doc in dataset.corpus.values()
        if not ingestor.is_current(stored.get(corpus_source(doc.id)))
    ]

    def ingest(document: CorpusDocument) -> IngestOutcome:
        return _ingest_document(
            service, document, collection, stored.get(corpus_source(document.id))
        )

    failures = []
    # Each document embeds as its own batch, on one core: ingest as many at once as cores.
    workers = service.settings.onnx_threads or os.cpu_count() or 1
    with progress_bar(len(missing), "ingest", "doc") as bar, ThreadPoolExecutor(workers) as pool:
        for document, outcome in zip(missing, pool.map(ingest, missing), strict=True):
            bar.update(1)
            if outcome.status == "failed":
                failures.append(f"{document.id}: {outcome.error}")
    if failures:
        shown = "; ".join(failures[:5]) + ("; ..." if len(failures) > 5 else "")
        raise EvalDataError(
            f"{dataset.paths.corpus}: {len(failures)} document(s) could not be ingested: {shown}"
        )
    with service.db.pool.connection() as conn:
        row = conn.execute(
            """SELECT coalesce(sum(chunk_count), 0) FROM documents
               WHERE collection = %s AND status = 'ready'""",
            (collection,),
        ).fetchone()
    assert row is not None
    return CorpusIngest(
        collection,
        ingested=bool(missing),
        chunks=int(row[0]),
        seconds=round(time.perf_counter() - started, 3),
    )


def _ingest_document(
    service: Service, document: CorpusDocument, collection: str, existing: DocumentRow | None
) -> IngestOutcome:
    data, name = corpus_file(document)
    version = DocumentVersion(
        collection=collection,
        source=corpus_source(document.id),
        size_bytes=len(data),
        title=document.title or document.id,
        metadata={"corpus_id": document.id},
    )
    return service.ingestor.ingest_bytes(data, version, name, existing=existing)


def run_queries(service: Service, dataset: Dataset, collection: str) -> dict[str, ModeRun]:
    """Every judged query in every mode; results mapped back to corpus ids."""
    searcher = service.searcher
    filters = SearchFilters(collection=collection)
    corpus_ids = {corpus_source(corpus_id): corpus_id for corpus_id in dataset.corpus}
    rerank_depth = min(service.settings.rerank_candidates, 100)
    queries = dataset.judged_queries
    # Untimed: the first searches open the model sessions.
    searcher.search(searcher.request(queries[0].text, mode="hybrid", rerank=True, filters=filters))
    runs = {name: ModeRun() for name in MODES}
    with progress_bar(len(queries) * len(MODES), "search", "query") as bar:
        for query in queries:
            unreranked: dict[SearchMode, list[SearchResult]] = {}
            for name, (mode, rerank) in MODES.items():
                request = searcher.request(
                    query.text,
                    top_k=rerank_depth if rerank else CHUNK_DEPTH,
                    mode=mode,
                    rerank=rerank,
                    filters=filters,
                )
                response = searcher.search(request)
                results = response.results
                if rerank:
                    results = _then_unreranked(results, unreranked.get(mode, []))
                else:
                    unreranked[mode] = results
                ids = (corpus_ids.get(result.source) for result in results)
                runs[name].rankings[query.id] = distinct(i for i in ids if i is not None)
                runs[name].latencies_ms.append(response.timings_ms["total"])
                bar.update(1)
    return runs


def _then_unreranked(
    reranked: list[SearchResult], unreranked: list[SearchResult]
) -> list[SearchResult]:
    """The reranked candidates, then the rest of the fused list in its own order: the
    service shows only the first; the rest fills the metrics' deeper ranks."""
    seen = {result.chunk_id for result in reranked}
    return reranked + [result for result in unreranked if result.chunk_id not in seen]


def ndcg_by_kind(run: ModeRun, dataset: Dataset) -> dict[str, float]:
    """nDCG@10 over each kind of judged query: which questions a mode wins or loses."""
    kinds: dict[str, dict[str, dict[str, int]]] = {}
    for query in dataset.judged_queries:
        kinds.setdefault(query.kind, {})[query.id] = dataset.qrels[query.id]
    return {
        kind: round(mean_scores(run.rankings, qrels)["ndcg@10"], 4)
        for kind, qrels in sorted(kinds.items())
    }


def mode_scores(run: ModeRun, qrels: dict[str, dict[str, int]]) -> dict[str, float]:
    """The mean of each metric over the judged queries, and the searches' p50/p95 latency."""
    scores = {name: round(value, 4) for name, value in mean_scores(run.rankings, qrels).items()}
    p50, p95 = np.percentile(run.latencies_ms, [50, 95]) if run.latencies_ms else (0.0, 0.0)
    scores["latency_p50_ms"] = round(float(p50), 1)
    scores["latency_p95_ms"] = round(float(p95), 1)
    return scores


def settings_json(service: Service) -> dict[str, Any]:
    """The settings that change the figures."""
    settings = service.settings
    return {
        "chunk_tokens": settings.chunk_tokens,
        "chunk_overlap": settings.chunk_overlap,
        "candidates": settings.candidates,
        "rerank_candidates": settings.rerank_candidates,
        "rerank_max_tokens": settings.rerank_max_tokens,
        "rrf_k": settings.rrf_k,
        "ef_search": settings.ef_search,
        "chunks_retrieved": CHUNK_DEPTH,
        "embedder": service.models.embedder_id,
        "reranker": service.models.manifest.reranker.id,
    }


def evaluate_retrieval(service: Service, dataset: Dataset) -> dict[str, Any]:
    """The whole retrieval evaluation as one JSON-ready object (the `--json` output)."""
    collection = collection_name(dataset, service.settings, service.models.embedder_id)
    corpus = ingest_corpus(service, dataset, collection)
    started = time.perf_counter()
    runs = run_queries(service, dataset, collection)
    modes = {name: mode_scores(run, dataset.qrels) for name, run in runs.items()}
    return {
        **modes[DEFAULT_MODE],
        "mode": DEFAULT_MODE,
        "modes": modes,
        "ndcg@10_by_kind": {name: ndcg_by_kind(run, dataset) for name, run in runs.items()},
        "queries": len(dataset.qrels),
        "corpus_documents": len(dataset.corpus),
        "chunks": corpus.chunks,
        "collection": collection,
        "ingested": corpus.ingested,
        "ingest_seconds": corpus.seconds,
        "search_seconds": round(time.perf_counter() - started, 3),
        "dataset": {
            "corpus": str(dataset.paths.corpus),
            "queries": str(dataset.paths.queries),
            "qrels": str(dataset.paths.qrels),
            "corpus_sha256": dataset.corpus_sha256,
        },
        "settings": settings_json(service),
    }
