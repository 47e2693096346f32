"""Non-uniform weights (AMCT's ``nuq_quantize``): each layer's int8 weights take at most ``num_steps`` values.

The levels are a subset of the 255 symmetric int8 values, so the deploy model still runs on ONNX
Runtime's int8 kernels unchanged (and the fake-quant model still equals it); what shrinks is the
information in the weights: with 16 or 32 distinct values they compress to 4-5 bits each.

For a layer with per-channel scales ``s_c`` and values ``r = w / s_c`` on the int8 grid:

1. :func:`optimal_levels` picks the ``num_steps`` integer levels that minimise ``sum (r - level(r))^2``
   exactly: 1-D k-means restricted to integer levels, solved by dynamic programming over a histogram
   of ``r`` whose bins (1/16) never straddle a decision boundary (the midpoint of two integers);
2. each channel's scale is refit to the assigned levels (least squares ``<w, q> / <q, q>``, never below
   the smallest scale the int32 bias allows), and step 1 runs again: ``num_of_iteration`` rounds;
3. with the saturation guard, adjacent weight pairs that int8 kernels without VNNI would saturate on
   are moved to the nearest pair of levels that fits (:func:`guard_on_levels`), so the guard never
   takes a weight off the codebook.
"""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError
from .guard import PAIR_LIMIT
from .weights import QuantizedWeight, Uniform, WeightTask, register_scheme

__all__ = ["NonUniform", "optimal_levels", "nearest_level", "guard_on_levels", "NUQ_STEPS"]

#: num_steps values AMCT accepts (and amct-nb implements).
NUQ_STEPS = (16, 32)
_QMAX = 127
_RES = 16  # histogram bins per integer step: midpoints between integers fall on bin edges


def _edges_index(v: np.ndarray | float) -> np.ndarray:
    """Bin-edge index of a grid position (integers and half-integers are edges)."""
    return np.rint((np.asarray(v, np.float64) + _QMAX + 0.5) * _RES).astype(np.int64)


def optimal_levels(r: np.ndarray, k: int, weights: np.ndarray | None = None) -> np.ndarray:
    """The ``k`` integer levels in [-127, 127] minimising the (weighted) squared distance of ``r`` to its
    nearest level; returns them sorted (fewer when ``r`` holds fewer distinct values)."""
    r = np.clip(np.asarray(r, np.float64).reshape(-1), -_QMAX - 0.5, _QMAX + 0.5 - 1e-9)
    wgt = np.ones_like(r) if weights is None else np.asarray(weights, np.float64).reshape(-1)
    nbins = (2 * _QMAX + 1) * _RES
    b = np.minimum(((r + _QMAX + 0.5) * _RES).astype(np.int64), nbins - 1)
    p0 = np.concatenate([[0.0], np.cumsum(np.bincount(b, weights=wgt, minlength=nbins))])
    p1 = np.concatenate([[0.0], np.cumsum(np.bincount(b, weights=wgt * r, minlength=nbins))])
    p2 = np.concatenate([[0.0], np.cumsum(np.bincount(b, weights=wgt * r * r, minlength=nbins))])
    levels = np.arange(-_QMAX, _QMAX + 1, dtype=np.float64)
    present = np.unique(np.clip(np.rint(r), -_QMAX, _QMAX))
    if present.size <= k:
        return present.astype(np.int64)
    e = _edges_index(levels)

    def cost(a, z, v):  # bins [a, z) assigned to level v
        return (p2[z] - p2[a]) - 2 * v * (p1[z] - p1[a]) + v * v * (p0[z] - p0[a])

    n = levels.size
    first = cost(np.zeros(n, np.int64), e, levels)  # everything left of level j goes to j
    last = cost(e, np.full(n, nbins), levels)  # everything right of level j goes to j
    ii, jj = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    mid = (e[ii] + e[jj]) // 2
    between = cost(e[ii], mid, levels[ii]) + cost(mid, e[jj], levels[jj])
    between[ii >= jj] = np.inf
    f = first.copy()
    back = np.zeros((k, n), np.int64)
    for step in range(1, k):
        tot = f[:, None] + between
        back[step] = np.argmin(tot, axis=0)
        f = tot[back[step], np.arange(n)]
    j = int(np.argmin(f + last))
    chosen = [j]
    for step in range(k - 1, 0, -1):
        j = int(back[step, j])
        chosen.append(j)
    return levels[np.array(chosen[::-1])].astype(np.int64)


