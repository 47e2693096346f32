"""What the saturation guard costs in accuracy: fake-quant agreement with fp32 for each mode.

The fake-quant model is what a CPU that does not saturate computes; with the guard ("always"),
the deploy model computes the same on CPUs that do saturate (tests/test_saturation.py), without
it ("off") those CPUs lose accuracy, and "reduce_range" (7-bit weights) is ONNX Runtime's remedy.

    python benchmarks/guard_cost.py [--out benchmarks/GUARD.md]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import onnx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from compare_ranges import datasets, predict  # noqa: E402


def main():
    import amct_nb as an

    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(HERE / "GUARD.md"))
    args = ap.parse_args()
    rows = []
    for name, path, cal, x, y in datasets():
        ref = predict(onnx.load(path), x)
        prepared = an.prepare(path)
        stats = an.collect_stats(prepared, cal, progress=False)
        for mode in ("off", "always", "reduce_range"):
            res = an.build(prepared, an.QuantConfig(saturation_guard=mode), stats)
            p = predict(res.fake_quant_model, x)
            rows.append((name, mode, float((p == ref).mean()), float((p == y).mean()), res.plan.pairs_fixed))
            print(rows[-1], flush=True)
    lines = ["# Cost of the saturation guard (fake-quant models, held-out data)", "",
             "Produced by `python benchmarks/guard_cost.py`.", "",
             "| model | guard | top-1 agreement with fp32 | top-1 | weight values changed by the guard |",
             "|---|---|---|---|---|"]
    lines += [f"| {r[0]} | {r[1]} | {r[2]:.4f} | {r[3]:.4f} | {r[4]} |" for r in rows]
    text = "\n".join(lines) + "\n"
    print(text)
    Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
