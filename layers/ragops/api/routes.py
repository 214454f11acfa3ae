"""Query API routes: each translates a request into one service call and back."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from litestar import Controller, Request, Response, delete, get, post
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromQuery, JSONBody, Parameter
from litestar.response import Stream

from ragops.access.auth import Principal
from ragops.api.observe import COUNTED_AS_QUERY, observe_query
from ragops.api.schemas import NO_NUL, ErrorBody, QueryBody, SearchBody
from ragops.db import documents
from ragops.errors import InvalidQueryError, NotFoundError
from ragops.retrieval.search import SearchRequest
from ragops.retrieval.sql import SearchFilters
from ragops.service import Service

Status = Literal["pending", "ready", "failed"]
ServiceDep = NamedDependency[Service]
PrincipalDep = NamedDependency[Principal]


def _error_spec(description: str) -> ResponseSpec:
    return ResponseSpec(data_container=ErrorBody, description=description, generate_examples=False)


# The refusals every credentialed route may answer with (400 is documented by Litestar).
ERROR_RESPONSES = {
    401: _error_spec("No API key, or one that is malformed, unknown or revoked"),
    403: _error_spec("The credentials do not grant the collection"),
    404: _error_spec("No such document or collection"),
    413: _error_spec("The request body is larger than RAGOPS_MAX_REQUEST_BYTES"),
    429: _error_spec("Rate limit exceeded; the Retry-After header says when to retry"),
    503: _error_spec("The database or the models are unavailable"),
}
# PostgreSQL's OFFSET is a bigint: larger values would fail in the database, not here.
MAX_OFFSET = 2**63 - 1


def _search_request(service: Service, principal: Principal, body: SearchBody) -> SearchRequest:
    limit = service.settings.max_query_chars
    if len(body.query) > limit:
        raise InvalidQueryError(
            f"the query is {len(body.query)} characters long; the limit is {limit} "
            "(RAGOPS_MAX_QUERY_CHARS)"
        )
    default = service.settings.default_collection
    collection = principal.collection_for(body.collection, default)
    # The default collection, and the one a key owns, always exist: an empty store answers
    # with no results, not 404. The search runs scoped to the collection (see Searcher).
    if body.collection is not None and collection != default:
        with service.db.scoped(collection) as conn:
            if not documents.collection_exists(conn, collection):
                raise NotFoundError(
                    f"unknown collection {collection!r}: no document was ingested into it"
                )
    filters = body.filters
    return service.searcher.request(
        body.query,
        top_k=body.top_k,
        mode=body.mode,
        rerank=body.rerank,
        filters=SearchFilters(
            collection=collection,
            source_prefix=filters.source_prefix if filters else None,
            document_id=str(filters.document_id) if filters and filters.document_id else None,
            metadata=dict(filters.metadata) if filters and filters.metadata else None,
        ),
    )


class SearchController(Controller):
    path = "/v1"
    tags = ["search"]  # noqa: RUF012 (Litestar reads a plain class attribute)

    @post(
        "/search",
        status_code=200,
        sync_to_thread=True,
        summary="Retrieve passages",
        opt={COUNTED_AS_QUERY: True},
        responses=ERROR_RESPONSES,
    )
    def search(
        self, data: JSONBody[SearchBody], service: ServiceDep, principal: PrincipalDep
    ) -> dict[str, Any]:
        """Hybrid (or vector / lexical) retrieval, reranked; no generation."""
        search = _search_request(service, principal, data)
        with observe_query("search", search) as observed:
            response = service.searcher.search(search)
            observed.searched(response)
        return {
            "results": [r.to_json() for r in response.results],
            "meta": {"timings_ms": response.timings_ms},
        }

    @post(
        "/query",
        status_code=200,
        sync_to_thread=True,
        summary="Answer a question",
        opt={COUNTED_AS_QUERY: True},
        responses=ERROR_RESPONSES,
    )
    def query(
        self,
        data: JSONBody[QueryBody],
        service: ServiceDep,
        principal: PrincipalDep,
        request: Request[Any, Any, Any],
    ) -> Response[Any]:
        """An answer with citations to the passages it came from; `stream` for SSE."""
        search = _search_request(service, principal, data)
        history = [{"role": t.role, "content": t.content} for t in data.history or []]
        with observe_query("answer", search) as observed:
            if data.stream and not _behind_api_gateway(request):
                events = observed.answer_stream(service.answerer.stream(search, history))
                return Stream(
                    (event.to_sse() for event in events),
                    media_type="text/event-stream",
                    headers={"X-Accel-Buffering": "no", "Cache-Control": "no-cache"},
                )
            answer = service.answerer.answer(search, history)
            headers = {}
            if data.stream:
                # Mangum buffers the whole response: say so instead of pretending to stream.
                answer.warnings.append(STREAMING_UNAVAILABLE)
                headers["X-Ragops-Streaming"] = "unavailable"
            body = answer.to_json()
            observed.answered(body)
        return Response(body, headers=headers)


STREAMING_UNAVAILABLE = (
    "streaming is not available behind API Gateway with Mangum; the whole answer is "
    "returned at once (serve with uvicorn or the Lambda Web Adapter to stream)"
)


def _behind_api_gateway(request: Request[Any, Any, Any]) -> bool:
    """Mangum puts the Lambda event into the ASGI scope."""
    return "aws.event" in request.scope


DocumentId = Annotated[str, Parameter(description="The document's UUID.")]
CollectionParam = Annotated[
    str | None,
    Parameter(
        pattern=NO_NUL,
        max_length=200,
        description="The collection; by default the credentials' own (or the default one).",
    ),
]


def _document_uuid(document_id: str) -> uuid.UUID:
    try:
        return uuid.UUID(document_id)
    except ValueError:
        raise InvalidQueryError(f"document id {document_id!r} is not a UUID") from None


class DocumentsController(Controller):
    path = "/v1/documents"
    tags = ["documents"]  # noqa: RUF012

    @get("/", sync_to_thread=True, summary="List documents", responses=ERROR_RESPONSES)
    def list_documents(
        self,
        service: ServiceDep,
        principal: PrincipalDep,
        collection: CollectionParam = None,
        status: FromQuery[Status | None] = None,
        limit: Annotated[int, Parameter(ge=1, le=1000)] = 100,
        offset: Annotated[int, Parameter(ge=0, le=MAX_OFFSET)] = 0,
    ) -> dict[str, Any]:
        """The documents of one collection."""
        scope = principal.collection_for(collection, service.settings.default_collection)
        with service.db.scoped(scope) as conn:
            rows = documents.list_documents(conn, scope, status, limit, offset)
        return {"documents": [row.to_json() for row in rows], "limit": limit, "offset": offset}

    # A str path parameter: a malformed id gets a 400 that says so, not a bare 404.
    @get(
        "/{document_id:str}",
        sync_to_thread=True,
        summary="One document",
        responses=ERROR_RESPONSES,
    )
    def get_document(
        self,
        document_id: DocumentId,
        service: ServiceDep,
        principal: PrincipalDep,
        collection: CollectionParam = None,
    ) -> dict[str, Any]:
        """One document of the collection; another collection's id is not found."""
        document = _document_uuid(document_id)
        scope = principal.collection_for(collection, service.settings.default_collection)
        with service.db.scoped(scope) as conn:
            row = documents.get_document(conn, document)
        if row is None:
            raise NotFoundError(f"no document {document_id}")
        return row.to_json()

    @delete(
        "/{document_id:str}",
        status_code=200,
        sync_to_thread=True,
        summary="Delete",
        responses=ERROR_RESPONSES,
    )
    def delete_document(
        self,
        document_id: DocumentId,
        service: ServiceDep,
        principal: PrincipalDep,
        collection: CollectionParam = None,
    ) -> dict[str, Any]:
        """Delete the document and its chunks (the bucket object is left alone)."""
        document = _document_uuid(document_id)
        scope = principal.collection_for(collection, service.settings.default_collection)
        with service.db.scoped(scope) as conn:
            deleted = documents.delete_document(conn, document)
        if not deleted:
            raise NotFoundError(f"no document {document_id}")
        return {"deleted": str(document_id)}


@get(
    "/v1/ingest/stats",
    sync_to_thread=True,
    tags=["ingest"],
    summary="Ingest status",
    responses=ERROR_RESPONSES,
)
def ingest_stats(
    service: ServiceDep, principal: PrincipalDep, collection: CollectionParam = None
) -> dict[str, Any]:
    """Documents of one collection by status, and the failed ones with their reasons."""
    scope = principal.collection_for(collection, service.settings.default_collection)
    with service.db.scoped(scope) as conn:
        counts = documents.status_counts(conn)
        failed = documents.list_documents(conn, scope, status="failed", limit=100)
    return {
        "counts": {status: counts.get(status, 0) for status in ("ready", "pending", "failed")},
        "pending": counts.get("pending", 0),
        "failed": [
            {
                "document_id": str(d.id),
                "source": d.source,
                "error": d.error,
                "at": d.updated_at.isoformat(),
            }
            for d in failed
        ],
    }
