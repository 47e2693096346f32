"""convert_qat / convert_qat_model: QAT and QDQ models (ONNX Runtime's quantize_static, PyTorch fake-quant
exports, synthetic patterns) to amct-nb's fake-quant and deploy models, keeping the model's own numbers."""

import hashlib
import json
import sys
from pathlib import Path

import models
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import amct_nb.amct.convert as amct_convert
from amct_nb.convert import convert_qat, read_qdq
from amct_nb.errors import AmctError, ConfigError, ModelError, NotSupportedError
from amct_nb.ir import make_session, with_outputs
from amct_nb.ops import OPS
from amct_nb.quant import int8_saturates
from amct_nb.record import TENSOR_PREFIX, Record

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))


# -- helpers ----------------------------------------------------------------------------------
def run(model, x, name=None):
    s = make_session(model)
    feed = {s.get_inputs()[0].name: x}
    return s.run(None, feed)[0]


def inits(model) -> dict:
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}


def ort_qdq(model, x, path: Path, **kw) -> onnx.ModelProto:
    """``model`` quantized by ONNX Runtime's quantize_static (QDQ), calibrated on ``x``."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static

    src, dst = path.with_suffix(".float.onnx"), path.with_suffix(".qdq.onnx")
    onnx.save(model, src)
    name = model.graph.input[0].name

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter([{name: x[i:i + 1]} for i in range(len(x))])

        def get_next(self):
            return next(self.it, None)

    quantize_static(str(src), str(dst), Reader(), quant_format=QuantFormat.QDQ, **kw)
    return onnx.load(dst)


def t(name, arr, dtype=None):
    return numpy_helper.from_array(np.asarray(arr, dtype=dtype), name)


def qdq_net(weight_form="int8", output="dq", act="uint8", per_channel=True, bn=False, w2=None, seed=0):
    """x -> Q/DQ -> conv1 (int8 weight, int32 bias) -> Relu -> Q/DQ -> conv2 (weight as ``weight_form``,
    float bias) [-> BatchNormalization] -> Q/DQ (or a lone Q: ``output="q"``) -> y. Q and DQ of each
    pair have their own scale/zero-point initializers (``{t}_qs``, ``{t}_qz``, ``{t}_ds``, ``{t}_dz``)."""
    r = np.random.default_rng(seed)
    dt = TensorProto.UINT8 if act == "uint8" else TensorProto.INT8
    npdt = np.uint8 if act == "uint8" else np.int8
    zx, zr, zy = (128, 0, 100) if act == "uint8" else (0, -128, -28)
    nodes, init = [], []

    def pair(x, out, scale, zp):
        init.extend([t(f"{x}_qs", np.float32(scale)), t(f"{x}_qz", zp, npdt), t(f"{x}_ds", np.float32(scale)),
                     t(f"{x}_dz", zp, npdt)])
        nodes.append(helper.make_node("QuantizeLinear", [x, f"{x}_qs", f"{x}_qz"], [f"{x}_q"], name=f"{x}_Q"))
        nodes.append(helper.make_node("DequantizeLinear", [f"{x}_q", f"{x}_ds", f"{x}_dz"], [out], name=f"{x}_DQ"))

    pair("x", "x_dq", 2 / 255, zx)
    w1q = r.integers(-127, 128, (8, 4, 3, 3)).astype(np.int8)
    s1 = r.uniform(0.002, 0.004, 8).astype(np.float32)
    b1q = r.integers(-2000, 2000, 8).astype(np.int32)
    init += [t("w1_quantized", w1q), t("w1_scale", s1), t("w1_zero_point", np.zeros(8, np.int8)),
             t("b1_quantized", b1q), t("b1_scale", (np.float32(2 / 255) * s1).astype(np.float32)),
             t("b1_zero_point", np.zeros(8, np.int32))]
    nodes += [helper.make_node("DequantizeLinear", ["w1_quantized", "w1_scale", "w1_zero_point"], ["w1"], name="w1_DQ",
                               axis=0),
              helper.make_node("DequantizeLinear", ["b1_quantized", "b1_scale", "b1_zero_point"], ["b1"], name="b1_DQ",
                               axis=0),
              helper.make_node("Conv", ["x_dq", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
              helper.make_node("Relu", ["c1"], ["r1"], name="relu1")]
    pair("r1", "r1_dq", 0.01, zr)
    w2f = np.asarray(w2 if w2 is not None else r.normal(0, 0.05, (8, 8, 3, 3)), np.float32)
    s2 = (np.abs(w2f).reshape(8, -1).max(1) / 127).astype(np.float32) if per_channel else \
        np.float32(np.abs(w2f).max() / 127)
    s2 = np.maximum(s2, np.float32(1e-6)).astype(np.float32)
    wz = np.zeros(s2.shape, np.int8)
    axis = {"axis": 0} if per_channel else {}
    if weight_form == "int8":
        q2 = np.clip(np.rint(w2f / (s2.reshape(-1, 1, 1, 1) if per_channel else s2)), -127, 127).astype(np.int8)
        init += [t("w2_quantized", q2), t("w2_scale", s2), t("w2_zero_point", wz)]
        nodes.append(helper.make_node("DequantizeLinear", ["w2_quantized", "w2_scale", "w2_zero_point"], ["w2"],
                                      name="w2_DQ", **axis))
    else:  # PyTorch / TensorFlow fake-quant: the float weight through QuantizeLinear -> DequantizeLinear
        init += [t("w2_float", w2f), t("w2_scale", s2), t("w2_zero_point", wz)]
        nodes += [helper.make_node("QuantizeLinear", ["w2_float", "w2_scale", "w2_zero_point"], ["w2_q"], name="w2_Q",
                                   **axis),
                  helper.make_node("DequantizeLinear", ["w2_q", "w2_scale", "w2_zero_point"], ["w2"], name="w2_DQ",
                                   **axis)]
    init.append(t("b2", r.normal(0, 0.05, 8), np.float32))
    nodes.append(helper.make_node("Conv", ["r1_dq", "w2", "b2"], ["c2"], name="conv2", pads=[1, 1, 1, 1]))
    last = "c2"
    if bn:
        init += [t("g", r.uniform(0.5, 1.5, 8), np.float32), t("be", r.normal(0, 0.1, 8), np.float32),
                 t("mu", r.normal(0, 0.1, 8), np.float32), t("var", r.uniform(0.5, 2, 8), np.float32)]
        nodes.append(helper.make_node("BatchNormalization", ["c2", "g", "be", "mu", "var"], ["bn"], name="bn"))
        last = "bn"
    if output == "dq":
        pair(last, "y", 0.02, zy)
        out = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 8, 8, 8])
    else:
        init += [t(f"{last}_qs", np.float32(0.02)), t(f"{last}_qz", zy, npdt)]
        nodes.append(helper.make_node("QuantizeLinear", [last, f"{last}_qs", f"{last}_qz"], ["y"], name="out_Q"))
        out = helper.make_tensor_value_info("y", dt, ["N", 8, 8, 8])
    g = helper.make_graph(nodes, "qdq_net", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4, 8, 8])],
                          [out], init)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], producer_name="tests")
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m


def set_init(model, name, arr, dtype=None):
    m = onnx.ModelProto()
    m.CopyFrom(model)
    for i, ti in enumerate(m.graph.initializer):
        if ti.name == name:
            m.graph.initializer[i].CopyFrom(t(name, arr, dtype))
    return m


X = models.images(16, (4, 8, 8), seed=3)


# -- ONNX Runtime quantize_static models ------------------------------------------------------
@pytest.fixture(scope="module")
def ort_models(tmp_path_factory):
    d = tmp_path_factory.mktemp("ort")
    mlp_x = np.random.default_rng(0).normal(size=(16, 32)).astype(np.float32)
    return {
        "cbr": (ort_qdq(models.conv_bn_relu(), models.images(16, (4, 16, 16)), d / "cbr", per_channel=True),
                models.images(32, (4, 16, 16), seed=1)),
        "cbr_u8_tensor": (ort_qdq(models.conv_bn_relu(), models.images(16, (4, 16, 16)), d / "cbr2",
                                  per_channel=False, activation_type=_qtype("QUInt8")),
                          models.images(32, (4, 16, 16), seed=1)),
        "mlp": (ort_qdq(models.mlp_matmul(), mlp_x, d / "mlp", per_channel=True),
                np.random.default_rng(1).normal(size=(32, 32)).astype(np.float32)),
        "convtranspose": (ort_qdq(models.convtranspose_model(), models.images(16, (4, 16, 16)), d / "ct",
                                  per_channel=True), models.images(32, (4, 16, 16), seed=1)),
    }


def _qtype(name):
    from onnxruntime.quantization import QuantType

    return getattr(QuantType, name)


@pytest.mark.parametrize("case", ["cbr", "cbr_u8_tensor", "mlp", "convtranspose"])
def test_ort_qdq_models_convert_with_their_own_numbers(ort_models, case):
    src, x = ort_models[case]
    res = convert_qat(src, feeds=x, progress=False)
    rep = res.report()
    conv = rep["conversion"]
    # every Conv/Gemm/MatMul/ConvTranspose the QAT model quantized keeps its integers, bit for bit
    src_ints = {k: v for k, v in inits(src).items() if v.dtype == np.int8 and v.ndim >= 2}
    dep_ints = {k: v.astype(np.int32) - (128 if v.dtype == np.uint8 else 0)  # uint8 guard: q + 128
                for k, v in inits(res.deploy_model).items() if v.dtype in (np.int8, np.uint8) and v.ndim >= 2}
    assert src_ints and src_ints.keys() == dep_ints.keys()
    for k in src_ints:
        np.testing.assert_array_equal(dep_ints[k], src_ints[k])
    assert conv["qat_layers"] == len(res.plan.layers) == len(src_ints)
    assert conv["weights"]["values_changed"] == 0 and not res.float_layers
    # the record holds the model's scales bit for bit
    si = inits(src)
    for n, lq in res.plan.layers.items():
        wname = lq.weight[: -len("_quantized")] if lq.weight.endswith("_quantized") else lq.weight
        want = si[f"{wname}_scale"].astype(np.float32).reshape(-1)
        got = np.asarray(res.record.layers[n].scale_w, np.float32)
        assert got.tobytes() == want.tobytes(), n
        assert res.record.layers[n].offset_w == [0] * want.size
        assert (lq.axis is not None) == (case != "cbr_u8_tensor")
    for k, r in res.record.layers.items():
        act = k[len(TENSOR_PREFIX):] if k.startswith(TENSOR_PREFIX) else res.prepared.layer(k).activation
        sname = f"{act}_scale" if f"{act}_scale" in si else None
        if sname:
            assert np.float32(r.scale_d).tobytes() == si[sname].astype(np.float32).tobytes(), k
    # same runtime: the deploy model computes what the QDQ model computes, the fake-quant model too
    ref, dep, fq = run(src, x), run(res.deploy_model, x), run(res.fake_quant_model, x)
    step = float(np.abs(ref).max()) / 127
    assert np.abs(dep - ref).max() <= step, case
    assert np.abs(fq - dep).max() <= 2 * step, case
    out = conv["output_vs_qat_model"]["deploy"]
    assert out[src.graph.output[0].name]["cosine"] > 0.9999
    onnx.checker.check_model(res.deploy_model)
    onnx.checker.check_model(res.fake_quant_model)
    json.dumps(rep)


def test_ort_bias_integers_survive_requantization(ort_models):
    src, _ = ort_models["cbr"]
    res = convert_qat(src, progress=False)
    bias = res.report()["conversion"]["bias_requantization"]
    assert bias["layers"] and all(v["source"] == "int32 DequantizeLinear" for v in bias["layers"].values())
    assert all(v["integers_changed"] == 0 for v in bias["layers"].values())
    assert bias["max_abs_error"] < 1e-6


# -- PyTorch fake-quant exports -------------------------------------------------------------------
def torch_qat(path: Path, opset: int, reduce_range: bool = False) -> onnx.ModelProto:
    torch = pytest.importorskip("torch")
    nn = torch.nn
    from torch.ao.quantization import (
        FakeQuantize,
        MovingAverageMinMaxObserver,
        QConfig,
        default_per_channel_weight_fake_quant,
    )

    torch.manual_seed(0)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.quant, self.dequant = torch.ao.quantization.QuantStub(), torch.ao.quantization.DeQuantStub()
            self.conv1, self.relu1 = nn.Conv2d(3, 16, 3, padding=1), nn.ReLU()
            self.conv2, self.relu2 = nn.Conv2d(16, 32, 3, padding=1, stride=2), nn.ReLU()
            self.pool, self.fc = nn.AdaptiveAvgPool2d(1), nn.Linear(32, 10)

        def forward(self, x):
            x = self.relu2(self.conv2(self.relu1(self.conv1(self.quant(x)))))
            return self.dequant(self.fc(self.pool(x).flatten(1)))

    net = Net().train()
    act = FakeQuantize.with_args(observer=MovingAverageMinMaxObserver, quant_min=0,
                                 quant_max=127 if reduce_range else 255, dtype=torch.quint8)
    net.qconfig = QConfig(activation=act, weight=default_per_channel_weight_fake_quant)
    net = torch.ao.quantization.fuse_modules_qat(net, [["conv1", "relu1"], ["conv2", "relu2"]])
    torch.ao.quantization.prepare_qat(net, inplace=True)
    opt = torch.optim.SGD(net.parameters(), lr=0.01)
    for _ in range(10):
        xb, yb = torch.randn(8, 3, 16, 16), torch.randint(0, 10, (8,))
        loss = nn.functional.cross_entropy(net(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()
    net.apply(torch.ao.quantization.disable_observer)  # frozen scales: observers would export as in-place copies
    torch.onnx.export(net, torch.randn(1, 3, 16, 16), str(path), dynamo=False, opset_version=opset,
                      input_names=["x"], output_names=["y"], dynamic_axes={"x": {0: "N"}, "y": {0: "N"}})
    return onnx.load(path)


def _q_of(src: onnx.ModelProto, qnode: onnx.NodeProto) -> np.ndarray:
    """What ONNX Runtime's own QuantizeLinear makes of a weight (the exact integers)."""
    ii = inits(src)
    g = helper.make_graph([qnode], "q", [], [helper.make_tensor_value_info(qnode.output[0], TensorProto.INT8, None)],
                          [t(n, ii[n]) for n in qnode.input])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 7
    return make_session(m).run(None, {})[0]


