"""Ingest against the real embedded PostgreSQL and the real ONNX models."""

from __future__ import annotations

import hashlib
import os
import random
import threading
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from psycopg.rows import dict_row
from tests.pdf_samples import blank_pdf, encrypted_pdf, text_pdf

from ragops.db import documents
from ragops.db.documents import DocumentRow, DocumentVersion
from ragops.ingest.pipeline import IngestOutcome, discover_files, file_source
from ragops.service import Service
from ragops.settings import Settings

MakeService = Callable[..., Service]

# Small chunks make several chunks out of a few sentences, so tests stay fast.
SMALL_CHUNKS = {"chunk_tokens": 32, "chunk_overlap": 8}
LONG_TEXT = " ".join(
    f"Paragraph {n} explains how the orchard keeps apple variety {n} healthy through winter."
    for n in range(12)
)


@pytest.fixture
def make_service(settings: Settings) -> Iterator[MakeService]:
    """Services over the test database with some settings changed."""
    made: list[Service] = []

    def make(**changes: Any) -> Service:
        svc = Service(settings.model_copy(update=changes))
        made.append(svc)
        return svc

    yield make
    for svc in made:
        svc.close()


def ingest(svc: Service, paths: Sequence[Path], collection: str = "default") -> list[IngestOutcome]:
    return list(svc.ingestor.ingest_paths(paths, collection))


def document(svc: Service, path: Path, collection: str = "default") -> DocumentRow:
    with svc.db.pool.connection() as conn:
        row = documents.find_document(conn, collection, file_source(path))
    assert row is not None, f"no document row for {path}"
    return row


def chunks(svc: Service, document_id: object) -> list[dict[str, Any]]:
    with svc.db.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            """SELECT id, ordinal, content, token_count, page, heading, collection
               FROM chunks WHERE document_id = %s ORDER BY ordinal""",
            (document_id,),
        ).fetchall()


def scalar(svc: Service, query: str, params: Sequence[Any] = ()) -> Any:
    with svc.db.pool.connection() as conn:
        row = conn.execute(query, params).fetchone()
    assert row is not None
    return row[0]


def lexical_sources(svc: Service, query: str) -> list[str]:
    """The sources whose chunks match `query` in full-text search, each once."""
    request = svc.searcher.request(query, top_k=50, mode="lexical", rerank=False)
    return sorted({r.source for r in svc.searcher.search(request).results})


def assert_ready(svc: Service, path: Path, mime_type: str, title: str) -> DocumentRow:
    """The row of a freshly ingested file describes it and matches its chunks."""
    data = path.read_bytes()
    row = document(svc, path)
    assert row.status == "ready"
    assert row.error is None
    assert row.title == title
    assert row.mime_type == mime_type
    assert row.size_bytes == len(data)
    assert row.sha256 == hashlib.sha256(data).hexdigest()
    assert row.source_mtime == datetime.fromtimestamp(path.stat().st_mtime, tz=UTC)
    assert row.embedding_model == svc.models.embedder_id
    assert row.ingested_at is not None
    rows = chunks(svc, row.id)
    assert row.chunk_count == len(rows) > 0
    assert [c["ordinal"] for c in rows] == list(range(len(rows)))
    assert all(c["token_count"] > 0 for c in rows)
    assert {c["collection"] for c in rows} == {row.collection}
    return row


# --- formats -------------------------------------------------------------------------


def test_text_file_is_ingested_with_its_metadata(service: Service, tmp_path: Path) -> None:
    path = tmp_path / "kettle-notes.txt"
    path.write_text("The kettle boils water in about three minutes.\n")

    [outcome] = ingest(service, [path])

    assert outcome.status == "ingested"
    row = assert_ready(service, path, "text/plain", "kettle-notes")
    assert outcome.document_id == row.id
    assert outcome.chunks == row.chunk_count
    [chunk] = chunks(service, row.id)
    assert chunk["content"] == "The kettle boils water in about three minutes."
    assert chunk["page"] is None
    assert chunk["heading"] is None


