"""Where a QAT step's time goes: torch's profiler over a few training steps of the QAT model, and the step
time against the same graph trained in float (interleaved, medians).

    python benchmarks/qat_profile.py [--model fmnist-resnet] [--threads 1] [--per-channel]

The zoo model's 500 shipped images (batch 128), PTQ warm start on 256 of them, SGD with momentum.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="fmnist-resnet")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--per-channel", action="store_true")
    args = ap.parse_args(argv)
    import torch
    from torch.profiler import profile

    import amct_nb as an
    from amct_nb import zoo
    from amct_nb.qat.graph import TorchGraph
    from amct_nb.qat.model import QatModel

    torch.set_num_threads(args.threads)
    zm = zoo.load(args.model)
    x, y = zm.test_data()
    p = an.prepare(str(zm.path))
    cfg = an.QuantConfig(min_output_sqnr_db=None)
    cfg.default.channel_wise = args.per_channel
    qm = QatModel(an.build(p, cfg, an.collect_stats(p, x[:256], progress=False)))
    fm = TorchGraph(p.model)
    xb, yb = torch.from_numpy(x[:128]), torch.from_numpy(np.asarray(y[:128], np.int64))
    opts = {id(m): torch.optim.SGD(m.parameters(), 1e-3, momentum=0.9) for m in (qm, fm)}

    def step(m):
        loss = torch.nn.functional.cross_entropy(m(xb), yb)
        opts[id(m)].zero_grad()
        loss.backward()
        opts[id(m)].step()

    times = {"qat": [], "float": []}
    for _ in range(10):
        for k, m in (("qat", qm), ("float", fm)):
            t = time.perf_counter()
            step(m)
            times[k].append(time.perf_counter() - t)
    q, f = (float(np.median(times[k][2:])) for k in ("qat", "float"))
    print(f"{args.model}, {'per-channel' if args.per_channel else 'per-tensor'}, {args.threads} thread(s): "
          f"QAT step {1e3 * q:.0f} ms, float step {1e3 * f:.0f} ms, ratio {q / f:.2f}")
    with profile() as pr:
        for _ in range(5):
            step(qm)
    print(pr.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))
    return 0


if __name__ == "__main__":
    sys.exit(main())