@pytest.mark.parametrize("opset,reduce_range", [(13, False), (17, False), (13, True)])
def test_torch_fake_quant_export(tmp_path, opset, reduce_range):
    src = torch_qat(tmp_path / "qat.onnx", opset, reduce_range)
    before = (tmp_path / "qat.onnx").read_bytes()
    x = np.random.default_rng(0).normal(size=(64, 3, 16, 16)).astype(np.float32)
    res = convert_qat(str(tmp_path / "qat.onnx"), feeds=x, progress=False)
    conv = res.report()["conversion"]
    assert conv["patterns"]["fake_quant_constants"] == 3  # conv1, conv2, fc weights: float -> Q -> DQ
    assert conv["patterns"]["activation_pairs"] == 4
    assert conv["patterns"].get("narrowed_pairs", 0) == (4 if reduce_range else 0)  # Q -> Clip(0, 127) -> DQ
    assert sorted(res.plan.layers) == ["/conv1/Conv", "/conv2/Conv"]
    # the fc input is not fake-quantized by eager-mode QAT (pool output): it stays float, and says why
    assert "its input had no Q/DQ" in res.float_layers["/fc/Gemm"]
    for n in res.plan.layers:  # integers exactly as ONNX Runtime's QuantizeLinear computes them
        qn = next(q for q in src.graph.node if q.op_type == "QuantizeLinear" and q.output[0].startswith(f"/{n[1:6]}"))
        np.testing.assert_array_equal(res.plan.layers[n].w_q, _q_of(src, qn))
        assert res.plan.layers[n].w_q.min() >= -128 and res.plan.layers[n].axis == 0
    ref, dep, fq = run(src, x), run(res.deploy_model, x), run(res.fake_quant_model, x)
    assert (dep.argmax(1) == ref.argmax(1)).mean() >= 0.98
    assert (fq.argmax(1) == ref.argmax(1)).mean() >= 0.98
    assert conv["output_vs_qat_model"]["deploy"]["y"]["cosine"] > 0.999
    # float biases (PyTorch) are requantized to int32 at scale_d * scale_w: the error is reported
    b = conv["bias_requantization"]
    assert all(v["source"] == "float bias" for v in b["layers"].values())
    for n, v in b["layers"].items():
        lq = res.plan.layers[n]
        bf = inits(res.prepared.model)[lq.bias].astype(np.float64)
        s = lq.b_scale.astype(np.float64)
        assert v["max_abs_error"] == pytest.approx(float(np.abs(bf - np.round(bf / s) * s).max()), rel=1e-6)
    assert (tmp_path / "qat.onnx").read_bytes() == before


