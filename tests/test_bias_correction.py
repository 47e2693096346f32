"""Bias correction of uniform int8/4-bit weights (``QuantConfig.bias_correction``): the formula, its effect
on the mean output error, the record round trip, the config key, statistics without moments, and the
real-model gain on EfficientNet-Lite0."""

import json

import models
import numpy as np
import pytest

import amct_nb as an
from amct_nb.ir import GraphIndex, make_session


def _cfg(bc: bool, **layer) -> an.QuantConfig:
    cfg = an.QuantConfig(bias_correction=bc, min_output_sqnr_db=None, safety_net=False, min_input_channels=0)
    for k, v in layer.items():
        setattr(cfg.default, k, v)
    return cfg


@pytest.fixture(scope="module")
def conv_model():
    m = models.conv_bn_relu(seed=5, c_in=4, c=32)
    cal = models.images(64, (4, 16, 16), seed=1, lo=0.0, hi=2.0)  # positive inputs: E[x] far from 0
    ev = models.images(256, (4, 16, 16), seed=2, lo=0.0, hi=2.0)
    p = an.prepare(m, an.QuantConfig())
    obs = an.collect_stats(p, cal, progress=False, channel_moments=True)
    return m, p, obs, cal, ev


def _run(model, x):
    s = make_session(model)
    return s.run(None, {"x": x})[0]


def test_correction_is_the_mean_shift_of_the_rounding(conv_model):
    """conv1 reads the model input, so E[x] per channel is known exactly: the record's correction is
    sum over (input channel, kernel position) of (w - q s) * E[x_c], per output channel."""
    m, p, obs, cal, ev = conv_model
    r = an.build(p, _cfg(True, channel_wise=False, wts_bits=4), obs)
    lq = r.plan.layers["conv1"]
    w = GraphIndex(p.model.graph).array(lq.weight).astype(np.float64)
    err = w - lq.w_q.astype(np.float64) * float(lq.w_scale)
    # 3x3, pads 1 over 16x16: an edge tap reads the input at 15 of 16 output positions per axis
    cover = np.multiply.outer(*[np.array([15 / 16, 1, 15 / 16])] * 2)
    want = (err * cal.astype(np.float64).mean(axis=(0, 2, 3))[None, :, None, None] * cover).sum(axis=(1, 2, 3))
    got = np.asarray(r.record.layers["conv1"].bias_correction)
    assert got.shape == (32,)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert np.abs(got).max() > 1e-3  # a real shift, not zeros
    # every int8 layer with a bias got one; the report says so
    rep = r.report()["bias_correction"]
    assert rep == {"enabled": True, "corrected_layers": len(r.plan.layers), "layers_with_bias": len(r.plan.layers)}
    assert all(q["bias_correction_max_abs"] > 0 for q in r.report()["quantized_layers"])
    assert any(line.startswith("bias correction: 4 of 4") for line in r.log_lines)


def test_taps_that_only_read_padding_get_no_correction():
    """A 3x3 Conv (pads 1) over a map one row high (the last layers of a text recogniser): its top and bottom
    kernel rows multiply zero padding everywhere, so their rounding shifts nothing. Counting them with the
    input's mean over-corrected ddddocr_rec's recogniser (31 -> 28 of 32 strings)."""
    from onnx import helper

    r = np.random.default_rng(0)
    m = models._model([helper.make_node("Conv", ["x", "w", "b"], ["y"], name="conv", pads=[1, 1, 1, 1])],
                      [models.f32("x", ["N", 8, 1, 32])], [models.f32("y", ["N", 16, 1, 32])],
                      [models.w("w", r.normal(0, 0.3, (16, 8, 3, 3))), models.w("b", r.normal(0, 0.1, 16))])
    cal = r.uniform(0.5, 1.5, (32, 8, 1, 32)).astype(np.float32)
    ev = r.uniform(0.5, 1.5, (64, 8, 1, 32)).astype(np.float32)
    res = an.quantize(m, cal, _cfg(True, channel_wise=False, wts_bits=4), progress=False)
    lq = res.plan.layers["conv"]
    w = GraphIndex(res.prepared.model.graph).array("w").astype(np.float64)
    err = w - lq.w_q.astype(np.float64) * float(lq.w_scale)
    cover = np.array([31 / 32, 1, 31 / 32])  # the middle row's left and right taps miss one column
    want = (err[:, :, 1, :] * cal.astype(np.float64).mean(axis=(0, 2, 3))[None, :, None] * cover).sum(axis=(1, 2))
    np.testing.assert_allclose(res.record.layers["conv"].bias_correction, want, rtol=1e-5, atol=1e-6)
    ref = _run(m, ev)
    off = an.quantize(m, cal, _cfg(False, channel_wise=False, wts_bits=4), progress=False)
    shift = {bc: np.abs((_run(x.deploy_model, ev) - ref).mean(axis=(0, 2, 3))).mean()
             for bc, x in ((True, res), (False, off))}
    assert shift[True] < 0.2 * shift[False], shift


