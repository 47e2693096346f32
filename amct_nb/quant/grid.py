"""Quantization arithmetic: the one place that turns ranges into (scale, zero point).

Conventions (those of ONNX QuantizeLinear / DequantizeLinear)::

    q = clamp(round_half_even(x / scale) + zero_point, qmin, qmax)
    x_hat = (q - zero_point) * scale

AMCT's record writes the zero point as a *signed* offset (``offset_d``), i.e. the zero point on
the int8 grid [-128, 127]; the uint8 zero point used by the deploy model is ``offset_d + 128``.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["BIAS_LIMIT", "bias_min_scale", "qrange", "compute_qparams", "fake_quantize", "quantize_weight",
           "quantize_bias"]

_TINY_SCALE = 1e-12


def qrange(bits: int = 8, signed: bool = False, narrow: bool = False) -> tuple[int, int]:
    """Integer grid of a ``bits``-bit type: signed [-2^(b-1), 2^(b-1)-1] or unsigned [0, 2^b-1].

    ``narrow`` drops the most negative signed value (symmetric [-127, 127] for 8 bits).
    """
    if signed:
        lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
        return (lo + 1 if narrow else lo), hi
    return 0, 2**bits - 1


def compute_qparams(
    lo: float, hi: float, *, bits: int = 8, symmetric: bool = False, signed: bool = False
) -> tuple[np.float32, int]:
    """Scale and zero point that cover [lo, hi] on a ``bits``-bit grid.

    The range is widened to contain 0 so that zero is exact (padding, ReLU outputs).
    Asymmetric: ``scale = (hi - lo) / (qmax - qmin)``, ``zp = qmin - round(lo / scale)``.
    Symmetric: ``scale = max(|lo|, |hi|) / ((qmax - qmin) // 2)`` and the zero point sits in the
    middle of the grid (0 for signed, 2^(b-1) for unsigned).
    Degenerate input (empty, constant zero, or non-finite range) gives scale 1.0 and the
    zero point of 0.0, so every scale is finite and positive.
    """
    qmin, qmax = qrange(bits, signed)
    lo = float(lo) if math.isfinite(lo) else 0.0
    hi = float(hi) if math.isfinite(hi) else 0.0
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    if symmetric:
        half = (qmax - qmin) // 2
        amax = max(-lo, hi)
        zp = 0 if signed else (qmax + 1) // 2
        if amax <= 0.0:
            return np.float32(1.0), zp
        return np.float32(max(amax / half, _TINY_SCALE)), zp
    if hi - lo <= 0.0:
        return np.float32(1.0), qmin
    scale = np.float32(max((hi - lo) / (qmax - qmin), _TINY_SCALE))
    zp = int(round(qmin - lo / float(scale)))
    return scale, int(min(max(zp, qmin), qmax))


def fake_quantize(x: np.ndarray, scale, zero_point, qmin: int, qmax: int) -> np.ndarray:
    """Quantize-dequantize in float32 exactly as QuantizeLinear then DequantizeLinear do."""
    s = np.float32(scale)
    q = np.clip(np.round(x.astype(np.float32) / s) + np.float32(zero_point), qmin, qmax)
    return ((q - np.float32(zero_point)) * s).astype(np.float32)


def quantize_weight(
    w: np.ndarray, axis: int | None, *, bits: int = 8, clip: np.ndarray | None = None,
    min_scale: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric weight quantization, per channel along ``axis`` (or per tensor when None).

    ``scale_c = max|w_c| / (2^(b-1) - 1)`` (or ``clip_c / ...`` when a clip is given) and
    ``q = clamp(round(w / scale_c), -(2^(b-1)-1), 2^(b-1)-1)``: the narrow signed grid keeps
    weights symmetric and away from -128. All-zero channels get scale 1.
    Returns (q as int8/int32 array shaped like ``w``, float32 scales of shape [C] or []).
    """
    qmax = 2 ** (bits - 1) - 1
    w = np.asarray(w, dtype=np.float32)
    if axis is None:
        amax = np.array(np.abs(w).max() if w.size else 0.0, dtype=np.float64)
    else:
        axis = axis % w.ndim
        red = tuple(i for i in range(w.ndim) if i != axis)
        amax = np.abs(w).max(axis=red).astype(np.float64) if w.size else np.zeros(w.shape[axis])
    if clip is not None:
        amax = np.minimum(amax, np.asarray(clip, dtype=np.float64))
    scale = np.where(amax > 0, np.maximum(amax / qmax, _TINY_SCALE), 1.0)
    if min_scale is not None:
        scale = np.maximum(
            scale, np.asarray(min_scale, np.float64).reshape(scale.shape) if np.ndim(min_scale) else min_scale
        )
    scale = scale.astype(np.float32)
    shape = [1] * w.ndim
    if axis is not None:
        shape[axis] = -1
    q = np.clip(np.round(w / scale.reshape(shape)), -qmax, qmax)
    dtype = np.int8 if bits <= 8 else np.int32
    return q.astype(dtype), scale


#: Largest |int32 bias| allowed; half the int32 range leaves room for the accumulated products.
BIAS_LIMIT = 2**30


def bias_min_scale(b: np.ndarray, scale_x: float, per_channel: bool) -> np.ndarray:
    """Smallest weight scale(s) for which ``round(b / (scale_x * scale_w))`` stays within BIAS_LIMIT."""
    need = np.abs(np.asarray(b, np.float64).reshape(-1)) / (float(scale_x) * BIAS_LIMIT) * (1 + 1e-6)
    return need if per_channel else np.array(need.max() if need.size else 0.0)


def quantize_bias(b: np.ndarray, scale_x: float, scale_w: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool]:
    """int32 bias at ``scale_x * scale_w``: returns (q_bias, bias_scale, fits_int32)."""
    bs = (np.float32(scale_x) * np.asarray(scale_w, dtype=np.float32)).astype(np.float32)
    bs = np.broadcast_to(bs, np.shape(b)).astype(np.float32) if bs.ndim else np.full(np.shape(b), bs, np.float32)
    qf = np.round(np.asarray(b, dtype=np.float64) / bs.astype(np.float64))
    fits = bool(np.all(np.abs(qf) <= BIAS_LIMIT))
    return np.clip(qf, -(2**31) + 1, 2**31 - 1).astype(np.int32), bs, fits
