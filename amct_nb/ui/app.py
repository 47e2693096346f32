"""``amct-nb workbench MODEL``: the Workbench as a standalone page in the browser, served by Voila.

Two halves, one per process:

- in the ``amct-nb`` process, :func:`serve` checks the model and the data (each problem is printed to
  the terminal, and passed on to the page), writes a one-cell notebook and a JSON file of the
  arguments into a temporary folder, and runs Voila on 127.0.0.1 with a random token until Ctrl-C;
- in the kernel Voila starts for each visit, the cell calls :func:`app_widget`, which reads the JSON
  file named by ``$AMCT_NB_WORKBENCH`` (nothing typed on the command line becomes code) and shows the
  Workbench, or the problems in a red box, under a bar to open another model.

Voila runs the notebook's code only: a visitor gets the widgets, never a kernel to type code into.
Each visit (or reload) of the page starts a fresh kernel, hence a fresh Workbench.
"""

from __future__ import annotations

import html
import importlib.util
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import webbrowser
from pathlib import Path

import numpy as np

from amct_nb import zoo
from amct_nb.errors import AmctError, DataError, NotSupportedError

from .save_box import DEFAULT_OUTPUT

__all__ = ["serve", "check_inputs", "write_app", "app_widget", "CONFIG_ENV", "DEFAULT_PORT"]

#: The environment variable that names the JSON file of the arguments (read in the kernel).
CONFIG_ENV = "AMCT_NB_WORKBENCH"
#: Voila's usual port; another free one is taken when it is busy (unless ``--port`` names it).
DEFAULT_PORT = 8866
NOTEBOOK_NAME = "amct-nb-workbench.ipynb"
CELL = "from amct_nb.ui.app import app_widget\n\napp_widget()"


# -- checks (both processes) -------------------------------------------------------------------
def check_model(model: str) -> str | None:
    """Why ``model`` (a sample model name or an ONNX file's path) cannot be opened, or None."""
    from amct_nb.ir import load_model

    if model in zoo.available():
        return None
    p = Path(model).expanduser()
    if not p.exists() and os.sep not in model and "/" not in model and not model.lower().endswith(".onnx"):
        return (f"{model} is neither a file nor a sample model (current folder: {os.getcwd()}): give the path of an "
                f".onnx file, or one of {', '.join(zoo.available())}")
    try:
        load_model(p, check=False)
    except AmctError as e:
        return str(e)
    return None


