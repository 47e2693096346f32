"""How fast the notebook layer reacts on a real model: EfficientNet-Lite0 (../shared/data).

    python benchmarks/ui_timing.py [--calib 100] [--eval 100] [--switches 10]

Measures, after calibrating on the first ``--calib`` dev images (targets from issue 4):
  * Workbench shows (all five panels built and their display data, static forms included) < 2 s;
  * switching the histogram's layer (as a click on a row of the layer table does) < 300 ms,
    cold (the layer's range errors computed on the spot) and warm (computed ahead in a thread);
  * skipping one layer, rebuilding from the same statistics and re-scoring ``--eval`` images < 10 s
    (the first comparison, which also runs the float model once, is reported separately).
Widgets are driven headless, as the front end would (``set_state``); no browser is involved.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import imagenet_dev  # noqa: E402


def _classes():
    p = imagenet_dev.DATA / "imagenet_classes.csv"
    if not p.exists():
        return None
    with p.open() as f:
        return [r["name"] for r in csv.DictReader(f)]


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calib", type=int, default=100)
    ap.add_argument("--eval", type=int, default=100)
    ap.add_argument("--switches", type=int, default=10)
    ap.add_argument("--tree", help="import amct_nb from this folder (another version; default: this checkout)")
    ap.add_argument("--json", help="also write the measures to this JSON file")
    a = ap.parse_args(argv)
    if a.tree:
        sys.path.insert(0, str(Path(a.tree).resolve()))

    from amct_nb.ui import Session, Workbench

    t = time.perf_counter()
    x_cal, _ = imagenet_dev.load(0, a.calib)
    x_ev, y_ev = imagenet_dev.load(a.calib, a.calib + a.eval)
    load_s = time.perf_counter() - t
    s = Session(str(imagenet_dev.MODEL), calibration_data=x_cal, eval_data=(x_ev, y_ev), classes=_classes())
    s.calibrate()
    out = {"images loaded (s)": load_s, "layers": len(s.layers), "quantizable": len(s.quantizable),
           "observe (s)": s.timings["observe"], "first build (s)": s.timings["build"]}

    t = time.perf_counter()
    wb = Workbench(s)
    wb._repr_mimebundle_()
    out["Workbench shows (s)"] = time.perf_counter() - t

    table, hp = wb.settings_panel.table, wb.histogram_panel
    names = [l.name for l in s.quantizable]
    step = max(1, len(names) // a.switches)
    picks = names[1::step][: a.switches]

    def switch_times(layers):
        ts, cpu = [], []
        for n in layers:
            t, c = time.perf_counter(), time.thread_time()
            table.set_state({"active": n})
            assert hp.layer.value == n and hp.image.value
            ts.append(time.perf_counter() - t)
            cpu.append(time.thread_time() - c)
        return ts, cpu

    # (versions before the restructure had no public method for this)
    clear = getattr(s, "clear_range_errors", None) or s._errors_cache.clear
    clear()
    cold, cold_cpu = switch_times(picks)
    s.warm_range_errors(background=False)
    t = time.perf_counter()
    clear()
    s.warm_range_errors(background=False)
    out["range errors of every layer, ahead (s)"] = time.perf_counter() - t
    warm, warm_cpu = switch_times(list(reversed(picks)))

    def ms(v):
        return round(1000 * v, 1)

    out["histogram switch cold, median / max (ms)"] = (ms(statistics.median(cold)), ms(max(cold)))
    out["histogram switch warm, median / max (ms)"] = (ms(statistics.median(warm)), ms(max(warm)))
    out["  same, CPU time of the switching thread, cold / warm median (ms)"] = (
        ms(statistics.median(cold_cpu)), ms(statistics.median(warm_cpu)))

    t = time.perf_counter()
    c = wb.compare()
    out["first compare (s)"] = time.perf_counter() - t
    out["top-1 float / int8, agreement"] = (c.accuracy("fp", 1), c.accuracy("q", 1), c.agreement)
    worst = c.worst(1)[0].name
    t = time.perf_counter()
    wb.compare_panel.skip(worst)
    out["skip one layer + rebuild + re-score (s)"] = time.perf_counter() - t
    out["  of which rebuild (s)"] = s.timings["build"]
    out["  of which re-score (s)"] = s.timings["compare"]
    out["  rebuild reused the record"] = s.last_build_fast
    out["skipped layer"] = worst
    c2 = s.comparison
    out["top-1 int8 after the skip, agreement"] = (c2.accuracy("q", 1), c2.agreement)

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"EfficientNet-Lite0, {a.calib} calibration images, {a.eval} evaluation images "
          f"({s.error_samples} of them for the per-layer errors); {os.cpu_count()} CPUs, "
          f"load average {load:.1f} at the end\n")
    print("| measure | value |\n|---|---|")
    for k, v in out.items():
        if isinstance(v, float):
            v = f"{v:.3f}"
        elif isinstance(v, tuple):
            v = " / ".join(f"{x:.4g}" if isinstance(x, float) else str(x) for x in v)
        print(f"| {k} | {v} |")
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
