"""Ingest limits while parsing: pages, extracted text and inflated bytes, each refused early,
in bounded time and memory, with a reason that names its setting."""

from __future__ import annotations

import time
import tracemalloc
from collections.abc import Callable
from typing import TypeVar

import pytest
from pypdf import get_configuration
from tests.hostile_corpus import (
    MIB,
    bomb_pdf,
    nested_html,
    one_line,
    plain_pages_pdf,
    spread_bomb_pdf,
)
from tests.pdf_samples import text_pdf

from ragops.errors import IngestError, LimitExceededError, ParseError
from ragops.ingest.limits import IngestLimits
from ragops.ingest.parse import parse_document
from ragops.ingest.text import decode_text
from ragops.settings import Settings

T = TypeVar("T")


def outcome(action: Callable[[], T]) -> T | IngestError:
    try:
        return action()
    except IngestError as exc:
        return exc


def timed(action: Callable[[], T]) -> tuple[T | IngestError, float]:
    """What `action` returns (or the ingest error it raises) and its seconds."""
    started = time.perf_counter()
    result = outcome(action)
    return result, time.perf_counter() - started


def peak_memory(action: Callable[[], T]) -> tuple[T | IngestError, int]:
    """What `action` returns (or the ingest error it raises) and its peak of new Python
    allocations, in bytes (traced apart from `timed`: tracing slows Python code down)."""
    tracemalloc.start()
    try:
        result = outcome(action)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return result, peak


# --- settings ------------------------------------------------------------------------


def test_limits_come_from_their_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAGOPS_MAX_PAGES", "7")
    monkeypatch.setenv("RAGOPS_MAX_TEXT_CHARS", "1000")
    monkeypatch.setenv("RAGOPS_MAX_INFLATED_BYTES", "2000")
    monkeypatch.setenv("RAGOPS_MAX_CHUNKS", "3")

    limits = IngestLimits.from_settings(Settings(_env_file=None))  # type: ignore[call-arg]

    assert limits == IngestLimits(
        max_pages=7, max_text_chars=1000, max_inflated_bytes=2000, max_chunks=3
    )


def test_default_limits_are_the_settings_defaults() -> None:
    assert IngestLimits.from_settings(Settings(_env_file=None)) == IngestLimits()  # type: ignore[call-arg]


@pytest.mark.parametrize(
    "name", ["max_pages", "max_text_chars", "max_inflated_bytes", "max_chunks"]
)
def test_a_limit_below_one_is_a_configuration_error(name: str) -> None:
    with pytest.raises(ValueError, match=name):
        Settings(**{name: 0}, _env_file=None)  # type: ignore[arg-type]


# --- pages ---------------------------------------------------------------------------


def test_a_pdf_at_the_page_limit_is_read_and_one_over_it_is_refused() -> None:
    limits = IngestLimits(max_pages=10)

    assert len(parse_document(plain_pages_pdf(10), "a.pdf", limits).sections) == 10
    with pytest.raises(LimitExceededError) as refused:
        parse_document(plain_pages_pdf(11), "a.pdf", limits)
    assert str(refused.value) == ("the PDF has 11 pages, over the 10-page limit (RAGOPS_MAX_PAGES)")


def test_a_huge_page_count_is_refused_before_any_page_is_read() -> None:
    data = plain_pages_pdf(50_000)

    result, seconds = timed(lambda: parse_document(data, "a.pdf"))

    assert isinstance(result, LimitExceededError)
    assert "50,000 pages, over the 2,000-page limit" in str(result)
    assert seconds < 5, seconds


@pytest.mark.parametrize("pages", [12, 50])
def test_a_page_tree_that_understates_its_count_is_still_refused(pages: int) -> None:
    data = plain_pages_pdf(pages, declared=1)

    with pytest.raises(LimitExceededError, match=r"RAGOPS_MAX_PAGES"):
        parse_document(data, "a.pdf", IngestLimits(max_pages=10))


# --- text ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["a.txt", "a.md"])
def test_text_at_the_character_limit_is_read_and_over_it_is_refused(name: str) -> None:
    limits = IngestLimits(max_text_chars=1000)

    assert parse_document(b"a" * 1000, name, limits).text_chars == 1000
    with pytest.raises(LimitExceededError) as refused:
        parse_document(b"a" * 1001, name, limits)
    assert str(refused.value) == (
        "the file's text is over the 1,000-character limit (RAGOPS_MAX_TEXT_CHARS)"
    )


def test_the_text_limit_counts_characters_not_bytes() -> None:
    text = "é" * 900  # 1,800 bytes in UTF-8, 1,800 in UTF-16
    limits = IngestLimits(max_text_chars=1000)

    assert parse_document(text.encode(), "a.txt", limits).text_chars == 900
    assert parse_document(text.encode("utf-16"), "b.txt", limits).text_chars == 900


def test_nul_bytes_do_not_count_towards_the_text_limit() -> None:
    data = b"ab\x00" * 400  # 1,200 bytes, 800 characters once the NULs go

    assert decode_text(data, max_chars=1000) == "ab" * 400


