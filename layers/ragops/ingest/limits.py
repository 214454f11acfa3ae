"""Bounds on what one file may cost to ingest: pages, extracted text, inflated bytes, chunks.

Each bound is checked as early as it can be (the page count before any page is read, text
while it is extracted), so a hostile file is refused before it costs much time or memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ragops.errors import LimitExceededError

if TYPE_CHECKING:
    from ragops.settings import Settings


@dataclass(frozen=True)
class IngestLimits:
    max_pages: int = 2_000
    max_text_chars: int = 10_000_000
    max_inflated_bytes: int = 128 * 1024 * 1024
    max_chunks: int = 25_000

    @classmethod
    def from_settings(cls, settings: Settings) -> IngestLimits:
        return cls(
            max_pages=settings.max_pages,
            max_text_chars=settings.max_text_chars,
            max_inflated_bytes=settings.max_inflated_bytes,
            max_chunks=settings.max_chunks,
        )

    def text_budget(self) -> TextBudget:
        return TextBudget(self.max_text_chars)

    def inflate_budget(self) -> InflateBudget:
        return InflateBudget(self.max_inflated_bytes)


def check_page_count(pages: int, limit: int) -> None:
    if pages > limit:
        raise LimitExceededError(
            f"the PDF has {pages:,} pages, over the {limit:,}-page limit (RAGOPS_MAX_PAGES)"
        )


def check_chunk_count(chunks: int, limit: int | None, *, at_least: bool = False) -> None:
    """Refuse a document that makes more than `limit` chunks (`at_least`: a lower bound)."""
    if limit is not None and chunks > limit:
        count = f"at least {chunks:,}" if at_least else f"{chunks:,}"
        raise LimitExceededError(
            f"the text makes {count} chunks, over the {limit:,}-chunk limit (RAGOPS_MAX_CHUNKS)"
        )


class TextBudget:
    """Counts extracted characters and refuses the file once they pass the limit."""

    def __init__(self, limit: int):
        self.limit = limit
        self.used = 0

    def spend(self, chars: int) -> None:
        self.used += chars
        if self.used > self.limit:
            raise LimitExceededError(
                f"the file's text is over the {self.limit:,}-character limit "
                "(RAGOPS_MAX_TEXT_CHARS)"
            )


class InflateBudget:
    """Counts the bytes a PDF's compressed page contents inflate to, all pages together."""

    def __init__(self, limit: int):
        self.limit = limit
        self.used = 0

    def spend(self, size: int) -> None:
        self.used += size
        if self.used > self.limit:
            raise LimitExceededError(
                f"the PDF's page contents inflate to over the {self.limit:,}-byte limit "
                "(RAGOPS_MAX_INFLATED_BYTES)"
            )
