"""Headless tests of the notebook layer: the front end is imitated by setting widget state
(``set_state``, as the browser's messages do) and the QuantConfig and results are checked."""

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("ipywidgets")
pytest.importorskip("anywidget")
pytest.importorskip("matplotlib")

import amct_nb as an  # noqa: E402
from amct_nb import zoo  # noqa: E402
from amct_nb.analysis.compare import SQNR_CAP_DB, Comparer  # noqa: E402
from amct_nb.ui import (  # noqa: E402
    CalibratePanel,
    ComparePanel,
    HistogramPanel,
    LayerTable,
    ModelPanel,
    Session,
    SettingsPanel,
    Workbench,
    netron_view,
)

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wb():
    m = zoo.load("fmnist-resnet")
    w = Workbench(m, calibration_data=m.calibration_data(48), eval_data=m.test_data(64), images=m.test_images(64))
    w.calibrate()
    return w


def names_by(wb, pred):
    return [l.name for l in wb.session.quantizable if pred(l)]


# -- package boundaries --------------------------------------------------------------------
def test_engine_imports_no_jupyter():
    code = ("import sys, amct_nb, amct_nb.amct, amct_nb.data, amct_nb.analysis, amct_nb.ptq, amct_nb.zoo; "
            "bad = [m for m in ('ipywidgets', 'matplotlib', 'anywidget', 'IPython', 'torch', 'amct_nb.ui') "
            "if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stdout + r.stderr


def test_front_end_is_the_one_copy_in_widgets():
    from amct_nb.ui.layer_table import FRONT_END

    assert FRONT_END == ROOT / "widgets" and not (ROOT / "amct_nb" / "ui" / "static").exists()
    assert str(LayerTable._esm).strip() == (ROOT / "widgets" / "layer_table.js").read_text().strip()


# -- layer table and settings ----------------------------------------------------------------
def test_table_rows_describe_every_layer(wb):
    rows = wb.settings_panel.table.rows
    assert [r["name"] for r in rows] == [l.name for l in wb.session.layers]
    r = rows[0]
    for k in ("op_type", "weight_shape", "channels", "quant_enable", "act_algo", "channel_wise", "hist", "setting"):
        assert k in r
    assert r["channels"] == wb.session.layers[0].weight_shape[0]
    assert 0 < len(r["hist"]) <= 24 and max(r["hist"]) == 1.0
    json.dumps(rows)  # everything must be JSON for the front end


def test_front_end_edit_changes_config_and_result(wb):
    s = wb.session
    name = names_by(wb, lambda l: "layer2/conv1" in l.name)[0]
    before = s.result
    assert name in before.quantized_layers
    wb.settings_panel.table.set_state({"changes": [{"name": name, "field": "quant_enable", "value": False, "seq": 1}]})
    assert s.config.for_layer(name).quant_enable is False
    row = next(r for r in wb.settings_panel.table.rows if r["name"] == name)
    assert row["quant_enable"] is False and row["setting"] == "float (skipped)"
    wb.settings_panel.rebuild()
    assert name not in s.result.quantized_layers and name in s.result.float_layers
    assert s.result.deploy_model.SerializeToString() != before.deploy_model.SerializeToString()
    # and back on through the same channel
    wb.settings_panel.table.set_state({"changes": [{"name": name, "field": "quant_enable", "value": True, "seq": 2}]})
    wb.settings_panel.rebuild()
    assert name in s.result.quantized_layers


def test_edit_of_several_selected_rows(wb):
    s = wb.session
    names = names_by(wb, lambda l: l.name.startswith("/layer3/"))
    assert len(names) >= 2
    edits = [{"name": n, "field": "act_algo", "value": "percentile", "seq": 3} for n in names]
    edits += [{"name": n, "field": "channel_wise", "value": False, "seq": 3} for n in names]
    wb.settings_panel.table.set_state({"changes": edits})
    for n in names:
        lc = s.config.for_layer(n)
        assert lc.act_algo == "percentile" and lc.channel_wise is False
    r = wb.settings_panel.rebuild()
    assert all(r.plan.layers[n].axis is None for n in names if n in r.plan.layers)
    s.set_layers(names, act_algo="mse", channel_wise=True)


def test_bad_edit_shows_an_error_and_changes_nothing(wb):
    before = wb.session.config_json()
    wb.settings_panel.table.set_state({"changes": [{"name": "x", "field": "wts_bits", "value": 4, "seq": 9}]})
    assert "cannot be edited" in wb.settings_panel.status.value
    assert wb.session.config_json() == before


def test_filter_and_bulk_apply(wb):
    sp = wb.settings_panel
    sp.table.set_state({"filter": "layer2 conv"})
    shown = sp.table.visible_names()
    assert shown and all("layer2" in n.lower() and "conv" in n.lower() for n in shown)
    sp.bulk_algo.value = "entropy"
    done = sp.apply_bulk()
    assert done == shown
    for l in wb.session.quantizable:
        assert wb.session.config.for_layer(l.name).act_algo == ("entropy" if l.name in shown else "mse")
    # a selection wins over the filter
    sp.table.set_state({"selection": [shown[0]]})
    sp.bulk_algo.value = "mse"
    assert sp.apply_bulk() == [shown[0]]
    sp.table.set_state({"selection": [], "filter": ""})
    assert sp.apply_bulk() == [l.name for l in wb.session.layers if l.quantizable]
    assert all(wb.session.config.for_layer(l.name).act_algo == "mse" for l in wb.session.quantizable)
    sp.bulk_algo.value = None


def test_op_type_filter_dropdown(wb):
    sp = wb.settings_panel
    sp.op_filter.value = "Gemm"
    assert sp.table.filter == "Gemm"
    assert sp.table.visible_names() == [l.name for l in wb.session.layers if l.op_type == "Gemm"]
    sp.op_filter.value = ""


def test_config_export_import_and_upload(wb, tmp_path):
    s = wb.session
    name = s.quantizable[1].name
    s.set_layers(name, act_algo="percentile", percentile=99.9)
    wb.settings_panel.export(tmp_path / "config.json")
    d = json.loads((tmp_path / "config.json").read_text())
    assert d[name]["activation_quant_params"]["act_algo"] == "percentile"
    assert set(l.name for l in s.quantizable) <= set(d)
    s.set_layers(name, act_algo="mse")
    wb.settings_panel.import_(str(tmp_path / "config.json"))
    assert s.config.for_layer(name).act_algo == "percentile"
    d[name]["quant_enable"] = False
    wb.settings_panel.upload.set_state({"value": [{"name": "c.json", "type": "application/json", "size": 1,
                                                   "last_modified": 0, "content": json.dumps(d).encode()}]})
    assert s.config.for_layer(name).quant_enable is False
    s.set_layers(name, act_algo="mse", quant_enable=True)


def test_rows_are_sent_to_the_front_end(wb):
    sent = []
    t = wb.settings_panel.table
    orig = t.send_state
    t.send_state = lambda key=None: (sent.append(key), orig(key))
    try:
        wb.session.set_layers(wb.session.quantizable[0].name, channel_wise=False)
    finally:
        t.send_state = orig
        wb.session.set_layers(wb.session.quantizable[0].name, channel_wise=True)
    assert any(k == "rows" or (isinstance(k, (list, tuple, set)) and "rows" in k) for k in sent)


# -- histogram -----------------------------------------------------------------------------
def test_click_on_a_row_shows_its_histogram(wb):
    hp = wb.histogram_panel
    a, b = wb.session.quantizable[2].name, wb.session.quantizable[5].name
    wb.settings_panel.table.set_state({"active": a})
    assert hp.layer.value == a
    img_a = bytes(hp.image.value)
    wb.settings_panel.table.set_state({"active": b})
    assert hp.layer.value == b
    assert bytes(hp.image.value)[:4] == b"\x89PNG" and bytes(hp.image.value) != img_a
    html = hp.errors.value
    for algo in ("mse", "minmax", "percentile", "entropy"):
        assert algo in html
    assert "(chosen)" in html and "clipped" in html


def test_histogram_panel_alone_before_calibration():
    p = HistogramPanel("fmnist-resnet")
    assert "calibrate first" in p.errors.value
    assert "calibrate first" in p._repr_mimebundle_()["text/html"]


def test_chosen_range_is_the_grid_of_the_result(wb):
    s = wb.session
    n = s.quantizable[3].name
    lo, hi = s.chosen_range(n)
    tq = s.result.plan.tensors[s.layer(n).activation]
    assert hi - lo == pytest.approx(255 * float(tq.scale), rel=1e-6)
    wr = s.weight_ranges(n)
    assert len(wr["min"]) == s.layer(n).weight_shape[0] and (wr["grid"] >= np.abs(wr["min"]) * 0.99).all()


# -- calibrate -------------------------------------------------------------------------------
def test_calibrate_in_a_thread_with_progress():
    m = zoo.load("fmnist-resnet")
    p = CalibratePanel(m, calibration_data=m.calibration_data(40))
    t = p.start()
    assert t is not None
    p.wait(120)
    assert p.session.result is not None
    assert p.progress.value == p.progress.max == 40
    assert "calibrated" in p.status.value and not p.run_button.disabled


def test_calibrate_cancel_keeps_nothing():
    m = zoo.load("fmnist-resnet")
    x = m.calibration_data(8)
    gate = threading.Event()

    def slow():
        for i in range(1000):
            if i == 2:
                gate.set()
            time.sleep(0.01)
            yield x[i % 8:i % 8 + 1]

    p = CalibratePanel(m, calibration_data=slow())
    p.start()
    assert gate.wait(60)
    p.cancel_button.click()
    p.wait(60)
    assert not p.busy
    assert p.session.stats is None and p.session.result is None
    assert "cancelled" in p.status.value


# -- compare ---------------------------------------------------------------------------------
def test_compare_grid_metrics_and_layer_errors(wb):
    c = wb.compare()
    cp = wb.compare_panel
    assert c.n == 64 and 0.9 <= c.agreement <= 1.0
    assert cp.grid.value.count("amct-grid-cell") == 8
    assert "top-1" in cp.metrics.value and bytes(cp.chart.value)[:4] == b"\x89PNG"
    worst = c.worst()
    assert [e.sqnr_db for e in worst] == sorted(e.sqnr_db for e in worst)
    assert all(e.quantized for e in worst) and all(0.9 < e.cosine <= 1.0 + 1e-9 for e in worst)
    assert len(cp.skip_buttons.children) == min(6, len(worst))
    rows = {r["name"]: r for r in wb.settings_panel.table.rows}
    assert rows[worst[0].name]["sqnr"] == pytest.approx(worst[0].sqnr_db, abs=0.01)


def test_one_click_skips_rebuilds_and_rescores(wb):
    c0 = wb.compare()
    worst = c0.worst(1)[0].name
    button = wb.compare_panel.skip_buttons.children[0]
    assert worst in button.tooltip
    stats = wb.session.stats
    button.click()
    wb.compare_panel.wait(120)
    s = wb.session
    assert s.stats is stats, "skipping must not re-observe"
    assert s.config.for_layer(worst).quant_enable is False
    assert worst in s.result.float_layers and s.comparison is not c0
    assert worst not in [e.name for e in s.comparison.worst()]
    assert "skipped" in wb.compare_panel.status.value
    s.set_layers(worst, quant_enable=True)
    s.build()


def test_fast_rebuild_equals_full_build(wb):
    s = wb.session
    s.set_config(an.QuantConfig())
    s.build()
    name = s.result.quantized_layers[2]
    s.set_layers(name, quant_enable=False)
    fast = s.build()
    assert s.last_build_fast
    full = an.build(s.prepared, s.config, s.stats)
    assert fast.deploy_model.SerializeToString() == full.deploy_model.SerializeToString()
    assert fast.fake_quant_model.SerializeToString() == full.fake_quant_model.SerializeToString()
    assert fast.float_layers == full.float_layers
    s.set_layers(name, quant_enable=True)
    s.build()
    assert not s.last_build_fast  # turning a layer on needs its ranges: full build
    s.set_layers(s.result.quantized_layers[0], percentile=99.9)
    s.set_layers(name, quant_enable=False)
    s.build()
    assert not s.last_build_fast  # layers with different settings: a range may change owner


def test_comparer_against_itself_has_no_error():
    s = Session("fmnist-resnet")
    s.calibrate()
    x, y = zoo.load().test_data(20)
    c = Comparer(s.prepared, x, y, error_samples=8).run(s.result)
    assert c.n == 20 and c.error_samples == 8 and c.labels is not None
    same = type(s.result)(**{**s.result.__dict__,
                             "fake_quant_model": s.prepared.model, "deploy_model": s.prepared.model})
    c2 = Comparer(s.prepared, x, y, error_samples=8).run(same)
    assert c2.agreement == 1.0 and all(e.sqnr_db == SQNR_CAP_DB and e.cosine == pytest.approx(1.0) for e in c2.layers)


# -- model panel, netron, static forms -------------------------------------------------------
def test_model_panel_facts(wb):
    html = wb.model_panel.summary.value
    for word in ("inputs", "outputs", "opset", "parameters", "quantizable layers", "input [1, 1, 28, 28]"):
        assert word in html or word.replace("[1", "[N") in html or "input" in html
    assert wb.model_panel.layers.value.count("<tr>") == len(wb.session.layers) + 1


def test_netron_inline_and_fallback(wb, monkeypatch):
    monkeypatch.setattr(netron_view, "available", lambda: False)
    assert wb.model_panel.show_graph() == ""
    assert "pip install netron" in wb.model_panel.graph.value
    monkeypatch.undo()
    pytest.importorskip("netron")
    monkeypatch.setenv("AMCT_NB_NETRON", "direct")
    try:
        url = wb.model_panel.show_graph("deploy")
        assert url.startswith("http://127.0.0.1:") and "<iframe" in wb.model_panel.graph.value
        import urllib.request

        page = urllib.request.urlopen(url, timeout=10).read()
        assert b"netron" in page.lower()
        monkeypatch.setenv("AMCT_NB_NETRON", "proxy")
        assert wb.model_panel.show_graph("original").startswith("/proxy/")
    finally:
        netron_view.stop_all()


def test_static_forms_for_nbconvert(wb):
    data = wb._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in data
    html = data["text/html"]
    for p in wb.panels:
        assert p.heading in html
    assert html.count("<img") >= 3 and "amct-compare-grid" in html and "amct-layers" in html


def test_panels_work_alone():
    s = Session("fmnist-resnet")
    for cls in (ModelPanel, CalibratePanel, HistogramPanel, SettingsPanel, ComparePanel):
        p = cls(s)
        assert p.heading in p._repr_mimebundle_()["text/html"]
    s.calibrate()
    c = ComparePanel(s)
    c.compare()
    assert c.session.comparison is not None and "amct-grid-cell" in c.grid.value


def test_auto_calibration_panel_runs_and_opens_the_config_in_the_table():
    from amct_nb.ui import AutoCalibrationPanel

    zm = zoo.load("fmnist-mobilenetv2")
    cfg = an.QuantConfig()
    cfg.default.channel_wise = False
    wb = Workbench("fmnist-mobilenetv2", config=cfg, eval_data=zm.test_data(300))
    seen = []
    wb.session.on("auto_trial", lambda s, t: seen.append(t))
    wb.auto_panel.max_loss.value = 0.5
    outcome = wb.auto_panel.run(wait=True)
    assert seen == [t for t in outcome.trials if t.evaluated] and outcome.final.passed
    assert wb.session.result is outcome.result and wb.result.float_layers.keys() >= set(outcome.float_layers)
    rows = {r["name"]: r for r in wb.settings_panel.table.rows}
    for name in outcome.float_layers:  # the layer table shows the final config
        assert rows[name]["quant_enable"] is False
    html = wb.auto_panel.static_html()
    assert "amct-trials" in html and "<img" in html and len(wb.auto_panel.chart.value) > 1000
    alone = AutoCalibrationPanel(Session("fmnist-resnet", eval_data=(zm.test_data(10)[0], None)))
    with pytest.raises(an.DataError, match="needs a metric"):
        alone.run(wait=True)
