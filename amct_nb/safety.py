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
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper, numpy_helper

from .model import GraphIndex, is_large
from .observe import make_session, with_outputs
from .quant import fake_quantize, qrange

__all__ = ["tensor_errors", "flag_tensors", "output_errors", "output_check", "OutputCheck", "sqnr_db", "MIN_SQNR_DB",
           "MIN_CHANNEL_SNR_DB", "MIN_OUTPUT_SQNR_DB"]

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
        with np.errstate(divide="ignore", over="ignore"):
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


def _lean_options():
    """Session options for short measurement runs: no memory arena kept around afterwards."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.enable_cpu_mem_arena = False
    return so


def _single_samples(feeds: list[dict]):
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


def tensor_errors(model: onnx.ModelProto, plan, feeds: list[dict], stats: dict | None = None) -> dict[str, dict]:
    """Per quantized tensor: SQNR (dB), worst channel SNR for head tensors, and its grid.

    Streams: one feed at a time, keeping only per-tensor sums, so memory does not grow with the
    number of feeds or the size of the activations."""
    names = list(plan.tensors)
    if not names or not feeds:
        return {}
    sess = make_session(with_outputs(model, names), options=_lean_options())
    heads = _heads(model, plan)
    sig = dict.fromkeys(names, 0.0)
    noise = dict.fromkeys(names, 0.0)
    bsig = dict.fromkeys(names, 0.0)
    bnoise = dict.fromkeys(names, 0.0)
    limit = {t: _bulk_limit((stats or {}).get(t)) for t in names}
    worst = dict.fromkeys(names, math.inf)
    for f in _single_samples(feeds):
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
                worst[t] = min(worst[t], _channel_snr(ref, test))
        del outs
    def db(s_, n_):
        return math.inf if n_ == 0 else (-math.inf if s_ == 0 else 10.0 * math.log10(s_ / n_))

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
                 min_channel_snr_db: float = MIN_CHANNEL_SNR_DB) -> dict[str, str]:
    """Tensors whose quantization destroys information, with the reason."""
    bad = {}
    for t, e in errors.items():
        worst = min(e["sqnr_db"], e.get("bulk_sqnr_db", math.inf))
        if worst < min_sqnr_db:
            bad[t] = f"quantizing it leaves {worst:.1f} dB SQNR (< {min_sqnr_db:g} dB): its range is dominated by extreme values"
        elif e.get("worst_channel_snr_db", math.inf) < min_channel_snr_db:
            bad[t] = (f"one grid for the whole tensor wipes out its small-range channels (worst channel "
                      f"{e['worst_channel_snr_db']:.1f} dB < {min_channel_snr_db:g} dB), e.g. boxes next to probabilities")
    return bad


def output_errors(float_model: onnx.ModelProto, fake_model: onnx.ModelProto, feeds: list[dict]) -> dict[str, dict]:
    """End-to-end error of each model output: cosine and SQNR of fake-quant vs float."""
    if not feeds:
        return {}
    a = make_session(float_model, options=_lean_options())  # one session at a time: big models
    names = [o.name for o in a.get_outputs()]
    ra = [a.run(names, f) for f in feeds]
    del a
    b = make_session(fake_model, options=_lean_options())
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
        denom = np.linalg.norm(x) * np.linalg.norm(y)
        res[n] = {"cosine": float(x @ y / denom) if denom > 0 else (1.0 if np.array_equal(x, y) else 0.0),
                  "sqnr_db": sqnr_db(x, y), "max_abs_error": float(np.abs(x - y).max()) if x.size else 0.0}
    return res


# -- the output check: layers whose quantization the outputs cannot afford ---------------------------

#: Default end-to-end target: the fake-quant outputs keep at least this SQNR against the float
#: outputs on the calibration samples (15 dB: cosine ~0.985), else the most harmful quantized
#: layers/tensors are left float until they do. Chosen by measurement on the real-model set and
#: EfficientNet (README "the safety net"): every model whose task check passes fully int8 sits at
#: 14-130 dB, PP-OCR's recognizer, whose decoded strings break, at 10 dB.
MIN_OUTPUT_SQNR_DB = 15.0

_GATES = "amct_nb_gates"


@dataclass
class Unit:
    """What one gate switches: a layer's weights (and its input grid when no other layer reads it),
    or one tensor grid that belongs to no single layer."""

    kind: str  # "layer" | "tensor"
    name: str
    tensors: list[str]
    weight_of: str | None = None
    harm_db: float = math.inf  # output SQNR with only this unit quantized


def _units(plan) -> list[Unit]:
    readers: dict[str, list[str]] = {}
    for n, l in plan.layers.items():
        readers.setdefault(l.activation, []).append(n)
    units, owned = [], set()
    for n, l in plan.layers.items():
        own = [l.activation] if readers.get(l.activation) == [n] and l.activation in plan.tensors else []
        owned.update(own)
        units.append(Unit("layer", n, own, weight_of=n))
    units += [Unit("tensor", t, [t]) for t in plan.tensors if t not in owned]
    return units


def _gated_model(model: onnx.ModelProto, plan, units: list[Unit]) -> onnx.ModelProto:
    """The float model with every quantization of ``units`` behind a gate: ``x + g * (fq(x) - x)``.

    Gate ``g_u = gates[u]`` is a graph input, so one ONNX Runtime session measures any subset of
    units (0: float, 1: quantized). Tensors go through QuantizeLinear/DequantizeLinear with their
    grid; weights add ``g * (dequantized int8 weights - weights)``."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    inits = {t.name: t for t in g.initializer}
    head, after, rename = [], {}, {}
    new_inits = [numpy_helper.from_array(np.array(i, np.int64), f"{_GATES}_i{i}") for i in range(len(units))]
    layer_rename: dict[str, tuple[int, str]] = {}
    for i, u in enumerate(units):
        gu = f"{_GATES}_{i}"
        head.append(helper.make_node("Gather", [_GATES, f"{_GATES}_i{i}"], [gu], name=f"{gu}_Gather", axis=0))
        for t in u.tensors:
            tq = plan.tensors[t]
            p = f"{t}_gfq"
            new_inits += [numpy_helper.from_array(np.array(tq.scale, np.float32), f"{p}_s"),
                          numpy_helper.from_array(np.array(tq.zero_point, np.dtype(tq.dtype)), f"{p}_z")]
            chain = [helper.make_node("QuantizeLinear", [t, f"{p}_s", f"{p}_z"], [f"{p}_q"], name=f"{p}_Q"),
                     helper.make_node("DequantizeLinear", [f"{p}_q", f"{p}_s", f"{p}_z"], [f"{p}_dq"], name=f"{p}_DQ"),
                     helper.make_node("Sub", [f"{p}_dq", t], [f"{p}_d"], name=f"{p}_Sub"),
                     helper.make_node("Mul", [f"{p}_d", gu], [f"{p}_gd"], name=f"{p}_Mul"),
                     helper.make_node("Add", [t, f"{p}_gd"], [f"{p}_out"], name=f"{p}_Add")]
            after.setdefault(t, []).extend(chain)
            rename[t] = f"{p}_out"
        if u.weight_of is not None:
            l = plan.layers[u.weight_of]
            w = numpy_helper.to_array(inits[l.weight]).astype(np.float32)
            shape = [1] * w.ndim
            if l.axis is not None:
                shape[l.axis] = -1
            delta = l.w_q.astype(np.float32) * np.asarray(l.w_scale, np.float32).reshape(shape) - w
            p = f"{l.name}_gw"
            new_inits.append(numpy_helper.from_array(delta.astype(np.float32), f"{p}_delta"))
            head += [helper.make_node("Mul", [f"{p}_delta", gu], [f"{p}_gd"], name=f"{p}_Mul"),
                     helper.make_node("Add", [l.weight, f"{p}_gd"], [f"{p}_w"], name=f"{p}_Add")]
            layer_rename[l.name] = (l.weight_index, f"{p}_w")
    produced = {o for n in g.node for o in n.output}
    for t in list(after):  # graph inputs and initializers: their chain runs first
        if t not in produced:
            head += after.pop(t)
    out = list(head)
    for n in g.node:
        if n.name in layer_rename:
            k, nw = layer_rename[n.name]
            n.input[k] = nw
        for k, x in enumerate(n.input):
            if x in rename and not (n.name in layer_rename and k == layer_rename[n.name][0]):
                n.input[k] = rename[x]
        out.append(n)
        for o in n.output:
            out += after.get(o, [])
    del g.node[:]  # the chains read the original tensors: only the model's own nodes were rewired
    g.node.extend(out)
    g.initializer.extend(new_inits)
    g.input.append(helper.make_tensor_value_info(_GATES, onnx.TensorProto.FLOAT, [len(units)]))
    return m


