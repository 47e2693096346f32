"""Non-uniform weights (AMCT's nuq_quantize): the exact level search, the guard on a codebook, levels
per layer in the plan, the record and both models, accuracy on a real model, the AMCT and CLI flows,
compact storage, and every bad input."""

import itertools
import json

import models
import numpy as np
import onnx
import pytest
from onnx import numpy_helper

import amct_nb as an
import amct_nb.amct as amct
from amct_nb import zoo
from amct_nb.export import compact_weights
from amct_nb.ir import make_session
from amct_nb.ptq import nuq_layers, uses_nuq, with_nuq
from amct_nb.quant import PAIR_LIMIT
from amct_nb.quant.nuq import guard_on_levels, nearest_level, optimal_levels


def run(m, x, optimize=True):
    s = make_session(onnx.load(m) if isinstance(m, str) else m, optimize=optimize)
    return s.run(None, {s.get_inputs()[0].name: x})[0]


def inits(m) -> dict:
    return {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}


# -- the algorithm ---------------------------------------------------------------------------------
@pytest.mark.parametrize("seed,k", [(0, 3), (1, 4), (2, 5)])
def test_optimal_levels_are_exact(seed, k):
    """Against brute force over every set of k integer levels in the values' span (weighted)."""
    rng = np.random.default_rng(seed)
    r = np.concatenate([rng.normal(0, 2.0, 300), rng.normal(4, 0.7, 100)]).clip(-6.4, 6.4)
    wgt = rng.uniform(0.1, 3.0, r.size)
    got = optimal_levels(r, k, wgt)

    def err(levels):
        return float((wgt * (r - nearest_level(r, np.array(levels))) ** 2).sum())

    best = min(itertools.combinations(range(-7, 8), k), key=err)
    assert len(got) == k and err(got) == pytest.approx(err(best), rel=1e-9)
    assert optimal_levels(np.array([1.0, 1.2, -3.0]), 16).tolist() == [-3, 1]  # fewer values than levels


def test_guard_keeps_weights_on_the_codebook():
    rng = np.random.default_rng(0)
    levels = np.array(sorted(rng.choice(np.arange(-127, 128), 16, replace=False)))
    real = rng.normal(0, 60, (32, 64)).clip(-127, 127)
    q = nearest_level(real, levels).astype(np.int32)
    fixed, n = guard_on_levels(q, real, levels)
    a, b = fixed[:, 0::2], fixed[:, 1::2]
    assert n > 0 and set(np.unique(fixed)) <= set(levels.tolist())
    assert not np.any(((a > 0) & (b > 0) & (a + b > PAIR_LIMIT)) | ((a < 0) & (b < 0) & (-(a + b) > PAIR_LIMIT)))


# -- a real model ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def resnet():
    zm = zoo.load("fmnist-resnet")
    p = an.prepare(str(zm.path))
    obs = an.collect_stats(p, zm.calibration_data(200), progress=False, channel_moments=True)
    x, y = zm.test_data()
    return zm, p, obs, x, y


@pytest.mark.parametrize("steps", [32, 16])
def test_levels_per_layer_and_accuracy(resnet, steps):
    zm, p, obs, x, y = resnet
    cfg = with_nuq(an.QuantConfig(), p.layers, steps, 1)
    r = an.build(p, cfg, obs)
    chosen = {l.name for l in nuq_layers(p.layers)}
    assert chosen == {l.name for l in p.layers if l.quantizable} - {"/stem/stem.0/Conv"}  # one input channel
    deploy = models.weight_ints(r.deploy_model)
    for name, lq in r.plan.layers.items():
        if name not in chosen:
            assert not lq.codebook and len(np.unique(lq.w_q)) > steps
            continue
        levels = set(np.unique(lq.w_q).tolist())
        assert levels <= set(lq.codebook) and len(lq.codebook) <= steps
        assert np.array_equal(deploy[lq.weight + "_quantized"], lq.w_q)
        assert r.record.layers[name].levels == list(lq.codebook)
    fp, dep, fq = (run(m, x).argmax(1) for m in (p.original, r.deploy_model, r.fake_quant_model))
    assert (fq == dep).mean() >= 0.998
    # 500 test images: float 93.6%; measured 93.6% (32 levels) and 93.4% (16 levels)
    assert (dep == y).mean() >= (fp == y).mean() - 0.006
    assert (dep == fp).mean() >= 0.98
    rep = r.report()
    ws = rep["weight_storage"]
    assert ws["nuq_weights"] == sum(r.plan.layers[n].w_q.size for n in chosen)
    assert ws["entropy_bits_per_weight"] < (4.3 if steps == 16 else 5.0)
    entry = next(q for q in rep["quantized_layers"] if q["name"] == "/layer1/conv1/Conv")
    assert entry["weight_algo"] == "nuq_quantize" and entry["weight_levels"] <= steps
    assert entry["codebook"] == list(r.plan.layers["/layer1/conv1/Conv"].codebook)