# -- synthetic patterns -------------------------------------------------------------------------
@pytest.mark.parametrize("weight_form", ["int8", "float"])
@pytest.mark.parametrize("act", ["uint8", "int8"])
def test_synthetic_weight_forms_and_activation_types(weight_form, act):
    src = qdq_net(weight_form=weight_form, act=act)
    res = convert_qat(src, feeds=X, progress=False)
    assert sorted(res.plan.layers) == ["conv1", "conv2"] and res.config.activation_dtype == act
    np.testing.assert_array_equal(res.plan.layers["conv1"].w_q, inits(src)["w1_quantized"])
    assert res.record.layers["conv1"].offset_d == 0  # uint8 zp 128 and int8 zp 0: offset 0 on the int8 grid
    np.testing.assert_allclose(run(res.deploy_model, X), run(src, X), atol=0.02 + 1e-6)
    assert (run(res.deploy_model, X) == run(src, X)).mean() > 0.99


def test_lone_quantize_on_the_output_and_bn_kept_unfolded():
    src = qdq_net(output="q", bn=True)
    res = convert_qat(src, feeds=X, progress=False)
    conv = res.report()["conversion"]
    assert conv["patterns"]["output_quantize"] == 1
    assert res.deploy_model.graph.output[0].type.tensor_type.elem_type == TensorProto.UINT8
    # BatchNormalization after a layer with QAT integers is not folded (it would change them)
    assert "BatchNormalization" in {n.op_type for n in res.prepared.model.graph.node}
    assert conv["batchnorm_not_folded"] and "skip_fusion_layers" in conv["batchnorm_not_folded"][0]
    assert conv["weights"]["values_changed"] == 0
    ref, dep = run(src, X), run(res.deploy_model, X)
    assert ref.dtype == dep.dtype == np.uint8 and np.abs(ref.astype(int) - dep.astype(int)).max() <= 1


