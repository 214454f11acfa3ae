"""Bytes to text: encoding detection that never crashes on bad bytes."""

from __future__ import annotations

import codecs
import unicodedata

from ragops.errors import EmptyDocumentError, ParseError
from ragops.ingest.limits import TextBudget

_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
# Share of control characters above which "text" is really binary data.
MAX_CONTROL_SHARE = 0.05
# Bytes decoded at a time when the text has a size limit: the limit is enforced while
# decoding, so an oversized file never exists as one whole string.
DECODE_SLICE = 1 << 20
# Bytes looked at to recognise UTF-16 without a BOM.
UTF16_SAMPLE = 1 << 16


def decode_text(data: bytes, declared: str | None = None, max_chars: int | None = None) -> str:
    """Decode `data` as text, detecting the encoding; raise ParseError for binary data.

    With `max_chars`, text over that many characters (NULs aside) is refused as it decodes.
    """
    # isspace() rather than strip(): no copy of a large file just to test it.
    if not data or data.isspace():
        raise EmptyDocumentError("the file is empty")
    text = _decode(data, declared, max_chars)
    if "\x00" in text:
        text = text.replace("\x00", "")
    if _control_share(text) > MAX_CONTROL_SHARE:
        raise ParseError("the file looks binary, not text (too many control characters)")
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not unicodedata.is_normalized("NFC", text):
        text = unicodedata.normalize("NFC", text)
    if not text or text.isspace():
        raise EmptyDocumentError("the file holds no text")
    return text


def _decode(data: bytes, declared: str | None, max_chars: int | None) -> str:
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            return _decode_as(data, encoding, "replace", max_chars)
    if declared:
        try:
            return _decode_as(data, declared, "strict", max_chars)
        except (LookupError, UnicodeError):  # some codecs (punycode) raise plain UnicodeError
            pass
    try:
        return _decode_as(data, "utf-8", "strict", max_chars)
    except UnicodeDecodeError:
        pass
    utf16 = _utf16_without_bom(data)
    if utf16 is not None:
        return _decode_as(data, utf16, "replace", max_chars)
    detected = _detect_encoding(data[: 1 << 20])
    if detected is None:
        if data.count(0) > len(data) // 100:
            raise ParseError("the file looks binary, not text (no text encoding fits)")
        return _decode_as(data, "utf-8", "replace", max_chars)
    return _decode_as(data, detected, "replace", max_chars)


def _decode_as(data: bytes, encoding: str, errors: str, max_chars: int | None) -> str:
    """`data.decode(encoding, errors)`, refused once it passes `max_chars` characters."""
    if max_chars is None or len(data) <= max_chars:
        # No text encoding makes more characters than bytes: this cannot pass the limit.
        return data.decode(encoding, errors)
    budget = TextBudget(max_chars)
    decoder = codecs.getincrementaldecoder(encoding)(errors)
    view = memoryview(data)
    parts = []
    for start in range(0, len(data), DECODE_SLICE):
        end = start + DECODE_SLICE
        part = decoder.decode(view[start:end], final=end >= len(data))
        budget.spend(len(part) - part.count("\x00"))  # NULs are dropped, so not counted
        parts.append(part)
    return "".join(parts)


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
    """The UTF-16 byte order of `data`, if it has no BOM but is UTF-16 all the same.

    ASCII-heavy UTF-16 text shows as NUL in every other byte; a sample tells, so a large
    file is not copied to find out.
    """
    if len(data) < 4 or len(data) % 2:
        return None
    sample = data[:UTF16_SAMPLE]
    half = len(sample) / 2
    even_nuls = sample[0::2].count(0) / half
    odd_nuls = sample[1::2].count(0) / half
    if odd_nuls > 0.3 and even_nuls < 0.05:
        return "utf-16-le"
    if even_nuls > 0.3 and odd_nuls < 0.05:
        return "utf-16-be"
    return None


def _control_share(text: str) -> float:
    sample = text[:200_000]
    if not sample:
        return 0.0
    controls = sum(
        1 for ch in sample if unicodedata.category(ch) == "Cc" and ch not in "\n\r\t\f\v"
    )
    replaced = sample.count("\ufffd")
    return (controls + replaced) / len(sample)
