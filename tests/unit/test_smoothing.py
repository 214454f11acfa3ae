"""Activation smoothing and unpadded attention on a small encoder-shaped graph."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from ragops.models.smoothing import drop_padding_mask, smooth_products  # noqa: E402

WIDTH, HEADS, WIDE = 8, 2, 16
OUTLIER = 3  # the hidden channel that runs far wider than the others


def _encoder() -> Any:
    """LayerNorm -> Q/K/V -> attention (with a padding mask) -> output product -> Relu ->
    feed-forward pair, the shapes of one BERT layer in miniature."""
    rng = np.random.default_rng(0)

    def weight(name: str, rows: int, cols: int) -> Any:
        return numpy_helper.from_array(rng.normal(0, 0.3, (rows, cols)).astype(np.float32), name)

    gamma = np.ones(WIDTH, np.float32)
    gamma[OUTLIER] = 12.0
    inits = [
        numpy_helper.from_array(gamma, "gamma"),
        numpy_helper.from_array(np.zeros(WIDTH, np.float32), "beta"),
        weight("wq", WIDTH, WIDTH),
        weight("wk", WIDTH, WIDTH),
        weight("wv", WIDTH, WIDTH),
        numpy_helper.from_array(rng.normal(0, 0.1, 3 * WIDTH).astype(np.float32), "qkv_bias"),
        weight("wo", WIDTH, WIDTH),
        weight("w1", WIDTH, WIDE),
        weight("w2", WIDE, WIDTH),
        numpy_helper.from_array(np.array([1], np.int64), "axis"),
    ]
    nodes = [
        helper.make_node("LayerNormalization", ["x", "gamma", "beta"], ["ln"], axis=-1),
        helper.make_node("MatMul", ["ln", "wq"], ["q"]),
        helper.make_node("MatMul", ["ln", "wk"], ["k"]),
        helper.make_node("MatMul", ["ln", "wv"], ["v"]),
        helper.make_node("Cast", ["mask"], ["mask32"], to=TensorProto.INT32),
        helper.make_node("ReduceSum", ["mask32", "axis"], ["lengths"], keepdims=0),
        helper.make_node(
            "MultiHeadAttention",
            ["q", "k", "v", "qkv_bias", "lengths"],
            ["context"],
            domain="com.microsoft",
            num_heads=HEADS,
        ),
        helper.make_node("MatMul", ["context", "wo"], ["attended"]),
        helper.make_node("Add", ["attended", "ln"], ["residual"]),
        helper.make_node("MatMul", ["residual", "w1"], ["up"]),
        helper.make_node("Relu", ["up"], ["active"]),
        helper.make_node("MatMul", ["active", "w2"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "encoder",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["B", "S", WIDTH]),
            helper.make_tensor_value_info("mask", TensorProto.INT64, ["B", "S"]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["B", "S", WIDTH])],
        inits,
    )
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
    return helper.make_model(graph, opset_imports=opsets, ir_version=9)


def _run(model: Any, feeds: dict[str, np.ndarray], outputs: list[str] | None = None) -> Any:
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    for name in outputs or []:
        probe.graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, None))
    session = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {k: v for k, v in feeds.items() if k in _inputs(model)})


def _inputs(model: Any) -> set[str]:
    return {i.name for i in model.graph.input}


def _feeds(seed: int, length: int = 5) -> dict[str, np.ndarray]:
    x = np.random.default_rng(seed).normal(0, 1, (1, length, WIDTH)).astype(np.float32)
    return {"x": x, "mask": np.ones((1, length), np.int64)}


def test_smoothing_keeps_the_function_and_evens_out_the_channels() -> None:
    original = _encoder()
    smoothed = _encoder()
    calibration = [_feeds(seed) for seed in range(8)]
    assert smooth_products(smoothed, calibration) == 4  # ln, context, residual, active

    for seed in (100, 101):
        before = _run(original, _feeds(seed))[0]
        after = _run(smoothed, _feeds(seed))[0]
        assert np.allclose(before, after, rtol=1e-4, atol=1e-4)
    # The weights themselves changed: the function is kept by the scales, not by chance.
    changed = {i.name: numpy_helper.to_array(i) for i in smoothed.graph.initializer}
    assert not np.allclose(changed["wq"], numpy_helper.to_array(original.graph.initializer[2]))

    # The LayerNorm output's outlier channel no longer dominates what the products read.
    (ln,) = _run(original, _feeds(7), ["ln"])[1:]
    (evened,) = _run(smoothed, _feeds(7), ["ln_smoothed"])[1:]

    def spread(values: np.ndarray) -> float:
        widest = np.abs(values.reshape(-1, WIDTH)).max(axis=0)
        return float(widest.max() / np.median(widest))

    assert spread(ln) > 5
    assert spread(evened) < spread(ln) / 2


def test_the_attention_output_is_smoothed_through_the_value_projection() -> None:
    model = _encoder()
    smooth_products(model, [_feeds(seed) for seed in range(4)])
    muls = [node for node in model.graph.node if node.op_type == "Mul"]
    # One Mul for each input not produced by attention; the context's scale is folded into
    # the value weights and bias, which the graph reads as they were.
    assert sorted(node.input[0] for node in muls) == ["active", "ln", "residual"]
    context_reader = next(n for n in model.graph.node if n.output == ["attended"])
    assert context_reader.input[0] == "context"


def test_smoothing_needs_a_calibration_run() -> None:
    with pytest.raises(ValueError, match="at least one calibration run"):
        smooth_products(_encoder(), [])


def test_dropping_the_padding_mask_keeps_unpadded_results_and_removes_its_nodes() -> None:
    original = _encoder()
    unpadded = _encoder()
    assert drop_padding_mask(unpadded) == 1
    attention = next(n for n in unpadded.graph.node if n.op_type == "MultiHeadAttention")
    assert list(attention.input) == ["q", "k", "v", "qkv_bias"]
    # The mask's Cast and ReduceSum fed nothing else: they are gone, and the input with them.
    assert not {"Cast", "ReduceSum"} & {n.op_type for n in unpadded.graph.node}
    assert "axis" not in {i.name for i in unpadded.graph.initializer}
    feeds = _feeds(3, length=9)
    assert np.allclose(_run(original, feeds)[0], _run(unpadded, feeds)[0], atol=1e-5)
    # A second call finds nothing left to drop.
    assert drop_padding_mask(unpadded) == 0
