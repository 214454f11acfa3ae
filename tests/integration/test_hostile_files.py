"""A corpus of hostile files through the real `ragops ingest`, in one batch with good files:
each is refused with its reason or ingested safely, in bounded time, and the good files
are ingested and searchable all the same."""

from __future__ import annotations

import json
import resource
import time
from pathlib import Path

import psycopg
import pytest
from tests.hostile_corpus import CORPUS, MIB

from ragops.cli import main
from ragops.ingest.pipeline import file_source

GOOD = {
    "good/dunlins.md": "# Dunlins\n\nDunlins gather in winter flocks of many thousands on the "
    "estuary mudflats, turning in the air together like smoke.\n",
    "good/curlews.txt": "The curlew has the longest bill of any wader in Europe and probes "
    "deep into the mud for ragworms.\n",
}
# The batch refuses 12 files and ingests 8; on these 2-core machines it takes about 15 s.
BATCH_SECONDS = 120
# The largest file is 100 MiB and is never read; nothing else should cost close to it.
BATCH_RSS_GROWTH = 1024 * MIB


def write_corpus(root: Path) -> Path:
    folder = root / "docs"
    for relative, text in GOOD.items():
        path = folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    hostile = folder / "hostile"
    hostile.mkdir()
    for item in CORPUS:
        (hostile / item.name).write_bytes(item.build())
    return folder


def rows(database_url: str) -> dict[str, tuple[str, str | None, int]]:
    """source -> (status, error, chunks actually stored)."""
    with psycopg.connect(database_url) as conn:
        found = conn.execute(
            "SELECT d.source, d.status, d.error, count(c.id) FROM documents d "
            "LEFT JOIN chunks c ON c.document_id = d.id GROUP BY d.id"
        ).fetchall()
    return {source: (status, error, int(n)) for source, status, error, n in found}


def lexical_sources(capsys: pytest.CaptureFixture[str], query: str) -> set[str]:
    capsys.readouterr()
    assert main(["search", query, "--mode", "lexical", "--no-rerank", "--json"]) == 0
    out = capsys.readouterr().out
    return {result["source"] for result in json.loads(out)["results"]}


def test_hostile_files_fail_alone_with_their_reasons_and_good_files_are_searchable(
    cli_env: Path,
    database_url: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The inflated-bytes budget behaves the same at its 128 MiB default, only more slowly
    # (about 20 s of pypdf parsing for the spread bomb); a quarter keeps the test short.
    monkeypatch.setenv("RAGOPS_MAX_INFLATED_BYTES", str(32 * MIB))
    folder = write_corpus(cli_env)
    # A path with `..` in it is the user's own: it names the same folder.
    argument = folder / "hostile" / ".." / "good" / ".."
    capsys.readouterr()

    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    code = main(["ingest", str(argument)])
    seconds = time.perf_counter() - started
    rss_grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) * 1024
    out, err = capsys.readouterr()

    assert code != 0, err
    assert seconds < BATCH_SECONDS, seconds
    assert rss_grown < BATCH_RSS_GROWTH, f"grew {rss_grown:,} bytes"
    failures = dict(
        line.removeprefix("failed     ").split(": ", 1)
        for line in err.splitlines()
        if line.startswith("failed ")
    )
    stored = rows(database_url)
    refused = [item for item in CORPUS if item.refused]
    ingested = [item for item in CORPUS if not item.refused]
    assert set(failures) == {file_source(folder / "hostile" / item.name) for item in refused}
    for item in refused:
        source = file_source(folder / "hostile" / item.name)
        assert item.reason is not None
        assert item.reason in failures[source], (item.name, failures[source])
        status, error, chunks = stored[source]
        assert (status, error, chunks) == ("failed", failures[source], 0), item.name
    for item in ingested:
        source = file_source(folder / "hostile" / item.name)
        assert f"ingested   {source}" in out
        status, _, chunks = stored[source]
        assert status == "ready", (item.name, stored[source])
        assert chunks > 0, (item.name, stored[source])
        assert item.phrase is not None
        assert source in lexical_sources(capsys, item.phrase), item.name
    for relative in GOOD:
        source = file_source(folder / relative)
        assert stored[source][0] == "ready"
    assert lexical_sources(capsys, "dunlins estuary") == {file_source(folder / "good/dunlins.md")}
    assert lexical_sources(capsys, "curlew ragworms") == {file_source(folder / "good/curlews.txt")}
    assert f"{len(ingested) + len(GOOD)} ingested" in err, err
    assert f"{len(refused)} failed" in err, err


def test_text_is_stored_without_nul_bytes_and_utf16_is_decoded(
    cli_env: Path, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = cli_env / "docs"
    folder.mkdir()
    by_name = {item.name: item for item in CORPUS}
    for name in ("nul-bytes.txt", "utf16-no-bom.txt", "invalid-utf8.txt"):
        (folder / name).write_bytes(by_name[name].build())

    assert main(["ingest", str(folder)]) == 0

    with psycopg.connect(database_url) as conn:
        contents = {
            source.rsplit("/", 1)[1]: content
            for source, content in conn.execute(
                "SELECT d.source, string_agg(c.content, ' ' ORDER BY c.ordinal) "
                "FROM chunks c JOIN documents d ON d.id = c.document_id GROUP BY d.source"
            ).fetchall()
        }
    assert "Oystercatchers probe the sand for cockles" in contents["nul-bytes.txt"]
    assert "café, naïve" in contents["utf16-no-bom.txt"]
    assert "\x00" not in contents["utf16-no-bom.txt"]
    assert "Turnstones flip pebbles" in contents["invalid-utf8.txt"]
