"""The fake-quant model computes what ONNX Runtime's int8 kernels compute, integer for integer.

Each test quantizes a small synthetic model and reads, for every quantized tensor, the integers the
deploy model's fused kernels write (ONNX Runtime, all graph optimizations on: QLinearConv, QGemm,
QLinearMatMul, QLinearAdd, QLinearConcat) and the ``q`` of the fake-quant model's grid. With the
emulation (``amct_nb/export/fake_quant.py``) they are equal: no difference at all is allowed,
because the kernels' float steps are reproduced operation for operation, not approximated. Two tests
allow one step on at most 0.1% of the values, where ONNX Runtime itself runs a layer in float on
dequantized values (ConvTranspose; Conv with int8 activations), whose float sums round in another
order than the integer accumulator. Float outputs are compared with a 1e-5 relative tolerance.
"""

from types import SimpleNamespace

import models
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

import amct_nb as an
from amct_nb.export import QuantPlan, TensorQuant, WeightOnly, build_deploy, build_fake_quant
from amct_nb.export.fake_quant import ort_weight_quant
from amct_nb.ir import make_session


def _session(model, outputs, keep=None):
    """Session over ``model`` that also returns ``outputs`` ({name: elem type}); optimized graph to ``keep``."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    for name, et in outputs.items():
        m.graph.output.append(helper.make_tensor_value_info(name, et, None))
    so = ort.SessionOptions()
    so.log_severity_level = 3
    if keep is not None:
        so.optimized_model_filepath = str(keep)
    return ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])


def integers(res, x, tmp_path):
    """({tensor: (deploy ints, fake-quant ints)}, deploy outputs, fake-quant outputs, {node: op type ORT ran})."""
    et = TensorProto.UINT8 if res.config.activation_dtype == "uint8" else TensorProto.INT8
    ts = list(res.plan.tensors)
    path = tmp_path / "deploy_opt.onnx"
    ds = _session(res.deploy_model, {f"{t}_QuantizeLinear_Output": et for t in ts}, keep=path)
    fs = _session(res.fake_quant_model, {f"{t}_fq_q": TensorProto.FLOAT for t in ts})
    feed = x if isinstance(x, dict) else {ds.get_inputs()[0].name: x}
    d, f = ds.run(None, feed), fs.run(None, feed)
    n = len(res.deploy_model.graph.output)
    pairs = {t: (d[n + i].astype(np.float32), f[n + i]) for i, t in enumerate(ts)}
    ops = {node.name: node.op_type for node in onnx.load(str(path)).graph.node}
    return pairs, d[:n], f[:n], ops


def assert_identical(res, x, tmp_path, fused=(), float_rtol=1e-5, steps=0, share=0.0):
    """Every quantized tensor's integers equal (or at most ``steps`` apart on at most ``share`` of them)."""
    pairs, dout, fout, ops = integers(res, x, tmp_path)
    assert set(fused) <= set(ops.values()), f"ONNX Runtime did not fuse {set(fused) - set(ops.values())}: {ops}"
    worst = {t: (float(np.abs(d - f).max()), float(np.mean(d != f))) for t, (d, f) in pairs.items()}
    bad = {t: v for t, v in worst.items() if v[0] > steps or v[1] > share}
    assert not bad, bad
    for a, b in zip(dout, fout):
        np.testing.assert_allclose(b, a, rtol=float_rtol, atol=float_rtol * float(np.abs(a).max()))
    return ops


def quantize(model, x, **cfg):
    config = an.QuantConfig(safety_net=False, min_output_sqnr_db=None)
    layer_keys = {"channel_wise"}
    for k, v in cfg.items():
        if k in layer_keys:
            setattr(config.default, k, v)
        else:
            setattr(config, k, v)
    return an.quantize(model, x, config, progress=False)


IMAGES = models.images(16, (4, 16, 16), seed=5)


