"""Search SQL: a vector leg (HNSW), a full-text leg, and their RRF fusion, in one statement.

Each leg returns its best `candidates` rows with their rank; hybrid fuses the legs with
reciprocal rank fusion, score = sum over legs of 1 / (rrf_k + rank).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from psycopg import sql

from ragops.settings import SearchMode


@dataclass(frozen=True)
class SearchFilters:
    collection: str = "default"
    source_prefix: str | None = None
    document_id: str | None = None
    metadata: dict[str, Any] | None = None


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def filter_clause(filters: SearchFilters) -> tuple[sql.Composable, dict[str, Any]]:
    """WHERE conditions over chunks `c` joined to documents `d`, with their parameters."""
    from psycopg.types.json import Jsonb

    conditions = [sql.SQL("c.collection = %(collection)s"), sql.SQL("d.status = 'ready'")]
    params: dict[str, Any] = {"collection": filters.collection}
    if filters.source_prefix:
        conditions.append(sql.SQL("d.source LIKE %(source_like)s"))
        params["source_like"] = _escape_like(filters.source_prefix) + "%"
    if filters.document_id:
        conditions.append(sql.SQL("c.document_id = %(document_id)s::uuid"))
        params["document_id"] = filters.document_id
    if filters.metadata:
        conditions.append(sql.SQL("d.metadata @> %(metadata)s"))
        params["metadata"] = Jsonb(filters.metadata)
    return sql.SQL(" AND ").join(conditions), params


_VECTOR_LEG = """
vector_leg AS (
    SELECT id, row_number() OVER (ORDER BY distance, id) AS rank, 1 - distance AS score
    FROM (
        SELECT c.id, c.embedding <=> %(embedding)s AS distance
        FROM chunks c JOIN documents d ON d.id = c.document_id
        WHERE {filters}
        ORDER BY c.embedding <=> %(embedding)s
        LIMIT %(candidates)s
    ) nearest
)"""

# Plain questions match any of their terms; a query that negates a term (`-term`) keeps
# web-search semantics, where every term is required. Chunks matching more of the query's
# terms rank first (cover density alone lets one term repeated in a heading outrank a
# chunk holding the rare term the question is about); cover density, scaled into [0, 1),
# orders chunks matching as many terms.
#
# Cover density is the costly part (about 6 us a chunk, and a common term matches a tenth
# of a store), and it only orders chunks within one count of matched terms. So every match
# is counted first, and only those matching at least as many terms as the
# `candidates`-th best are ranked: the same rows in the same order as ranking them all.
# Matches and their counts come from ragops_lexical_matches (migration 0004), one GIN lookup
# a term, held to the transaction's collection as row-level security holds other reads.
_LEXICAL_LEG = """
lexical_terms AS MATERIALIZED (
    SELECT CASE WHEN %(match_all)s THEN q
                ELSE replace(q::text, ' & ', ' | ')::tsquery END AS query,
           CASE WHEN %(match_all)s THEN ARRAY[q]
                ELSE string_to_array(replace(q::text, ' | ', ' & '), ' & ')::tsquery[]
           END AS parts
    FROM websearch_to_tsquery('english', %(query)s) AS q
),
lexical_matches AS MATERIALIZED (
    SELECT c.id, c.hits
    FROM lexical_terms t,
         ragops_lexical_matches(t.parts) AS c
         JOIN documents d ON d.id = c.document_id
    WHERE {filters}
),
lexical_floor AS (
    SELECT coalesce(min(hits), 0) AS hits
    FROM (SELECT hits FROM lexical_matches ORDER BY hits DESC LIMIT %(candidates)s) best
),
lexical_leg AS (
    SELECT id, row_number() OVER (ORDER BY score DESC, id) AS rank, score
    FROM (
        SELECT m.id, m.hits + ts_rank_cd(c.tsv, t.query, 1 | 32) AS score
        FROM lexical_matches m JOIN chunks c ON c.id = m.id, lexical_terms t, lexical_floor f
        WHERE m.hits >= f.hits
        ORDER BY score DESC, m.id
        LIMIT %(candidates)s
    ) ranked
)"""

_SELECT = """
SELECT r.id AS chunk_id, c.document_id, c.ordinal, c.content, c.page, c.heading,
       c.token_count, d.source, d.title, {columns}
FROM {ranked} r
JOIN chunks c ON c.id = r.id
JOIN documents d ON d.id = c.document_id
ORDER BY {order}
LIMIT %(limit)s"""

_FUSED = """
fused AS (
    SELECT id, row_number() OVER (ORDER BY rrf DESC, id) AS fused_rank, rrf,
           vector_rank, vector_score, lexical_rank, lexical_score
    FROM (
        SELECT coalesce(v.id, l.id) AS id,
               coalesce(1.0 / (%(rrf_k)s + v.rank), 0.0)
                 + coalesce(1.0 / (%(rrf_k)s + l.rank), 0.0) AS rrf,
               v.rank AS vector_rank, v.score AS vector_score,
               l.rank AS lexical_rank, l.score AS lexical_score
        FROM vector_leg v FULL OUTER JOIN lexical_leg l ON l.id = v.id
    ) legs
)"""

# Hybrid rows: the fused best `limit`, and with them the vector leg's best `vector_limit`
# (the order reranking falls back to when the cross-encoder finds no candidate relevant).
_SELECT_FUSED = """
SELECT r.id AS chunk_id, c.document_id, c.ordinal, c.content, c.page, c.heading,
       c.token_count, d.source, d.title, r.fused_rank, r.rrf, r.vector_rank, r.vector_score,
       r.lexical_rank, r.lexical_score
FROM fused r
JOIN chunks c ON c.id = r.id
JOIN documents d ON d.id = c.document_id
WHERE r.fused_rank <= %(limit)s OR r.vector_rank <= %(vector_limit)s
ORDER BY r.fused_rank"""


def search_statement(
    mode: SearchMode, filters: SearchFilters
) -> tuple[sql.Composed, dict[str, Any]]:
    """The statement for `mode` and the filter parameters it needs."""
    where, params = filter_clause(filters)
    if mode == "hybrid":
        text = "WITH " + ",".join([_VECTOR_LEG, _LEXICAL_LEG, _FUSED]) + _SELECT_FUSED
        return sql.SQL(text).format(filters=where), params
    ranked = f"{mode}_leg"
    columns = f"r.rank AS {mode}_rank, r.score AS {mode}_score"
    text = (
        "WITH "
        + (_VECTOR_LEG if mode == "vector" else _LEXICAL_LEG)
        + _SELECT.format(columns=columns, ranked=ranked, order="r.rank", filters="{filters}")
    )
    return sql.SQL(text).format(filters=where), params
