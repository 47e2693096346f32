"""The engine's seams: structured reasons and fusion info, registries, rebuild as an engine function,
and clear errors (never silent fallbacks) for AMCT features amct-nb does not have yet."""

import json

import models
import numpy as np
import onnx
import pytest
from onnx import helper

import amct_nb as an
import amct_nb.amct as amct
from amct_nb.ops import find_layers
from amct_nb.quant import SCHEMES, QuantizedWeight, WeightTask, register_scheme
from amct_nb.quant.weights import Uniform


def _cal(n=16):
    return models.images(n, (4, 16, 16))


def test_reasons_carry_codes():
    cfg = an.QuantConfig(min_input_channels=8)  # the 4-channel conv1 is a stem now
    cfg.set("fc", quant_enable=False)
    res = an.quantize(models.conv_bn_relu(), _cal(), cfg, progress=False)
    fl = res.float_layers
    assert fl["conv1"].code == an.Code.STEM and "min_input_channels" in fl["conv1"]
    assert fl["fc"].code == an.Code.DISABLED and fl["fc"] == "disabled in the config (quant_enable: false)"
    rep = res.report()
    assert {"name": "fc", "reason": str(fl["fc"]), "code": "disabled"} in rep["float_layers"]
    json.dumps(rep)  # reasons serialize as their text


def test_fusion_info_comes_from_structured_changes(tmp_path):
    res = an.quantize(models.conv_bn_relu(), _cal(), progress=False)
    kinds = {c.kind for c in res.prepared.changes}
    assert "bn_folded" in kinds
    paths = res.save(tmp_path / "out")
    assert json.loads(paths["quant_json"].read_text()) == {"fusion_info": {"conv1": ["bn1"], "dwconv": ["bn2"]}}
    # the AMCT flow carries the same fusion info through the modified model's metadata
    cfg, mod, rec = tmp_path / "c.json", tmp_path / "mod.onnx", tmp_path / "r.txt"
    mp = tmp_path / "m.onnx"
    onnx.save(models.conv_bn_relu(), mp)
    amct.create_quant_config(cfg, mp)
    amct.quantize_model(cfg, mp, mod, rec)
    sess = amct.InferenceSession(mod)
    sess.run(None, {"x": _cal(4)})
    out = amct.save_model(mod, rec, tmp_path / "amct" / "m")
    assert json.loads(out["quant_json"].read_text()) == {"fusion_info": {"conv1": ["bn1"], "dwconv": ["bn2"]}}


def test_out_channels_from_the_registry():
    """Output channels come from the op registry: Gemm with transB=0 reads [K, N], a grouped
    ConvTranspose [C_in, C_out/group, ...]."""
    layers = {l.name: l for l in find_layers(models.mlp_matmul())}
    assert layers["gemm"].out_channels == 10 and layers["gemm"].weight_shape == (64, 10)
    assert layers["mm1"].out_channels == 64
    x = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 8, 4, 4])
    y = helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)
    wt = onnx.numpy_helper.from_array(np.ones((8, 3, 2, 2), np.float32), "wt")
    node = helper.make_node("ConvTranspose", ["x", "wt"], ["y"], name="up", group=2)
    g = helper.make_graph([node], "g", [x], [y], [wt])
    (up,) = find_layers(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]))
    assert up.out_channels == 6 and up.channel_axis is None  # grouped: per-tensor weights only


def test_type_overrides_apply_per_layer_without_sharing(tmp_path):
    """AMCT's override_layer_types is a config field (no hidden attribute), and editing one layer's
    settings does not change the other layers of the type."""
    cfg_file = tmp_path / "q.cfg"
    cfg_file.write_text('skip_layers : "conv1"\noverride_layer_types : { layer_type : "Conv" calibration_config : '
                        '{ arq_quantize : { channel_wise : false } } }\n')
    from amct_nb.amct.cfg import config_from_definition

    cfg = config_from_definition(cfg_file)
    assert cfg.for_layer("pwconv", "Conv").channel_wise is False and cfg.for_layer("fc", "Gemm").channel_wise is True
    mp = tmp_path / "m.onnx"
    onnx.save(models.conv_bn_relu(), mp)
    amct.create_quant_config(tmp_path / "c.json", mp, config_defination=cfg_file)
    d = json.loads((tmp_path / "c.json").read_text())
    assert d["conv1"]["quant_enable"] is False and d["conv1"]["weight_quant_params"]["channel_wise"] is False
    for conv in ("dwconv", "pwconv"):  # skipping conv1 leaves the other convolutions of the type alone
        assert d[conv]["quant_enable"] is True and d[conv]["weight_quant_params"]["channel_wise"] is False
    assert d["fc"]["weight_quant_params"]["channel_wise"] is True


def test_unknown_weight_scheme_is_a_clear_error():
    with pytest.raises(an.ConfigError, match="wts_algo 'kmeans' is unknown: use arq_quantize"):
        an.QuantConfig().set("fc", wts_algo="kmeans")


def test_weight_schemes_are_a_registry():
    """A scheme registered under a name is what ``wts_algo`` selects; the plan and both models use
    its integers (here: uniform weights rounded down to even values)."""

    class Even(Uniform):
        name = "even_test"

        def quantize(self, t: WeightTask) -> QuantizedWeight:
            qw = super().quantize(t)
            return QuantizedWeight((qw.q // 2 * 2).astype(np.int8), qw.scale, qw.axis, qw.pairs_fixed)

    register_scheme(Even())
    try:
        cfg = an.QuantConfig(saturation_guard="off")
        cfg.set("fc", wts_algo="even_test")
        res = an.quantize(models.conv_bn_relu(), _cal(), cfg, progress=False)
        assert np.all(res.plan.layers["fc"].w_q % 2 == 0) and np.any(res.plan.layers["pwconv"].w_q % 2 == 1)
        w = {t.name: t for t in res.deploy_model.graph.initializer}
        assert np.array_equal(onnx.numpy_helper.to_array(w[res.plan.layers["fc"].weight + "_quantized"]),
                              res.plan.layers["fc"].w_q)
    finally:
        SCHEMES.pop("even_test")


def test_rebuild_is_an_engine_function():
    p = an.prepare(models.conv_bn_relu())
    obs = an.collect_stats(p, _cal(), progress=False)
    first = an.build(p, an.QuantConfig(), obs)
    cfg = an.QuantConfig()
    cfg.set("pwconv", quant_enable=False)
    fast, reused = an.rebuild(first, cfg)
    full = an.build(p, cfg, obs)
    assert reused and fast.deploy_model == full.deploy_model and fast.float_layers == full.float_layers
    cfg.set("fc", act_algo="minmax")  # settings differ between layers: a full build
    _, reused = an.rebuild(first, cfg)
    assert not reused


def test_observation_keeps_samples_apart_from_statistics():
    p = an.prepare(models.conv_bn_relu())
    obs = an.collect_stats(p, _cal(20), progress=False)
    assert isinstance(obs, an.Observation) and set(obs) == set(obs.stats) and "x" in obs
    assert sum(f["x"].shape[0] for f in obs.samples) == 8  # the safety net's samples
    plain = an.build(p, None, dict(obs))  # a plain mapping of statistics: no samples, no safety net
    assert plain.output_check == {} and plain.tensor_errors == {}