@pytest.mark.parametrize("channel_wise", [True, False], ids=["per-channel", "per-tensor"])
def test_conv_depthwise_add_gemm(tmp_path, channel_wise):
    """QLinearConv (ReLU / ReLU6 fused into the clamp), the depthwise kernel, QLinearAdd, QGemm with a
    float output; the GlobalAveragePool between them runs in float in both models."""
    res = quantize(models.conv_bn_relu(), IMAGES, channel_wise=channel_wise, min_input_channels=0)
    assert len(res.plan.layers) == 4
    assert_identical(res, models.images(8, (4, 16, 16), seed=6), tmp_path,
                     fused=("QLinearConv", "QLinearAdd", "QGemm"))


def test_int8_activations(tmp_path):
    """int8 activations: ONNX Runtime (1.32, x86) runs the convolutions in float between DequantizeLinear
    and QuantizeLinear (no s8 x s8 QLinearConv): its float sums round differently from the integer
    accumulator, so a few values in 10^4 are one step apart (not emulated); QLinearAdd stays exact."""
    res = quantize(models.conv_bn_relu(), IMAGES, activation_dtype="int8", min_input_channels=0)
    assert_identical(res, models.images(8, (4, 16, 16), seed=6), tmp_path, fused=("QLinearAdd",),
                     steps=1, share=1e-3)


@pytest.mark.parametrize("guard", ["off", "always"])
def test_per_tensor_uint8_weights(tmp_path, guard):
    """Per-tensor weights through ORT's u8 x s8 and (the saturation guard's uint8 storage) u8 x u8 kernels."""
    res = quantize(models.conv_bn_relu(seed=7), IMAGES, channel_wise=False, saturation_guard=guard,
                   min_input_channels=0)
    assert_identical(res, models.images(8, (4, 16, 16), seed=6), tmp_path, fused=("QLinearConv",))


def test_matmul_gemm(tmp_path):
    """QLinearMatMul / QGemm with requantized and float outputs."""
    x = np.random.default_rng(0).normal(0, 1, (32, 32)).astype(np.float32)
    res = quantize(models.mlp_matmul(), x)
    assert set(res.plan.layers) == {"mm1", "mm2", "gemm"}
    assert_identical(res, np.random.default_rng(1).normal(0, 1, (16, 32)).astype(np.float32), tmp_path)


def wide_model(seed=21):
    """1x1 conv + ReLU, depthwise 3x3 + ReLU6, 1x1 conv, residual Add: 3 million values per run."""
    r = np.random.default_rng(seed)
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1"),
             helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
             helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], name="dw", group=32, pads=[1, 1, 1, 1]),
             helper.make_node("Clip", ["c2", "lo", "hi"], ["r2"], name="relu6"),
             helper.make_node("Conv", ["r2", "w3", "b3"], ["c3"], name="conv3"),
             helper.make_node("Add", ["c3", "r1"], ["y0"], name="res"),
             helper.make_node("Conv", ["y0", "w4"], ["y"], name="head")]
    inits = [models.w("w1", r.normal(0, 0.5, (32, 8, 1, 1))), models.w("b1", r.normal(0, 0.1, 32)),
             models.w("w2", r.normal(0, 0.5, (32, 1, 3, 3))), models.w("b2", r.normal(0, 0.1, 32)),
             models.w("lo", 0.0), models.w("hi", 6.0),
             models.w("w3", r.normal(0, 0.3, (32, 32, 1, 1))), models.w("b3", r.normal(0, 0.1, 32)),
             models.w("w4", r.normal(0, 0.3, (4, 32, 1, 1)))]
    return models._model(nodes, [models.f32("x", ["N", 8, 32, 32])], [models.f32("y", ["N", 4, 32, 32])], inits)


