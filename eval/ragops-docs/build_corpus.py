"""Build corpus.jsonl from documentation shipped inside installed Python packages.

Each source is a package's long description (its METADATA) or a Markdown/reST file inside
the package. Documents are split at headings into passages of MIN_WORDS..MAX_WORDS words;
badges, link lists, changelogs, licence text and code-only sections are left out.

    python eval/ragops-docs/build_corpus.py           # write corpus.jsonl
    python eval/ragops-docs/build_corpus.py --check   # fail if corpus.jsonl differs
"""

from __future__ import annotations

import argparse
import html
import importlib.metadata
import json
import math
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.parser import HeaderParser
from pathlib import Path

CORPUS = Path(__file__).with_name("corpus.jsonl")
MIN_WORDS = 80
MAX_WORDS = 400
# Prose words a section needs besides its code blocks.
MIN_PROSE_WORDS = 15

# (distribution, source): "METADATA" is the long description, anything else a package file.
SOURCES: list[tuple[str, str]] = [
    ("httpx", "METADATA"),
    ("httpcore", "METADATA"),
    ("h11", "METADATA"),
    ("requests", "METADATA"),
    ("responses", "METADATA"),
    ("pydantic", "METADATA"),
    ("python-dotenv", "METADATA"),
    ("jsonschema", "METADATA"),
    ("jsonschema-rs", "METADATA"),
    ("annotated-types", "METADATA"),
    ("attrs", "METADATA"),
    ("openapi-schema-validator", "METADATA"),
    ("boto3", "METADATA"),
    ("boto3", "boto3/examples/s3.rst"),
    ("moto", "METADATA"),
    ("aws-xray-sdk", "METADATA"),
    ("aws-sam-cli", "METADATA"),
    ("aws-sam-cli", "samcli/hook_packages/terraform/designs/resource_linking_generalized.md"),
    ("aws-lambda-builders", "aws_lambda_builders/workflows/custom_make/DESIGN.md"),
    ("aws-lambda-builders", "aws_lambda_builders/workflows/dotnet_clipackage/DESIGN.md"),
    ("aws-lambda-builders", "aws_lambda_builders/workflows/java_gradle/DESIGN.md"),
    ("aws-lambda-builders", "aws_lambda_builders/workflows/java_maven/DESIGN.md"),
    ("aws-lambda-builders", "aws_lambda_builders/workflows/nodejs_npm/DESIGN.md"),
    ("aws-lambda-builders", "aws_lambda_builders/workflows/nodejs_npm_esbuild/DESIGN.md"),
    ("aws-lambda-builders", "aws_lambda_builders/workflows/python_pip/DESIGN.md"),
    ("aws-lambda-builders", "aws_lambda_builders/workflows/python_uv/DESIGN.md"),
    ("aws-lambda-builders", "aws_lambda_builders/workflows/ruby_bundler/DESIGN.md"),
    ("aws-lambda-builders", "aws_lambda_builders/workflows/rust_cargo/DESIGN.md"),
    ("cfn-lint", "METADATA"),
    ("awscrt", "METADATA"),
    ("pytest-timeout", "METADATA"),
    ("faker", "METADATA"),
    ("dateparser", "METADATA"),
    ("pytz", "METADATA"),
    ("tzlocal", "METADATA"),
    ("charset-normalizer", "METADATA"),
    ("pgvector", "METADATA"),
    ("pyrate-limiter", "METADATA"),
    ("xllamacpp", "METADATA"),
    ("regex", "METADATA"),
    ("threadpoolctl", "METADATA"),
]

