"""The ingest corpus: real prose found offline in installed packages, copied to a folder.

Sources, in this order: the long descriptions in `*.dist-info/METADATA` files (Markdown
or reST package READMEs), then the .md and .rst documents shipped inside site-packages.
Nothing is downloaded. reST becomes .txt (ragops has no reST parser), Markdown stays .md.
"""

from __future__ import annotations

import hashlib
import re
import sysconfig
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email.parser import HeaderParser
from pathlib import Path

from ragops.errors import IngestError
from ragops.ingest.chunk import ChunkingPolicy, WordPieceCounter, chunk_sections
from ragops.ingest.document import Chunk
from ragops.ingest.parse import parse_document
from ragops.models.manifest import read_manifest
from ragops.models.runtime import load_tokenizer
from ragops.settings import Settings

# Too short to be prose worth chunking (a one-line description).
MIN_TEXT_CHARS = 600
# Generated type-stub packages repeat one boilerplate README dozens of times.
_BOILERPLATE = re.compile(r"^(mypy_boto3_|types_|boto3_stubs|botocore_stubs)")
_NOT_PROSE = re.compile(r"licen[cs]e|copying|notice|authors|{{", re.IGNORECASE)


@dataclass(frozen=True)
class CorpusInfo:
    folder: Path
    files: int
    bytes: int
    chunks: int
    word_pieces: int
    sources: str

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
        }


def build_corpus(
    folder: Path, min_chunks: int, model_dir: Path, site_packages: Path | None = None
) -> CorpusInfo:
    """Copy documents into `folder` until they make at least `min_chunks` ragops chunks.

    Chunks are counted with ragops' own parser and chunker under the default settings,
    so the count is what ingest will store.
    """
    site_packages = site_packages or Path(sysconfig.get_paths()["purelib"])
    folder.mkdir(parents=True, exist_ok=True)
    chunk_document = _chunker(model_dir)
    files = total_bytes = chunks = word_pieces = 0
    seen: set[str] = set()
    for name, text in _documents(site_packages):
        digest = hashlib.sha256(text.encode()).hexdigest()
        if digest in seen:
            continue
        data = text.encode()
        try:
            doc_chunks = chunk_document(data, name)
        except IngestError:
            continue
        seen.add(digest)
        (folder / name).write_bytes(data)
        files += 1
        total_bytes += len(data)
        chunks += len(doc_chunks)
        word_pieces += sum(chunk.token_count for chunk in doc_chunks)
        if chunks >= min_chunks:
            break
    if chunks < min_chunks:
        raise RuntimeError(
            f"only {chunks} chunks of text found under {site_packages}; asked for {min_chunks}"
        )
    return CorpusInfo(
        folder=folder,
        files=files,
        bytes=total_bytes,
        chunks=chunks,
        word_pieces=word_pieces,
        sources=f"package READMEs (*.dist-info/METADATA) and .md/.rst docs in {site_packages}",
    )


def _chunker(model_dir: Path) -> Callable[[bytes, str], list[Chunk]]:
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