def test_many_values_and_what_the_emulation_fixes(tmp_path):
    """3 million requantized values and additions: none differs; the model without the emulation
    (``emulate_ort=False``: ``acc * m * s_y / s_y`` rounded, the float Add) flips a few of them."""
    res = quantize(wide_model(), models.images(16, (8, 32, 32), seed=1))
    x = models.images(96, (8, 32, 32), seed=2)
    assert_identical(res, x, tmp_path, fused=("QLinearConv", "QLinearAdd"))
    res.fake_quant_model = build_fake_quant(res.prepared.model, res.plan, emulate_ort=False)
    pairs = integers(res, x, tmp_path)[0]
    assert sum(int((d != f).sum()) for d, f in pairs.values()) > 0


def add_model():
    """Add of two inputs, then a float op (so that the Add, between Q/DQ, becomes a QLinearAdd)."""
    nodes = [helper.make_node("Add", ["a", "b"], ["c"], name="add"), helper.make_node("Neg", ["c"], ["y"], name="neg")]
    return models._model(nodes, [models.f32("a", ["N"]), models.f32("b", ["N"])], [models.f32("y", ["N"])], [])


@pytest.mark.parametrize("dtype", ["uint8", "int8"])
def test_qlinear_add_every_pair(tmp_path, dtype):
    """QLinearAdd on all 65536 pairs of input integers, for random scales and zero points."""
    rng = np.random.default_rng(3)
    lo = 0 if dtype == "uint8" else -128
    ia, ib = (g.ravel() + lo for g in np.meshgrid(np.arange(256), np.arange(256)))
    for _ in range(16):  # the float Add of dequantized values differs on ~1 pair in 2 x 10^5
        s = rng.uniform(0.01, 0.3, 3).astype(np.float32)
        z = rng.integers(lo, lo + 256, 3)
        plan = QuantPlan(tensors={t: TensorQuant(t, s[i], int(z[i]), dtype) for i, t in enumerate("abc")})
        res = SimpleNamespace(plan=plan, config=SimpleNamespace(activation_dtype=dtype),
                              deploy_model=build_deploy(add_model(), plan),
                              fake_quant_model=build_fake_quant(add_model(), plan))
        x = {"a": ((ia - z[0]) * s[0]).astype(np.float32), "b": ((ib - z[1]) * s[1]).astype(np.float32)}
        pairs, _, _, ops = integers(res, x, tmp_path)
        assert ops["add"] == "QLinearAdd"
        np.testing.assert_array_equal(pairs["a"][0], ia)
        np.testing.assert_array_equal(pairs["c"][0], pairs["c"][1])


def convtranspose_relu_model(seed=3):
    r = np.random.default_rng(seed)
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="down", strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu"),
        helper.make_node("ConvTranspose", ["r1", "wt", "bt"], ["u"], name="up", strides=[2, 2], pads=[1, 1, 1, 1],
                         output_padding=[1, 1]),
        helper.make_node("Relu", ["u"], ["ru"], name="relu2"),
        helper.make_node("Conv", ["ru", "w3", "b3"], ["y"], name="conv3"),
    ]
    inits = [models.w("w1", r.normal(0, 0.3, (8, 4, 3, 3))), models.w("b1", r.normal(0, 0.1, 8)),
             models.w("wt", r.normal(0, 0.3, (8, 6, 3, 3))), models.w("bt", r.normal(0, 0.1, 6)),
             models.w("w3", r.normal(0, 0.3, (4, 6, 1, 1))), models.w("b3", r.normal(0, 0.1, 4))]
    return models._model(nodes, [models.f32("x", ["N", 4, 16, 16])], [models.f32("y", ["N", 4, 16, 16])], inits)


def test_convtranspose(tmp_path):
    """ONNX Runtime (1.32, CPU) runs a QDQ ConvTranspose in float on dequantized values: its float sums
    round differently from the integer accumulator, so a value may be one step apart (not emulated)."""
    res = quantize(convtranspose_relu_model(), IMAGES)
    ops = assert_identical(res, models.images(8, (4, 16, 16), seed=6), tmp_path, steps=1, share=1e-3)
    assert ops["up"] == "ConvTranspose"


