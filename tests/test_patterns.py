"""Patterns of real-world models, each on a small model that has it (issue: real-world ONNX)."""

import collections
import json

import models
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import amct_nb as an
from amct_nb.ir import make_session


def run(m, feed):
    return make_session(m).run(None, feed)


def test_inf_mask_tensor_stays_float_with_reason():
    """An attention-style mask that puts -inf into the scores by design: never an infinite scale."""
    r = np.random.default_rng(0)
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h"], name="proj"),
        helper.make_node("Where", ["keep", "h", "neg_inf"], ["masked"], name="apply_mask"),
        helper.make_node("Concat", ["masked", "h"], ["cat"], name="concat", axis=-1),
        helper.make_node("Softmax", ["cat"], ["p"], name="softmax", axis=-1),
        helper.make_node("MatMul", ["p", "w2"], ["y"], name="out"),
    ]
    m = models._model(nodes,
                      [models.f32("x", ["N", 16]), helper.make_tensor_value_info("keep", TensorProto.BOOL, ["N", 32])],
                      [models.f32("y", ["N", 8])],
                      [models.w("w1", r.normal(0, .3, (16, 32))), models.w("w2", r.normal(0, .3, (64, 8))),
                       models.w("neg_inf", -np.inf)])
    feeds = []
    for _i in range(16):
        keep = np.ones((4, 32), bool)
        keep[:, 20:] = False
        feeds.append({"x": r.normal(size=(4, 16)).astype(np.float32), "keep": keep})
    res = an.quantize(m, feeds, progress=False)
    scales = [t.scale for t in res.plan.tensors.values()]
    assert all(np.isfinite(s) and s > 0 for s in scales)
    for t in ("masked", "cat"):  # quant points (Concat neighbours) holding -inf: left float, with the reason
        assert t not in res.plan.tensors and "non-finite" in res.plan.float_tensors.get(t, "")
    assert "p" in res.plan.tensors
    y_ref, y_q = run(m, feeds[0])[0], run(res.deploy_model, feeds[0])[0]
    assert np.isfinite(y_q).all() and np.abs(y_q - y_ref).max() < 0.1 * np.abs(y_ref).max()


def test_huge_finite_mask_left_float_by_the_safety_net():
    """-3.4e38 instead of -inf (MiniLM-style): finite, but one grid cannot hold it and the scores."""
    r = np.random.default_rng(1)
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h"], name="proj"),
        helper.make_node("Add", ["h", "mask"], ["masked"], name="apply_mask"),
        helper.make_node("MatMul", ["masked", "w2"], ["y"], name="out"),
    ]
    m = models._model(nodes, [models.f32("x", ["N", 16]), models.f32("mask", ["N", 32])], [models.f32("y", ["N", 8])],
                      [models.w("w1", r.normal(0, .3, (16, 32))), models.w("w2", r.normal(0, .3, (32, 8)))])
    feeds = []
    for i in range(16):
        mask = np.zeros((4, 32), np.float32)
        mask[:, 30:] = -3.4e38 if i % 2 else 0.0
        feeds.append({"x": r.normal(size=(4, 16)).astype(np.float32), "mask": mask})
    res = an.quantize(m, feeds, progress=False)
    assert "dB SQNR" in res.plan.float_tensors.get("masked", "") or "dB SQNR" in res.plan.float_tensors.get("mask", "")
    off = an.quantize(m, feeds, an.QuantConfig(safety_net=False), progress=False)
    assert "masked" in off.plan.tensors  # without the net it would have been quantized


