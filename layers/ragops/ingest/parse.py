"""Parsers for .txt, .md, .html and .pdf: bytes in, sections with headings and pages out."""

from __future__ import annotations

import codecs
import io
import re
from collections.abc import Callable, Iterator
from html.parser import HTMLParser
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

from ragops.errors import (
    EmptyDocumentError,
    LimitExceededError,
    ParseError,
    UnsupportedFileTypeError,
)
from ragops.ingest.document import ParsedDocument, Section
from ragops.ingest.limits import InflateBudget, IngestLimits, TextBudget, check_page_count
from ragops.ingest.text import decode_text

if TYPE_CHECKING:
    from pypdf import Configuration

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


def parse_document(data: bytes, name: str, limits: IngestLimits | None = None) -> ParsedDocument:
    """Parse `data` according to the extension of `name`, within `limits` (else the defaults)."""
    mime_type = mime_type_for(name)
    parser = _PARSERS[mime_type]
    document = parser(data, limits or IngestLimits())
    document.sections = [s for s in document.sections if s.text and not s.text.isspace()]
    if not document.sections:
        raise EmptyDocumentError("no text could be extracted from the file")
    if not document.title:
        document.title = PurePosixPath(name).stem
    return document


def parse_text(data: bytes, limits: IngestLimits) -> ParsedDocument:
    text = decode_text(data, max_chars=limits.max_text_chars)
    return ParsedDocument(title=None, mime_type="text/plain", sections=[Section(text)])


# A closing run of '#' counts only after a space: "# C#" is the heading "C#".
_ATX_HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.+?)(?:[ \t]+#+)?[ \t]*$")
_SETEXT_UNDERLINE = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(```|~~~)")


def parse_markdown(data: bytes, limits: IngestLimits) -> ParsedDocument:
    """Split on ATX and setext headings (outside code fences), keeping the heading path."""
    lines = decode_text(data, max_chars=limits.max_text_chars).split("\n")
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

    def __init__(self, budget: TextBudget) -> None:
        super().__init__(convert_charrefs=True)
        self._budget = budget
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
        # Markup is not text: only what is kept counts towards the limit.
        self._budget.spend(len(data))
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


def parse_html(data: bytes, limits: IngestLimits) -> ParsedDocument:
    text = decode_text(data, _declared_charset(data))
    parser = _VisibleText(limits.text_budget())
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


# Forms drawn inside forms: deeper ones are rare, and pypdf bounds them on its own.
MAX_FORM_DEPTH = 4


def parse_pdf(data: bytes, limits: IngestLimits) -> ParsedDocument:
    """One section per page, page numbers from 1."""
    from pypdf import PdfReader, apply_configuration
    from pypdf.errors import LimitReachedError, PdfReadError, PyPdfError

    if not data or data.isspace():
        raise EmptyDocumentError("the file is empty")
    try:
        with apply_configuration(_pypdf_configuration(limits)):
            reader = PdfReader(io.BytesIO(data), strict=False)
            if reader.is_encrypted and not reader.decrypt(""):
                raise ParseError("the PDF is encrypted with a password; upload an unencrypted copy")
            sections = list(_pdf_pages(reader, limits))
            title = _pdf_title(reader)
    except (ParseError, LimitExceededError):
        raise
    except LimitReachedError as exc:
        raise _pypdf_limit_error(exc, limits) from exc
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


def _pypdf_configuration(limits: IngestLimits) -> Configuration:
    """pypdf's own bounds, tightened to ours: no stream may inflate past the text limit, and
    the page tree may not hold more entries than the page limit allows (pages and the nodes
    above them, at most one node per page)."""
    from pypdf import get_configuration

    stream = min(limits.max_text_chars, limits.max_inflated_bytes)
    return get_configuration().with_overwrites(
        zlib_maximum_output_length=stream,
        lzw_maximum_output_length=stream,
        run_length_maximum_output_length=stream,
        brotli_maximum_output_length=stream,
        array_based_stream_maximum_output_length=stream,
        page_tree_maximum_entries=2 * limits.max_pages + 16,
    )


def _pypdf_limit_error(exc: Exception, limits: IngestLimits) -> LimitExceededError:
    if "decompress" in str(exc):
        stream = min(limits.max_text_chars, limits.max_inflated_bytes)
        return LimitExceededError(
            f"a compressed stream in the PDF inflates past the {stream:,}-byte limit for one "
            "stream (RAGOPS_MAX_TEXT_CHARS): a decompression bomb?"
        )
    if "page tree" in str(exc):
        return LimitExceededError(
            f"the PDF's page tree is larger than the {limits.max_pages:,}-page limit allows "
            "(RAGOPS_MAX_PAGES)"
        )
    return LimitExceededError(f"the PDF is over one of the parser's limits: {exc}")


def _pdf_pages(reader: Any, limits: IngestLimits) -> Iterator[Section]:
    """Each page's text, within the limits: the page count is checked before any page is
    read, text and inflated bytes as each page is."""
    declared = reader.root_object["/Pages"].get("/Count")
    declared = declared.get_object() if declared is not None else None
    if isinstance(declared, int):
        check_page_count(declared, limits.max_pages)  # before the page tree is walked
    check_page_count(len(reader.pages), limits.max_pages)  # /Count may understate
    text_budget = limits.text_budget()
    inflate_budget = limits.inflate_budget()
    for number, page in enumerate(reader.pages, start=1):
        text = (page.extract_text() or "").replace("\x00", "")
        _release_streams(page, inflate_budget)
        text_budget.spend(len(text))
        if text.strip():
            yield Section(_tidy_pdf_text(text), page=number)


def _release_streams(page: Any, budget: InflateBudget) -> None:
    """Count what the page's streams inflated to, then drop pypdf's decoded copies.

    pypdf keeps every decoded stream for the reader's lifetime; dropped, they cannot pile
    up page after page, and a stream shared by many pages counts (and costs) each time.
    """
    for stream in _page_streams(page):
        decoded = getattr(stream, "decoded_self", None)
        if decoded is not None:
            stream.decoded_self = None
            budget.spend(len(decoded.get_data()))


def _page_streams(page: Any) -> Iterator[Any]:
    """The page's content streams and those of the forms it draws."""
    contents = page.get("/Contents")
    contents = contents.get_object() if contents is not None else None
    if isinstance(contents, list):
        yield from (item.get_object() for item in contents)
    elif contents is not None:
        yield contents
    yield from _form_streams(page.get("/Resources"), depth=0)


def _form_streams(resources: Any, depth: int) -> Iterator[Any]:
    if resources is None or depth >= MAX_FORM_DEPTH:
        return
    xobjects = resources.get_object().get("/XObject")
    if xobjects is None:
        return
    for xobject in xobjects.get_object().values():
        form = xobject.get_object()
        if form.get("/Subtype") == "/Form":
            yield form
            yield from _form_streams(form.get("/Resources"), depth + 1)


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


_PARSERS: dict[str, Callable[[bytes, IngestLimits], ParsedDocument]] = {
    "text/plain": parse_text,
    "text/markdown": parse_markdown,
    "text/html": parse_html,
    "application/pdf": parse_pdf,
}