@pytest.mark.parametrize("layer", [{"channel_wise": False, "wts_bits": 4}, {"channel_wise": False}, {"wts_bits": 4}])
def test_it_removes_the_mean_output_error(conv_model, layer):
    """On unseen inputs the fake-quant and deploy models' mean output error per class shrinks."""
    m, p, obs, cal, ev = conv_model
    ref = _run(m, ev)
    shift = {}
    for bc in (False, True):
        r = an.build(p, _cfg(bc, **layer), obs)
        dep, fake = _run(r.deploy_model, ev), _run(r.fake_quant_model, ev)
        shift[bc] = np.abs((dep - ref).mean(axis=0)).mean()
        assert np.abs(dep - fake).max() <= 1e-4 * np.abs(ref).max() + 1e-5  # the correction is in both models
    assert shift[True] < 0.5 * shift[False], shift


def test_off_writes_no_corrections_and_the_record_round_trips(conv_model):
    m, p, obs, cal, ev = conv_model
    off = an.build(p, _cfg(False, channel_wise=False), obs)
    assert "bias_correction:" not in off.record.to_text()
    assert off.report()["bias_correction"] == {"enabled": False, "corrected_layers": 0, "layers_with_bias": 4}
    cfg = _cfg(True, channel_wise=False)
    on = an.build(p, cfg, obs)
    text = on.record.to_text()
    assert text.count("bias_correction:") == sum(l.w_q.shape[0] for l in on.plan.layers.values())
    again = an.build(p, cfg, {}, record=an.Record.from_text(text))
    for a, b in ((again.deploy_model, on.deploy_model), (again.fake_quant_model, on.fake_quant_model)):
        assert a.SerializeToString(deterministic=True) == b.SerializeToString(deterministic=True)
    assert off.deploy_model.SerializeToString() != on.deploy_model.SerializeToString()


def test_config_key(conv_model):
    m, p, obs, cal, ev = conv_model
    d = an.QuantConfig(bias_correction=False).to_amct_dict(p.layers)
    assert d["amct_nb"]["bias_correction"] is False
    assert an.QuantConfig.from_amct_dict(json.loads(json.dumps(d))).bias_correction is False
    assert an.QuantConfig.from_amct_dict(an.QuantConfig().to_amct_dict(p.layers)).bias_correction is True
    d["amct_nb"]["bias_correction"] = "yes"
    with pytest.raises(an.ConfigError, match="bias_correction"):
        an.QuantConfig.from_amct_dict(d)


def test_statistics_without_moments_say_which_layers_were_not_corrected(conv_model):
    m, p, obs, cal, ev = conv_model
    plain = an.collect_stats(p, cal, progress=False)
    r = an.build(p, _cfg(True), plain)
    assert "bias_correction:" not in r.record.to_text()
    rep = r.report()["bias_correction"]
    assert rep["corrected_layers"] == 0 and rep["not_corrected"] == list(r.plan.layers)
    assert "channel_moments=True" in rep["why_not"]
    assert any("bias correction: 0 of 4" in line for line in r.log_lines)
    # quantize() keeps the moments itself when the config asks for bias correction
    assert an.quantize(m, cal, _cfg(True), progress=False).report()["bias_correction"]["corrected_layers"] == 4


