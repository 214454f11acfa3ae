"""Cross-encoder relevance scores for (query, passage) pairs from an ONNX graph."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from ragops.models.manifest import RerankerSpec
from ragops.models.runtime import (
    BatchRunner,
    load_tokenizer,
    open_session,
    worker_count,
)

Scores = npt.NDArray[np.float32]


# Pairs per run: one is fastest (see models.runtime), and each pair's score is its own.
BATCH_SIZE = 1


class Reranker:
    """Scores how well each passage answers a query; higher is better."""

    def __init__(self, model_dir: Path, spec: RerankerSpec, threads: int = 0):
        self.spec = spec
        self.model_id = spec.id
        self.tokenizer = load_tokenizer(model_dir, spec.tokenizer)
        self._runner = BatchRunner(worker_count(threads))
        self._session = open_session(model_dir, spec.model, threads=1)
        self._input_names = {i.name for i in self._session.get_inputs()}
        self._cls_id = self.tokenizer.token_to_id("[CLS]")
        self._sep_id = self.tokenizer.token_to_id("[SEP]")

    def score(
        self,
        query: str,
        passages: Sequence[str],
        max_tokens: int = 256,
        batch_size: int = BATCH_SIZE,
    ) -> Scores:
        """Raw logits, one per passage, in input order."""
        out = np.empty(len(passages), dtype=np.float32)
        if not passages:
            return out
        limit = min(max_tokens, self.spec.max_seq_length)
        query_ids = self.tokenizer.encode(query, add_special_tokens=False).ids[: limit // 2]
        room = max(limit - len(query_ids) - 3, 1)
        bodies = [
            enc.ids[:room]
            for enc in self.tokenizer.encode_batch(list(passages), add_special_tokens=False)
        ]
        order = sorted(range(len(bodies)), key=lambda i: len(bodies[i]))
        # At least one batch per worker, so a single query's pairs use every core.
        size = min(batch_size, -(-len(order) // self._runner.workers))
        batches = [order[start : start + size] for start in range(0, len(order), size)]
        results = self._runner.map(
            lambda batch: self._run(query_ids, [bodies[i] for i in batch]), batches
        )
        for batch, scores in zip(batches, results, strict=True):
            out[batch] = scores
        return out

    def _run(self, query_ids: list[int], bodies: list[list[int]]) -> Scores:
        width = len(query_ids) + max(len(b) for b in bodies) + 3
        input_ids = np.zeros((len(bodies), width), dtype=np.int64)
        mask = np.zeros_like(input_ids)
        types = np.zeros_like(input_ids)
        first = [self._cls_id, *query_ids, self._sep_id]
        for row, body in enumerate(bodies):
            seq = [*first, *body, self._sep_id]
            input_ids[row, : len(seq)] = seq
            mask[row, : len(seq)] = 1
            types[row, len(first) : len(seq)] = 1
        feeds = {"input_ids": input_ids, "attention_mask": mask}
        if "token_type_ids" in self._input_names:
            feeds["token_type_ids"] = types
        (logits,) = self._session.run(None, feeds)
        return np.asarray(logits, dtype=np.float32).reshape(len(bodies), -1)[:, 0]


def relevance(logits: Scores) -> Scores:
    """Logits as probabilities in [0, 1] (the model was trained with a sigmoid)."""
    return (1.0 / (1.0 + np.exp(-logits))).astype(np.float32)