def test_integer_graph_input_is_dequantized_in_place():
    src = qdq_net()
    g = src.graph
    # the model takes uint8 images: drop the input Q, the DQ reads the graph input
    nodes = [n for n in g.node if n.name != "x_Q"]
    for n in nodes:
        if n.name == "x_DQ":
            n.input[0] = "xq"
    new = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("xq", TensorProto.UINT8, ["N", 4, 8, 8])],
                            list(g.output), list(g.initializer))
    m = helper.make_model(new, opset_imports=list(src.opset_import))
    m.ir_version = 8
    res = convert_qat(m, progress=False)
    assert res.report()["conversion"]["patterns"]["input_dequantize"] == 1 and "conv1" in res.plan.layers
    xq = np.random.default_rng(0).integers(0, 256, (4, 4, 8, 8)).astype(np.uint8)
    np.testing.assert_allclose(run(res.deploy_model, xq), run(m, xq), atol=0.02 + 1e-6)


def test_weight_scales_on_a_non_output_axis_leave_the_layer_float_with_its_values():
    src = qdq_net()
    for n in src.graph.node:
        if n.name == "w2_DQ":  # 8 scales along the input channels: no int8 kernel takes that
            del n.attribute[:]
            n.attribute.append(helper.make_attribute("axis", 1))
    res = convert_qat(src, feeds=X, progress=False)
    assert list(res.plan.layers) == ["conv1"]
    why = res.float_layers["conv2"]
    assert "axis 1" in why and "per output channel needs axis 0" in why and "QAT weight values" in why
    notes = res.report()["conversion"]["notes"]
    assert any("conv2 stays float between quantized tensors" in x for x in notes)
    w = inits(res.prepared.model)[res.prepared.layer("conv2").weight]
    s2 = inits(src)["w2_scale"].reshape(1, -1, 1, 1)
    np.testing.assert_array_equal(w, (inits(src)["w2_quantized"].astype(np.float32) * s2).astype(np.float32))


