"""Layers inside If / Loop bodies: observed, quantized, written with the branches' signatures kept."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper as nh

import amct_nb as an
from amct_nb.ir import make_session, walk_nodes


def run(model, feed):
    return make_session(model).run(None, feed)


def if_model(seed=0):
    """mean(x) > 0 picks a branch; each branch: Conv (weights in Constant nodes of the branch, as exporters
    that inline functions write them) -> Relu -> Conv with a weight both branches share (main graph)."""
    r = np.random.default_rng(seed)
    w3 = r.normal(0, 0.2, (8, 8, 3, 3)).astype(np.float32)

    def branch(tag):
        w = r.normal(0, 0.2, (8, 4, 3, 3)).astype(np.float32)
        b = r.normal(0, 0.1, 8).astype(np.float32)
        nodes = [h.make_node("Constant", [], [f"{tag}_W"], value=nh.from_array(w)),
                 h.make_node("Constant", [], [f"{tag}_B"], value=nh.from_array(b)),
                 h.make_node("Conv", ["x", f"{tag}_W", f"{tag}_B"], [f"{tag}_c"], pads=[1, 1, 1, 1],
                             name=f"{tag}_conv"),
                 h.make_node("Relu", [f"{tag}_c"], [f"{tag}_r"], name=f"{tag}_relu"),
                 h.make_node("Conv", [f"{tag}_r", "W3"], [f"{tag}_out"], pads=[1, 1, 1, 1], name=f"{tag}_conv2")]
        return h.make_graph(nodes, tag, [], [h.make_tensor_value_info(f"{tag}_out", T.FLOAT, ["N", 8, 8, 8])])

    nodes = [h.make_node("ReduceMean", ["x"], ["m"], keepdims=0, name="mean"),
             h.make_node("Greater", ["m", "zero"], ["cond"], name="gt"),
             h.make_node("If", ["cond"], ["y0"], then_branch=branch("then"), else_branch=branch("else"), name="If_0"),
             h.make_node("Relu", ["y0"], ["y"], name="out_relu")]
    g = h.make_graph(nodes, "ifm", [h.make_tensor_value_info("x", T.FLOAT, ["N", 4, 8, 8])],
                     [h.make_tensor_value_info("y", T.FLOAT, ["N", 8, 8, 8])],
                     [nh.from_array(np.array(0.0, np.float32), "zero"), nh.from_array(w3, "W3")])
    m = h.make_model(g, opset_imports=[h.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(m)
    return m


def loop_model(seed=0):
    """A recurrent cell as a Loop: h <- tanh(h W + x U), h carried, x captured from outside; then a head."""
    r = np.random.default_rng(seed)
    body = h.make_graph(
        [h.make_node("MatMul", ["h_in", "W"], ["hw"], name="body_mm_h"),
         h.make_node("MatMul", ["x", "U"], ["xu"], name="body_mm_x"),
         h.make_node("Add", ["hw", "xu"], ["s"], name="body_add"),
         h.make_node("Tanh", ["s"], ["h_out"], name="body_tanh"),
         h.make_node("Identity", ["cond_in"], ["cond_out"], name="body_cond")],
        "body", [h.make_tensor_value_info("i", T.INT64, []), h.make_tensor_value_info("cond_in", T.BOOL, []),
                 h.make_tensor_value_info("h_in", T.FLOAT, ["N", 16])],
        [h.make_tensor_value_info("cond_out", T.BOOL, []), h.make_tensor_value_info("h_out", T.FLOAT, ["N", 16])])
    nodes = [h.make_node("Loop", ["trip", "true", "h0"], ["h_final"], body=body, name="Loop_0"),
             h.make_node("MatMul", ["h_final", "V"], ["y"], name="head")]
    inits = [nh.from_array(r.normal(0, 0.3, (16, 16)).astype(np.float32), "W"),
             nh.from_array(r.normal(0, 0.3, (16, 16)).astype(np.float32), "U"),
             nh.from_array(r.normal(0, 0.3, (16, 4)).astype(np.float32), "V"), nh.from_array(np.array(True), "true")]
    g = h.make_graph(nodes, "loopm", [h.make_tensor_value_info("x", T.FLOAT, ["N", 16]),
                                      h.make_tensor_value_info("h0", T.FLOAT, ["N", 16]),
                                      h.make_tensor_value_info("trip", T.INT64, [])],
                     [h.make_tensor_value_info("y", T.FLOAT, ["N", 4])], inits)
    m = h.make_model(g, opset_imports=[h.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(m)
    return m


def loop_feeds(n, trip, seed=1):
    r = np.random.default_rng(seed)
    return [{"x": r.normal(0, 1, (4, 16)).astype(np.float32), "h0": r.normal(0, 1, (4, 16)).astype(np.float32),
             "trip": np.array(trip, np.int64)} for _ in range(n)]


def fused_ops(model) -> dict:
    """Op counts of ONNX Runtime's optimized graph, bodies included."""
    import tempfile
    from collections import Counter
    from pathlib import Path

    with tempfile.TemporaryDirectory() as d:
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        so.optimized_model_filepath = str(Path(d) / "opt.onnx")
        so.log_severity_level = 3
        ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
        return Counter(n.op_type for n in walk_nodes(onnx.load(so.optimized_model_filepath).graph))


