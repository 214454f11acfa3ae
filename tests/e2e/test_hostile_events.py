"""Hostile objects through the bucket -> queue -> ingest function path: each fails alone (its
message reported for retry, its reason on the document row), the good object in the same
batch is ingested, and keys are stored verbatim, never used as local paths."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ragops.resources import get_service
from tests.e2e.conftest import Stack, query_api
from tests.hostile_corpus import MIB, bomb_pdf, one_line, plain_pages_pdf, utf16_without_bom

GOOD_KEY = "good/dunlins.md"
GOOD = b"# Dunlins\n\nDunlins gather in winter flocks on the estuary mudflats.\n"
# Key: (what the object holds, what its failure reason says).
HOSTILE: dict[str, tuple[Callable[[], bytes], str]] = {
    "../../escape/bomb.pdf": (lambda: bomb_pdf(512 * MIB), "a decompression bomb?"),
    "pdfs/../../many pages.pdf": (lambda: plain_pages_pdf(50_000), "over the 2,000-page limit"),
    "text/ünïcödé one line.txt": (
        lambda: one_line(12 * MIB),
        "over the 10,000,000-character limit (RAGOPS_MAX_TEXT_CHARS)",
    ),
    "/absolute/empty.md": (lambda: b"", "the file is empty"),
}
SAFE_KEY = "../utf16 ☃/guillemots.txt"


def stored(key_source: str) -> tuple[str, str | None, int] | None:
    with get_service().db.pool.connection() as conn:
        row = conn.execute(
            "SELECT d.status, d.error, count(c.id) FROM documents d "
            "LEFT JOIN chunks c ON c.document_id = d.id WHERE d.source = %s GROUP BY d.id",
            (key_source,),
        ).fetchone()
    return None if row is None else (str(row[0]), row[1], int(row[2]))


def files_under(folder: Path) -> set[Path]:
    return {Path(root) / name for root, _, names in os.walk(folder) for name in names}


def test_hostile_objects_fail_alone_and_keys_are_stored_verbatim(
    stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    before = files_under(tmp_path)
    bodies = {GOOD_KEY: GOOD, SAFE_KEY: utf16_without_bom()}
    bodies.update({key: build() for key, (build, _) in HOSTILE.items()})
    for key, body in bodies.items():
        stack.s3.put_object(Bucket=stack.bucket, Key=key, Body=body)
    messages = stack.receive(len(bodies))

    started = time.perf_counter()
    result = stack.ingest(messages)
    seconds = time.perf_counter() - started

    failed = {item["itemIdentifier"] for item in result["batchItemFailures"]}
    assert len(failed) == len(HOSTILE)
    assert seconds < 120, seconds
    for key, (_, reason) in HOSTILE.items():
        row = stored(stack.source(key))
        assert row is not None, key
        status, error, chunks = row
        assert (status, chunks) == ("failed", 0), (key, row)
        assert reason in (error or ""), (key, error)
    for key in (GOOD_KEY, SAFE_KEY):
        row = stored(stack.source(key))
        assert row is not None, key
        assert row[0] == "ready", (key, row)
        assert row[2] > 0, (key, row)
    # Keys are sources, verbatim (`..` and all), and nothing was written to a local path.
    assert stack.source("../../escape/bomb.pdf") == f"s3://{stack.bucket}/../../escape/bomb.pdf"
    assert files_under(tmp_path) == before
    assert not (tmp_path.parent / "escape").exists()


def test_failed_objects_are_listed_with_their_reasons_by_the_api(stack: Stack) -> None:
    key, (build, reason) = next(iter(HOSTILE.items()))
    stack.s3.put_object(Bucket=stack.bucket, Key=key, Body=build())
    result: dict[str, Any] = stack.ingest(stack.receive(1))
    assert len(result["batchItemFailures"]) == 1

    response = query_api("GET", "/v1/ingest/stats")

    assert response.status == 200, response.body
    text = json.dumps(response.body, ensure_ascii=False)
    assert stack.source(key) in text, response.body
    assert reason in text, response.body
