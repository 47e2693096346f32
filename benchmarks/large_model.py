"""amct-nb on a real model over 2 GB (external data): time, peak memory, files, output error.

Builds a chain of 9 MatMul layers with 8192 x 8192 float32 weights (2.42 GB, saved as
``big.onnx`` + ``big.onnx.data`` in a temporary folder), calibrates it on 16 random samples with
the default settings, saves the results, checks the saved models by path with the ONNX checker,
runs the deploy model in ONNX Runtime and writes benchmarks/LARGE.md. The model is built in a child
process, so the peak memory (VmHWM, and per stage: the kernel's peak is reset at each stage boundary
through /proc/self/clear_refs) is that of quantizing and saving alone: about 3x the model's size (sessions
of models over 2 GB also need room for one copy of the model in the temporary folder, TMPDIR). The test
suite runs the same code paths on small models (tests/test_large_model.py).

    python benchmarks/large_model.py [--guard always|off] [--keep DIR]
    python benchmarks/large_model.py --dim 4096 --layers 9 --lower-limit   # 0.6 GB, the >2 GB code paths

``--dim`` / ``--layers`` set the weight size and count; ``--lower-limit`` lowers amct-nb's 2 GB limit
(``amct_nb.ir.model.LARGE_MODEL_BYTES``, as the tests do) to half the model's size, so a smaller model
takes every large-model path. Only the default size writes LARGE.md; other sizes print the JSON row.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
D, LAYERS = 8192, 9


def build(path: Path, d: int = D, layers: int = LAYERS) -> None:
    """A chain of ``layers`` MatMul (d x d) + Relu, saved with all weights in ``<path>.data``."""
    r = np.random.default_rng(0)
    nodes, inits, prev = [], [], "x"
    for i in range(layers):
        w = r.standard_normal((d, d), dtype=np.float32)
        w *= np.float32((2.0 / d) ** 0.5)
        inits.append(numpy_helper.from_array(w, f"w{i}"))
        del w
        nodes.append(helper.make_node("MatMul", [prev, f"w{i}"], [f"h{i}"], name=f"mm{i}"))
        if i < layers - 1:
            nodes.append(helper.make_node("Relu", [f"h{i}"], [f"r{i}"], name=f"relu{i}"))
            prev = f"r{i}"
    g = helper.make_graph(nodes, "big", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", d])],
                          [helper.make_tensor_value_info(f"h{layers - 1}", TensorProto.FLOAT, ["N", d])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.save_model(m, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                    location=path.name + ".data")


def _status_kb(key: str) -> int | None:
    try:
        lines = Path("/proc/self/status").read_text().splitlines()
    except OSError:  # not Linux: peaks from getrusage (not reset per stage)
        return None
    for line in lines:
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return None


def vm_hwm_gb() -> float:
    kb = _status_kb("VmHWM")
    if kb is None:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return kb / 2**20


class Stages:
    """Peak RSS per stage: at each boundary the kernel's peak (VmHWM) is read for the stage that ends
    and reset (``/proc/self/clear_refs``), so nested stages (a session inside write_models) count apart."""

    def __init__(self):
        self.peak: dict[str, float] = {}
        self.stack = ["start"]
        self.ok = True

    def _switch(self) -> None:
        label = self.stack[-1]
        self.peak[label] = max(self.peak.get(label, 0.0), vm_hwm_gb())
        try:
            Path("/proc/self/clear_refs").write_text("5")
        except OSError:
            self.ok = False  # peaks then accumulate: each stage shows the peak so far

    def wrap(self, module, name: str, label: str | None = None) -> None:
        fn = getattr(module, name)

        def wrapped(*a, **k):
            self._switch()
            self.stack.append(label or name)
            try:
                return fn(*a, **k)
            finally:
                self._switch()
                self.stack.pop()

        setattr(module, name, wrapped)

    def run(self, label: str, fn, *a, **k):
        self._switch()
        self.stack.append(label)
        try:
            return fn(*a, **k)
        finally:
            self._switch()
            self.stack.pop()


def _instrument(st: Stages) -> None:
    """Label the stages of ``amct_nb.quantize`` / ``QuantResult.save`` (the names the pipeline calls)."""
    import amct_nb.ptq.pipeline as pl
    import amct_nb.ptq.result as rs

    for name, label in (("prepare", "load + prepare"), ("collect_stats", "collect_stats"),
                        ("calibrate_record", "record + plan + safety net"), ("choose_weight_only", "ladder"),
                        ("build_fake_quant", "write_models: fake-quant"), ("build_deploy", "write_models: deploy"),
                        ("make_session", "write_models: deploy session"), ("output_errors", "output_errors")):
        if hasattr(pl, name):
            st.wrap(pl, name, label)
    for name, label in (("modified_model_for", "save: modified model"), ("save_model_file", "save: model files")):
        st.wrap(rs, name, label)


def _build_in_child(path: Path, d: int, layers: int) -> None:
    import multiprocessing as mp

    p = mp.get_context("fork").Process(target=build, args=(path, d, layers))
    p.start()
    p.join()
    if p.exitcode:
        raise SystemExit(f"building the model failed (exit code {p.exitcode})")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--guard", default="always")
    ap.add_argument("--keep", help="build the model in this folder and keep it")
    ap.add_argument("--dim", type=int, default=D, help=f"weight size (dim x dim float32; default {D})")
    ap.add_argument("--layers", type=int, default=LAYERS, help=f"MatMul layers (default {LAYERS})")
    ap.add_argument("--lower-limit", action="store_true",
                    help="lower amct-nb's 2 GB limit to half the model's size: the large-model paths on a small model")
    ap.add_argument("--json", help="also write the row to this file")
    args = ap.parse_args()
    import onnxruntime as ort

    import amct_nb as an
    import amct_nb.ir.model

    dim, n_layers = args.dim, args.layers
    full_size = (dim, n_layers) == (D, LAYERS) and not args.lower_limit
    with tempfile.TemporaryDirectory(dir=args.keep) as d:
        d = Path(d)
        src = d / "big.onnx"
        t = time.perf_counter()
        _build_in_child(src, dim, n_layers)
        t_build = time.perf_counter() - t
        size = src.stat().st_size + (d / "big.onnx.data").stat().st_size
        if args.lower_limit:
            amct_nb.ir.model.LARGE_MODEL_BYTES = size // 2
        r = np.random.default_rng(1)
        feeds = [{"x": r.standard_normal((4, dim), dtype=np.float32)} for _ in range(4)]
        cfg = an.QuantConfig(saturation_guard=args.guard)
        st = Stages()
        _instrument(st)
        st._switch()
        base_gb = (_status_kb("VmRSS") or 0) / 2**20
        t = time.perf_counter()
        res = st.run("quantize (other)", an.quantize, src, feeds, cfg, progress=False)
        t_quant = time.perf_counter() - t
        rep = st.run("report", res.report)
        t = time.perf_counter()
        paths = st.run("save (other)", res.save, d / "out")
        t_save = time.perf_counter() - t
        st._switch()
        peak_gb = max(st.peak.values())
        del res
        onnx.checker.check_model(str(paths["deploy"]))
        onnx.checker.check_model(str(paths["fake_quant"]))
        ev = {"x": r.standard_normal((2, dim), dtype=np.float32)}
        y = ort.InferenceSession(str(paths["deploy"]), providers=["CPUExecutionProvider"]).run(None, ev)[0]
        y_ref = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"]).run(None, ev)[0]
        sqnr = 10 * np.log10((y_ref.astype(np.float64) ** 2).sum() / ((y - y_ref).astype(np.float64) ** 2).sum())
        files = {p.name: p.stat().st_size for p in (d / "out").iterdir() if p.is_file()}
    gb = size / 2**30
    stages = {k: {"peak_rss_gb": round(v, 3), "x_model": round(v / gb, 2),
                  "x_model_above_start": round((v - base_gb) / gb, 2)} for k, v in st.peak.items() if k != "start"}
    row = {"model_bytes": size, "dim": dim, "layers": n_layers, "lowered_limit": args.lower_limit,
           "build_s": round(t_build, 1), "quantize_s": round(t_quant, 1),
           "save_s": round(t_save, 1), "peak_rss_gb": round(peak_gb, 2), "start_rss_gb": round(base_gb, 3),
           "peak_x_model": round(peak_gb / gb, 2), "peak_x_model_above_start": round((peak_gb - base_gb) / gb, 2),
           "stages": stages, "stage_peaks_reset": st.ok, "layers_int8": len(rep["quantized_layers"]),
           "guard": args.guard,
           "output_sqnr_db_calibration": round(rep["output_error"][f"h{n_layers - 1}"]["sqnr_db"], 1),
           "deploy_sqnr_db_new_data": round(float(sqnr), 1), "files": files, "output_check": rep["output_check"]}
    print(json.dumps(row, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(row, indent=1) + "\n")
    if not full_size:
        return
    lines = ["# A model over 2 GB", "",
             "Produced by `python benchmarks/large_model.py` (9 MatMul layers, 8192 x 8192 float32 weights, "
             "external data; 16 calibration samples; default settings).", "",
             "| model | quantize s | save s | peak RSS GB | int8 layers | output SQNR dB (calibration / new data) "
             "| deploy file | fake-quant files |",
             "|---|---|---|---|---|---|---|---|",
             f"| {size / 1e9:.2f} GB | {row['quantize_s']} | {row['save_s']} | {row['peak_rss_gb']} "
             f"| {row['layers_int8']} | "
             f"{row['output_sqnr_db_calibration']} / {row['deploy_sqnr_db_new_data']} | "
             f"{files.get('big_deploy_model.onnx', 0) / 1e9:.2f} GB, one file | "
             f"{files.get('big_fake_quant_model.onnx.data', 0) / 1e9:.2f} GB in big_fake_quant_model.onnx.data |", "",
             f"Output check: {rep['output_check'].get('skipped', rep['output_check'])}.", "",
             f"Peak RSS per stage (model {gb:.2f} GiB; {base_gb:.2f} GiB before quantizing):", "",
             "| stage | peak RSS GiB | x model |", "|---|---|---|",
             *[f"| {k} | {v['peak_rss_gb']:.2f} | {v['x_model']} |" for k, v in stages.items()], ""]
    (HERE / "LARGE.md").write_text("\n".join(lines))


if __name__ == "__main__":
    main()
