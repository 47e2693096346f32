"""The fake-quant model: the deploy model's numbers in plain float ops that run anywhere.

Each quantized tensor passes through ``Div(scale) -> Round -> Add(zp) -> Clip(qmin, qmax) ->
Sub(zp) -> Mul(scale)``, which is QuantizeLinear followed by DequantizeLinear. Like AMCT's
fake-quant model, quantized layers run on integer-valued floats: the layer reads ``q - zp`` of
its input, integer weights ``q_w`` and the int32 bias ``q_b``, so the float convolution / GEMM
accumulates exactly what the int8 kernel accumulates, and a ``Mul`` by ``scale_x * scale_w`` (per
output channel) brings the result back to real values.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper

from ..ir import GraphEdit, GraphIndex, fit_ir_version
from .metadata import stamp
from .plan import PASS_ACTIVATIONS, QuantPlan
from .share import share_identical
from .weight_only import apply_weight_only

__all__ = ["build_fake_quant", "requantized_by"]


def build_fake_quant(prepared: onnx.ModelProto, plan: QuantPlan) -> onnx.ModelProto:
    """Float model of ``prepared`` that computes what the deploy model computes."""
    ed = GraphEdit(prepared)
    mapping, layer_mapping = {}, {}
    for t, tq in plan.tensors.items():
        p = f"{t}_fq"
        ed.initializer(f"{p}_scale", np.array(tq.scale, np.float32))
        ed.initializer(f"{p}_zero_point", np.array(float(tq.zero_point), np.float32))
        ed.initializer(f"{p}_qmin", np.array(float(tq.qmin), np.float32))
        ed.initializer(f"{p}_qmax", np.array(float(tq.qmax), np.float32))
        ed.hook(t, [
            helper.make_node("Div", [t, f"{p}_scale"], [f"{p}_div"], name=f"{p}_Div"),
            helper.make_node("Round", [f"{p}_div"], [f"{p}_round"], name=f"{p}_Round"),
            helper.make_node("Add", [f"{p}_round", f"{p}_zero_point"], [f"{p}_shift"], name=f"{p}_AddZeroPoint"),
            helper.make_node("Clip", [f"{p}_shift", f"{p}_qmin", f"{p}_qmax"], [f"{p}_q"], name=f"{p}_Clip"),
            helper.make_node("Sub", [f"{p}_q", f"{p}_zero_point"], [f"{p}_int"], name=f"{p}_SubZeroPoint"),
            helper.make_node("Mul", [f"{p}_int", f"{p}_scale"], [f"{p}_out"], name=f"{p}_Mul"),
        ])
        mapping[t] = f"{p}_out"
        layer_mapping[t] = f"{p}_int"
    idx = GraphIndex(ed.graph)
    for name, lq in plan.layers.items():
        node = ed.node(name)
        node.input[lq.weight_index] = ed.initializer(f"{lq.weight}_fake_quant_int", lq.w_q.astype(np.float32))
        if lq.b_q is not None:
            node.input[lq.bias_index] = ed.initializer(f"{lq.bias}_fake_quant_int",
                                                       lq.b_q.astype(np.float32).reshape(lq.bias_shape))
        # rescale the integer accumulator: scale_x * scale_w per output channel; when the
        # output is requantized right away, as int8 kernels do it: acc * (sx * sw / sy), then sy
        sx = np.float32(plan.tensors[lq.activation].scale)
        deq = (sx * lq.w_scale.astype(np.float32)).astype(np.float32).reshape(-1)
        out_q = requantized_by(idx, node.output[0], plan.tensors)
        if out_q is not None:
            deq = (deq / np.float32(plan.tensors[out_q].scale)).astype(np.float32)
        if lq.op_type in ("Conv", "ConvTranspose") and deq.size > 1:
            deq = deq.reshape((-1,) + (1,) * (lq.w_q.ndim - 2))
        elif deq.size == 1:
            deq = deq.reshape(())
        out = node.output[0]
        acc = f"{name}_fq_accumulator"
        node.output[0] = acc
        dn = ed.initializer(f"{name}_fq_dequant_scale", deq)
        if out_q is None:
            ed.hook(acc, [helper.make_node("Mul", [acc, dn], [out], name=f"{name}_fq_Dequant")])
        else:
            ed.hook(acc, [
                helper.make_node("Mul", [acc, dn], [f"{name}_fq_requant"], name=f"{name}_fq_Requant"),
                helper.make_node("Mul", [f"{name}_fq_requant", f"{out_q}_fq_scale"], [out], name=f"{name}_fq_Dequant"),
            ])
    # layers read their input's integer values, every other node the real values
    ed.redirect(layer_mapping, skip=lambda node, i: not (node.name in plan.layers and i == 0))
    ed.redirect(mapping, skip=lambda node, i: node.name in plan.layers and i == 0)
    apply_weight_only(ed, plan, "fake")
    m = ed.finish()
    share_identical(m)
    stamp(m, "fake_quant")
    return fit_ir_version(m)


def requantized_by(idx: GraphIndex, out: str, tensors: dict) -> str | None:
    """The quant point that directly requantizes a layer output (through Relu/Clip), if any."""
    t = out
    while t not in tensors:
        nxt = idx.single_consumer(t)
        if nxt is None or nxt.op_type not in PASS_ACTIVATIONS:
            return None
        t = nxt.output[0]
    return t
