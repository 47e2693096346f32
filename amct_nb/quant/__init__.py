"""Quantization maths: integer grids, streamed statistics, range algorithms, weight schemes, and
the saturation guard with its probe of this machine's int8 kernels. Pure numpy (the probe runs
ONNX Runtime); nothing here knows about graphs or configs."""

from . import nuq  # noqa: F401  (registers the non-uniform weight scheme)
from .grid import BIAS_LIMIT, bias_min_scale, compute_qparams, fake_quantize, qrange, quantize_bias, quantize_weight
from .guard import GUARD_MODES, PAIR_LIMIT, pair_guard, pair_safe_quantize, resolve_guard
from .probe import int8_saturates, pair_guard_exact, platform_report
from .ranges import ALGORITHMS, RangeSpec, compute_range, expected_mse, range_errors
from .stats import Histogram, TensorStats
from .weights import SCHEMES, QuantizedWeight, WeightScheme, WeightTask, get_scheme, register_scheme

__all__ = [
    "BIAS_LIMIT", "bias_min_scale", "compute_qparams", "fake_quantize", "qrange", "quantize_bias", "quantize_weight",
    "GUARD_MODES", "PAIR_LIMIT", "pair_guard", "pair_safe_quantize", "resolve_guard",
    "int8_saturates", "pair_guard_exact", "platform_report",
    "ALGORITHMS", "RangeSpec", "compute_range", "expected_mse", "range_errors",
    "Histogram", "TensorStats",
    "SCHEMES", "QuantizedWeight", "WeightScheme", "WeightTask", "get_scheme", "register_scheme",
]