# -- the saturation guard ------------------------------------------------------------------------
def test_saturation_risk_reported_and_guard_optional():
    w2 = np.random.default_rng(5).uniform(-0.4, 0.4, (8, 8, 3, 3)).astype(np.float32)
    w2[0] = 1.0  # channel 0: every weight 127 -> 36 adjacent pairs of 254 (limit 128) in the kernel's order
    w2[1, :, 0, 0] = 0.0  # channel 1 elsewhere small: max |w| = 0.4 -> weights up to 127 too
    src = qdq_net(w2=w2)
    q2 = inits(src)["w2_quantized"]
    node = next(n for n in src.graph.node if n.name == "conv2")
    rows = OPS["Conv"].kernel_rows(node, q2).astype(int)
    a, b = rows[:, 0::2], rows[:, 1::2]
    expect = int((((a > 0) & (b > 0) & (a + b > 128)) | ((a < 0) & (b < 0) & (a + b < -128))).sum())
    assert expect >= 36
    off = convert_qat(src, saturation_guard="off", progress=False)
    sat = off.report()["conversion"]["saturation"]
    assert sat["this_cpu_saturates"] == int8_saturates() and sat["guard"] == "none"
    assert sat["layers"]["conv2"]["pairs_over_limit"] == expect and sat["pairs_adjusted"] == 0
    assert sat["pairs_over_limit"] == sum(v["pairs_over_limit"] for v in sat["layers"].values())
    np.testing.assert_array_equal(off.plan.layers["conv2"].w_q, q2)  # "off" keeps every QAT integer
    # the default ("auto") guards only where this CPU saturates
    auto = convert_qat(src, progress=False).report()["conversion"]["saturation"]
    assert auto["guard"] == ("uint8" if int8_saturates() else "none")
    # "always" stores conv2 (pairs over the limit) as uint8 q + 128: every QAT integer kept, exact everywhere
    dflt = convert_qat(src, saturation_guard="always", progress=False)
    sat = dflt.report()["conversion"]["saturation"]
    assert sat["guard"] == "uint8" and sat["pairs_adjusted"] == 0 and "conv2" in sat["uint8_weight_layers"]
    assert "uint8" in sat["advice"]
    for n in ("conv1", "conv2"):
        np.testing.assert_array_equal(dflt.plan.layers[n].w_q, off.plan.layers[n].w_q)
    stored = inits(dflt.deploy_model)[dflt.plan.layers["conv2"].weight + "_quantized"]
    assert stored.dtype == np.uint8
    np.testing.assert_array_equal(stored.astype(np.int32) - 128, q2)
    on = convert_qat(src, saturation_guard="pairs", progress=False)
    sat = on.report()["conversion"]["saturation"]
    assert sat["layers"]["conv2"]["pairs_adjusted"] == expect == on.plan.layers["conv2"].pairs_fixed
    g = OPS["Conv"].kernel_rows(node, on.plan.layers["conv2"].w_q).astype(int)
    a, b = g[:, 0::2], g[:, 1::2]
    assert not (((a > 0) & (b > 0) & (a + b > 128)) | ((a < 0) & (b < 0) & (a + b < -128))).any()
    moved = {n: int((on.plan.layers[n].w_q != off.plan.layers[n].w_q).sum()) for n in ("conv1", "conv2")}
    assert moved["conv2"] <= 2 * expect
    assert on.report()["conversion"]["weights"]["values_changed"] == sum(moved.values())
    assert sat["pairs_adjusted"] == sum(v["pairs_adjusted"] for v in sat["layers"].values())
    with pytest.raises(ConfigError, match="re-round the QAT integers"):
        convert_qat(src, saturation_guard="reduce_range", progress=False)


# -- a Relu folded into a grid (ONNX Runtime drops Relu/Clip before a uint8 QuantizeLinear) ------
def _without_relu1(also_output: bool = False) -> onnx.ModelProto:
    """qdq_net with relu1 removed as ONNX Runtime's quantizer does: conv1 writes ``r1``, whose grid (uint8,
    zero point 0) clamps it at 0; with ``also_output``, ``r1`` is also a graph output (read unclamped)."""
    m = qdq_net()
    nodes = [n for n in m.graph.node if n.name != "relu1"]
    for n in nodes:
        if n.name == "conv1":
            n.output[0] = "r1"
    del m.graph.node[:]
    m.graph.node.extend(nodes)
    if also_output:
        m.graph.output.append(helper.make_tensor_value_info("r1", TensorProto.FLOAT, ["N", 8, 8, 8]))
    return m


