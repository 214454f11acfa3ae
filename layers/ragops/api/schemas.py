"""Request bodies, validated by msgspec before a handler runs."""

from __future__ import annotations

from typing import Annotated, Literal
from uuid import UUID

import msgspec

# PostgreSQL text cannot hold NUL characters: refuse them here with a 400.
NO_NUL = r"^[^\x00]*$"

Query = Annotated[str, msgspec.Meta(min_length=1, pattern=NO_NUL)]
Collection = Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=NO_NUL)]
SourcePrefix = Annotated[str, msgspec.Meta(min_length=1, max_length=2000, pattern=NO_NUL)]
MetadataKey = Annotated[str, msgspec.Meta(min_length=1, pattern=NO_NUL)]
MetadataValue = Annotated[str, msgspec.Meta(pattern=NO_NUL)] | int | float | bool


class Filters(msgspec.Struct, forbid_unknown_fields=True):
    source_prefix: SourcePrefix | None = None
    document_id: UUID | None = None
    metadata: dict[MetadataKey, MetadataValue] | None = None


class SearchBody(msgspec.Struct, forbid_unknown_fields=True):
    query: Query
    top_k: Annotated[int, msgspec.Meta(ge=1, le=100)] | None = None
    mode: Literal["hybrid", "vector", "lexical"] | None = None
    rerank: bool | None = None
    collection: Collection | None = None
    filters: Filters | None = None


class Turn(msgspec.Struct, forbid_unknown_fields=True):
    role: Literal["user", "assistant"]
    content: Annotated[str, msgspec.Meta(min_length=1, max_length=20_000, pattern=NO_NUL)]


class QueryBody(SearchBody, forbid_unknown_fields=True):
    # Earlier turns of a conversation: a follow-up is rewritten into a standalone question.
    history: Annotated[list[Turn], msgspec.Meta(max_length=50)] | None = None
    # Server-Sent Events (token events, then one final event); needs a streaming server.
    stream: bool = False


class ErrorBody(msgspec.Struct):
    """Every error response: the status again and a `detail` naming the problem."""

    status_code: int
    detail: str