@dataclass
class OutputCheck:
    target_db: float
    before_db: float  # all units quantized (gated model, calibration samples)
    after_db: float  # after the fallback
    units: list[Unit]
    fallen: list[Unit]
    seconds: float = 0.0
    groups: int = 0  # units were measured in this many groups (== len(units): one by one)

    def as_dict(self) -> dict:
        return {"target_sqnr_db": self.target_db, "before_sqnr_db": _r(self.before_db), "after_sqnr_db": _r(self.after_db),
                "left_float": [{"kind": u.kind, "name": u.name, "alone_output_sqnr_db": _r(u.harm_db)} for u in self.fallen],
                "units": len(self.units), "groups": self.groups}  # no timing: reports of reruns are byte-identical


def _r(x: float):
    return round(x, 2) if math.isfinite(x) else (None if math.isnan(x) else ("inf" if x > 0 else "-inf"))


def _first_samples(feeds: list[dict], n: int) -> list[dict]:
    """The feeds that hold the first ``n`` samples (the last one cut), batches kept as they are."""
    out, have = [], 0
    for f in feeds:
        if have >= n:
            break
        vals = list(f.values())
        b = vals[0].shape[0] if vals and vals[0].ndim else 1
        batched = b > 1 and all(v.ndim and v.shape[0] == b for v in vals)
        take = min(b, n - have) if batched else 1
        out.append({k: v[:take] for k, v in f.items()} if batched and take < b else f)
        have += take
    return out