@pytest.mark.slow
def test_efficientnet_per_tensor_every_layer_int8(shared_data):
    """Per-tensor weights with every layer but the stem int8 (the output check off): the classic
    MobileNet-family failure that bias correction repairs (benchmarks/BIAS_CORRECTION.md)."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import imagenet_dev

    cal, _ = imagenet_dev.load(0, 100)
    ev, _ = imagenet_dev.load(100, 300)
    p = an.prepare(str(imagenet_dev.MODEL), an.QuantConfig())
    obs = an.collect_stats(p, cal, progress=False, channel_moments=True)
    s = make_session(p.original)
    fp = np.concatenate([s.run(None, {"input": ev[i:i + 50]})[0] for i in range(0, len(ev), 50)]).argmax(1)
    agree = {}
    for bc in (False, True):
        cfg = an.QuantConfig(bias_correction=bc, min_output_sqnr_db=None)
        cfg.default.channel_wise = False
        r = an.build(p, cfg, obs)
        assert len(r.plan.layers) == 49
        d = make_session(r.deploy_model)
        dep = np.concatenate([d.run(None, {"input": ev[i:i + 50]})[0] for i in range(0, len(ev), 50)]).argmax(1)
        agree[bc] = (dep == fp).mean()
    assert agree[False] < 0.9 and agree[True] >= 0.95, agree


def test_the_safety_net_keeps_it_only_where_the_outputs_gain(conv_model):
    """With the safety net on, bias correction stays only if the outputs' SQNR on the calibration samples
    gains BIAS_MIN_GAIN_DB; otherwise the result's config has it off, and the report and log say why."""
    from amct_nb.ptq.pipeline import BIAS_MIN_GAIN_DB

    m, p, obs, cal, ev = conv_model
    kept = an.build(p, an.QuantConfig(min_output_sqnr_db=None, min_input_channels=0,
                                      default=an.LayerConfig(channel_wise=False, wts_bits=4)), obs)
    chk = kept.report()["bias_correction"]["check"]
    assert chk["kept"] and chk["with_db"] >= chk["without_db"] + BIAS_MIN_GAIN_DB, chk
    assert kept.config.bias_correction and kept.report()["bias_correction"]["corrected_layers"] == 4
    assert any("bias correction check" in line and line.endswith("kept") for line in kept.log_lines)
    # zero-mean inputs, int8 per channel: the corrections are tiny and gain nothing measurable
    zp = an.prepare(m, an.QuantConfig())
    zobs = an.collect_stats(zp, models.images(64, (4, 16, 16), seed=3), progress=False, channel_moments=True)
    left = an.build(zp, an.QuantConfig(min_output_sqnr_db=None, min_input_channels=0), zobs)
    chk = left.report()["bias_correction"]["check"]
    assert not chk["kept"] and chk["with_db"] < chk["without_db"] + BIAS_MIN_GAIN_DB, chk
    assert left.config.bias_correction is False and "bias_correction:" not in left.record.to_text()
    assert any("left out (it must gain" in line for line in left.log_lines)
    assert json.loads(left.config.to_json(zp.layers))["amct_nb"]["bias_correction"] is False


@pytest.mark.parametrize("layer", [{}, {"channel_wise": False, "wts_bits": 4}])
def test_the_check_measures_both_in_one_session_as_two_would(conv_model, monkeypatch, layer):
    """The check derives the plan without bias correction from the record with it (the same ranges) and measures
    both in one gated session: the same record, and the same SQNRs, as planning and measuring each on its own."""
    import amct_nb.ptq.pipeline as P

    m, p, obs, cal, ev = conv_model
    cfg = an.QuantConfig(min_output_sqnr_db=None, min_input_channels=0)
    for k, v in layer.items():
        setattr(cfg.default, k, v)
    record, plan = P._planned(p, cfg, obs, "none", {})
    off = cfg.copy()
    off.bias_correction = False
    derived = P._without_correction(p, off, record, plan, "none")
    again = P._planned(p, off, obs, "none", {})
    assert derived[0].to_text() == again[0].to_text() and "bias_correction:" not in derived[0].to_text()
    assert all(np.array_equal(derived[1].layers[n].b_q, again[1].layers[n].b_q) for n in again[1].layers)
    one = P.bias_check_of(p, cfg, obs, "none")[1]
    monkeypatch.setattr(P, "_without_correction", lambda *a: None)  # planned again: one session per plan
    two = P.bias_check_of(p, cfg, obs, "none")[1]
    assert one["with_db"] != one["without_db"]
    assert one["with_db"] == pytest.approx(two["with_db"], abs=0.02)
    assert one["without_db"] == pytest.approx(two["without_db"], abs=0.02) and one["kept"] == two["kept"]
