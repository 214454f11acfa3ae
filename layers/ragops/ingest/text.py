"""Bytes to text: encoding detection that never crashes on bad bytes."""

from __future__ import annotations

import codecs
import unicodedata

from ragops.errors import EmptyDocumentError, ParseError

_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
# Share of control characters above which "text" is really binary data.
MAX_CONTROL_SHARE = 0.05


def decode_text(data: bytes, declared: str | None = None) -> str:
    """Decode `data` as text, detecting the encoding; raise ParseError for binary data."""
    if not data.strip():
        raise EmptyDocumentError("the file is empty")
    text = _decode(data, declared)
    text = text.replace("\x00", "")
    if _control_share(text) > MAX_CONTROL_SHARE:
        raise ParseError("the file looks binary, not text (too many control characters)")
    text = unicodedata.normalize("NFC", text.replace("\r\n", "\n").replace("\r", "\n"))
    if not text.strip():
        raise EmptyDocumentError("the file holds no text")
    return text


def _decode(data: bytes, declared: str | None) -> str:
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            return data.decode(encoding, errors="replace")
    if declared:
        try:
            return data.decode(declared)
        except (LookupError, UnicodeError):  # some codecs (punycode) raise plain UnicodeError
            pass
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    utf16 = _utf16_without_bom(data)
    if utf16 is not None:
        return utf16
    detected = _detect_encoding(data[: 1 << 20])
    if detected is None:
        if data.count(0) > len(data) // 100:
            raise ParseError("the file looks binary, not text (no text encoding fits)")
        return data.decode("utf-8", errors="replace")
    return data.decode(detected, errors="replace")


def _detect_encoding(data: bytes) -> str | None:
    from charset_normalizer import from_bytes

    matches = from_bytes(data)
    best = matches.best()
    if best is None:
        return None
    # Short Western text fits dozens of single-byte code pages equally well, and the
    # detector breaks the tie arbitrarily (cp1006 for 'café'); among equally good fits,
    # cp1252 (what browsers read Latin-1 as) is by far the likeliest.
    for match in matches:
        tied = match.chaos <= best.chaos and match.coherence >= best.coherence
        if tied and "cp1252" in match.could_be_from_charset:
            return "cp1252"
    return best.encoding


def _utf16_without_bom(data: bytes) -> str | None:
    """UTF-16 text with no BOM shows as NUL in every other byte of ASCII-heavy text."""
    if len(data) < 4 or len(data) % 2:
        return None
    even_nuls = data[0::2].count(0) / (len(data) / 2)
    odd_nuls = data[1::2].count(0) / (len(data) / 2)
    encoding = None
    if odd_nuls > 0.3 and even_nuls < 0.05:
        encoding = "utf-16-le"
    elif even_nuls > 0.3 and odd_nuls < 0.05:
        encoding = "utf-16-be"
    if encoding is None:
        return None
    return data.decode(encoding, errors="replace")


def _control_share(text: str) -> float:
    sample = text[:200_000]
    if not sample:
        return 0.0
    controls = sum(
        1 for ch in sample if unicodedata.category(ch) == "Cc" and ch not in "\n\r\t\f\v"
    )
    replaced = sample.count("\ufffd")
    return (controls + replaced) / len(sample)
