"""Weights shared by several layers (a block applied three times): each use is an int8 layer with its own
activation grid and record entry, and the exports store the int8 weight once, read by one
DequantizeLinear, which ONNX Runtime still fuses into one int8 kernel per use."""

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


def _block_thrice(kind: str) -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    nodes, x = [], "input"
    if kind == "linear":  # MatMul + Add + Relu with one weight and one bias, three times
        w, b = rng.normal(0, 0.3, (32, 32)), rng.normal(0, 0.1, 32)
        for k in range(3):
            nodes += [helper.make_node("MatMul", [x, "W"], [f"m{k}"], name=f"mm{k}"),
                      helper.make_node("Add", [f"m{k}", "b"], [f"a{k}"], name=f"add{k}"),
                      helper.make_node("Relu", [f"a{k}"], [f"r{k}"], name=f"relu{k}")]
            x = f"r{k}"
        shape = ["N", 32]
    else:  # Conv (weight and bias shared) + Relu, three times
        w, b = rng.normal(0, 0.2, (8, 8, 3, 3)), rng.normal(0, 0.1, 8)
        for k in range(3):
            nodes += [helper.make_node("Conv", [x, "W", "b"], [f"c{k}"], name=f"conv{k}", pads=[1, 1, 1, 1]),
                      helper.make_node("Relu", [f"c{k}"], [f"r{k}"], name=f"relu{k}")]
            x = f"r{k}"
        shape = ["N", 8, 16, 16]
    nodes.append(helper.make_node("Identity", [x], ["output"], name="out"))
    g = helper.make_graph(nodes, "shared", [helper.make_tensor_value_info("input", TensorProto.FLOAT, shape)],
                          [helper.make_tensor_value_info("output", TensorProto.FLOAT, shape)],
                          [numpy_helper.from_array(w.astype(np.float32), "W"),
                           numpy_helper.from_array(b.astype(np.float32), "b")])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def _fused(model: onnx.ModelProto, tmp_path) -> collections.Counter:
    so = ort.SessionOptions()
    so.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    so.log_severity_level = 3
    ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return collections.Counter(n.op_type for n in onnx.load(so.optimized_model_filepath).graph.node)


@pytest.mark.parametrize("kind", ["linear", "conv"])
def test_a_block_applied_three_times_is_int8_with_one_weight(kind, tmp_path):
    m = _block_thrice(kind)
    x = np.random.default_rng(1).normal(0, 1, (64, 32) if kind == "linear" else (16, 8, 16, 16)).astype(np.float32)
    layers = ["mm0", "mm1", "mm2"] if kind == "linear" else ["conv0", "conv1", "conv2"]
    res = an.quantize(m, x, progress=False)
    assert list(res.plan.layers) == layers and not res.plan.float_layers  # before: all three refused, nothing written
    # one int8 weight, one DequantizeLinear reading it, feeding the three layers
    dep = res.deploy_model
    shape = (32, 32) if kind == "linear" else (8, 8, 3, 3)
    w8 = [t for t in dep.graph.initializer
          if t.data_type in (TensorProto.INT8, TensorProto.UINT8) and tuple(t.dims) == shape]
    assert len(w8) == 1
    dq = [n for n in dep.graph.node if n.op_type == "DequantizeLinear" and n.input[0] == w8[0].name]
    assert len(dq) == 1
    readers = [n.name for n in dep.graph.node if dq[0].output[0] in n.input]
    assert sorted(readers) == layers
    fq_ints = [t for t in res.fake_quant_model.graph.initializer if t.name.endswith("_fake_quant_int")
               and len(t.dims) == (2 if kind == "linear" else 4)]
    assert len(fq_ints) == 1
    # each use has its own activation grid and record entry; the config lists every use
    assert [k for k in res.record.layers if not k.startswith("tensor:")] == layers
    grids = {float(res.plan.tensors[res.plan.layers[n].activation].scale) for n in layers}
    assert len(grids) == 3
    paths = res.save(tmp_path / "out", "shared")
    cfg = json.loads(paths["config"].read_text())
    assert all(cfg[n]["quant_enable"] for n in layers)
    # numbers: the deploy model is faithful and equals the fake-quant model
    y0 = make_session(m).run(None, {"input": x})[0]
    y1 = make_session(dep).run(None, {"input": x})[0]
    y2 = make_session(res.fake_quant_model).run(None, {"input": x})[0]
    assert np.abs(y1 - y0).max() <= 0.05 * np.abs(y0).max()
    assert np.abs(y1 - y2).max() <= 1e-5 * max(1.0, np.abs(y1).max())
    # ONNX Runtime still fuses one int8 kernel per use
    ops = _fused(dep, tmp_path)
    if kind == "conv":
        assert ops["QLinearConv"] == 3
    else:
        assert ops["QLinearMatMul"] + ops["MatMulInteger"] >= 2
    # the user's model is untouched: still one shared W
    assert [t.name for t in m.graph.initializer] == ["W", "b"]


