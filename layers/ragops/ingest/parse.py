"""Parsers for .txt, .md, .html and .pdf: bytes in, sections with headings and pages out."""

from __future__ import annotations

import codecs
import io
import re
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import PurePosixPath

from ragops.errors import EmptyDocumentError, ParseError, UnsupportedFileTypeError
from ragops.ingest.document import ParsedDocument, Section
from ragops.ingest.text import decode_text

MIME_TYPES = {
    ".txt": "text/plain",
    ".text": "text/plain",
    ".md": "text/markdown",
    ".markdown": "text/markdown",
    ".html": "text/html",
    ".htm": "text/html",
    ".pdf": "application/pdf",
}


def mime_type_for(name: str) -> str:
    suffix = PurePosixPath(name).suffix.lower()
    try:
        return MIME_TYPES[suffix]
    except KeyError:
        supported = ", ".join(sorted(MIME_TYPES))
        raise UnsupportedFileTypeError(
            f"unsupported file type {suffix or '(no extension)'!r}; supported: {supported}"
        ) from None


def parse_document(data: bytes, name: str) -> ParsedDocument:
    """Parse `data` according to the extension of `name`."""
    mime_type = mime_type_for(name)
    parser: Callable[[bytes], ParsedDocument] = _PARSERS[mime_type]
    document = parser(data)
    document.sections = [s for s in document.sections if s.text.strip()]
    if not document.sections:
        raise EmptyDocumentError("no text could be extracted from the file")
    if not document.title:
        document.title = PurePosixPath(name).stem
    return document


def parse_text(data: bytes) -> ParsedDocument:
    text = decode_text(data)
    return ParsedDocument(title=None, mime_type="text/plain", sections=[Section(text)])


