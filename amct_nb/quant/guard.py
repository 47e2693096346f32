"""The saturation guard: int8 weights that stay exact on CPUs whose u8*s8 kernels saturate.

x86 CPUs without VNNI multiply uint8 activations by int8 weights with ``vpmaddubsw``, which adds
two neighbouring products into a saturating int16. Two remedies keep the deploy model exact there:

* ``uint8`` (the default, ``saturation_guard="always"``): a layer whose int8 weights hold a pair
  that could overflow is stored as uint8 ``q + 128`` with zero point 128. The integers, scales and
  the fake-quant model are exactly those of the unguarded build (no accuracy cost in any mode:
  per-channel, per-tensor, 4-bit, NUQ, QAT), and ONNX Runtime runs such a layer with its u8 x u8
  kernels, which widen to 16 bits and never saturate; those are slower than the u8 x s8 ones (up to
  2x per layer on a CPU with VNNI), so layers without such a pair keep int8 storage and full speed.
* ``pairs``: int8 weights whose adjacent pairs :func:`pair_guard` keeps within range, with
  per-channel scales :func:`pair_safe_quantize` picks so that few need fixing (costs accuracy with
  per-tensor weights, where no scale search helps; kept for runtimes that need int8 weights).

:func:`resolve_guard` decides, from the config and what :mod:`amct_nb.quant.probe` found on this
machine, which guard a build uses.
"""

from __future__ import annotations

import numpy as np

from .probe import int8_saturates, pair_guard_exact, uint8_weights_exact

__all__ = ["PAIR_LIMIT", "pair_guard", "pair_safe_quantize", "pairs_over_limit", "resolve_guard", "GUARD_MODES"]

#: ``saturation_guard`` settings of a config.
GUARD_MODES = ("auto", "always", "pairs", "reduce_range", "off")

_SAT = "this CPU's int8 kernels saturate (no VNNI): "
_UINT8 = "layers with a weight pair that could overflow store uint8 weights (zero point 128), exact on every x86 CPU"
_PAIRS = "adjacent weight pairs kept within |a|+|b|<=128"


def resolve_guard(mode: str) -> tuple[str, str]:
    """(guard, why) for a config's ``saturation_guard`` on this machine; guard is ``"none"``,
    ``"uint8"`` (store the weights of layers that could saturate as uint8 with zero point 128),
    ``"pairs"`` (adjust the few adjacent weight pairs that could overflow) or ``"reduce_range"``
    (7-bit weights)."""
    sat = int8_saturates()
    if mode == "off":
        return "none", "saturation guard turned off" + (" (this CPU's int8 kernels saturate!)" if sat else "")
    if mode == "reduce_range":
        return "reduce_range", "7-bit weights requested (reduce_range)"
    if mode == "pairs" or (sat and mode in ("always", "auto") and not uint8_weights_exact()):
        if sat and not pair_guard_exact():
            return "reduce_range", "this CPU's int8 kernels saturate in an unknown pattern: 7-bit weights"
        if mode != "pairs":
            return "pairs", _SAT + "its u8 x u8 kernels are not exact either: " + _PAIRS
        return "pairs", (_SAT if sat else "portable int8 (no saturation on CPUs without VNNI): ") + _PAIRS
    if mode == "always":
        return "uint8", (_SAT if sat else "portable (CPUs without VNNI saturate): ") + _UINT8
    if sat:
        return "uint8", _SAT + _UINT8
    return "none", "this CPU's int8 kernels do not saturate: weights unchanged"


#: Largest |q_a| + |q_b| of two same-signed adjacent int8 weights whose products with uint8
#: activations (<= 255) cannot overflow an int16 pair sum: 255 * 128 = 32640 <= 32767.
PAIR_LIMIT = 128


