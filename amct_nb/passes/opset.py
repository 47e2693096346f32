"""Raise a model's opset so per-channel QuantizeLinear/DequantizeLinear are valid (opset >= 13)."""

from __future__ import annotations

import onnx
from onnx import version_converter

from ..errors import ModelError
from ..ir import model_opset
from .base import Change

__all__ = ["upgrade_opset", "MIN_OPSET"]

MIN_OPSET = 13


def upgrade_opset(model: onnx.ModelProto, target: int = MIN_OPSET) -> tuple[onnx.ModelProto, list[Change]]:
    """Convert the default domain to ``target`` with onnx's version converter when it is lower."""
    have = model_opset(model)
    if have >= target:
        return model, []
    try:
        out = version_converter.convert_version(model, target)
    except Exception as e:  # the converter raises RuntimeError / ValueError / its own errors
        raise ModelError(
            f"the model is at opset {have}, below the opset {target} that per-channel int8 needs, and "
            f"onnx's version converter cannot raise it ({str(e).splitlines()[0] if str(e) else e!r}): "
            f"re-export the model at opset {target} or newer"
        ) from e
    return out, [Change("opset_raised", f"opset raised from {have} to {target} (onnx version converter)")]
