"""ONNX models: the embedder and the cross-encoder, loaded from a built model folder."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from ragops.models.embedder import Embedder
from ragops.models.manifest import Manifest, read_manifest
from ragops.models.reranker import Reranker
from ragops.settings import Settings


class Models:
    """The built models of one folder; each session opens once, on first use or prefetch."""

    def __init__(self, model_dir: Path, embedder_variant: str, threads: int = 0):
        self.model_dir = model_dir
        self.embedder_variant = embedder_variant
        self.threads = threads
        self.manifest: Manifest = read_manifest(model_dir)
        self._lock = threading.Lock()
        self._loads: dict[str, Future[Any]] = {}

    @classmethod
    def from_settings(cls, settings: Settings) -> Models:
        return cls(settings.models_path, settings.embedder_variant, settings.onnx_threads)

    @property
    def embedder_id(self) -> str:
        return f"{self.manifest.embedder.id}@{self.embedder_variant}"

    @property
    def dimension(self) -> int:
        return self.manifest.embedder.dimension

    @property
    def embedder(self) -> Embedder:
        embedder: Embedder = self._load("embedder", self._open_embedder).result()
        return embedder

    @property
    def reranker(self) -> Reranker:
        reranker: Reranker = self._load("reranker", self._open_reranker).result()
        return reranker

    def prefetch(self) -> None:
        """Open both sessions in the background, side by side (a cold start waits once)."""
        self._load("embedder", self._open_embedder, background=True)
        self._load("reranker", self._open_reranker, background=True)

    def _load(
        self, name: str, open_model: Callable[[], Any], background: bool = False
    ) -> Future[Any]:
        with self._lock:
            future = self._loads.get(name)
            if future is None:
                if background:
                    future = _loader.submit(open_model)
                else:
                    future = Future()
                    future.set_running_or_notify_cancel()
                    try:
                        future.set_result(open_model())
                    except BaseException as exc:
                        future.set_exception(exc)
                self._loads[name] = future
        return future

    def _open_embedder(self) -> Embedder:
        embedder = Embedder(
            self.model_dir, self.manifest.embedder, self.embedder_variant, self.threads
        )
        embedder.embed(["warm up"])  # the first run allocates; do it before a request waits
        return embedder

    def _open_reranker(self) -> Reranker:
        reranker = Reranker(self.model_dir, self.manifest.reranker, self.threads)
        reranker.score("warm up", ["warm up"])
        return reranker


_loader = ThreadPoolExecutor(2, thread_name_prefix="model-load")
