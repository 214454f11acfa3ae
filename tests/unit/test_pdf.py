from __future__ import annotations

import io
import random

import pytest
from pypdf import PdfReader
from tests.pdf_samples import blank_pdf, encrypted_pdf, text_pdf

from ragops.errors import EmptyDocumentError, ParseError
from ragops.ingest.parse import parse_document


def test_sample_pdf_is_valid_for_a_strict_reader() -> None:
    reader = PdfReader(io.BytesIO(text_pdf(["One (1) \\ café", "Two"], title="T")), strict=True)
    assert [page.extract_text() for page in reader.pages] == ["One (1) \\ café", "Two"]
    assert reader.metadata is not None
    assert reader.metadata.title == "T"


def test_sample_pdf_xref_offsets_point_at_their_objects() -> None:
    data = text_pdf(["a", "b"], title="T")
    xref_at = int(data.rsplit(b"startxref\n", 1)[1].split(b"\n", 1)[0])
    lines = data[xref_at:].split(b"\n")
    assert lines[0] == b"xref"
    size = int(lines[1].split()[1])
    assert lines[2] == b"0000000000 65535 f "
    for number, entry in enumerate(lines[3 : 2 + size], start=1):
        assert len(entry) == 19  # 20 bytes with its end of line, as the format requires
        assert data[int(entry[:10]) :].startswith(b"%d 0 obj" % number)


def test_each_page_is_a_section_numbered_from_one() -> None:
    data = text_pdf(["First page text.", "Second page, second line.", "Third: café €."])
    document = parse_document(data, "report.pdf")
    assert document.mime_type == "application/pdf"
    assert [(s.page, s.text, s.heading) for s in document.sections] == [
        (1, "First page text.", None),
        (2, "Second page, second line.", None),
        (3, "Third: café €.", None),
    ]


def test_lines_of_a_page_are_kept_in_order() -> None:
    document = parse_document(text_pdf(["Line one\nLine two\nLine three"]), "a.pdf")
    assert document.sections[0].text == "Line one\nLine two\nLine three"


def test_words_hyphenated_across_lines_are_rejoined() -> None:
    document = parse_document(text_pdf(["An extra-\nordinary result"]), "a.pdf")
    assert document.sections[0].text == "An extraordinary result"


def test_blank_pages_are_skipped_but_keep_page_numbers() -> None:
    document = parse_document(text_pdf(["", "Only page two has text.", " "]), "a.pdf")
    assert [(s.page, s.text) for s in document.sections] == [(2, "Only page two has text.")]


def test_pdf_title_comes_from_metadata() -> None:
    assert parse_document(text_pdf(["Body."], title="Annual Report"), "x.pdf").title == (
        "Annual Report"
    )


def test_pdf_without_metadata_title_is_named_after_the_file() -> None:
    assert parse_document(text_pdf(["Body."]), "scans/q3-results.pdf").title == "q3-results"


@pytest.mark.parametrize("pages", [1, 3])
def test_pdf_without_text_asks_for_ocr(pages: int) -> None:
    with pytest.raises(EmptyDocumentError, match="OCR"):
        parse_document(blank_pdf(pages), "scan.pdf")


def test_empty_file_named_pdf_is_empty_document() -> None:
    with pytest.raises(EmptyDocumentError):
        parse_document(b"", "a.pdf")


@pytest.mark.parametrize("keep", [0.25, 0.5, 0.75])
def test_truncated_pdf_is_corrupt(keep: float) -> None:
    data = text_pdf(["Page one text.", "Page two text."])
    with pytest.raises(ParseError, match=r"^corrupt"):
        parse_document(data[: int(len(data) * keep)], "a.pdf")


@pytest.mark.parametrize("seed", range(8))
def test_garbage_after_a_pdf_header_is_corrupt(seed: int) -> None:
    data = b"%PDF-1.7\n" + random.Random(seed).randbytes(4096)
    with pytest.raises(ParseError, match=r"^corrupt"):
        parse_document(data, "a.pdf")


@pytest.mark.parametrize(
    ("old", "new"),
    [
        # pypdf raises AttributeError for a trailer that is not a dictionary...
        (b"trailer\n<<", b"trailer\n/Oops <<"),
        # ...RecursionError for absurdly nested arrays...
        (b"trailer\n<<", b"trailer\n" + b"[" * 5000),
        # ...and AssertionError for an object reference inside a content stream.
        (b"72 720 Td", b"1 0 R Td "),
    ],
    ids=["trailer-not-a-dict", "deeply-nested", "reference-in-content"],
)
def test_damaged_pdf_is_corrupt_not_a_crash(old: bytes, new: bytes) -> None:
    data = text_pdf(["Some text."])
    assert old in data
    with pytest.raises(ParseError, match=r"^corrupt"):
        parse_document(data.replace(old, new), "a.pdf")


def test_encrypted_pdf_asks_for_an_unencrypted_copy() -> None:
    with pytest.raises(ParseError, match="password"):
        parse_document(encrypted_pdf("s3cret", ["Confidential text."]), "secret.pdf")


def test_encrypted_sample_opens_with_its_password() -> None:
    reader = PdfReader(io.BytesIO(encrypted_pdf("s3cret", ["Confidential text."])))
    assert reader.is_encrypted
    assert reader.decrypt("s3cret")
    assert reader.pages[0].extract_text() == "Confidential text."


def test_pdf_encrypted_with_an_empty_user_password_is_read() -> None:
    document = parse_document(encrypted_pdf("", ["Readable by anyone."]), "open.pdf")
    assert [(s.page, s.text) for s in document.sections] == [(1, "Readable by anyone.")]
