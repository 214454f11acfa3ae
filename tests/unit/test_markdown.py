from __future__ import annotations

import pytest

from ragops.errors import EmptyDocumentError
from ragops.ingest.parse import parse_document


def sections(markdown: str) -> list[tuple[str | None, str]]:
    return [(s.heading, s.text) for s in parse_document(markdown.encode(), "doc.md").sections]


def test_atx_headings_build_a_heading_path() -> None:
    markdown = (
        "# Guide\n\nIntro.\n\n## Install\n\nRun it.\n\n### Linux\n\nUse apt.\n\n"
        "## Use\n\nCall it.\n\n# Appendix\n\nMore.\n"
    )
    assert sections(markdown) == [
        ("Guide", "Intro."),
        ("Guide > Install", "Run it."),
        ("Guide > Install > Linux", "Use apt."),
        ("Guide > Use", "Call it."),
        ("Appendix", "More."),
    ]


def test_text_before_the_first_heading_has_no_heading() -> None:
    assert sections("Preface.\n\n# One\n\nBody.\n") == [(None, "Preface."), ("One", "Body.")]


def test_atx_closing_hashes_are_dropped() -> None:
    assert sections("## Setup ##\n\nSteps.\n") == [("Setup", "Steps.")]


def test_hash_ending_a_heading_word_is_kept() -> None:
    document = parse_document(b"# C#\n\nA language.\n\n## Why F# #\n\nFunctional.\n", "langs.md")
    assert document.title == "C#"
    assert [s.heading for s in document.sections] == ["C#", "C# > Why F#"]


def test_hash_without_space_is_not_a_heading() -> None:
    assert sections("#hashtag and text\n") == [(None, "#hashtag and text")]


def test_four_space_indent_is_code_not_a_heading() -> None:
    assert sections("Para.\n\n    # code comment\n") == [(None, "Para.\n\n    # code comment")]


def test_setext_headings_are_recognised() -> None:
    markdown = "Title\n=====\n\nIntro.\n\nPart\n----\n\nDetails.\n"
    document = parse_document(markdown.encode(), "doc.md")
    assert document.title == "Title"
    assert [(s.heading, s.text) for s in document.sections] == [
        ("Title", "Intro."),
        ("Title > Part", "Details."),
    ]


def test_dashes_after_a_blank_line_are_not_a_setext_heading() -> None:
    assert sections("# A\n\nText.\n\n---\n\nMore.\n") == [("A", "Text.\n\n---\n\nMore.")]


def test_second_line_of_a_paragraph_is_not_a_setext_heading() -> None:
    assert sections("# A\n\nline one\nline two\n---\n") == [("A", "line one\nline two\n---")]


@pytest.mark.parametrize("fence", ["```", "~~~"])
def test_hash_inside_a_fenced_code_block_is_not_a_heading(fence: str) -> None:
    markdown = f"# Script\n\n{fence}bash\n# install deps\npip install x\n{fence}\n\nAfter.\n"
    assert sections(markdown) == [
        ("Script", f"{fence}bash\n# install deps\npip install x\n{fence}\n\nAfter."),
    ]


def test_headings_after_a_closed_fence_count_again() -> None:
    markdown = "```\n# not a heading\n```\n\n# Real\n\nBody.\n"
    assert sections(markdown) == [(None, "```\n# not a heading\n```"), ("Real", "Body.")]


def test_setext_underline_inside_a_fence_is_not_a_heading() -> None:
    markdown = "# A\n\n```\ncode\n---\n```\n"
    assert sections(markdown) == [("A", "```\ncode\n---\n```")]


def test_title_is_the_first_h1() -> None:
    document = parse_document(b"## Sub\n\nx\n\n# Main\n\ny\n\n# Later\n\nz\n", "doc.md")
    assert document.title == "Main"


def test_title_falls_back_to_the_file_stem() -> None:
    document = parse_document(b"## Only a subheading\n\ntext\n", "docs/release-notes.md")
    assert document.title == "release-notes"


def test_empty_sections_are_dropped() -> None:
    assert sections("# A\n\n## B\n\n   \n\n## C\n\nText.\n") == [("A > C", "Text.")]


def test_document_of_only_headings_is_empty() -> None:
    with pytest.raises(EmptyDocumentError):
        parse_document(b"# A\n\n## B\n", "doc.md")
