"""The safety net: measure what quantization does to each tensor and to the outputs.

After a plan is built, a few calibration samples run through the float model with every quantized
tensor exposed. Each tensor is quantized with its own grid (no upstream error mixed in) and
compared with its float value:

* SQNR over the whole tensor, in dB: ``10 log10(sum x^2 / sum (q(x) - x)^2)``, and over its bulk
  (values within 10x the 90th percentile of |x|: a few huge values, such as -3.4e38 masks, make
  the plain SQNR look perfect while every ordinary value is wiped out);
* for "head" tensors (no quantized layer downstream: what reaches the outputs) and Concat
  inputs/outputs, the worst SNR over channels (axis 1, and the last axis): one tensor that
  concatenates values of very different ranges (box coordinates in pixels next to probabilities)
  has a fine overall SQNR while its small-range channels are wiped out.

Tensors below the thresholds are left float with the reason (:func:`flag_tensors`). The
end-to-end output error (cosine, SQNR) of the fake-quant model is measured the same way
(:func:`output_errors`).
"""

from __future__ import annotations

import math

import numpy as np
import onnx

from ..export import QuantPlan
from ..ir import GraphIndex, ObservingSession, lean_options, make_session
from ..quant import fake_quantize, qrange
from ..reasons import Code, Reason
from .metrics import channel_snr_db, cosine, db, sqnr_db

__all__ = ["tensor_errors", "flag_tensors", "output_errors", "reference_outputs",
           "single_samples", "MIN_SQNR_DB", "MIN_CHANNEL_SNR_DB"]

#: A tensor whose own quantization leaves less than this SQNR is kept float.
MIN_SQNR_DB = 12.0
#: A head/concat tensor with a channel below this SNR is kept float.
MIN_CHANNEL_SNR_DB = 3.0


def _heads(model: onnx.ModelProto, plan: QuantPlan) -> set[str]:
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


def single_samples(feeds: list[dict]):
    """Split feeds whose inputs all share a first axis into one-sample feeds (bounded memory)."""
    for f in feeds:
        vals = list(f.values())
        n = vals[0].shape[0] if vals and vals[0].ndim else 1
        if n > 1 and all(v.ndim and v.shape[0] == n for v in vals):
            for i in range(n):
                yield {k: v[i : i + 1] for k, v in f.items()}
        else:
            yield f


def _bulk_limit(st) -> float:
    """|x| above which values count as outliers: 10x the 90th percentile of |x|."""
    if st is None or st.empty:
        return math.inf
    h = st.histogram().abs()
    c = np.cumsum(h.counts)
    if c[-1] <= 0:
        return math.inf
    i = int(np.searchsorted(c, 0.9 * c[-1]))
    return 10.0 * float(h.edges[min(i + 1, len(h.edges) - 1)])


def tensor_errors(
    model: onnx.ModelProto, plan: QuantPlan, feeds: list[dict], stats: dict | None = None
) -> dict[str, dict]:
    """Per quantized tensor: SQNR (dB), worst channel SNR for head tensors, and its grid.

    Streams: one feed at a time, keeping only per-tensor sums, so memory does not grow with the
    number of feeds or the size of the activations."""
    names = list(plan.tensors)
    if not names or not feeds:
        return {}
    sess = ObservingSession(model, names, options=lean_options())
    heads = _heads(model, plan)
    sig = dict.fromkeys(names, 0.0)
    noise = dict.fromkeys(names, 0.0)
    bsig = dict.fromkeys(names, 0.0)
    bnoise = dict.fromkeys(names, 0.0)
    limit = {t: _bulk_limit((stats or {}).get(t)) for t in names}
    worst = dict.fromkeys(names, math.inf)
    for f in single_samples(feeds):
        outs = sess.run(names, f)
        for t, ref in zip(names, outs):
            tq = plan.tensors[t]
            lo, hi = qrange(8, signed=np.dtype(tq.dtype) == np.int8)
            test = fake_quantize(ref, tq.scale, tq.zero_point, lo, hi)
            r64 = ref.astype(np.float64)
            err2 = (test - r64) ** 2
            sig[t] += float((r64 * r64).sum())
            noise[t] += float(err2.sum())
            if math.isfinite(limit[t]):
                bulk = np.abs(r64) <= limit[t]
                bsig[t] += float((r64[bulk] ** 2).sum())
                bnoise[t] += float(err2[bulk].sum())
            if t in heads:
                worst[t] = min(worst[t], channel_snr_db(ref, test))
        del outs
    res = {}
    for t in names:
        e = {"sqnr_db": db(sig[t], noise[t]), "head": t in heads}
        if math.isfinite(limit[t]):
            # the bulk: values within 10x the 90th percentile of |x|; a few huge values (masks of
            # -3.4e38) make the plain SQNR look perfect while every ordinary value is wiped out
            e["bulk_sqnr_db"] = db(bsig[t], bnoise[t])
        if t in heads:
            e["worst_channel_snr_db"] = worst[t]
        res[t] = e
    return res


