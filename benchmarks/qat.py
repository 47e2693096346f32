"""Quantization-aware training on Fashion-MNIST: PTQ vs QAT per setting, step time vs float training, 2 processes.

    python benchmarks/qat.py [--quick] [--only NAME:WEIGHTS ...] [--weight-lr LR] [--bn-freeze-steps N]
                             [--out benchmarks/QAT.md]

Debian's ``dataset-fashion-mnist``: QAT trains 1 epoch on the 60,000 training images (``--quick``: 10,000)
at batch 128, SGD lr 1e-3, from the PTQ result (256 calibration images), default saturation guard
(``always``); top-1 of the deploy model as written, in ONNX Runtime, on the 10,000 test images. Step time:
median of 20 steps of the QAT model vs the same graph trained in float (same batch, same optimizer).
Distributed: the ResNet-style per-tensor run again with ``--nproc 2`` (torchrun, gloo, one thread each)
against one process with one thread, at the same global batch, 300 steps.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
F = Path("/usr/share/datasets/fashion-mnist")
RUNS = [  # model, per-tensor, weight bits
    ("fmnist-resnet", False, 8), ("fmnist-resnet", True, 8), ("fmnist-resnet", True, 4),
    ("fmnist-mobilenetv2", False, 8), ("fmnist-mobilenetv2", True, 8), ("fmnist-mobilenetv2", False, 4),
]


def load(split: str, n: int, folder: Path = F):
    from amct_nb.data import IDXDataset, preset

    ds = IDXDataset(folder / f"{split}-images-idx3-ubyte.gz", folder / f"{split}-labels-idx1-ubyte.gz",
                    preset("fashion-mnist"))
    return np.stack([ds[i][None] for i in range(n)]).astype(np.float32), np.asarray(ds.labels[:n])


def top1(model, x, y) -> float:
    from amct_nb.ir import make_session

    s = make_session(model)
    n = s.get_inputs()[0].name
    pred = np.concatenate([s.run(None, {n: x[i:i + 1000]})[0].argmax(1) for i in range(0, len(x), 1000)])
    return float((pred == y).mean())


def step_times(ptq, x, y, steps: int = 20) -> tuple[float, float]:
    """Median seconds per optimizer step: (QAT model, the float graph)."""
    import torch
    import torch.nn.functional as fn

    from amct_nb.qat import QatModel, TorchGraph

    out = []
    for net in (QatModel(ptq), TorchGraph(ptq.prepared.model)):
        opt = torch.optim.SGD(net.parameters(), lr=1e-3, momentum=0.9)
        ts = []
        for i in range(steps):
            xb, yb = torch.from_numpy(x[i * 128:(i + 1) * 128]), torch.from_numpy(y[i * 128:(i + 1) * 128])
            t = time.perf_counter()
            loss = fn.cross_entropy(net(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            ts.append(time.perf_counter() - t)
        out.append(float(np.median(ts[3:])))
    return out[0], out[1]


def distributed(x, y, xe, ye, tmp: Path) -> list[str]:
    np.savez(tmp / "train.npz", x=x[:300 * 128], y=y[:300 * 128])
    from amct_nb import zoo

    model = str(zoo.load("fmnist-resnet").path)
    rows = []
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(HERE.parent)}
    import onnx

    for n in (1, 2):
        t = time.perf_counter()
        r = subprocess.run([sys.executable, "-m", "amct_nb.cli", "retrain", model, "--data", str(tmp / "train.npz"),
                            "--output", str(tmp / f"d{n}"), "--per-tensor", "--batch-size", "128", "--steps", "300",
                            "--nproc", str(n), "--quiet"], env=env, capture_output=True, text=True)
        secs = time.perf_counter() - t
        if r.returncode:
            raise SystemExit(r.stderr[-2000:])
        acc = top1(onnx.load(tmp / f"d{n}" / "fmnist_resnet_deploy_model.onnx"), xe, ye)
        rows.append((n, acc, secs))
    base = rows[0][2]
    return [f"| {n} | {acc:.4f} | {secs:.0f} | {secs / base:.2f} |" for n, acc, secs in rows]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--no-distributed", action="store_true")
    ap.add_argument("--only", nargs="+", help="runs to do, e.g. fmnist-resnet:8c fmnist-resnet:4t (bits, c/t: per "
                                              "channel/tensor)")
    ap.add_argument("--weight-lr", type=float, help="learning rate of the weights (default: the grids' 1e-3)")
    ap.add_argument("--bn-freeze-steps", type=int, default=0, help="BatchNorm trains with batch statistics for N "
                                                                     "steps (default 0: folded from the start)")
    ap.add_argument("--out", default=str(HERE / "QAT.md"))
    args = ap.parse_args(argv)
    import torch

    import amct_nb as an
    from amct_nb import zoo
    from amct_nb.qat import retrain

    torch.set_num_threads(2)
    x, y = load("train", 10000 if args.quick else 60000)
    xe, ye = load("t10k", 10000)
    out = ["# Quantization-aware training (Fashion-MNIST)", "",
           f"Produced by `python benchmarks/qat.py{' --quick' if args.quick else ''}"
           f"{' --only ' + ' '.join(args.only) if args.only else ''}"
           f"{f' --weight-lr {args.weight_lr}' if args.weight_lr else ''}"
           f"{f' --bn-freeze-steps {args.bn_freeze_steps}' if args.bn_freeze_steps else ''}` (setup in its docstring). "
           f"{len(x)} training images, 1 epoch at batch 128; top-1 on 10,000 test images; deploy model as written "
           "(saturation guard `always`).", "",
           "| model | weights | fp32 | PTQ | QAT | QAT - fp32 (pt) | fake-quant = deploy | train (s) | QAT step (ms) "
           "| float step (ms) | ratio |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, per_tensor, bits in RUNS:
        if args.only and f"{name}:{bits}{'t' if per_tensor else 'c'}" not in args.only:
            continue
        zm = zoo.load(name)
        t = time.perf_counter()
        res = retrain(str(zm.path), x, labels=y, per_tensor=per_tensor, weight_bits=bits, epochs=1, batch_size=128,
                      lr=1e-3, weight_lr=args.weight_lr, bn_freeze_steps=args.bn_freeze_steps, progress=False)
        secs = time.perf_counter() - t
        fp, ptq = top1(res.ptq.prepared.original, xe, ye), top1(res.ptq.deploy_model, xe, ye)
        q = top1(res.result.deploy_model, xe, ye)
        s = an.ir.make_session(res.result.deploy_model)
        fq = an.ir.make_session(res.result.fake_quant_model)
        agree = float(np.mean(s.run(None, {"input": xe[:2000]})[0].argmax(1)
                              == fq.run(None, {"input": xe[:2000]})[0].argmax(1)))
        tq, tf = step_times(res.ptq, x, y)
        label = f"{bits}-bit {'per-tensor' if per_tensor else 'per-channel'}"
        out.append(f"| {name} | {label} | {fp:.4f} | {ptq:.4f} | {q:.4f} | {100 * (q - fp):+.2f} | {agree:.4f} | "
                   f"{secs:.0f} | {1e3 * tq:.0f} | {1e3 * tf:.0f} | {tq / tf:.2f} |")
        print(out[-1], flush=True)
    if not args.no_distributed:
        with tempfile.TemporaryDirectory() as tmp:
            out += ["", "Two processes (torchrun, gloo, 1 thread each) vs one process with 1 thread, ResNet-style "
                    "per-tensor, 300 steps at global batch 128:", "",
                    "| processes | top-1 | wall (s) | time vs 1 process |", "|---|---|---|---|",
                    *distributed(x, y, xe, ye, Path(tmp))]
            print("\n".join(out[-2:]), flush=True)
    Path(args.out).write_text("\n".join(out) + "\n")
    print(f"wrote {args.out}")
    if Path(args.out) == HERE / "QAT.md":
        results_section(Path(args.out))
    return 0


def results_section(src: Path) -> None:
    """Copy ``src`` (QAT.md as this script wrote it) into benchmarks/RESULTS.md between ``<!-- qat -->`` marks."""
    res, mark = HERE / "RESULTS.md", "<!-- qat -->"
    text = res.read_text() if res.exists() else ""
    section = "\n".join([mark, src.read_text().rstrip("\n"), "",
                         "BatchNorm trained for the first steps: benchmarks/QAT_BN.md; label-free EfficientNet-Lite0: "
                         "benchmarks/QAT_EFFICIENTNET.md, QAT_EFFICIENTNET_FLIP.md.", mark])
    if mark in text:
        a, _, rest = text.partition(mark)
        text = a + section + rest.partition(mark)[2]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    res.write_text(text)


if __name__ == "__main__":
    sys.exit(main())
