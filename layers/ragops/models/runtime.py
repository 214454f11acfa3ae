"""ONNX Runtime sessions and tokenizers: the only model code that runs when serving."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from ragops.errors import ModelsNotBuiltError
from ragops.models.manifest import ModelFile

if TYPE_CHECKING:
    import onnxruntime
    from tokenizers import Tokenizer


# ONNX Runtime's CPU SkipLayerNormalization kernel runs about 3.5x slower than the Add and
# LayerNormalization it replaces (measured with onnxruntime 1.31 on [32, 90, 384] inputs):
# left unfused, the int8 reranker runs about 12% faster and the int8 embedder about 10%.
UNFUSED_SKIP_LAYER_NORM = ("SkipLayerNormFusion",)
# Small runs are fastest for these int8 encoders on CPU: a run's activations stay in the
# core's own cache (a [32, 128, 1536] float tensor is 25 MB against 1.25 MB of L2 a core).
# Measured on two cores: the embedder's chunks/s at 4 texts a run is 1.17x that at 32 (the
# unpadded int8 embedder now runs one); the reranker scores 24 pairs in 304 ms one pair a
# run, 554 ms sixteen a run.

T = TypeVar("T")
R = TypeVar("R")


def worker_count(threads: int) -> int:
    """Concurrent runs per model: the setting, or every core when it is 0."""
    return threads if threads > 0 else os.cpu_count() or 1


class BatchRunner:
    """Runs a model's batches concurrently, one single-threaded session run per core.

    For encoder models of this size, whole batches side by side keep the cores busier
    than one batch split across threads op by op (measured: about 25% more chunks/s on
    two cores). ONNX Runtime sessions are safe to run from several threads at once.
    """

    def __init__(self, workers: int):
        self.workers = workers
        self._pool = ThreadPoolExecutor(workers, "onnx") if workers > 1 else None

    def map(self, run: Callable[[T], R], batches: Sequence[T]) -> list[R]:
        if self._pool is None or len(batches) < 2:
            return [run(batch) for batch in batches]
        return list(self._pool.map(run, batches))

    def submit(self, run: Callable[[T], R], batches: Sequence[T]) -> list[Future[R]]:
        """Queue the batches and return at once; with one worker they run here, now.

        Work queued before earlier work finishes keeps every core busy across calls.
        """
        if self._pool is None:
            return [_ran(run, batch) for batch in batches]
        return [self._pool.submit(run, batch) for batch in batches]


def _ran(run: Callable[[T], R], batch: T) -> Future[R]:
    done: Future[R] = Future()
    try:
        done.set_result(run(batch))
    except Exception as exc:
        done.set_exception(exc)
    return done


def open_session(model_dir: Path, entry: ModelFile, threads: int) -> onnxruntime.InferenceSession:
    """An ONNX Runtime CPU session with every graph optimization on but the slower fusion."""
    import onnxruntime

    path = model_dir / entry.path
    if not path.is_file() or path.stat().st_size != entry.bytes:
        raise ModelsNotBuiltError(
            f"model file {path} is missing or not the one in the manifest; "
            "run `ragops models build`"
        )
    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    # Spinning worker threads burn CPU between small requests on shared 2-core boxes.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return onnxruntime.InferenceSession(
        str(path),
        sess_options=options,
        providers=["CPUExecutionProvider"],
        disabled_optimizers=list(UNFUSED_SKIP_LAYER_NORM),
    )


def load_tokenizer(model_dir: Path, entry: ModelFile) -> Tokenizer:
    from tokenizers import Tokenizer

    path = model_dir / entry.path
    if not path.is_file():
        raise ModelsNotBuiltError(f"tokenizer {path} is missing; run `ragops models build`")
    tokenizer = Tokenizer.from_file(str(path))
    tokenizer.no_padding()
    tokenizer.no_truncation()
    return tokenizer
