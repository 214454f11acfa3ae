"""Sentence embeddings from the exported ONNX graph, batched by length to avoid padding."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Future
from pathlib import Path

import numpy as np
import numpy.typing as npt

from ragops.errors import ModelsNotBuiltError
from ragops.models.manifest import EmbedderSpec
from ragops.models.runtime import BatchRunner, load_tokenizer, open_session, worker_count

Vectors = npt.NDArray[np.float32]


# Texts per run (see models.runtime) for graphs that take a padding mask. An unpadded graph
# (the int8 MiniLM as built) runs one text a run: no padding, and attention without a mask.
# Measured on two cores against the previous int8 graph at four a run: 0.99x and 1.08x the
# chunks/s in two runs of alternating rounds, with vectors closer to fp32.
BATCH_SIZE = 4


Feeds = dict[str, npt.NDArray[np.int64]]


def encoder_feeds(
    pieces: Sequence[Sequence[int]], cls_id: int, sep_id: int, input_names: set[str]
) -> Feeds:
    """One run's inputs: each text's word pieces between [CLS] and [SEP], padded to the
    longest, with the attention mask (and token types, if the graph takes them)."""
    width = max(len(p) for p in pieces) + 2
    input_ids = np.zeros((len(pieces), width), dtype=np.int64)
    mask = np.zeros((len(pieces), width), dtype=np.int64)
    for row, body in enumerate(pieces):
        seq = [cls_id, *body, sep_id]
        input_ids[row, : len(seq)] = seq
        mask[row, : len(seq)] = 1
    feeds = {"input_ids": input_ids, "attention_mask": mask}
    if "token_type_ids" in input_names:
        feeds["token_type_ids"] = np.zeros_like(input_ids)
    return feeds


class PendingVectors:
    """Vectors still being computed: `result()` waits and returns them in input order."""

    def __init__(self, out: Vectors, batches: list[list[int]], futures: list[Future[Vectors]]):
        self._out = out
        self._batches = batches
        self._futures = futures

    def result(self) -> Vectors:
        for batch, future in zip(self._batches, self._futures, strict=True):
            self._out[batch] = future.result()
        return self._out


class Embedder:
    """Turns texts into unit-length vectors with the manifest's embedding model."""

    def __init__(self, model_dir: Path, spec: EmbedderSpec, variant: str, threads: int = 0):
        if variant not in spec.variants:
            raise ModelsNotBuiltError(
                f"embedder variant {variant!r} was not built (have: {sorted(spec.variants)}); "
                "set RAGOPS_EMBEDDER_VARIANT or rebuild with `ragops models build`"
            )
        self.spec = spec
        self.variant = variant
        self.model_id = f"{spec.id}@{variant}"
        # Without a padding mask, texts of different lengths cannot share a run.
        self.unpadded = spec.variants[variant].unpadded
        self.dimension = spec.dimension
        self.max_tokens = spec.max_seq_length
        self.tokenizer = load_tokenizer(model_dir, spec.tokenizer)
        self._runner = BatchRunner(worker_count(threads))
        self._session = open_session(model_dir, spec.variants[variant].model, threads=1)
        self._input_names = {i.name for i in self._session.get_inputs()}
        self._cls_id = self.tokenizer.token_to_id("[CLS]")
        self._sep_id = self.tokenizer.token_to_id("[SEP]")

    def count_tokens(self, text: str) -> int:
        """Word pieces of `text`, special tokens excluded."""
        return len(self.tokenizer.encode(text, add_special_tokens=False).ids)

    def embed(
        self,
        texts: Sequence[str],
        batch_size: int = BATCH_SIZE,
        pieces: Sequence[Sequence[int]] | None = None,
    ) -> Vectors:
        """One normalized vector per text, in input order.

        `pieces`, the texts' word pieces (special tokens excluded) when the caller has
        them already, saves tokenizing the texts again. A single run (a query) runs in
        the calling thread: handing it to a worker would only add a thread switch.
        """
        out, batches, run = self._plan(texts, batch_size, pieces)
        for batch, vectors in zip(batches, self._runner.map(run, batches), strict=True):
            out[batch] = vectors
        return out

    def start(
        self,
        texts: Sequence[str],
        batch_size: int = BATCH_SIZE,
        pieces: Sequence[Sequence[int]] | None = None,
    ) -> PendingVectors:
        """Queue the texts' batches on the model's workers; `result()` waits for them."""
        out, batches, run = self._plan(texts, batch_size, pieces)
        return PendingVectors(out, batches, self._runner.submit(run, batches))

    def _plan(
        self,
        texts: Sequence[str],
        batch_size: int,
        pieces: Sequence[Sequence[int]] | None,
    ) -> tuple[Vectors, list[list[int]], Callable[[list[int]], Vectors]]:
        """The output array, the runs (lists of text positions) and what embeds one run."""
        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        if pieces is None:
            encodings = self.tokenizer.encode_batch(list(texts), add_special_tokens=False)
            pieces = [enc.ids for enc in encodings]
        body = self.max_tokens - 2
        ids = [list(p[:body]) for p in pieces]
        if self.unpadded:
            batch_size = 1
        # Sorting by length makes each batch pad to nearly its own length.
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        batches = [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
        return out, batches, lambda batch: self._run([ids[i] for i in batch])

    def embed_query(self, text: str) -> Vectors:
        vector: Vectors = self.embed([self.spec.query_prefix + text])[0]
        return vector

    def _run(self, pieces: list[list[int]]) -> Vectors:
        feeds = encoder_feeds(pieces, self._cls_id, self._sep_id, self._input_names)
        (output,) = self._session.run([self.spec.output], feeds)
        vectors: Vectors = np.asarray(output, dtype=np.float32)
        if vectors.ndim == 3:
            vectors = self._pool(vectors, feeds["attention_mask"])
        if self.spec.normalize:
            norms = np.linalg.norm(vectors, axis=1, keepdims=True)
            vectors = vectors / np.maximum(norms, 1e-12)
        return vectors

    def _pool(self, token_vectors: Vectors, mask: npt.NDArray[np.int64]) -> Vectors:
        """Pool a graph that returns per-token vectors (e.g. a plain BERT export)."""
        if self.spec.pooling == "cls":
            first: Vectors = token_vectors[:, 0, :]
            return first
        weights = mask[:, :, None].astype(np.float32)
        summed = (token_vectors * weights).sum(axis=1)
        mean: Vectors = summed / np.maximum(weights.sum(axis=1), 1.0)
        return mean