def test_concat_detection_head_keeps_small_range_channels():
    """Boxes in pixels concatenated with probabilities in one output (YOLO-style head)."""
    r = np.random.default_rng(2)
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["f"], name="backbone", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["f"], ["fr"], name="relu"),
        helper.make_node("Conv", ["fr", "wb", "bb"], ["box"], name="box_head"),
        helper.make_node("Conv", ["fr", "wc"], ["cls_logit"], name="cls_head"),
        helper.make_node("Sigmoid", ["cls_logit"], ["cls"], name="sigmoid"),
        helper.make_node("Concat", ["box", "cls"], ["cat"], name="concat", axis=1),
        helper.make_node("Transpose", ["cat"], ["y"], name="to_nhwc", perm=[0, 2, 3, 1]),
    ]
    inits = [models.w("w", r.normal(0, .3, (32, 8, 3, 3))), models.w("wb", r.normal(0, 20, (4, 32, 1, 1))),
             models.w("bb", np.full(4, 320.0)), models.w("wc", r.normal(0, .3, (6, 32, 1, 1)))]
    m = models._model(nodes, [models.f32("x", ["N", 8, 16, 16])], [models.f32("y", ["N", 16, 16, 10])], inits)
    cal = models.images(16, (8, 16, 16))
    res = an.quantize(m, cal, progress=False)
    ev = models.images(4, (8, 16, 16), seed=9)
    y_ref, y_q = run(m, {"x": ev})[0], run(res.deploy_model, {"x": ev})[0]
    prob_err = np.abs(y_q[..., 4:] - y_ref[..., 4:]).max()
    assert prob_err < 0.05, prob_err  # probabilities survive
    assert "small-range channels" in res.plan.float_tensors.get("cat", "")
    off = an.quantize(m, cal, an.QuantConfig(safety_net=False), progress=False)
    y_off = run(off.deploy_model, {"x": ev})[0]
    assert np.abs(y_off[..., 4:] - y_ref[..., 4:]).max() > 0.3  # without the net: probabilities destroyed
    rep = res.report()
    assert rep["output_error"]["y"]["cosine"] > 0.999


def test_a_layer_in_an_if_branch_is_quantized_with_the_main_graph():
    r = np.random.default_rng(3)
    then_g = helper.make_graph([helper.make_node("MatMul", ["x", "wt"], ["yt"], name="inner_mm")], "then", [],
                               [models.f32("yt", ["N", 4])], [models.w("wt", r.normal(size=(8, 4)))])
    else_g = helper.make_graph([helper.make_node("Identity", ["h"], ["ye"], name="inner_id")], "else", [],
                               [models.f32("ye", ["N", 4])])
    nodes = [
        helper.make_node("MatMul", ["x", "w0"], ["h"], name="outer_mm"),
        helper.make_node("If", ["cond"], ["y"], name="branch", then_branch=then_g, else_branch=else_g),
    ]
    g = helper.make_graph(nodes, "g",
                          [models.f32("x", ["N", 8]), helper.make_tensor_value_info("cond", TensorProto.BOOL, [])],
                          [models.f32("y", ["N", 4])], [models.w("w0", r.normal(size=(8, 4)))])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    feeds = [{"x": r.normal(size=(2, 8)).astype(np.float32), "cond": np.array(i % 2 == 0)} for i in range(8)]
    res = an.quantize(m, feeds, progress=False)
    assert {"outer_mm", "inner_mm"} <= set(res.quantized_layers)  # the branch's MatMul too (tests/test_subgraphs.py)
    assert not res.report()["unsupported"]
    onnx.checker.check_model(res.deploy_model)
    for f in feeds[:2]:
        assert np.allclose(run(res.deploy_model, f)[0], run(m, f)[0], atol=0.1)


