"""``amct-nb demo``: the seed's post-training quantization flow on a sample model, end to end.

Load, calibrate, save AMCT's outputs under ``./outputs/calibration/``, then print the original
and the quantized prediction for one sample and top-1/top-5 before and after on test images.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from .analysis import softmax, topk_accuracy
from .ir import make_session

__all__ = ["run_demo", "add_demo_parser"]


def _predict(model, x, batch=100):
    s = make_session(model)
    name = s.get_inputs()[0].name
    return np.concatenate([s.run(None, {name: x[i : i + batch]})[0] for i in range(0, len(x), batch)])


def run_demo(model: str = "fmnist-resnet", images: str | None = None, output: str = "outputs/calibration",
             calib: int = 100, progress: bool = True, print_fn=print) -> dict:
    """Run the seed-002 flow; returns the numbers it printed."""
    import onnx

    from . import zoo
    from .config import QuantConfig
    from .ptq import quantize

    t0 = time.perf_counter()
    zm = zoo.load(model)
    if images:
        from .data import ImageFolder, labels_of, preset

        ds = ImageFolder(images, preset(zm.preprocess), labels="auto")
        x_all = np.stack([s[None] for s in ds])
        labels_all = labels_of(ds)
        n_cal = min(calib, max(1, len(x_all) // 5))
        x_cal, x_test, y_test = x_all[:n_cal], x_all[n_cal:], None if labels_all is None else labels_all[n_cal:]
    else:
        x_cal = zm.calibration_data(calib)
        x_test, y_test = zm.test_data()
    print_fn(f"model: {zm.name} ({zm.path.name}); calibration samples: {len(x_cal)}; test samples: {len(x_test)}")
    res = quantize(str(zm.path), x_cal, QuantConfig(), progress=progress)
    paths = res.save(output, prefix=Path(zm.path).stem)
    orig = onnx.load(str(zm.path))
    fp = _predict(orig, x_test)
    q = _predict(res.deploy_model, x_test)
    p_fp, p_q = softmax(fp[:1])[0], softmax(q[:1])[0]
    c_fp, c_q = int(p_fp.argmax()), int(p_q.argmax())

    def name(c):
        return zm.classes[c] if c < len(zm.classes) else str(c)

    print_fn(f"Origin Model Prediction: category index {c_fp} ({name(c_fp)}), prob: {p_fp[c_fp]:.6f}")
    print_fn(f"Quantized Model Prediction: category index {c_q} ({name(c_q)}), prob: {p_q[c_q]:.6f}")
    out = {"origin_index": c_fp, "origin_prob": float(p_fp[c_fp]), "quant_index": c_q, "quant_prob": float(p_q[c_q]),
           "agreement": float((fp.argmax(1) == q.argmax(1)).mean()), "paths": {k: str(v) for k, v in paths.items()}}
    if y_test is not None:
        for tag, logits in (("origin", fp), ("quantized", q)):
            out[f"{tag}_top1"] = topk_accuracy(logits, y_test, 1)
            out[f"{tag}_top5"] = topk_accuracy(logits, y_test, 5)
        print_fn(f"[INFO] Origin Model top1 accuracy: {out['origin_top1']:.4f}, top5: {out['origin_top5']:.4f}")
        print_fn(f"[INFO] Quantized Model top1 accuracy: {out['quantized_top1']:.4f}, "
                 f"top5: {out['quantized_top5']:.4f}")
    print_fn(f"[INFO] top-1 agreement original vs quantized: {out['agreement']:.4f} on {len(x_test)} samples")
    print_fn(f"[INFO] outputs in {Path(output).resolve()} ({time.perf_counter() - t0:.1f} s)")
    return out


def add_demo_parser(sub) -> None:
    d = sub.add_parser("demo", help="run the post-training quantization flow on a sample model")
    d.add_argument("--model", default="fmnist-resnet",
                   help="zoo model (fmnist-resnet, fmnist-mobilenetv2, efficientnet-lite0)")
    d.add_argument("--images", help="folder of images to calibrate on (first 20%%) and test on (the rest)")
    d.add_argument("--output", default="outputs/calibration")
    d.add_argument("--calib", type=int, default=100, help="number of calibration samples")
    d.add_argument("--quiet", action="store_true")
    d.add_argument("--debug", action="store_true")
    d.set_defaults(func=lambda a: (run_demo(a.model, a.images, a.output, a.calib, progress=not a.quiet), 0)[1])
