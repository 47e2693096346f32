"""Accuracy-based auto calibration: the strategies against oracles, the native search and AMCT's
function on a real model, its outputs, and every bad input the issue names."""

import json
import math
import os
import sys
from pathlib import Path

import numpy as np
import pytest

import amct_nb as an
import amct_nb.amct as amct
from amct_nb import zoo
from amct_nb.auto import (
    AutoCalibrationError,
    BinarySearchStrategy,
    RecoveringSearch,
    binary_search_budget,
    search,
    top1_evaluator,
)

ROOT = Path(__file__).resolve().parents[1]


# -- strategies against oracles --------------------------------------------------------------
def drive(strategy, n, passes):
    """Run a strategy on layers l0..l{n-1} (ranked in that order) with an oracle on the rolled-back
    set; returns (final float set, evaluations after the global one)."""
    layers = [f"l{i}" for i in range(n)]
    strategy.initialize({name: float(i) for i, name in enumerate(layers)})
    verdict, evals = passes(frozenset()), 0
    while True:
        upd = strategy.update_quant_config((verdict, 0.0))
        fl = frozenset(k for k, q in upd["roll_back_config"].items() if not q)
        if upd["stop_flag"]:
            return fl, evals
        verdict, evals = passes(fl), evals + 1


@pytest.mark.parametrize("n", [1, 2, 7, 8, 24, 50])
def test_binary_search_is_amcts(n):
    for k in range(n + 1):  # the k most sensitive layers must go float
        def prefix(fl, k=k):
            return {f"l{i}" for i in range(k)} <= fl

        fl, evals = drive(BinarySearchStrategy(), n, prefix)
        if k == 0:
            assert fl == frozenset() and evals == 0
            continue
        assert fl == {f"l{i}" for i in range(k)}  # the smallest passing prefix
        assert evals <= binary_search_budget(n) == math.ceil(math.log2(n + 1))


def test_binary_search_probes_amcts_midpoints():
    """AMCT: left=0, right=N-1, roll back [0..mid], pass -> right=mid-1, fail -> left=mid+1."""
    asked = []

    def oracle(fl):
        asked.append(len(fl))
        return len(fl) >= 3

    drive(BinarySearchStrategy(), 8, oracle)
    assert asked == [0, 4, 2, 3]  # global, then mids 3, 1, 2 (rolling back mid + 1 layers)


@pytest.mark.parametrize("n", [1, 5, 24, 50])
def test_default_finds_the_prefix_within_amcts_budget(n):
    for k in range(n + 1):
        def prefix(fl, k=k):
            return {f"l{i}" for i in range(k)} <= fl

        fl, evals = drive(RecoveringSearch(), n, prefix)
        assert fl == {f"l{i}" for i in range(k)} and evals <= binary_search_budget(n)


def test_default_spends_what_is_left_bringing_layers_back():
    """Only l1 matters, the ranking puts l0 first: BinarySearch keeps l0 and l1 float, the default
    finds the count early and uses the evaluations left to bring l0 back, within the same budget."""
    def oracle(fl):
        return "l1" in fl

    bfl, bevals = drive(BinarySearchStrategy(), 24, oracle)
    rfl, revals = drive(RecoveringSearch(), 24, oracle)
    assert bfl == {"l0", "l1"} and rfl == {"l1"} and revals <= bevals == binary_search_budget(24)


def test_default_never_keeps_more_float_layers_than_binary_search():
    rng = np.random.default_rng(0)
    for _ in range(200):  # random monotone oracles: a random set of layers must go float
        n = int(rng.integers(1, 40))
        need = set(rng.choice(n, size=int(rng.integers(0, min(n, 6) + 1)), replace=False).tolist())

        def oracle(fl, need=need):
            return {f"l{i}" for i in need} <= fl

        bfl, bevals = drive(BinarySearchStrategy(), n, oracle)
        rfl, revals = drive(RecoveringSearch(), n, oracle)
        assert len(rfl) <= len(bfl) and revals <= max(bevals, binary_search_budget(n)) and oracle(rfl)


# -- the search on a real model ----------------------------------------------------------------
@pytest.fixture(scope="module")
def fmnist():
    """MobileNetV2-style model with 4-bit per-tensor weights: plain PTQ loses ~13 pt top-1 here."""
    zm = zoo.load("fmnist-mobilenetv2")
    cfg = an.QuantConfig()
    cfg.default.channel_wise = False
    cfg.default.wts_bits = 4
    p = an.prepare(str(zm.path), cfg)
    obs = an.collect_stats(p, zm.calibration_data(100), progress=False)
    x, y = zm.test_data(500)
    return zm, cfg, p, obs, top1_evaluator(x, y)


def score_fn(p, evaluate, calls=None):
    def score(res):
        if calls is not None:
            calls.append(res)
        return evaluate(p.original if res is None else res.deploy_model)

    return score


