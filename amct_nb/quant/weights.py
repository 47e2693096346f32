"""Weight schemes: how a layer's float weight becomes int8 values and scales.

A scheme is registered under the name a config's ``wts_algo`` uses, like the range algorithms;
AMCT's ``arq_quantize`` is the uniform symmetric scheme (per output channel or per tensor)::

    scale_c = max|w_c| / (2^(b-1) - 1)       q = clamp(round(w / scale_c), -(2^(b-1) - 1), 2^(b-1) - 1)

Every scheme gets the same :class:`WeightTask` (the float weight, its channel axis, the bits, the
saturation guard and the kernel's reduction layout, the smallest scales the int32 bias allows, or
the scales a record gives) and returns a :class:`QuantizedWeight` that the deploy model stores as
it is, so the fake-quant and deploy models agree whatever the scheme.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from ..errors import ConfigError, NotSupportedError
from .grid import quantize_weight
from .guard import pair_guard, pair_safe_quantize

__all__ = ["WeightTask", "QuantizedWeight", "WeightScheme", "Uniform", "SCHEMES", "register_scheme", "get_scheme",
           "NOT_YET", "DEFAULT_SCHEME"]


@dataclass(frozen=True)
class WeightTask:
    """What a scheme needs to quantize one layer's weight."""

    weight: np.ndarray  # float32, as in the model
    axis: int | None  # output-channel axis of per-channel scales; None: one scale for the tensor
    bits: int
    guard: str  # "none" | "pairs" | "reduce_range" (see amct_nb.quant.guard.resolve_guard)
    #: the weight (or any array of its shape) as [C_out, K] in the int8 kernel's reduction order,
    #: None when the kernel cannot saturate (see amct_nb.ops.OpSpec.kernel_rows)
    rows: Callable[[np.ndarray], np.ndarray | None]
    min_scale: np.ndarray | None = None  # smallest scales that keep the int32 bias in range
    scale: np.ndarray | None = None  # scales given by a record: only round (and guard)
    where: str = "layer"  # the layer, for error messages
    steps: int | None = None  # non-uniform schemes: how many levels (AMCT's num_steps)
    iterations: int = 1  # non-uniform schemes: rounds of level search and scale refit (num_of_iteration)
    codebook: tuple | None = None  # non-uniform schemes: the levels, given by a record
    #: mean square of the input each weight multiplies, broadcastable to the weight (None: unknown);
    #: non-uniform schemes weigh each weight's error by it, i.e. minimise the layer's output error
    energy: np.ndarray | None = None


@dataclass(frozen=True)
class QuantizedWeight:
    q: np.ndarray  # int8, shaped like the weight
    scale: np.ndarray  # float32, [C] per channel or [] per tensor
    axis: int | None
    pairs_fixed: int = 0  # adjacent weight pairs the saturation guard changed
    codebook: tuple | None = None  # the levels of a non-uniform scheme (None: the uniform grid)


class WeightScheme(Protocol):
    name: str

    def check(self, bits: int) -> str | None:
        """Why ``bits`` is not supported (None: it is)."""

    def quantize(self, task: WeightTask) -> QuantizedWeight: ...


class Uniform:
    """Symmetric uniform weights (AMCT's ``arq_quantize``), per channel or per tensor.

    With the ``pairs`` guard on a kernel that can saturate, per-channel scales are searched under
    the pair constraint (:func:`~amct_nb.quant.guard.pair_safe_quantize`) and the few offending
    pairs are then fixed (:func:`~amct_nb.quant.guard.pair_guard`); ``reduce_range`` uses 7 bits.
    """

    name = "arq_quantize"

    def check(self, bits: int) -> str | None:
        # 4: A8W4, values on the 4-bit grid stored in int8 initializers (what QAT trains for; PTQ works too)
        return None if bits in (8, 4) else f"weight num_bits {bits} is not supported for uniform weights: use 8 or 4"

    def quantize(self, t: WeightTask) -> QuantizedWeight:
        w, axis, bits = t.weight, t.axis, t.bits
        needs_guard = t.rows(np.zeros(w.shape, np.int8)) is not None
        reduce = t.guard == "reduce_range" and needs_guard
        qmax = (2 ** (bits - 2) - 1) if reduce else (2 ** (bits - 1) - 1)
        shape = [1] * w.ndim
        if axis is not None:
            shape[axis] = -1
        if t.scale is None:
            q, scale = quantize_weight(w, axis, bits=bits - 1 if reduce else bits, min_scale=t.min_scale)
            if t.guard == "pairs" and needs_guard and axis is not None:
                # per-channel scale search under the pair constraint (weights in kernel order)
                flat_idx = t.rows(np.arange(w.size).reshape(w.shape))
                rows_c = np.unravel_index(flat_idx[:, 0], w.shape)[axis]  # output channel of each kernel row
                _, new_s, _ = pair_safe_quantize(w.reshape(-1)[flat_idx], scale[rows_c], bits=bits)
                scale = np.zeros_like(scale)
                scale[rows_c] = new_s
        else:
            scale = np.asarray(t.scale, np.float32).reshape(-1)
            want = w.shape[axis] if axis is not None else 1
            if scale.size != want:
                raise ConfigError(
                    f"record: layer {t.where} has {scale.size} scale_w values but its weight needs {want} "
                    f"({'one per output channel' if axis is not None else 'per-tensor weights'}): the record "
                    "belongs to another model or config (channel_wise)"
                )
            if axis is None:
                scale = scale.reshape(())
            q = np.clip(np.round(w / scale.reshape(shape)), -qmax, qmax).astype(np.int8)
        fixed = 0
        if t.guard == "pairs" and needs_guard:
            real = w / scale.reshape(shape)
            flat_idx = t.rows(np.arange(w.size).reshape(w.shape))
            qf = q.reshape(-1)
            newq, fixed = pair_guard(qf[flat_idx], real.reshape(-1)[flat_idx])
            if fixed:
                qf = qf.copy()
                qf[flat_idx] = newq
                q = qf.reshape(w.shape).astype(np.int8)
        return QuantizedWeight(q.astype(np.int8), np.asarray(scale, np.float32), axis, fixed)


#: The weight schemes by ``wts_algo`` name.
SCHEMES: dict[str, WeightScheme] = {}
DEFAULT_SCHEME = Uniform.name
#: AMCT ``wts_algo`` names amct-nb does not implement yet, with what they are.
NOT_YET: dict[str, str] = {}


def register_scheme(scheme: WeightScheme) -> WeightScheme:
    """Add (or replace) a weight scheme under ``scheme.name``."""
    SCHEMES[scheme.name] = scheme
    return scheme


register_scheme(Uniform())


def get_scheme(name: str, where: str = "config") -> WeightScheme:
    """The scheme called ``name``; a NotSupportedError for AMCT schemes amct-nb lacks, a ConfigError
    for unknown names, each naming what exists."""
    if name in SCHEMES:
        return SCHEMES[name]
    if name in NOT_YET:
        raise NotSupportedError(f"{where}: wts_algo '{name}' ({NOT_YET[name]}) is not supported by amct-nb yet: "
                          f"use {' or '.join(SCHEMES)}")
    raise ConfigError(f"{where}: wts_algo '{name}' is unknown: use {' or '.join(SCHEMES)}")
