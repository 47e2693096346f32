"""The numbers of one QuantizeLinear / DequantizeLinear: its grid, element type and constants.

A QDQ model states its quantization in Q/DQ nodes: ``q = saturate(round_half_even(x / scale) +
zero_point)`` and ``x_hat = (q - zero_point) * scale``. This module reads those numbers exactly
(scales stay float32 bit for bit, integers keep their type), names the element types amct-nb cannot
convert, and quantizes a float weight as a QuantizeLinear does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto

from ..errors import ModelError, NotSupportedError
from ..ir import GraphIndex, attr

__all__ = ["Grid", "QatConst", "NodeNumbers", "node_numbers", "quantize_like_q", "dequantize_like_dq",
           "type_name", "INT_RANGES"]

#: Integer types a converted Q/DQ may use, with their ranges (int32: biases only).
INT_RANGES = {TensorProto.UINT8: (0, 255), TensorProto.INT8: (-128, 127), TensorProto.INT32: (-(2**31), 2**31 - 1)}
_NAMES = {TensorProto.UINT8: "uint8", TensorProto.INT8: "int8", TensorProto.INT32: "int32"}


def type_name(elem_type: int) -> str:
    """``uint8``, ``int16``, ``float8e4m3fn``... for an ONNX element type."""
    try:
        return TensorProto.DataType.Name(elem_type).lower()
    except ValueError:
        return f"element type {elem_type}"


@dataclass(frozen=True)
class Grid:
    """The per-tensor grid of a quantized activation: ``(clamp(round(x / s) + zp, qmin, qmax) - zp) * s``.

    ``qmin``/``qmax`` are the type's range, narrowed by a Clip between Q and DQ (PyTorch exports
    ``quant_max=127`` activations that way)."""

    scale: np.float32
    zero_point: int
    dtype: str  # "uint8" | "int8"
    qmin: int
    qmax: int
    node: str  # the QuantizeLinear (or DequantizeLinear) that states it

    @property
    def offset_d(self) -> int:
        """AMCT's offset: the zero point on the signed int8 grid."""
        return self.zero_point - 128 if self.dtype == "uint8" else self.zero_point

    @property
    def symmetric(self) -> bool:
        return self.zero_point == (128 if self.dtype == "uint8" else 0)

    @property
    def narrowed(self) -> bool:
        return (self.qmin, self.qmax) != ((0, 255) if self.dtype == "uint8" else (-128, 127))

    @property
    def lo(self) -> float:
        return float(np.float32((self.qmin - self.zero_point) * self.scale))

    @property
    def hi(self) -> float:
        return float(np.float32((self.qmax - self.zero_point) * self.scale))

    def same(self, other: Grid) -> bool:
        return (self.scale.tobytes() == other.scale.tobytes() and self.zero_point == other.zero_point
                and self.dtype == other.dtype and (self.qmin, self.qmax) == (other.qmin, other.qmax))


@dataclass
class QatConst:
    """A constant the QAT model stored as integers: a weight, a bias or another constant.

    ``q`` holds the integers exactly as the model computes them, ``scale``/``zero_point`` are
    per tensor (shape ``[]``) or per channel along ``axis``."""

    q: np.ndarray
    scale: np.ndarray
    zero_point: np.ndarray
    axis: int | None
    elem_type: int
    form: str  # "integer initializer" | "float weight -> QuantizeLinear"
    node: str  # the DequantizeLinear

    @property
    def dtype(self) -> str:
        return type_name(self.elem_type)

    @property
    def per_channel(self) -> bool:
        return self.axis is not None and self.scale.size > 1


@dataclass
class NodeNumbers:
    """Scale, zero point, axis and integer type of one Q or DQ node (constants only)."""

    scale: np.ndarray  # float32, [] per tensor or [C] per channel
    zero_point: np.ndarray  # int64 values, shaped like scale
    axis: int | None  # None: per tensor
    elem_type: int  # the integer side's type

    def agrees(self, other: NodeNumbers) -> bool:
        return (self.scale.shape == other.scale.shape and self.scale.tobytes() == other.scale.tobytes()
                and np.array_equal(self.zero_point, other.zero_point) and self.elem_type == other.elem_type
                and self.axis == other.axis)

    def describe(self) -> str:
        s = self.scale.reshape(-1)
        z = self.zero_point.reshape(-1)
        if s.size == 1:
            return f"scale {float(s[0]):.9g}, zero point {int(z[0])} ({type_name(self.elem_type)})"
        return f"{s.size} scales along axis {self.axis} ({type_name(self.elem_type)})"


