"""Request bodies, validated by msgspec before a handler runs."""

from __future__ import annotations

from typing import Annotated, Literal
from uuid import UUID

import msgspec

Collection = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
MetadataValue = str | int | float | bool


class Filters(msgspec.Struct, forbid_unknown_fields=True):
    source_prefix: Annotated[str, msgspec.Meta(min_length=1, max_length=2000)] | None = None
    document_id: UUID | None = None
    metadata: dict[Annotated[str, msgspec.Meta(min_length=1)], MetadataValue] | None = None


class SearchBody(msgspec.Struct, forbid_unknown_fields=True):
    query: Annotated[str, msgspec.Meta(min_length=1)]
    top_k: Annotated[int, msgspec.Meta(ge=1, le=100)] | None = None
    mode: Literal["hybrid", "vector", "lexical"] | None = None
    rerank: bool | None = None
    collection: Collection | None = None
    filters: Filters | None = None


class QueryBody(SearchBody, forbid_unknown_fields=True):
    pass
