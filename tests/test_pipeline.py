"""End to end on small models of every registered op type: structure, numbers, determinism."""

import json
import os

import models
import numpy as np
import onnx
import pytest

import amct_nb as an
from amct_nb.ir import make_session


def run(m, x, optimize=True):
    s = make_session(m, optimize=optimize)
    return s.run(None, {s.get_inputs()[0].name: x})[0]


def cos(a, b):
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


CASES = {
    "conv_bn_dw_gemm": (models.conv_bn_relu, (4, 16, 16)),
    "convtranspose": (models.convtranspose_model, (4, 16, 16)),
    "matmul_gemm": (models.mlp_matmul, (32,)),
    "constant_weights": (models.constant_weights, (4, 8, 8)),
    "opset11": (lambda: models.conv_bn_relu(opset=11), (4, 16, 16)),
}


def data(shape, n, seed):
    if len(shape) == 1:
        return np.random.default_rng(seed).normal(0, 1, (n,) + shape).astype(np.float32)
    return models.images(n, shape, seed=seed)


@pytest.mark.parametrize("case", sorted(CASES))
def test_quantize_every_op_type(case):
    build, shape = CASES[case]
    m = build()
    cal, ev = data(shape, 64, 0), data(shape, 32, 1)
    res = an.quantize(m, cal, progress=False)
    assert set(res.quantized_layers) == {l.name for l in res.prepared.layers if l.quantizable}
    assert res.quantized_layers, "nothing quantized"
    dep, fq = res.deploy_model, res.fake_quant_model
    onnx.checker.check_model(dep)
    onnx.checker.check_model(fq)
    qn = [n for n in dep.graph.node if n.op_type == "QuantizeLinear"]
    assert len(qn) == len(res.plan.tensors)
    int8_weights = [t for t in dep.graph.initializer if t.data_type == onnx.TensorProto.INT8 and len(t.dims) >= 2]
    uint8_weights = [t for t in dep.graph.initializer if t.data_type == onnx.TensorProto.UINT8 and len(t.dims) >= 2]
    assert len(uint8_weights) == len(res.plan.uint8_layers)  # the saturation guard's uint8 storage
    assert len(int8_weights) + len(uint8_weights) == len(res.plan.layers)
    ref = run(m, ev)
    y_dep, y_fq = run(dep, ev), run(fq, ev)
    # int8 is close to float, and the fake-quant model computes what the deploy model computes
    assert cos(y_dep, ref) > 0.995, case
    assert cos(y_fq, y_dep) > 0.9999, case
    scale = np.abs(ref).max()
    assert np.abs(y_fq - y_dep).max() <= 0.02 * scale, case
    # the deploy model is what ORT itself computes from the QDQ graph in float
    np.testing.assert_allclose(run(dep, ev, optimize=False), y_fq, atol=1e-4 * scale + 1e-6)


def test_bn_folded_and_depthwise_quantized():
    res = an.quantize(models.conv_bn_relu(), models.images(32, (4, 16, 16)), progress=False)
    assert "BatchNormalization" not in {n.op_type for n in res.prepared.model.graph.node}
    assert "dwconv" in res.quantized_layers
    dw = res.plan.layers["dwconv"]
    assert dw.axis == 0 and dw.w_scale.shape == (32,)
    assert res.plan.layers["fc"].axis == 0  # Gemm transB=1: output channels on axis 0


def test_weight_error_bounds_and_bias_int32():
    res = an.quantize(models.mlp_matmul(), data((32,), 64, 0), progress=False)
    idx = {t.name: t for t in res.prepared.model.graph.initializer}
    for _name, lq in res.plan.layers.items():
        w = onnx.numpy_helper.to_array(idx[lq.weight])
        shape = [1] * w.ndim
        shape[lq.axis] = -1
        err = np.abs(lq.w_q.astype(np.float32) * lq.w_scale.reshape(shape) - w)
        # per-channel rounding error (pairs adjusted by the saturation guard may move further)
        assert np.quantile(err / lq.w_scale.reshape(shape), 0.99) <= 0.5 + 1e-4
        if lq.b_q is not None:
            assert lq.b_q.dtype == np.int32
            sx = res.plan.tensors[lq.activation].scale
            np.testing.assert_allclose(lq.b_scale, np.float32(sx) * lq.w_scale, rtol=1e-6)


def test_save_outputs_and_byte_identical_rerun(tmp_path):
    m = models.conv_bn_relu()
    p = tmp_path / "net.onnx"
    onnx.save(m, p)
    before = p.read_bytes()
    cal = models.images(40, (4, 16, 16))
    outs = []
    for run_ in range(2):
        res = an.quantize(str(p), cal, progress=False)
        paths = res.save(tmp_path / f"out{run_}")
        outs.append({k: v.read_bytes() for k, v in paths.items() if k != "log" and k != "modified"})
    assert p.read_bytes() == before
    names = sorted(os.path.relpath(f, tmp_path / "out1") for f in paths.values())
    assert names == sorted(["net_fake_quant_model.onnx", "net_deploy_model.onnx", "net_quant.json", "net_report.json",
                            "tmp/config.json", "tmp/record.txt", "tmp/modified_model.onnx", "amct_log/amct_onnx.log"])
    for k in outs[0]:
        assert outs[0][k] == outs[1][k], k
    cfg = json.loads(outs[0]["config"])
    assert cfg["conv1"]["quant_enable"] is True and cfg["conv1"]["weight_quant_params"]["channel_wise"] is True
    rec = an.Record.from_text(outs[0]["record"].decode())
    assert set(k for k in rec.layers if not k.startswith("tensor:")) == set(res.quantized_layers)
    assert all(np.isfinite(r.scale_d) and r.scale_d > 0 for r in rec.layers.values())
    fusion = json.loads(outs[0]["quant_json"])["fusion_info"]
    assert fusion == {"conv1": ["bn1"], "dwconv": ["bn2"]}
    assert not list((tmp_path / "out0").glob(".amct-nb*"))  # no staging or lock left behind


