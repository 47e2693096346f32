"""The gated model: the float model with each quantization behind a gate, for sensitivity searches.

``x + g * (fq(x) - x)``: gate ``g_u`` of unit ``u`` is element ``u`` of one extra graph input, so
a single ONNX Runtime session measures the model with any subset of units quantized (0: float,
1: quantized). A unit is a layer's weights (with its input grid when no other layer reads that
tensor) or one tensor grid that belongs to no single layer.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ..ir import GraphEdit
from .plan import QuantPlan

__all__ = ["Unit", "units_of", "build_gated", "GATES"]

#: Name of the gated model's extra input: float32 [number of units].
GATES = "amct_nb_gates"


@dataclass(frozen=True)
class Unit:
    """What one gate switches: a layer's weights (``weight_of``) and/or tensor grids."""

    #: "layer" | "tensor" | "weight" (a weight-only weight of the plan, ``name`` its initializer) | "bias_alt"
    #: (every layer's int32 bias switched to the one of ``build_gated``'s ``bias_alt`` plan, when its gate is 1)
    kind: str
    name: str
    tensors: tuple[str, ...]
    weight_of: str | None = None


def units_of(plan: QuantPlan) -> list[Unit]:
    """One unit per quantized layer (owning its input grid when it alone reads it), then one per
    remaining tensor grid, in plan order."""
    readers: dict[str, list[str]] = {}
    for n, l in plan.layers.items():
        readers.setdefault(l.activation, []).append(n)
    units, owned = [], set()
    for n, l in plan.layers.items():
        own = (l.activation,) if readers.get(l.activation) == [n] and l.activation in plan.tensors else ()
        owned.update(own)
        units.append(Unit("layer", n, own, weight_of=n))
    units += [Unit("tensor", t, (t,)) for t in plan.tensors if t not in owned]
    return units


