"""Patterns of real-world models, each on a small model that has it (issue: real-world ONNX)."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import amct_nb as an
import models
from amct_nb.observe import make_session


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
    m = models._model(nodes, [models.f32("x", ["N", 16]), helper.make_tensor_value_info("keep", TensorProto.BOOL, ["N", 32])],
                      [models.f32("y", ["N", 8])],
                      [models.w("w1", r.normal(0, .3, (16, 32))), models.w("w2", r.normal(0, .3, (64, 8))),
                       models.w("neg_inf", -np.inf)])
    feeds = []
    for i in range(16):
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


def test_if_subgraph_is_reported_not_silently_skipped():
    r = np.random.default_rng(3)
    then_g = helper.make_graph([helper.make_node("MatMul", ["x", "wt"], ["yt"], name="inner_mm")], "then", [],
                               [models.f32("yt", ["N", 4])], [models.w("wt", r.normal(size=(8, 4)))])
    else_g = helper.make_graph([helper.make_node("Identity", ["h"], ["ye"], name="inner_id")], "else", [],
                               [models.f32("ye", ["N", 4])])
    nodes = [
        helper.make_node("MatMul", ["x", "w0"], ["h"], name="outer_mm"),
        helper.make_node("If", ["cond"], ["y"], name="branch", then_branch=then_g, else_branch=else_g),
    ]
    g = helper.make_graph(nodes, "g", [models.f32("x", ["N", 8]), helper.make_tensor_value_info("cond", TensorProto.BOOL, [])],
                          [models.f32("y", ["N", 4])], [models.w("w0", r.normal(size=(8, 4)))])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    feeds = [{"x": r.normal(size=(2, 8)).astype(np.float32), "cond": np.array(i % 2 == 0)} for i in range(8)]
    res = an.quantize(m, feeds, progress=False)
    assert "outer_mm" in res.quantized_layers
    rep = res.report()
    sub = [u for u in rep["unsupported"] if u["name"] == "branch"]
    assert sub and "inner" not in sub[0]["reason"] and "MatMul" in sub[0]["reason"] and "not quantized" in sub[0]["reason"]
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
