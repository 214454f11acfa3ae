"""Hostile files built on the fly (nothing binary is committed): damaged and encrypted PDFs,
PDFs with absurd page counts or decompression bombs, deep HTML, bad encodings, NUL bytes.

Each entry says what ingest must do with it: refuse it with a reason containing `reason`,
or ingest it so that `phrase` is found by a lexical search.
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Callable
from dataclasses import dataclass

from tests.pdf_samples import encrypted_pdf, pdf_from_objects, text_pdf

MIB = 1024 * 1024


@dataclass(frozen=True)
class Hostile:
    name: str
    build: Callable[[], bytes]
    reason: str | None = None  # refused, with this in the reason; None: ingested
    phrase: str | None = None  # ingested: a lexical search for it finds the file

    @property
    def refused(self) -> bool:
        return self.reason is not None


def flate_stream(prefix: bytes, padding: int) -> bytes:
    """A FlateDecode stream object: `prefix`, then `padding` spaces, compressed in slices
    so that not even the test holds the inflated bytes."""
    compressor = zlib.compressobj(9)
    body = bytearray(compressor.compress(prefix))
    block = b" " * MIB
    for start in range(0, padding, MIB):
        body += compressor.compress(block[: min(MIB, padding - start)])
    body += compressor.flush()
    return b"<< /Length %d /Filter /FlateDecode >>\nstream\n%s\nendstream" % (len(body), body)


def pages_pdf(pages: int, contents: list[bytes], declared: int | None = None) -> bytes:
    """`pages` pages drawing the content stream objects `contents` in turn (shared, so a
    large page count stays a small file); the page tree's /Count says `declared`."""
    font = b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>"
    first_stream = 4
    first_page = first_stream + len(contents)
    kids = b" ".join(b"%d 0 R" % (first_page + n) for n in range(pages))
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [%s] /Count %d >>"
        % (kids, pages if declared is None else declared),
        font,
        *contents,
    ]
    for n in range(pages):
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
            b"/Resources << /Font << /F1 3 0 R >> >> /Contents %d 0 R >>"
            % (first_stream + n % len(contents))
        )
    return pdf_from_objects(objects)


def _drawn(text: str) -> bytes:
    return b"BT /F1 12 Tf 72 720 Td (%s) Tj ET\n" % text.encode("ascii")


def bomb_pdf(inflated: int) -> bytes:
    """One page whose content stream inflates to `inflated` bytes (about 1,000 to 1)."""
    return pages_pdf(1, [flate_stream(_drawn("Boom"), inflated)])


def spread_bomb_pdf(pages: int, per_page: int, streams: int = 4) -> bytes:
    """Many pages, each inflating to `per_page` bytes: no one stream is large, the sum is.
    The pages take turns with `streams` distinct content streams."""
    contents = [flate_stream(_drawn(f"Page {n}"), per_page) for n in range(streams)]
    return pages_pdf(pages, contents)


def plain_pages_pdf(pages: int, declared: int | None = None) -> bytes:
    stream = _drawn("Nothing to see")
    return pages_pdf(
        pages, [b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream)], declared
    )


def nested_html(depth: int) -> bytes:
    body = "<div>" * depth + "<p>Avocets sweep their upturned bills through the mud.</p>"
    return f"<html><body>{body}{'</div>' * depth}</body></html>".encode()


def truncated_pdf() -> bytes:
    data = text_pdf(["Page one text.", "Page two text."])
    return data[: len(data) // 2]


def malformed_pdf() -> bytes:
    return b"%PDF-1.7\n" + random.Random(11).randbytes(8192)


def invalid_utf8() -> bytes:
    text = "Turnstones flip pebbles on the beach to find sandhoppers. "
    return text.encode() * 3 + b"\xc3\x28 \xa0\xa1 \xff broken bytes. " + text.encode()


def utf16_without_bom() -> bytes:
    text = "Guillemots lay pear-shaped eggs on bare cliff ledges — café, naïve.\n" * 20
    return text.encode("utf-16-le")


def nul_bytes() -> bytes:
    return b"Oyster\x00catchers probe the sand\x00 for cockles and mussels.\n" * 10


def one_line(size: int) -> bytes:
    """`size` bytes of words and no line break."""
    line = b"kittiwakes wheel above the harbour wall "
    return line * (size // len(line)) + b"x" * (size % len(line))


CORPUS: list[Hostile] = [
    Hostile("truncated.pdf", truncated_pdf, reason="corrupt or unreadable PDF"),
    Hostile("encrypted.pdf", lambda: encrypted_pdf("s3cret"), reason="encrypted with a password"),
    Hostile("malformed.pdf", malformed_pdf, reason="corrupt or unreadable PDF"),
    Hostile(
        "many-pages.pdf",
        lambda: plain_pages_pdf(50_000),
        reason="50,000 pages, over the 2,000-page limit (RAGOPS_MAX_PAGES)",
    ),
    Hostile(
        "understated-pages.pdf",
        lambda: plain_pages_pdf(5_000, declared=1),
        reason="page tree is larger than the 2,000-page limit allows (RAGOPS_MAX_PAGES)",
    ),
    Hostile(
        "bomb.pdf",
        lambda: bomb_pdf(1024 * MIB),
        reason="inflates past the 10,000,000-byte limit for one stream",
    ),
    Hostile(
        "spread-bomb.pdf",
        lambda: spread_bomb_pdf(200, 8 * MIB),
        reason="page contents inflate to over the",
    ),
    Hostile("nested.html", lambda: nested_html(100_000), phrase="avocets"),
    Hostile("zero-bytes.txt", lambda: b"", reason="the file is empty"),
    Hostile("zero-bytes.pdf", lambda: b"", reason="the file is empty"),
    Hostile("invalid-utf8.txt", invalid_utf8, phrase="turnstones"),
    Hostile("utf16-no-bom.txt", utf16_without_bom, phrase="guillemots"),
    Hostile("nul-bytes.txt", nul_bytes, phrase="cockles"),
    Hostile("only-nuls.txt", lambda: bytes(4096), reason="the file holds no text"),
    Hostile(
        "one-line-100mb.txt",
        lambda: one_line(100 * MIB),
        reason="over the 52,428,800-byte limit (RAGOPS_MAX_FILE_BYTES)",
    ),
    Hostile(
        "one-line-12mb.md",
        lambda: one_line(12 * MIB),
        reason="text is over the 10,000,000-character limit (RAGOPS_MAX_TEXT_CHARS)",
    ),
    Hostile("name with spaces.md", lambda: b"# Shags\n\nShags dry their wings.", phrase="shags"),
    Hostile("ünïcödé ☃ 日本.md", lambda: b"# Terns\n\nArctic terns fly far.", phrase="terns"),
]
