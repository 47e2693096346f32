"""Converting QAT / QDQ models: how closely the converted models follow the model they came from.

For each source model (ONNX Runtime's quantize_static on real and synthetic models, PyTorch
fake-quant exports, synthetic Q/DQ patterns), ``amct_nb.convert.convert_qat`` with default settings
(every QAT integer kept), then on the same ONNX Runtime: top-1 agreement of the deploy and the
fake-quant models with the source model, their largest output difference, accuracy where there
are labels, and what the conversion report says (layers kept int8, weight pairs a CPU without VNNI
would saturate on, the bias requantization error). EfficientNet-Lite0 also gets the bound on the
fake-quant agreement (ONNX Runtime running the same QDQ model without its int8 kernels), a
recalibration and the saturation guard.

    python benchmarks/convert_qat.py [--out benchmarks/CONVERT.md]
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))


def predict(model, x, opt=True):
    from amct_nb.ir import make_session

    s = make_session(model, optimize=opt)
    name = s.get_inputs()[0].name
    return np.concatenate([s.run(None, {name: x[i:i + 50]})[0] for i in range(0, len(x), 50)])


def sources(tmp: Path):
    """(name, how it was made, QDQ model, eval inputs, labels or None, recalibration data or None)."""
    import models
    from test_convert import X, ort_qdq, qdq_net, torch_qat

    try:
        import imagenet_dev

        if imagenet_dev.MODEL.exists():
            from onnxruntime.quantization import QuantType

            cal, _ = imagenet_dev.load(0, 100)
            x, y = imagenet_dev.load(100, 500)
            for act, qt in (("u8", QuantType.QUInt8), ("s8", QuantType.QInt8)):
                src = ort_qdq(onnx.load(str(imagenet_dev.MODEL)), cal, tmp / f"eff{act}", per_channel=True,
                              activation_type=qt, weight_type=QuantType.QInt8)
                yield (f"efficientnet-lite0 ({act} act.)", f"ORT quantize_static, per-channel, {act} activations, "
                       "s8 weights, first 100 images", src, x, y, cal if act == "u8" else None)
    except ImportError:
        pass
    from amct_nb import zoo

    for name in ("fmnist-resnet", "fmnist-mobilenetv2"):
        zm = zoo.load(name)
        x, y = zm.test_data()
        src = ort_qdq(onnx.load(str(zm.path)), zm.calibration_data(100), tmp / name, per_channel=True)
        yield name, "ORT quantize_static, per-channel, 100 images", src, x, y, None
    rng = np.random.default_rng(7)
    img = models.images(256, (4, 16, 16), seed=11)
    yield ("conv-bn-relu", "ORT quantize_static, per-channel, s8 activations",
           ort_qdq(models.conv_bn_relu(), models.images(32, (4, 16, 16)), tmp / "cbr", per_channel=True), img, None,
           None)
    yield ("mlp-matmul", "ORT quantize_static, per-channel",
           ort_qdq(models.mlp_matmul(), rng.normal(size=(32, 32)).astype(np.float32), tmp / "mlp", per_channel=True),
           rng.normal(size=(256, 32)).astype(np.float32), None, None)
    yield ("convtranspose", "ORT quantize_static, per-channel",
           ort_qdq(models.convtranspose_model(), models.images(32, (4, 16, 16)), tmp / "ct", per_channel=True), img,
           None, None)
    try:
        import torch  # noqa: F401

        tx = rng.normal(size=(512, 3, 16, 16)).astype(np.float32)
        for opset, rr in ((13, False), (17, False), (13, True)):
            yield (f"torch-qat-opset{opset}{'-rr' if rr else ''}",
                   f"PyTorch FakeQuantize export{' (quant_max=127: Q->Clip->DQ)' if rr else ''}",
                   torch_qat(tmp / f"torch{opset}{rr}.onnx", opset, rr), tx, None, None)
    except ImportError:
        print("torch is not installed: the PyTorch fake-quant models are skipped", flush=True)
    xs = np.concatenate([X] + [models.images(16, (4, 8, 8), seed=s) for s in range(20, 35)])
    yield "synthetic int8 weights", "onnx.helper: int8 initializer -> DQ", qdq_net(), xs, None, None
    yield "synthetic float weights", "onnx.helper: float -> Q -> DQ", qdq_net(weight_form="float"), xs, None, None
    yield ("synthetic lone output Q + BN", "onnx.helper: uint8 output, BatchNormalization kept",
           qdq_net(output="q", bn=True), xs, None, None)


def measure(name, how, src, x, y, **kw) -> dict:
    from amct_nb.convert import convert_qat

    t0 = time.perf_counter()
    res = convert_qat(src, progress=False, **kw)
    secs = time.perf_counter() - t0
    conv = res.report()["conversion"]
    ref, dep, fq = predict(src, x), predict(res.deploy_model, x), predict(res.fake_quant_model, x)
    scale = float(np.abs(ref.astype(np.float64)).max()) or 1.0
    row = {
        "model": name, "source": how, "samples": len(x),
        "layers": f"{conv['qat_layers']}/{conv['qat_layers'] + len(res.float_layers)}",
        "weights_changed": conv["weights"]["values_changed"],
        "dep_max": float(np.abs(dep.astype(np.float64) - ref).max()) / scale,
        "fq_max": float(np.abs(fq.astype(np.float64) - ref).max()) / scale,
        "pairs": conv["saturation"]["pairs_over_limit"], "bias_err": conv["bias_requantization"]["max_abs_error"],
        "secs": secs,
    }
    if ref.ndim == 2 and ref.shape[1] > 1:
        row["dep_agree"] = float((dep.argmax(1) == ref.argmax(1)).mean())
        row["fq_agree"] = float((fq.argmax(1) == ref.argmax(1)).mean())
        if y is not None:
            row["acc"] = tuple(float((p.argmax(1) == y).mean()) for p in (ref, dep, fq))
    print(row, flush=True)
    return row


def _f(v, fmt="{:.4f}"):
    return "n/a" if v is None else fmt.format(v)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(HERE / "CONVERT.md"))
    args = ap.parse_args()
    rows, extra = [], []
    with tempfile.TemporaryDirectory() as d:
        for name, how, src, x, y, cal in sources(Path(d)):
            rows.append(measure(name, how, src, x, y))
            if cal is not None:
                ref, bound = predict(src, x), predict(src, x, opt=False)
                extra.append(("ORT itself: the QDQ model without its int8 kernels (ONNX float semantics)",
                              float((bound.argmax(1) == ref.argmax(1)).mean()), float((bound.argmax(1) == y).mean())))
                r = measure(name, "recalibrate=first 100 images", src, x, y, recalibrate=cal)
                extra.append(("convert_qat(recalibrate=100 images): deploy", r["dep_agree"], r["acc"][1]))
                r = measure(name, "saturation_guard='always'", src, x, y, saturation_guard="always")
                extra.append((f"convert_qat(saturation_guard='always'): deploy ({r['weights_changed']} weight values "
                              "moved)", r["dep_agree"], r["acc"][1]))
    lines = [
        "# Converting QAT / QDQ models (`convert_qat`): agreement with the source model", "",
        "Produced by `python benchmarks/convert_qat.py` "
        f"(onnxruntime {__import__('onnxruntime').__version__}, {platform.machine()}, "
        f"int8 kernels saturate here: {__import__('amct_nb.quant', fromlist=['x']).int8_saturates()}). "
        "Each source model is converted with the defaults (every QAT integer kept, no data); the deploy and "
        "fake-quant models then run on the same ONNX Runtime as the source. Agreement: share of samples whose "
        "top-1 class is the source model's; max |diff|: the largest output difference over the largest |output|. "
        "Accuracy: source / deploy / fake-quant.", "",
        "| model | source | samples | layers int8 (QAT integers) | weight values changed | deploy top-1 agreement "
        "| fake-quant top-1 agreement | deploy max \\|diff\\| | fake-quant max \\|diff\\| | accuracy | pairs a "
        "non-VNNI CPU saturates on | bias requant. max error | convert s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        acc = " / ".join(f"{a:.4f}" for a in r["acc"]) if "acc" in r else "n/a"
        lines.append(f"| {r['model']} | {r['source']} | {r['samples']} | {r['layers']} | {r['weights_changed']} | "
                     f"{_f(r.get('dep_agree'))} | {_f(r.get('fq_agree'))} | {r['dep_max']:.2e} | {r['fq_max']:.2e} | "
                     f"{acc} | {r['pairs']} | {r['bias_err']:.2e} | {r['secs']:.2f} |")
    if extra:
        lines += ["", "EfficientNet-Lite0 (u8 activations), the same 400 images:", "",
                  "| variant | top-1 agreement with the source (int8 kernels) | accuracy |", "|---|---|---|"]
        lines += [f"| {v} | {a:.4f} | {acc:.4f} |" for v, a, acc in extra]
    open(args.out, "w").write("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
