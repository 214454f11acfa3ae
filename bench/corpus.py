"""The ingest corpus: real prose found offline in installed packages, written to a folder.

Sources, in this order: the long descriptions in `*.dist-info/METADATA` files (Markdown
or reST package READMEs), then the .md and .rst documents shipped inside site-packages.
Nothing is downloaded. reST becomes .txt (ragops has no reST parser), Markdown stays .md.
A mixed corpus renders every third document to HTML and every third to PDF instead, so
ingest parses all four formats ragops reads.
"""

from __future__ import annotations

import hashlib
import html
import re
import sys
import sysconfig
import textwrap
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from email.parser import HeaderParser
from pathlib import Path

from ragops.errors import IngestError
from ragops.ingest.chunk import ChunkingPolicy, WordPieceCounter, chunk_sections
from ragops.ingest.document import Chunk
from ragops.ingest.parse import parse_document
from ragops.models.manifest import read_manifest
from ragops.models.runtime import load_tokenizer
from ragops.settings import Settings

# The test suite's hand-made PDF writer: ragops reads PDFs but has nothing that writes one.
sys.path.append(str(Path(__file__).resolve().parents[1]))
from tests.pdf_samples import text_pdf

# Too short to be prose worth chunking (a one-line description).
MIN_TEXT_CHARS = 600
# Generated type-stub packages repeat one boilerplate README dozens of times.
_BOILERPLATE = re.compile(r"^(mypy_boto3_|types_|boto3_stubs|botocore_stubs)")
_NOT_PROSE = re.compile(r"licen[cs]e|copying|notice|authors|{{", re.IGNORECASE)
_MARKDOWN_HEADING = re.compile(r"^(#{1,6})\s+(.+?)[\s#]*$")
# Helvetica 12 pt on a US Letter page with inch margins: about this many characters a
# line, and lines of 14 pt from the top margin to the bottom one.
PDF_LINE_CHARS = 90
PDF_PAGE_LINES = 46
Document = tuple[str, str]  # (file name, text)
Rendering = Callable[[str, str], tuple[str, bytes]]


@dataclass
class FormatCount:
    files: int = 0
    bytes: int = 0
    chunks: int = 0


@dataclass(frozen=True)
class CorpusInfo:
    folder: Path
    files: int
    bytes: int
    chunks: int
    word_pieces: int
    sources: str
    formats: dict[str, FormatCount] = field(default_factory=dict)

    @property
    def megabytes(self) -> float:
        return self.bytes / 1e6

    def to_json(self) -> dict[str, object]:
        return {
            "folder": str(self.folder),
            "files": self.files,
            "bytes": self.bytes,
            "megabytes": round(self.megabytes, 3),
            "chunks": self.chunks,
            "word_pieces_per_chunk": round(self.word_pieces / max(self.chunks, 1), 1),
            "sources": self.sources,
            "formats": {suffix: vars(count) for suffix, count in self.formats.items()},
        }


def build_corpus(
    folder: Path,
    min_chunks: int,
    model_dir: Path,
    site_packages: Path | None = None,
    mixed: bool = False,
) -> CorpusInfo:
    """Write documents into `folder` until they make at least `min_chunks` ragops chunks.

    Chunks are counted with ragops' own parser and chunker under the default settings,
    so the count is what ingest will store. `mixed` writes a third of the documents as
    found (.md, .txt), a third as HTML and a third as PDF, in turn.
    """
    site_packages = site_packages or Path(sysconfig.get_paths()["purelib"])
    folder.mkdir(parents=True, exist_ok=True)
    chunk_document = chunker(model_dir)
    renderings: tuple[Rendering, ...] = (_as_found, _as_html, _as_pdf) if mixed else (_as_found,)
    formats: dict[str, FormatCount] = {}
    written: set[str] = set()
    chunks = word_pieces = 0
    for name, text in _distinct(_documents(site_packages)):
        file_name, data = renderings[len(written) % len(renderings)](name, text)
        if file_name in written:  # two sources that differ only in their suffix
            continue
        try:
            doc_chunks = chunk_document(data, file_name)
        except IngestError:
            continue
        (folder / file_name).write_bytes(data)
        written.add(file_name)
        count = formats.setdefault(file_name.rpartition(".")[2], FormatCount())
        count.files += 1
        count.bytes += len(data)
        count.chunks += len(doc_chunks)
        chunks += len(doc_chunks)
        word_pieces += sum(chunk.token_count for chunk in doc_chunks)
        if chunks >= min_chunks:
            break
    if chunks < min_chunks:
        raise RuntimeError(
            f"only {chunks} chunks of text found under {site_packages}; asked for {min_chunks}"
        )
    sources = f"package READMEs (*.dist-info/METADATA) and .md/.rst docs in {site_packages}"
    if mixed:
        sources += ", every third rendered to HTML and every third to PDF"
    return CorpusInfo(
        folder=folder,
        files=len(written),
        bytes=sum(count.bytes for count in formats.values()),
        chunks=chunks,
        word_pieces=word_pieces,
        sources=sources,
        formats=dict(sorted(formats.items())),
    )