def test_a_weight_also_read_by_a_non_layer_stays_shared_and_float():
    """A tied embedding table (read by a Gather and a MatMul) is not copied: its layer stays float, with why."""
    rng = np.random.default_rng(0)
    emb = numpy_helper.from_array(rng.normal(0, 0.3, (16, 16)).astype(np.float32), "E")
    nodes = [helper.make_node("Gather", ["E", "ids"], ["e"], name="gather"),
             helper.make_node("MatMul", ["input", "E"], ["m"], name="tied"),
             helper.make_node("Add", ["m", "e"], ["output"], name="add")]
    g = helper.make_graph(nodes, "tied", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 16])],
                          [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", 16])],
                          [emb, numpy_helper.from_array(np.zeros(1, np.int64), "ids")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    p = an.prepare(m)
    (layer,) = p.layers
    assert not layer.quantizable and "shared with gather" in layer.reason.text


def test_qat_trains_a_shared_weight_as_one_parameter(tmp_path):
    """QAT ties the per-layer copies back together: one parameter, one weight quantizer, so the trained
    deploy model still stores the weight once."""
    pytest.importorskip("torch")
    from amct_nb.qat import retrain
    from amct_nb.qat.model import QatModel

    m = _block_thrice("conv")
    onnx.save(m, tmp_path / "m.onnx")
    x = np.random.default_rng(1).normal(0, 1, (64, 8, 16, 16)).astype(np.float32)
    res = retrain(str(tmp_path / "m.onnx"), x, distill=True, steps=8, batch_size=16, lr=1e-2, progress=False)
    qm = QatModel(res.ptq)
    assert len(qm.graph.params) == 2  # W and b once each (the int32 bias still has a grid per use)
    assert len(qm.weights) == 1
    w8 = [t for t in res.result.deploy_model.graph.initializer if t.data_type in (TensorProto.INT8, TensorProto.UINT8)
          and tuple(t.dims) == (8, 8, 3, 3)]
    assert len(w8) == 1
    scales = {tuple(res.result.record.layers[n].scale_w) for n in ("conv0", "conv1", "conv2")}
    assert len(scales) == 1
    trained = models.weight_ints(res.result.deploy_model)[w8[0].name]
    assert not np.array_equal(trained, res.ptq.plan.layers["conv0"].w_q)  # training moved the shared weight


def test_a_weight_used_as_conv_and_reshaped_for_a_matmul():
    """One initializer read by a Conv and, through a Reshape, by a MatMul (bad input of the issue): the Reshape of
    a constant is computed at prepare time, so the two uses are separate constants and both layers are int8."""
    r = np.random.default_rng(0)
    w = r.normal(0, .3, (8, 8, 1, 1)).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "W"], ["c"], name="conv"),
             helper.make_node("Relu", ["c"], ["rc"], name="relu"),
             helper.make_node("GlobalAveragePool", ["rc"], ["p"], name="gap"),
             helper.make_node("Flatten", ["p"], ["f"], name="flat"),
             helper.make_node("Reshape", ["W", "shape"], ["W2"], name="wreshape"),
             helper.make_node("MatMul", ["f", "W2"], ["y"], name="mm")]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8, 6, 6])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 8])],
                          [numpy_helper.from_array(w, "W"),
                           numpy_helper.from_array(np.array([8, 8], np.int64), "shape")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    x = r.normal(0, 1, (32, 8, 6, 6)).astype(np.float32)
    res = an.quantize(m, x, progress=False)
    assert sorted(res.quantized_layers) == ["conv", "mm"] and not res.float_layers
    assert any(c.kind == "fold_weight_chains" for c in res.prepared.changes)
    ints = models.weight_ints(res.deploy_model)
    np.testing.assert_array_equal(ints[res.plan.layers["mm"].weight + "_quantized"].reshape(-1),
                                  res.plan.layers["mm"].w_q.reshape(-1))
    a = make_session(m).run(None, {"x": x})[0]
    b = make_session(res.deploy_model).run(None, {"x": x})[0]
    assert 10 * np.log10((a ** 2).sum() / ((a - b) ** 2).sum()) > 30
