"""What parsing produces and chunking consumes."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Section:
    """A run of text under one heading (and on one page, for PDFs)."""

    text: str
    heading: str | None = None
    page: int | None = None


@dataclass
class ParsedDocument:
    title: str | None
    mime_type: str
    sections: list[Section] = field(default_factory=list)

    @property
    def text_chars(self) -> int:
        return sum(len(s.text) for s in self.sections)


@dataclass(frozen=True)
class Chunk:
    ordinal: int
    content: str
    token_count: int
    heading: str | None = None
    page: int | None = None
    # The embedding text's word pieces, when the chunker has them: embedded as they are.
    pieces: list[int] | None = field(default=None, repr=False, compare=False)

    @property
    def embedding_text(self) -> str:
        return embedding_text(self.heading, self.content)


def embedding_text(heading: str | None, content: str) -> str:
    """The text a chunk is embedded as: its heading gives the passage its context."""
    return f"{heading}\n{content}" if heading else content
