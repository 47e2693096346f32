"""amct-nb: Jupyter-first ONNX model compression on ONNX Runtime.

The public API (the CLI, the notebook layer and the AMCT-named API use nothing else)::

    import amct_nb as an
    result = an.quantize("model.onnx", calibration_data)      # prepare, observe, ranges, export
    result.save("outputs/calibration", prefix="model")          # AMCT-named files

Step by step: :func:`prepare`, :func:`collect_stats`, :func:`build` (and :func:`rebuild` after a
settings change, without observing again). AMCT's own function names are in :mod:`amct_nb.amct`.
This package imports no Jupyter, plotting or torch code; ``docs/architecture.md`` maps its rooms.
"""

from ._version import __version__
from .auto import AutoCalibration, auto_calibrate
from .config import LayerConfig, QuantConfig
from .errors import AmctError, Cancelled, ConfigError, DataError, ModelError, NotSupportedError, OutputError
from .ir import load_model
from .ops import OpSpec, register
from .ptq import Observation, Prepared, QuantResult, build, collect_stats, prepare, quantize, rebuild
from .reasons import Code, Reason
from .record import Record

__all__ = [
    "__version__",
    "quantize", "prepare", "collect_stats", "build", "rebuild", "Prepared", "QuantResult", "Observation",
    "auto_calibrate", "AutoCalibration",
    "QuantConfig", "LayerConfig", "Record", "load_model", "OpSpec", "register", "Reason", "Code",
    "AmctError", "ModelError", "DataError", "ConfigError", "OutputError", "Cancelled", "NotSupportedError",
]
