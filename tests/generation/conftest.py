"""Fixtures for generation: the real local LLM server, the fault-injecting one, a corpus."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from ragops.db.documents import DocumentVersion
from ragops.dev.local_llm import smollm2_gguf
from ragops.errors import ConfigurationError
from ragops.service import Service
from tests.generation.servers import FaultServer, LocalLLM, llama_server

# Small documents, each fact in one of them; markdown sections become chunks.
CORPUS = {
    "s3://docs/lighthouse.md": "# Kestrel Point lighthouse\n\nThe Kestrel Point lighthouse was "
    "built in 1887. Its lamp can be seen 22 nautical miles out at sea.\n\n## Keeper\n\nThe "
    "keeper, Ada Morrow, climbs the 131 steps of the tower every evening to light the lamp.\n",
    "s3://docs/bakery.md": "# Juniper Street bakery\n\nThe bakery on Juniper Street opens at 6 "
    "am. Its rye bread is baked in a wood-fired oven and sold out by noon.\n\n## Prices\n\nA "
    "loaf of rye costs 4 euros; croissants cost 1.50 euros each.\n",
    "s3://docs/volcano.md": "# Mount Ferrow\n\nMount Ferrow last erupted in 1923. Its crater "
    "lake is 300 metres across and the water is acidic.\n",
    "s3://docs/network.md": "# Office network\n\nThe office Wi-Fi network is called Heron-5G. "
    "Guests get a password from reception that changes every Monday.\n",
}


@pytest.fixture(scope="session")
def local_llm() -> Iterator[LocalLLM]:
    """SmolLM2-135M-Instruct behind llama.cpp's OpenAI-compatible server, for the session."""
    try:
        model = smollm2_gguf()
    except ConfigurationError as exc:
        pytest.fail(str(exc))
    with llama_server(model) as server:
        yield server


@pytest.fixture(scope="session")
def fault_server() -> Iterator[FaultServer]:
    server = FaultServer()
    yield server
    server.close()


def ingest_corpus(service: Service) -> dict[str, uuid.UUID]:
    """Ingest CORPUS into the service's database: source -> document id."""
    ids = {}
    for source, text in CORPUS.items():
        data = text.encode()
        version = DocumentVersion(
            collection="default", source=source, size_bytes=len(data), metadata={}
        )
        outcome = service.ingestor.ingest_bytes(data, version, name="doc.md")
        assert outcome.status == "ingested", outcome.error
        assert outcome.document_id is not None
        ids[source] = outcome.document_id
    return ids


@pytest.fixture
def corpus(service: Service) -> dict[str, uuid.UUID]:
    """The corpus ingested into the test's fresh database: source -> document id."""
    return ingest_corpus(service)
