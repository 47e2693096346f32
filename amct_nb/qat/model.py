"""The QAT model: a PTQ result's plan as a trainable torch module, and back to a record.

:class:`QatModel` runs the prepared (BatchNorm-folded) graph with a fake quantizer on every tensor the
plan quantizes (where it is produced, so every consumer reads the quantized value, as in the deploy
model), on every int8 layer's weight, and on its bias (int32 at ``scale_x * scale_w``). Layers the plan
left float stay float. :meth:`QatModel.export` turns the learned grids and integer weights into a
record and writes AMCT's outputs through :func:`amct_nb.ptq.build`, the code that writes PTQ and
convert-QAT models, so the fake-quant model equals the deploy model and both equal what was trained.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch
from onnx import numpy_helper
from torch import nn

from ..ir import clone
from ..ops import OPS
from ..passes import WEIGHT_UNSHARED, fusion_info
from ..ptq import QuantResult, build
from ..reasons import Reason
from ..record import TENSOR_PREFIX, LayerRecord, Record
from .bn import FoldedBn
from .graph import TorchGraph
from .quantizers import ActQuant, WeightQuant, fake_quant_bias

__all__ = ["QatModel"]


class QatModel(nn.Module):
    """``ptq``'s plan as a torch module (see the module docstring). ``forward(*inputs)`` takes the
    model's inputs as tensors, in graph order. ``train_bn``: the BatchNormalizations folded into int8
    layers train with batch statistics until :meth:`freeze_bn` (see :mod:`amct_nb.qat.bn`)."""

    def __init__(self, ptq: QuantResult, train_bn: bool = False):
        super().__init__()
        self.ptq = ptq
        prepared, plan = ptq.prepared, ptq.plan
        # a weight several layers share trains as one parameter with one weight quantizer (stored once)
        self.graph = TorchGraph(prepared.model, tied={c.target: c.node for c in prepared.changes
                                                      if c.kind == WEIGHT_UNSHARED})
        self.asymmetric = ptq.config.activation_offset
        for t, tq in plan.tensors.items():
            top = None if tq.zero_point != tq.qmin else _clip_top(self.graph.index, t)
            self.graph.hook_tensor(t, ActQuant(tq.scale, tq.zero_point, tq.qmin, tq.qmax,
                                               learn_zero_point=bool(self.asymmetric),
                                               max_scale=None if top is None else top / (tq.qmax - tq.qmin)))
        self.weights = nn.ModuleDict()
        self._wkey: dict[str, str] = {}
        idx = self.graph.index
        quantizer_of: dict[tuple, str] = {}  # (weight parameter, bits, axis) -> its WeightQuant
        for i, (name, lq) in enumerate(plan.layers.items()):
            node = idx.node(name)
            shape = tuple(lq.w_q.shape)
            self.graph.layer_hooks[name] = self._layer_hook(name, lq.activation)
            bits = ptq.config.for_layer(name, lq.op_type).wts_bits
            shared = (self.graph.key.get(lq.weight), bits, lq.axis)
            if shared[0] is not None and shared in quantizer_of:
                self._wkey[name] = quantizer_of[shared]
                continue
            rows = OPS[lq.op_type].kernel_rows(node, np.arange(int(np.prod(shape))).reshape(shape)) \
                if plan.guard == "pairs" else None
            self._wkey[name] = quantizer_of[shared] = f"w{i}"
            self.weights[f"w{i}"] = WeightQuant(lq.w_scale, lq.axis, shape, 2 ** (bits - 1) - 1, rows)
        self._start_from_corrected_biases(ptq)
        self.bns = nn.ModuleDict()
        if train_bn:
            folded = fusion_info(prepared.changes)
            for name in plan.layers:
                node = idx.node(name)
                axis = _out_axis(node)
                alone = list(self._wkey.values()).count(self._wkey[name]) == 1
                if name in folded and alone and axis is not None and len(node.input) > 2 and \
                        node.input[2] in self.graph.key:
                    self.bns[self._wkey[name]] = FoldedBn(self.graph.param(node.input[1]).shape[axis], axis)

    def _start_from_corrected_biases(self, ptq: QuantResult) -> None:
        """Training starts from the PTQ model: a layer's bias correction (the mean shift of its weights'
        rounding) goes into its bias parameter, which training then owns (the exported record has none).
        A bias that several layers read (one parameter) keeps its float value."""
        idx = self.graph.index
        readers: dict[str, int] = {}
        for lq in ptq.plan.layers.values():
            if lq.bias is not None and lq.bias in self.graph.key:
                readers[self.graph.key[lq.bias]] = readers.get(self.graph.key[lq.bias], 0) + 1
        with torch.no_grad():
            for name, lq in ptq.plan.layers.items():
                r = ptq.record.layers.get(name)
                if r is None or not r.bias_correction or lq.bias not in self.graph.key or idx.node(name) is None:
                    continue
                if readers[self.graph.key[lq.bias]] != 1:
                    continue
                p = self.graph.param(lq.bias)
                c = torch.tensor(np.asarray(r.bias_correction, np.float32))
                if p.numel() == c.numel():  # (a scalar bias broadcast over the channels keeps its value)
                    p.add_(c.reshape(p.shape).to(p.dtype))

    def _layer_hook(self, name: str, activation: str):
        def hook(w, b):
            key = self._wkey[name]
            wq = self.weights[key]
            bn = self.bns[key] if key in self.bns else None
            if bn is not None and bn.active:  # batch statistics: no int32 bias yet (it exists once BN is folded)
                q, s = wq.integers(bn.weight(w))
                return q * s, None, lambda out: bn.output(out, b)
            q, s = wq.integers(w)
            if b is not None:
                act = self.graph.tensor_hook(activation)
                sx = act.scale.abs().clamp_min(1e-12)
                b = fake_quant_bias(b, sx, s.reshape(-1))
            return q * s, b
        return hook

    def forward(self, *inputs):
        return self.graph(*inputs)

    def float_parameters(self):
        """The weights and biases, and the BatchNorms' gamma and beta (the optimizer's weight learning rate)."""
        return list(self.graph.params.values()) + list(self.bns.parameters())

    def freeze_bn(self) -> list:
        """Fold the BatchNorms still training into their layers (weights and biases change in place) and
        switch them off; returns the parameters changed (their optimizer momentum is stale)."""
        changed = []
        idx = self.graph.index
        for name, key in self._wkey.items():
            bn = self.bns[key] if key in self.bns else None
            if bn is None or not bn.active:
                continue
            node = idx.node(name)
            w, b = self.graph.param(node.input[1]), self.graph.param(node.input[2])
            bn.fold(w, b)
            changed += [w, b]
        return changed

    def grid_parameters(self):
        """The quantizers' scales and zero points."""
        return [p for m in (self.graph.tensor_hooks, self.weights) for p in m.parameters() if p.requires_grad]

    # -- back to a record ---------------------------------------------------------------------
    def record(self) -> tuple[Record, dict[str, np.ndarray]]:
        """The learned grids as a record (the PTQ record's keys and order) and the integer weights."""
        rec, ints = Record(), {}
        plan = self.ptq.plan
        signed = self.ptq.config.activation_dtype == "int8"
        for key in self.ptq.record.layers:
            tensor = key[len(TENSOR_PREFIX):] if key.startswith(TENSOR_PREFIX) else plan.layers[key].activation
            s, zp = self.graph.tensor_hook(tensor).grid()
            r = LayerRecord(scale_d=float(s), offset_d=zp if signed else zp - 128)
            if not key.startswith(TENSOR_PREFIX):
                w = self.graph.param(plan.layers[key].weight)
                q, sw = self.weights[self._wkey[key]].export(w)
                r.scale_w = [float(v) for v in np.atleast_1d(sw)]
                ints[key] = q
            rec.layers[key] = r
        return rec, ints

    def export(self) -> QuantResult:
        """AMCT's outputs of the trained model (a QuantResult: ``save`` writes them)."""
        self.freeze_bn()
        rec, ints = self.record()
        # the trained float weights and biases (the int8 layers' biases are quantized from them; float layers keep them)
        trained = _with_initializers(self.ptq.prepared, {name: self.graph.param(name).detach().numpy()
                                                         for name in self.graph.key})
        # the biases' corrections are in the trained biases already
        cfg = self.ptq.config.copy()
        cfg.bias_correction = False
        res = build(trained, cfg, self.ptq.stats, record=rec, int_weights=ints)
        for n, why in self.ptq.float_layers.items():
            if n in res.plan.float_layers:
                res.plan.float_layers[n] = why if isinstance(why, Reason) else res.plan.float_layers[n]
        return res


