"""EfficientNet-Lite0: output SQNR with every layer int8, and what the output check does at a few
targets (calibration: dev images 0-99; agreement: deploy vs fp32 top-1 on images 100-299, as in
tests/test_efficientnet.py).

    python benchmarks/efficientnet_output_check.py [TARGET_DB ...]   (default: off 15 20)
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx

sys.path.insert(0, str(Path(__file__).resolve().parent))

import imagenet_dev  # noqa: E402


def predict(model, x):
    from amct_nb.ir import make_session

    s = make_session(model)
    return np.concatenate([s.run(None, {"input": x[i:i + 50]})[0] for i in range(0, len(x), 50)])


def main():
    import amct_nb as an

    targets = sys.argv[1:] or ["off", "15", "20"]
    cal, _ = imagenet_dev.load(0, 100)
    ev, _ = imagenet_dev.load(100, 300)
    fp = predict(onnx.load(str(imagenet_dev.MODEL)), ev).argmax(1)
    prep = an.prepare(str(imagenet_dev.MODEL))
    stats = an.collect_stats(prep, cal, progress=False)
    print("| target dB | int8 layers | output SQNR dB before the check (gated) | logits SQNR dB (fake-quant) "
          "| top-1 agreement |")
    print("|---|---|---|---|---|")
    for t in targets:
        res = an.build(prep, an.QuantConfig(min_output_sqnr_db=None if t == "off" else float(t)), stats)
        agree = (predict(res.deploy_model, ev).argmax(1) == fp).mean()
        oc = res.report()["output_check"]
        print(f"| {t} | {len(res.plan.layers)} | {oc.get('before_sqnr_db', '-')} | "
              f"{min(e['sqnr_db'] for e in res.output_errors.values()):.2f} | {agree:.3f} |", flush=True)


if __name__ == "__main__":
    main()
