"""Clip ranges from statistics: minmax, percentile, entropy (KL) and MSE search.

Each algorithm is a pure function ``(TensorStats, RangeSpec) -> (lo, hi)``; the scale and zero
point then come from :func:`amct_nb.quant.grid.compute_qparams`, the same for all algorithms.

The MSE search (AMCT's IFMR/HFMG idea: pick the clip that minimises the quantization error)
integrates the error exactly over each histogram bin, assuming values are spread uniformly
within a bin: rounding error inside the clip range and clipping error outside it both count.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError
from .grid import compute_qparams, qrange
from .stats import Histogram, TensorStats

__all__ = ["RangeSpec", "ALGORITHMS", "compute_range", "expected_mse", "range_errors"]

_SEARCH_BINS = 1024


@dataclass(frozen=True)
class RangeSpec:
    """How to pick one tensor's range: algorithm and grid."""

    algo: str = "mse"
    bits: int = 8
    symmetric: bool = False
    signed: bool = False
    percentile: float = 99.99
    search_start: float = 0.05  # smallest clip tried, as a fraction of the observed extreme
    search_steps: int = 32  # coarse grid; then as many steps again around the best one


def _grid(spec: RangeSpec) -> tuple[int, int]:
    return qrange(spec.bits, spec.signed)


def _qp(lo, hi, spec):
    return compute_qparams(lo, hi, bits=spec.bits, symmetric=spec.symmetric, signed=spec.signed)


# ---------------------------------------------------------------------------------------
# exact expected squared error of quantizing a histogram with given grids
# ---------------------------------------------------------------------------------------
def _round_err_integral(t: np.ndarray) -> np.ndarray:
    """P(t) = integral_0^t (v - round(v))^2 dv for any real t (per unit grid)."""
    fl = np.floor(t)
    f = t - fl
    part = np.where(f <= 0.5, f**3 / 3.0, 1.0 / 24.0 + ((f - 1.0) ** 3 + 0.125) / 3.0)
    return fl / 12.0 + part


def expected_mse(hist: Histogram, scale: np.ndarray, zp: np.ndarray, qmin: int, qmax: int) -> np.ndarray:
    """Sum over bins of the squared quantization error, for each candidate (scale, zp).

    With ``G(x) = integral from L to x of (t - Q(t))^2 dt`` (L, U: the ends of the grid), each
    bin contributes ``density * (G(b) - G(a))``: ``(x - L)^3 / 3`` below the grid, the periodic
    rounding error ``s^3 P((x - L) / s)`` on it, and ``G(U) + (x - U)^3 / 3`` above it. ``G`` is
    evaluated once per bin edge and candidate. ``scale`` and ``zp`` are 1-D arrays of candidates;
    returns one error per candidate (in units of value^2 x count).
    """
    edges = hist.edges[None, :]
    dens = hist.counts / np.diff(hist.edges)
    s = np.asarray(scale, np.float64)[:, None]
    z = np.asarray(zp, np.float64)[:, None]
    lo_c, hi_c = (qmin - z) * s, (qmax - z) * s
    inside = s**3 * _round_err_integral((np.clip(edges, lo_c, hi_c) - lo_c) / s)
    g = (inside + np.where(edges < lo_c, (edges - lo_c) ** 3 / 3.0, 0.0)
         + np.where(edges > hi_c, (edges - hi_c) ** 3 / 3.0, 0.0))
    # sum_i dens_i * (g_{i+1} - g_i) == g @ w, with w_k = dens_{k-1} - dens_k
    w = np.zeros(dens.size + 1)
    w[1:] += dens
    w[:-1] -= dens
    return g @ w


def _candidates_mse(hist: Histogram, los: np.ndarray, his: np.ndarray, spec: RangeSpec):
    qmin, qmax = _grid(spec)
    sc, zs = zip(*(_qp(l, h, spec) for l, h in zip(los, his)))
    return expected_mse(hist, np.array(sc, np.float64), np.array(zs), qmin, qmax)


# ---------------------------------------------------------------------------------------
# algorithms
# ---------------------------------------------------------------------------------------
def range_minmax(st: TensorStats, spec: RangeSpec) -> tuple[float, float]:
    return st.min, st.max