def flag_tensors(errors: dict[str, dict], min_sqnr_db: float = MIN_SQNR_DB,
                 min_channel_snr_db: float = MIN_CHANNEL_SNR_DB) -> dict[str, Reason]:
    """Tensors whose quantization destroys information, with the reason."""
    bad = {}
    for t, e in errors.items():
        worst = min(e["sqnr_db"], e.get("bulk_sqnr_db", math.inf))
        if worst < min_sqnr_db:
            bad[t] = Reason(Code.TENSOR_CHECK, f"quantizing it leaves {worst:.1f} dB SQNR (< {min_sqnr_db:g} dB): its "
                            "range is dominated by extreme values")
        elif e.get("worst_channel_snr_db", math.inf) < min_channel_snr_db:
            bad[t] = Reason(Code.CHANNEL_CHECK, "one grid for the whole tensor wipes out its small-range channels "
                            f"(worst channel {e['worst_channel_snr_db']:.1f} dB < {min_channel_snr_db:g} dB), "
                            "e.g. boxes next to probabilities")
    return bad


def reference_outputs(float_model: onnx.ModelProto, feeds: list[dict]) -> tuple[list[str], list]:
    """The float model's outputs on ``feeds``: (output names, one list of outputs per feed), for
    :func:`output_errors` (measured before the quantized models exist: one session and its weights at a time)."""
    a = make_session(float_model, options=lean_options())
    names = [o.name for o in a.get_outputs()]
    return names, [a.run(names, f) for f in feeds]


def output_errors(float_model: onnx.ModelProto, fake_model, feeds: list[dict], *,
                  reference: tuple[list[str], list] | None = None) -> dict[str, dict]:
    """End-to-end error of each model output: cosine and SQNR of fake-quant vs float (``fake_model``: a
    ModelProto or a :class:`~amct_nb.ir.external.Spill` of one; ``reference``: :func:`reference_outputs`, measured
    earlier)."""
    if not feeds:
        return {}
    names, ra = reference if reference is not None else reference_outputs(float_model, feeds)
    b = make_session(fake_model, options=lean_options())  # one session at a time: big models
    rb = [b.run(names, f) for f in feeds]
    del b
    res = {}
    for j, n in enumerate(names):
        x = np.concatenate([r[j].reshape(-1) for r in ra]).astype(np.float64)
        y = np.concatenate([r[j].reshape(-1) for r in rb]).astype(np.float64)
        if not (np.issubdtype(x.dtype, np.floating)):
            continue
        fin = np.isfinite(x) & np.isfinite(y)
        x, y = x[fin], y[fin]
        res[n] = {"cosine": cosine(x, y), "sqnr_db": sqnr_db(x, y),
                  "max_abs_error": float(np.abs(x - y).max()) if x.size else 0.0}
    return res
