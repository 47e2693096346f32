"""amct-nb on a real model over 2 GB (external data): time, peak memory, files, output error.

Builds a chain of 9 MatMul layers with 8192 x 8192 float32 weights (2.42 GB, saved as
``big.onnx`` + ``big.onnx.data`` in a temporary folder), calibrates it on 16 random samples with
the default settings, saves the results, checks the saved models by path with the ONNX checker,
runs the deploy model in ONNX Runtime and writes benchmarks/LARGE.md. Needs ~24 GB of memory and
~8 minutes here; the test suite runs the same code paths on a small model
(tests/test_large_model.py).

    python benchmarks/large_model.py [--guard always|off] [--keep DIR]
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


def vm_hwm_gb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--guard", default="always")
    ap.add_argument("--keep", help="build the model in this folder and keep it")
    args = ap.parse_args()
    import onnxruntime as ort

    import amct_nb as an

    with tempfile.TemporaryDirectory(dir=args.keep) as d:
        d = Path(d)
        src = d / "big.onnx"
        t = time.perf_counter()
        build(src)
        t_build = time.perf_counter() - t
        size = src.stat().st_size + (d / "big.onnx.data").stat().st_size
        r = np.random.default_rng(1)
        feeds = [{"x": r.standard_normal((4, D), dtype=np.float32)} for _ in range(4)]
        cfg = an.QuantConfig(saturation_guard=args.guard)
        t = time.perf_counter()
        res = an.quantize(src, feeds, cfg, progress=False)
        t_quant = time.perf_counter() - t
        rep = res.report()
        t = time.perf_counter()
        paths = res.save(d / "out")
        t_save = time.perf_counter() - t
        del res
        onnx.checker.check_model(str(paths["deploy"]))
        onnx.checker.check_model(str(paths["fake_quant"]))
        ev = {"x": r.standard_normal((2, D), dtype=np.float32)}
        y = ort.InferenceSession(str(paths["deploy"]), providers=["CPUExecutionProvider"]).run(None, ev)[0]
        y_ref = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"]).run(None, ev)[0]
        sqnr = 10 * np.log10((y_ref.astype(np.float64) ** 2).sum() / ((y - y_ref).astype(np.float64) ** 2).sum())
        files = {p.name: p.stat().st_size for p in (d / "out").iterdir() if p.is_file()}
    row = {"model_bytes": size, "build_s": round(t_build, 1), "quantize_s": round(t_quant, 1),
           "save_s": round(t_save, 1), "peak_rss_gb": round(vm_hwm_gb(), 2), "layers": len(rep["quantized_layers"]),
           "guard": args.guard,
           "output_sqnr_db_calibration": round(rep["output_error"][f"h{LAYERS - 1}"]["sqnr_db"], 1),
           "deploy_sqnr_db_new_data": round(float(sqnr), 1), "files": files, "output_check": rep["output_check"]}
    print(json.dumps(row, indent=1))
    lines = ["# A model over 2 GB", "",
             "Produced by `python benchmarks/large_model.py` (9 MatMul layers, 8192 x 8192 float32 weights, "
             "external data; 16 calibration samples; default settings).", "",
             "| model | quantize s | save s | peak RSS GB | int8 layers | output SQNR dB (calibration / new data) "
             "| deploy file | fake-quant files |",
             "|---|---|---|---|---|---|---|---|",
             f"| {size / 1e9:.2f} GB | {row['quantize_s']} | {row['save_s']} | {row['peak_rss_gb']} "
             f"| {row['layers']} | "
             f"{row['output_sqnr_db_calibration']} / {row['deploy_sqnr_db_new_data']} | "
             f"{files.get('big_deploy_model.onnx', 0) / 1e9:.2f} GB, one file | "
             f"{files.get('big_fake_quant_model.onnx.data', 0) / 1e9:.2f} GB in big_fake_quant_model.onnx.data |", "",
             f"Output check: {rep['output_check'].get('skipped', rep['output_check'])}.", ""]
    (HERE / "LARGE.md").write_text("\n".join(lines))


if __name__ == "__main__":
    main()
