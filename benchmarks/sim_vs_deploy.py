"""Fake-quant vs deploy on EfficientNet-Lite0: does the simulation compute what ONNX Runtime's int8 kernels do?

    python benchmarks/sim_vs_deploy.py [--detail 40] [--qat EPOCHS] [--out benchmarks/SIM_VS_DEPLOY.md]

Calibration on dev images 0-99 (``amct_nb.build`` with ``QuantConfig()``; per-tensor weights:
``channel_wise=False``; and per-tensor weights without the weight-only fallback, so that the layers the
safety net leaves float keep float weights and ONNX Runtime quantizes them itself; ``--qat``: also a model
after label-free QAT, per-tensor weights, as benchmarks/qat_efficientnet.py trains it). For each config:
top-1 agreement between the fake-quant model and the deploy model (ONNX Runtime, all graph
optimizations, x86 int8 kernels) on the held-out images 100-499 and on all 500, for the fake-quant
model with and without the emulation of ONNX Runtime's kernels (``build_fake_quant(...,
emulate_ort=False)``: the writer before it). Then, on ``--detail`` held-out images, per op type that
produces a quantized tensor: how many of its integers differ from the deploy model's, and by how many
steps, when the whole fake-quant model runs ("run": differences carried over from earlier layers
included) and when each op reads the deploy model's own integers ("local": the op's own error).
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]  # this checkout's amct_nb, not an installed one
import imagenet_dev  # noqa: E402

N_CAL = 100

#: The differences left, as measured (the table above shows them).
NOTE = (
    "What is left (per tensor with the weight-only fallback): the weight-only layers at the start of the network "
    "read a float tensor, so they run in float in both models, but ONNX Runtime convolves a weight behind a "
    "DequantizeLinear (deploy) with other kernels than a float constant (fake-quant): their float sums round "
    "differently (\"Conv (float layer)\", local 7e-6), and the flipped integers travel on. The quantized Conv whose "
    "output stays float (the head, before ReduceMean -> Reshape) is the same kind of difference. Neither is "
    "emulated (see the docstring of amct_nb/export/fake_quant.py)."
)

CONFIGS = {
    "per-channel (QuantConfig())": {},
    "per-tensor (channel_wise=False)": {"channel_wise": False},
    "per-tensor, no weight-only fallback": {"channel_wise": False, "weight_only_fallback": False},
}


def config(changes):
    import amct_nb as an

    cfg = an.QuantConfig()
    for k, v in changes.items():
        setattr(cfg.default if k == "channel_wise" else cfg, k, v)
    return cfg


def session(model, outputs=None, inputs=None):
    """ONNX Runtime session (all optimizations) that also returns ``outputs`` {name: elem type} and reads
    ``inputs`` (names, float) as extra graph inputs."""
    import onnxruntime as ort

    m = onnx.ModelProto()
    m.CopyFrom(model)
    for name, et in (outputs or {}).items():
        m.graph.output.append(helper.make_tensor_value_info(name, et, None))
    for name in inputs or ():
        m.graph.input.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, None))
    so = ort.SessionOptions()
    so.log_severity_level = 3
    return ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])


def predict(model, x, batch=50):
    s = session(model)
    return np.concatenate([s.run(None, {"input": x[i:i + batch]})[0] for i in range(0, len(x), batch)])


def op_kinds(res) -> dict[str, str]:
    """Quantized tensor -> the kind of op that writes it (Relu/Clip skipped), as the deploy model runs it."""
    from amct_nb.export.fake_quant import ort_requantized_layers
    from amct_nb.ir import GraphIndex, attr

    idx = GraphIndex(res.prepared.model.graph)
    by_ort = ort_requantized_layers(idx, res.plan)
    kinds = {}
    for t in res.plan.tensors:
        node = idx.producer.get(t)
        while node is not None and node.op_type in ("Relu", "Clip"):
            node = idx.producer.get(node.input[0])
        if node is None:
            kinds[t] = "graph input"
            continue
        kind = node.op_type
        if kind == "Conv" and int(attr(node, "group", 1)) > 1:
            kind = "Conv depthwise"
        if node.op_type in ("Conv", "Gemm", "MatMul", "ConvTranspose"):
            kind += (" (int8 layer)" if node.name in res.plan.layers else
                     " (float layer, ORT runs int8)" if node.name in by_ort else " (float layer)")
        kinds[t] = kind
    return kinds


def teacher_forced(fq: onnx.ModelProto, tensors) -> onnx.ModelProto:
    """The fake-quant model with each grid's integers ``{t}_fq_q`` read from a graph input of that name (the
    deploy model's integers); what the grid computes comes out as ``{t}_fq_q_local``."""
    m = onnx.ModelProto()
    m.CopyFrom(fq)
    for n in m.graph.node:
        for i, o in enumerate(n.output):
            if o.endswith("_fq_q") and o[:-5] in tensors:
                n.output[i] = o + "_local"
    return m