def chunker(model_dir: Path) -> Callable[[bytes, str], list[Chunk]]:
    """ragops' own parse and chunk, with the default chunking settings."""
    manifest = read_manifest(model_dir)
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    counter = WordPieceCounter(load_tokenizer(model_dir, manifest.embedder.tokenizer))
    policy = ChunkingPolicy(
        chunk_tokens=settings.chunk_tokens,
        overlap_tokens=settings.chunk_overlap,
        max_tokens=manifest.embedder.max_seq_length,
    )

    def chunk(data: bytes, name: str) -> list[Chunk]:
        return chunk_sections(parse_document(data, name).sections, counter, policy)

    return chunk


def _documents(site_packages: Path) -> Iterator[tuple[str, str]]:
    """(file name, text) of every usable document, in a stable order."""
    for metadata in sorted(site_packages.glob("*.dist-info/METADATA")):
        dist = metadata.parent.name.removesuffix(".dist-info")
        if _BOILERPLATE.match(dist):
            continue
        found = _long_description(metadata)
        if found is not None:
            text, markdown = found
            yield f"{dist}.{'md' if markdown else 'txt'}", text
    docs = [*site_packages.rglob("*.md"), *site_packages.rglob("*.rst")]
    for doc in sorted(docs):
        if _NOT_PROSE.search(str(doc.relative_to(site_packages))):
            continue
        text = _read_prose(doc)
        if text is not None:
            stem = "--".join(doc.relative_to(site_packages).with_suffix("").parts)
            yield f"{stem}.{'md' if doc.suffix == '.md' else 'txt'}", text


def _distinct(documents: Iterable[Document]) -> Iterator[Document]:
    """Each text once: packages vendor the same README under several names."""
    seen: set[str] = set()
    for name, text in documents:
        digest = hashlib.sha256(text.encode()).hexdigest()
        if digest not in seen:
            seen.add(digest)
            yield name, text


def _as_found(name: str, text: str) -> tuple[str, bytes]:
    return name, text.encode()


def _as_html(name: str, text: str) -> tuple[str, bytes]:
    stem, _, suffix = name.rpartition(".")
    return f"{stem}.html", html_page(stem, text, markdown=suffix == "md").encode()


def _as_pdf(name: str, text: str) -> tuple[str, bytes]:
    stem = name.rpartition(".")[0]
    return f"{stem}.pdf", text_pdf(pdf_pages(text), title=stem)


def html_page(title: str, text: str, markdown: bool) -> str:
    """The text as an HTML page: paragraphs as <p>; in Markdown, headings as <h1>-<h6> and
    fenced code as <pre>."""
    body: list[str] = []
    block: list[str] = []
    in_code = False

    def end_block(tag: str) -> None:
        if block:
            joined = "\n".join(block) if tag == "pre" else " ".join(block)
            body.append(f"<{tag}>{html.escape(joined)}</{tag}>")
            block.clear()

    for line in text.splitlines():
        heading = _MARKDOWN_HEADING.match(line) if markdown and not in_code else None
        if markdown and line.lstrip().startswith("```"):
            end_block("pre" if in_code else "p")
            in_code = not in_code
        elif in_code:
            block.append(line)
        elif heading:
            end_block("p")
            level = len(heading[1])
            body.append(f"<h{level}>{html.escape(heading[2])}</h{level}>")
        elif line.strip():
            block.append(line.strip())
        else:
            end_block("p")
    end_block("pre" if in_code else "p")
    head = f'<meta charset="utf-8"><title>{html.escape(title)}</title>'
    page = "\n".join([f"<!DOCTYPE html>\n<html><head>{head}</head><body>", *body])
    return page + "\n</body></html>\n"


def pdf_pages(text: str) -> list[str]:
    """The text wrapped into PDF lines and pages, in the characters Helvetica can show."""
    lines: list[str] = []
    for line in text.splitlines():
        lines += textwrap.wrap(line, PDF_LINE_CHARS) or [""]
    shown = [line.encode("cp1252", errors="replace").decode("cp1252") for line in lines]
    return [
        "\n".join(shown[start : start + PDF_PAGE_LINES])
        for start in range(0, len(shown), PDF_PAGE_LINES)
    ]


def _long_description(metadata: Path) -> tuple[str, bool] | None:
    raw = metadata.read_text(encoding="utf-8", errors="replace")
    headers = HeaderParser().parsestr(raw, headersonly=True)
    _, _, body = raw.partition("\n\n")
    body = body.strip() or str(headers.get("Description") or "").strip()
    if len(body) < MIN_TEXT_CHARS:
        return None
    content_type = str(headers.get("Description-Content-Type") or "").lower()
    return body + "\n", "markdown" in content_type


def _read_prose(path: Path) -> str | None:
    if not path.is_file():
        return None
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    return text if len(text) >= MIN_TEXT_CHARS else None