def test_default_search_beats_amcts_with_no_more_evaluations(fmnist):
    zm, cfg, p, obs, evaluate = fmnist
    me = an.auto.loss_within(0.005)
    no_check = cfg.copy()
    no_check.min_output_sqnr_db = None  # the search leaves the output check to the metric
    plain = an.build(p, no_check, obs)
    amct_like = search(p, obs, score_fn(p, evaluate), me, cfg, strategy="BinarySearch", sensitivity="CosineSimilarity",
                       progress=False)
    ours = search(p, obs, score_fn(p, evaluate), me, cfg, progress=False)
    fp = amct_like.original_metric
    assert fp - evaluate(plain.deploy_model) > 0.02  # the case needs rolling back
    for r in (amct_like, ours):
        assert r.final.passed and r.final.loss <= 0.005 and r.result is not None
        assert evaluate(r.result.deploy_model) == pytest.approx(r.final.metric)
        assert set(r.float_layers) == set(r.result.float_layers) - set(plain.float_layers)
    assert len(ours.float_layers) <= len(amct_like.float_layers)
    assert ours.evaluations <= amct_like.evaluations
    assert [n for n, _ in amct_like.ranking] != [n for n, _ in ours.ranking]  # two different measures


def test_auto_calibrate_native_and_save(fmnist, tmp_path):
    zm, cfg, p, obs, evaluate = fmnist
    res = an.auto_calibrate(str(zm.path), zm.calibration_data(100), evaluate, max_loss=0.005, config=cfg,
                            progress=False)
    paths = res.save(tmp_path / "out", prefix="mv2")
    hist = paths["history"].read_text()
    objs = [json.loads(chunk) for chunk in hist.replace("}\n{", "}\n\x00{").split("\x00")]
    assert len(objs) == len(res.trials) and objs[0]["metric_eval"][0] is False
    assert all(set(o["roll_back_config"]) == set(res.layers) for o in objs)
    final = json.loads(paths["final_config"].read_text())
    assert {n for n in res.layers if final[n]["quant_enable"] is False} == set(res.float_layers)
    assert [r[0] for r in json.loads(paths["ranking"].read_text())] == [n for n, _ in res.ranking]
    assert paths["deploy"].exists() and (tmp_path / "out" / "tmp" / "record.txt").exists()


# -- AMCT's function ---------------------------------------------------------------------------
class Evaluator(amct.AutoCalibrationEvaluatorBase):
    def __init__(self, zm, max_loss=0.005, fail_at=None, interrupt_at=None):
        self.zm, self.max_loss, self.fail_at, self.interrupt_at = zm, max_loss, fail_at, interrupt_at
        self.x, self.y = zm.test_data(500)
        self.calls = 0

    def calibration(self, model_file):
        sess = amct.InferenceSession(model_file)
        x = self.zm.calibration_data(100)
        for i in range(0, 100, 50):
            sess.run(None, {"input": x[i:i + 50]})

    def evaluate(self, model_file):
        self.calls += 1
        if self.calls == self.fail_at:
            raise RuntimeError("the evaluation data went missing")
        if self.calls == self.interrupt_at:
            raise KeyboardInterrupt
        return top1_evaluator(self.x, self.y)(an.load_model(model_file))

    def metric_eval(self, original_metric, new_metric):
        return original_metric - new_metric <= self.max_loss, original_metric - new_metric


@pytest.fixture
def amct_files(tmp_path, monkeypatch):
    zm = zoo.load("fmnist-mobilenetv2")
    monkeypatch.chdir(tmp_path)
    cfg_file = tmp_path / "tmp" / "config.json"
    amct.create_quant_config(cfg_file, zm.path, batch_num=2)
    d = json.loads(cfg_file.read_text())
    for v in d.values():
        if isinstance(v, dict) and "weight_quant_params" in v:
            v["weight_quant_params"]["channel_wise"] = False
            v["weight_quant_params"]["num_bits"] = 4
    cfg_file.write_text(json.dumps(d, indent=4))
    return zm, cfg_file


def test_accuracy_based_auto_calibration_like_amct(amct_files, tmp_path):
    zm, cfg_file = amct_files
    before = cfg_file.read_bytes()
    ev = Evaluator(zm)
    out = amct.accuracy_based_auto_calibration(str(zm.path), ev, str(cfg_file), "tmp/record.txt", "results/mv2",
                                               strategy="BinarySearch", sensitivity="CosineSimilarity")
    assert cfg_file.read_bytes() == before  # the user's config is never rewritten
    assert (tmp_path / "tmp" / "accuracy_based_auto_calibration_final_config.json").exists()
    for f in ("results/mv2_fake_quant_model.onnx", "results/mv2_deploy_model.onnx", "results/mv2_quant.json",
              "results/accuracy_based_auto_calibration_ranking_information.json", "tmp/record.txt",
              "amct_log/accuracy_based_auto_calibration_record.json"):
        assert (tmp_path / f).is_file(), f
    assert ev.calls == out.evaluations <= 2 + binary_search_budget(len(out.layers))
    assert out.final.passed and an.Record.load(tmp_path / "tmp" / "record.txt").layers
    assert not list(Path(os.environ.get("TMPDIR", "/tmp")).glob("amct-nb-auto-*"))  # temp data removed