def _const(idx: GraphIndex, name: str, node: onnx.NodeProto, what: str) -> tuple[np.ndarray, int]:
    if not idx.is_const(name):
        raise ModelError(f"{node.op_type} '{node.name}': its {what} '{name}' is computed by the graph, not a "
                         "constant: amct-nb reads the grids of Q/DQ nodes from constants; re-export with constant "
                         "scales and zero points (e.g. torch.onnx.export(..., do_constant_folding=True))")
    return idx.array(name), idx.initializers[name].data_type


def _int_type(idx: GraphIndex, node: onnx.NodeProto, types: dict[str, int]) -> int:
    """The integer side's element type: the zero point's, else output_dtype (Q, opset 21), else
    the DQ input's, else uint8 (ONNX's default)."""
    if len(node.input) > 2 and node.input[2]:
        return _const(idx, node.input[2], node, "zero point")[1]
    if node.op_type == "QuantizeLinear":
        return int(attr(node, "output_dtype", 0)) or TensorProto.UINT8
    src = node.input[0]
    if idx.is_const(src):
        return idx.initializers[src].data_type
    return types.get(src, TensorProto.UINT8)


def node_numbers(idx: GraphIndex, node: onnx.NodeProto, types: dict[str, int]) -> NodeNumbers:
    """The grid of a QuantizeLinear/DequantizeLinear, checked: float32 positive finite scales,
    8-bit (or int32 for constants) integer types, no block quantization."""
    if int(attr(node, "block_size", 0) or 0):
        raise NotSupportedError(f"{node.op_type} '{node.name}' uses block quantization (block_size "
                                f"{attr(node, 'block_size')}): amct-nb converts per-tensor and per-channel grids; "
                                "re-export with per-channel weights")
    elem = _int_type(idx, node, types)
    if elem not in INT_RANGES:
        raise NotSupportedError(
            f"{node.op_type} '{node.name}' quantizes to {type_name(elem)}: amct-nb converts 8-bit Q/DQ (uint8 or "
            "int8 activations, int8 weights, int32 biases), not int16/uint16, int4/uint4 or float8: re-export "
            "with 8-bit quantization (PyTorch: quant_min/quant_max 0..255 or -128..127; ONNX Runtime: "
            "QuantType.QUInt8 / QInt8)")
    scale, stype = _const(idx, node.input[1], node, "scale")
    if stype != TensorProto.FLOAT:
        raise NotSupportedError(f"{node.op_type} '{node.name}' has {type_name(stype)} scales: amct-nb converts "
                                "float32 models with float32 scales; export the model in float32")
    scale = np.asarray(scale, np.float32)
    if scale.size == 0 or not np.all(np.isfinite(scale)) or not np.all(scale > 0):
        bad = scale.reshape(-1)[~(np.isfinite(scale.reshape(-1)) & (scale.reshape(-1) > 0))][:3]
        raise ModelError(f"{node.op_type} '{node.name}' has scale(s) {bad.tolist()}: scales must be finite and "
                         "positive; the QAT export is broken (re-export after training)")
    if len(node.input) > 2 and node.input[2]:
        zp = np.asarray(_const(idx, node.input[2], node, "zero point")[0]).astype(np.int64)
    else:
        zp = np.zeros(scale.shape, np.int64)
    if scale.size == 1:
        return NodeNumbers(scale.reshape(()), zp.reshape(()) if zp.size == 1 else zp, None, elem)
    axis = int(attr(node, "axis", 1))
    return NodeNumbers(scale.reshape(-1), zp.reshape(-1), axis, elem)


def _along(v: np.ndarray, axis: int | None, ndim: int) -> np.ndarray:
    if axis is None or v.ndim == 0:
        return v
    shape = [1] * ndim
    shape[axis % ndim] = -1
    return v.reshape(shape)


def quantize_like_q(x: np.ndarray, nn: NodeNumbers, qmin: int, qmax: int) -> np.ndarray:
    """The integers a QuantizeLinear computes from float ``x`` (float32 division, round half to
    even, saturation to [qmin, qmax]), as int64."""
    x = np.asarray(x, np.float32)
    s = _along(nn.scale, nn.axis, x.ndim)
    z = _along(nn.zero_point, nn.axis, x.ndim)
    q = np.rint((x / s).astype(np.float32)).astype(np.float64) + z
    return np.clip(q, qmin, qmax).astype(np.int64)


def dequantize_like_dq(q: np.ndarray, nn: NodeNumbers) -> np.ndarray:
    """float32 values a DequantizeLinear computes from integers ``q``: ``float(q - zp) * scale``."""
    q = np.asarray(q).astype(np.int64)
    s = _along(nn.scale, nn.axis, q.ndim)
    z = _along(nn.zero_point, nn.axis, q.ndim)
    return ((q - z).astype(np.float32) * s).astype(np.float32)
