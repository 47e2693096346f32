"""PTQ of EfficientNet-Lite0: amct-nb vs ONNX Runtime's quantize_static, side by side.

Calibrate on the first 100 dev images, evaluate on the other 400. Each calibration runs in its own
process, so its wall time and peak RSS (the whole process, including loading the 100 images) are
its own. Latency: deploy model vs fp32 at batch 32 with 2 threads, runs interleaved, medians.

    python benchmarks/ptq_efficientnet.py [--quick] [--out benchmarks/RESULTS.md]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import imagenet_dev  # noqa: E402

N_CAL = 100


def peak_rss_gb() -> float:
    """This process's peak resident set (VmHWM; unlike ru_maxrss it does not carry over the
    parent's peak across fork+exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024 / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 / 1024


def worker(tool: str, algo: str, out: str) -> None:
    """Runs in a child process: calibrate and write the model(s); prints a JSON line."""
    t0 = time.perf_counter()
    x, _ = imagenet_dev.load(0, N_CAL)
    t_load = time.perf_counter() - t0
    t1 = time.perf_counter()
    info = {}
    if tool == "ort":
        from onnxruntime.quantization import (
            CalibrationDataReader,
            CalibrationMethod,
            QuantFormat,
            QuantType,
            quantize_static,
        )

        class Reader(CalibrationDataReader):
            def __init__(self):
                self.i = 0

            def get_next(self):
                if self.i >= len(x):
                    return None
                self.i += 10
                return {"input": x[self.i - 10 : self.i]}

        quantize_static(str(imagenet_dev.MODEL), out + "_deploy_model.onnx", Reader(), quant_format=QuantFormat.QDQ,
                        per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=getattr(CalibrationMethod, algo))
    else:
        import amct_nb as an

        cfg = an.QuantConfig()
        cfg.default.act_algo = algo
        res = an.quantize(str(imagenet_dev.MODEL), x, cfg, progress=False)
        res.save(os.path.dirname(out), prefix=os.path.basename(out))
        info = {"guard": res.guard, "pairs_adjusted": res.plan.pairs_fixed}
    wall = time.perf_counter() - t1
    rss = peak_rss_gb()
    print(json.dumps({"wall": wall, "load": t_load, "rss_gb": rss, **info}))


def run_worker(tool, algo, out):
    r = subprocess.run([sys.executable, __file__, "--worker", tool, algo, out], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"{tool}/{algo} failed:\n{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def session(path, threads=None, optimize=True):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    if threads:
        so.intra_op_num_threads = threads
    if not optimize:
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def predict(path, x, optimize=True):
    s = session(path, optimize=optimize)
    return np.concatenate([s.run(None, {"input": x[i : i + 50]})[0] for i in range(0, len(x), 50)])


def latency(paths: dict, x, rounds=7):
    sess = {k: session(p, threads=2) for k, p in paths.items()}
    xb = x[:32]
    for s in sess.values():
        for _ in range(2):
            s.run(None, {"input": xb})
    times = {k: [] for k in sess}
    for _ in range(rounds):
        for k, s in sess.items():
            t = time.perf_counter()
            s.run(None, {"input": xb})
            times[k].append(time.perf_counter() - t)
    return {k: float(np.median(v)) for k, v in times.items()}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--worker", nargs=3)
    ap.add_argument("--quick", action="store_true", help="only amct-nb mse and ORT MinMax")
    ap.add_argument("--out", default=str(HERE / "RESULTS.md"))
    args = ap.parse_args()
    if args.worker:
        worker(*args.worker)
        return
    from amct_nb.quant import platform_report

    x_eval, y_eval = imagenet_dev.load(N_CAL, 500)
    fp = predict(imagenet_dev.MODEL, x_eval)
    ref = fp.argmax(1)
    fp_top1 = float((ref == y_eval).mean())
    runs = [("amct-nb", "mse"), ("ort", "MinMax")]
    if not args.quick:
        runs = ([("amct-nb", a) for a in ("mse", "entropy", "percentile", "minmax")]
                + [("ort", a) for a in ("MinMax", "Entropy", "Percentile")])
    rows, deploy_paths = [], {}
    with tempfile.TemporaryDirectory() as d:
        for tool, algo in runs:
            out = os.path.join(d, f"{tool}_{algo}")
            info = run_worker("ort" if tool == "ort" else "ours", algo, out)
            dep = out + "_deploy_model.onnx"
            pd = predict(dep, x_eval).argmax(1)
            row = {"tool": tool, "algo": algo, "agree": float((pd == ref).mean()), "top1": float((pd == y_eval).mean()),
                   **info}
            row["drop_pt"] = 100 * (fp_top1 - row["top1"])
            if tool == "amct-nb":
                pf = predict(out + "_fake_quant_model.onnx", x_eval).argmax(1)
                row["fake_vs_deploy"] = float((pf == pd).mean())
                row["fake_agree"] = float((pf == ref).mean())
            else:
                pn = predict(dep, x_eval, optimize=False).argmax(1)  # ORT's own simulation: QDQ in float
                row["fake_vs_deploy"] = float((pn == pd).mean())
                row["fake_agree"] = float((pn == ref).mean())
            rows.append(row)
            print(json.dumps(row), flush=True)
            if algo in ("mse", "MinMax"):
                deploy_paths[f"{tool} {algo}"] = dep
        lat = latency({"fp32": imagenet_dev.MODEL, **deploy_paths}, x_eval)
    plat = platform_report()
    lines = [
        "# Benchmark: EfficientNet-Lite0 PTQ, amct-nb vs ONNX Runtime quantize_static",
        "",
        f"Produced by `python benchmarks/ptq_efficientnet.py` on {time.strftime('%Y-%m-%d')}; "
        f"onnxruntime {plat['onnxruntime']}; int8 kernels saturate on this CPU: {plat['int8_saturates']}. "
        f"Calibration: first {N_CAL} dev images; evaluation: the other {len(y_eval)}. fp32 top-1: {fp_top1:.4f}.",
        "",
        "| tool | range algo | top-1 agreement with fp32 | top-1 | drop (pt) | simulated agreement "
        "| simulated vs deploy top-1 agreement | calibration wall (s) | peak RSS (GB) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['tool']} | {r['algo']} | {r['agree']:.4f} | {r['top1']:.4f} | {r['drop_pt']:+.2f} "
                     f"| {r['fake_agree']:.4f} | {r['fake_vs_deploy']:.4f} | {r['wall']:.1f} | {r['rss_gb']:.2f} |")
    lines += [
        "",
        "Simulated: amct-nb's fake-quant model; for ORT, its QDQ model run with graph optimizations off.",
        "Wall time and RSS are the calibrating process's (image loading included in RSS, excluded from wall).",
        "",
        "Latency at batch 32, 2 threads (median of interleaved runs):",
        "",
        "| model | ms | ratio to fp32 |",
        "|---|---|---|",
    ]
    for k, v in lat.items():
        lines.append(f"| {k} | {v * 1000:.1f} | {v / lat['fp32']:.3f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