def test_lstm_left_float_and_int64_inputs():
    r = np.random.default_rng(4)
    H, D = 8, 6
    nodes = [
        helper.make_node("Gather", ["emb", "ids"], ["e"], name="embed"),
        helper.make_node("LSTM", ["e", "W", "R"], ["yl"], name="lstm", hidden_size=H),
        helper.make_node("Squeeze", ["yl", "axes"], ["ys"], name="squeeze"),
        helper.make_node("MatMul", ["ys", "wo"], ["y"], name="proj"),
    ]
    inits = [models.w("emb", r.normal(size=(50, D))), models.w("W", r.normal(0, .3, (1, 4 * H, D))),
             models.w("R", r.normal(0, .3, (1, 4 * H, H))), models.w("wo", r.normal(0, .3, (H, 3))),
             numpy_helper.from_array(np.array([1], np.int64), "axes")]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("ids", TensorProto.INT64, ["T", "N"])],
                          [models.f32("y", ["T", "N", 3])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    feeds = [{"ids": r.integers(0, 50, (5, 2)).astype(np.int64)} for _ in range(8)]
    res = an.quantize(m, feeds, progress=False)
    assert res.quantized_layers == ["proj"]
    assert any(u["op_type"] == "LSTM" and "recurrent" in u["reason"] for u in res.report()["unsupported"])
    y = run(res.deploy_model, feeds[0])[0]
    assert y.shape == (5, 2, 3)


def test_dynamic_dims_and_wrong_declared_output_shape():
    m = models.conv_bn_relu()
    m.graph.output[0].type.tensor_type.shape.dim[1].dim_value = 999  # declared wrong (really 10)
    m.graph.input[0].type.tensor_type.shape.dim[2].dim_param = "H"
    m.graph.input[0].type.tensor_type.shape.dim[3].dim_param = "W"
    feeds = [models.images(2, (4, s, s), seed=s) for s in (12, 16, 20)]
    res = an.quantize(m, feeds, progress=False)
    s = make_session(res.deploy_model)
    assert s.run(None, {"x": models.images(1, (4, 24, 24))})[0].shape == (1, 10)


def _sqnr_db(ref, test):
    ref, test = np.asarray(ref, np.float64), np.asarray(test, np.float64)
    return 10 * np.log10((ref ** 2).sum() / max(((ref - test) ** 2).sum(), 1e-30))


def test_nhwc_tf2onnx_transpose_around_conv():
    """tf2onnx layout: NHWC input, Transpose to NCHW before each Conv and back after it."""
    r = np.random.default_rng(5)
    nodes = [
        helper.make_node("Transpose", ["x"], ["x_nchw"], name="to_nchw", perm=[0, 3, 1, 2]),
        helper.make_node("Conv", ["x_nchw", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Transpose", ["c1"], ["c1_nhwc"], name="to_nhwc1", perm=[0, 2, 3, 1]),
        helper.make_node("Relu", ["c1_nhwc"], ["r1"], name="relu1"),
        helper.make_node("Transpose", ["r1"], ["r1_nchw"], name="to_nchw2", perm=[0, 3, 1, 2]),
        helper.make_node("Conv", ["r1_nchw", "w2", "b2"], ["c2"], name="conv2", pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("Transpose", ["c2"], ["y"], name="to_nhwc2", perm=[0, 2, 3, 1]),
    ]
    m = models._model(nodes, [models.f32("x", ["N", "H", "W", 4])], [models.f32("y", ["N", "h", "w", 16])],
                      [models.w("w1", r.normal(0, .3, (16, 4, 3, 3))), models.w("b1", r.normal(0, .1, 16)),
                       models.w("w2", r.normal(0, .1, (16, 16, 3, 3))), models.w("b2", r.normal(0, .1, 16))], opset=13)
    feeds = [{"x": r.uniform(-1, 1, (2, 12, 12, 4)).astype(np.float32)} for _ in range(8)]
    res = an.quantize(m, feeds, progress=False)
    assert sorted(res.quantized_layers) == ["conv1", "conv2"]
    onnx.checker.check_model(res.deploy_model)
    ev = {"x": r.uniform(-1, 1, (3, 16, 16, 4)).astype(np.float32)}  # other batch and spatial size
    y_ref, y_q = run(m, ev)[0], run(res.deploy_model, ev)[0]
    assert y_q.shape == (3, 8, 8, 16)
    assert _sqnr_db(y_ref, y_q) > 30
    # the Conv inputs that follow a Transpose are quantized (the Transpose itself runs on float or uint8)
    assert "x_nchw" in res.plan.tensors and "r1_nchw" in res.plan.tensors


@pytest.mark.parametrize("act", ["HardSigmoid", "HardSwish", "SiLU", "Sigmoid"])
def test_hard_and_smooth_activations(act):
    """Conv -> activation -> Conv for the activations of mobile and YOLO nets (SiLU is Sigmoid*x)."""
    r = np.random.default_rng(6)
    if act == "SiLU":
        acts = [helper.make_node("Sigmoid", ["c1"], ["s1"], name="sig"),
                helper.make_node("Mul", ["c1", "s1"], ["a1"], name="silu")]
    else:
        acts = [helper.make_node(act, ["c1"], ["a1"], name="act")]
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]), *acts,
             helper.make_node("Conv", ["a1", "w2", "b2"], ["y"], name="conv2", pads=[1, 1, 1, 1])]
    m = models._model(nodes, [models.f32("x", ["N", 4, 10, 10])], [models.f32("y", ["N", 8, 10, 10])],
                      [models.w("w1", r.normal(0, .6, (16, 4, 3, 3))), models.w("b1", r.normal(0, .3, 16)),
                       models.w("w2", r.normal(0, .1, (8, 16, 3, 3))), models.w("b2", r.normal(0, .1, 8))],
                      opset=14 if act == "HardSwish" else 13)
    feeds = [{"x": r.uniform(-1, 1, (2, 4, 10, 10)).astype(np.float32)} for _ in range(8)]
    res = an.quantize(m, feeds, progress=False)
    assert sorted(res.quantized_layers) == ["conv1", "conv2"]
    a1 = res.plan.tensors["a1"]  # the activation's own output is the int8 input of conv2, on its own range
    lo, hi = a1.lo, a1.hi
    if act in ("HardSigmoid", "Sigmoid"):
        assert lo >= -1e-6 and hi <= 1 + 1e-6
    else:  # HardSwish and SiLU dip below zero (min -0.375 and -0.278): the grid must keep the negative part
        assert lo < -0.1
    onnx.checker.check_model(res.deploy_model)
    ev = {"x": r.uniform(-1, 1, (4, 4, 10, 10)).astype(np.float32)}
    assert _sqnr_db(run(m, ev)[0], run(res.deploy_model, ev)[0]) > 28
    assert _sqnr_db(run(m, ev)[0], run(res.fake_quant_model, ev)[0]) > 28


def test_attention_block_matmul_between_activations_softmax_layernorm(tmp_path):
    """One transformer block: Q/K/V projections (int8), Q.K^T and P.V between two activations, Softmax,
    residual Add and LayerNormalization (float): the output must stay close, the report must say it all."""
    r = np.random.default_rng(7)
    D, T = 32, 12
    nodes = [
        helper.make_node("MatMul", ["x", "wq"], ["q"], name="q_proj"),
        helper.make_node("MatMul", ["x", "wk"], ["k"], name="k_proj"),
        helper.make_node("MatMul", ["x", "wv"], ["v"], name="v_proj"),
        helper.make_node("Transpose", ["k"], ["kt"], name="k_t", perm=[0, 2, 1]),
        helper.make_node("MatMul", ["q", "kt"], ["s"], name="scores"),
        helper.make_node("Mul", ["s", "scale"], ["ss"], name="scale_scores"),
        helper.make_node("Softmax", ["ss"], ["p"], name="softmax", axis=-1),
        helper.make_node("MatMul", ["p", "v"], ["ctx"], name="context"),
        helper.make_node("MatMul", ["ctx", "wo"], ["o"], name="o_proj"),
        helper.make_node("Add", ["o", "x"], ["res"], name="residual"),
        helper.make_node("LayerNormalization", ["res", "ln_g", "ln_b"], ["y"], name="ln", axis=-1),
    ]
    m = models._model(nodes, [models.f32("x", ["N", "T", D])], [models.f32("y", ["N", "T", D])],
                      [models.w("wq", r.normal(0, D ** -.5, (D, D))), models.w("wk", r.normal(0, D ** -.5, (D, D))),
                       models.w("wv", r.normal(0, D ** -.5, (D, D))), models.w("wo", r.normal(0, D ** -.5, (D, D))),
                       models.w("scale", D ** -.5), models.w("ln_g", r.uniform(.5, 1.5, D)),
                       models.w("ln_b", r.normal(0, .1, D))])
    feeds = [{"x": r.normal(size=(2, T, D)).astype(np.float32)} for _ in range(8)]
    res = an.quantize(m, feeds, progress=False)
    assert sorted(res.quantized_layers) == ["k_proj", "o_proj", "q_proj", "v_proj"]
    onnx.checker.check_model(res.deploy_model)
    ops = [n.op_type for n in res.deploy_model.graph.node]
    assert "LayerNormalization" in ops and "Softmax" in ops and ops.count("MatMul") >= 2
    ev = {"x": r.normal(size=(3, 20, D)).astype(np.float32)}  # another sequence length
    y_ref, y_q = run(m, ev)[0], run(res.deploy_model, ev)[0]
    assert _sqnr_db(y_ref, y_q) > 25
    rep = res.report()
    assert rep["output_error"]["y"]["cosine"] > 0.995
    assert {l["name"] for l in rep["quantized_layers"]} == set(res.quantized_layers)
    # Q.K^T and P.V: both inputs and the output on int8 grids; ONNX Runtime runs them as QLinearMatMul, the
    # Softmax and the LayerNormalization stay float
    assert {"q", "kt", "p", "v", "s", "ctx"} <= set(res.plan.tensors) and "y" not in res.plan.tensors
    assert sorted(res.activation_matmuls) == ["context", "scores"] == sorted(rep["int8_activation_matmuls"])
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    so.optimized_model_filepath = str(tmp_path / "opt.onnx")
    ort.InferenceSession(res.deploy_model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    fused = collections.Counter(n.op_type for n in onnx.load(str(tmp_path / "opt.onnx")).graph.node)
    assert fused["QLinearMatMul"] >= 6 and fused["Softmax"] == 1, fused  # 4 projections + scores + context
    assert _sqnr_db(run(res.fake_quant_model, ev)[0], y_q) > 35
    off = an.quantize(m, feeds, an.QuantConfig(quantize_activation_matmul=False), progress=False)
    assert not {"kt", "p"} & set(off.plan.tensors)


@pytest.mark.parametrize("opset", [9, 10, 12])
def test_old_opset_gets_per_channel_weights_and_a_valid_model(opset):
    """Opset 9-12 (old exporters): Clip with min/max attributes, BatchNormalization of opset 9; per-channel
    DequantizeLinear needs opset 13, so the model is raised and the result passes the checker."""
    r = np.random.default_rng(8)
    c = 16
    clip = (helper.make_node("Clip", ["bn"], ["a"], name="relu6", min=0.0, max=6.0) if opset < 11 else
            helper.make_node("Clip", ["bn", "zero", "six"], ["a"], name="relu6"))
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c1", "g", "b", "mu", "var"], ["bn"], name="bn"), clip,
        helper.make_node("Conv", ["a", "w2", "b2"], ["c2"], name="conv2"),
        helper.make_node("GlobalAveragePool", ["c2"], ["p"], name="gap"),
        helper.make_node("Flatten", ["p"], ["f"], name="flat"),
        helper.make_node("Gemm", ["f", "wf", "bf"], ["y"], name="fc", transB=1),
    ]
    inits = [models.w("w1", r.normal(0, .4, (c, 3, 3, 3))),
             models.w("g", r.uniform(.5, 1.5, c)), models.w("b", r.normal(0, .3, c)),
             models.w("mu", r.normal(0, .2, c)), models.w("var", r.uniform(.5, 2, c)),
             models.w("w2", r.normal(0, .2, (c, c, 1, 1)) * r.uniform(.05, 2, (c, 1, 1, 1))),  # channel scales differ
             models.w("b2", r.normal(0, .1, c)),
             models.w("wf", r.normal(0, .3, (5, c))), models.w("bf", r.normal(0, .1, 5))]
    if opset >= 11:
        inits += [models.w("zero", 0.0), models.w("six", 6.0)]
    g = helper.make_graph(nodes, "old", [models.f32("x", ["N", 3, 12, 12])], [models.f32("y", ["N", 5])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], ir_version=4 if opset < 11 else 6)
    onnx.checker.check_model(m)
    feeds = [{"x": r.uniform(-1, 1, (4, 3, 12, 12)).astype(np.float32)} for _ in range(8)]
    res = an.quantize(m, feeds, progress=False)
    dep = res.deploy_model
    onnx.checker.check_model(dep, full_check=True)
    assert [o.version for o in dep.opset_import if o.domain in ("", "ai.onnx")][0] >= 13
    assert sorted(res.quantized_layers) == ["conv2", "fc"]
    assert "input channels" in res.plan.float_layers["conv1"]  # 3-channel stem: float by the default rule
    assert res.plan.layers["conv2"].w_scale.shape == (c,)  # per channel
    int8 = {t.name for t in dep.graph.initializer if t.data_type in (TensorProto.INT8, TensorProto.UINT8)}
    dq_axis = [n for n in dep.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in int8
               and any(a.name == "axis" for a in n.attribute)]
    assert len(dq_axis) == 3  # conv2 and fc, and the stem's weights (weight-only: the ladder's step)
    assert list(res.plan.weight_only) == ["w1"]
    ev = {"x": r.uniform(-1, 1, (8, 3, 12, 12)).astype(np.float32)}
    assert _sqnr_db(run(m, ev)[0], run(dep, ev)[0]) > 25


def _cancelling_model():
    """y = x W1 - x W2 + x W3 with W1 ~ W2: every tensor quantizes well (> 30 dB), the difference does not."""
    r = np.random.default_rng(9)
    w1 = r.normal(0, .3, (16, 32))
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["a"], name="mm_a"),
             helper.make_node("MatMul", ["x", "w2"], ["b"], name="mm_b"),
             helper.make_node("Sub", ["a", "b"], ["d"], name="diff"),
             helper.make_node("MatMul", ["x", "w3"], ["c"], name="mm_c"),
             helper.make_node("Add", ["d", "c"], ["y"], name="add")]
    m = models._model(nodes, [models.f32("x", ["N", 16])], [models.f32("y", ["N", 32])],
                      [models.w("w1", w1), models.w("w2", w1 + r.normal(0, .003, w1.shape)),
                       models.w("w3", r.normal(0, .01, (16, 32)))])
    return m, [{"x": r.normal(size=(4, 16)).astype(np.float32)} for _ in range(8)]


