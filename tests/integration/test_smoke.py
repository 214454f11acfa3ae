from __future__ import annotations

from pathlib import Path

from ragops.service import Service


def test_ingested_file_is_found_by_search(service: Service, tmp_path: Path) -> None:
    doc = tmp_path / "note.md"
    doc.write_text("# Cats\n\nThe cat sat on the mat and purred loudly.\n")
    outcomes = list(service.ingestor.ingest_paths([doc], "default"))
    assert [o.status for o in outcomes] == ["ingested"]
    results = service.searcher.search(service.searcher.request("where did the cat sit?")).results
    assert results and results[0].source == doc.resolve().as_uri()
