"""The deploy model: standard QDQ ONNX that ONNX Runtime runs with its int8 kernels.

Each quantized activation tensor t becomes ``QuantizeLinear(t) -> DequantizeLinear`` (uint8 or
int8), each quantized layer reads ``DequantizeLinear(int8 weight, per-channel scales)`` (uint8
``q + 128`` with zero point 128 for the layers the ``uint8`` saturation guard picks) and
``DequantizeLinear(int32 bias)``. ONNX Runtime fuses these into QLinearConv / QGemm /
QLinearMatMul / QLinearAdd int8 kernels.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper

from ..ir import GraphEdit, fit_ir_version, node_scopes, walk_graphs, walk_nodes
from .metadata import stamp
from .plan import QuantPlan
from .share import share_identical
from .weight_only import apply_weight_only

__all__ = ["build_deploy"]


def _dequantize_in_bodies(ed: GraphEdit, mapping: dict[str, str]) -> None:
    """A quantized tensor read inside an If/Loop body it is not made in gets its own DequantizeLinear at the top
    of that body (reading the QuantizeLinear's output from outside), so ONNX Runtime, which fuses the QDQ nodes
    of one graph at a time, finds ``DequantizeLinear -> layer`` there."""
    scopes = node_scopes(ed.graph)
    if not any(scopes.values()):  # no If/Loop/Scan: nothing to do
        return
    made = {}
    for scope, g in walk_graphs(ed.graph):
        made.update({i.name: scope for i in g.input})
        made.update({o: scope for n in g.node for o in n.output})
    local: dict[tuple[str, str], str] = {}
    quantized = {dn: t for t, dn in mapping.items()}
    for node in walk_nodes(ed.graph):
        scope = scopes.get(node.name, "")
        if not scope:
            continue
        for k, name in enumerate(node.input):
            t = quantized.get(name)
            if t is None or made.get(t, "") == scope:
                continue
            key = (t, scope)
            if key not in local:
                local[key] = f"{t}_DequantizeLinear_Output_{scope.replace('/', '_')}"
                ed.first([helper.make_node("DequantizeLinear", [f"{t}_QuantizeLinear_Output", f"{t}_scale",
                                                                f"{t}_zero_point"], [local[key]],
                                           name=f"{local[key]}_DequantizeLinear")], near=node.name)
            node.input[k] = local[key]


def build_deploy(prepared: onnx.ModelProto, plan: QuantPlan) -> onnx.ModelProto:
    """QDQ int8 model of ``prepared`` (the BN-folded float model) as ``plan`` says."""
    ed = GraphEdit(prepared)
    mapping = {}
    for name, lq in plan.layers.items():
        node = ed.node(name)
        w = lq.weight
        qn, sn, zn, dn = f"{w}_quantized", f"{w}_scale", f"{w}_zero_point", f"{w}_dequantized"
        per_channel = lq.axis is not None
        zshape = lq.w_scale.size if per_channel else ()
        if lq.w_storage == "uint8":  # same values: (q + 128) - 128, for u8 x u8 kernels that cannot saturate
            ed.initializer(qn, (lq.w_q.astype(np.int16) + 128).astype(np.uint8))
            ed.initializer(zn, np.full(zshape, 128, np.uint8))
        else:
            ed.initializer(qn, lq.w_q.astype(np.int8))
            ed.initializer(zn, np.zeros(zshape, np.int8))
        ed.initializer(sn, lq.w_scale.astype(np.float32).reshape(-1 if per_channel else ()))
        attrs = {"axis": lq.axis} if per_channel else {}
        # in the layer's own body when it sits in an If/Loop: ONNX Runtime fuses the QDQ nodes of one graph only
        ed.first([helper.make_node("DequantizeLinear", [qn, sn, zn], [dn], name=f"{w}_DequantizeLinear", **attrs)],
                 near=name)
        node.input[lq.weight_index] = dn
        if lq.b_q is not None:
            b = lq.bias
            bq, bs, bz, bd = f"{b}_quantized", f"{b}_scale", f"{b}_zero_point", f"{b}_dequantized"
            ed.initializer(bq, lq.b_q.astype(np.int32).reshape(-1))
            ed.initializer(bs, lq.b_scale.astype(np.float32).reshape(-1))
            ed.initializer(bz, np.zeros(lq.b_q.size, np.int32))
            ed.first([helper.make_node("DequantizeLinear", [bq, bs, bz], [bd], name=f"{b}_DequantizeLinear", axis=0)],
                     near=name)
            node.input[lq.bias_index] = bd
    for t, tq in plan.tensors.items():
        sn, zn, qn, dn = f"{t}_scale", f"{t}_zero_point", f"{t}_QuantizeLinear_Output", f"{t}_DequantizeLinear_Output"
        ed.initializer(sn, np.array(tq.scale, np.float32))
        ed.initializer(zn, np.array(tq.zero_point, np.dtype(tq.dtype)))
        ed.hook(t, [helper.make_node("QuantizeLinear", [t, sn, zn], [qn], name=f"{t}_QuantizeLinear"),
                    helper.make_node("DequantizeLinear", [qn, sn, zn], [dn], name=f"{t}_DequantizeLinear")])
        mapping[t] = dn
    ed.redirect(mapping)
    _dequantize_in_bodies(ed, mapping)
    apply_weight_only(ed, plan, "deploy")
    m = ed.finish()
    share_identical(m)
    stamp(m, "deploy")
    return fit_ir_version(m)
