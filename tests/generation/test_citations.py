"""Citation parsing and mapping back to the passages the prompt numbered."""

from __future__ import annotations

import uuid

import pytest

from ragops.generation.citations import cited_indices, map_citations
from ragops.generation.prompt import select_context
from ragops.retrieval.search import SearchResult


def result(n: int) -> SearchResult:
    return SearchResult(
        document_id=uuid.UUID(int=n),
        source=f"s3://b/doc{n}.pdf",
        title=f"Doc {n}",
        chunk_id=100 + n,
        ordinal=0,
        page=n,
        heading=None,
        content=f"Passage number {n} says   something\nuseful. " + "word " * 60,
        score=1.0 - n / 10,
        scores={},
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Yes [1].", [1]),
        ("A [2] and B [1].", [2, 1]),
        ("Both [1, 3].", [1, 3]),
        ("Both [1,3; 2].", [1, 3, 2]),
        ("Adjacent [3][1] and again [3].", [3, 1]),
        ("Spaced [ 2 ].", [2]),
        ("According to [2], yes.", [2]),
        ("No citations here.", []),
        ("Not a citation: [a], [], [1a], [-1].", []),
    ],
)
def test_cited_indices(text: str, expected: list[int]) -> None:
    assert cited_indices(text) == expected


def test_citations_map_to_the_numbered_passages_with_their_fields() -> None:
    results = [result(1), result(2), result(3)]
    context = select_context(results, 10_000, lambda t: len(t.split()))
    mapped = map_citations("According to [3], yes; see also [1][3].", context.passages)
    assert [c.index for c in mapped.citations] == [3, 1]
    third = mapped.citations[0]
    assert third.document_id == str(uuid.UUID(int=3))
    assert third.source == "s3://b/doc3.pdf"
    assert third.title == "Doc 3"
    assert third.page == 3
    assert third.score == pytest.approx(0.7)
    assert third.snippet.startswith("Passage number 3 says something")
    assert third.snippet.endswith("…")
    assert len(third.snippet) <= 240
    assert mapped.unknown == []


def test_indices_naming_no_passage_are_dropped_and_reported() -> None:
    context = select_context([result(1), result(2)], 10_000, lambda t: len(t.split()))
    mapped = map_citations("Sure [2][7], in [0] and [2024].", context.passages)
    assert [c.index for c in mapped.citations] == [2]
    assert mapped.unknown == [7, 0, 2024]


def test_numbers_follow_the_prompt_so_dropped_passages_cannot_be_cited() -> None:
    # Only two passages fit the budget: [3] names nothing, even though a third result exists.
    results = [result(1), result(2), result(3)]
    one = select_context(results[:1], 10_000, lambda t: len(t.split())).tokens
    context = select_context(results, 2 * one + 1, lambda t: len(t.split()))
    assert len(context.passages) == 2
    mapped = map_citations("[1] and [3]", context.passages)
    assert [c.index for c in mapped.citations] == [1]
    assert 3 in mapped.unknown