def detail(res, x, emulate: bool) -> dict[str, dict]:
    """Per op kind: integers compared, how many differ, max / mean |difference| (steps), run and local."""
    from amct_nb.export import build_fake_quant

    ts = list(res.plan.tensors)
    et = TensorProto.UINT8 if res.config.activation_dtype == "uint8" else TensorProto.INT8
    fq = build_fake_quant(res.prepared.model, res.plan, emulate_ort=emulate)
    ds = session(res.deploy_model, {f"{t}_QuantizeLinear_Output": et for t in ts})
    fs = session(fq, {f"{t}_fq_q": TensorProto.FLOAT for t in ts})
    ls = session(teacher_forced(fq, ts), {f"{t}_fq_q_local": TensorProto.FLOAT for t in ts},
                 inputs=[f"{t}_fq_q" for t in ts])
    nd, nf, nl = len(res.deploy_model.graph.output), len(fq.graph.output), len(fq.graph.output)
    kinds = op_kinds(res)
    acc = defaultdict(lambda: np.zeros(7))  # values, run: differ, max, sum; local: differ, max, sum
    for i in range(0, len(x), 10):
        feed = {"input": x[i:i + 10]}
        d = ds.run(None, feed)[nd:]
        f = fs.run(None, feed)[nf:]
        loc = ls.run(None, {**feed, **{f"{t}_fq_q": d[j].astype(np.float32) for j, t in enumerate(ts)}})[nl:]
        for j, t in enumerate(ts):
            dj = d[j].astype(np.float32)
            run, local = np.abs(dj - f[j]), np.abs(dj - loc[j])
            a = acc[kinds[t]]
            a += [dj.size, (run > 0).sum(), 0, run.sum(), (local > 0).sum(), 0, local.sum()]
            a[2], a[5] = max(a[2], run.max()), max(a[5], local.max())
    return dict(acc)


def qat_result(x, epochs: int):
    """The QatResult's quantized result after label-free QAT as in benchmarks/qat_efficientnet.py (per-tensor
    weights, stem float), trained on ``x``."""
    import torch

    import amct_nb as an
    from amct_nb.qat import retrain

    torch.set_num_threads(2)
    stem = an.prepare(str(imagenet_dev.MODEL)).layers[0].name
    cfg = an.QuantConfig(min_output_sqnr_db=None, skip_layers=[stem])
    cfg.default.channel_wise = False
    return retrain(str(imagenet_dev.MODEL), x, distill=True, config=cfg, epochs=epochs, batch_size=16, lr=5e-4,
                   weight_lr=5e-5, calibration_samples=len(x), progress=False).result


def sqnr(y, ref) -> float:
    return float(10 * np.log10((ref.astype(np.float64) ** 2).sum() / ((y - ref).astype(np.float64) ** 2).sum()))


