"""One real model at several output-check targets: task check, layers kept int8, output SQNR.

    python benchmarks/realmodels/output_target.py ppocr_rec [TARGET_DB ...]   (default: off 12 15 20)

Calibration: 32 feeds (seed 0), evaluation: 32 others (seed 1), as run_ours.py. "off" is
min_output_sqnr_db=None (the per-tensor safety net still runs).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import onnx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

from benchmarks.realmodels import catalog  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("name")
    ap.add_argument("targets", nargs="*", default=["off", "12", "15", "20"])
    ap.add_argument("--n", type=int, default=32)
    args = ap.parse_args()
    import amct_nb as an
    from amct_nb.ir import make_session

    m = catalog.get(args.name)
    path = catalog.fetch(m)
    cal, ev = m.feeds(args.n, 0), m.feeds(args.n, 1)
    s_ref = make_session(onnx.load(path))
    names = [o.name for o in s_ref.get_outputs()]
    ref = [s_ref.run(names, f) for f in ev]
    print("| target dB | task check | passes | int8 layers "
          "| output SQNR dB before -> after the check (calibration) | time s |")
    print("|---|---|---|---|---|---|")
    for t in args.targets:
        cfg = an.QuantConfig(min_output_sqnr_db=None if t == "off" else float(t))
        t0 = time.perf_counter()
        res = an.quantize(path, cal, cfg, progress=False)
        dt = time.perf_counter() - t0
        s = make_session(res.deploy_model)
        chk = m.check(ref, [s.run(names, f) for f in ev])
        oc = res.report()["output_check"]
        out = min(e["sqnr_db"] for e in res.output_errors.values())
        before = oc.get("before_sqnr_db", "-")
        print(f"| {t} | {chk['metric']} {chk['value']:.4f} | {chk['passed']} | {len(res.quantized_layers)} | "
              f"{before} -> {out:.1f} | {dt:.1f} |", flush=True)


if __name__ == "__main__":
    main()
