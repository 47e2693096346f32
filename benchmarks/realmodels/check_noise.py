"""How a task check answers to noise that is not quantization: its noise floor and its power to fail.

For one model of the real-model set: the fp32 model against itself with every float weight (over 100
values) multiplied by ``1 + eps * N(0, 1)`` for each ``--eps`` (seed 0), and against uniform random values in
place of every float output. A check that fails at eps = 1e-4 measures float rounding, not the quantizer; one
that passes random outputs cannot fail. Evaluation feeds: 32, seed 1 (as run_ours.py).

    python benchmarks/realmodels/check_noise.py rxnmap [--eps 1e-4 1e-2 0.3]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from benchmarks.realmodels import catalog  # noqa: E402


def noisy(path: str, eps: float, seed: int = 0) -> onnx.ModelProto:
    m = onnx.load(path)
    r = np.random.default_rng(seed)
    for t in m.graph.initializer:
        a = numpy_helper.to_array(t)
        if a.dtype == np.float32 and a.size > 100:
            t.CopyFrom(numpy_helper.from_array((a * (1 + eps * r.standard_normal(a.shape))).astype(np.float32), t.name))
    return m


def main():
    from amct_nb.ir import make_session

    ap = argparse.ArgumentParser()
    ap.add_argument("name")
    ap.add_argument("--eps", type=float, nargs="*", default=[1e-4, 1e-2, 0.3])
    args = ap.parse_args()
    m = catalog.get(args.name)
    path = catalog.fetch(m)
    ev = m.feeds(32, 1)
    s = make_session(onnx.load(path))
    names = [o.name for o in s.get_outputs()]
    ref = [s.run(names, f) for f in ev]
    for eps in args.eps:
        sn = make_session(noisy(path, eps))
        c = m.check(ref, [sn.run(names, f) for f in ev])
        print(f"weights x (1 + {eps:g} N(0,1)): {c['value']:.4f} passed={c['passed']} ({c['detail'][:160]})")
    r = np.random.default_rng(1)
    rand = [[r.random(np.shape(o)).astype(np.float32) if np.asarray(o).dtype == np.float32 else o for o in out]
            for out in ref]
    c = m.check(ref, rand)
    print(f"random outputs: {c['value']:.4f} passed={c['passed']} ({c['detail'][:160]})")


if __name__ == "__main__":
    main()