def _preprocess(spec: dict):
    from amct_nb.data import Preprocess

    d = spec.get("preprocess")
    return None if d is None else Preprocess(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


def _open(spec: dict, key: str, limit: int | None):
    """The dataset at ``spec[key]``; the labels of an evaluation ``.npz`` are its ``y``/``labels``/``label``."""
    from amct_nb.data import open_data

    path, kw = spec[key], {}
    if key == "eval" and str(path).lower().endswith(".npz") and Path(path).is_file():
        try:
            with np.load(path) as f:
                keys = list(f.keys())
        except Exception:  # open_data says what is wrong with the file
            keys = []
        found = [k for k in ("y", "labels", "label") if k in keys]
        if found and len(keys) > 1:
            kw["labels_key"] = found[0]
    return open_data(path, _preprocess(spec), limit=limit, **kw)


def check_inputs(spec: dict) -> list[str]:
    """Every problem with the model and the data of ``spec`` (empty when all can be opened)."""
    problems = []
    why = check_model(spec["model"])
    if why:
        problems.append(why)
    for key, limit in (("data", "num_samples"), ("eval", "eval_samples")):
        if spec.get(key):
            try:
                _open(spec, key, spec.get(limit))
            except AmctError as e:
                problems.append(f"--{key}: {e}")
    return problems


# -- the amct-nb process -----------------------------------------------------------------------
def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_app(spec: dict, folder) -> Path:
    """Write ``workbench.json`` (the arguments) and the one-cell notebook into ``folder``; returns the notebook."""
    folder = Path(folder)
    (folder / "workbench.json").write_text(json.dumps(spec, indent=2))
    cell = {"cell_type": "code", "id": "workbench", "metadata": {}, "source": CELL, "outputs": [],
            "execution_count": None}
    nb = {"cells": [cell],
          "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
          "nbformat": 4, "nbformat_minor": 5}
    path = folder / NOTEBOOK_NAME
    path.write_text(json.dumps(nb, indent=1))
    return path


def _wait_until_up(proc: subprocess.Popen, port: int, timeout: float = 120) -> bool:
    """Whether Voila listens on ``port`` before ``timeout`` (False when it exits first)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
            return True
        except OSError:
            time.sleep(0.3)
    return False


def serve(model: str, *, data=None, eval=None, preprocess: dict | None = None, num_samples: int | None = None,
          eval_samples: int = 200, output=DEFAULT_OUTPUT, port: int | None = None, open_browser: bool = True) -> int:
    """Check the inputs, then serve the Workbench page with Voila until Ctrl-C (or until Voila stops).

    Problems with the model or the data are printed to stderr and shown on the page (which offers to
    open another model). Returns Voila's exit status, or 2 when the inputs had problems."""
    missing = [m for m in ("voila", "ipywidgets", "anywidget") if importlib.util.find_spec(m) is None]
    if missing:
        raise NotSupportedError(f"the Workbench app needs {', '.join(missing)} (not installed): "
                                "pip install 'amct-nb[notebook]'")
    cwd = os.getcwd()
    spec = {"model": str(model), "data": None if data is None else str(data),
            "eval": None if eval is None else str(eval), "preprocess": preprocess, "num_samples": num_samples,
            "eval_samples": eval_samples, "output": str(Path(output).expanduser().resolve()), "cwd": cwd}
    spec["errors"] = check_inputs(spec)
    for e in spec["errors"]:
        print(f"amct-nb: error: {e}", file=sys.stderr, flush=True)
    if spec["errors"]:
        print("amct-nb: the page shows the error(s) and lets you open another model", file=sys.stderr, flush=True)
    elif model not in zoo.available() and data is None:
        print("amct-nb: note: no --data: the page shows the model, but calibrating needs calibration data", flush=True)
    if port is None:
        port = DEFAULT_PORT if _port_free(DEFAULT_PORT) else _free_port()
    token = secrets.token_urlsafe(24)
    with tempfile.TemporaryDirectory(prefix="amct-nb-workbench-") as folder:
        nb = write_app(spec, folder)
        env = {**os.environ, CONFIG_ENV: str(Path(folder) / "workbench.json")}
        cmd = [sys.executable, "-m", "voila", str(nb), f"--port={port}", "--Voila.ip=127.0.0.1", "--no-browser",
               "--Voila.port_retries=0", f"--Voila.token={token}", "--show_tracebacks=False"]
        if os.name == "posix":  # the kernel's sockets as files in Voila's private folder, not TCP ports
            cmd.append("--KernelManager.transport=ipc")
        proc = subprocess.Popen(cmd, cwd=folder, env=env)
        url = f"http://127.0.0.1:{port}/?token={token}"
        try:
            before = signal.signal(signal.SIGTERM, _interrupt)  # stop Voila on `kill` as on Ctrl-C
        except ValueError:  # not the main thread
            before = None
        try:
            if _wait_until_up(proc, port):
                print(f"amct-nb workbench: {url}  (Ctrl-C stops the server)", flush=True)
                if open_browser:
                    webbrowser.open(url)
            rc = proc.wait()
        except KeyboardInterrupt:
            rc = 0
        finally:
            if before is not None:
                signal.signal(signal.SIGTERM, before)
            _stop(proc)
    return 2 if spec["errors"] else rc


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# -- the kernel --------------------------------------------------------------------------------
def _arrays(ds) -> tuple[np.ndarray, np.ndarray | None]:
    """(samples, labels or None) in memory, for the compare panel (single-input models)."""
    from amct_nb.data import labels_of

    xs = []
    for s in ds:
        if isinstance(s, dict) and len(s) != 1:
            raise DataError(f"the compare panel takes single-input models; this data has {len(s)} inputs per sample")
        xs.append(np.asarray(next(iter(s.values())) if isinstance(s, dict) else s, np.float32))
    if not xs:
        raise DataError("the evaluation data holds no samples: give a path with at least one")
    x = np.concatenate(xs) if getattr(ds, "complete_feeds", False) else np.stack(xs)
    y = labels_of(ds)
    return x, (None if y is None or len(y) < len(x) else np.asarray(y)[: len(x)])


def build_workbench(spec: dict, model: str):
    """The Workbench for ``model`` with the data of ``spec`` (raises what the engine raises)."""
    from .workbench import Workbench

    if model not in zoo.available():
        model = str(Path(model).expanduser())
    cal = _open(spec, "data", spec.get("num_samples")) if spec.get("data") else None
    ev = _arrays(_open(spec, "eval", spec.get("eval_samples"))) if spec.get("eval") else None
    if ev is None and cal is not None and model not in zoo.available():  # compare on the calibration data
        ev = _arrays(_open(spec, "data", spec.get("eval_samples")))
    wb = Workbench(model, calibration_data=cal, eval_data=ev)
    wb.calibrate_panel.save_box.folder.value = spec.get("output") or DEFAULT_OUTPUT
    return wb


def error_html(problems: list[str]) -> str:
    items = "".join(f"<li>{html.escape(p)}</li>" for p in problems)
    return ("<div class='amct-app-error' style='border:1px solid #b42318;background:#fef3f2;color:#b42318;"
            "padding:8px 14px;border-radius:4px;font-size:13px'><b>amct-nb workbench could not open the model"
            f"</b><ul style='margin:6px 0'>{items}</ul>Type the path of an .onnx file (or a sample model: "
            f"{html.escape(', '.join(zoo.available()))}) above and click Open.</div>")


def _to_terminal(text: str) -> None:
    try:
        sys.__stderr__.write(f"amct-nb: error: {text}\n")
        sys.__stderr__.flush()
    except (AttributeError, OSError, ValueError):
        pass


def app_widget(path=None):
    """The page: an "open a model" bar over the Workbench (or over the problems that stopped it)."""
    import ipywidgets as widgets

    spec = json.loads(Path(path or os.environ[CONFIG_ENV]).read_text())
    os.chdir(spec["cwd"])  # relative paths typed on the page mean what they mean in the terminal
    model_box = widgets.Text(value=spec["model"], description="model", layout=widgets.Layout(width="560px"))
    open_button = widgets.Button(description="Open", icon="folder-open", button_style="primary")
    body = widgets.VBox([])
    page = widgets.VBox([widgets.HBox([model_box, open_button]), body])
    page.add_class("amct-app")
    page.workbench = None

    def show(model: str, problems: list[str]) -> None:
        body.children = [widgets.HTML("<div class='amct-app-busy' style='font-size:12px'>opening "
                                      f"{html.escape(model)}...</div>")]
        if not problems:
            try:
                page.workbench = build_workbench(spec, model)
                body.children = [page.workbench]
                return
            except Exception as e:  # the page must say what went wrong, never just a traceback
                problems = [str(e) if isinstance(e, AmctError) else f"{type(e).__name__}: {e}"]
                for p in problems:
                    _to_terminal(p)
        page.workbench = None
        body.children = [widgets.HTML(error_html(problems))]

    def on_open(_) -> None:
        model = model_box.value.strip()
        why = check_model(model)
        if why:
            _to_terminal(why)
        show(model, [why] if why else [])

    open_button.on_click(on_open)
    show(spec["model"], list(spec.get("errors") or []))
    return page
