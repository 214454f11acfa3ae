"""ONNX Runtime sessions and tokenizers: the only model code that runs when serving."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ragops.errors import ModelsNotBuiltError
from ragops.models.manifest import ModelFile

if TYPE_CHECKING:
    import onnxruntime
    from tokenizers import Tokenizer


def open_session(model_dir: Path, entry: ModelFile, threads: int) -> onnxruntime.InferenceSession:
    """An ONNX Runtime CPU session with every graph optimization on."""
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
        str(path), sess_options=options, providers=["CPUExecutionProvider"]
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