# Headings whose section (and its subsections) is not documentation of the package.
SKIPPED_HEADING = re.compile(
    r"\b(change ?log|changes|releases?|history|what'?s new|news|licen[cs]\w*|copyright|contribut\w*"
    r"|credits|authors?|acknowledg\w*|sponsor\w*|backers|funding|community|links|badges|contents"
    r"|citation|citing|maintainers|conduct|security|donat\w*|thanks|connect|related \w+|blog\w*)\b"
    r"|^(support|help|how to support.*)$|^v?\d+(\.\d+)+",
    re.IGNORECASE,
)
HTML_TAG = re.compile(
    r"</?(?:p|a|img|div|br|hr|strong|em|b|i|h[1-6]|picture|source|details|summary|sup|sub"
    r"|table|thead|tbody|tr|td|th|span|code|kbd|ul|ol|li|center)\b[^>]*>",
    re.IGNORECASE,
)
MD_TARGET = r"(?:\([^)]*\)|\[[^\]]*\])"  # (url) or [reference]
MD_IMAGE = re.compile(rf"\[?!\[[^\]]*\]{MD_TARGET}(?:\]{MD_TARGET})?")
MD_LINK = re.compile(rf"\[([^\]]*)\]{MD_TARGET}")
MD_AUTOLINK = re.compile(r"<(https?://[^>\s]+)>")
# A list item that is nothing but a link: tables of contents and link lists.
LINK_ITEM = re.compile(rf"\s*[-*+]\s+(\[[^\]]*\]{MD_TARGET}|`[^`]*<[^>]*>`_{{1,2}})\s*")
MD_LINK_TARGET = re.compile(r"^\s*\[[^\]]+\]:\s+\S+")
MD_RULE = re.compile(r"\s*([-*_])(\s*\1){2,}\s*")
MD_ATX = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
RST_UNDERLINE = re.compile(r"^([=\-~^\"'`#*+:._])\1{2,}\s*$")
RST_LINK = re.compile(r"`([^`<]+?)\s*<[^>]*>`_{1,2}")
RST_REF = re.compile(r"`([^`]+)`_{1,2}")
RST_ROLE = re.compile(r":[\w:.-]+:`([^`<]+?)(?:\s*<[^>]*>)?`")
RST_SUBSTITUTION = re.compile(r"\|\w[\w -]*\|_{0,2}")
RST_NAMED_REF = re.compile(r"(?<!\w)([A-Za-z][\w.-]*[A-Za-z0-9])_(?=[\s.,;:'\")]|\Z)")  # word_
# Lines with no text of their own: comments, link targets, transitions, table borders.
RST_NOISE = re.compile(r"\s*(\.\.(\s.*)?|__ .*|([-=~*#+])\3{3,}|\+[-=+]+\+)")
RST_DIRECTIVE = re.compile(r"^\s*\.\.\s+(?:\|[^|]+\|\s+)?([\w-]+)::(.*)$")
# reST directives whose body is kept as text (the rest are dropped with their body).
RST_KEPT_BODY = {"code-block", "code", "sourcecode", "note", "warning", "tip", "important"}
RST_CODE = {"code-block", "code", "sourcecode"}


@dataclass
class Section:
    """One heading of a source document and its raw lines."""

    heading: str
    level: int
    lines: list[str] = field(default_factory=list)


@dataclass
class Passage:
    heading: str
    text: str

    @property
    def words(self) -> int:
        return len(self.text.split())

    @property
    def fits(self) -> bool:
        return MIN_WORDS <= self.words <= MAX_WORDS


def read_source(dist: importlib.metadata.Distribution, source: str) -> tuple[str, str]:
    """The raw document and its format ("md" or "rst")."""
    if source == "METADATA":
        metadata = HeaderParser().parsestr(dist.read_text("METADATA") or "")
        content_type = metadata.get("Description-Content-Type") or "text/x-rst"
        return str(metadata.get_payload()), "md" if "markdown" in content_type else "rst"
    path = Path(str(dist.locate_file(source)))
    return path.read_text(encoding="utf-8"), "md" if path.suffix == ".md" else "rst"


def split_markdown(text: str) -> list[Section]:
    """Sections at ATX (#) and setext (=== / ---) headings outside fenced code."""
    sections = [Section("Overview", 1)]
    in_code = False
    for line in text.splitlines():
        if line.lstrip().startswith(("```", "~~~")):
            in_code = not in_code
        heading = None if in_code else MD_ATX.match(line)
        previous = sections[-1].lines[-1].strip() if sections[-1].lines else ""
        if heading:
            title = re.sub(r":[a-z_]+:\s*", "", heading[2])  # emoji shortcodes
            sections.append(Section(clean_inline(title, "md"), len(heading[1])))
        elif not in_code and previous and re.fullmatch(r"=+|-+", line.strip()):
            sections[-1].lines.pop()
            level = 1 if line.strip()[0] == "=" else 2
            sections.append(Section(clean_inline(previous, "md"), level))
        else:
            sections[-1].lines.append(line)
    return sections


