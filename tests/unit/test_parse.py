from __future__ import annotations

import pytest

from ragops.errors import EmptyDocumentError, UnsupportedFileTypeError
from ragops.ingest.parse import MIME_TYPES, parse_document


def test_plain_text_is_one_untitled_section_named_after_the_file() -> None:
    document = parse_document(b"First paragraph.\n\nSecond paragraph.\n", "notes/todo.txt")
    assert document.mime_type == "text/plain"
    assert document.title == "todo"
    assert [(s.text, s.heading, s.page) for s in document.sections] == [
        ("First paragraph.\n\nSecond paragraph.\n", None, None)
    ]


def test_plain_text_in_latin1_decodes() -> None:
    document = parse_document("Un café, s'il vous plaît.".encode("latin-1"), "menu.txt")
    assert document.sections[0].text == "Un café, s'il vous plaît."


@pytest.mark.parametrize(
    ("name", "mime_type"),
    [
        ("a.TXT", "text/plain"),
        ("a.text", "text/plain"),
        ("a.Md", "text/markdown"),
        ("a.markdown", "text/markdown"),
        ("a.HTM", "text/html"),
        ("a.html", "text/html"),
    ],
)
def test_extension_picks_the_parser_case_insensitively(name: str, mime_type: str) -> None:
    assert parse_document(b"hello", name).mime_type == mime_type


@pytest.mark.parametrize(
    ("name", "shown"),
    [("report.docx", "'.docx'"), ("archive.tar.gz", "'.gz'"), ("Makefile", "(no extension)")],
)
def test_unsupported_extension_names_it_and_lists_supported_ones(name: str, shown: str) -> None:
    with pytest.raises(UnsupportedFileTypeError) as caught:
        parse_document(b"whatever", name)
    message = str(caught.value)
    assert shown in message
    for supported in MIME_TYPES:
        assert supported in message


@pytest.mark.parametrize("name", ["empty.txt", "empty.md", "empty.html"])
def test_empty_text_file_is_empty_document(name: str) -> None:
    with pytest.raises(EmptyDocumentError):
        parse_document(b" \n\n ", name)