#: The search aims this much above the target: the gated model (float Q/DQ) and the fake-quant
#: model (integer-domain layers, int32 bias) differ by a fraction of a dB.
OUTPUT_MARGIN_DB = 1.0


def output_check(model: onnx.ModelProto, plan, feeds: list[dict], target_db: float = MIN_OUTPUT_SQNR_DB,
                 max_samples: int = 8, sensitivity_samples: int = 2, progress: bool = False,
                 max_groups: int = 64) -> OutputCheck | None:
    """Which units to leave float so that the outputs keep ``target_db`` SQNR.

    One gated model and one session: measure the outputs with everything quantized; if below the
    target, measure each unit alone (its harm, on ``sensitivity_samples`` samples), then
    binary-search the smallest number of most harmful units to leave float so that the rest meets
    the target (plus a margin) on ``max_samples`` samples."""
    import time

    t0 = time.perf_counter()
    if is_large(model):  # the gated model would hold every weight twice: not for models over 2 GB
        return None
    units = _units(plan)
    samples = _first_samples(feeds, max_samples)
    few = _first_samples(feeds, sensitivity_samples)
    if not units or not samples:
        return None
    sess = make_session(_gated_model(model, plan, units), options=_lean_options())
    outs = [o.name for o in sess.get_outputs() if o.type in ("tensor(float)", "tensor(double)", "tensor(float16)")]
    if not outs:
        return None
    zero = np.zeros(len(units), np.float32)
    ref = [sess.run(outs, {**f, _GATES: zero}) for f in samples]

    ref_few = [sess.run(outs, {**f, _GATES: zero}) for f in few]

    def sqnr(gates, sens=False) -> float:
        worst = math.inf
        sig = np.zeros(len(outs))
        noise = np.zeros(len(outs))
        for f, r in zip(*((few, ref_few) if sens else (samples, ref))):
            for j, y in enumerate(sess.run(outs, {**f, _GATES: gates})):
                x = r[j].astype(np.float64)
                fin = np.isfinite(x) & np.isfinite(y)
                sig[j] += float((x[fin] ** 2).sum())
                noise[j] += float(((y[fin] - x[fin]) ** 2).sum()) + float((~np.isfinite(y) & np.isfinite(x)).sum()) * 1e30
        for s_, n_ in zip(sig, noise):
            if s_ > 0:
                worst = min(worst, math.inf if n_ == 0 else 10 * math.log10(s_ / n_))
        return worst

    ones = np.ones(len(units), np.float32)
    before = sqnr(ones)
    chk = OutputCheck(target_db, before, before, units, [])
    if before >= target_db:
        chk.seconds = time.perf_counter() - t0
        return chk
    # harm of each unit alone; past ``max_groups`` units (hundreds of layers), of that many groups of
    # consecutive units (graph order), left float together: bounded time, same result every run
    n_groups = min(len(units), max_groups)
    groups = [list(g) for g in np.array_split(np.arange(len(units)), n_groups) if len(g)]
    it = groups
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(it, desc="output check", unit="unit", leave=False)
    harm = []
    for g in it:
        one = zero.copy()
        one[g] = 1
        h = sqnr(one, sens=True)
        harm.append(h)
        for i in g:
            units[i].harm_db = h
    order_g = sorted(range(len(groups)), key=lambda k: harm[k])

    def gates_without(k):
        gts = ones.copy()
        for gi in order_g[:k]:
            gts[groups[gi]] = 0
        return gts

    lo, hi = 0, len(groups)  # lo fails, hi (all float) passes
    best = math.inf
    while hi - lo > 1:
        mid = (lo + hi) // 2
        s = sqnr(gates_without(mid))
        if s >= target_db + OUTPUT_MARGIN_DB:
            hi, best = mid, s
        else:
            lo = mid
    order = [i for gi in order_g for i in groups[gi]]
    hi = sum(len(groups[gi]) for gi in order_g[:hi])
    chk.fallen = [units[i] for i in order[:hi]]
    chk.after_db = best if hi < len(units) else math.inf
    chk.groups = len(groups)
    chk.seconds = time.perf_counter() - t0
    return chk