def test_skip_layer_and_config_roundtrip(tmp_path):
    m = models.conv_bn_relu()
    cal = models.images(16, (4, 16, 16))
    cfg = an.QuantConfig()
    cfg.set("fc", quant_enable=False).set("conv1", act_algo="percentile", percentile=99.9)
    res = an.quantize(m, cal, cfg, progress=False)
    assert "fc" not in res.quantized_layers and "quant_enable" in res.float_layers["fc"]
    text = res.config.to_json(res.prepared.layers)
    back = an.QuantConfig.from_amct_dict(json.loads(text))
    assert back.layers["fc"].quant_enable is False
    assert back.layers["conv1"].act_algo == "percentile" and back.layers["conv1"].percentile == 99.9
    res2 = an.quantize(m, cal, back, progress=False)
    assert (res2.deploy_model.SerializeToString(deterministic=True)
            == res.deploy_model.SerializeToString(deterministic=True))


def test_record_roundtrip_and_build_from_record():
    m = models.conv_bn_relu()
    res = an.quantize(m, models.images(16, (4, 16, 16)), progress=False)
    rec = an.Record.from_text(res.record.to_text())
    assert rec.to_text() == res.record.to_text()
    again = an.build(res.prepared, res.config, {}, record=rec)
    assert (again.deploy_model.SerializeToString(deterministic=True)
            == res.deploy_model.SerializeToString(deterministic=True))


def test_per_tensor_and_symmetric_options():
    cfg = an.QuantConfig(activation_offset=False)
    cfg.default.channel_wise = False
    res = an.quantize(models.conv_bn_relu(), models.images(16, (4, 16, 16)), cfg, progress=False)
    assert all(l.axis is None for l in res.plan.layers.values())
    assert all(t.zero_point == 128 for t in res.plan.tensors.values())


@pytest.mark.parametrize("algo", ["minmax", "percentile", "entropy", "mse"])
def test_range_algorithms_end_to_end(algo):
    cfg = an.QuantConfig()
    cfg.default.act_algo = algo
    m = models.conv_bn_relu()
    ev = models.images(16, (4, 16, 16), seed=5)
    res = an.quantize(m, models.images(32, (4, 16, 16)), cfg, progress=False)
    assert cos(run(res.deploy_model, ev), run(m, ev)) > 0.99


def test_amct_flow_matches_direct_api(tmp_path):
    import amct_nb.amct as amct
    m = models.conv_bn_relu()
    mp = tmp_path / "m.onnx"
    onnx.save(m, mp)
    cal = models.images(20, (4, 16, 16))
    cfgp, mod, recp = tmp_path / "tmp/config.json", tmp_path / "tmp/modified_model.onnx", tmp_path / "tmp/record.txt"
    amct.create_quant_config(cfgp, mp, skip_layers=["fc"], batch_num=2)
    assert json.loads(cfgp.read_text())["fc"]["quant_enable"] is False
    amct.quantize_model(cfgp, mp, mod, recp)
    assert recp.read_text() == ""
    with pytest.raises(an.ConfigError, match="InferenceSession"):
        amct.save_model(mod, recp, tmp_path / "out/m")
    s = amct.InferenceSession(mod)
    y = s.run(None, {"x": cal[:10]})[0]
    assert y.shape == (10, 10)
    s.run(None, {"x": cal[10:]})
    assert recp.read_text().startswith("record {")
    paths = amct.save_model(mod, recp, tmp_path / "out/m")
    direct = an.quantize(str(mp), [cal[:10], cal[10:]], an.QuantConfig(skip_layers=["fc"]), progress=False)
    assert paths["deploy"].read_bytes() == direct.deploy_model.SerializeToString(deterministic=True)
    assert paths["fake_quant"].read_bytes() == direct.fake_quant_model.SerializeToString(deterministic=True)


def test_amct_cfg_definition(tmp_path):
    import amct_nb.amct as amct
    mp = tmp_path / "m.onnx"
    onnx.save(models.conv_bn_relu(), mp)
    cfg = tmp_path / "q.cfg"
    cfg.write_text("""
# AMCT simple config
batch_num: 2
activation_offset: true
skip_layers: "fc"
common_config : {
    arq_quantize : { channel_wise : true }
    ifmr_quantize : { search_range_start : 0.7 search_range_end : 1.3 search_step : 0.01
                      max_percentile : 0.999999 min_percentile : 0.999999 asymmetric : true }
}
override_layer_types : { layer_type : "Gemm" calibration_config : { arq_quantize : { channel_wise : false } } }
""")
    amct.create_quant_config(tmp_path / "c.json", mp, config_defination=cfg)
    d = json.loads((tmp_path / "c.json").read_text())
    assert d["batch_num"] == 2 and d["fc"]["quant_enable"] is False
    assert d["fc"]["weight_quant_params"]["channel_wise"] is False
    assert d["conv1"]["activation_quant_params"]["act_algo"] == "mse"
