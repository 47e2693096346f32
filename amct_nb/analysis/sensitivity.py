"""Sensitivity and fallback: which quantized units the outputs cannot afford, and how few to leave float.

One gated model (:func:`amct_nb.export.build_gated`) and one ONNX Runtime session measure the
outputs with any subset of units quantized. :func:`harm_of` measures each unit (or group of
units) alone; :func:`fallback_search` binary-searches the smallest number of the most harmful
units to leave float so that a criterion holds. The safety net's output check
(:func:`output_check`) is these two with an output-SQNR criterion; an accuracy-driven search can
use them with a task metric.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import onnx

from ..export import GATES, QuantPlan, Unit, build_gated, units_of
from ..ir import is_large, lean_options, make_session

__all__ = ["GatedSession", "harm_of", "fallback_search", "output_check", "OutputCheck", "first_samples",
           "MIN_OUTPUT_SQNR_DB", "OUTPUT_MARGIN_DB"]

#: Default end-to-end target: the fake-quant outputs keep at least this SQNR against the float
#: outputs on the calibration samples (15 dB: cosine ~0.985), else the most harmful quantized
#: layers/tensors are left float until they do. Chosen by measurement on the real-model set and
#: EfficientNet (README "the safety net"): every model whose task check passes fully int8 sits at
#: 14-130 dB, PP-OCR's recognizer, whose decoded strings break, at 10 dB.
MIN_OUTPUT_SQNR_DB = 15.0

#: The search aims this much above the target: the gated model (float Q/DQ) and the fake-quant
#: model (integer-domain layers, int32 bias) differ by a fraction of a dB.
OUTPUT_MARGIN_DB = 1.0

_FLOAT_TYPES = ("tensor(float)", "tensor(double)", "tensor(float16)")


def first_samples(feeds: list[dict], n: int) -> list[dict]:
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


class GatedSession:
    """The gated model of ``plan`` in one session, measuring the worst output SQNR (dB) against
    the float outputs for any gate vector (1: quantized, 0: float), on fixed samples."""

    def __init__(self, model: onnx.ModelProto, plan: QuantPlan, units: list[Unit], bias_alt: QuantPlan | None = None):
        self.units = units
        self.session = make_session(build_gated(model, plan, units, bias_alt), options=lean_options())
        self.outputs = [o.name for o in self.session.get_outputs() if o.type in _FLOAT_TYPES]
        self._refs: dict[int, list] = {}

    def run(self, feed: dict, gates: np.ndarray) -> list[np.ndarray]:
        return self.session.run(self.outputs, {**feed, GATES: gates})

    def output_sqnr(self, gates: np.ndarray, samples: list[dict]) -> float:
        """Worst output SQNR over the float outputs (sums over ``samples``); non-finite outputs
        where the float model is finite count as huge errors."""
        key = id(samples)
        if key not in self._refs:
            zero = np.zeros(len(self.units), np.float32)
            self._refs[key] = (samples, [self.run(f, zero) for f in samples])
        _, refs = self._refs[key]
        sig = np.zeros(len(self.outputs))
        noise = np.zeros(len(self.outputs))
        for f, r in zip(samples, refs):
            for j, y in enumerate(self.run(f, gates)):
                x = r[j].astype(np.float64)
                fin = np.isfinite(x) & np.isfinite(y)
                sig[j] += float((x[fin] ** 2).sum())
                noise[j] += (float(((y[fin] - x[fin]) ** 2).sum())
                             + float((~np.isfinite(y) & np.isfinite(x)).sum()) * 1e30)
        worst = math.inf
        for s_, n_ in zip(sig, noise):
            if s_ > 0:
                worst = min(worst, math.inf if n_ == 0 else 10 * math.log10(s_ / n_))
        return worst


def harm_of(groups: list[list[int]], n_units: int, measure: Callable[[np.ndarray], float],
            progress: bool = False) -> list[float]:
    """``measure(gates)`` with only each group's units quantized, for every group."""
    it = groups
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(it, desc="sensitivity", unit="unit", leave=False)
    out = []
    for g in it:
        one = np.zeros(n_units, np.float32)
        one[g] = 1
        out.append(measure(one))
    return out