def _quantile(hist: Histogram, q: float) -> float:
    c = np.cumsum(hist.counts)
    if c[-1] <= 0:
        return 0.0
    target = q * c[-1]
    i = int(np.searchsorted(c, target))
    i = min(i, len(c) - 1)
    prev = c[i - 1] if i > 0 else 0.0
    frac = (target - prev) / hist.counts[i] if hist.counts[i] > 0 else 0.0
    e = hist.edges
    return float(e[i] + frac * (e[i + 1] - e[i]))


def range_percentile(st: TensorStats, spec: RangeSpec) -> tuple[float, float]:
    p = spec.percentile / 100.0
    h = st.histogram()
    if spec.symmetric or (st.min < 0 < st.max and spec.signed):
        amax = min(_quantile(h.abs(), p), max(-st.min, st.max))
        return max(-amax, st.min), min(amax, st.max)
    lo = st.min if st.min >= 0 else max(_quantile(h, 1.0 - p), st.min)
    hi = st.max if st.max <= 0 else min(_quantile(h, p), st.max)
    return lo, hi


def _search(err_fn, extreme: float, spec: RangeSpec) -> float:
    """Clip value in [start*extreme, extreme] minimising err_fn: a coarse grid, then a fine one
    around the coarse optimum."""
    fr = np.linspace(spec.search_start, 1.0, spec.search_steps)
    i = int(np.argmin(err_fn(fr * extreme)))
    step = fr[1] - fr[0]
    fine = np.clip(np.linspace(fr[i] - step, fr[i] + step, spec.search_steps + 1), spec.search_start, 1.0)
    return float(fine[int(np.argmin(err_fn(fine * extreme)))] * extreme)


def range_mse(st: TensorStats, spec: RangeSpec) -> tuple[float, float]:
    h = st.histogram().coarsen(_SEARCH_BINS)
    if spec.symmetric:
        amax = max(-st.min, st.max)
        a = _search(lambda c: _candidates_mse(h, -c, c, spec), amax, spec)
        return max(-a, st.min), min(a, st.max)
    lo, hi = min(st.min, 0.0), max(st.max, 0.0)
    # coordinate descent: the upper clip, then the lower one (twice when both sides are open)
    for _ in range(2 if (lo < 0 < hi) else 1):
        if hi > 0:
            hi = _search(lambda c, lo=lo: _candidates_mse(h, np.full_like(c, lo), c, spec), max(st.max, 0.0), spec)
        if lo < 0:
            lo = _search(lambda c, hi=hi: _candidates_mse(h, c, np.full_like(c, hi), spec), min(st.min, 0.0), spec)
    return lo, hi


def _kl_threshold(h: Histogram, levels: int) -> float | None:
    """TensorRT's KL-divergence threshold on a histogram of non-negative values (None: no data)."""
    if h.k0 < 0 or h.counts.sum() <= 0:
        return None
    counts = np.zeros(h.k0 + len(h.counts))
    counts[h.k0 :] = h.counts
    # the bin at 0 holds the exact zeros of ReLU-like tensors, which any grid represents exactly;
    # left in, that spike dominates the divergence and forces tiny ranges
    counts[0] = 0.0
    n = len(counts)
    if n <= levels or counts.sum() <= 0:
        return None
    best, best_i = math.inf, n
    for i in np.unique(np.linspace(levels, n, min(256, n - levels + 1)).astype(int)):
        p = counts[:i].copy()
        p[i - 1] += counts[i:].sum()
        nz = p > 0
        # quantize the first i bins into `levels` groups, spreading each group's mass uniformly
        grp = (np.arange(i) * levels) // i
        gsum = np.bincount(grp, weights=counts[:i], minlength=levels)
        gnz = np.bincount(grp, weights=(counts[:i] > 0).astype(float), minlength=levels)
        q = np.where(counts[:i] > 0, gsum[grp] / np.maximum(gnz[grp], 1), 0.0)
        pn, qn = p / p.sum(), q / max(q.sum(), 1e-300)
        valid = nz & (qn > 0)
        if not valid.any():
            continue
        kl = float(np.sum(pn[valid] * np.log(pn[valid] / qn[valid]))) + float(pn[nz & ~(qn > 0)].sum()) * 1e3
        if kl < best:
            best, best_i = kl, i
    return best_i * h.width