def test_markdown_chunks_carry_their_heading_path(service: Service, tmp_path: Path) -> None:
    path = tmp_path / "guide.md"
    path.write_text(
        "# Gardening Guide\n\nAn introduction to soil.\n\n"
        "## Watering\n\nWater tomatoes at dawn.\n\n"
        "### Drip lines\n\nDrip lines save water.\n\n"
        "## Pruning\n\nPrune roses in late winter.\n"
    )

    ingest(service, [path])

    row = assert_ready(service, path, "text/markdown", "Gardening Guide")
    assert [(c["heading"], c["content"]) for c in chunks(service, row.id)] == [
        ("Gardening Guide", "An introduction to soil."),
        ("Gardening Guide > Watering", "Water tomatoes at dawn."),
        ("Gardening Guide > Watering > Drip lines", "Drip lines save water."),
        ("Gardening Guide > Pruning", "Prune roses in late winter."),
    ]


def test_html_keeps_visible_text_under_headings(service: Service, tmp_path: Path) -> None:
    path = tmp_path / "page.html"
    path.write_text(
        "<html><head><title>Bicycle Care</title><style>p {color: red}</style></head>"
        "<body><script>var secretTracker = 1;</script>"
        "<h1>Chains</h1><p>Oil the chain every month.</p>"
        "<h2>Brakes</h2><p>Check the brake pads.</p></body></html>"
    )

    ingest(service, [path])

    row = assert_ready(service, path, "text/html", "Bicycle Care")
    rows = chunks(service, row.id)
    assert [(c["heading"], c["content"]) for c in rows] == [
        ("Chains", "Oil the chain every month."),
        ("Chains > Brakes", "Check the brake pads."),
    ]
    assert not any("secretTracker" in c["content"] or "color" in c["content"] for c in rows)


def test_html_title_without_head_is_not_body_text(service: Service, tmp_path: Path) -> None:
    path = tmp_path / "fragment.html"
    path.write_text("<title>Bicycle Care</title><h1>Chains</h1><p>Oil the chain.</p>")

    ingest(service, [path])

    row = assert_ready(service, path, "text/html", "Bicycle Care")
    assert [c["content"] for c in chunks(service, row.id)] == ["Oil the chain."]


def test_pdf_chunks_carry_their_page_numbers(service: Service, tmp_path: Path) -> None:
    path = tmp_path / "manual.pdf"
    path.write_bytes(
        text_pdf(["Apples grow on trees in the orchard.", "Pears ripen after picking."])
    )

    ingest(service, [path])

    row = assert_ready(service, path, "application/pdf", "manual")
    rows = chunks(service, row.id)
    assert [c["page"] for c in rows] == [1, 2]
    assert "Apples" in rows[0]["content"]
    assert "Pears" in rows[1]["content"]


def test_long_text_is_split_into_ordered_chunks_within_budget(
    make_service: MakeService, tmp_path: Path
) -> None:
    svc = make_service(**SMALL_CHUNKS)
    path = tmp_path / "orchard.txt"
    path.write_text(LONG_TEXT)

    ingest(svc, [path])

    row = assert_ready(svc, path, "text/plain", "orchard")
    rows = chunks(svc, row.id)
    assert len(rows) > 3
    assert all(c["token_count"] <= SMALL_CHUNKS["chunk_tokens"] for c in rows)
    assert "Paragraph 0 " in rows[0]["content"]
    assert "Paragraph 11 " in rows[-1]["content"]


def test_directory_is_ingested_recursively_skipping_hidden_files(
    service: Service, tmp_path: Path
) -> None:
    root = tmp_path / "docs"
    (root / "nested" / "deeper").mkdir(parents=True)
    (root / ".git").mkdir()
    (root / "top.txt").write_text("Top level note about owls.")
    (root / "nested" / "middle.md").write_text("# Middle\n\nA note about hawks.")
    (root / "nested" / "deeper" / "bottom.html").write_text("<p>A note about eagles.</p>")
    (root / ".hidden.txt").write_text("A hidden note about bats.")
    (root / ".git" / "notes.txt").write_text("A note about moths inside a hidden folder.")

    outcomes = ingest(service, list(discover_files([root])))

    expected = {
        file_source(root / "top.txt"),
        file_source(root / "nested" / "middle.md"),
        file_source(root / "nested" / "deeper" / "bottom.html"),
    }
    assert {o.source for o in outcomes} == expected
    assert {o.status for o in outcomes} == {"ingested"}
    with service.db.pool.connection() as conn:
        assert {d.source for d in documents.list_documents(conn)} == expected
    assert lexical_sources(service, "bats") == []
    assert lexical_sources(service, "moths") == []


# --- re-ingest -----------------------------------------------------------------------


