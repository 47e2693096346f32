"""What each saturation guard costs: deploy-model accuracy and speed, in every weight mode.

x86 CPUs without VNNI saturate ONNX Runtime's u8 x s8 int8 kernels; a guard keeps the deploy model exact
there (tests/test_saturation.py runs it on an emulated Haswell). This script measures what each guard
costs on the machine it runs on, for int8 per-channel, int8 per-tensor, 4-bit and NUQ weights and after
QAT, on the two zoo models (Fashion-MNIST, 500 test images) and EfficientNet-Lite0 (400 dev images):

* ``off``: no guard (exact only on CPUs with VNNI);
* ``always`` (default): layers whose weight pairs could saturate store uint8 ``q + 128`` with zero point 128
  (the same integers, run by ONNX Runtime's u8 x u8 kernels);
* ``pairs``: int8 weights whose offending adjacent pairs are moved to |a|+|b| = 128 (the previous default);
* ``reduce_range``: 7-bit weights (ONNX Runtime's own remedy).

Accuracy is the deploy model's top-1 on this CPU; with ``--qemu`` the EfficientNet per-tensor deploy
models also run on an emulated CPU without VNNI (qemu-user, Haswell), to show which stay exact there.
Speed: median latency of one image, one thread, all guards interleaved in one loop.

    python benchmarks/guard_cost.py [--out benchmarks/GUARD.md] [--qemu] [--only NAME ...]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
import onnx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
from compare_ranges import datasets, predict  # noqa: E402

GUARDS = ("off", "always", "pairs", "reduce_range")
FMNIST = Path("/usr/share/datasets/fashion-mnist")


def weight_modes(an):
    """(label, LayerConfig kwargs) of the weight settings measured."""
    return [
        ("int8 per channel", {}),
        ("int8 per tensor", {"channel_wise": False}),
        ("4-bit per channel", {"wts_bits": 4}),
        ("NUQ 16 levels per channel", {"wts_algo": "nuq_quantize", "num_steps": 16}),
    ]


def latency(models: dict, x: np.ndarray, reps: int = 30) -> dict:
    """Median ms of one image per model, one thread, interleaved."""
    from amct_nb.ir import make_session

    sess = {k: make_session(m, threads=1) for k, m in models.items()}
    feed = {k: {s.get_inputs()[0].name: x[:1]} for k, s in sess.items()}
    for k, s in sess.items():
        s.run(None, feed[k])
    times = {k: [] for k in sess}
    for _ in range(reps):
        for k, s in sess.items():
            t = time.perf_counter()
            s.run(None, feed[k])
            times[k].append(time.perf_counter() - t)
    return {k: 1000 * float(np.median(v)) for k, v in times.items()}


def qemu_agreement(models: dict, x: np.ndarray) -> dict | None:
    """Each deploy model on an emulated CPU without VNNI against the same model on this machine:
    [top-1 agreement, max |difference| / max |output|]. Exact guards give the same outputs there."""
    qemu = shutil.which("qemu-x86_64")
    if qemu is None:
        return None
    from amct_nb.ir import make_session

    with tempfile.TemporaryDirectory() as d:
        np.save(Path(d) / "x.npy", x)
        for k, dep in models.items():
            onnx.save(dep, Path(d) / f"{k}.onnx")
        script = textwrap.dedent(f"""
            import json, numpy as np, onnxruntime as ort
            from amct_nb.quant import platform_report
            x = np.load(r"{d}/x.npy")
            for k in {list(models)!r}:
                s = ort.InferenceSession(r"{d}/" + k + ".onnx", providers=["CPUExecutionProvider"])
                np.save(r"{d}/" + k + "_out.npy", np.concatenate([s.run(None, {{s.get_inputs()[0].name: x[i:i + 8]}})[0]
                                                          for i in range(0, len(x), 8)]))
            print(json.dumps(platform_report()))
        """)
        r = subprocess.run([qemu, "-cpu", "Haswell", sys.executable, "-c", script], capture_output=True, text=True,
                           env={**os.environ, "PYTHONWARNINGS": "ignore"})
        if r.returncode != 0:
            raise RuntimeError(r.stderr[-2000:])
        out = {"platform": json.loads(r.stdout.strip().splitlines()[-1])}
        for k, dep in models.items():
            s = make_session(dep)
            here = np.concatenate([s.run(None, {s.get_inputs()[0].name: x[i:i + 8]})[0] for i in range(0, len(x), 8)])
            there = np.load(Path(d) / f"{k}_out.npy")
            out[k] = [float((here.argmax(1) == there.argmax(1)).mean()),
                      float(np.abs(here - there).max() / np.abs(here).max())]
    return out


def qat_rows(an, rows):
    """Per-tensor int8 QAT of the ResNet-style model (1 epoch of 4,000 images) under each guard."""
    if not (FMNIST / "train-images-idx3-ubyte.gz").exists():
        print("Fashion-MNIST not installed (apt-get install dataset-fashion-mnist): no QAT rows")
        return
    from amct_nb import zoo
    from amct_nb.data import IDXDataset, preset
    from amct_nb.qat import retrain

    def load(split, n):
        ds = IDXDataset(FMNIST / f"{split}-images-idx3-ubyte.gz", FMNIST / f"{split}-labels-idx1-ubyte.gz",
                        preset("fashion-mnist"))
        return np.stack([ds[i][None] for i in range(n)]).astype(np.float32), np.asarray(ds.labels[:n])

    (x, y), (xe, ye) = load("train", 4000), load("t10k", 1000)
    zm = zoo.load("fmnist-resnet")
    ref = predict(onnx.load(str(zm.path)), xe)
    for guard in GUARDS:
        cfg = an.QuantConfig(saturation_guard=guard, min_output_sqnr_db=None)
        res = retrain(str(zm.path), x, labels=y, per_tensor=True, config=cfg, epochs=1, batch_size=64, lr=1e-3,
                      progress=False)
        p = predict(res.result.deploy_model, xe)
        rows.append(("fmnist-resnet (1,000 test images)", "QAT, int8 per tensor", guard, float((p == ye).mean()),
                     float((p == ref).mean()), len(res.result.plan.uint8_layers), res.result.plan.pairs_fixed, None,
                     None, f"{len(res.result.plan.layers)} / {len(res.result.plan.float_layers)}"))
        print(rows[-1], flush=True)


def main():
    import amct_nb as an

    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(HERE / "GUARD.md"))
    ap.add_argument("--qemu", action="store_true", help="also run EfficientNet's per-tensor models on an emulated "
                                                        "Haswell (slow)")
    ap.add_argument("--only", nargs="*", help="model names to run (default: all); 'qat' for the QAT rows")
    args = ap.parse_args()
    rows, emu = [], {}
    from amct_nb.quant import platform_report

    for name, path, cal, x, y in datasets():
        if args.only and name not in args.only:
            continue
        ref = predict(onnx.load(path), x)
        prepared = an.prepare(path)
        stats = an.collect_stats(prepared, cal, progress=False, channel_moments=True)
        for label, lc in weight_modes(an):
            built = {}
            for guard in GUARDS:
                if guard == "reduce_range" and lc.get("wts_algo") == "nuq_quantize":
                    continue  # refused: non-uniform levels on a 7-bit grid
                if guard == "reduce_range" and lc.get("wts_bits") == 4:
                    continue  # 4-bit weights cannot saturate: reduce_range would only cost a bit
                cfg = an.QuantConfig(saturation_guard=guard, default=an.LayerConfig(**lc))
                res = an.build(prepared, cfg, stats)
                built[guard] = res
                p = predict(res.deploy_model, x)
                pf = predict(res.fake_quant_model, x)
                rows.append([name, label, guard, float((p == y).mean()), float((p == ref).mean()),
                             len(res.plan.uint8_layers), res.plan.pairs_fixed, None, float((p == pf).mean()),
                             f"{len(res.plan.layers)} / {len(res.plan.float_layers)}"])
                print(rows[-1], flush=True)
            ms = latency({g: r.deploy_model for g, r in built.items()}, x)
            for r in rows:
                if r[0] == name and r[1] == label and r[2] in ms:
                    r[7] = ms[r[2]]
            if args.qemu and name == "efficientnet-lite0" and label == "int8 per tensor":
                emu = qemu_agreement({g: r.deploy_model for g, r in built.items()}, x[:16]) or {}
                print(emu, flush=True)
    if not args.only or "qat" in args.only:
        qat_rows(an, rows)
    plat = platform_report()
    lines = ["# What the saturation guard costs", "",
             f"Produced by `python benchmarks/guard_cost.py{' --qemu' if args.qemu else ''}` on this machine "
             f"(onnxruntime {plat['onnxruntime']}, int8 kernels saturate here: {plat['int8_saturates']}). "
             "Top-1 of the deploy model as ONNX Runtime runs it here; agreement = same top-1 as the fp32 model; "
             "latency = median ms of one image, one thread, the guards of a row group interleaved. `auto` gives "
             "`off` on a CPU that does not saturate and `always` on one that does. Fashion-MNIST models: 500 test "
             "images; EfficientNet-Lite0: dev images 100-499, calibrated on 0-99. Default config otherwise: the safety "
             "net's output check (15 dB) leaves layers float where a guard hurts, which the int8 / float column shows.",
             "",
             "| model | weights | guard | int8 / float layers | top-1 | agreement with fp32 | layers stored uint8 "
             "| weight pairs moved | latency ms | deploy = fake-quant top-1 |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lat = "" if r[7] is None else f"{r[7]:.2f}"
        same = "" if r[8] is None else f"{r[8]:.4f}"
        lines.append(f"| {r[0]} | {r[1]} | {r[2]} | {r[9]} | {r[3]:.4f} | {r[4]:.4f} | {r[5]} | {r[6]} | {lat} "
                     f"| {same} |")
    if emu:
        lines += ["", "The same EfficientNet-Lite0 int8 per-tensor deploy models on an emulated CPU without VNNI "
                  f"(qemu-user `-cpu Haswell`; its probe: {emu.get('platform')}) against this machine, 16 dev images "
                  "(exact guards compute the same there):", "",
                  "| guard | top-1 agreement | max output difference / max output |", "|---|---|---|"]
        lines += [f"| {k} | {v[0]:.4f} | {v[1]:.2g} |" for k, v in emu.items() if k != "platform"]
    text = "\n".join(lines) + "\n"
    print(text)
    Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