def _clip_top(idx, tensor: str) -> float | None:
    """``hi`` when ``tensor`` is made by a ``Clip(x, 0, hi)`` (ReLU6) with constant bounds, else None."""
    p = idx.producer.get(tensor)
    if p is None or p.op_type != "Clip":
        return None
    attrs = {a.name: a.f for a in p.attribute}
    bounds = []
    for i, key in ((1, "min"), (2, "max")):
        if len(p.input) > i and p.input[i]:
            if not idx.is_const(p.input[i]):
                return None
            bounds.append(float(idx.array(p.input[i]).reshape(-1)[0]))
        else:
            bounds.append(attrs.get(key))
    lo, hi = bounds
    return hi if lo == 0 and hi is not None and hi > 0 else None


def _out_axis(node) -> int | None:
    """The output-channel axis of a layer's weight (None: a layer BN is not folded into here)."""
    attrs = {a.name: a for a in node.attribute}
    if node.op_type == "Conv":
        return 0
    if node.op_type == "Gemm":
        return 0 if "transB" in attrs and attrs["transB"].i else 1
    if node.op_type == "ConvTranspose":
        return 1 if "group" not in attrs or attrs["group"].i == 1 else None
    return None


def _with_initializers(prepared, arrays: dict[str, np.ndarray]):
    """A copy of ``prepared`` whose model holds ``arrays`` in place of those initializers."""
    m = clone(prepared.model)
    for t in m.graph.initializer:
        if t.name in arrays:
            t.CopyFrom(numpy_helper.from_array(np.asarray(arrays[t.name], np.float32), t.name))
    return replace(prepared, model=m, weight_cache={})