def pair_safe_quantize(rows: np.ndarray, scale: np.ndarray, *, bits: int = 8, steps: int = 16,
                       limit: int = PAIR_LIMIT) -> tuple[np.ndarray, np.ndarray, int]:
    """Per-row (output channel) scale search under the pair constraint of :func:`pair_guard`.

    ``rows`` is the float weight as [C, K] in kernel order, ``scale`` the plain per-row scales
    (max|w|/127). Scales from ``scale`` up to the one at which no pair needs fixing (at most 2x,
    i.e. 7-bit) are tried; each row keeps the scale whose quantize-then-fix result has the least
    squared error against the float weights. Returns (q [C, K] int32, scales [C], pairs fixed).
    """
    qmax = 2 ** (bits - 1) - 1
    rows = np.asarray(rows, np.float32)
    scale = np.asarray(scale, np.float64).reshape(-1)
    c, k = rows.shape
    best_q = np.zeros((c, k), np.int32)
    best_s = scale.copy()
    # rows in chunks of ~4M weights: bounded temporaries for huge layers (a 8192x8192 MatMul)
    step = max(1, (1 << 22) // max(k, 1))
    for r0 in range(0, c, step):
        sl = slice(r0, min(c, r0 + step))
        best_q[sl], best_s[sl] = _pair_search(rows[sl], scale[sl], qmax, steps, limit)
    q0 = np.empty((c, k), np.int32)
    for r0 in range(0, c, step):
        sl = slice(r0, min(c, r0 + step))
        q0[sl] = np.clip(np.round(rows[sl] / best_s[sl, None].astype(np.float32)), -qmax, qmax)
    changed = int((q0 != best_q).sum())
    return best_q, best_s.astype(np.float32), changed


def _pair_search(rows: np.ndarray, scale: np.ndarray, qmax: int, steps: int, limit: int):
    c, k = rows.shape
    kk = k - (k % 2)
    pos = np.maximum(rows, 0)
    neg = np.maximum(-rows, 0)
    pair = (np.maximum(pos[:, 0:kk:2] + pos[:, 1:kk:2], neg[:, 0:kk:2] + neg[:, 1:kk:2]).max(axis=1).astype(np.float64)
            if kk else np.zeros(c))
    del pos, neg
    top = np.maximum(pair / limit, scale)  # scale at which no pair exceeds the limit
    best_err = np.full(c, np.inf)
    best_q = np.clip(np.round(rows / scale[:, None].astype(np.float32)), -qmax, qmax).astype(np.int32)
    best_s = scale.copy()
    search = top > scale  # rows with no offending pair at the plain scale keep it
    if not search.any():
        return best_q, best_s
    rs, ss, ts = rows[search], scale[search], top[search]
    bq, bs = best_q[search], best_s[search]
    be = best_err[search]
    for f in np.linspace(0.0, 1.0, steps):
        s = ss * (ts / ss) ** f
        s32 = s[:, None].astype(np.float32)
        real = rs / s32
        q = np.clip(np.round(real), -qmax, qmax).astype(np.int32)
        q, _ = pair_guard(q, real, limit)
        err = ((q * s32 - rs).astype(np.float64) ** 2).sum(axis=1)
        better = err < be
        if better.any():
            be[better] = err[better]
            bq[better] = q[better]
            bs[better] = s[better]
    best_q[search], best_s[search] = bq, bs
    return best_q, best_s


def pairs_over_limit(q: np.ndarray, limit: int = PAIR_LIMIT) -> int:
    """How many adjacent same-signed pairs of ``q`` ([C, K] in kernel order) exceed ``limit``: the
    pairs a saturating int8 kernel would get wrong."""
    q = np.asarray(q, np.int32)
    kk = q.shape[1] - (q.shape[1] % 2)
    a, b = q[:, 0:kk:2], q[:, 1:kk:2]
    return int((((a > 0) & (b > 0) & (a + b > limit)) | ((a < 0) & (b < 0) & (-(a + b) > limit))).sum())


def pair_guard(q: np.ndarray, real: np.ndarray, limit: int = PAIR_LIMIT) -> tuple[np.ndarray, int]:
    """Make adjacent weight pairs safe for int8 kernels that sum two u8*s8 products in int16.

    x86 CPUs without VNNI compute ``a0*w0 + a1*w1`` for neighbouring positions (2j, 2j+1) of
    the reduction axis with a saturating int16 add (``vpmaddubsw``); with uint8 activations up
    to 255 that overflows once two same-signed weights sum to more than 128 in magnitude.
    ``q`` and ``real`` (= weights / scale, unrounded) are [C, K] in the kernel's reduction order.
    Each offending pair is replaced by the closest pair (least squares against ``real``) with
    ``|q_a| + |q_b| == limit``. Returns the fixed copy and the number of pairs changed.
    """
    q = np.array(q, dtype=np.int32, copy=True)
    c, k = q.shape
    if k < 2:
        return q, 0
    kk = k - (k % 2)
    a, b = q[:, 0:kk:2], q[:, 1:kk:2]
    bad = ((a > 0) & (b > 0) & (a + b > limit)) | ((a < 0) & (b < 0) & (-(a + b) > limit))
    n = int(bad.sum())
    if n == 0:
        return q, 0
    ra, rb = np.abs(real[:, 0:kk:2][bad]), np.abs(real[:, 1:kk:2][bad])
    sign = np.sign(a[bad])
    d = (ra + rb - limit) / 2.0
    na = np.clip(np.round(ra - d), limit - (2**7 - 1), 2**7 - 1)
    nb = limit - na
    a[bad] = (sign * na).astype(np.int32)
    b[bad] = (sign * nb).astype(np.int32)
    q[:, 0:kk:2], q[:, 1:kk:2] = a, b
    return q, n
