"""Decide what is quantized and with which numbers: the QuantPlan.

Which activation tensors get QuantizeLinear/DequantizeLinear (``quant_points``):
  * the activation input of every quantized layer;
  * the output of every quantized layer, moved past a single-consumer Relu/Clip (the runtime
    removes the activation when the quantized range already clips), so ONNX Runtime can fuse
    int8 kernels that also write int8 outputs; graph outputs stay float;
  * the other inputs and the output of an Add/Concat fed by those, so residual additions and
    concatenations run as int8 (QLinearAdd / QLinearConcat) instead of falling back to float.
The same list drives the deploy and the fake-quant models, which is why they compute the same
numbers.

Stats -> record -> plan: scales are first written to a :class:`~amct_nb.record.Record` (AMCT's
record.txt), and the plan is always built from a record, so quantizing in one go and AMCT's
``quantize_model`` / calibrate / ``save_model`` flow give identical models.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx

from .config import LayerConfig, QuantConfig
from .errors import ConfigError
from .model import GraphIndex
from .quant import bias_min_scale, compute_qparams, pair_guard, pair_safe_quantize, quantize_bias, quantize_weight
from .ranges import RangeSpec, compute_range
from .record import TENSOR_PREFIX, LayerRecord, Record
from .registry import OPS, Layer, attr

__all__ = ["TensorQuant", "LayerQuant", "QuantPlan", "quant_points", "record_from_stats", "plan_from_record", "range_spec"]

_PASS_ACTIVATIONS = ("Relu", "Clip")
_INT8_ELEMENTWISE = ("Add", "Concat")


@dataclass
class TensorQuant:
    name: str
    scale: np.float32
    zero_point: int
    dtype: str  # "uint8" | "int8"

    @property
    def lo(self) -> float:
        """Smallest value the grid represents."""
        qmin = 0 if self.dtype == "uint8" else -128
        return float((qmin - self.zero_point) * np.float64(self.scale))

    @property
    def hi(self) -> float:
        """Largest value the grid represents."""
        qmax = 255 if self.dtype == "uint8" else 127
        return float((qmax - self.zero_point) * np.float64(self.scale))


@dataclass
class LayerQuant:
    name: str
    op_type: str
    activation: str
    weight: str
    weight_index: int
    bias: str | None
    bias_index: int | None
    axis: int | None
    w_q: np.ndarray
    w_scale: np.ndarray
    b_q: np.ndarray | None = None
    b_scale: np.ndarray | None = None
    bias_shape: tuple = ()
    pairs_fixed: int = 0
    weight_bits: int = 8


@dataclass
class QuantPlan:
    tensors: dict[str, TensorQuant] = field(default_factory=dict)
    layers: dict[str, LayerQuant] = field(default_factory=dict)
    float_layers: dict[str, str] = field(default_factory=dict)  # layer -> why it stays float
    float_tensors: dict[str, str] = field(default_factory=dict)  # tensor -> why it stays float
    guard: str = "none"

    @property
    def pairs_fixed(self) -> int:
        return sum(l.pairs_fixed for l in self.layers.values())


def quant_points(model: onnx.ModelProto, layers: list[Layer], quantize_outputs: bool = True) -> list[str]:
    """Activation tensors to quantize for the given (enabled) layers, in graph order."""
    idx = GraphIndex(model.graph)
    outputs = set(idx.graph_outputs)
    pts: set[str] = set()
    for l in layers:
        pts.add(l.activation)
    if quantize_outputs:
        for l in layers:
            t = l.output
            while True:
                nxt = idx.single_consumer(t)
                if nxt is None or nxt.op_type not in _PASS_ACTIVATIONS or nxt.domain not in ("", "ai.onnx"):
                    break
                t = nxt.output[0]
            if t not in outputs:
                pts.add(t)
        for node in model.graph.node:
            if node.op_type not in _INT8_ELEMENTWISE or node.domain not in ("", "ai.onnx"):
                continue
            ins = [i for i in node.input if i and not idx.is_const(i)]
            if any(i in pts for i in ins) or node.output[0] in pts:
                pts.update(ins)
                if node.output[0] not in outputs:
                    pts.add(node.output[0])
    order = [i for i in idx.graph_inputs]
    for n in model.graph.node:
        order.extend(n.output)
    return [t for t in order if t in pts]


def range_spec(cfg: QuantConfig, lc: LayerConfig) -> RangeSpec:
    """The RangeSpec a layer's settings give its activation tensors."""
    return RangeSpec(
        algo=lc.act_algo, bits=lc.act_bits, symmetric=not cfg.asymmetric(lc),
        signed=cfg.activation_dtype == "int8", percentile=lc.percentile,
    )