# A closing run of '#' counts only after a space: "# C#" is the heading "C#".
_ATX_HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.+?)(?:[ \t]+#+)?[ \t]*$")
_SETEXT_UNDERLINE = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(```|~~~)")


def parse_markdown(data: bytes) -> ParsedDocument:
    """Split on ATX and setext headings (outside code fences), keeping the heading path."""
    lines = decode_text(data).split("\n")
    sections: list[Section] = []
    path: list[tuple[int, str]] = []
    body: list[str] = []
    title: str | None = None
    in_fence = False

    def flush() -> None:
        text = "\n".join(body).strip()
        if text:
            sections.append(Section(text, " > ".join(t for _, t in path) or None))
        body.clear()

    def open_heading(level: int, text: str) -> None:
        nonlocal title
        flush()
        while path and path[-1][0] >= level:
            path.pop()
        path.append((level, text))
        if level == 1 and title is None:
            title = text

    skip_underline = False
    for index, line in enumerate(lines):
        if skip_underline:
            skip_underline = False
            continue
        if _FENCE.match(line):
            in_fence = not in_fence
        atx = None if in_fence else _ATX_HEADING.match(line)
        if atx:
            open_heading(len(atx[1]), atx[2].strip())
            continue
        next_line = lines[index + 1] if index + 1 < len(lines) else ""
        starts_paragraph = not body or not body[-1].strip()
        if (
            not in_fence
            and line.strip()
            and starts_paragraph
            and _SETEXT_UNDERLINE.match(next_line)
        ):
            open_heading(1 if next_line.strip().startswith("=") else 2, line.strip())
            skip_underline = True
            continue
        body.append(line)
    flush()
    return ParsedDocument(title=title, mime_type="text/markdown", sections=sections)


_BLOCK_TAGS = frozenset(
    {"p", "div", "br", "hr", "pre", "blockquote", "address", "details", "summary"}
    | {"article", "aside", "footer", "header", "main", "nav", "section", "form", "fieldset"}
    | {"ul", "ol", "li", "dl", "dt", "dd", "figure", "figcaption"}
    | {"table", "thead", "tbody", "tfoot", "tr", "th", "td"}
)
# Not <head>: HTML lets </head> be left out, which would hide the whole body; what <head>
# holds that is not visible (title, style, script) is hidden by its own tag.
_HIDDEN_TAGS = frozenset(
    {"script", "style", "noscript", "template", "svg", "title", "iframe", "object"}
)
_HEADINGS = {f"h{n}": n for n in range(1, 7)}
_WHITESPACE = re.compile(r"\s+")


class _VisibleText(HTMLParser):
    """Collects visible text into sections split at h1-h6."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.sections: list[Section] = []
        self.title: str | None = None
        self._path: list[tuple[int, str]] = []
        self._body: list[str] = []
        self._hidden_depth = 0
        self._heading_level = 0
        self._heading_text: list[str] = []
        self._in_title = False
        self._title_text: list[str] = []
        self._first_h1: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "title" and not self._hidden_depth:  # not an SVG icon's <title>
            self._in_title = True
        if tag in _HIDDEN_TAGS:
            self._hidden_depth += 1
        elif tag in _HEADINGS and not self._hidden_depth:
            self._flush()
            self._heading_level = _HEADINGS[tag]
            self._heading_text = []
        elif tag in _BLOCK_TAGS:
            self._body.append("\n\n")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _BLOCK_TAGS:
            self._body.append("\n\n")

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
        if tag in _HIDDEN_TAGS:
            self._hidden_depth = max(0, self._hidden_depth - 1)
        elif tag in _HEADINGS and self._heading_level:
            text = " ".join("".join(self._heading_text).split())
            level = self._heading_level
            self._heading_level = 0
            if text:
                if level == 1 and self._first_h1 is None:
                    self._first_h1 = text
                while self._path and self._path[-1][0] >= level:
                    self._path.pop()
                self._path.append((level, text))
        elif tag in _BLOCK_TAGS:
            self._body.append("\n\n")

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self._title_text.append(data)
        if self._hidden_depth:
            return
        if self._heading_level:
            self._heading_text.append(data)
        else:
            # Line breaks in the source are not paragraph breaks; only block tags are.
            self._body.append(_WHITESPACE.sub(" ", data))

    def _flush(self) -> None:
        paragraphs = ["".join(p).strip() for p in "".join(self._body).split("\n\n")]
        text = "\n\n".join(" ".join(p.split()) for p in paragraphs if p.strip())
        if text:
            heading = " > ".join(t for _, t in self._path) or None
            self.sections.append(Section(text, heading))
        self._body = []

    def finish(self) -> None:
        self.close()
        self._flush()
        title = " ".join("".join(self._title_text).split())
        self.title = title or self._first_h1


_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?([A-Za-z0-9_\-]+)""", re.IGNORECASE)


def parse_html(data: bytes) -> ParsedDocument:
    text = decode_text(data, _declared_charset(data))
    parser = _VisibleText()
    try:
        parser.feed(text)
        parser.finish()
    except (AssertionError, RecursionError) as exc:  # malformed markup the parser rejects
        raise ParseError(f"malformed HTML: {exc}") from exc
    return ParsedDocument(title=parser.title, mime_type="text/html", sections=parser.sections)


def _declared_charset(data: bytes) -> str | None:
    """The meta charset, read as browsers do (WHATWG Encoding Standard)."""
    declared = _META_CHARSET.search(data[:4096])
    if not declared:
        return None
    label = declared[1].decode("ascii")
    try:
        name = codecs.lookup(label).name
    except LookupError:
        return None
    if name.startswith(("utf-16", "utf-32")):
        return None  # the tag was just read as ASCII bytes, so the page is not UTF-16
    if name == "iso8859-1":
        return "cp1252"  # pages labelled Latin-1 use cp1252's quotes and dashes
    return label


def parse_pdf(data: bytes) -> ParsedDocument:
    """One section per page, page numbers from 1."""
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError, PyPdfError

    if not data.strip():
        raise EmptyDocumentError("the file is empty")
    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        if reader.is_encrypted and not reader.decrypt(""):
            raise ParseError("the PDF is encrypted with a password; upload an unencrypted copy")
        sections = []
        for number, page in enumerate(reader.pages, start=1):
            text = (page.extract_text() or "").replace("\x00", "")
            if text.strip():
                sections.append(Section(_tidy_pdf_text(text), page=number))
        title = _pdf_title(reader)
    except ParseError:
        raise
    # Besides its own errors, pypdf lets these escape on damaged files: AttributeError for a
    # trailer that is not a dictionary, RecursionError for absurd nesting, AssertionError.
    except (
        PdfReadError,
        PyPdfError,
        ValueError,
        KeyError,
        TypeError,
        OSError,
        AttributeError,
        AssertionError,
        RecursionError,
    ) as exc:
        raise ParseError(f"corrupt or unreadable PDF: {exc or type(exc).__name__}") from exc
    except NotImplementedError as exc:
        raise ParseError(f"unsupported PDF feature: {exc}") from exc
    if not sections:
        raise EmptyDocumentError(
            "the PDF has no extractable text (scanned images?); run OCR on it first"
        )
    return ParsedDocument(title=title, mime_type="application/pdf", sections=sections)


def _pdf_title(reader: object) -> str | None:
    try:
        metadata = reader.metadata  # type: ignore[attr-defined]
    except Exception:  # metadata is optional; a broken info dict must not fail the file
        return None
    title = getattr(metadata, "title", None) if metadata else None
    return str(title).strip() or None if title else None


def _tidy_pdf_text(text: str) -> str:
    # Rejoin words hyphenated across line breaks; keep paragraph breaks.
    text = re.sub(r"(\w)-\n(\w)", r"\1\2", text)
    return re.sub(r"[ \t]+", " ", text).strip()


_PARSERS: dict[str, Callable[[bytes], ParsedDocument]] = {
    "text/plain": parse_text,
    "text/markdown": parse_markdown,
    "text/html": parse_html,
    "application/pdf": parse_pdf,
}