def agreement(a, b) -> float:
    return float((a.argmax(1) == b.argmax(1)).mean())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--detail", type=int, default=40, help="held-out images for the per-op-type table")
    ap.add_argument("--qat", type=int, default=0, metavar="EPOCHS",
                    help="also a QAT model (label-free distillation on the calibration images; torch extra)")
    ap.add_argument("--out", default=str(HERE / "SIM_VS_DEPLOY.md"))
    args = ap.parse_args(argv)
    import onnxruntime as ort

    import amct_nb as an
    from amct_nb.export import build_fake_quant
    from amct_nb.export.fake_quant import ort_requantized_layers
    from amct_nb.ir import GraphIndex

    t0 = time.perf_counter()
    x, _ = imagenet_dev.load(0, 500)
    prep = an.prepare(str(imagenet_dev.MODEL))
    stats = an.collect_stats(prep, x[:N_CAL], progress=False)
    held = slice(N_CAL, None)
    fp = predict(onnx.load(str(imagenet_dev.MODEL)), x)
    rows, tables, guards = [], [], set()
    for name, changes in [*CONFIGS.items(), *([("qat", {})] if args.qat else [])]:
        if name == "qat":
            res = qat_result(x[:N_CAL], args.qat)
            name = f"QAT, per-tensor, stem float ({args.qat} epochs on images 0-{N_CAL - 1})"
        else:
            res = an.build(prep, config(changes), stats)
        by_ort = len(ort_requantized_layers(GraphIndex(res.prepared.model.graph), res.plan))
        guards.add(res.guard)
        dep = predict(res.deploy_model, x)
        for emulate in (False, True):
            fq = res.fake_quant_model if emulate else build_fake_quant(res.prepared.model, res.plan, emulate_ort=False)
            y = predict(fq, x)
            rows.append(f"| {name} | {'yes' if emulate else 'no (before)'} | {len(res.plan.layers)} | {by_ort} | "
                        f"{agreement(y[held], dep[held]):.2%} | {agreement(y, dep):.2%} | "
                        f"{np.abs(y[held] - dep[held]).max():.3g} | {agreement(y[held], fp[held]):.2%} / "
                        f"{sqnr(y[held], fp[held]):.2f} | {agreement(dep[held], fp[held]):.2%} / "
                        f"{sqnr(dep[held], fp[held]):.2f} |")
            print(rows[-1], flush=True)
            per = detail(res, x[N_CAL:N_CAL + args.detail], emulate)
            for kind, a in sorted(per.items()):
                tables.append(f"| {name} | {'yes' if emulate else 'no'} | {kind} | {int(a[0]):,} | {a[1] / a[0]:.2e} "
                              f"| {int(a[2])} | {a[3] / a[0]:.2e} | {a[4] / a[0]:.2e} | {int(a[5])} |")
    cmd = ("python benchmarks/sim_vs_deploy.py" + (f" --detail {args.detail}" if args.detail != 40 else "")
           + (f" --qat {args.qat}" if args.qat else ""))
    lines = [
        "# Fake-quant model vs deploy model (ONNX Runtime int8 kernels), EfficientNet-Lite0",
        "",
        "```",
        cmd,
        "```",
        "",
        f"ONNX Runtime {ort.__version__}, {platform.machine()} CPU, {time.perf_counter() - t0:.0f} s (2 shared cores), "
        f"saturation guard of each build: {', '.join(sorted(guards))}. "
        f"Calibration: dev images 0-{N_CAL - 1} (../shared/data/imagenet-dev); top-1 agreement between the two "
        f"models on the held-out images {N_CAL}-499 and on all 500. Emulation: `build_fake_quant(..., "
        "emulate_ort=True)` (the default; see the docstring of amct_nb/export/fake_quant.py); \"no\" is the "
        "writer before it. \"float layers ORT runs int8\": layers amct-nb leaves float between two quantized "
        "tensors, which ONNX Runtime quantizes itself (weight-only int8 weights, or WeightBiasQuantization). "
        "max |logit diff|: between the two models' logits, images 100-499. The last two columns: top-1 "
        "agreement with the float model and SQNR (dB) of the logits against the float model's, images 100-499 "
        "(once the two models agree, the fake-quant model's accuracy is the deploy model's).",
        "",
        "| config | emulation | int8 layers | float layers ORT runs int8 | fake-quant = deploy (top-1), images "
        "100-499 | all 500 | max \\|logit diff\\| | fake-quant vs float: top-1 / SQNR | deploy vs float |",
        "|---|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        f"Per op type that writes a quantized tensor, on images {N_CAL}-{N_CAL + args.detail - 1}: integers compared, "
        "the share that differ from the deploy model's and by how many steps of the grid, when the whole fake-quant "
        "model runs (differences carried over from earlier layers included) and when each op reads the deploy "
        "model's integers (local: that op's own error).",
        "",
        "| config | emulation | op (as the deploy model runs it) | integers | run: differ | run: max | run: mean | "
        "local: differ | local: max |",
        "|---|---|---|---|---|---|---|---|---|",
        *tables,
        "",
        NOTE,
        "",
    ]
    Path(args.out).write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
