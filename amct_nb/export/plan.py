"""The QuantPlan: everything a model writer needs, and nothing else (no config, no statistics).

The plan is built from a record (:func:`amct_nb.ptq.plan.plan_from_record`): per quantized
activation tensor its grid (:class:`TensorQuant`), per quantized layer its int8 weight, scales
and int32 bias (:class:`LayerQuant`), and why the rest stays float. The deploy, fake-quant and
gated writers read only this, which is why their models compute the same numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..reasons import Reason

__all__ = ["TensorQuant", "LayerQuant", "QuantPlan", "WeightOnly", "PASS_ACTIVATIONS"]

#: Activations a quantized output moves past (the runtime drops them when the grid already clips).
PASS_ACTIVATIONS = ("Relu", "Clip")


@dataclass
class TensorQuant:
    """The grid of one quantized activation tensor: ``x_hat = (clamp(round(x / s) + zp) - zp) * s``."""

    name: str
    scale: np.float32
    zero_point: int
    dtype: str  # "uint8" | "int8"

    @property
    def qmin(self) -> int:
        return 0 if self.dtype == "uint8" else -128

    @property
    def qmax(self) -> int:
        return 255 if self.dtype == "uint8" else 127

    @property
    def lo(self) -> float:
        """Smallest value the grid represents."""
        return float((self.qmin - self.zero_point) * np.float64(self.scale))

    @property
    def hi(self) -> float:
        """Largest value the grid represents."""
        return float((self.qmax - self.zero_point) * np.float64(self.scale))


@dataclass
class LayerQuant:
    """One quantized layer: integer weight ``w_q`` with scales ``w_scale`` (per channel along
    ``axis``, or one), int32 bias ``b_q`` at ``b_scale = scale_x * w_scale``."""

    name: str
    op_type: str
    activation: str
    weight: str
    weight_index: int
    bias: str | None
    bias_index: int | None
    axis: int | None
    w_q: np.ndarray
    w_scale: np.ndarray
    b_q: np.ndarray | None = None
    b_scale: np.ndarray | None = None
    bias_shape: tuple = ()
    pairs_fixed: int = 0
    weight_bits: int = 8
    codebook: tuple | None = None  # the levels of non-uniform weights (None: the uniform int8 grid)
    #: how the deploy model stores ``w_q``: "int8" (zero point 0), or "uint8" as ``w_q + 128`` with
    #: zero point 128 (the ``uint8`` saturation guard: same values, u8 x u8 kernels that cannot saturate)
    w_storage: str = "int8"

    def dequantized_weight(self) -> np.ndarray:
        """float32 weight exactly as DequantizeLinear computes it."""
        shape = [1] * self.w_q.ndim
        if self.axis is not None:
            shape[self.axis] = -1
        return (self.w_q.astype(np.float32) * np.asarray(self.w_scale, np.float32).reshape(shape)).astype(np.float32)


@dataclass
class WeightOnly:
    """A constant weight stored as int8 (per ``axis`` scales) and dequantized in front of float ops:
    the fallback ladder's step for a layer whose activations stay float, an embedding table (Gather),
    or a recurrent layer's weights. ``users``: the nodes that read it; ``kind``: "layer", "embedding"
    or "recurrent"."""

    weight: str
    axis: int
    w_q: np.ndarray
    w_scale: np.ndarray
    users: tuple[str, ...]
    kind: str
    #: "int8", or "uint8" ``q + 128`` with zero point 128: ONNX Runtime fuses a weight-only layer whose input and
    #: output are quantized anyway into an int8 kernel, so the saturation guard applies to it too
    storage: str = "int8"

    def dequantized(self) -> np.ndarray:
        """float32 weight exactly as DequantizeLinear computes it."""
        shape = [1] * self.w_q.ndim
        shape[self.axis] = -1
        return (self.w_q.astype(np.float32) * np.asarray(self.w_scale, np.float32).reshape(shape)).astype(np.float32)


@dataclass
class QuantPlan:
    tensors: dict[str, TensorQuant] = field(default_factory=dict)
    layers: dict[str, LayerQuant] = field(default_factory=dict)
    float_layers: dict[str, Reason] = field(default_factory=dict)  # layer -> why it stays float
    float_tensors: dict[str, Reason] = field(default_factory=dict)  # tensor -> why it stays float
    guard: str = "none"
    #: weight initializer -> its int8 weight-only storage (the fallback ladder, embeddings, recurrent weights)
    weight_only: dict[str, WeightOnly] = field(default_factory=dict)

    @property
    def pairs_fixed(self) -> int:
        return sum(l.pairs_fixed for l in self.layers.values())

    @property
    def uint8_layers(self) -> list[str]:
        """Layers whose deploy weights are stored as uint8 (the ``uint8`` saturation guard)."""
        return [n for n, l in self.layers.items() if l.w_storage == "uint8"]
