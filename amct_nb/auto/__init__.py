"""Accuracy-based automatic calibration: the most int8 layers that keep a metric within a target.

:func:`auto_calibrate` (native) and :func:`search` (on a prepared model and its statistics) drive a
strategy (:mod:`amct_nb.auto.strategy`) over a sensitivity ranking (:mod:`amct_nb.analysis.ranking`);
:mod:`amct_nb.amct` wraps them in AMCT's ``accuracy_based_auto_calibration``.
"""

from .search import (
           DEFAULT_SENSITIVITY,
           AutoCalibration,
           AutoCalibrationError,
           Trial,
           auto_calibrate,
           loss_within,
           search,
           top1_evaluator,
)
from .strategy import (
           STRATEGIES,
           AutoCalibrationStrategyBase,
           BinarySearchStrategy,
           RecoveringSearch,
           binary_search_budget,
)

__all__ = ["auto_calibrate", "search", "AutoCalibration", "AutoCalibrationError", "Trial", "loss_within",
           "top1_evaluator", "DEFAULT_SENSITIVITY", "STRATEGIES", "AutoCalibrationStrategyBase", "BinarySearchStrategy",
           "RecoveringSearch", "binary_search_budget"]
