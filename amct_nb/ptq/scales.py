"""Statistics and settings to scales: the record (AMCT's record.txt) of a calibration.

For every quant point a clip range (the layer's range algorithm on the tensor's statistics) and
its grid; for every layer its weight scales. Tensors with no statistics, with NaN/Inf by design
or with no finite values stay float, and so do the layers that read them, and layers whose int32
bias would overflow; the layer selection and quant points are recomputed until nothing changes.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import onnx

from ..config import LayerConfig, QuantConfig
from ..errors import ConfigError
from ..ir import GraphIndex
from ..ops import Layer
from ..quant import BIAS_LIMIT, TensorStats, compute_qparams, compute_range, quantize_bias
from ..reasons import Code, Reason
from ..record import TENSOR_PREFIX, LayerRecord, Record
from .plan import range_spec
from .points import quant_points, select_layers
from .weights import bias_correction, input_moments, layer_weight

__all__ = ["record_from_stats", "needs_channel_moments"]


def needs_channel_moments(config: QuantConfig, layers: list[Layer]) -> bool:
    """Whether calibration should keep per-channel moments of the layers' inputs
    (``collect_stats(..., channel_moments=True)``): non-uniform weights weigh their error by them,
    bias correction needs their means."""
    on = [l for l in layers if l.quantizable and config.for_layer(l.name, l.op_type).quant_enable]
    return any(config.for_layer(l.name, l.op_type).nuq for l in on) or (
        config.bias_correction and any(l.bias is not None for l in on))


def _tensor_float(st: TensorStats | None) -> Reason | None:
    """Why a tensor with these statistics cannot be quantized (None: it can)."""
    if st is None:
        return Reason(Code.NO_STATS, "no statistics were collected for it")
    if st.nonfinite:
        return Reason(Code.NONFINITE,
                      f"holds non-finite values ({st.nan} NaN, {st.posinf} +inf, {st.neginf} -inf) by design")
    if st.empty:
        return Reason(Code.EMPTY, "no finite values observed")
    return None


def record_from_stats(
    model: onnx.ModelProto, layers: list[Layer], cfg: QuantConfig, stats: Mapping[str, TensorStats],
    guard: str = "none", force_float: dict[str, Reason] | None = None, force_layers: dict[str, Reason] | None = None,
    cache: dict | None = None,
) -> tuple[Record, dict[str, Reason], dict[str, Reason]]:
    """Ranges -> scales for every quant point and weight; returns (record, float layers, float tensors).

    ``force_float`` tensors and ``force_layers`` layers stay float with the given reasons."""
    idx = GraphIndex(model.graph)
    extra_off: dict[str, Reason] = dict(force_layers or {})
    float_tensors: dict[str, Reason] = {}
    signed = cfg.activation_dtype == "int8"
    while True:
        on, off = select_layers(layers, cfg, extra_off)
        pts = quant_points(model, on, cfg.quantize_outputs, cfg.quantize_activation_matmul)
        # which config decides each tensor's range: its first consuming layer, else its producer
        owner: dict[str, LayerConfig] = {}
        for l in on:
            owner.setdefault(l.activation, cfg.for_layer(l.name, l.op_type))
        for l in on:
            owner.setdefault(l.output, cfg.for_layer(l.name, l.op_type))
        qp: dict[str, tuple] = {}
        for t in pts:
            why = (force_float or {}).get(t) or _tensor_float(stats.get(t))
            if why:
                float_tensors[t] = why
                continue
            spec = range_spec(cfg, owner.get(t, cfg.default))
            lo, hi = compute_range(stats[t], spec)
            qp[t] = compute_qparams(lo, hi, bits=spec.bits, symmetric=spec.symmetric, signed=spec.signed)
        changed = False
        for l in on:
            if l.activation not in qp:
                extra_off[l.name] = Reason(Code.INPUT_FLOAT, f"its input {l.activation} stays float: "
                                                             f"{float_tensors.get(l.activation, '')}")
                changed = True
        if changed:
            continue
        wscales, corrections = {}, {}
        for l in on:
            lc = cfg.for_layer(l.name, l.op_type)
            st = stats.get(l.activation)
            if lc.nuq and st is not None and not st.channels:
                raise ConfigError(f"layer {l.name} takes non-uniform weights, which weigh their error by per-channel "
                                  "moments of the layer's input: calibrate with collect_stats(..., "
                                  "channel_moments=True) (quantize(), the CLI and the AMCT API do)")
            moments = st.channel_moments() if st is not None and (lc.nuq or cfg.bias_correction) else None
            qw = layer_weight(idx, l, lc, guard, scale_x=qp[l.activation][0],
                              moments=moments if lc.nuq else None, cache=cache)
            if l.bias is not None:
                b = idx.array(l.bias).reshape(-1)
                im = input_moments(idx, l, moments, None if lc.nuq else st.shape) if moments is not None else None
                if im is not None:  # the mean shift the weights' rounding causes goes into the bias
                    # float32, as the record writes it: a record read back gives the same int32 bias
                    c = bias_correction(idx, l, qw, im[0]).astype(np.float32).astype(np.float64)
                    bc = np.broadcast_to(b, c.shape) + c
                    _, bs, _ = quantize_bias(bc, qp[l.activation][0], qw.scale)
                    # a channel whose corrected bias would leave the int32 headroom (a weight scale near 0)
                    # keeps its own bias
                    c = np.where(np.abs(bc / bs.astype(np.float64)) <= BIAS_LIMIT, c, 0.0)
                    corrections[l.name] = c
                    b = np.broadcast_to(b, c.shape) + c
                _, _, fits = quantize_bias(b, qp[l.activation][0], qw.scale)
                if not fits:
                    extra_off[l.name] = Reason(Code.BIAS_OVERFLOW,
                                               "its int32 bias would overflow (tiny input or weight scale)")
                    changed = True
                    continue
            wscales[l.name] = qw
        if changed:
            continue
        rec = Record()
        for l in on:
            s, z = qp[l.activation]
            qw = wscales[l.name]
            sw = np.atleast_1d(qw.scale)
            rec.layers[l.name] = LayerRecord(scale_d=float(s), offset_d=int(z if signed else z - 128),
                                             scale_w=[float(v) for v in sw], offset_w=[0] * sw.size,
                                             levels=list(qw.codebook or ()),
                                             bias_correction=[float(v) for v in corrections.get(l.name, ())])
        inputs = {l.activation for l in on}
        for t in pts:
            if t in qp and t not in inputs:
                s, z = qp[t]
                rec.layers[TENSOR_PREFIX + t] = LayerRecord(scale_d=float(s), offset_d=int(z if signed else z - 128))
        return rec, off, float_tensors