def test_reingesting_unchanged_files_is_a_no_op(service: Service, tmp_path: Path) -> None:
    first = tmp_path / "a.txt"
    second = tmp_path / "b.md"
    first.write_text("Otters hold hands while they sleep.")
    second.write_text("# Seals\n\nSeals sleep in the water.")
    ingest(service, [first, second])
    before = {
        p: (document(service, p), chunks(service, document(service, p).id)) for p in (first, second)
    }

    outcomes = ingest(service, [first, second])

    assert [(o.status, o.chunks) for o in outcomes] == [("unchanged", 1), ("unchanged", 1)]
    for path, (row, rows) in before.items():
        assert document(service, path) == row
        assert chunks(service, row.id) == rows


def test_touching_mtime_keeps_chunks_by_content_hash(service: Service, tmp_path: Path) -> None:
    path = tmp_path / "touched.txt"
    path.write_text("Badgers dig setts in the woodland.")
    ingest(service, [path])
    row = document(service, path)
    ids = [c["id"] for c in chunks(service, row.id)]
    later = path.stat().st_mtime + 3600
    os.utime(path, (later, later))

    [outcome] = ingest(service, [path])

    assert outcome.status == "unchanged"
    assert outcome.document_id == row.id
    assert [c["id"] for c in chunks(service, row.id)] == ids
    after = document(service, path)
    assert after.source_mtime == datetime.fromtimestamp(later, tz=UTC)
    assert after.ingested_at == row.ingested_at
    # Now the stat matches again: the next run does not even read the file.
    assert ingest(service, [path])[0].status == "unchanged"


def test_changed_file_replaces_its_chunks(make_service: MakeService, tmp_path: Path) -> None:
    svc = make_service(**SMALL_CHUNKS)
    path = tmp_path / "changing.txt"
    path.write_text(LONG_TEXT + " Quinces are mentioned only in the first version.")
    ingest(svc, [path])
    row = document(svc, path)
    old_ids = {c["id"] for c in chunks(svc, row.id)}
    assert lexical_sources(svc, "quinces") == [file_source(path)]

    path.write_text("Now the file is about persimmons and nothing else.")
    [outcome] = ingest(svc, [path])

    assert outcome.status == "ingested"
    after = assert_ready(svc, path, "text/plain", "changing")
    assert after.id == row.id
    new_rows = chunks(svc, row.id)
    assert len(new_rows) == 1
    assert old_ids.isdisjoint(c["id"] for c in new_rows)
    assert scalar(svc, "SELECT count(*) FROM chunks WHERE id = ANY(%s)", (list(old_ids),)) == 0
    assert scalar(svc, "SELECT count(*) FROM documents") == 1
    assert lexical_sources(svc, "persimmons") == [file_source(path)]
    assert lexical_sources(svc, "quinces") == []


# --- bad input -----------------------------------------------------------------------

GOOD_TEXT = "Herons stand still in shallow water waiting for fish."


