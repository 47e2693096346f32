"""Probe ONNX Runtime's int8 kernels on this machine for saturation.

x86 CPUs without VNNI multiply uint8 activations by int8 weights with ``vpmaddubsw``, which adds
two neighbouring products into a *saturating* int16: 255*127 + 255*127 = 64770 does not fit,
so int8 models silently lose accuracy there (several points of top-1 on EfficientNet-Lite0).
Instead of guessing from CPU flags, run tiny QDQ models through the same ORT kernels and compare
with exact integer arithmetic.
"""

from __future__ import annotations

import functools

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

__all__ = ["int8_saturates", "pair_guard_exact", "platform_report", "uint8_weights_exact"]


def _session(model):
    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.intra_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def _stored(w: np.ndarray, uint8: bool) -> tuple[np.ndarray, np.ndarray]:
    """(weight, zero point) as the deploy model stores them: int8 with zero point 0, or uint8
    ``w + 128`` with zero point 128 (the ``uint8`` saturation guard)."""
    if uint8:
        return (w.astype(np.int16) + 128).astype(np.uint8), np.array(128, np.uint8)
    return w.astype(np.int8), np.array(0, np.int8)


def _mm_model(w: np.ndarray, uint8: bool = False) -> onnx.ModelProto:
    K, N = w.shape
    wq, wz = _stored(w, uint8)
    g = helper.make_graph(
        [
            helper.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["x"]),
            helper.make_node("DequantizeLinear", ["w", "ws", "wz"], ["wf"]),
            helper.make_node("MatMul", ["x", "wf"], ["y"]),
        ],
        "probe",
        [helper.make_tensor_value_info("xq", TensorProto.UINT8, [None, K])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, N])],
        [
            numpy_helper.from_array(np.array(1.0, np.float32), "xs"),
            numpy_helper.from_array(np.array(0, np.uint8), "xz"),
            numpy_helper.from_array(wq, "w"),
            numpy_helper.from_array(np.array(1.0, np.float32), "ws"),
            numpy_helper.from_array(wz, "wz"),
        ],
    )
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)], ir_version=7)


def _conv_model(w: np.ndarray, uint8: bool = False) -> onnx.ModelProto:
    cout, cin, kh, kw = w.shape
    wq, wz = _stored(w, uint8)
    g = helper.make_graph(
        [
            helper.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["x"]),
            helper.make_node("DequantizeLinear", ["w", "ws", "wz"], ["wf"]),
            helper.make_node("Conv", ["x", "wf"], ["y"], pads=[kh // 2, kw // 2, kh // 2, kw // 2]),
            helper.make_node("QuantizeLinear", ["y", "ys", "yz"], ["yq"]),
        ],
        "probe",
        [helper.make_tensor_value_info("xq", TensorProto.UINT8, [1, cin, 6, 6])],
        [helper.make_tensor_value_info("yq", TensorProto.UINT8, [1, cout, 6, 6])],
        [
            numpy_helper.from_array(np.array(1.0, np.float32), "xs"),
            numpy_helper.from_array(np.array(0, np.uint8), "xz"),
            numpy_helper.from_array(wq, "w"),
            numpy_helper.from_array(np.array(1.0, np.float32), "ws"),
            numpy_helper.from_array(wz, "wz"),
            numpy_helper.from_array(np.array(512.0, np.float32), "ys"),
            numpy_helper.from_array(np.array(0, np.uint8), "yz"),
        ],
    )
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)], ir_version=7)


def _mm_exact(w: np.ndarray, uint8: bool = False) -> bool:
    x = np.full((4, w.shape[0]), 255, np.uint8)
    got = _session(_mm_model(w, uint8)).run(None, {"xq": x})[0]
    want = x.astype(np.int64) @ w.astype(np.int64)
    return bool(np.array_equal(got.astype(np.int64), want))


def _conv_exact(w: np.ndarray, uint8: bool = False) -> bool:
    x = np.full((1, w.shape[1], 6, 6), 255, np.uint8)
    got = _session(_conv_model(w, uint8)).run(None, {"xq": x})[0][0, :, 3, 3]
    want = np.clip(np.round(255.0 * w.astype(np.int64).sum(axis=(1, 2, 3)) / 512.0), 0, 255)
    return bool(np.array_equal(got.astype(np.int64), want.astype(np.int64)))


@functools.cache
def int8_saturates() -> bool:
    """True when ORT's u8 x s8 kernels on this CPU lose precision on large same-signed pairs."""
    w = np.full((64, 16), 127, np.int8)
    cw = np.zeros((8, 16, 1, 1), np.int8)
    cw[:, :2] = 127
    return not (_mm_exact(w) and _conv_exact(cw))


@functools.cache
def pair_guard_exact() -> bool:
    """True when weights obeying :func:`amct_nb.quant.guard.pair_guard` stay exact on this CPU.

    Checks the reduction orders the guard assumes: MatMul/Gemm along K, Conv with kernel
    positions outer and input channels inner (3x3 with 1, 3 and 16 input channels).
    """
    w = np.ones((64, 16), np.int8)
    w[0::2] = 127
    if not _mm_exact(w) or not _mm_exact(
        np.where(np.arange(64)[:, None] % 2 == 1, 127, 1).astype(np.int8) * np.ones((1, 16), np.int8)
    ):
        return False
    for cin in (1, 3, 16):
        cw = np.ones((8, cin, 3, 3), np.int8)
        flat = np.moveaxis(cw, 1, -1).reshape(8, -1)
        flat[:, 0::2] = 127
        cw = np.moveaxis(flat.reshape(8, 3, 3, cin), -1, 1).copy()
        if not _conv_exact(cw):
            return False
    return True


@functools.cache
def uint8_weights_exact() -> bool:
    """True when weights stored as uint8 ``q + 128`` with zero point 128 stay exact on this CPU.

    ONNX Runtime multiplies uint8 activations by uint8 weights with 16-bit products summed in int32
    (no saturating pair sum) and subtracts the zero point's share; the probe uses the weights that
    saturate the u8 x s8 kernels (127 everywhere, and -127) to check it.
    """
    for v in (127, -127):
        if not _mm_exact(np.full((64, 16), v, np.int8), uint8=True):
            return False
    for cin, k in ((16, 1), (16, 3), (3, 3)):
        cw = np.zeros((8, cin, k, k), np.int8)
        flat = np.moveaxis(cw, 1, -1).reshape(8, -1)
        flat[:, :4] = 127  # two saturating pairs in kernel order; 255 * 508 / 512 stays within uint8
        cw = np.moveaxis(flat.reshape(8, k, k, cin), -1, 1).copy()
        if not _conv_exact(cw, uint8=True):
            return False
    return True


def platform_report() -> dict:
    """What the probes found, for logs and reports."""
    sat = int8_saturates()
    return {
        "onnxruntime": ort.__version__,
        "int8_saturates": sat,
        "pair_guard_exact": pair_guard_exact() if sat else True,
        "uint8_weights_exact": uint8_weights_exact() if sat else True,
    }