def test_an_oversized_one_line_file_is_refused_without_decoding_all_of_it() -> None:
    data = one_line(64 * MIB)  # over the 10,000,000-character default, in one line
    limit = IngestLimits().max_text_chars

    result, seconds = timed(lambda: parse_document(data, "line.txt"))
    _, peak = peak_memory(lambda: parse_document(data, "line.txt"))

    assert isinstance(result, LimitExceededError), result
    assert "RAGOPS_MAX_TEXT_CHARS" in str(result)
    # The decoded text stops at the limit: never a whole 64 MiB string, let alone several.
    assert peak < 2 * limit, f"peak {peak:,} bytes"
    assert seconds < 5, seconds


def test_html_counts_visible_text_not_markup() -> None:
    limits = IngestLimits(max_text_chars=1000)
    markup = '<div class="wrapper">' * 500 + "<p>Short visible text.</p>" + "</div>" * 500

    assert parse_document(markup.encode(), "a.html", limits).text_chars < 1000
    with pytest.raises(LimitExceededError, match="RAGOPS_MAX_TEXT_CHARS"):
        parse_document(f"<p>{'word ' * 300}</p>".encode(), "b.html", limits)


def test_deeply_nested_html_is_read_in_bounded_time() -> None:
    data = nested_html(200_000)

    result, seconds = timed(lambda: parse_document(data, "deep.html"))

    assert not isinstance(result, IngestError), result
    assert "upturned bills" in result.sections[0].text
    assert seconds < 10, seconds


def test_pdf_text_is_counted_page_by_page() -> None:
    data = text_pdf(["A" * 60] * 30)
    limits = IngestLimits(max_text_chars=1000)

    with pytest.raises(LimitExceededError, match="RAGOPS_MAX_TEXT_CHARS"):
        parse_document(data, "a.pdf", limits)
    assert len(parse_document(data, "a.pdf", IngestLimits(max_text_chars=1800)).sections) == 30


# --- decompression -------------------------------------------------------------------


def test_a_decompression_bomb_inflates_no_further_than_the_text_limit() -> None:
    data = bomb_pdf(256 * MIB)  # 256 MiB of spaces in a 256 KiB file
    limits = IngestLimits(max_text_chars=4 * MIB)

    result, seconds = timed(lambda: parse_document(data, "bomb.pdf", limits))
    _, peak = peak_memory(lambda: parse_document(data, "bomb.pdf", limits))

    assert isinstance(result, LimitExceededError), result
    assert str(result) == (
        "a compressed stream in the PDF inflates past the 4,194,304-byte limit for one "
        "stream (RAGOPS_MAX_TEXT_CHARS): a decompression bomb?"
    )
    assert peak < 4 * limits.max_text_chars, f"peak {peak:,} bytes"
    assert seconds < 5, seconds


def test_many_small_bombs_are_stopped_by_the_inflated_bytes_budget() -> None:
    data = spread_bomb_pdf(500, 2 * MIB)  # 1,000 MiB in all, 2 MiB a page
    limits = IngestLimits(max_inflated_bytes=8 * MIB)

    result, seconds = timed(lambda: parse_document(data, "bombs.pdf", limits))
    _, peak = peak_memory(lambda: parse_document(data, "bombs.pdf", limits))

    assert isinstance(result, LimitExceededError), result
    assert str(result) == (
        "the PDF's page contents inflate to over the 8,388,608-byte limit "
        "(RAGOPS_MAX_INFLATED_BYTES)"
    )
    # Each page's inflated streams are dropped once read: they never pile up.
    assert peak < 4 * 2 * MIB + 16 * MIB, f"peak {peak:,} bytes"
    assert seconds < 30, seconds


def test_a_pdf_within_the_inflated_budget_is_read_one_page_in_memory_at_a_time() -> None:
    data = spread_bomb_pdf(24, MIB, streams=24)
    limits = IngestLimits(max_inflated_bytes=32 * MIB)

    document, peak = peak_memory(lambda: parse_document(data, "a.pdf", limits))

    assert not isinstance(document, IngestError), document
    assert [s.text for s in document.sections] == [f"Page {n}" for n in range(24)]
    # 24 MiB inflated in all; pypdf would keep every page's copy for the reader's lifetime.
    assert peak < 8 * MIB, f"peak {peak:,} bytes"


def test_pdf_limits_do_not_leak_into_pypdf_elsewhere() -> None:
    before = get_configuration()

    with pytest.raises(LimitExceededError):
        parse_document(bomb_pdf(64 * MIB), "bomb.pdf", IngestLimits(max_text_chars=MIB))

    assert get_configuration() == before


def test_a_limit_error_is_not_reported_as_a_corrupt_file() -> None:
    with pytest.raises(LimitExceededError) as refused:
        parse_document(plain_pages_pdf(3), "a.pdf", IngestLimits(max_pages=2))
    assert not isinstance(refused.value, ParseError)
    assert "corrupt" not in str(refused.value)
