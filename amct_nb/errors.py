"""Exceptions of amct-nb: each message names the problem and the fix."""

__all__ = ["AmctError", "ModelError", "DataError", "ConfigError", "OutputError", "Cancelled", "NotSupportedError"]


class AmctError(Exception):
    """Base class of every error amct-nb raises on purpose (bad input, bad config, I/O)."""


class ModelError(AmctError):
    """The model file or ModelProto cannot be used (missing, not ONNX, invalid, unsupported)."""


class DataError(AmctError):
    """Calibration or evaluation data does not fit the model (shape, dtype, name, NaN, empty)."""


class ConfigError(AmctError):
    """A quantization config or record is malformed or names layers the model does not have."""


class OutputError(AmctError):
    """Outputs cannot be written (permissions, disk full, busy folder, would overwrite the input)."""


class Cancelled(AmctError):
    """A long run was cancelled by the user (notebook button or KeyboardInterrupt)."""


class NotSupportedError(AmctError, NotImplementedError):
    """A feature amct-nb does not have yet was asked for; the message says what exists instead."""