@pytest.mark.parametrize("also_output", [False, True])
def test_relu_folded_into_a_grid_comes_back_in_the_float_model(also_output):
    src = _without_relu1(also_output)
    res = convert_qat(src, progress=False)
    conv = res.report()["conversion"]
    assert conv["patterns"]["relu_restored"] == 1 and any("Relu(s) put back" in n for n in conv["notes"])
    fm = res.prepared.model
    assert [n.op_type for n in fm.graph.node].count("Relu") == 1
    # the float model computes what qdq_net's float model (with its Relu) computes
    want = make_session(convert_qat(qdq_net(), progress=False).prepared.model).run(["y"], {"x": X})[0]
    np.testing.assert_allclose(make_session(fm).run(["y"], {"x": X})[0], want, rtol=1e-5, atol=1e-5)
    if also_output:  # the graph output reads conv1 unclamped, as in the QDQ model; only the quantized path clamps
        got = make_session(fm).run(["r1"], {"x": X})[0]
        c1 = make_session(with_outputs(convert_qat(qdq_net(), progress=False).prepared.model, ["c1"])).run(
            ["c1"], {"x": X})[0]
        assert got.min() < 0 and np.array_equal(got, c1)
        assert "tensor:r1" not in res.record.layers
    else:  # the quantized tensor keeps its name (and its grid); conv1's own output is renamed
        assert "r1" in {o for n in fm.graph.node if n.op_type == "Relu" for o in n.output}
    assert conv["weights"]["values_changed"] == 0
    np.testing.assert_array_equal(run(res.deploy_model, X), run(src, X))