def _side(h: Histogram, negative: bool) -> Histogram:
    """The part of a histogram on one side of 0, mirrored to non-negative values."""
    k = h.k0 + np.arange(len(h.counts))
    keep = k < 0 if negative else k >= 0
    if not keep.any():
        return Histogram(np.zeros(1), 0, h.exp)
    kk = (-k[keep] - 1) if negative else k[keep]
    counts = np.bincount(kk, weights=h.counts[keep])
    return Histogram(counts, 0, h.exp).trimmed()


def range_entropy(st: TensorStats, spec: RangeSpec) -> tuple[float, float]:
    """TensorRT-style KL-divergence thresholds: on |x| for symmetric grids, else on each side of 0
    separately (a single |x| threshold would clip the long side of a skewed tensor)."""
    # KL needs fine bins: groups of bins coarser than the data's spread hide the rounding loss
    h = st.histogram().coarsen(4 * _SEARCH_BINS)
    neg, pos = max(-st.min, 0.0), max(st.max, 0.0)
    skewed = min(neg, pos) < 0.5 * max(neg, pos)
    if spec.symmetric or (neg > 0 and pos > 0 and not skewed):
        t = _kl_threshold(h.abs(), 2 ** (spec.bits - 1))
        if t is None:
            return range_minmax(st, spec)
        return max(-t, st.min), min(t, st.max)
    lo, hi = st.min, st.max
    pos_share = max(st.max, 0.0) / max(st.max - st.min, 1e-30)
    if st.max > 0:
        t = _kl_threshold(_side(h, False), max(2, int(round(2**spec.bits * pos_share))))
        hi = min(t, st.max) if t is not None else st.max
    if st.min < 0:
        t = _kl_threshold(_side(h, True), max(2, int(round(2**spec.bits * (1 - pos_share)))))
        lo = max(-t, st.min) if t is not None else st.min
    return lo, hi


#: The range algorithms by name (the first is the default); a config's ``act_algo`` names one.
ALGORITHMS = {
    "mse": range_mse,
    "minmax": range_minmax,
    "percentile": range_percentile,
    "entropy": range_entropy,
}


def compute_range(st: TensorStats, spec: RangeSpec) -> tuple[float, float]:
    """Clip range of one tensor; a tensor with no finite values gets (0, 0)."""
    if st.empty:
        return 0.0, 0.0
    try:
        fn = ALGORITHMS[spec.algo]
    except KeyError:
        raise ConfigError(f"unknown range algorithm '{spec.algo}': use one of {', '.join(ALGORITHMS)}") from None
    lo, hi = fn(st, spec)
    return float(min(lo, 0.0)), float(max(hi, 0.0))


def range_errors(st: TensorStats, spec: RangeSpec) -> dict[str, dict]:
    """For the UI and reports: each algorithm's range, clipped share and expected MSE on ``st``."""
    h = st.histogram().coarsen(_SEARCH_BINS)
    qmin, qmax = _grid(spec)
    out = {}
    total = max(h.counts.sum(), 1.0)
    for name in ALGORITHMS:
        lo, hi = compute_range(st, RangeSpec(**{**spec.__dict__, "algo": name}))
        s, z = _qp(lo, hi, spec)
        mse = float(expected_mse(h, np.array([s], np.float64), np.array([z]), qmin, qmax)[0]) / total
        e = h.edges
        lo_c, hi_c = (qmin - z) * float(s), (qmax - z) * float(s)
        # share of values outside the grid: bins straddling an edge count pro rata, within the
        # observed min/max
        a, b = np.maximum(e[:-1], st.min), np.minimum(e[1:], st.max)
        w = np.maximum(b - a, 1e-300)
        below = np.clip((np.minimum(b, lo_c) - a) / w, 0, 1)
        above = np.clip((b - np.maximum(a, hi_c)) / w, 0, 1)
        clipped = float((h.counts * (below + above)).sum()) / total
        out[name] = {"lo": lo, "hi": hi, "scale": float(s), "zero_point": int(z), "mse": float(mse),
                     "clipped": float(clipped)}
    return out
