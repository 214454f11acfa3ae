"""ONNX models: the embedder and the cross-encoder, loaded from a built model folder."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

from ragops.models.embedder import Embedder
from ragops.models.manifest import Manifest, read_manifest
from ragops.models.reranker import Reranker
from ragops.settings import Settings


class Models:
    """The built models of one folder; each session opens on first use, once."""

    def __init__(self, model_dir: Path, embedder_variant: str, threads: int = 0):
        self.model_dir = model_dir
        self.embedder_variant = embedder_variant
        self.threads = threads
        self.manifest: Manifest = read_manifest(model_dir)

    @classmethod
    def from_settings(cls, settings: Settings) -> Models:
        return cls(settings.models_path, settings.embedder_variant, settings.onnx_threads)

    @property
    def embedder_id(self) -> str:
        return f"{self.manifest.embedder.id}@{self.embedder_variant}"

    @property
    def dimension(self) -> int:
        return self.manifest.embedder.dimension

    @cached_property
    def embedder(self) -> Embedder:
        return Embedder(self.model_dir, self.manifest.embedder, self.embedder_variant, self.threads)

    @cached_property
    def reranker(self) -> Reranker:
        return Reranker(self.model_dir, self.manifest.reranker, self.threads)
