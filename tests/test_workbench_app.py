"""``amct-nb workbench``: the Workbench as a standalone page (Voila), tested in a real browser.

The command runs as a subprocess (``python -m amct_nb.cli workbench ...``, what the ``amct-nb`` script
runs), Debian's chromium opens the address it prints (Playwright, every request that does not go to
127.0.0.1 blocked): the page calibrates the sample model and its save button writes AMCT's files, which
ONNX Runtime loads. A model path that does not exist or is not ONNX: the error goes to the terminal
(stderr) and onto the page. The first tests need no browser.

Needs: ``apt-get install chromium`` and ``pip install voila playwright`` (never ``playwright install``).
The browser tests are skipped when these are missing, unless AMCT_NB_REQUIRE_UI=1 (then they fail).
"""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from browser import CHROMIUM, free_port, local_browser, need

ROOT = Path(__file__).resolve().parents[1]


# -- no browser ----------------------------------------------------------------------------------
def test_cli_loads_no_jupyter():
    code = "import sys, amct_nb.cli as c; c.build_parser(); print(sorted(m for m in sys.modules if m.startswith(" \
           "('amct_nb.ui', 'ipywidgets', 'voila'))))"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "[]", r.stdout + r.stderr


def test_missing_voila_says_what_to_install(monkeypatch):
    pytest.importorskip("ipywidgets")
    import importlib.util

    from amct_nb.errors import NotSupportedError
    from amct_nb.ui import app

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "voila" else real(name, *a))
    with pytest.raises(NotSupportedError, match=r"voila.*pip install 'amct-nb\[notebook\]'"):
        app.serve("fmnist-resnet", open_browser=False)


def test_inputs_are_checked_and_never_become_code(tmp_path):
    pytest.importorskip("ipywidgets")
    from amct_nb.ui import app

    bad = tmp_path / 'x"); import os; os.remove("y.onnx'
    bad.write_text("not a model")
    spec = {"model": str(bad), "data": str(tmp_path / "none.npy"), "eval": None, "preprocess": None,
            "num_samples": None, "eval_samples": 10, "output": str(tmp_path / "out"), "cwd": str(tmp_path)}
    problems = app.check_inputs(spec)
    assert len(problems) == 2 and "not a readable ONNX file" in problems[0] and "--data" in problems[1], problems
    assert app.check_model("fmnist-resnet") is None
    assert "sample model" in app.check_model("fmnist-resnt")
    nb = json.loads(app.write_app(spec, tmp_path).read_text())
    assert nb["cells"][0]["source"] == app.CELL and str(bad) not in app.CELL  # the arguments travel as JSON
    assert json.loads((tmp_path / "workbench.json").read_text())["model"] == str(bad)


# -- the page in chromium --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def browser():
    try:
        import playwright.sync_api  # noqa: F401
        import voila  # noqa: F401
    except ImportError as e:
        need(False, f"the Python package {e.name} (pip install voila playwright)")
    need(Path(CHROMIUM).exists(), f"{CHROMIUM} (apt-get install -y chromium)")
    with local_browser({"width": 1400, "height": 1000}) as (ctx, blocked):
        yield ctx, blocked


class Server:
    """``amct-nb workbench ARGS`` in its own process group; ``url`` once it prints the address."""

    def __init__(self, args, folder: Path):
        self.out, self.err = folder / "stdout.txt", folder / "stderr.txt"
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
               "JUPYTER_RUNTIME_DIR": str(folder / ".runtime")}
        with open(self.out, "w") as o, open(self.err, "w") as e:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "amct_nb.cli", "workbench", *args, "--port", str(free_port()), "--no-browser"],
                cwd=folder, env=env, stdout=o, stderr=e, start_new_session=True)
        deadline = time.time() + 60
        while not (m := re.search(r"http://127\.0\.0\.1:\d+/\?token=\S+", self.out.read_text())):
            if self.proc.poll() is not None or time.time() > deadline:
                self.stop()
                raise RuntimeError(f"amct-nb workbench did not start: {self.err.read_text()[-3000:]}")
            time.sleep(0.2)
        self.url = m.group(0)

    def stop(self) -> int:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
        return self.proc.wait()


def test_page_calibrates_and_saves(browser, tmp_path):
    import onnxruntime as ort

    ctx, blocked = browser
    out = tmp_path / "saved"
    server = Server(["fmnist-resnet", "--output", str(out)], tmp_path)
    try:
        page = ctx.new_page()
        page.goto(server.url)
        page.wait_for_selector(".amct-panel-title:has-text('5. Compare')", timeout=60_000)
        titles = page.locator(".amct-panel-title").all_text_contents()
        assert any("amct-nb workbench: fmnist_resnet" in t for t in titles), titles
        assert page.locator(".amct-save input[type=text]").first.input_value() == str(out)
        save = page.locator("button.amct-save-button")
        assert save.is_disabled()  # nothing to save before calibrating
        page.get_by_role("button", name=re.compile(r"^\W*Calibrate$")).click()
        page.wait_for_selector(".amct-status-ok:has-text('calibrated')", timeout=60_000)
        page.wait_for_function("() => !document.querySelector('button.amct-save-button').disabled", timeout=10_000)
        save.click()
        page.wait_for_selector(".amct-saved", timeout=30_000)
        shown = page.locator(".amct-saved").inner_text()
        page.close()
    finally:
        server.stop()
    files = {"deploy": out / "fmnist_resnet_deploy_model.onnx",
             "fake_quant": out / "fmnist_resnet_fake_quant_model.onnx",
             "record": out / "tmp" / "record.txt", "config": out / "tmp" / "config.json"}
    for f in files.values():
        assert f.is_file() and str(f) in shown, (f, shown)
    assert "scale_d" in files["record"].read_text()
    x = np.zeros((2, 1, 28, 28), np.float32)
    for key in ("deploy", "fake_quant"):
        sess = ort.InferenceSession(str(files[key]), providers=["CPUExecutionProvider"])
        assert sess.run(None, {sess.get_inputs()[0].name: x})[0].shape == (2, 10)
    assert all(u.split("/")[2].split(":")[0] != "127.0.0.1" for u in blocked if "://" in u)


def test_bad_model_error_in_terminal_and_on_page(browser, tmp_path):
    """Not ONNX: checked by the command before it serves; missing: typed into the page's model box."""
    ctx, _ = browser
    model, missing = tmp_path / "model.onnx", tmp_path / "nowhere" / "missing.onnx"
    model.write_text("this is a text file, not an ONNX model\n")
    server = Server([str(model)], tmp_path)
    try:
        assert "amct-nb: error: model.onnx is not a readable ONNX file" in server.err.read_text().replace(
            str(tmp_path) + os.sep, ""), server.err.read_text()[-2000:]
        page = ctx.new_page()
        page.goto(server.url)
        box = page.wait_for_selector(".amct-app-error", timeout=60_000)
        assert "is not a readable ONNX file" in box.inner_text() and str(model) in box.inner_text()
        assert page.locator(".amct-panel-title").count() == 0  # no Workbench, no traceback
        page.locator(".amct-app input[type=text]").first.fill(str(missing))
        page.get_by_role("button", name=re.compile(r"^\W*Open$")).click()
        box = page.wait_for_selector(f".amct-app-error:has-text('{missing.name}')", timeout=30_000)
        assert f"model file not found: {missing}" in box.inner_text()
        deadline = time.time() + 10
        while f"amct-nb: error: model file not found: {missing}" not in server.err.read_text():
            assert time.time() < deadline, server.err.read_text()[-2000:]
            time.sleep(0.2)
        page.close()
    finally:
        rc = server.stop()
    assert rc == 2