def branch_io(model):
    ifn = next(n for n in model.graph.node if n.op_type == "If")
    return list(ifn.output), {a.name: [o.name for o in a.g.output] for a in ifn.attribute}


def test_a_body_tensor_is_observed_as_its_values():
    """make_session(outputs=[a body's tensor]): the values of the run, flattened (empty when the branch did
    not run; a Loop's iterations one after the other, empty for 0 iterations)."""
    m = if_model()
    x = np.random.default_rng(2).normal(0.2, 1, (2, 4, 8, 8)).astype(np.float32)
    x = x if x.mean() > 0 else -x
    y, then_r, else_r = make_session(m, outputs=["then_r", "else_r"]).run(None, {"x": x})
    assert else_r.size == 0 and then_r.shape == (2 * 8 * 8 * 8,)
    y_ref = run(m, {"x": x})[0]
    assert np.array_equal(y, y_ref)  # routing a tensor out changes nothing else
    w3 = nh.to_array(next(t for t in m.graph.initializer if t.name == "W3"))
    single = h.make_model(h.make_graph([h.make_node("Conv", ["r", "W3"], ["o"], pads=[1, 1, 1, 1])], "g",
                                       [h.make_tensor_value_info("r", T.FLOAT, [2, 8, 8, 8])],
                                       [h.make_tensor_value_info("o", T.FLOAT, [2, 8, 8, 8])],
                                       [nh.from_array(w3, "W3")]),
                          opset_imports=[h.make_opsetid("", 17)], ir_version=8)
    assert np.allclose(np.maximum(run(single, {"r": then_r.reshape(2, 8, 8, 8)})[0], 0), y_ref, atol=1e-5)
    lm = loop_model()
    f = loop_feeds(1, 3)[0]
    hw = make_session(lm, outputs=["h_out"]).run(["h_out"], f)[0]
    assert hw.shape == (3 * 4 * 16,)
    assert np.allclose(run(lm, f)[0], hw.reshape(3, 4, 16)[-1] @ nh.to_array(lm.graph.initializer[2]), atol=1e-5)
    assert make_session(lm, outputs=["h_out"]).run(["h_out"], {**f, "trip": np.array(0)})[0].size == 0