def input_channels(layer: Layer) -> int | None:
    """Input channels per group of a non-depthwise convolution (None for other layers)."""
    s = layer.weight_shape
    if layer.op_type == "Conv" and len(s) >= 3 and s[1] > 1:
        return int(s[1])
    return None


def _enabled(layers: list[Layer], cfg: QuantConfig, extra_off: dict[str, str]) -> tuple[list[Layer], dict[str, str]]:
    on, off = [], {}
    for l in layers:
        k = input_channels(l)
        if not l.quantizable:
            off[l.name] = l.reason
        elif cfg.min_input_channels and k is not None and k < cfg.min_input_channels:
            off[l.name] = (f"{k} input channels < min_input_channels {cfg.min_input_channels} (an image stem): int8 is "
                           "slower than float here and the layer is sensitive (set min_input_channels: 0 to quantize it)")
        elif l.name in extra_off:
            off[l.name] = extra_off[l.name]
        elif not cfg.for_layer(l.name, l.op_type).quant_enable:
            off[l.name] = "disabled in the config (quant_enable: false)"
        else:
            on.append(l)
    return on, off


#: Most weight quantizations kept per cache (see ``cache`` of record_from_stats / plan_from_record).
_CACHE_ENTRIES = 512


def _weight_quant(model_idx: GraphIndex, node, layer: Layer, lc: LayerConfig, guard: str, scale_w=None, scale_x=None,
                  cache: dict | None = None):
    """int8 weights, scales, channel axis and pairs adjusted; memoized in ``cache`` (the results are
    never modified in place): a rebuild after a small change re-quantizes only what changed."""
    if cache is None:
        return _weight_quant_uncached(model_idx, node, layer, lc, guard, scale_w, scale_x)
    key = (layer.name, layer.weight, layer.bias, lc.wts_bits, lc.channel_wise, guard,
           None if scale_x is None else float(scale_x),
           None if scale_w is None else np.asarray(scale_w, np.float32).tobytes())
    hit = cache.get(key)
    if hit is None:
        hit = _weight_quant_uncached(model_idx, node, layer, lc, guard, scale_w, scale_x)
        if len(cache) >= _CACHE_ENTRIES:
            cache.pop(next(iter(cache)))
        cache[key] = hit
    return hit


def _weight_quant_uncached(model_idx: GraphIndex, node, layer: Layer, lc: LayerConfig, guard: str, scale_w=None,
                           scale_x=None):
    spec = OPS[layer.op_type]
    w = model_idx.array(layer.weight).astype(np.float32)
    axis = spec.channel_axis(node, w) if lc.channel_wise else None
    min_scale = None
    if scale_x is not None and layer.bias is not None:
        b = model_idx.array(layer.bias).reshape(-1)
        n_out = spec.out_channels(node, w)
        b = np.broadcast_to(b, (n_out,)) if b.size == 1 else b
        min_scale = bias_min_scale(b, scale_x, axis is not None)
    bits = lc.wts_bits
    rows_fn = spec.kernel_rows
    needs_guard = rows_fn(node, np.zeros(w.shape, np.int8)) is not None
    reduce = guard == "reduce_range" and needs_guard
    qmax = (2 ** (bits - 2) - 1) if reduce else (2 ** (bits - 1) - 1)
    if scale_w is None:
        q, scale = quantize_weight(w, axis, bits=bits - 1 if reduce else bits, min_scale=min_scale)
        if guard == "pairs" and needs_guard and axis is not None:
            # per-channel scale search under the pair constraint (weights in kernel order)
            flat_idx = rows_fn(node, np.arange(w.size).reshape(w.shape))
            wf = w.reshape(-1)
            row_scale = scale[_row_channel(flat_idx, w.shape, axis)]
            _, new_s, _ = pair_safe_quantize(wf[flat_idx], row_scale, bits=bits)
            scale = np.zeros_like(scale)
            scale[_row_channel(flat_idx, w.shape, axis)] = new_s
    else:
        scale = np.asarray(scale_w, np.float32).reshape(-1) if axis is not None else np.asarray(scale_w, np.float32).reshape(())
        shape = [1] * w.ndim
        if axis is not None:
            if scale.size != w.shape[axis]:
                raise ConfigError(
                    f"record: layer {layer.name} has {scale.size} scale_w values but its weight has "
                    f"{w.shape[axis]} output channels: the record belongs to another model or config"
                )
            shape[axis] = -1
        q = np.clip(np.round(w / scale.reshape(shape)), -qmax, qmax).astype(np.int8)
    fixed = 0
    if guard == "pairs" and needs_guard:
        shape = [1] * w.ndim
        if axis is not None:
            shape[axis] = -1
        real = w / scale.reshape(shape)
        flat_idx = rows_fn(node, np.arange(w.size).reshape(w.shape))
        qf = q.reshape(-1)
        rf = real.reshape(-1)
        newq, fixed = pair_guard(qf[flat_idx], rf[flat_idx])
        if fixed:
            qf = qf.copy()
            qf[flat_idx] = newq
            q = qf.reshape(w.shape).astype(np.int8)
    return q.astype(np.int8), np.asarray(scale, np.float32), axis, fixed