def test_output_check_leaves_the_harmful_layers_float():
    m, feeds = _cancelling_model()
    off = an.QuantConfig()
    off.min_output_sqnr_db = None
    res_off = an.quantize(m, feeds, off, progress=False)
    assert sorted(res_off.quantized_layers) == ["mm_a", "mm_b", "mm_c"]
    assert res_off.output_errors["y"]["sqnr_db"] < 15  # the cancellation destroys the output
    assert min(e["sqnr_db"] for e in res_off.tensor_errors.values()) > 30  # while each tensor looks fine
    res = an.quantize(m, feeds, progress=False)  # default target: 15 dB
    target = an.QuantConfig().min_output_sqnr_db
    assert target == 15.0
    assert "mm_c" in res.quantized_layers and {"mm_a", "mm_b"} & set(res.plan.float_layers)
    for n in set(res.plan.float_layers):
        assert "output check" in res.plan.float_layers[n]
    chk = res.report()["output_check"]
    assert chk["before_sqnr_db"] < 15 and chk["after_sqnr_db"] >= target + 1
    # the gated model predicts the real one
    assert abs(chk["before_sqnr_db"] - res_off.output_errors["y"]["sqnr_db"]) < 0.5
    assert res.output_errors["y"]["sqnr_db"] >= target
    assert {u["name"] for u in chk["left_float"]} == set(res.plan.float_layers)
    strict = an.quantize(m, feeds, an.QuantConfig(min_output_sqnr_db=30.0), progress=False)
    assert strict.quantized_layers == ["mm_c"] and strict.output_errors["y"]["sqnr_db"] >= 30
    ev = {"x": np.random.default_rng(10).normal(size=(16, 16)).astype(np.float32)}
    assert _sqnr_db(run(m, ev)[0], run(res.deploy_model, ev)[0]) > target
    # the setting round-trips through AMCT's JSON and is checked
    cfg = an.QuantConfig.from_amct_dict(json.loads(an.QuantConfig(min_output_sqnr_db=30.0).to_json()))
    assert cfg.min_output_sqnr_db == 30.0
    with pytest.raises(an.ConfigError, match="min_output_sqnr_db"):
        an.QuantConfig(min_output_sqnr_db=float("nan")).validate()