def test_if_branch_layers_are_quantized():
    m = if_model()
    r = np.random.default_rng(1)
    x = r.normal(0.0, 1, (64, 4, 8, 8)).astype(np.float32)
    x[::2] += 0.3
    x[1::2] -= 0.3  # both branches run during calibration
    res = an.quantize(m, x, progress=False)
    assert set(res.quantized_layers) == {"then_conv", "then_conv2", "else_conv", "else_conv2"}
    assert {l.scope for l in res.prepared.layers} == {"If_0/then_branch", "If_0/else_branch"}
    onnx.checker.check_model(res.deploy_model)
    onnx.checker.check_model(res.fake_quant_model)
    assert branch_io(res.deploy_model) == branch_io(m)  # the If and its branches keep their signatures
    for xb in (x[0::2][:8], x[1::2][:8]):
        ref = run(m, {"x": xb})[0]
        dep = run(res.deploy_model, {"x": xb})[0]
        fq = run(res.fake_quant_model, {"x": xb})[0]
        assert np.abs(dep - ref).max() < 0.05 * np.abs(ref).max()
        assert np.abs(dep - fq).max() < 1e-5 * np.abs(ref).max()  # the fake-quant model computes what ORT does
    ops = fused_ops(res.deploy_model)
    assert ops["QLinearConv"] == 2  # each branch's first Conv runs as int8 inside the If
    assert len(res.record.layers) >= 4 and "then_conv" in res.record.layers and "else_conv" in res.record.layers


def test_a_branch_no_sample_took_stays_float_with_the_reason():
    m = if_model()
    r = np.random.default_rng(1)
    x = r.normal(0.5, 1.5, (32, 4, 8, 8)).astype(np.float32)  # every sample's mean > 0: the then branch only
    res = an.quantize(m, x, progress=False)
    assert set(res.quantized_layers) == {"then_conv", "then_conv2"}
    for name in ("else_conv", "else_conv2"):
        assert "never ran on the calibration data" in str(res.plan.float_layers[name])
    # the else branch's weights are stored int8 all the same (weight-only), and the report says unmeasured
    w_else = {l.name: l.weight for l in res.prepared.layers if l.name.startswith("else")}
    assert {n: res.plan.weight_only[w].users for n, w in w_else.items()} == {n: (n,) for n in w_else}
    assert res.output_check["weight_only"]["not_measured"] == sorted(w_else.values())
    assert any("never ran (not measured)" in line for line in res.log_lines)
    xe = r.normal(-0.5, 1, (4, 4, 8, 8)).astype(np.float32)  # the else branch: float, on the int8 grid of x
    ref = run(m, {"x": xe})[0]
    assert np.abs(run(res.deploy_model, {"x": xe})[0] - ref).max() < 0.03 * np.abs(ref).max()


def test_a_captured_tensor_of_unknown_shape():
    """The branches read x = Reshape(x0, s) with s a model input: no shape is known for x (nor for anything
    after it), yet it is observed and the branches' layers quantized."""
    m = if_model()
    g = m.graph
    g.input[0].name = "x0"
    del g.input[0].type.tensor_type.shape.dim[:]
    g.input[0].type.tensor_type.shape.dim.add().dim_value = 1
    g.input[0].type.tensor_type.shape.dim.add().dim_value = 256
    g.input.append(h.make_tensor_value_info("s", T.INT64, [4]))
    g.node.insert(0, h.make_node("Reshape", ["x0", "s"], ["x"], name="reshape"))
    onnx.checker.check_model(m)
    r = np.random.default_rng(1)
    feeds = [{"x0": r.normal(0.3, 1, (1, 256)).astype(np.float32), "s": np.array([1, 4, 8, 8])} for _ in range(16)]
    res = an.quantize(m, feeds, progress=False)
    assert {"then_conv", "then_conv2"} <= set(res.quantized_layers)
    for f in feeds[:4]:
        ref = run(m, f)[0]
        assert np.abs(run(res.deploy_model, f)[0] - ref).max() < 0.05 * np.abs(ref).max()