def concat_model(seed=11):
    """Two convolutions concatenated (QLinearConcat requantizes each input to the output grid)."""
    r = np.random.default_rng(seed)
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
        helper.make_node("Conv", ["r1", "w3", "b3"], ["c3"], name="conv3"),
        helper.make_node("Concat", ["c2", "c3"], ["cat"], name="cat", axis=1),
        helper.make_node("Conv", ["cat", "w4", "b4"], ["y"], name="conv4"),
    ]
    inits = [models.w("w1", r.normal(0, 0.3, (8, 4, 3, 3))), models.w("b1", r.normal(0, 0.1, 8)),
             models.w("w2", r.normal(0, 0.3, (8, 8, 3, 3))), models.w("b2", r.normal(0, 0.1, 8)),
             models.w("w3", r.normal(0, 0.9, (8, 8, 1, 1))), models.w("b3", r.normal(0, 0.1, 8)),
             models.w("w4", r.normal(0, 0.3, (4, 16, 1, 1))), models.w("b4", r.normal(0, 0.1, 4))]
    return models._model(nodes, [models.f32("x", ["N", 4, 16, 16])], [models.f32("y", ["N", 4, 16, 16])], inits)


def test_concat(tmp_path):
    res = quantize(concat_model(), IMAGES)
    assert "cat" in res.plan.tensors
    assert_identical(res, models.images(8, (4, 16, 16), seed=6), tmp_path, fused=("QLinearConv",))


def float_middle_model(seed=12):
    """conv1 -> Relu -> conv2 -> Relu -> conv3: conv2 is left float between two quantized tensors."""
    r = np.random.default_rng(seed)
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
        helper.make_node("Conv", ["r2", "w3", "b3"], ["y"], name="conv3"),
    ]
    inits = [models.w("w1", r.normal(0, 0.3, (8, 4, 3, 3))), models.w("b1", r.normal(0, 0.1, 8)),
             models.w("w2", r.normal(0, 0.3, (16, 8, 3, 3)) * r.uniform(0.1, 2, (16, 1, 1, 1))),
             models.w("b2", r.normal(0, 0.1, 16)),
             models.w("w3", r.normal(0, 0.3, (4, 16, 1, 1))), models.w("b3", r.normal(0, 0.1, 4))]
    return models._model(nodes, [models.f32("x", ["N", 4, 16, 16])], [models.f32("y", ["N", 4, 16, 16])], inits)


def _float_conv2():
    cfg = an.QuantConfig(safety_net=False, min_output_sqnr_db=None)
    cfg.layers["conv2"] = an.LayerConfig(quant_enable=False)
    res = an.quantize(float_middle_model(), IMAGES, cfg, progress=False)
    assert "conv2" not in res.plan.layers and {"r1", "r2"} <= set(res.plan.tensors)
    return res


def test_float_layer_quantized_by_ort(tmp_path):
    """ONNX Runtime's WeightBiasQuantization gives a float layer between Q/DQ per-tensor int8 weights."""
    res = _float_conv2()
    ops = assert_identical(res, models.images(8, (4, 16, 16), seed=6), tmp_path, fused=("QLinearConv",))
    assert [t for n, t in ops.items() if n.startswith("conv2")] == ["QLinearConv"]  # conv2 too runs in int8


def test_weight_only_layer_between_quantized(tmp_path):
    """A weight-only layer (int8 weight behind a DequantizeLinear) between quantized tensors: QLinearConv
    with its per-channel weights and an int32 bias ONNX Runtime makes from the float one."""
    res = _float_conv2()
    w = onnx.numpy_helper.to_array(next(t for t in res.prepared.model.graph.initializer if t.name == "w2"))
    s = (np.abs(w).reshape(16, -1).max(1) / 127).astype(np.float32)
    q = np.round(w / s[:, None, None, None]).astype(np.int8)
    res.plan.weight_only = {"w2": WeightOnly("w2", 0, q, s, ("conv2",), "layer")}
    res.fake_quant_model = build_fake_quant(res.prepared.model, res.plan)
    res.deploy_model = build_deploy(res.prepared.model, res.plan)
    ops = assert_identical(res, models.images(8, (4, 16, 16), seed=6), tmp_path, fused=("QLinearConv",))
    assert [t for n, t in ops.items() if n.startswith("conv2")] == ["QLinearConv"]