def build_gated(model: onnx.ModelProto, plan: QuantPlan, units: list[Unit],
                bias_alt: QuantPlan | None = None) -> onnx.ModelProto:
    """The float ``model`` with every quantization of ``units`` behind its gate (see the module
    docstring). Tensors go through QuantizeLinear/DequantizeLinear with their grid; weights add
    ``g * (dequantized int8 weights - weights)``, biases ``g * (dequantized int32 bias - bias)`` (which
    carries the bias correction). A unit of kind "bias_alt" adds ``g * (alternative - dequantized int32
    bias)`` to every layer's bias, with the int32 biases of ``bias_alt`` (the same layers and weights,
    other biases: the plan without bias correction), so one session measures both."""
    alt_gate = next((f"{GATES}_{i}" for i, u in enumerate(units) if u.kind == "bias_alt"), None)
    ed = GraphEdit(model)
    inits = {t.name: t for t in ed.graph.initializer}
    for i in range(len(units)):
        ed.initializer(f"{GATES}_i{i}", np.array(i, np.int64))
    rename: dict[str, str] = {}
    weight_in: dict[str, tuple[int, str]] = {}  # layer -> (weight input index, gated weight)
    bias_in: dict[str, tuple[int, str]] = {}  # layer -> (bias input index, gated bias)
    for i, u in enumerate(units):
        gu = f"{GATES}_{i}"
        ed.first([helper.make_node("Gather", [GATES, f"{GATES}_i{i}"], [gu], name=f"{gu}_Gather", axis=0)])
        for t in u.tensors:
            tq = plan.tensors[t]
            p = f"{t}_gfq"
            ed.initializer(f"{p}_s", np.array(tq.scale, np.float32))
            ed.initializer(f"{p}_z", np.array(tq.zero_point, np.dtype(tq.dtype)))
            ed.hook(t, [helper.make_node("QuantizeLinear", [t, f"{p}_s", f"{p}_z"], [f"{p}_q"], name=f"{p}_Q"),
                        helper.make_node("DequantizeLinear", [f"{p}_q", f"{p}_s", f"{p}_z"], [f"{p}_dq"],
                                         name=f"{p}_DQ"),
                        helper.make_node("Sub", [f"{p}_dq", t], [f"{p}_d"], name=f"{p}_Sub"),
                        helper.make_node("Mul", [f"{p}_d", gu], [f"{p}_gd"], name=f"{p}_Mul"),
                        helper.make_node("Add", [t, f"{p}_gd"], [f"{p}_out"], name=f"{p}_Add")])
            rename[t] = f"{p}_out"
        if u.kind == "weight":  # weight-only: every reader sees w + g * (dequantized - w)
            wo = plan.weight_only[u.name]
            gated = _gated_weight(ed, inits[u.name], wo.dequantized(), gu, f"{u.name}_gwo")
            for user in wo.users:
                node = ed.node(user)
                for k, name in enumerate(node.input):
                    if name == u.name:
                        node.input[k] = gated
        if u.weight_of is not None:
            lq = plan.layers[u.weight_of]
            weight_in[lq.name] = (lq.weight_index,
                                  _gated_weight(ed, inits[lq.weight], lq.dequantized_weight(), gu, f"{lq.name}_gw"))
            b = inits.get(lq.bias) if lq.b_q is not None else None
            if b is not None and int(np.prod(b.dims)) in (1, lq.b_q.size):  # the int32 bias (bias correction in it)
                deq = _dequantized_bias(lq, b)
                gated_b = _gated_weight(ed, b, deq, gu, f"{lq.name}_gb")
                alt = bias_alt.layers.get(lq.name) if bias_alt is not None and alt_gate else None
                if alt is not None and alt.b_q is not None and alt.b_q.size == lq.b_q.size:
                    p = f"{lq.name}_gb_alt"
                    ed.initializer(f"{p}_delta", (_dequantized_bias(alt, b) - deq).astype(np.float32))
                    ed.first([helper.make_node("Mul", [f"{p}_delta", alt_gate], [f"{p}_gd"], name=f"{p}_Mul"),
                              helper.make_node("Add", [gated_b, f"{p}_gd"], [f"{p}_b"], name=f"{p}_Add")])
                    gated_b = f"{p}_b"
                bias_in[lq.name] = (lq.bias_index, gated_b)
    for n in ed.graph.node:
        if n.name in weight_in:
            k, gated_w = weight_in[n.name]
            n.input[k] = gated_w
        if n.name in bias_in:
            k, gated_b = bias_in[n.name]
            n.input[k] = gated_b
    ed.redirect(rename, skip=lambda n, k: (n.name in weight_in and k == weight_in[n.name][0])
                or (n.name in bias_in and k == bias_in[n.name][0]))
    m = ed.finish(drop_unused=False)  # the chains read the original tensors and weights
    m.graph.input.append(helper.make_tensor_value_info(GATES, onnx.TensorProto.FLOAT, [len(units)]))
    return m


def _dequantized_bias(lq, b: onnx.TensorProto) -> np.ndarray:
    """The layer's int32 bias as float32, in the shape of the float bias ``b`` when it has one per channel."""
    deq = (lq.b_q.astype(np.float64) * lq.b_scale.astype(np.float64)).astype(np.float32)
    return deq.reshape(tuple(b.dims)) if int(np.prod(b.dims)) == lq.b_q.size else deq


def _gated_weight(ed: GraphEdit, init: onnx.TensorProto, dequantized: np.ndarray, gate: str, p: str) -> str:
    """Nodes computing ``w + gate * (dequantized - w)`` for the weight ``init``; returns the tensor's name."""
    w = numpy_helper.to_array(init).astype(np.float32)
    ed.initializer(f"{p}_delta", (dequantized - w).astype(np.float32))
    ed.first([helper.make_node("Mul", [f"{p}_delta", gate], [f"{p}_gd"], name=f"{p}_Mul"),
              helper.make_node("Add", [init.name, f"{p}_gd"], [f"{p}_w"], name=f"{p}_Add")])
    return f"{p}_w"
