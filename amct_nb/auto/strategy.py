"""Search strategies: which layers to roll back to float next, given how the last config did.

AMCT's interface (subclass :class:`AutoCalibrationStrategyBase` for a custom strategy):
``initialize(ranking_info)`` gets ``{layer: similarity}`` ordered most sensitive first, then each
``update_quant_config(metric_eval)`` gets ``(passed, loss)`` of the last evaluated config (the
first call: everything quantized) and returns ``{"stop_flag": bool, "roll_back_config":
{layer: quantize?}}``. When ``stop_flag`` is set, ``roll_back_config`` is the final config.

* :class:`BinarySearchStrategy` is AMCT's algorithm exactly: binary search on how many of the most
  sensitive layers to roll back (1 + ceil(log2 N) evaluations after the global one at most).
* :class:`RecoveringSearch`, the default, finds the same count within the same budget, faster
  when the count is small, and spends the evaluations left bringing rolled-back layers back to int8.
"""

from __future__ import annotations

import math
from collections import OrderedDict

__all__ = ["AutoCalibrationStrategyBase", "BinarySearchStrategy", "RecoveringSearch", "STRATEGIES",
           "binary_search_budget"]


def binary_search_budget(n: int) -> int:
    """Evaluations AMCT's BinarySearch makes after the global one on ``n`` layers (at most)."""
    return max(1, math.ceil(math.log2(n + 1))) if n else 0


class AutoCalibrationStrategyBase:
    """AMCT's strategy interface (see the module docstring)."""

    name = "custom"

    def initialize(self, ranking_info: dict) -> None:
        raise NotImplementedError("a strategy implements initialize(ranking_info)")

    def update_quant_config(self, metric_eval) -> dict:
        raise NotImplementedError("a strategy implements update_quant_config(metric_eval) -> dict")


def _config(order: list[str], float_set: set[str]) -> OrderedDict:
    return OrderedDict((n, n not in float_set) for n in order)


class BinarySearchStrategy(AutoCalibrationStrategyBase):
    """AMCT's BinarySearch: sort by similarity ascending, binary search on how many of the most
    sensitive layers to roll back; the final config is the last passing one (all rolled back when
    none passed)."""

    name = "BinarySearch"

    def initialize(self, ranking_info: dict) -> None:
        self.order = sorted(ranking_info, key=lambda n: ranking_info[n])
        self.left, self.right = 0, len(self.order) - 1
        self.mid: int | None = None
        self.best: int | None = None

    def _rolled(self, k: int | None) -> OrderedDict:
        return _config(self.order, set(self.order[: k + 1]) if k is not None else set())

    def update_quant_config(self, metric_eval) -> dict:
        passed = bool(metric_eval[0])
        if self.mid is None:
            if passed or not self.order:
                return {"stop_flag": True, "roll_back_config": self._rolled(None)}
        elif passed:
            self.best, self.right = self.mid, self.mid - 1
        else:
            self.left = self.mid + 1
        if self.mid is not None and self.left > self.right:
            final = self._rolled(self.best) if self.best is not None else _config(self.order, set(self.order))
            return {"stop_flag": True, "roll_back_config": final}
        self.mid = (self.left + self.right) // 2
        return {"stop_flag": False, "roll_back_config": self._rolled(self.mid)}


class RecoveringSearch(AutoCalibrationStrategyBase):
    """The default strategy: AMCT's search for the fewest most sensitive layers to roll back, with
    its evaluations spent where they pay, then used to bring rolled-back layers back to int8.

    1. A binary search on how many of the most sensitive layers to roll back, with each probe as
       low as the remaining budget allows (the failing side must still be resolvable): it finds the
       same count as BinarySearch within the same number of evaluations, and fewer when the count is
       small, the usual case;
    2. with the evaluations left (``budget``, default: what BinarySearch would need for the same
       number of layers), it tries each rolled-back layer back in int8, least sensitive first,
       keeping those with which the target still holds.

    Never more evaluations than BinarySearch, never more float layers on the same ranking."""

    name = "Recovering"

    def __init__(self, budget: int | None = None):
        self.budget = budget

    def initialize(self, ranking_info: dict) -> None:
        self.order = sorted(ranking_info, key=lambda n: ranking_info[n])
        self.left_budget = self.budget if self.budget is not None else binary_search_budget(len(self.order))
        self.lo, self.hi = 1, len(self.order)  # the count k* to roll back lies in [lo, hi]; hi=n: all float
        self.phase = "start"
        self.trying: set[str] = set()
        self.best: set[str] | None = None  # the smallest passing float set seen
        self.failed: set[frozenset] = {frozenset()}
        self.tried: set[frozenset] = {frozenset()}
        self.retry: list[str] = []

    def _ask(self, float_set: set[str]) -> dict:
        self.left_budget -= 1
        self.trying = set(float_set)
        self.tried.add(frozenset(float_set))
        return {"stop_flag": False, "roll_back_config": _config(self.order, float_set)}

    def _stop(self) -> dict:
        final = self.best if self.best is not None else set(self.order)
        return {"stop_flag": True, "roll_back_config": _config(self.order, final)}

    def update_quant_config(self, metric_eval) -> dict:
        passed = bool(metric_eval[0])
        n = len(self.order)
        if self.phase == "start":
            if passed or not n:
                self.best = set()
                return self._stop()
            self.phase = "search"
        elif self.phase == "search":
            k = len(self.trying)
            if passed:
                self.hi, self.best = k, set(self.trying)
            else:
                self.lo = k + 1
                self.failed.add(frozenset(self.trying))
        elif passed:  # recovery: the layer stays int8
            self.best = set(self.trying)
        if self.phase == "search" and self.lo < self.hi and self.left_budget > 0:
            m = self.hi - self.lo + 1
            t = min(self.lo - 1 + max(1, m - 2 ** (self.left_budget - 1)), self.hi - 1)
            return self._ask(set(self.order[:t]))
        if self.phase == "search":
            if self.best is None and self.hi < n:  # [lo, hi] never narrowed below an untested hi
                self.best = set(self.order[: self.hi])
            self.phase = "recover"
            self.retry = sorted(self.best or (), key=self.order.index, reverse=True)  # least sensitive first
        while self.retry and self.left_budget > 0 and self.best is not None:
            candidate = frozenset(self.best - {self.retry.pop(0)})
            if candidate not in self.tried and not any(candidate <= f for f in self.failed):
                return self._ask(set(candidate))
        return self._stop()


#: Strategies by name (the ``strategy=`` argument); None picks the default.
STRATEGIES = {"BinarySearch": BinarySearchStrategy, "Recovering": RecoveringSearch}