def test_ort_weight_quant_matches_onnxruntime(tmp_path):
    """Our copy of WeightBiasQuantization's weight grid equals the one ONNX Runtime builds."""
    res = _float_conv2()
    path = tmp_path / "opt.onnx"
    _session(res.deploy_model, {}, keep=path)
    opt = onnx.load(str(path))
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in opt.graph.initializer}
    node = next(n for n in opt.graph.node if n.op_type == "QLinearConv" and "conv2" in n.name)
    w = onnx.numpy_helper.to_array(next(t for t in res.prepared.model.graph.initializer if t.name == "w2"))
    q, scale, zp = ort_weight_quant(w)
    assert np.float32(inits[node.input[4]]) == scale
    assert int(inits[node.input[5]]) == zp
    np.testing.assert_array_equal(inits[node.input[3]].astype(np.int32) - zp, q)


def test_fake_quant_stays_plain_float(tmp_path):
    """No quantized types or int8 kernels in the fake-quant model, and its accuracy vs float is that of
    the deploy model (it computes the same numbers)."""
    res = quantize(models.conv_bn_relu(), IMAGES)
    fq = res.fake_quant_model
    onnx.checker.check_model(fq)
    assert {t.data_type for t in fq.graph.initializer} <= {TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.INT64}
    assert not {n.op_type for n in fq.graph.node} & {"QuantizeLinear", "DequantizeLinear"}
    x = models.images(8, (4, 16, 16), seed=6)
    y = make_session(fq, optimize=False).run(None, {"x": x})[0]  # the plain ONNX semantics, no ORT rewrite
    ref = make_session(res.prepared.model).run(None, {"x": x})[0]
    dep = make_session(res.deploy_model).run(None, {"x": x})[0]
    np.testing.assert_allclose(y, dep, rtol=1e-5, atol=1e-5 * np.abs(dep).max())
    assert np.abs(y - ref).max() < 0.1 * np.abs(ref).max()


def gemm_chain_model(seed=5):
    """MatMul -> Relu -> Gemm(transB) -> Relu -> MatMul -> Relu -> Gemm."""
    r = np.random.default_rng(seed)
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h1"], name="mm1"),
             helper.make_node("Relu", ["h1"], ["a1"], name="act1"),
             helper.make_node("Gemm", ["a1", "w2", "b2"], ["h2"], name="gemm2", transB=1),
             helper.make_node("Relu", ["h2"], ["a2"], name="act2"),
             helper.make_node("MatMul", ["a2", "w3"], ["h3"], name="mm3"),
             helper.make_node("Relu", ["h3"], ["a3"], name="act3"),
             helper.make_node("Gemm", ["a3", "w4", "b4"], ["y"], name="gemm4")]
    inits = [models.w("w1", r.normal(0, 0.2, (32, 64))), models.w("w2", r.normal(0, 0.2, (48, 64))),
             models.w("b2", r.normal(0, 0.1, 48)), models.w("w3", r.normal(0, 0.2, (48, 40))),
             models.w("w4", r.normal(0, 0.2, (40, 10))), models.w("b4", r.normal(0, 0.1, 10))]
    return models._model(nodes, [models.f32("x", ["N", 32])], [models.f32("y", ["N", 10])], inits)


