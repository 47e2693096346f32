"""QAT on a GPU against the same run on the CPU (the GPU check of a session that was lent a device machine).

    python benchmarks/qat_gpu.py [--fmnist DIR] [--steps 300] [--out benchmarks/QAT_GPU.md]

Fashion-MNIST (Debian's ``dataset-fashion-mnist``, or its four IDX files copied to ``--fmnist``): each run
trains the zoo's ResNet-style and MobileNetV2-style models from their PTQ result, ``--steps`` steps at
batch 128, SGD lr 1e-3, on 20,000 training images, once with ``device="cpu"`` and once with ``device="cuda"``
(one process each; the CPU run uses every core torch sees). Top-1 of each deploy model as written, in ONNX
Runtime on the CPU, on the 10,000 test images; wall time of :func:`amct_nb.qat.retrain` (calibration, training,
export). Nothing here runs without a GPU: the script says so and stops.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from benchmarks.qat import load, top1  # noqa: E402

RUNS = [("fmnist-resnet", True), ("fmnist-resnet", False), ("fmnist-mobilenetv2", False)]  # model, per tensor


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--fmnist", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--out", default=str(HERE / "QAT_GPU.md"))
    args = ap.parse_args(argv)
    import torch

    from amct_nb import AmctError, zoo
    from amct_nb.qat import retrain

    if not torch.cuda.is_available():
        print("torch sees no GPU: nothing to compare", file=sys.stderr)
        return 2
    folder = Path(args.fmnist)
    x, y = load("train", 20000, folder)
    xe, ye = load("t10k", 10000, folder)
    gpu = torch.cuda.get_device_name(0)
    out = ["# QAT on a GPU vs the CPU (Fashion-MNIST)", "",
           f"Produced by `python benchmarks/qat_gpu.py --steps {args.steps}` (setup in its docstring) on {gpu}, "
           f"{torch.get_num_threads()} CPU threads, torch {torch.__version__}, Python {platform.python_version()}. "
           f"{args.steps} steps at batch 128; top-1 of the deploy model in ONNX Runtime (CPU) on 10,000 test images.",
           "", "| model | weights | fp32 | PTQ | QAT on CPU | QAT on GPU | GPU - CPU (pt) | fake-quant = deploy (GPU) "
           "| CPU (s) | GPU (s) | speed-up |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, per_tensor in RUNS:
        zm = zoo.load(name)
        row, failed = {}, []
        for dev in ("cpu", "cuda"):
            t = time.perf_counter()
            try:
                res = retrain(str(zm.path), x, labels=y, per_tensor=per_tensor, steps=args.steps, batch_size=128,
                              lr=1e-3, progress=False, device=dev)
            except AmctError as e:  # reported in the table, not hidden
                failed.append(f"{dev}: {e}")
                continue
            row[dev] = (res, time.perf_counter() - t)
        if failed:
            out.append(f"| {name} | {'per-tensor' if per_tensor else 'per-channel'} | failed: "
                       f"{'; '.join(failed)[:300]} |||||||||")
            print(out[-1], flush=True)
            continue
        res_gpu = row["cuda"][0]
        fp, ptq = top1(res_gpu.ptq.prepared.original, xe, ye), top1(res_gpu.ptq.deploy_model, xe, ye)
        qc, qg = top1(row["cpu"][0].result.deploy_model, xe, ye), top1(res_gpu.result.deploy_model, xe, ye)
        from amct_nb.ir import make_session

        d, f = make_session(res_gpu.result.deploy_model), make_session(res_gpu.result.fake_quant_model)
        n = d.get_inputs()[0].name
        agree = float(np.mean(d.run(None, {n: xe[:2000]})[0].argmax(1) == f.run(None, {n: xe[:2000]})[0].argmax(1)))
        tc, tg = row["cpu"][1], row["cuda"][1]
        out.append(f"| {name} | {'per-tensor' if per_tensor else 'per-channel'} | {fp:.4f} | {ptq:.4f} | {qc:.4f} | "
                   f"{qg:.4f} | {100 * (qg - qc):+.2f} | {agree:.4f} | {tc:.1f} | {tg:.1f} | {tc / tg:.2f} |")
        print(out[-1], flush=True)
    Path(args.out).write_text("\n".join(out) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