def test_uniform_report_has_no_nuq_fields(resnet):
    zm, p, obs, x, y = resnet
    rep = an.build(p, an.QuantConfig(), obs).report()
    assert "weight_storage" not in rep and all("codebook" not in q for q in rep["quantized_layers"])


def test_record_round_trip_rebuilds_the_same_models(resnet):
    zm, p, obs, x, y = resnet
    cfg = with_nuq(an.QuantConfig(), p.layers, 16, 1)
    r = an.build(p, cfg, obs)
    text = r.record.to_text()
    assert "nuq_level:" in text and "bias_correction:" in text
    rec = an.Record.from_text(text)
    assert rec.to_text() == text
    again = an.build(p, cfg, {}, record=rec)
    for a, b in ((again.deploy_model, r.deploy_model), (again.fake_quant_model, r.fake_quant_model)):
        assert a.SerializeToString(deterministic=True) == b.SerializeToString(deterministic=True)


def test_statistics_without_channel_moments_are_refused(resnet):
    zm, p, obs, x, y = resnet
    plain = an.collect_stats(p, zm.calibration_data(20), progress=False)
    with pytest.raises(an.ConfigError, match="channel_moments=True"):
        an.build(p, with_nuq(an.QuantConfig(), p.layers, 32), plain)
    assert uses_nuq(with_nuq(an.QuantConfig(), p.layers, 32), p.layers) and not uses_nuq(an.QuantConfig(), p.layers)


def test_quantize_collects_moments_itself(resnet):
    zm, p, obs, x, y = resnet
    cfg = an.QuantConfig()
    cfg.set("/layer1/conv1/Conv", wts_algo="nuq_quantize", num_steps=16)
    r = an.quantize(str(zm.path), zm.calibration_data(50), cfg, progress=False)
    assert [n for n, lq in r.plan.layers.items() if lq.codebook] == ["/layer1/conv1/Conv"]
    assert len(np.unique(r.plan.layers["/layer1/conv1/Conv"].w_q)) <= 16