@pytest.mark.parametrize("weight_only", [False, True], ids=["float-weight", "weight-only"])
def test_float_gemm_quantized_by_ort(tmp_path, weight_only):
    """A Gemm left float between quantized tensors runs as QGemm: with ORT's own per-tensor weights, or
    with the plan's weight-only int8 weights (one scale per output row)."""
    rng = np.random.default_rng(5)
    cfg = an.QuantConfig(safety_net=False, min_output_sqnr_db=None)
    cfg.layers["gemm2"] = an.LayerConfig(quant_enable=False)
    res = an.quantize(gemm_chain_model(), rng.normal(0, 1, (64, 32)).astype(np.float32), cfg, progress=False)
    assert "gemm2" not in res.plan.layers and {"a1", "a2"} <= set(res.plan.tensors)
    if weight_only:
        w = onnx.numpy_helper.to_array(next(t for t in res.prepared.model.graph.initializer if t.name == "w2"))
        s = (np.abs(w).max(1) / 127).astype(np.float32)
        res.plan.weight_only = {"w2": WeightOnly("w2", 0, np.round(w / s[:, None]).astype(np.int8), s, ("gemm2",),
                                                 "layer")}
        res.fake_quant_model = build_fake_quant(res.prepared.model, res.plan)
        res.deploy_model = build_deploy(res.prepared.model, res.plan)
    ops = assert_identical(res, rng.normal(0, 1, (2048, 32)).astype(np.float32), tmp_path)
    assert ops["gemm2"] == "QGemm"


@pytest.mark.slow
def test_efficientnet_top1_agreement(shared_data):
    """EfficientNet-Lite0, default config and per-tensor weights: the fake-quant model predicts what the
    deploy model predicts on every one of 100 held-out dev images (calibration: images 0-99;
    benchmarks/SIM_VS_DEPLOY.md has all 400)."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import imagenet_dev

    cal, _ = imagenet_dev.load(0, 100)
    ev, _ = imagenet_dev.load(100, 200)
    prep = an.prepare(str(imagenet_dev.MODEL))
    stats = an.collect_stats(prep, cal, progress=False)
    for channel_wise in (True, False):
        cfg = an.QuantConfig()
        cfg.default.channel_wise = channel_wise
        res = an.build(prep, cfg, stats)
        dep = make_session(res.deploy_model).run(None, {"input": ev})[0].argmax(1)
        fq = make_session(res.fake_quant_model).run(None, {"input": ev})[0].argmax(1)
        assert (fq == dep).mean() >= 0.99, (channel_wise, (fq == dep).mean())


def attention_model(seed=8):
    """q = x Wq, k = x Wk, scores = q k^T (a MatMul of two activations), y = scores Wo."""
    r = np.random.default_rng(seed)
    nodes = [helper.make_node("MatMul", ["x", "wq"], ["q"], name="proj_q"),
             helper.make_node("MatMul", ["x", "wk"], ["k"], name="proj_k"),
             helper.make_node("Transpose", ["k"], ["kt"], name="kt", perm=[0, 2, 1]),
             helper.make_node("MatMul", ["q", "kt"], ["s"], name="scores"),
             helper.make_node("MatMul", ["s", "wo"], ["y"], name="out")]
    inits = [models.w("wq", r.normal(0, 0.3, (32, 32))), models.w("wk", r.normal(0, 0.3, (32, 32))),
             models.w("wo", r.normal(0, 0.3, (24, 8)))]
    return models._model(nodes, [models.f32("x", ["N", 24, 32])], [models.f32("y", ["N", 24, 8])], inits)


def test_activation_matmul(tmp_path):
    """QLinearMatMul of two activations: the integer product of both inputs, requantized as a layer's."""
    rng = np.random.default_rng(8)
    res = quantize(attention_model(), rng.normal(0, 1, (32, 24, 32)).astype(np.float32))
    assert res.activation_matmuls == ["scores"] and "s" in res.plan.tensors
    ops = assert_identical(res, rng.normal(0, 1, (256, 24, 32)).astype(np.float32), tmp_path)
    assert ops["scores"] == "QLinearMatMul"