def split_rst(text: str) -> list[Section]:
    """Sections at underlined (optionally overlined) titles; levels in order of first use."""
    sections = [Section("Overview", 1)]
    styles: list[str] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if (
            RST_UNDERLINE.match(line)
            and i + 2 < len(lines)
            and lines[i + 2].strip() == line.strip()
        ):
            title, style, i = lines[i + 1].strip(), "over" + line[0], i + 3
        elif (
            i + 1 < len(lines)
            and line.strip()
            and not line.startswith(" ")
            and RST_UNDERLINE.match(lines[i + 1])
            and len(lines[i + 1].rstrip()) >= len(line.rstrip())
        ):
            title, style, i = line.strip(), lines[i + 1][0], i + 2
        else:
            sections[-1].lines.append(line)
            i += 1
            continue
        if style not in styles:
            styles.append(style)
        sections.append(Section(clean_inline(title, "rst"), styles.index(style) + 1))
    return sections


def clean_inline(text: str, fmt: str) -> str:
    """Markup removed from prose: images, links, tags, emphasis, roles, entities."""
    if fmt == "md":
        text = HTML_TAG.sub("", MD_IMAGE.sub("", text))
        text = MD_AUTOLINK.sub(r"\1", MD_LINK.sub(r"\1", text))
        text = re.sub(r"\*\*|__|`", "", text)
    else:
        text = RST_ROLE.sub(r"\1", text)
        text = RST_LINK.sub(r"\1", text)
        text = RST_REF.sub(r"\1", text)
        text = RST_NAMED_REF.sub(r"\1", RST_SUBSTITUTION.sub("", text))
        text = re.sub(r"\*\*|``", "", text)
        text = re.sub(r"::$", ":", text, flags=re.MULTILINE)
    return html.unescape(text).rstrip()


def markdown_lines(lines: list[str]) -> Iterator[tuple[bool, str]]:
    """(is_code, line) for a Markdown section, without fences, comments and link targets."""
    in_code = in_comment = False
    for line in lines:
        if line.lstrip().startswith(("```", "~~~")):
            in_code = not in_code
        elif in_code:
            yield True, line
        elif in_comment or "<!--" in line:
            in_comment = "-->" not in line
        elif not (
            MD_LINK_TARGET.match(line) or LINK_ITEM.fullmatch(line) or MD_RULE.fullmatch(line)
        ):
            yield False, line


def rst_lines(lines: list[str]) -> Iterator[tuple[bool, str]]:
    """(is_code, line) for a reST section, without comments, targets and dropped directives."""
    skip_indent: int | None = None  # inside a dropped directive or a comment
    code_indent: int | None = None  # inside a code block or a literal block
    for line in lines:
        indent = len(line) - len(line.lstrip())
        if line.strip() and skip_indent is not None and indent <= skip_indent:
            skip_indent = None
        if line.strip() and code_indent is not None and indent <= code_indent:
            code_indent = None
        directive = RST_DIRECTIVE.match(line)
        if skip_indent is not None:
            continue
        if code_indent is not None or line.lstrip().startswith(">>>"):
            yield True, line
        elif directive:
            if directive[1] in RST_CODE:
                code_indent = indent
            elif directive[1] not in RST_KEPT_BODY:
                skip_indent = indent
        elif RST_NOISE.fullmatch(line.rstrip()):
            skip_indent = indent if line.lstrip().startswith("..") else None
        elif line.strip() == "::":
            code_indent = indent
        elif not re.match(r"\s+:[\w-]+:", line) and not LINK_ITEM.fullmatch(line):
            if line.rstrip().endswith("::"):
                code_indent = indent
            yield False, line


