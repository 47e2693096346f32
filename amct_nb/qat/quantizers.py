"""Fake quantizers whose forward pass is the deploy model's arithmetic, with learnable grids.

* :class:`ActQuant`: AMCT's ULQ for activations: a learnable clip range, here as a learnable scale and
  zero point (the range is ``[(qmin - zp) s, (qmax - zp) s]``), initialised from the PTQ record,
  rounding with a straight-through estimator and LSQ's gradient scaling. ``x -> (clip(round(x / s) + zp)
  - zp) * s`` is QuantizeLinear followed by DequantizeLinear, in float32 like ONNX Runtime.
* :class:`WeightQuant`: ARQ-retrain weights: per-channel (or per-tensor) learnable scales, symmetric
  int8, initialised from the PTQ scales; with the saturation guard, every adjacent same-signed weight
  pair over the limit is projected onto it in the forward pass (the exact rule of the deploy-time guard),
  so training sees the integers the deploy model will hold and nothing moves after training.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from ..quant import PAIR_LIMIT

__all__ = ["ActQuant", "WeightQuant", "round_ste", "fake_quant_bias"]


def round_ste(x: torch.Tensor) -> torch.Tensor:
    """Round half to even (as ONNX Runtime and numpy do) with an identity gradient."""
    return x + (torch.round(x) - x).detach()


def _grad_scale(x: torch.Tensor, g: float) -> torch.Tensor:
    """``x`` in the forward pass, its gradient times ``g`` (LSQ's step-size gradient scale)."""
    return (x - x * g).detach() + x * g


class ActQuant(nn.Module):
    """Fake quantization of one activation tensor on a learnable uint8/int8 grid."""

    def __init__(self, scale: float, zero_point: int, qmin: int, qmax: int, learn_zero_point: bool = True,
                 max_scale: float | None = None):
        super().__init__()
        self.qmin, self.qmax = int(qmin), int(qmax)
        # a tensor a Clip(0, hi) makes, on a grid from 0: the grid never reaches past hi (a wider one wastes levels,
        # and keeps ONNX Runtime from dropping the Clip, which some versions then fuse into an invalid graph)
        self.max_scale = None if max_scale is None else float(np.float32(max_scale))
        self.scale = nn.Parameter(torch.tensor(float(np.float32(scale)), dtype=torch.float32))
        self.zero_point = nn.Parameter(torch.tensor(float(zero_point), dtype=torch.float32),
                                       requires_grad=learn_zero_point)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        per_sample = max(1, x.numel() // max(1, x.shape[0] if x.dim() else 1))
        # torch's fused kernel (LSQ+ gradients for scale and zero point): 2-3x faster than the same
        # arithmetic in separate ops, and equal to it (x * (1/s) rounds like x / s but in rare ties)
        return torch._fake_quantize_learnable_per_tensor_affine(
            x, self.scale.abs().clamp(1e-12, self.max_scale).reshape(1), self.zero_point.reshape(1), self.qmin,
            self.qmax, 1.0 / math.sqrt(per_sample * self.qmax))

    def grid(self) -> tuple[np.float32, int]:
        """(scale, zero point) the deploy model's QuantizeLinear gets."""
        s = np.float32(abs(float(self.scale.detach())))
        if self.max_scale is not None:
            s = min(s, np.float32(self.max_scale))
        zp = int(np.clip(np.round(float(self.zero_point.detach())), self.qmin, self.qmax))
        return max(s, np.float32(1e-12)), zp


class WeightQuant(nn.Module):
    """Symmetric fake quantization of one layer's weight with learnable scales.

    ``axis``: the weight axis of the per-channel scales (None: one scale); ``rows``: the flat indices
    of the weight as [C, K] in the int8 kernel's reduction order (None: no pair guard)."""

    def __init__(self, scale, axis: int | None, shape: tuple, qmax: int = 127, rows: np.ndarray | None = None):
        super().__init__()
        self.axis, self.shape, self.qmax = axis, tuple(shape), int(qmax)
        self.scale = nn.Parameter(torch.tensor(np.asarray(scale, np.float32).reshape(-1 if axis is not None else ())))
        if rows is not None:
            self.register_buffer("rows", torch.from_numpy(np.asarray(rows, np.int64)), persistent=False)
            self.register_buffer("inverse", torch.from_numpy(np.argsort(np.asarray(rows).reshape(-1))),
                                 persistent=False)
        else:
            self.rows = None

    def _shaped(self, s: torch.Tensor) -> torch.Tensor:
        if self.axis is None:
            return s
        view = [1] * len(self.shape)
        view[self.axis] = -1
        return s.reshape(view)

    def integers(self, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(integer-valued weight with straight-through gradients, the scale used, shaped like ``w``)."""
        s = self.scale.abs().clamp_min(1e-12)
        s = _grad_scale(s, 1.0 / math.sqrt(max(1, w.numel() // max(1, s.numel())) * self.qmax))
        s = self._shaped(s)
        real = w / s
        q = torch.clamp(round_ste(real), -self.qmax, self.qmax)
        if self.rows is not None:
            q = self._pair_guard(q, real)
        return q, s

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        q, s = self.integers(w)
        return q * s

    def _pair_guard(self, q: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        """The deploy-time pair guard (``amct_nb.quant.pair_guard``) in the forward pass."""
        flat, rflat = q.reshape(-1), real.reshape(-1)
        r, rr = flat[self.rows], rflat[self.rows]
        kk = r.shape[1] - (r.shape[1] % 2)
        if kk == 0:
            return q
        a, b = r[:, 0:kk:2], r[:, 1:kk:2]
        lim = PAIR_LIMIT
        bad = ((a > 0) & (b > 0) & (a + b > lim)) | ((a < 0) & (b < 0) & (-(a + b) > lim))
        if not bool(bad.any()):
            return q
        ra, rb = rr[:, 0:kk:2].abs().detach(), rr[:, 1:kk:2].abs().detach()
        d = (ra + rb - lim) / 2.0
        na = torch.clamp(torch.round(ra - d), lim - 127, 127)
        sign = torch.sign(a.detach())
        new_a = torch.where(bad, sign * na, a.detach())
        new_b = torch.where(bad, sign * (lim - na), b.detach())
        a = a + (new_a - a).detach()
        b = b + (new_b - b).detach()
        fixed = torch.stack([a, b], dim=2).reshape(r.shape[0], kk)
        if kk < r.shape[1]:
            fixed = torch.cat([fixed, r[:, kk:]], dim=1)
        return fixed.reshape(-1)[self.inverse].reshape(q.shape)

    def export(self, w: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """(int8 weight, float32 scales) as the deploy model stores them."""
        with torch.no_grad():
            q, _ = self.integers(w)
        s = self.scale.detach().abs().clamp_min(1e-12).numpy().astype(np.float32)
        return q.numpy().astype(np.int8), s


def fake_quant_bias(b: torch.Tensor, scale_x: torch.Tensor, scale_w: torch.Tensor) -> torch.Tensor:
    """The int32 bias at ``scale_x * scale_w`` (per output channel), straight-through."""
    bs = (scale_x * scale_w).reshape(-1)
    return round_ste(b.reshape(-1) / bs).reshape(b.shape) * bs.reshape(b.shape) if bs.numel() == b.numel() else \
        round_ste(b / bs) * bs
