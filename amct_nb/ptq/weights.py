"""One layer's weight through its config's weight scheme, with the int32 bias constraint and a cache.

The scheme (``wts_algo``, see :mod:`amct_nb.quant.weights`) gets the float weight, the layer's
channel axis and reduction layout (from the op registry), the guard, and the smallest scales that
keep the int32 bias ``round(b / (scale_x * scale_w))`` in range. Results are memoized in the
prepared model's ``weight_cache`` (they are never modified in place), so a rebuild after a small
change re-quantizes only what changed.
"""

from __future__ import annotations

import numpy as np

from ..config import LayerConfig
from ..errors import ConfigError
from ..ir import GraphIndex, attr
from ..ops import OPS, Layer
from ..quant import QuantizedWeight, WeightTask, bias_min_scale, get_scheme, pair_guard

__all__ = ["layer_weight", "given_weight", "input_moments", "tap_coverage", "bias_correction", "CACHE_ENTRIES"]

#: Most weight quantizations kept per cache.
CACHE_ENTRIES = 512


def tap_coverage(node, in_spatial, kernel) -> np.ndarray | None:
    """For a Conv over an input of spatial size ``in_spatial``: the share of output positions at which each
    kernel tap reads the input rather than zero padding (shape ``kernel``). A 3x3 kernel over a map one
    row high reads padding with its top and bottom rows everywhere: 0 there. None when a size is unknown."""
    if len(in_spatial) != len(kernel) or any(not isinstance(n, (int, np.integer)) or n <= 0 for n in in_spatial):
        return None
    nd = len(kernel)
    strides = list(attr(node, "strides", [1] * nd))
    dil = list(attr(node, "dilations", [1] * nd))
    pads = list(attr(node, "pads", [0] * (2 * nd)))
    auto = attr(node, "auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else str(auto)
    cover = np.ones((), np.float64)
    for d, (n, k) in enumerate(zip(in_spatial, kernel)):
        s, dl = int(strides[d]), int(dil[d])
        if auto in ("SAME_UPPER", "SAME_LOWER"):
            total = max((-(-n // s) - 1) * s + (k - 1) * dl + 1 - n, 0)
            begin = total // 2 if auto == "SAME_UPPER" else total - total // 2
            end = total - begin
        elif auto == "VALID":
            begin = end = 0
        else:
            begin, end = int(pads[d]), int(pads[d + nd])
        out = (n + begin + end - dl * (k - 1) - 1) // s + 1
        if out <= 0:
            return None
        pos = np.arange(out)[:, None] * s - begin + np.arange(k)[None, :] * dl
        share = ((pos >= 0) & (pos < n)).mean(axis=0)
        cover = np.multiply.outer(cover, share)
    return cover


def input_moments(idx: GraphIndex, layer: Layer, moments, in_shape=None) -> tuple[np.ndarray, np.ndarray] | None:
    """(mean, mean square) of the input each weight element multiplies, shaped to broadcast against
    the weight, from per-channel moments of the layer's input (None when they do not fit). With the
    input's shape (``in_shape``, NC...), a Conv's taps that read zero padding at some output positions
    count it (:func:`tap_coverage`)."""
    if moments is None:
        return None
    mean, sq = (np.asarray(m, np.float64) for m in moments)
    shape = tuple(layer.weight_shape)
    node = idx.node(layer.name)
    if layer.op_type == "Conv":
        group = int(attr(node, "group", 1))
        o, ipg = shape[0], shape[1]
        if mean.size != ipg * group:
            return None
        chan = (np.arange(o)[:, None] // (o // group)) * ipg + np.arange(ipg)[None, :]
        expand = (o, ipg) + (1,) * (len(shape) - 2)
        m, q = mean[chan].reshape(expand), sq[chan].reshape(expand)
        cover = tap_coverage(node, tuple(in_shape[2:]), shape[2:]) if in_shape is not None and len(shape) > 2 \
            else None
        if cover is not None:
            m, q = m * cover, q * cover
        return m, q
    k_axis = 1 if layer.op_type == "Gemm" and int(attr(node, "transB", 0)) else 0
    if len(shape) != 2 or mean.size != shape[k_axis]:
        return None
    view = (1, -1) if k_axis == 1 else (-1, 1)
    return mean.reshape(view), sq.reshape(view)


def bias_correction(idx: GraphIndex, layer: Layer, qw: QuantizedWeight, mean: np.ndarray) -> np.ndarray:
    """Per output channel, what the weights' quantization shifts the layer's output by on average,
    ``sum (w - q s) * E[x]`` (kernel positions summed): added to the bias, the mean error vanishes."""
    w = idx.array(layer.weight).astype(np.float64)
    shape = [1] * w.ndim
    if qw.axis is not None:
        shape[qw.axis] = -1
    d = (w - qw.q.astype(np.float64) * np.asarray(qw.scale, np.float64).reshape(shape)) * mean
    out_axis = OPS[layer.op_type].channel_axis(idx.node(layer.name), w)
    return d.sum(axis=tuple(i for i in range(w.ndim) if i != out_axis))


def layer_weight(idx: GraphIndex, layer: Layer, lc: LayerConfig, guard: str, *, scale_x: float | None = None,
                 scale_w=None, codebook=None, moments=None, cache: dict | None = None) -> QuantizedWeight:
    """``layer``'s weight quantized as ``lc`` says: with ``scale_x`` (its input's scale) the bias
    constraint applies; with ``scale_w`` (from a record) the scales are given and only rounded (to
    ``codebook``, the levels a non-uniform scheme chose, when the record has them)."""
    key = (layer.name, layer.weight, layer.bias, lc.wts_algo, lc.wts_bits, lc.channel_wise, guard,
           None if scale_x is None else float(scale_x),
           None if scale_w is None else np.asarray(scale_w, np.float32).tobytes(),
           (lc.num_steps, lc.num_of_iteration, None if codebook is None else tuple(codebook),
            moments is not None) if lc.nuq else None)
    if cache is not None and key in cache:
        return cache[key]
    if lc.nuq and layer.op_type not in ("Conv", "Gemm", "MatMul"):
        raise ConfigError(f"layer {layer.name}: non-uniform weights (nuq_quantize) apply to Conv, Gemm and MatMul "
                          f"layers, not {layer.op_type}: use arq_quantize for it")
    spec = OPS[layer.op_type]
    node = idx.node(layer.name)
    w = idx.array(layer.weight).astype(np.float32)
    axis = spec.channel_axis(node, w) if lc.channel_wise else None
    min_scale = None
    if scale_x is not None and layer.bias is not None:
        b = idx.array(layer.bias).reshape(-1)
        n_out = spec.out_channels(node, w)
        b = np.broadcast_to(b, (n_out,)) if b.size == 1 else b
        min_scale = bias_min_scale(b, scale_x, axis is not None)
    im = input_moments(idx, layer, moments) if lc.nuq else None
    task = WeightTask(w, axis, lc.wts_bits, guard, lambda a: spec.kernel_rows(node, a), min_scale=min_scale,
                      scale=scale_w, where=layer.name, steps=lc.num_steps if lc.nuq else None,
                      iterations=lc.num_of_iteration, codebook=None if codebook is None else tuple(codebook),
                      energy=None if im is None else im[1])
    res = get_scheme(lc.wts_algo, f"layer {layer.name}").quantize(task)
    if cache is not None:
        if len(cache) >= CACHE_ENTRIES:
            cache.pop(next(iter(cache)))
        cache[key] = res
    return res


def given_weight(idx: GraphIndex, layer: Layer, q: np.ndarray, scale_w, lc: LayerConfig, guard: str) -> QuantizedWeight:
    """Integer weights a job already decided (a converted QAT model, a training run), taken as they
    are: checked against the layer (shape, int8 range, one scale per output channel or one in all)
    and changed only by the ``pairs`` saturation guard, which then counts the pairs it moved."""
    spec = OPS[layer.op_type]
    node = idx.node(layer.name)
    q = np.asarray(q)
    if q.shape != tuple(layer.weight_shape) or not np.issubdtype(q.dtype, np.integer):
        raise ConfigError(f"layer {layer.name}: given integer weights of shape {list(q.shape)} ({q.dtype}) do not fit "
                          f"its weight {list(layer.weight_shape)}")
    if q.size and (q.min() < -128 or q.max() > 127):
        raise ConfigError(f"layer {layer.name}: given weights span {int(q.min())}..{int(q.max())}, outside int8")
    scale = np.asarray(scale_w, np.float32).reshape(-1)
    axis = spec.channel_axis(node, q) if lc.channel_wise else None
    want = q.shape[axis] if axis is not None else 1
    if scale.size != want:
        raise ConfigError(f"record: layer {layer.name} has {scale.size} scale_w values but its weight needs {want} "
                          f"({'one per output channel' if axis is not None else 'per-tensor weights'})")
    q = q.astype(np.int8)
    fixed = 0
    if guard == "pairs" and spec.kernel_rows(node, np.zeros(q.shape, np.int8)) is not None:
        flat_idx = spec.kernel_rows(node, np.arange(q.size).reshape(q.shape))
        qf = q.reshape(-1).astype(np.int32)
        newq, fixed = pair_guard(qf[flat_idx], qf[flat_idx].astype(np.float64))
        if fixed:
            qf = qf.copy()
            qf[flat_idx] = newq
            q = qf.reshape(q.shape).astype(np.int8)
    return QuantizedWeight(q, scale if axis is not None else scale.reshape(()), axis, fixed)