def _row_channel(flat_idx: np.ndarray, shape: tuple, axis: int) -> np.ndarray:
    """Output channel (index along ``axis``) of each kernel row."""
    return np.unravel_index(flat_idx[:, 0], shape)[axis]


def record_from_stats(
    model: onnx.ModelProto, layers: list[Layer], cfg: QuantConfig, stats: dict, guard: str = "none",
    force_float: dict[str, str] | None = None, force_layers: dict[str, str] | None = None, cache: dict | None = None,
) -> tuple[Record, dict[str, str], dict[str, str]]:
    """Ranges -> scales for every quant point and weight; returns (record, float_layers, float_tensors).

    Layers whose input holds no finite values or only infinities, and layers whose int32 bias
    would overflow, are left float with the reason; quant points are recomputed until stable.
    """
    idx = GraphIndex(model.graph)
    nodes = {n.name: n for n in model.graph.node}
    extra_off: dict[str, str] = dict(force_layers or {})
    float_tensors: dict[str, str] = {}
    while True:
        on, off = _enabled(layers, cfg, extra_off)
        pts = quant_points(model, on, cfg.quantize_outputs)
        # which config decides each tensor's range: its first consuming layer, else its producer
        owner: dict[str, LayerConfig] = {}
        for l in on:
            owner.setdefault(l.activation, cfg.for_layer(l.name, l.op_type))
        for l in on:
            owner.setdefault(l.output, cfg.for_layer(l.name, l.op_type))
        qp: dict[str, tuple] = {}
        changed = False
        for t in pts:
            st = stats.get(t)
            why = (force_float or {}).get(t)
            if why:
                pass
            elif st is None:
                why = "no statistics were collected for it"
            elif st.nonfinite:
                why = f"holds non-finite values ({st.nan} NaN, {st.posinf} +inf, {st.neginf} -inf) by design"
            elif st.empty:
                why = "no finite values observed"
            if why:
                float_tensors[t] = why
                continue
            lc = owner.get(t, cfg.default)
            spec = range_spec(cfg, lc)
            lo, hi = compute_range(st, spec)
            s, z = compute_qparams(lo, hi, bits=spec.bits, symmetric=spec.symmetric, signed=spec.signed)
            qp[t] = (s, z, lo, hi, spec.algo)
        for l in on:
            if l.activation not in qp:
                extra_off[l.name] = f"its input {l.activation} stays float: {float_tensors.get(l.activation, '')}"
                changed = True
        if changed:
            continue
        rec = Record()
        wq = {}
        for l in on:
            lc = cfg.for_layer(l.name, l.op_type)
            q, sw, axis, _ = _weight_quant(idx, nodes[l.name], l, lc, guard, scale_x=qp[l.activation][0], cache=cache)
            if l.bias is not None:
                _, _, fits = quantize_bias(idx.array(l.bias).reshape(-1), qp[l.activation][0], sw)
                if not fits:
                    extra_off[l.name] = "its int32 bias would overflow (tiny input or weight scale)"
                    changed = True
                    continue
            wq[l.name] = sw
        if changed:
            continue
        signed = cfg.activation_dtype == "int8"
        for l in on:
            s, z = qp[l.activation][:2]
            sw = wq[l.name]
            rec.layers[l.name] = LayerRecord(
                scale_d=float(s), offset_d=int(z if signed else z - 128),
                scale_w=[float(v) for v in np.atleast_1d(sw)], offset_w=[0] * np.atleast_1d(sw).size,
            )
        inputs = {l.activation for l in on}
        for t in pts:
            if t in qp and t not in inputs:
                s, z = qp[t][:2]
                rec.layers[TENSOR_PREFIX + t] = LayerRecord(scale_d=float(s), offset_d=int(z if signed else z - 128))
        return rec, {**off}, float_tensors