def fallback_search(n: int, passes: Callable[[int], tuple[bool, float]]) -> tuple[int, float]:
    """The smallest ``k`` in 1..n for which ``passes(k)`` holds, by binary search (``passes`` is
    taken as monotone, and ``n``, everything float, as passing). Returns (k, the score of the
    passing k measured last; inf when only ``n`` was left)."""
    lo, hi = 0, n  # lo fails, hi passes
    best = math.inf
    while hi - lo > 1:
        mid = (lo + hi) // 2
        ok, score = passes(mid)
        if ok:
            hi, best = mid, score
        else:
            lo = mid
    return hi, best


@dataclass
class OutputCheck:
    """What the output check measured and which units it left float (most harmful first)."""

    target_db: float
    before_db: float  # all units quantized (gated model, calibration samples)
    after_db: float  # after the fallback
    units: list[Unit]
    fallen: list[Unit]
    seconds: float = 0.0
    groups: int = 0  # units were measured in this many groups (== len(units): one by one)
    harm_db: dict[Unit, float] = field(default_factory=dict)  # output SQNR with only the unit('s group) quantized

    def as_dict(self) -> dict:
        return {"target_sqnr_db": self.target_db, "before_sqnr_db": _r(self.before_db),
                "after_sqnr_db": _r(self.after_db),
                "left_float": [{"kind": u.kind, "name": u.name,
                                "alone_output_sqnr_db": _r(self.harm_db.get(u, math.inf))}
                               for u in self.fallen],
                "units": len(self.units), "groups": self.groups}  # no timing: reports of reruns are byte-identical


def _r(x: float):
    return round(x, 2) if math.isfinite(x) else (None if math.isnan(x) else ("inf" if x > 0 else "-inf"))


def output_check(model: onnx.ModelProto, plan: QuantPlan, feeds: list[dict], target_db: float = MIN_OUTPUT_SQNR_DB,
                 max_samples: int = 8, sensitivity_samples: int = 2, progress: bool = False,
                 max_groups: int = 64) -> OutputCheck | None:
    """Which units to leave float so that the outputs keep ``target_db`` SQNR (None: not measurable).

    Measures the outputs with everything quantized; if below the target, the harm of each unit
    alone (on ``sensitivity_samples`` samples; past ``max_groups`` units, of that many groups of
    consecutive units in graph order: bounded time, same result every run), then the smallest
    number of most harmful groups to leave float so that the rest meets the target plus
    :data:`OUTPUT_MARGIN_DB` on ``max_samples`` samples."""
    t0 = time.perf_counter()
    if is_large(model):  # the gated model would hold every weight twice: not for models over 2 GB
        return None
    units = units_of(plan)
    samples = first_samples(feeds, max_samples)
    few = first_samples(feeds, sensitivity_samples)
    if not units or not samples:
        return None
    gs = GatedSession(model, plan, units)
    if not gs.outputs:
        return None
    ones = np.ones(len(units), np.float32)
    before = gs.output_sqnr(ones, samples)
    chk = OutputCheck(target_db, before, before, units, [])
    if before >= target_db:
        chk.seconds = time.perf_counter() - t0
        return chk
    n_groups = min(len(units), max_groups)
    groups = [list(g) for g in np.array_split(np.arange(len(units)), n_groups) if len(g)]
    harm = harm_of(groups, len(units), lambda g: gs.output_sqnr(g, few), progress)
    for g, h in zip(groups, harm):
        for i in g:
            chk.harm_db[units[i]] = h
    order_g = sorted(range(len(groups)), key=lambda k: harm[k])

    def passes(k: int) -> tuple[bool, float]:
        gates = ones.copy()
        for gi in order_g[:k]:
            gates[groups[gi]] = 0
        s = gs.output_sqnr(gates, samples)
        return s >= target_db + OUTPUT_MARGIN_DB, s

    k, best = fallback_search(len(groups), passes)
    order = [i for gi in order_g for i in groups[gi]]
    n_float = sum(len(groups[gi]) for gi in order_g[:k])
    chk.fallen = [units[i] for i in order[:n_float]]
    chk.after_db = best if n_float < len(units) else math.inf
    chk.groups = len(groups)
    chk.seconds = time.perf_counter() - t0
    return chk
