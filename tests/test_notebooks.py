"""The notebooks run top to bottom with nbval (``--nbval-lax``: every cell must run, cells tagged
``nbval-check-output`` must print what is stored), in the small-data mode CI uses. Skipped when
nbval or ipykernel is missing, unless AMCT_NB_REQUIRE_UI=1 (CI)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_notebooks_run_with_nbval(tmp_path):
    for mod in ("nbval", "ipykernel", "ipywidgets", "anywidget", "matplotlib"):
        try:
            __import__(mod)
        except ImportError:
            give_up = pytest.fail if os.environ.get("AMCT_NB_REQUIRE_UI") == "1" else pytest.skip
            give_up(f"needs {mod} (pip install nbval ipykernel)")
    env = {**os.environ, "AMCT_NB_QUICK": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    r = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval-lax", "--nbval-current-env",
         str(ROOT / "notebooks"), "-o", f"cache_dir={tmp_path}", "--rootdir", str(ROOT / "notebooks")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert " passed" in r.stdout and "failed" not in r.stdout.splitlines()[-1]
