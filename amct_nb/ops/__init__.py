"""Quantizable operator types: the registry and the built-in Conv, ConvTranspose, Gemm, MatMul."""

from . import builtin  # noqa: F401  (registers the built-in op types)
from .registry import OPS, Layer, OpSpec, find_layers, register

__all__ = ["OPS", "Layer", "OpSpec", "find_layers", "register"]