@pytest.fixture(scope="module")
def fmnist_resnet_qdq(tmp_path_factory):
    """The zoo's fmnist-resnet (BatchNormalization not folded) through ONNX Runtime's quantize_static:
    BN scales and int32 BN biases through DequantizeLinear, every Relu dropped into a uint8 grid."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static

    from amct_nb import zoo

    m = zoo.load("fmnist-resnet")
    x_cal = m.calibration_data(100)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter([{"input": x_cal[i:i + 25]} for i in range(0, 100, 25)])

        def get_next(self):
            return next(self.it, None)

    dst = tmp_path_factory.mktemp("fmnist") / "qdq.onnx"
    quantize_static(str(m.path), str(dst), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=_qtype("QUInt8"), weight_type=_qtype("QInt8"))
    return onnx.load(str(m.path)), onnx.load(dst), m.test_data(200)


def test_ort_qdq_with_unfolded_bn_keeps_the_float_semantics(fmnist_resnet_qdq):
    from amct_nb.ui import Session

    original, src, (x, y) = fmnist_resnet_qdq
    ops = [n.op_type for n in src.graph.node]
    assert "BatchNormalization" in ops and "Relu" not in ops  # the case: ORT dropped the Relus
    res = convert_qat(src, progress=False)
    conv = res.report()["conversion"]
    relus = [n.op_type for n in original.graph.node].count("Relu")
    assert conv["patterns"]["relu_restored"] == relus == 7  # not after GlobalAveragePool/Flatten (already >= 0)
    assert [n.op_type for n in res.prepared.model.graph.node].count("Relu") == relus
    # the float model is the QDQ model without its activation rounding (ORT without optimizations)
    fl = make_session(res.prepared.model).run(None, {"input": x})[0]
    ref = make_session(src, optimize=False).run(None, {"input": x})[0]
    orig = make_session(original).run(None, {"input": x})[0]
    rms = float(np.sqrt(((fl - ref) ** 2).mean() / (ref ** 2).mean()))
    assert rms < 0.06, rms  # measured 0.029 (activation quantization noise); ~800 with the Relus missing
    assert np.abs(fl - ref).max() < 0.15 * np.abs(ref).max()  # measured 0.062
    assert (fl.argmax(1) == ref.argmax(1)).mean() >= 0.97
    top1_orig = (orig.argmax(1) == y).mean()
    assert abs((fl.argmax(1) == y).mean() - top1_orig) <= 0.02
    # the quantized tensors keep the QDQ model's names and scales (the Relu outputs included)
    si, relu_tensors = inits(src), set()
    for k, r in res.record.layers.items():
        act = k[len(TENSOR_PREFIX):] if k.startswith(TENSOR_PREFIX) else res.prepared.layer(k).activation
        if f"{act}_scale" in si:  # (Flatten's output shares its input's scale)
            assert np.float32(r.scale_d).tobytes() == si[f"{act}_scale"].astype(np.float32).tobytes(), k
            if act.endswith("Relu_output_0"):
                relu_tensors.add(act)
    assert len(relu_tensors) == relus
    # the deploy model still computes what the QDQ model computes
    dep, src_out = run(res.deploy_model, x), run(src, x)
    assert (dep.argmax(1) == src_out.argmax(1)).mean() == 1.0
    assert np.abs(dep - src_out).max() <= 1e-5 * np.abs(src_out).max()
    # the Workbench's float column is the float model
    met = Session(res, eval_data=(x, y)).compare().metrics()
    assert abs(met["top1_fp"] - top1_orig) <= 0.02 and met["top1_q"] == (src_out.argmax(1) == y).mean()


# -- recalibration -----------------------------------------------------------------------------
def test_recalibrate_keeps_weights_and_narrows_within_the_qat_grids(ort_models):
    src, x = ort_models["cbr"]
    base = convert_qat(src, progress=False)
    res = convert_qat(src, recalibrate=x * 0.5, progress=False)  # half the activations' range
    rec = res.report()["conversion"]["recalibration"]
    assert rec["samples"] == len(x) and rec["changed"] >= 1
    for n, lq in base.plan.layers.items():
        np.testing.assert_array_equal(res.plan.layers[n].w_q, lq.w_q)
        assert res.record.layers[n].scale_w == base.record.layers[n].scale_w
    tighter = 0
    for t, tq in res.plan.tensors.items():
        old = base.plan.tensors[t]
        assert tq.lo >= old.lo - float(old.scale) and tq.hi <= old.hi + float(old.scale), t
        tighter += float(tq.scale) < float(old.scale)
    assert tighter >= 1
    assert res.report()["conversion"]["output_vs_qat_model"]["samples"] > 0


# -- errors: named node, the fix, nothing written ------------------------------------------------
def _mutations():
    base = qdq_net()
    per_ch = onnx.ModelProto()
    per_ch.CopyFrom(base)
    for n in per_ch.graph.node:
        if n.name in ("r1_Q", "r1_DQ"):
            n.attribute.append(helper.make_attribute("axis", 1))
    per_ch = set_init(set_init(per_ch, "r1_qs", np.full(8, 0.01, np.float32)), "r1_ds", np.full(8, 0.01, np.float32))
    per_ch = set_init(set_init(per_ch, "r1_qz", np.zeros(8, np.uint8)), "r1_dz", np.zeros(8, np.uint8))
    between = onnx.ModelProto()
    between.CopyFrom(base)
    nodes = list(between.graph.node)
    i = next(k for k, n in enumerate(nodes) if n.name == "r1_DQ")
    nodes[i].input[0] = "r1_pooled"
    nodes.insert(i, helper.make_node("MaxPool", ["r1_q"], ["r1_pooled"], name="pool_on_int", kernel_shape=[1, 1]))
    del between.graph.node[:]
    between.graph.node.extend(nodes)
    requant = onnx.ModelProto()
    requant.CopyFrom(base)
    for n in requant.graph.node:
        if n.name == "x_DQ":
            n.output[0] = "x_dq0"
    requant.graph.initializer.extend([t("x2_s", np.float32(0.01)), t("x2_z", 128, np.uint8)])
    extra = [helper.make_node("QuantizeLinear", ["x_dq0", "x2_s", "x2_z"], ["x2_q"], name="requant_Q"),
             helper.make_node("DequantizeLinear", ["x2_q", "x2_s", "x2_z"], ["x_dq"], name="requant_DQ")]
    nodes = list(requant.graph.node)
    k = next(j for j, n in enumerate(nodes) if n.name == "x_DQ") + 1
    del requant.graph.node[:]
    requant.graph.node.extend(nodes[:k] + extra + nodes[k:])
    bad_axis = onnx.ModelProto()
    bad_axis.CopyFrom(base)
    for n in bad_axis.graph.node:
        if n.name == "b1_DQ":  # 8 scales along axis 1 of the rank-1 bias: ONNX Runtime refuses it too
            del n.attribute[:]
            n.attribute.append(helper.make_attribute("axis", 1))
    return {
        "no_qdq": (models.conv_bn_relu(), ModelError, ["no QuantizeLinear/DequantizeLinear", "amct_nb.quantize"]),
        "constant_axis_out_of_range": (bad_axis, ModelError, ["'b1_DQ'", "shape [8]", "axis 1", "out of range"]),
        "scale_mismatch": (set_init(base, "r1_ds", np.float32(0.011)), ModelError,
                           ["'r1_Q'", "'r1_DQ'", "disagree", "scale 0.01", "re-export"]),
        "zp_mismatch": (set_init(base, "r1_dz", 3, np.uint8), ModelError, ["disagree", "zero point 0", "zero point 3"]),
        "per_channel_activation": (per_ch, ModelError, ["'r1_Q'", "per channel", "per-tensor activation"]),
        "op_between": (between, ModelError,
                       ["MaxPool 'pool_on_int'", "'r1_Q'", "'r1_DQ'", "after the DequantizeLinear"]),
        "requantization": (requant, ModelError, ["'x_DQ' feeds QuantizeLinear 'requant_Q'", "one grid per tensor"]),
        "asymmetric_weights": (set_init(base, "w1_zero_point", np.full(8, 3, np.int8)), ModelError,
                               ["layer 'conv1'", "asymmetric", "zero point 3", "symmetric"]),
        "uint8_weights": (set_init(set_init(base, "w1_quantized", np.abs(inits(base)["w1_quantized"]).astype(np.uint8)),
                                   "w1_zero_point", np.zeros(8, np.uint8)), ModelError,
                          ["layer 'conv1'", "uint8", "QuantType.QInt8"]),
    }


def _typed(zp_type: int):
    zp = helper.make_tensor("zp", zp_type, [], [0])
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "zp"], ["q"], name="q16"),
             helper.make_node("DequantizeLinear", ["q", "s", "zp"], ["d"], name="dq16"),
             helper.make_node("Conv", ["d", "w"], ["y"], name="conv")]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 2, 2])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 2, 2])],
                          [zp, t("s", np.float32(0.1)), t("w", np.ones((4, 4, 1, 1), np.float32))])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)])
    m.ir_version = 10
    return m


MUTATIONS = _mutations()


@pytest.mark.parametrize("case", sorted(MUTATIONS))
def test_bad_models_raise_clear_errors_and_write_nothing(tmp_path, case):
    model, exc, words = MUTATIONS[case]
    path = tmp_path / "in" / "m.onnx"
    path.parent.mkdir()
    onnx.save(model, path)
    with pytest.raises(exc) as e:
        amct_convert.convert_qat_model(str(path), str(tmp_path / "out" / "m"), str(tmp_path / "out" / "record.txt"))
    for w in words:
        assert w in str(e.value), (w, str(e.value))
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("zp_type,name", [(TensorProto.INT16, "int16"), (TensorProto.UINT16, "uint16"),
                                          (TensorProto.INT4, "int4"), (TensorProto.FLOAT8E4M3FN, "float8e4m3fn")])
def test_unsupported_types_are_named(zp_type, name):
    with pytest.raises(NotSupportedError) as e:
        convert_qat(_typed(zp_type), progress=False)
    assert f"quantizes to {name}:" in str(e.value) and "'q16'" in str(e.value) and "8-bit" in str(e.value)


def test_qoperator_models_are_refused(tmp_path):
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static

    src = tmp_path / "m.onnx"
    onnx.save(models.conv_bn_relu(), src)
    x = models.images(4, (4, 16, 16))

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter([{"x": x[i:i + 1]} for i in range(len(x))])

        def get_next(self):
            return next(self.it, None)

    quantize_static(str(src), str(tmp_path / "q.onnx"), Reader(), quant_format=QuantFormat.QOperator)
    with pytest.raises(ModelError, match="QOperator format.*QuantFormat.QDQ"):
        convert_qat(str(tmp_path / "q.onnx"), progress=False)


# -- AMCT's API and files ---------------------------------------------------------------------------
def test_convert_qat_model_writes_amct_files(tmp_path):
    path = tmp_path / "qat.onnx"
    onnx.save(qdq_net(bn=True), path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    out = amct_convert.convert_qat_model(str(path), str(tmp_path / "out" / "model"), str(tmp_path / "rec.txt"))
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "model_deploy_model.onnx", "model_fake_quant_model.onnx", "model_quant.json"]
    rec = Record.load(out["record"])
    direct = convert_qat(str(path), progress=False)
    assert rec.to_text() == direct.record.to_text()
    assert np.float32(rec.layers["conv1"].scale_d).tobytes() == np.float32(2 / 255).tobytes()
    assert out["deploy"].read_bytes() == direct.deploy_model.SerializeToString(deterministic=True)
    assert json.loads(out["quant_json"].read_text()) == {"fusion_info": {}}
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest
    with pytest.raises(AmctError, match="is the input model"):
        amct_convert.convert_qat_model(str(path), str(tmp_path / "x"), str(path))


def test_save_writes_the_conversion_into_the_report(tmp_path):
    src = qdq_net(weight_form="float")
    before = src.SerializeToString(deterministic=True)
    res = convert_qat(src, progress=False)
    assert src.SerializeToString(deterministic=True) == before  # a ModelProto argument is not modified either
    paths = res.save(tmp_path / "out", prefix="net")
    rep = json.loads(paths["report"].read_text())
    assert rep["conversion"]["qat_layers"] == 2
    assert rep["conversion"]["output_vs_qat_model"]["skipped"].startswith("no feeds")
    assert any(line.startswith("convert: saturation:") for line in paths["log"].read_text().splitlines())
    assert read_qdq(qdq_net()).patterns["activation_pairs"] == 3


# -- EfficientNet-Lite0 quantized by ONNX Runtime -------------------------------------------------------
@pytest.mark.slow
def test_efficientnet_ort_qdq(shared_data, tmp_path):
    import imagenet_dev

    cal, _ = imagenet_dev.load(0, 20)
    ev, _ = imagenet_dev.load(100, 200)
    src = ort_qdq(onnx.load(str(imagenet_dev.MODEL)), cal, tmp_path / "eff", per_channel=True,
                  activation_type=_qtype("QUInt8"), weight_type=_qtype("QInt8"))
    res = convert_qat(src, progress=False)
    conv = res.report()["conversion"]
    assert conv["qat_layers"] == 50 and not res.float_layers and conv["weights"]["values_changed"] == 0

    def predict(m):
        s = make_session(m)
        return np.concatenate([s.run(None, {"input": ev[i:i + 50]})[0] for i in range(0, len(ev), 50)])

    ref, dep, fq = predict(src), predict(res.deploy_model), predict(res.fake_quant_model)
    assert (dep.argmax(1) == ref.argmax(1)).mean() >= 0.995
    assert np.abs(dep - ref).max() <= 1e-3 * np.abs(ref).max()  # same int8 kernels, same integers
    assert (fq.argmax(1) == ref.argmax(1)).mean() >= 0.97
    # ORT's quantizer puts int32 biases up to 2^31 (it raises weight scales until they fit): all kept int8
    assert not conv["bias_requantization"]["moved_to_float_add"]
    assert conv["saturation"]["pairs_over_limit"] > 0 and conv["saturation"]["pairs_adjusted"] == 0
