"""Registry of quantizable operator types: adding an op is one :func:`register` call.

An :class:`OpSpec` says which input is the weight, which the bias, along which weight axis the
output channels lie, how to lay the weight out in the int8 kernel's reduction order (for the
saturation guard), and when a node of that type cannot be quantized (with the reason).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import onnx
from onnx import helper

from .model import GraphIndex

__all__ = ["OpSpec", "register", "OPS", "attr", "find_layers", "Layer"]


def attr(node: onnx.NodeProto, name: str, default=None):
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


@dataclass(frozen=True)
class OpSpec:
    """How to quantize one operator type.

    ``channel_axis(node, w)`` is the weight axis of the output channels (None: per-tensor only).
    ``kernel_rows(node, w)`` returns the weight as [C_out, K] in the order an int8 GEMM reduces
    over K (adjacent positions are summed pairwise by x86 u8*s8 kernels without VNNI), or None
    when the runtime uses a kernel that cannot saturate (e.g. depthwise convolution).
    ``check(node, idx)`` returns why a node cannot be quantized, or None.
    """

    op_type: str
    weight_index: int
    bias_index: int | None
    channel_axis: Callable[[onnx.NodeProto, np.ndarray], int | None]
    kernel_rows: Callable[[onnx.NodeProto, np.ndarray], np.ndarray | None]
    check: Callable[[onnx.NodeProto, GraphIndex], str | None]
    out_channels: Callable[[onnx.NodeProto, np.ndarray], int] = lambda n, w: int(w.shape[0])
    activation_index: int = 0


OPS: dict[str, OpSpec] = {}


def register(spec: OpSpec) -> OpSpec:
    """Add (or replace) the quantization rule of an operator type."""
    OPS[spec.op_type] = spec
    return spec


# -- Conv ---------------------------------------------------------------------------------
def _conv_check(node, idx):
    if len(node.input) < 2 or not idx.is_const(node.input[1]):
        return "weight is not a constant"
    w = idx.array(node.input[1])
    if w.ndim not in (3, 4, 5):
        return f"{w.ndim}-D weight (only 1-D/2-D/3-D convolutions)"
    if len(node.input) > 2 and node.input[2] and not idx.is_const(node.input[2]):
        return "bias is not a constant"
    return None


def _conv_rows(node, w):
    group = int(attr(node, "group", 1))
    if group > 1 and w.shape[1] == 1:
        return None  # depthwise: ORT uses a dedicated int32 kernel
    # K order of ORT's QLinearConv: kernel positions outer, input channels of the group inner
    return np.moveaxis(w, 1, -1).reshape(w.shape[0], -1)


register(OpSpec("Conv", 1, 2, lambda n, w: 0, _conv_rows, _conv_check))


# -- ConvTranspose ------------------------------------------------------------------------
def _convt_axis(node, w):
    return 1 if int(attr(node, "group", 1)) == 1 else None


def _convt_check(node, idx):
    r = _conv_check(node, idx)
    if r:
        return r
    if any(int(p) != 0 for p in (attr(node, "output_padding", []) or [])) and False:
        return "output_padding"
    return None


def _convt_rows(node, w):
    # [Cin, Cout/g, k...] -> rows per output channel, K = input channels x kernel positions
    if int(attr(node, "group", 1)) != 1:
        return None
    return np.moveaxis(w, 1, 0).reshape(w.shape[1], -1)


register(OpSpec("ConvTranspose", 1, 2, _convt_axis, _convt_rows, _convt_check,
                out_channels=lambda n, w: int(w.shape[1]) * int(attr(n, "group", 1))))


# -- Gemm ---------------------------------------------------------------------------------
def _gemm_check(node, idx):
    if int(attr(node, "transA", 0)) != 0:
        return "Gemm with transA=1"
    if not idx.is_const(node.input[1]):
        return "weight (input B) is not a constant"
    if float(attr(node, "alpha", 1.0)) != 1.0:
        return "Gemm alpha != 1"
    if len(node.input) > 2 and node.input[2]:
        if not idx.is_const(node.input[2]):
            return "bias (input C) is not a constant"
        c = idx.array(node.input[2])
        w = idx.array(node.input[1])
        n = w.shape[0] if int(attr(node, "transB", 0)) else w.shape[1]
        if c.size not in (1, n) or (c.ndim == 2 and c.shape[0] != 1):
            return "bias (input C) is not one value per output"
        if float(attr(node, "beta", 1.0)) != 1.0:
            return "Gemm beta != 1"
    return None


def _gemm_axis(node, w):
    return 0 if int(attr(node, "transB", 0)) else 1


def _gemm_rows(node, w):
    return w if int(attr(node, "transB", 0)) else w.T


register(OpSpec("Gemm", 1, 2, _gemm_axis, _gemm_rows, _gemm_check,
                out_channels=lambda n, w: int(w.shape[0] if int(attr(n, "transB", 0)) else w.shape[1])))


# -- MatMul with a constant 2-D weight ---------------------------------------------------------
def _matmul_check(node, idx):
    if idx.is_const(node.input[0]):
        return "constant first input (weight on the left)"
    if not idx.is_const(node.input[1]):
        return "second input is not a constant (MatMul between two activations)"
    if idx.array(node.input[1]).ndim != 2:
        return f"{idx.array(node.input[1]).ndim}-D weight (only 2-D)"
    return None


register(OpSpec("MatMul", 1, None, lambda n, w: 1, lambda n, w: w.T, _matmul_check,
                out_channels=lambda n, w: int(w.shape[-1])))


@dataclass
class Layer:
    """A quantizable node found in a model."""

    name: str
    op_type: str
    activation: str
    weight: str
    bias: str | None
    output: str
    weight_shape: tuple
    reason: str | None = None  # why it cannot be quantized (None: it can)

    @property
    def quantizable(self) -> bool:
        return self.reason is None


def find_layers(model: onnx.ModelProto) -> list[Layer]:
    """Every node of a registered op type in the main graph, quantizable or not (with reason).

    Nodes without a name get ``{op_type}_{index}`` (AMCT's convention) in the returned list; the
    caller names the nodes in the model the same way with :func:`name_nodes`.
    """
    idx = GraphIndex(model.graph)
    layers = []
    for node in model.graph.node:
        spec = OPS.get(node.op_type)
        if spec is None or node.domain not in ("", "ai.onnx"):
            continue
        reason = spec.check(node, idx)
        w = idx.array(node.input[spec.weight_index]) if idx.is_const(node.input[spec.weight_index]) else None
        if reason is None and w is not None and not np.issubdtype(w.dtype, np.floating):
            reason = f"weight is {w.dtype}, not float"
        if reason is None and w is not None and w.dtype != np.float32:
            reason = f"weight is {w.dtype} (only float32 models are quantized)"
        bias = None
        if spec.bias_index is not None and len(node.input) > spec.bias_index and node.input[spec.bias_index]:
            bias = node.input[spec.bias_index]
        if reason is None:
            shared = [c.name for c in idx.consumers.get(node.input[spec.weight_index], []) if c is not node]
            if shared:
                reason = f"weight shared with {', '.join(shared[:3])} (reused layers are not quantized)"
        layers.append(
            Layer(
                name=node.name,
                op_type=node.op_type,
                activation=node.input[spec.activation_index],
                weight=node.input[spec.weight_index],
                bias=bias,
                output=node.output[0],
                weight_shape=tuple(w.shape) if w is not None else (),
                reason=reason,
            )
        )
    return layers
