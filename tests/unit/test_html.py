from __future__ import annotations

import pytest

from ragops.ingest.document import ParsedDocument
from ragops.ingest.parse import parse_document


def parse(html: str | bytes, name: str = "page.html") -> ParsedDocument:
    return parse_document(html.encode() if isinstance(html, str) else html, name)


def all_text(document: ParsedDocument) -> str:
    return "\n".join(s.text for s in document.sections)


def test_only_visible_text_is_kept() -> None:
    html = """<!doctype html><html><head><title>T</title>
    <style>body { color: red }</style><script>var hidden = 1;</script>
    <meta name="description" content="meta text"></head>
    <body><p>Visible one.</p><script>alert("no")</script>
    <noscript>Enable JavaScript</noscript><template><p>Template text</p></template>
    <svg><text>svg text</text></svg><p>Visible two.</p></body></html>"""
    assert all_text(parse(html)) == "Visible one.\n\nVisible two."


def test_title_element_gives_the_title_and_is_not_body_text() -> None:
    document = parse("<html><head><title> My  Page </title></head><body><p>Hi</p></body></html>")
    assert document.title == "My Page"
    assert all_text(document) == "Hi"


def test_head_left_open_does_not_hide_the_body() -> None:
    # HTML lets </head> (and <head> itself) be left out.
    document = parse("<html><head><title>T</title><body><p>Hello there.</p>")
    assert document.title == "T"
    assert all_text(document) == "Hello there."


def test_title_without_head_is_the_title_not_body_text() -> None:
    document = parse("<title>T</title><p>Body text.</p>")
    assert document.title == "T"
    assert all_text(document) == "Body text."


def test_svg_title_does_not_join_the_page_title() -> None:
    html = "<title>Page</title><p>Text <svg><title>icon</title><path d='M0'/></svg></p>"
    assert parse(html).title == "Page"


def test_title_falls_back_to_the_first_h1() -> None:
    document = parse("<h2>Sub</h2><p>a</p><h1>First</h1><p>b</p><h1>Second</h1><p>c</p>")
    assert document.title == "First"


def test_title_falls_back_to_the_file_stem() -> None:
    assert parse("<p>No headings.</p>", "docs/faq.htm").title == "faq"


def test_headings_split_sections_with_paths() -> None:
    html = """<p>Intro.</p><h1>Guide</h1><p>One.</p><h2>Install <em>it</em></h2>
    <p>Two.</p><h3>Linux</h3><p>Three.</p><h2>Use</h2><p>Four.</p>"""
    assert [(s.heading, s.text) for s in parse(html).sections] == [
        (None, "Intro."),
        ("Guide", "One."),
        ("Guide > Install it", "Two."),
        ("Guide > Install it > Linux", "Three."),
        ("Guide > Use", "Four."),
    ]


def test_entities_are_decoded() -> None:
    html = "<p>Fish &amp; chips &lt;3 &eacute;t&#233; &#x2603; caf&eacute;&nbsp;bar</p>"
    assert all_text(parse(html)) == "Fish & chips <3 été ☃ café bar"


def test_block_tags_become_paragraph_breaks_and_inline_tags_do_not() -> None:
    html = "<div>One <b>bold</b> <a href='#'>link</a></div><ul><li>A</li><li>B</li></ul>x<br>y"
    assert all_text(parse(html)) == "One bold link\n\nA\n\nB\n\nx\n\ny"


def test_whitespace_inside_a_paragraph_collapses() -> None:
    assert all_text(parse("<p>  many\n\n   spaces\there </p>")) == "many spaces here"


@pytest.mark.parametrize(
    "meta",
    [
        '<meta charset="windows-1252">',
        "<meta charset=windows-1252>",
        '<meta http-equiv="Content-Type" content="text/html; charset=windows-1252">',
    ],
)
def test_meta_charset_is_honoured(meta: str) -> None:
    html = f"<html><head>{meta}</head><body><p>“Quoted” café € ok</p></body></html>"
    assert all_text(parse(html.encode("cp1252"))) == "“Quoted” café € ok"


@pytest.mark.parametrize("label", ["iso-8859-1", "Latin1", "us-ascii"])
def test_meta_charset_latin1_is_read_as_windows_1252(label: str) -> None:
    # Browsers read such pages as windows-1252, and the pages rely on it.
    html = f'<meta charset="{label}"><p>“Quoted” café</p>'.encode("cp1252")
    assert all_text(parse(html)) == "“Quoted” café"


@pytest.mark.parametrize("text", ["Hello café", "Hello café!"])  # odd and even byte counts
def test_meta_charset_utf16_on_an_ascii_page_is_ignored(text: str) -> None:
    # A UTF-16 page could not have had its meta tag found as ASCII bytes.
    html = f'<meta charset="utf-16"><p>{text}</p>'.encode()
    assert all_text(parse(html)) == text


@pytest.mark.parametrize("charset", ["punycode", "undefined", "no-such-charset"])
def test_unusable_meta_charset_falls_back_to_detection(charset: str) -> None:
    assert all_text(parse(f'<meta charset="{charset}"><p>Plain café</p>')) == "Plain café"


def test_deeply_nested_html_does_not_crash() -> None:
    depth = 5000
    html = "<div>" * depth + "<p>deep text</p>" + "</div>" * depth
    assert all_text(parse(html)) == "deep text"


def test_unclosed_deep_nesting_does_not_crash() -> None:
    html = "<div><span>" * 20000 + "still here"
    assert all_text(parse(html)) == "still here"


@pytest.mark.parametrize(
    ("html", "text"),
    [
        ("<p>unclosed <b>tags <i>everywhere", "unclosed tags everywhere"),
        ("<p>text</p></div></div></body></html></html>", "text"),
        ("<<<>>><p>text</p>", "<<<>>>\n\ntext"),
        ("<![CDATA[ odd ]]><p>text</p>", "text"),
    ],
)
def test_malformed_html_still_gives_its_text(html: str, text: str) -> None:
    assert all_text(parse(html)) == text