def test_bad_files_fail_alone_and_good_files_in_the_batch_are_ingested(
    make_service: MakeService, tmp_path: Path
) -> None:
    svc = make_service(max_file_bytes=4000)
    files: dict[str, bytes] = {
        "good.md": f"# Herons\n\n{GOOD_TEXT}\n".encode(),
        "latin1.txt": "Le héron cendré mange des poissons près de l'étang.".encode("latin-1"),
        "empty.txt": b"",
        "junk.txt": random.Random(7).randbytes(2000),
        "corrupt.pdf": b"%PDF-1.4\n1 0 obj << /Type /Catalog >> garbage\n%%EOF\n",
        "locked.pdf": encrypted_pdf("secret"),
        "scanned.pdf": blank_pdf(),
        "photo.png": b"\x89PNG\r\n\x1a\n" + bytes(64),
        "huge.txt": b"Kingfishers dive for fish. " * 200,
        "good.pdf": text_pdf(["Egrets nest in colonies."]),
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    paths = [tmp_path / name for name in files]

    outcomes = {Path(o.source.removeprefix("file://")).name: o for o in ingest(svc, paths)}

    assert set(outcomes) == set(files)
    expected_reasons = {
        "empty.txt": "the file is empty",
        "junk.txt": "looks binary",
        "corrupt.pdf": "corrupt or unreadable PDF",
        "locked.pdf": "encrypted",
        "scanned.pdf": "no extractable text",
        "photo.png": "unsupported file type '.png'",
        "huge.txt": "over the 4,000-byte limit (RAGOPS_MAX_FILE_BYTES)",
    }
    actual = {}
    for name in files:
        row = document(svc, tmp_path / name)
        actual[name] = (outcomes[name].status, row.status, row.error, row.chunk_count)
        if name in expected_reasons:
            assert outcomes[name].error == row.error
            assert expected_reasons[name] in (row.error or ""), (name, row.error)
            assert chunks(svc, row.id) == []
    assert {n: a[:2] for n, a in actual.items()} == {
        n: ("failed", "failed") if n in expected_reasons else ("ingested", "ready") for n in files
    }
    assert "5,400 bytes" in (actual["huge.txt"][2] or "")
    assert_ready(svc, tmp_path / "good.md", "text/markdown", "Herons")
    assert_ready(svc, tmp_path / "latin1.txt", "text/plain", "latin1")
    assert_ready(svc, tmp_path / "good.pdf", "application/pdf", "good")
    assert lexical_sources(svc, "herons shallow") == [file_source(tmp_path / "good.md")]
    assert lexical_sources(svc, "poissons") == [file_source(tmp_path / "latin1.txt")]


def test_latin1_text_keeps_its_accented_characters(service: Service, tmp_path: Path) -> None:
    path = tmp_path / "cafe.txt"
    path.write_bytes("Le café sert une crème brûlée à la carte.".encode("latin-1"))

    ingest(service, [path])

    [chunk] = chunks(service, document(service, path).id)
    assert chunk["content"] == "Le café sert une crème brûlée à la carte."


def test_changed_file_that_now_fails_is_removed_from_search(
    service: Service, tmp_path: Path
) -> None:
    path = tmp_path / "notes.txt"
    path.write_text(GOOD_TEXT)
    ingest(service, [path])
    row = document(service, path)
    assert lexical_sources(service, "herons") == [file_source(path)]

    path.write_bytes(random.Random(3).randbytes(3000))
    [outcome] = ingest(service, [path])

    assert outcome.status == "failed"
    after = document(service, path)
    assert (after.id, after.status, after.chunk_count) == (row.id, "failed", 0)
    assert "binary" in (after.error or "")
    assert chunks(service, row.id) == []
    assert lexical_sources(service, "herons") == []
    assert scalar(service, "SELECT count(*) FROM documents") == 1


# --- atomic writes -------------------------------------------------------------------


def break_last_vector(monkeypatch: pytest.MonkeyPatch, marker: str) -> None:
    """Hand the write a 383-d vector for the last chunk of a document with `marker`.

    COPY then writes every earlier row of that document before the database rejects the
    last one, so the write fails part-way through.
    """
    save_ready = documents.save_ready

    def broken(
        conn: Any, version: DocumentVersion, chunks: Sequence[Any], vectors: Any, model: str
    ) -> Any:
        if any(marker in chunk.content for chunk in chunks):
            vectors = [*vectors[:-1], vectors[-1][:-1]]
        return save_ready(conn, version, chunks, vectors, model)

    monkeypatch.setattr(documents, "save_ready", broken)


def test_failed_write_leaves_the_previous_version_intact(
    make_service: MakeService, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    svc = make_service(**SMALL_CHUNKS)
    path = tmp_path / "orchard.txt"
    path.write_text(LONG_TEXT)
    ingest(svc, [path])
    row = document(svc, path)
    before = chunks(svc, row.id)
    max_id = scalar(svc, "SELECT max(id) FROM chunks")

    path.write_text(LONG_TEXT.replace("apple", "plum") + " Rhubarb makes this version fail.")
    break_last_vector(monkeypatch, "Rhubarb")
    [outcome] = ingest(svc, [path])

    assert outcome.status == "failed"
    assert "384" in (outcome.error or "")
    assert chunks(svc, row.id) == before
    assert scalar(svc, "SELECT count(*) FROM chunks WHERE id > %s", (max_id,)) == 0
    after = document(svc, path)
    assert (after.status, after.sha256, after.chunk_count) == ("ready", row.sha256, len(before))
    assert "384" in (after.error or "")
    assert lexical_sources(svc, "apple") == [file_source(path)]
    assert lexical_sources(svc, "rhubarb") == []

    # The failure is not mistaken for "unchanged": fixed, the next run writes the new version.
    monkeypatch.undo()
    [retry] = ingest(svc, [path])
    assert retry.status == "ingested"
    assert_ready(svc, path, "text/plain", "orchard")
    assert lexical_sources(svc, "rhubarb") == [file_source(path)]


def test_failed_write_of_a_new_document_is_recorded_and_spares_the_batch(
    service: Service, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    good = tmp_path / "good.txt"
    bad = tmp_path / "bad.txt"
    after = tmp_path / "later.txt"
    good.write_text(GOOD_TEXT)
    bad.write_text("Rhubarb leaves are poisonous.")
    after.write_text("Cormorants dry their wings in the sun.")
    break_last_vector(monkeypatch, "Rhubarb")

    outcomes = ingest(service, [good, bad, after])

    assert [o.status for o in outcomes] == ["ingested", "failed", "ingested"]
    row = document(service, bad)
    assert row.status == "failed"
    assert "384" in (row.error or "")
    assert outcomes[1].error == row.error
    assert chunks(service, row.id) == []
    assert_ready(service, good, "text/plain", "good")
    assert_ready(service, after, "text/plain", "later")


# --- duplicates and concurrency ------------------------------------------------------


def version_of(source: str, data: bytes) -> DocumentVersion:
    return DocumentVersion(collection="default", source=source, size_bytes=len(data))


def test_ingesting_the_same_bytes_twice_never_duplicates_chunks(service: Service) -> None:
    data = b"# Puffins\n\nPuffins nest in burrows on cliffs.\n\nThey eat sand eels.\n"
    source = "s3://bucket/birds/puffins.md"

    first = service.ingestor.ingest_bytes(data, version_of(source, data), "puffins.md")
    ids = [c["id"] for c in chunks(service, first.document_id)]
    second = service.ingestor.ingest_bytes(data, version_of(source, data), "puffins.md")

    assert (first.status, second.status) == ("ingested", "unchanged")
    assert second.document_id == first.document_id
    assert second.chunks == first.chunks == len(ids)
    assert [c["id"] for c in chunks(service, first.document_id)] == ids
    assert scalar(service, "SELECT count(*) FROM chunks") == len(ids)
    assert scalar(service, "SELECT count(*) FROM documents") == 1


def test_same_bytes_seen_without_an_mtime_keep_the_recorded_one(service: Service) -> None:
    data = b"Terns migrate from pole to pole."
    source = "s3://bucket/birds/terns.txt"
    modified = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    first = DocumentVersion("default", source, len(data), source_mtime=modified, etag='"v1"')
    service.ingestor.ingest_bytes(data, first, "terns.txt")

    again = service.ingestor.ingest_bytes(data, version_of(source, data), "terns.txt")

    assert again.status == "unchanged"
    with service.db.pool.connection() as conn:
        row = documents.find_document(conn, "default", source)
    assert row is not None
    assert (row.source_mtime, row.etag) == (modified, '"v1"')


def test_concurrent_ingest_of_one_source_ends_with_one_document_and_one_set_of_chunks(
    service: Service,
) -> None:
    source = "s3://bucket/birds/gannets.txt"
    versions = [
        b"Gannets dive into the sea from great heights.\n\nThey nest on rocky islands.",
        b"Gannets fold their wings before they hit the water.",
    ]
    ingestor = service.ingestor  # open the pool and models before the race
    for _ in range(3):
        barrier = threading.Barrier(2)
        outcomes: list[IngestOutcome] = []

        def run(
            data: bytes,
            barrier: threading.Barrier = barrier,
            outcomes: list[IngestOutcome] = outcomes,
        ) -> None:
            barrier.wait()
            outcomes.append(ingestor.ingest_bytes(data, version_of(source, data), "gannets.txt"))

        threads = [threading.Thread(target=run, args=(data,)) for data in versions]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

        assert sorted(o.status for o in outcomes) in (
            ["ingested", "ingested"],
            ["ingested", "unchanged"],
        ), outcomes
        assert scalar(service, "SELECT count(*) FROM documents") == 1
        with service.db.pool.connection() as conn:
            row = documents.find_document(conn, "default", source)
        assert row is not None
        assert row.status == "ready"
        rows = chunks(service, row.id)
        assert scalar(service, "SELECT count(*) FROM chunks") == len(rows) == row.chunk_count
        assert [c["ordinal"] for c in rows] == list(range(len(rows)))
        winner = next(v for v in versions if hashlib.sha256(v).hexdigest() == row.sha256)
        assert "\n\n".join(c["content"] for c in rows) == winner.decode()
        versions.reverse()