def test_loop_with_a_carried_state():
    m = loop_model()
    res = an.quantize(m, loop_feeds(16, 3), progress=False)
    assert {"body_mm_h", "body_mm_x", "head"} <= set(res.quantized_layers)
    assert "h_in" in res.plan.tensors  # the carried state, quantized inside the body
    onnx.checker.check_model(res.deploy_model)
    for f in loop_feeds(4, 3, seed=7):
        ref = run(m, f)[0]
        dep = run(res.deploy_model, f)[0]
        assert np.abs(dep - ref).max() < 0.06 * np.abs(ref).max()
        assert np.array_equal(run(res.fake_quant_model, f)[0], dep)  # requantization emulated inside the body
    ops = fused_ops(res.deploy_model)
    assert ops["QLinearMatMul"] >= 2 and ops["QLinearAdd"] == 1
    f0 = loop_feeds(1, 0, seed=9)[0]  # 0 iterations at run time: the deploy model runs (h0, outside the range of
    assert run(res.deploy_model, f0)[0].shape == (4, 4)  # tanh outputs calibrated for h_final, is clipped)


def test_a_loop_that_never_runs_in_calibration():
    res = an.quantize(loop_model(), loop_feeds(8, 0), progress=False)
    assert list(res.quantized_layers) == ["head"]
    for name in ("body_mm_h", "body_mm_x"):
        assert "never ran on the calibration data" in str(res.plan.float_layers[name])
    assert set(res.plan.weight_only) == {"W", "U"}  # the body's weights: int8, dequantized for the float MatMuls
    assert res.output_check["weight_only"]["not_measured"] == ["U", "W"]
    f = loop_feeds(1, 2, seed=3)[0]
    ref = run(loop_model(), f)[0]  # the body runs later, in float on int8 weights
    assert np.abs(run(res.deploy_model, f)[0] - ref).max() < 0.02 * np.abs(ref).max()


def test_branches_with_different_output_types_are_refused_clearly():
    then_g = h.make_graph([h.make_node("Relu", ["x"], ["t"])], "then", [],
                          [h.make_tensor_value_info("t", T.FLOAT, [2])])
    else_g = h.make_graph([h.make_node("Cast", ["x"], ["e"], to=T.INT64)], "else", [],
                          [h.make_tensor_value_info("e", T.INT64, [2])])
    g = h.make_graph([h.make_node("MatMul", ["x0", "w"], ["x"], name="mm"),
                      h.make_node("If", ["c"], ["y"], then_branch=then_g, else_branch=else_g, name="if")], "g",
                     [h.make_tensor_value_info("x0", T.FLOAT, [2, 2]), h.make_tensor_value_info("c", T.BOOL, [])],
                     [h.make_tensor_value_info("y", T.FLOAT, [2, 2])],
                     [nh.from_array(np.eye(2, dtype=np.float32), "w")])
    m = h.make_model(g, opset_imports=[h.make_opsetid("", 17)], ir_version=8)
    with pytest.raises(an.ModelError, match="cannot load the model.*If.*element type") as e:
        an.quantize(m, [{"x0": np.ones((2, 2), np.float32), "c": np.array(True)}], progress=False)
    assert "onnxruntime" in str(e.value).lower() or "branch" in str(e.value).lower()