def test_compact_weights_load_to_the_same_model(resnet, tmp_path):
    zm, p, obs, x, y = resnet
    r = an.build(p, with_nuq(an.QuantConfig(), p.layers, 16), obs)
    m, packed = compact_weights(r.deploy_model)
    onnx.checker.check_model(m)
    a, b = tmp_path / "plain.onnx", tmp_path / "compact.onnx"
    onnx.save(r.deploy_model, a)
    onnx.save(m, b)
    big = [l for l in nuq_layers(p.layers) if np.prod(l.weight_shape) * 4 // 8 >= 1024]  # the rest: saves < 1 kB
    assert packed == len(big) and packed >= 6
    assert b.stat().st_size < 0.7 * a.stat().st_size  # 4-bit indices for the NUQ layers' weights
    for opt in (True, False):
        assert np.array_equal(run(str(a), x[:64], opt), run(str(b), x[:64], opt))
    uniform = an.build(p, an.QuantConfig(), obs).deploy_model
    assert compact_weights(uniform)[1] == 0  # 8-bit weights: nothing to gain
    with pytest.raises(an.ModelError, match="max_levels"):
        compact_weights(uniform, max_levels=256)


# -- the AMCT flow and the CLI ---------------------------------------------------------------------
def test_amct_cfg_nuq_config_equals_the_direct_api(tmp_path, monkeypatch):
    zm = zoo.load("fmnist-resnet")
    monkeypatch.chdir(tmp_path)
    layers = an.prepare(str(zm.path)).layers
    mapping = tmp_path / "mapping.json"
    mapping.write_text(json.dumps({"layers": [{"name": "/layer2/conv1/Conv", "compress": True},
                                              {"name": "/layer3/conv2/Conv,/fc/Gemm"}]}))
    cfg_file = tmp_path / "nuq.cfg"
    cfg_file.write_text(f'batch_num: 2\nnuq_config {{ mapping_file: "{mapping}" '
                        "nuq_quantize { num_steps: 16 num_of_iteration: 1 } }\n")
    cal = zm.calibration_data(40)
    amct.create_quant_config("tmp/config.json", zm.path, config_defination=cfg_file)  # the .cfg's batch_num
    d = json.loads((tmp_path / "tmp/config.json").read_text())
    nuq = {k for k, v in d.items() if isinstance(v, dict) and v.get("weight_quant_params", {}).get("wts_algo")
           == "nuq_quantize"}
    assert nuq == {"/layer2/conv1/Conv", "/layer3/conv2/Conv", "/fc/Gemm"}
    assert d["/fc/Gemm"]["weight_quant_params"]["num_steps"] == 16
    amct.quantize_model("tmp/config.json", zm.path, "tmp/modified.onnx", "tmp/record.txt")
    s = amct.InferenceSession("tmp/modified.onnx")
    for i in (0, 20):
        s.run(None, {"input": cal[i:i + 20]})
    paths = amct.save_model("tmp/modified.onnx", "tmp/record.txt", "out/m")
    cfg = with_nuq(an.QuantConfig(), layers, 16, 1, mapping_file=mapping)
    direct = an.quantize(str(zm.path), [cal[:20], cal[20:]], cfg, progress=False)
    assert paths["deploy"].read_bytes() == direct.deploy_model.SerializeToString(deterministic=True)
    assert "nuq_level:" in (tmp_path / "tmp/record.txt").read_text()


def test_cli_nuq_and_compact(tmp_path, capsys):
    from amct_nb.cli import main

    zm = zoo.load("fmnist-resnet")
    np.save(tmp_path / "cal.npy", zm.calibration_data(64))
    base = ["calibrate", str(zm.path), "--data", str(tmp_path / "cal.npy")]
    assert main(base + ["--output", str(tmp_path / "u"), "--quiet"]) == 0
    assert main(base + ["--output", str(tmp_path / "n"), "--nuq-steps", "16", "--compact"]) == 0
    assert "non-uniform weights:" in capsys.readouterr().out
    dep = {k: next((tmp_path / k).glob("*_deploy_model.onnx")) for k in ("u", "n")}
    assert dep["n"].stat().st_size < 0.7 * dep["u"].stat().st_size
    rep = json.loads(next((tmp_path / "n").rglob("*report*.json")).read_text())
    assert rep["weight_storage"]["nuq_weights"] > 0.9 * rep["weight_storage"]["int8_weights"]
    x = zm.test_data(100)[0]
    assert (run(str(dep["n"]), x).argmax(1) == run(str(dep["u"]), x).argmax(1)).mean() >= 0.95
    assert main(base + ["--output", str(tmp_path / "bad"), "--nuq-iterations", "2"]) == 2
    assert "--nuq-iterations needs --nuq" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


# -- bad inputs ------------------------------------------------------------------------------------
def test_bad_settings_are_clear_errors(tmp_path):
    cfg = an.QuantConfig()
    with pytest.raises(an.ConfigError, match="num_steps 8 is not supported.*16 or 32"):
        cfg.set("fc", wts_algo="nuq_quantize", num_steps=8)
    with pytest.raises(an.ConfigError, match="num_of_iteration -1 must be 0 or more"):
        cfg.set("fc", wts_algo="nuq_quantize", num_of_iteration=-1)
    with pytest.raises(an.ConfigError, match="num_bits 4 is not supported for non-uniform"):
        cfg.set("fc", wts_algo="nuq_quantize", wts_bits=4)
    d = {"fc": {"weight_quant_params": {"wts_algo": "nuq_quantize", "num_bits": 8, "num_steps": 64}}}
    with pytest.raises(an.ConfigError, match="num_steps 64"):
        an.QuantConfig.from_amct_dict(d)
    cfg_file = tmp_path / "nuq.cfg"
    cfg_file.write_text("nuq_config { nuq_quantize { num_steps: 12 } }\n")
    mp = tmp_path / "m.onnx"
    onnx.save(models.conv_bn_relu(), mp)
    with pytest.raises(an.ConfigError, match="num_steps 12"):
        amct.create_quant_config(tmp_path / "c.json", mp, config_defination=cfg_file)
    assert not (tmp_path / "c.json").exists()


def test_nuq_on_an_op_it_does_not_cover():
    m = models.convtranspose_model()
    p = an.prepare(m)
    name = next(l.name for l in p.layers if l.op_type == "ConvTranspose")
    cfg = an.QuantConfig()
    cfg.set(name, wts_algo="nuq_quantize")
    with pytest.raises(an.ConfigError, match="apply to Conv, Gemm and MatMul layers, not ConvTranspose"):
        an.quantize(m, models.images(8, (4, 16, 16)), cfg, progress=False)
    assert name not in {l.name for l in nuq_layers(p.layers)}


def test_mapping_file_problems(tmp_path):
    layers = an.prepare(models.conv_bn_relu()).layers
    with pytest.raises(an.ConfigError, match="mapping_file not found.*leave mapping_file out"):
        with_nuq(an.QuantConfig(), layers, mapping_file=tmp_path / "none.json")
    (tmp_path / "bad.json").write_text("layers: [conv1]")
    with pytest.raises(an.ConfigError, match="is not JSON"):
        with_nuq(an.QuantConfig(), layers, mapping_file=tmp_path / "bad.json")
    (tmp_path / "other.json").write_text(json.dumps({"layers": ["resnet_conv_99"]}))
    with pytest.raises(an.ConfigError, match="names no layer of this model"):
        with_nuq(an.QuantConfig(), layers, mapping_file=tmp_path / "other.json")


def test_workbench_table_turns_layers_to_nuq():
    """The layer table's levels column: an edit makes the layer NUQ; the next build collects the input
    moments it needs by itself and the table says how many levels the layer uses."""
    from amct_nb.ui import Workbench

    zm = zoo.load("fmnist-resnet")
    wb = Workbench(str(zm.path), calibration_data=zm.calibration_data(64), eval_data=zm.test_data(100))
    wb.session.calibrate()
    rows = {r["name"]: r for r in wb.settings_panel.table.rows}
    assert rows["/fc/Gemm"]["nuq_steps"] == 0 and rows["/fc/Gemm"]["nuq_ok"]
    wb.settings_panel.table.changes = [{"name": "/layer1/conv1/Conv", "field": "nuq_steps", "value": 16},
                                       {"name": "/fc/Gemm", "field": "nuq_steps", "value": 32}]
    wb.session.build()
    plan = wb.session.result.plan.layers
    assert len(np.unique(plan["/layer1/conv1/Conv"].w_q)) <= 16 and len(plan["/fc/Gemm"].codebook) == 32
    assert wb.session.planned("/layer1/conv1/Conv").startswith("int8 NUQ 16, 16 levels used")
    assert not plan["/layer2/conv1/Conv"].codebook
    wb.settings_panel.table.changes = [{"name": "/fc/Gemm", "field": "nuq_steps", "value": 0}]
    wb.session.build()
    assert not wb.session.result.plan.layers["/fc/Gemm"].codebook