def nearest_level(r: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """Each value of ``r`` rounded to its nearest level (ties to the lower level)."""
    lv = np.asarray(levels, np.float64)
    mids = (lv[1:] + lv[:-1]) / 2.0
    return lv[np.searchsorted(mids, np.asarray(r, np.float64), side="left")]


def guard_on_levels(q: np.ndarray, real: np.ndarray, levels: np.ndarray, limit: int = PAIR_LIMIT):
    """The saturation guard on a codebook: every adjacent same-signed pair of ``q`` ([C, K] in kernel
    order) with ``|a| + |b| > limit`` becomes the pair of levels, within the limit, nearest (least
    squares) to the real values. Returns (fixed copy, pairs changed)."""
    q = np.array(q, np.int32, copy=True)
    kk = q.shape[1] - (q.shape[1] % 2)
    a, b = q[:, 0:kk:2], q[:, 1:kk:2]
    bad = ((a > 0) & (b > 0) & (a + b > limit)) | ((a < 0) & (b < 0) & (-(a + b) > limit))
    n = int(bad.sum())
    if n == 0:
        return q, 0
    lv = np.asarray(levels, np.int64)
    cand_a, cand_b = np.meshgrid(lv, lv, indexing="ij")
    ok = ~(((cand_a > 0) & (cand_b > 0) & (cand_a + cand_b > limit))
           | ((cand_a < 0) & (cand_b < 0) & (-(cand_a + cand_b) > limit)))
    ca, cb = cand_a[ok].astype(np.float64), cand_b[ok].astype(np.float64)
    ra, rb = real[:, 0:kk:2][bad], real[:, 1:kk:2][bad]
    best = np.empty(ra.size, np.int64)
    step = max(1, (1 << 22) // max(ca.size, 1))  # pairs per chunk: a few MB of distances at a time
    for i in range(0, ra.size, step):
        err = (ra[i:i + step, None] - ca[None, :]) ** 2 + (rb[i:i + step, None] - cb[None, :]) ** 2
        best[i:i + step] = np.argmin(err, axis=1)
    a[bad] = ca[best].astype(np.int32)
    b[bad] = cb[best].astype(np.int32)
    q[:, 0:kk:2], q[:, 1:kk:2] = a, b
    return q, n


class NonUniform(Uniform):
    """AMCT's ``nuq_quantize`` (see the module docstring); ``task.steps`` levels, ``task.iterations``
    rounds of scale refit, ``task.codebook`` (from a record) fixes the levels."""

    name = "nuq_quantize"

    def check(self, bits: int) -> str | None:
        return None if bits == 8 else f"weight num_bits {bits} is not supported for non-uniform weights: use 8"

    def quantize(self, t: WeightTask) -> QuantizedWeight:
        steps = t.steps or 32
        if steps not in NUQ_STEPS:
            raise ConfigError(f"layer {t.where}: num_steps {steps} is not supported: AMCT's NUQ takes 16 or 32 levels")
        if t.guard == "reduce_range":
            raise ConfigError(f"layer {t.where}: non-uniform weights cannot use the reduce_range saturation guard "
                              "(7-bit weights): use saturation_guard 'always', 'auto' or 'off'")
        w, axis = t.weight, t.axis
        shape = [1] * w.ndim
        if axis is not None:
            shape[axis] = -1
        if t.scale is not None:  # from a record: the scales and the levels are given
            scale = np.asarray(t.scale, np.float32).reshape(-1 if axis is not None else ())
            levels = np.asarray(t.codebook if t.codebook is not None else
                                optimal_levels(w / scale.reshape(shape), steps), np.int64)
            return self._final(t, scale, levels, shape)
        # start from the uniform scheme's scales: with the pairs guard, the per-channel scales its search
        # found so that few adjacent pairs exceed the limit; the refit never goes below them then
        first = super().quantize(WeightTask(w, axis, t.bits, t.guard, t.rows, min_scale=t.min_scale, where=t.where))
        scale = np.asarray(first.scale, np.float64)
        floor = None if t.min_scale is None else np.asarray(t.min_scale, np.float64).reshape(scale.shape)
        if t.guard == "pairs":
            floor = scale.copy() if floor is None else np.maximum(floor, scale)
        red = tuple(i for i in range(w.ndim) if i != axis) if axis is not None else None
        w64 = w.astype(np.float64)
        e = np.ones(w.shape) if t.energy is None else np.broadcast_to(np.maximum(t.energy, 0.0), w.shape)
        for _ in range(max(1, t.iterations)):
            s32 = scale.astype(np.float32)
            # the output error of a weight: (scale * level error)^2 times its input's energy
            levels = optimal_levels(w / s32.reshape(shape), steps, e * (s32.reshape(shape).astype(np.float64) ** 2))
            q = nearest_level(w / s32.reshape(shape), levels)
            num = (e * w64 * q).sum(axis=red) if axis is not None else float((e * w64 * q).sum())
            den = (e * q * q).sum(axis=red) if axis is not None else float((e * q * q).sum())
            refit = np.where(np.asarray(den) > 0, np.asarray(num) / np.maximum(den, 1e-300), scale)
            refit = np.where(refit > 0, refit, scale)
            scale = refit if floor is None else np.maximum(refit, floor)
        scale = scale.astype(np.float32)
        levels = optimal_levels(w / scale.reshape(shape), steps, e * (scale.reshape(shape).astype(np.float64) ** 2))
        return self._final(t, scale, levels, shape)

    def _final(self, t: WeightTask, scale: np.ndarray, levels: np.ndarray, shape: list) -> QuantizedWeight:
        """Weights rounded to the levels at ``scale``, then the guard on the levels: the one place
        the integers come from, whether the scales were just chosen or read from a record."""
        w = t.weight
        real = w / scale.reshape(shape)
        q = nearest_level(real, levels).astype(np.int32)
        fixed = 0
        if t.guard == "pairs" and t.rows(np.zeros(w.shape, np.int8)) is not None:
            flat_idx = t.rows(np.arange(w.size).reshape(w.shape))
            qf = q.reshape(-1)
            newq, fixed = guard_on_levels(qf[flat_idx], real.reshape(-1)[flat_idx], levels)
            if fixed:
                qf = qf.copy()
                qf[flat_idx] = newq
                q = qf.reshape(w.shape)
        return QuantizedWeight(q.astype(np.int8), scale.astype(np.float32), t.axis, fixed,
                               codebook=tuple(int(v) for v in levels))


register_scheme(NonUniform())
