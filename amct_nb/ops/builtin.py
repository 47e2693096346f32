"""The op types amct-nb quantizes: Conv, ConvTranspose, Gemm and MatMul with a constant weight."""

from __future__ import annotations

import numpy as np

from ..ir import attr
from .registry import OpSpec, register

__all__: list[str] = []


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


def _convt_rows(node, w):
    # [Cin, Cout/g, k...] -> rows per output channel, K = input channels x kernel positions
    if int(attr(node, "group", 1)) != 1:
        return None
    return np.moveaxis(w, 1, 0).reshape(w.shape[1], -1)


register(OpSpec("ConvTranspose", 1, 2, _convt_axis, _convt_rows, _conv_check,
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
