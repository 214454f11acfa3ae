"""Real PDF files built by hand, so tests need no binary fixtures.

Each page is one content stream that draws its lines in Helvetica (WinAnsiEncoding)
with BT/Tf/Td/Tj/ET; the cross-reference table holds the true byte offsets.
"""

from __future__ import annotations

import io

_LINE_HEIGHT = 14


def text_pdf(pages: list[str], title: str | None = None) -> bytes:
    """A PDF with one page per string; newlines in a string start new lines of text."""
    return _pdf([_content_stream(text) for text in pages], title)


def blank_pdf(pages: int = 1) -> bytes:
    """A valid PDF whose pages draw nothing: what a scan without OCR looks like to a parser."""
    return _pdf([b""] * pages, None)


def encrypted_pdf(password: str, pages: list[str] | None = None) -> bytes:
    """A text PDF that opens only with `password` (the user password)."""
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(text_pdf(pages or ["Top secret."]))))
    writer.encrypt(user_password=password, owner_password=f"{password}-owner")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def _content_stream(text: str) -> bytes:
    lines = text.split("\n")
    ops = [b"BT", b"/F1 12 Tf", b"72 720 Td"]
    for index, line in enumerate(lines):
        if index:
            ops.append(b"0 -%d Td" % _LINE_HEIGHT)
        ops.append(b"(" + _pdf_string(line) + b") Tj")
    ops.append(b"ET")
    return b"\n".join(ops)


def _pdf_string(text: str) -> bytes:
    # Literal strings: escape the delimiters, write non-ASCII bytes as octal escapes.
    out = bytearray()
    for byte in text.encode("cp1252"):
        if byte in b"()\\":
            out += b"\\" + bytes([byte])
        elif 32 <= byte < 127:
            out.append(byte)
        else:
            out += b"\\%03o" % byte
    return bytes(out)


def _pdf(streams: list[bytes], title: str | None) -> bytes:
    # Objects: 1 catalog, 2 page tree, 3 font, then a page and its content per page,
    # then the info dictionary if there is a title.
    page_ids = [4 + 2 * n for n in range(len(streams))]
    objects: list[bytes] = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [%s] /Count %d >>"
        % (b" ".join(b"%d 0 R" % i for i in page_ids), len(streams)),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
    ]
    for page_id, stream in zip(page_ids, streams, strict=True):
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
            b"/Resources << /Font << /F1 3 0 R >> >> /Contents %d 0 R >>" % (page_id + 1)
        )
        objects.append(b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream))
    trailer_info = b""
    if title is not None:
        objects.append(b"<< /Title (%s) >>" % _pdf_string(title))
        trailer_info = b" /Info %d 0 R" % len(objects)
    return pdf_from_objects(objects, trailer_info)


def pdf_from_objects(objects: list[bytes], trailer_extra: bytes = b"") -> bytes:
    """A PDF of `objects` (object 1 the catalog) with a true cross-reference table."""
    out = bytearray(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref_at = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for offset in offsets:
        out += b"%010d 00000 n \n" % offset
    out += b"trailer\n<< /Size %d /Root 1 0 R%s >>\n" % (len(objects) + 1, trailer_extra)
    out += b"startxref\n%d\n%%%%EOF\n" % xref_at
    return bytes(out)