def plan_from_record(
    model: onnx.ModelProto, layers: list[Layer], cfg: QuantConfig, record: Record, guard: str = "none",
    float_layers: dict | None = None, float_tensors: dict | None = None, cache: dict | None = None,
) -> QuantPlan:
    """Weights, biases and tensor grids from a record (see module docstring)."""
    idx = GraphIndex(model.graph)
    nodes = {n.name: n for n in model.graph.node}
    by_name = {l.name: l for l in layers}
    signed = cfg.activation_dtype == "int8"
    dtype = "int8" if signed else "uint8"
    plan = QuantPlan(guard=guard, float_layers=dict(float_layers or {}), float_tensors=dict(float_tensors or {}))
    for key, r in record.layers.items():
        if key.startswith(TENSOR_PREFIX):
            continue
        if key not in by_name:
            raise ConfigError(f"record: layer '{key}' is not a quantizable layer of this model: the record belongs to another model")
        if r.scale_d is None or r.offset_d is None or not r.scale_w:
            raise ConfigError(f"record: layer '{key}' lacks scale_d/offset_d/scale_w: the calibration did not finish")
    for key, r in record.layers.items():
        if key.startswith(TENSOR_PREFIX):
            t = key[len(TENSOR_PREFIX):]
        else:
            t = by_name[key].activation
        if not (np.isfinite(r.scale_d) and r.scale_d > 0):
            raise ConfigError(f"record: '{key}' has scale_d {r.scale_d}: scales must be finite and positive")
        zp = int(r.offset_d) if signed else int(r.offset_d) + 128
        plan.tensors.setdefault(t, TensorQuant(t, np.float32(r.scale_d), zp, dtype))
    for key, r in record.layers.items():
        if key.startswith(TENSOR_PREFIX):
            continue
        l = by_name[key]
        lc = cfg.for_layer(l.name, l.op_type)
        spec = OPS[l.op_type]
        node = nodes[l.name]
        q, sw, axis, fixed = _weight_quant(idx, node, l, lc, guard, scale_w=r.scale_w, cache=cache)
        lq = LayerQuant(l.name, l.op_type, l.activation, l.weight, spec.weight_index, l.bias, spec.bias_index,
                        axis, q, sw, pairs_fixed=fixed, weight_bits=lc.wts_bits)
        if l.bias is not None:
            b = idx.array(l.bias)
            n_out = spec.out_channels(node, q)
            bflat = np.broadcast_to(b.reshape(-1), (n_out,)) if b.size in (1, n_out) else b.reshape(-1)
            bq, bs, fits = quantize_bias(bflat, plan.tensors[l.activation].scale, sw)
            if not fits:
                raise ConfigError(f"record: layer '{key}': the int32 bias overflows with these scales: skip the layer")
            lq.b_q, lq.b_scale, lq.bias_shape = bq, bs, (n_out,) if b.ndim <= 1 else (1, n_out)
        plan.layers[l.name] = lq
    # ordered like the graph for deterministic output
    order = {n.name: i for i, n in enumerate(model.graph.node)}
    plan.layers = dict(sorted(plan.layers.items(), key=lambda kv: order[kv[0]]))
    torder = {}
    for i, name in enumerate([*GraphIndex(model.graph).graph_inputs, *[o for n in model.graph.node for o in n.output]]):
        torder.setdefault(name, i)
    plan.tensors = dict(sorted(plan.tensors.items(), key=lambda kv: torder.get(kv[0], 1 << 30)))
    return plan
