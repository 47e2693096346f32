"""Streaming statistics of one tensor: exact min/max, NaN/Inf counts, and a mergeable histogram.

The histogram has bins of width ``2**e`` anchored at 0, so growing the covered range merges
pairs of bins exactly (no re-binning error, unlike re-sampling histograms) and two histograms
of the same tensor merge exactly. Memory is fixed (``nbins`` counters per tensor) whatever the
number of calibration samples. Every element counts towards min/max and NaN/Inf; at most
``max_samples`` elements of each update (a deterministic prime-strided subset) are binned,
which bounds the cost on large tensors and keeps runs reproducible.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

__all__ = ["TensorStats", "Histogram"]

DEFAULT_BINS = 8192
DEFAULT_MAX_SAMPLES = 1 << 16


def _next_prime(n: int) -> int:
    n = max(2, n)
    while True:
        if all(n % p for p in range(2, int(n**0.5) + 1)):
            return n
        n += 1


@dataclass
class Histogram:
    """Counts of values in bins ``[(k0 + i) * w, (k0 + i + 1) * w)`` for i < len(counts)."""

    counts: np.ndarray
    k0: int
    exp: int  # bin width is 2**exp

    @property
    def width(self) -> float:
        return math.ldexp(1.0, self.exp)

    @property
    def edges(self) -> np.ndarray:
        return (self.k0 + np.arange(len(self.counts) + 1, dtype=np.float64)) * self.width

    def trimmed(self) -> Histogram:
        """The same histogram without empty bins at either end."""
        nz = np.flatnonzero(self.counts)
        if nz.size == 0:
            return Histogram(np.zeros(1), self.k0, self.exp)
        return Histogram(self.counts[nz[0] : nz[-1] + 1].copy(), self.k0 + int(nz[0]), self.exp)

    def coarsen(self, max_bins: int) -> Histogram:
        """Merge pairs of bins until at most ``max_bins`` remain (exact)."""
        h = self
        while len(h.counts) > max_bins:
            h = h._doubled()
        return h

    def _doubled(self) -> Histogram:
        k = self.k0 + np.arange(len(self.counts))
        nk = np.floor_divide(k, 2)
        k0 = int(nk[0]) if len(nk) else self.k0 // 2
        counts = np.bincount(nk - k0, weights=self.counts)
        return Histogram(counts, k0, self.exp + 1)

    def abs(self) -> Histogram:
        """Histogram of |x| (exact: bins are symmetric around 0)."""
        k = self.k0 + np.arange(len(self.counts))
        ka = np.where(k >= 0, k, -k - 1)
        counts = np.bincount(ka, weights=self.counts)
        return Histogram(counts, 0, self.exp).trimmed()


@dataclass
class TensorStats:
    """Running statistics of a float tensor over the calibration data."""

    name: str
    nbins: int = DEFAULT_BINS
    max_samples: int = DEFAULT_MAX_SAMPLES
    count: int = 0  # finite elements seen
    nan: int = 0
    posinf: int = 0
    neginf: int = 0
    min: float = math.inf
    max: float = -math.inf
    batches: int = 0
    shape: tuple = ()
    _counts: np.ndarray | None = field(default=None, repr=False)
    _k0: int = 0
    _exp: int = 0
    #: also keep per-channel sums of x and x^2 (axis 1; the last axis of 3-D tensors): what
    #: non-uniform weights weigh their error by and correct their bias with
    channels: bool = False
    _ch: dict = field(default_factory=dict, repr=False)

    # -- accumulation -------------------------------------------------------------------
    def update(self, x: np.ndarray, samples: int | None = None) -> None:
        """Add one batch. ``samples``: how many samples the batch holds along axis 0; the
        subset binned from large tensors is then taken per sample, so the histogram does not
        depend on how samples were grouped into batches."""
        x = np.asarray(x)
        self.batches += 1
        self.shape = tuple(x.shape)
        if x.dtype != np.float32:
            x = x.astype(np.float32)
        flat = x.reshape(-1)
        if flat.size == 0:
            return
        mn, mx = flat.min(), flat.max()
        if not (math.isfinite(mn) and math.isfinite(mx)):
            nan = np.isnan(flat)
            self.nan += int(nan.sum())
            self.posinf += int((flat == np.inf).sum())
            self.neginf += int((flat == -np.inf).sum())
            bad = ~np.isfinite(flat)
            if bad.all():
                return
            mn, mx = float(flat[~bad].min()), float(flat[~bad].max())
            self.count += int((~bad).sum())
            self.min, self.max = min(self.min, mn), max(self.max, mx)
            self._bin(flat[~bad], mn, mx)
            return
        mn, mx = float(mn), float(mx)
        if self.channels and x.ndim >= 2:
            self._channel_update(x)
        self.count += flat.size
        self.min, self.max = min(self.min, mn), max(self.max, mx)
        n = samples if samples and x.ndim >= 1 and x.shape[0] == samples else 1
        per = flat.size // n
        if per > self.max_samples // 4:
            # a prime-strided subset of each sample stands for the bulk (each counts `stride`
            # times); elements beyond that subset's extremes, the rare tails, count exactly
            stride = _next_prime(-(-per // (self.max_samples // 4)))
            rows = flat.reshape(n, per)
            sub = rows[:, ::stride]
            if sub.shape[1] >= 3:
                part = np.partition(sub, [1, sub.shape[1] - 2], axis=1)
                lo_t, hi_t = part[:, 1:2], part[:, -2:-1]  # 2nd smallest / largest of each subset
            else:
                lo_t, hi_t = sub.min(axis=1, keepdims=True), sub.max(axis=1, keepdims=True)
            self._bin(sub[(sub >= lo_t) & (sub <= hi_t)], mn, mx, weight=float(stride))
            tails = rows[(rows < lo_t) | (rows > hi_t)]
            if tails.size:
                self._bin(tails, mn, mx)
            return
        self._bin(flat, mn, mx)

    def _channel_update(self, x: np.ndarray) -> None:
        # one pass, no copy: axis 1 of [N, C, ...] (convolutions, Gemm), the last axis of [B, T, K] (MatMul)
        key = -1 if x.ndim == 3 else 1
        c = x.shape[-1] if key == -1 else x.shape[1]
        v = x.reshape(-1, c) if key == -1 else x.reshape(x.shape[0], c, -1)
        spec = "ij,ij->j" if key == -1 else "ncl,ncl->c"
        s = v.sum(axis=0 if key == -1 else (0, 2), dtype=np.float64)
        sq = np.einsum(spec, v, v, dtype=np.float64)
        n = v.shape[0] if key == -1 else v.shape[0] * v.shape[2]
        have = self._ch.get(key)
        if have is not None and have[0].shape == s.shape:
            self._ch[key] = (have[0] + s, have[1] + sq, have[2] + n)
        elif have is None:
            self._ch[key] = (s, sq, n)
        else:  # the channel count changed between batches: no per-channel moments
            self._ch[key] = (np.zeros(0), np.zeros(0), -1)

    def channel_moments(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(mean, mean of squares) per channel, when kept (``channels``): along axis 1, or the last
        axis of 3-D tensors."""
        have = self._ch.get(1) or self._ch.get(-1)
        if have is None or have[2] <= 0:
            return None
        return have[0] / have[2], have[1] / have[2]

    def _bin(self, xs: np.ndarray, mn: float, mx: float, weight: float = 1.0) -> None:
        if self._counts is None:
            span = max(mx - mn, abs(mx), abs(mn), 1e-30)
            self._exp = math.ceil(math.log2(span / (self.nbins // 2)))
            self._k0 = math.floor(mn / math.ldexp(1.0, self._exp))
            self._counts = np.zeros(self.nbins, dtype=np.float64)
        while True:
            w = math.ldexp(1.0, self._exp)
            nz = np.flatnonzero(self._counts)
            lo, hi = math.floor(mn / w), math.floor(mx / w)
            if nz.size:
                lo, hi = min(lo, self._k0 + int(nz[0])), max(hi, self._k0 + int(nz[-1]))
            if hi - lo < self.nbins:
                break
            h = Histogram(self._counts, self._k0, self._exp)._doubled()
            self._counts = np.zeros(self.nbins, dtype=np.float64)
            self._counts[: len(h.counts)] = h.counts
            self._k0, self._exp = h.k0, h.exp
        if lo < self._k0 or hi >= self._k0 + self.nbins:  # move the window over the occupied bins
            new_k0 = lo if lo < self._k0 else hi - self.nbins + 1
            moved = np.zeros(self.nbins, dtype=np.float64)
            nz = np.flatnonzero(self._counts)
            if nz.size:
                src = self._k0 + nz
                moved[src - new_k0] = self._counts[nz]
            self._counts, self._k0 = moved, new_k0
        inv = np.float32(math.ldexp(1.0, -self._exp))
        idx = np.floor(xs * inv).astype(np.int64)
        idx -= self._k0
        np.clip(idx, 0, self.nbins - 1, out=idx)
        counts = np.bincount(idx, minlength=self.nbins)
        self._counts += counts * weight if weight != 1.0 else counts

    def merge(self, other: TensorStats) -> None:
        """Add another run's statistics of the same tensor (exact)."""
        if other._counts is None:
            self.nan += other.nan
            self.posinf += other.posinf
            self.neginf += other.neginf
            return
        for key, (s, sq, n) in other._ch.items():
            have = self._ch.get(key)
            ok = have is not None and n > 0 and have[2] > 0 and have[0].shape == s.shape
            self._ch[key] = (have[0] + s, have[1] + sq, have[2] + n) if ok else (have or (s, sq, n))
        h = other.histogram()
        self.nan += other.nan
        self.posinf += other.posinf
        self.neginf += other.neginf
        self.batches += other.batches
        if self._counts is None:
            self.count, self.min, self.max = other.count, other.min, other.max
            self._counts, self._k0, self._exp = other._counts.copy(), other._k0, other._exp
            return
        while h.exp < self._exp:
            h = h._doubled()
        mine = self.histogram()
        while mine.exp < h.exp:
            mine = mine._doubled()
        lo = min(mine.k0, h.k0)
        hi = max(mine.k0 + len(mine.counts), h.k0 + len(h.counts))
        counts = np.zeros(hi - lo)
        counts[mine.k0 - lo : mine.k0 - lo + len(mine.counts)] += mine.counts
        counts[h.k0 - lo : h.k0 - lo + len(h.counts)] += h.counts
        merged = Histogram(counts, lo, mine.exp).coarsen(self.nbins)
        self._counts = np.zeros(self.nbins)
        self._counts[: len(merged.counts)] = merged.counts
        self._k0, self._exp = merged.k0, merged.exp
        self.count += other.count
        self.min, self.max = min(self.min, other.min), max(self.max, other.max)

    # -- queries ------------------------------------------------------------------------
    @property
    def empty(self) -> bool:
        return self.count == 0

    @property
    def nonfinite(self) -> int:
        return self.nan + self.posinf + self.neginf

    def histogram(self) -> Histogram:
        """The histogram at a resolution set by the final min/max only (``nbins/8`` bins or more
        over the range), so the result does not depend on how the data was batched."""
        if self._counts is None:
            return Histogram(np.zeros(1), 0, 0)
        h = Histogram(self._counts, self._k0, self._exp).trimmed()
        span = max(self.max - self.min, abs(self.max), abs(self.min), 1e-30)
        canonical = math.ceil(math.log2(span / (self.nbins // 4)))
        while h.exp < canonical:
            h = h._doubled()
        return h

    def to_dict(self) -> dict:
        h = self.histogram()
        return {
            "name": self.name, "count": self.count, "nan": self.nan, "posinf": self.posinf,
            "neginf": self.neginf, "min": self.min, "max": self.max, "batches": self.batches,
            "shape": list(self.shape), "hist_k0": h.k0, "hist_exp": h.exp, "hist_counts": h.counts.tolist(),
        }
