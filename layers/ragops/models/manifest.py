"""The model manifest: what was built, from where, and the checksum of every file."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ValidationError

from ragops.errors import ModelsNotBuiltError

MANIFEST_NAME = "manifest.json"
FORMAT_VERSION = 1


class ModelFile(BaseModel):
    path: str
    sha256: str
    bytes: int


class EmbedderVariant(BaseModel):
    """One ONNX graph of the embedder (fp32 or int8)."""

    model: ModelFile
    quantization: Literal["none", "int8-dynamic"]
    # Attention without a padding mask: the graph runs one text a run, whatever the batch size.
    unpadded: bool = False


class EmbedderSpec(BaseModel):
    id: str
    source: str
    dimension: int
    max_seq_length: int
    pooling: Literal["mean", "cls"]
    normalize: bool
    query_prefix: str = ""
    output: str = "sentence_embedding"
    tokenizer: ModelFile
    variants: dict[str, EmbedderVariant]


class RerankerSpec(BaseModel):
    id: str
    source: str
    max_seq_length: int
    quantization: Literal["none", "int8-dynamic"]
    model: ModelFile
    tokenizer: ModelFile


class Manifest(BaseModel):
    format: int = FORMAT_VERSION
    built_with: dict[str, str]
    build_key: str
    embedder: EmbedderSpec
    reranker: RerankerSpec


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def describe_file(model_dir: Path, path: Path) -> ModelFile:
    return ModelFile(
        path=path.relative_to(model_dir).as_posix(),
        sha256=sha256_file(path),
        bytes=path.stat().st_size,
    )


def write_manifest(model_dir: Path, manifest: Manifest) -> Path:
    target = model_dir / MANIFEST_NAME
    tmp = target.with_suffix(".tmp")
    tmp.write_text(manifest.model_dump_json(indent=2) + "\n")
    tmp.replace(target)
    return target


def read_manifest(model_dir: Path) -> Manifest:
    """The manifest of a model folder, or a ModelsNotBuiltError saying how to build it."""
    path = model_dir / MANIFEST_NAME
    if not path.is_file():
        raise ModelsNotBuiltError(
            f"no model manifest at {path}; build the models with `ragops models build` "
            "(or `make models`), or point RAGOPS_MODEL_DIR at a built model folder"
        )
    try:
        manifest = Manifest.model_validate(json.loads(path.read_text()))
    except (ValueError, ValidationError) as exc:
        raise ModelsNotBuiltError(
            f"model manifest {path} is unreadable ({exc}); rebuild with `ragops models build`"
        ) from exc
    if manifest.format != FORMAT_VERSION:
        raise ModelsNotBuiltError(
            f"model manifest {path} has format {manifest.format}, expected {FORMAT_VERSION}; "
            "rebuild with `ragops models build`"
        )
    return manifest


def verify_files(model_dir: Path, files: list[ModelFile]) -> None:
    """Check size and sha256 of each file against the manifest."""
    for entry in files:
        path = model_dir / entry.path
        if not path.is_file():
            raise ModelsNotBuiltError(f"model file {path} is missing; run `ragops models build`")
        if path.stat().st_size != entry.bytes or sha256_file(path) != entry.sha256:
            raise ModelsNotBuiltError(
                f"model file {path} does not match its manifest checksum; "
                "run `ragops models build --force`"
            )
