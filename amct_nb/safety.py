"""The safety net: measure what quantization does to each tensor and to the outputs.

After a plan is built, a few calibration feeds run through the float model with every quantized
tensor exposed. Each tensor is quantized with its own grid (no upstream error mixed in) and
compared with its float value:

* SQNR over the whole tensor, in dB: ``10 log10(sum x^2 / sum (q(x) - x)^2)``;
* for "head" tensors (no quantized layer downstream: what reaches the outputs) and Concat
  inputs/outputs, the worst SNR over channels (axis 1, and the last axis): one tensor that
  concatenates values of very different ranges (box coordinates in pixels next to probabilities)
  has a fine overall SQNR while its small-range channels are wiped out.

Tensors below the thresholds are left float with the reason, and the layers reading them too.
The end-to-end output error (cosine, SQNR) of the fake-quant model is measured the same way.
"""

from __future__ import annotations

import math

import numpy as np
import onnx

from .model import GraphIndex
from .observe import make_session, with_outputs
from .quant import fake_quantize, qrange

__all__ = ["tensor_errors", "flag_tensors", "output_errors", "sqnr_db", "MIN_SQNR_DB", "MIN_CHANNEL_SNR_DB"]

#: A tensor whose own quantization leaves less than this SQNR is kept float.
MIN_SQNR_DB = 12.0
#: A head/concat tensor with a channel below this SNR is kept float.
MIN_CHANNEL_SNR_DB = 3.0


def sqnr_db(ref: np.ndarray, test: np.ndarray) -> float:
    ref = ref.astype(np.float64)
    noise = float(((test.astype(np.float64) - ref) ** 2).sum())
    sig = float((ref**2).sum())
    if noise == 0.0:
        return math.inf
    if sig == 0.0:
        return -math.inf
    return 10.0 * math.log10(sig / noise)


def _channel_snr(ref: np.ndarray, test: np.ndarray) -> float:
    """Worst SNR over channels along axis 1 and the last axis (channels with no variance and no
    error are ignored)."""
    worst = math.inf
    r, t = ref.astype(np.float64), test.astype(np.float64)
    for axis in {1, r.ndim - 1} if r.ndim >= 2 else set():
        if r.shape[axis] < 2 or r.shape[axis] > 4096:
            continue
        rr = np.moveaxis(r, axis, 0).reshape(r.shape[axis], -1)
        tt = np.moveaxis(t, axis, 0).reshape(r.shape[axis], -1)
        var = rr.var(axis=1) + (rr.mean(axis=1) ** 2)
        err = ((tt - rr) ** 2).mean(axis=1)
        live = (var > 0) | (err > 0)
        if not live.any():
            continue
        with np.errstate(divide="ignore"):
            snr = 10 * np.log10(np.maximum(var[live], 1e-300) / np.maximum(err[live], 1e-300))
        worst = min(worst, float(snr.min()))
    return worst


def _heads(model: onnx.ModelProto, plan) -> set[str]:
    """Quantized tensors with no quantized layer downstream, and Concat inputs/outputs."""
    idx = GraphIndex(model.graph)
    layer_nodes = set(plan.layers)
    out = set()
    for t in plan.tensors:
        seen, stack, feeds_layer = set(), [t], False
        while stack and not feeds_layer:
            cur = stack.pop()
            for c in idx.consumers.get(cur, []):
                if c.name in layer_nodes:
                    feeds_layer = True
                    break
                for o in c.output:
                    if o and o not in seen:
                        seen.add(o)
                        stack.append(o)
        if not feeds_layer:
            out.add(t)
    for n in model.graph.node:
        if n.op_type == "Concat":
            out.update(i for i in n.input if i in plan.tensors)
            out.update(o for o in n.output if o in plan.tensors)
    return out


def tensor_errors(model: onnx.ModelProto, plan, feeds: list[dict]) -> dict[str, dict]:
    """Per quantized tensor: SQNR (dB), worst channel SNR for head tensors, and its grid."""
    names = list(plan.tensors)
    if not names or not feeds:
        return {}
    sess = make_session(with_outputs(model, names))
    outs = [sess.run(names, f) for f in feeds]
    heads = _heads(model, plan)
    res = {}
    for j, t in enumerate(names):
        tq = plan.tensors[t]
        lo, hi = qrange(8, signed=np.dtype(tq.dtype) == np.int8)
        ref = np.concatenate([o[j].reshape(-1) for o in outs])
        test = fake_quantize(ref, tq.scale, tq.zero_point, lo, hi)
        e = {"sqnr_db": sqnr_db(ref, test), "head": t in heads}
        if t in heads:
            e["worst_channel_snr_db"] = min(
                _channel_snr(o[j], fake_quantize(o[j], tq.scale, tq.zero_point, lo, hi)) for o in outs
            )
        res[t] = e
    return res


def flag_tensors(errors: dict[str, dict], min_sqnr_db: float = MIN_SQNR_DB,
                 min_channel_snr_db: float = MIN_CHANNEL_SNR_DB) -> dict[str, str]:
    """Tensors whose quantization destroys information, with the reason."""
    bad = {}
    for t, e in errors.items():
        if e["sqnr_db"] < min_sqnr_db:
            bad[t] = f"quantizing it leaves {e['sqnr_db']:.1f} dB SQNR (< {min_sqnr_db:g} dB): its range is dominated by extreme values"
        elif e.get("worst_channel_snr_db", math.inf) < min_channel_snr_db:
            bad[t] = (f"one grid for the whole tensor wipes out its small-range channels (worst channel "
                      f"{e['worst_channel_snr_db']:.1f} dB < {min_channel_snr_db:g} dB), e.g. boxes next to probabilities")
    return bad


def output_errors(float_model: onnx.ModelProto, fake_model: onnx.ModelProto, feeds: list[dict]) -> dict[str, dict]:
    """End-to-end error of each model output: cosine and SQNR of fake-quant vs float."""
    if not feeds:
        return {}
    a, b = make_session(float_model), make_session(fake_model)
    names = [o.name for o in a.get_outputs()]
    ra = [a.run(names, f) for f in feeds]
    rb = [b.run(names, f) for f in feeds]
    res = {}
    for j, n in enumerate(names):
        x = np.concatenate([r[j].reshape(-1) for r in ra]).astype(np.float64)
        y = np.concatenate([r[j].reshape(-1) for r in rb]).astype(np.float64)
        if not (np.issubdtype(x.dtype, np.floating)):
            continue
        fin = np.isfinite(x) & np.isfinite(y)
        x, y = x[fin], y[fin]
        denom = np.linalg.norm(x) * np.linalg.norm(y)
        res[n] = {"cosine": float(x @ y / denom) if denom > 0 else (1.0 if np.array_equal(x, y) else 0.0),
                  "sqnr_db": sqnr_db(x, y), "max_abs_error": float(np.abs(x - y).max()) if x.size else 0.0}
    return res
