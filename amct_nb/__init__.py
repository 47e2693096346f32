"""amct-nb: Jupyter-first ONNX model compression on ONNX Runtime.

The public API (the CLI and the notebook layer use nothing else)::

    import amct_nb as an
    result = an.quantize("model.onnx", calibration_data)      # prepare, observe, ranges, export
    result.save("outputs/calibration", prefix="model")          # AMCT-named files

Step by step: :func:`prepare`, :func:`collect_stats`, :func:`build`. AMCT's own function names
are in :mod:`amct_nb.amct`. This package imports no Jupyter or plotting code.
"""

__version__ = "0.1.0"

from .calibrate import Prepared, QuantResult, build, collect_stats, prepare, quantize
from .config import LayerConfig, QuantConfig
from .errors import AmctError, Cancelled, ConfigError, DataError, ModelError, OutputError
from .model import load_model
from .record import Record
from .registry import OpSpec, register

__all__ = [
    "__version__",
    "quantize", "prepare", "collect_stats", "build", "Prepared", "QuantResult",
    "QuantConfig", "LayerConfig", "Record", "load_model", "OpSpec", "register",
    "AmctError", "ModelError", "DataError", "ConfigError", "OutputError", "Cancelled",
]