def render(lines: Iterator[tuple[bool, str]], fmt: str) -> tuple[str, int]:
    """The section's plain text and its number of prose (non-code) words."""
    out: list[str] = []
    prose: list[str] = []
    words = 0
    for is_code, line in [*lines, (True, "")]:
        if not is_code:
            prose.append(line)
            continue
        if prose:
            text = clean_inline("\n".join(prose), fmt)
            words += len(re.findall(r"[A-Za-z]{2,}", text))
            out.append(text)
            prose = []
        out.append(line.rstrip())
    text = "\n".join(out).strip("\n")
    return re.sub(r"\n\s*\n(\s*\n)*", "\n\n", text).strip(), words


def passages(sections: list[Section], fmt: str) -> Iterator[Passage]:
    """Kept sections as passages: short ones joined to a neighbour, long ones split."""
    skip_level: int | None = None
    pending: Passage | None = None
    for section in sections:
        if skip_level is not None and section.level > skip_level:
            continue
        skip_level = section.level if SKIPPED_HEADING.search(section.heading) else None
        if skip_level is not None:
            continue
        lines = markdown_lines(section.lines) if fmt == "md" else rst_lines(section.lines)
        text, prose = render(lines, fmt)
        if not text or prose < MIN_PROSE_WORDS:
            continue
        for part in split_long(Passage(section.heading, text)):
            if pending is None:
                pending = part
            elif pending.words + part.words <= MAX_WORDS and (
                pending.words < MIN_WORDS or part.words < MIN_WORDS
            ):
                # The longer side names the passage; the shorter keeps its heading inline.
                head = pending.heading if pending.words >= part.words else part.heading
                joint = "" if part.heading == pending.heading else f"{part.heading}\n\n"
                pending = Passage(head, f"{pending.text}\n\n{joint}{part.text}")
            else:
                if pending.fits:
                    yield pending
                pending = part
    if pending is not None and pending.fits:
        yield pending


def split_long(passage: Passage) -> Iterator[Passage]:
    """A passage over MAX_WORDS split between paragraphs into balanced parts."""
    if passage.words <= MAX_WORDS:
        yield passage
        return
    target = passage.words / math.ceil(passage.words / MAX_WORDS)
    chunk: list[str] = []
    for paragraph in passage.text.split("\n\n"):
        size = sum(len(p.split()) for p in chunk)
        if chunk and size + len(paragraph.split()) / 2 > target:
            yield Passage(passage.heading, "\n\n".join(chunk))
            chunk = []
        chunk.append(paragraph)
    yield Passage(passage.heading, "\n\n".join(chunk))


def document_title(sections: list[Section]) -> str:
    """The title of a document with a single top heading, else ""."""
    top = min(section.level for section in sections[1:])
    titles = [section.heading for section in sections[1:] if section.level == top]
    return titles[0] if len(titles) == 1 else ""


def build() -> list[dict[str, str]]:
    """Every passage of every source, in SOURCES order, with ids numbered per package."""
    rows: list[dict[str, str]] = []
    counts: dict[str, int] = {}
    for name, source in SOURCES:
        dist = importlib.metadata.distribution(name)
        raw, fmt = read_source(dist, source)
        sections = split_markdown(raw) if fmt == "md" else split_rst(raw)
        # A file inside a package is named by its own title: several share section names.
        document = "" if source == "METADATA" else document_title(sections)
        for passage in passages(sections, fmt):
            counts[name] = counts.get(name, 0) + 1
            heading = passage.heading
            if document and heading != document:
                heading = f"{document}: {heading}"
            rows.append(
                {
                    "_id": f"{name}-{counts[name]:03d}",
                    "title": f"{name} — {heading}",
                    "text": passage.text,
                }
            )
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare, do not write")
    args = parser.parse_args()
    rows = build()
    content = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    if args.check:
        same = CORPUS.read_text(encoding="utf-8") == content
        print("corpus.jsonl is up to date" if same else "corpus.jsonl differs from the packages")
        return 0 if same else 1
    CORPUS.write_text(content, encoding="utf-8")
    print(f"wrote {len(rows)} passages to {CORPUS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
