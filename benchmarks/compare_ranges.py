"""Which activation range algorithm should be the default? Measured on real models.

For each model and algorithm: calibrate, then top-1 agreement with the fp32 model and top-1
accuracy of the deploy model on held-out data. EfficientNet-Lite0: 100 dev images to calibrate,
400 to evaluate; the embedded Fashion-MNIST models: 100 training images to calibrate, the 500
shipped test images to evaluate.

    python benchmarks/compare_ranges.py [--out benchmarks/RANGES.md]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import onnx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

ALGOS = ("mse", "entropy", "percentile", "minmax")


def predict(model, x, batch=50):
    from amct_nb.ir import make_session

    s = make_session(model)
    name = s.get_inputs()[0].name
    return np.concatenate([s.run(None, {name: x[i : i + batch]})[0] for i in range(0, len(x), batch)]).argmax(1)


def datasets():
    from amct_nb import zoo

    for name in ("fmnist-resnet", "fmnist-mobilenetv2"):
        try:
            zm = zoo.load(name)
        except Exception:
            continue
        x, y = zm.test_data()
        yield name, str(zm.path), zm.calibration_data(100), x, y
    try:
        import imagenet_dev

        if imagenet_dev.MODEL.exists():
            cal, _ = imagenet_dev.load(0, 100)
            x, y = imagenet_dev.load(100, 500)
            yield "efficientnet-lite0", str(imagenet_dev.MODEL), cal, x, y
    except ImportError:
        pass


def main():
    import amct_nb as an

    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(HERE / "RANGES.md"))
    args = ap.parse_args()
    rows = []
    for name, path, cal, x, y in datasets():
        ref = predict(onnx.load(path), x)
        for algo in ALGOS:
            cfg = an.QuantConfig()
            cfg.default.act_algo = algo
            t = time.perf_counter()
            res = an.quantize(path, cal, cfg, progress=False)
            dt = time.perf_counter() - t
            p = predict(res.deploy_model, x)
            rows.append((name, algo, float((p == ref).mean()), float((p == y).mean()), float((ref == y).mean()), dt))
            print(rows[-1], flush=True)
    lines = ["# Range algorithms compared (deploy models, held-out data)", "",
             "Produced by `python benchmarks/compare_ranges.py`.", "",
             "| model | algorithm | top-1 agreement with fp32 | top-1 | fp32 top-1 | quantize wall (s) |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r[0]} | {r[1]} | {r[2]:.4f} | {r[3]:.4f} | {r[4]:.4f} | {r[5]:.1f} |")
    means = {a: np.mean([r[2] for r in rows if r[1] == a]) for a in ALGOS}
    lines += ["", "Mean agreement over the models: " + ", ".join(f"{a} {v:.4f}" for a, v in means.items()), ""]
    text = "\n".join(lines)
    print(text)
    Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
