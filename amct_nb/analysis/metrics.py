"""Error and accuracy measures shared by the safety net, the output check and the comparisons.

    SQNR   = 10 * log10( sum(x^2) / sum((x - y)^2) )       (x: reference, y: test), in dB
    cosine = <x, y> / (|x| |y|)
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["sqnr_db", "db", "channel_snr_db", "cosine", "softmax", "topk_accuracy", "error_sums"]


def db(signal: float, noise: float) -> float:
    """``10 log10(signal / noise)``: +inf without noise, -inf without signal."""
    if noise == 0.0:
        return math.inf
    if signal == 0.0:
        return -math.inf
    return 10.0 * math.log10(signal / noise)


def sqnr_db(ref: np.ndarray, test: np.ndarray) -> float:
    """SQNR of ``test`` against ``ref`` in dB (computed in float64)."""
    ref = ref.astype(np.float64)  # copies: squared in place below (two float64 arrays at most: big weights)
    d = test.astype(np.float64)
    d = np.subtract(d, ref, out=d) if d.shape == np.broadcast_shapes(d.shape, ref.shape) else d - ref
    noise = float(np.square(d, out=d).sum())
    del d
    return db(float(np.square(ref, out=ref).sum()), noise)


def channel_snr_db(ref: np.ndarray, test: np.ndarray) -> float:
    """Worst SNR over channels along axis 1 and the last axis (channels with no variance and no
    error are ignored); +inf when no axis has 2..4096 channels."""
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


def cosine(x: np.ndarray, y: np.ndarray) -> float:
    """Cosine similarity of two flattened arrays (1.0 when both are zero and equal)."""
    x, y = x.reshape(-1).astype(np.float64), y.reshape(-1).astype(np.float64)
    denom = np.linalg.norm(x) * np.linalg.norm(y)
    return float(x @ y / denom) if denom > 0 else (1.0 if np.array_equal(x, y) else 0.0)


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def topk_accuracy(logits: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Share of rows whose label is among the ``k`` largest logits."""
    k = min(k, logits.shape[1])
    top = np.argsort(-logits, axis=1)[:, :k]
    return float((top == labels[:, None]).any(axis=1).mean())


def error_sums(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """[sum x^2, sum (x-y)^2, sum of per-row cosines, rows] of two (rows, n) float32 arrays
    (per-row sums in float32, one pass each, then float64)."""
    d = x - y
    xx = np.einsum("ij,ij->i", x, x, dtype=np.float64)
    yy = np.einsum("ij,ij->i", y, y, dtype=np.float64)
    xy = np.einsum("ij,ij->i", x, y, dtype=np.float64)
    dd = np.einsum("ij,ij->i", d, d, dtype=np.float64)
    nx, ny = np.sqrt(xx), np.sqrt(yy)
    cos = np.where((nx > 0) & (ny > 0), xy / np.maximum(nx * ny, 1e-300), np.where(nx == ny, 1.0, 0.0))
    return np.array([xx.sum(), dd.sum(), cos.sum(), len(x)], np.float64)