def test_bad_evaluators(amct_files):
    zm, cfg_file = amct_files

    class NoEvaluate(amct.AutoCalibrationEvaluatorBase):
        def calibration(self, model_file):
            pass

        def metric_eval(self, a, b):
            return True, 0.0

    with pytest.raises(an.ConfigError, match="no evaluate\\(\\) of its own"):
        amct.accuracy_based_auto_calibration(str(zm.path), NoEvaluate(), str(cfg_file), "r.txt", "res/m")

    class Text(Evaluator):
        def evaluate(self, model_file):
            return "very good"

    with pytest.raises(AutoCalibrationError, match="returned str 'very good', not a number"):
        amct.accuracy_based_auto_calibration(str(zm.path), Text(zm), str(cfg_file), "r.txt", "res/m")

    class Backwards(Evaluator):
        def metric_eval(self, original_metric, new_metric):
            return new_metric > original_metric, original_metric - new_metric

    with pytest.raises(AutoCalibrationError, match="fails its own target"):
        amct.accuracy_based_auto_calibration(str(zm.path), Backwards(zm), str(cfg_file), "r.txt", "res/m")

    class NoSession(Evaluator):
        def calibration(self, model_file):
            import onnxruntime as ort

            ort.InferenceSession(model_file, amct.AMCT_SO, providers=["CPUExecutionProvider"])

    with pytest.raises(AutoCalibrationError, match="ran no batch through amct_nb.amct.InferenceSession"):
        amct.accuracy_based_auto_calibration(str(zm.path), NoSession(zm), str(cfg_file), "r.txt", "res/m")
    assert not Path("res").exists()


@pytest.mark.parametrize("how", ["raises", "interrupted"])
def test_failure_mid_search_keeps_history_and_writes_no_model(amct_files, tmp_path, how):
    zm, cfg_file = amct_files
    ev = Evaluator(zm, **({"fail_at": 3} if how == "raises" else {"interrupt_at": 3}))
    err = AutoCalibrationError if how == "raises" else an.Cancelled
    with pytest.raises(err, match="went missing" if how == "raises" else "interrupted after 1 evaluation"):
        amct.accuracy_based_auto_calibration(str(zm.path), ev, str(cfg_file), "tmp/record.txt", "results/mv2")
    hist = (tmp_path / "amct_log" / "accuracy_based_auto_calibration_record.json").read_text()
    assert hist.count("roll_back_config") == 1  # the global config was evaluated before the failure
    assert not (tmp_path / "results").exists() and not (tmp_path / "tmp" / "record.txt").exists()


def test_a_target_no_config_can_meet(fmnist):
    zm, cfg, p, obs, evaluate = fmnist

    def harsh(res):  # every quantized model loses 10 points
        return 0.9 if res is None else 0.8

    with pytest.raises(AutoCalibrationError, match="no config met the target.*loosen the target") as e:
        search(p, obs, harsh, an.auto.loss_within(0.01), cfg, progress=False)
    assert e.value.history and all(not t.passed for t in e.value.history if t.evaluated)


def test_cli_auto_calibrate(tmp_path):
    from amct_nb.cli import main

    zm = zoo.load("fmnist-mobilenetv2")
    x, y = zm.test_data(300)
    np.save(tmp_path / "cal.npy", zm.calibration_data(64))
    np.savez(tmp_path / "ev.npz", x=x, y=y)
    (tmp_path / "ev.py").write_text(
        "import numpy as np, onnxruntime as ort\n"
        f"d = np.load({str(tmp_path / 'ev.npz')!r})\n"
        "def evaluate(model_file):\n"
        "    s = ort.InferenceSession(model_file, providers=['CPUExecutionProvider'])\n"
        "    return float((s.run(None, {'input': d['x']})[0].argmax(1) == d['y']).mean())\n")
    out = tmp_path / "out"
    rc = main(["auto-calibrate", str(zm.path), "--data", str(tmp_path / "cal.npy"), "--evaluator",
               str(tmp_path / "ev.py"), "--output", str(out), "--max-loss", "0.01", "--per-tensor", "--quiet"])
    assert rc == 0
    assert (out / "fmnist_mobilenetv2_deploy_model.onnx").exists()
    assert (out / "accuracy_based_auto_calibration_final_config.json").exists()
    rc = main(["auto-calibrate", str(zm.path), "--data", str(tmp_path / "cal.npy"), "--evaluator",
               str(tmp_path / "missing.py"), "--output", str(tmp_path / "o2"), "--max-loss", "0.01"])
    assert rc == 2 and not (tmp_path / "o2").exists()


def test_engine_still_imports_without_jupyter_or_torch():
    import subprocess

    code = ("import sys, amct_nb, amct_nb.auto, amct_nb.amct; "
            "bad = [m for m in ('ipywidgets', 'matplotlib', 'torch') if m in sys.modules]; sys.exit(1 if bad else 0)")
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT).returncode == 0