def test_a_scan_body_is_quantized():
    r = np.random.default_rng(5)
    body = h.make_graph([h.make_node("MatMul", ["x_t", "W"], ["xw"], name="scan_mm"),
                         h.make_node("Add", ["s_in", "xw"], ["s_out"], name="scan_add"),
                         h.make_node("Tanh", ["s_out"], ["y_t"], name="scan_tanh")], "body",
                        [h.make_tensor_value_info("s_in", T.FLOAT, [16]),
                         h.make_tensor_value_info("x_t", T.FLOAT, [16])],
                        [h.make_tensor_value_info("s_out", T.FLOAT, [16]),
                         h.make_tensor_value_info("y_t", T.FLOAT, [16])])
    g = h.make_graph([h.make_node("Scan", ["s0", "xs"], ["s_final", "ys"], body=body, num_scan_inputs=1,
                                  name="scan"),
                      h.make_node("MatMul", ["ys", "V"], ["y"], name="head")], "g",
                     [h.make_tensor_value_info("s0", T.FLOAT, [16]), h.make_tensor_value_info("xs", T.FLOAT, [5, 16])],
                     [h.make_tensor_value_info("y", T.FLOAT, [5, 4])],
                     [nh.from_array(r.normal(0, .3, (16, 16)).astype(np.float32), "W"),
                      nh.from_array(r.normal(0, .3, (16, 4)).astype(np.float32), "V")])
    m = h.make_model(g, opset_imports=[h.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(m)
    feeds = [{"s0": r.normal(size=16).astype(np.float32), "xs": r.normal(size=(5, 16)).astype(np.float32)}
             for _ in range(8)]
    res = an.quantize(m, feeds, progress=False)
    assert set(res.quantized_layers) == {"scan_mm", "head"}
    assert "x_t" in res.plan.tensors  # the scan input, quantized inside the body
    onnx.checker.check_model(res.deploy_model)
    for f in feeds[:4]:
        ref = run(m, f)[0]
        assert np.abs(run(res.deploy_model, f)[0] - ref).max() < 0.05 * np.abs(ref).max()
    xt = make_session(m, outputs=["x_t"]).run(["x_t"], feeds[0])[0]
    assert np.array_equal(xt, feeds[0]["xs"].reshape(-1))  # observed: every iteration's slice, in order
    assert fused_ops(res.deploy_model)["QLinearMatMul"] == 1  # inside the Scan body
    assert np.array_equal(run(res.fake_quant_model, feeds[0])[0], run(res.deploy_model, feeds[0])[0])


def test_a_loop_whose_values_grow_every_iteration():
    """An autoregressive-style Loop: a carried sequence grows by one row per iteration and a MatMul reads all of
    it. ONNX Runtime cannot stack such values as a scan output: the observation falls back to an accumulator
    and both MatMuls of the body are quantized."""
    r = np.random.default_rng(0)
    body = h.make_graph([
        h.make_node("MatMul", ["x", "W"], ["xw"], name="mm_x"),
        h.make_node("Concat", ["acc_in", "xw"], ["acc_out"], axis=0, name="cat"),
        h.make_node("MatMul", ["acc_out", "U"], ["au"], name="mm_acc"),
        h.make_node("ReduceMean", ["au"], ["red"], axes=[0], keepdims=1, name="red"),
        h.make_node("Identity", ["cond_in"], ["cond_out"], name="c")], "body",
        [h.make_tensor_value_info("i", T.INT64, []), h.make_tensor_value_info("cond_in", T.BOOL, []),
         h.make_tensor_value_info("acc_in", T.FLOAT, ["k", 8])],
        [h.make_tensor_value_info("cond_out", T.BOOL, []), h.make_tensor_value_info("acc_out", T.FLOAT, ["k2", 8]),
         h.make_tensor_value_info("red", T.FLOAT, [1, 8])])
    g = h.make_graph([h.make_node("Loop", ["trip", "true", "acc0"], ["acc_final", "reds"], body=body, name="L")],
                     "g", [h.make_tensor_value_info("x", T.FLOAT, [1, 8]),
                           h.make_tensor_value_info("acc0", T.FLOAT, ["k", 8]),
                           h.make_tensor_value_info("trip", T.INT64, [])],
                     [h.make_tensor_value_info("acc_final", T.FLOAT, ["k", 8]),
                      h.make_tensor_value_info("reds", T.FLOAT, ["t", 1, 8])],
                     [nh.from_array(r.normal(size=(8, 8)).astype(np.float32), "W"),
                      nh.from_array(r.normal(size=(8, 8)).astype(np.float32), "U"),
                      nh.from_array(np.array(True), "true")])
    m = h.make_model(g, opset_imports=[h.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(m)
    feeds = [{"x": r.normal(size=(1, 8)).astype(np.float32), "acc0": r.normal(size=(1, 8)).astype(np.float32),
              "trip": np.array(4, np.int64)} for _ in range(8)]
    res = an.quantize(m, feeds, progress=False)
    assert set(res.quantized_layers) == {"mm_x", "mm_acc"}
    f = feeds[0]
    ref, dep = run(m, f), run(res.deploy_model, f)
    for a, b in zip(ref, dep):
        assert np.abs(a - b).max() < 0.05 * np.abs(a).max()
