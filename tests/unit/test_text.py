from __future__ import annotations

import codecs
import os
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ragops.errors import EmptyDocumentError, ParseError
from ragops.ingest.text import decode_text

SAMPLE = "Café naïve — 日本語 ✓"


def test_utf8_decodes() -> None:
    assert decode_text(SAMPLE.encode("utf-8")) == SAMPLE


def test_utf8_bom_is_dropped() -> None:
    assert decode_text(codecs.BOM_UTF8 + SAMPLE.encode("utf-8")) == SAMPLE


@pytest.mark.parametrize(
    ("text", "encoding"),
    [
        ("café", "latin-1"),
        ("café au lait", "latin-1"),
        ("naïve résumé façade", "cp1252"),
        ("“Smart quotes” cost 5 € at the café — naïve", "cp1252"),
        ("Größe und Übermaß für Straße. Die Bäume blühen im Frühling.", "latin-1"),
        ("L'été dernier, nous sommes allés à la plage près de Nîmes.", "cp1252"),
        ("El niño comió piñas en la montaña. ¿Dónde está el baño?", "latin-1"),
    ],
)
def test_western_legacy_encodings_decode_correctly(text: str, encoding: str) -> None:
    assert decode_text(text.encode(encoding)) == text


@pytest.mark.parametrize(
    ("text", "encoding"),
    [
        ("Съешь же ещё этих мягких французских булок, да выпей чаю.", "cp1251"),
        ("Zażółć gęślą jaźń. Pchnąć w tę łódź jeża lub ośm skrzyń fig.", "cp1250"),
        ("日本語のテキストです。これはテストです。", "shift_jis"),
    ],
)
def test_other_legacy_encodings_are_not_read_as_cp1252(text: str, encoding: str) -> None:
    assert decode_text(text.encode(encoding)) == text


@pytest.mark.parametrize(
    "data",
    [
        SAMPLE.encode("utf-16"),
        codecs.BOM_UTF16_LE + SAMPLE.encode("utf-16-le"),
        codecs.BOM_UTF16_BE + SAMPLE.encode("utf-16-be"),
        SAMPLE.encode("utf-32"),
    ],
    ids=["utf-16-native-bom", "utf-16-le-bom", "utf-16-be-bom", "utf-32-bom"],
)
def test_utf16_and_utf32_with_bom_decode(data: bytes) -> None:
    assert decode_text(data) == SAMPLE


@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-16-be"])
def test_utf16_without_bom_decodes(encoding: str) -> None:
    text = "Plain notes about the café, saved by an old Windows editor.\n"
    assert decode_text(text.encode(encoding)) == text


def test_nul_bytes_are_stripped() -> None:
    assert decode_text(b"hel\x00lo\x00 world") == "hello world"


def test_line_endings_become_newlines() -> None:
    assert decode_text(b"one\r\ntwo\rthree\n") == "one\ntwo\nthree\n"


def test_text_is_nfc_normalized() -> None:
    assert decode_text("cafe\u0301".encode()) == "caf\u00e9"


def test_declared_encoding_is_honoured() -> None:
    assert decode_text("Ærøskøbing".encode("cp1252"), "windows-1252") == "Ærøskøbing"


@pytest.mark.parametrize("declared", ["no-such-codec", "punycode", "undefined", "rot13", "hex"])
def test_unusable_declared_encoding_falls_back_to_detection(declared: str) -> None:
    assert decode_text(b"hello world, plain text", declared) == "hello world, plain text"


@pytest.mark.parametrize(
    "data",
    [b"", b"   \n\t\r\n ", codecs.BOM_UTF8, codecs.BOM_UTF8 + b"  \n", "  \n ".encode("utf-16")],
    ids=["empty", "ascii-whitespace", "bom-only", "bom-whitespace", "utf-16-whitespace"],
)
def test_empty_or_whitespace_is_empty_document(data: bytes) -> None:
    with pytest.raises(EmptyDocumentError):
        decode_text(data)


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("size", [512, 4096, 65536])
def test_random_binary_is_parse_error_saying_binary(seed: int, size: int) -> None:
    data = random.Random(seed).randbytes(size)
    with pytest.raises(ParseError, match="binary"):
        decode_text(data)


def test_os_urandom_is_parse_error() -> None:
    with pytest.raises(ParseError, match="binary"):
        decode_text(os.urandom(8192))


def test_binary_with_a_text_header_is_parse_error() -> None:
    data = b"This looks like text at first.\n" + random.Random(7).randbytes(4096)
    with pytest.raises(ParseError, match="binary"):
        decode_text(data)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=3000), st.sampled_from([None, "utf-8", "utf-16", "latin-1", "bogus"]))
def test_any_bytes_give_text_or_an_ingest_error(data: bytes, declared: str | None) -> None:
    try:
        text = decode_text(data, declared)
    except (ParseError, EmptyDocumentError):
        return
    assert text.strip()
    assert "\x00" not in text
    assert "\r" not in text
