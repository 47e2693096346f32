"""Write the fake-quant and deploy models from a prepared float model and a QuantPlan.

Deploy model: standard QDQ ONNX. Each quantized activation tensor t becomes
``QuantizeLinear(t) -> DequantizeLinear`` (uint8 or int8), each quantized layer reads
``DequantizeLinear(int8 weight, per-channel scales)`` and ``DequantizeLinear(int32 bias)``.
ONNX Runtime fuses these into QLinearConv / QGemm / QLinearMatMul / QLinearAdd int8 kernels.

Fake-quant model: the same numbers in plain float ops that run anywhere. Each quantized
tensor passes through ``Div(scale) -> Round -> Add(zp) -> Clip(qmin, qmax) -> Sub(zp) ->
Mul(scale)``, which is QuantizeLinear followed by DequantizeLinear; quantized layers compute on
the integer values (see :func:`build_fake_quant`).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .model import GraphIndex, fit_ir_version

__all__ = ["build_deploy", "build_fake_quant"]

_NP2ONNX = {np.dtype(np.uint8): TensorProto.UINT8, np.dtype(np.int8): TensorProto.INT8}


def _clone(model: onnx.ModelProto) -> onnx.ModelProto:
    m = onnx.ModelProto()
    m.CopyFrom(model)
    return m


def _ordered_insert(g: onnx.GraphProto, after: dict[str, list[onnx.NodeProto]], head: list[onnx.NodeProto]):
    """Rebuild g.node: ``head`` first, then each node followed by the nodes hooked on its outputs."""
    inputs = {i.name for i in g.input} | {t.name for t in g.initializer}
    nodes = list(head)
    for name in list(after):
        if name in inputs:
            for hooked in after.pop(name):
                nodes.append(hooked)
                for o in hooked.output:
                    nodes.extend(after.pop(o, []))
    def emit(node):
        nodes.append(node)
        for o in node.output:
            for hooked in after.pop(o, []):
                emit(hooked)

    for node in g.node:
        emit(node)
    del g.node[:]
    g.node.extend(nodes)


def _redirect(g: onnx.GraphProto, mapping: dict[str, str]):
    """Point the inputs of the graph's nodes at new names (hooked nodes are not in g.node yet)."""
    for node in g.node:
        for i, name in enumerate(node.input):
            if name in mapping:
                node.input[i] = mapping[name]


def _drop_unused_initializers(g: onnx.GraphProto):
    used = {i for n in g.node for i in n.input}
    for n in g.node:
        for a in n.attribute:
            subs = [a.g] if a.type == onnx.AttributeProto.GRAPH else list(a.graphs)
            for s in subs:
                used |= {i for sn in s.node for i in sn.input}
    used |= {o.name for o in g.output}
    keep = [t for t in g.initializer if t.name in used]
    del g.initializer[:]
    g.initializer.extend(keep)
    names = {t.name for t in keep}
    vis = [i for i in g.input if i.name not in {t.name for t in g.initializer} or i.name in names]
    del g.input[:]
    g.input.extend(vis)


def _weight_arrays(lq):
    """float32 weight and bias exactly as DequantizeLinear computes them."""
    shape = [1] * lq.w_q.ndim
    if lq.axis is not None:
        shape[lq.axis] = -1
    w = (lq.w_q.astype(np.float32) * lq.w_scale.reshape(shape)).astype(np.float32)
    b = None
    if lq.b_q is not None:
        b = (lq.b_q.astype(np.float32) * lq.b_scale).astype(np.float32).reshape(lq.bias_shape)
    return w, b


def build_deploy(prepared: onnx.ModelProto, plan) -> onnx.ModelProto:
    """QDQ int8 model (see module docstring)."""
    m = _clone(prepared)
    g = m.graph
    inits = []
    head, after, mapping = [], {}, {}
    for name, lq in plan.layers.items():
        node = next(n for n in g.node if n.name == name)
        w = lq.weight
        qn, sn, zn, dn = f"{w}_quantized", f"{w}_scale", f"{w}_zero_point", f"{w}_dequantized"
        inits += [
            numpy_helper.from_array(lq.w_q.astype(np.int8), qn),
            numpy_helper.from_array(lq.w_scale.astype(np.float32).reshape(-1) if lq.axis is not None else lq.w_scale.astype(np.float32).reshape(()), sn),
            numpy_helper.from_array(np.zeros(lq.w_scale.size if lq.axis is not None else (), np.int8), zn),
        ]
        attrs = {"axis": lq.axis} if lq.axis is not None else {}
        dq = helper.make_node("DequantizeLinear", [qn, sn, zn], [dn], name=f"{w}_DequantizeLinear", **attrs)
        head.append(dq)
        node.input[lq.weight_index] = dn
        if lq.b_q is not None:
            b = lq.bias
            bq, bs, bz, bd = f"{b}_quantized", f"{b}_scale", f"{b}_zero_point", f"{b}_dequantized"
            inits += [
                numpy_helper.from_array(lq.b_q.astype(np.int32).reshape(-1), bq),
                numpy_helper.from_array(lq.b_scale.astype(np.float32).reshape(-1), bs),
                numpy_helper.from_array(np.zeros(lq.b_q.size, np.int32), bz),
            ]
            head.append(helper.make_node("DequantizeLinear", [bq, bs, bz], [bd], name=f"{b}_DequantizeLinear", axis=0))
            node.input[lq.bias_index] = bd
    for t, tq in plan.tensors.items():
        dt = np.dtype(tq.dtype)
        sn, zn, qn, dn = f"{t}_scale", f"{t}_zero_point", f"{t}_QuantizeLinear_Output", f"{t}_DequantizeLinear_Output"
        inits += [
            numpy_helper.from_array(np.array(tq.scale, np.float32), sn),
            numpy_helper.from_array(np.array(tq.zero_point, dt), zn),
        ]
        q = helper.make_node("QuantizeLinear", [t, sn, zn], [qn], name=f"{t}_QuantizeLinear")
        d = helper.make_node("DequantizeLinear", [qn, sn, zn], [dn], name=f"{t}_DequantizeLinear")
        after.setdefault(t, []).extend([q, d])
        mapping[t] = dn
    _redirect(g, mapping)
    _ordered_insert(g, after, head)
    g.initializer.extend(inits)
    _drop_unused_initializers(g)
    _mark(m, "deploy")
    return fit_ir_version(m)


def build_fake_quant(prepared: onnx.ModelProto, plan) -> onnx.ModelProto:
    """Float model that computes what the deploy model computes (see module docstring).

    Like AMCT's fake-quant model, quantized layers run on integer-valued floats: the layer reads
    ``q - zero_point`` of its input, integer weights ``q_w`` and the int32 bias ``q_b``, so the
    float convolution / GEMM accumulates exactly what the int8 kernel accumulates, and a ``Mul``
    by ``scale_x * scale_w`` (per output channel) brings the result back to real values.
    """
    m = _clone(prepared)
    g = m.graph
    inits = []
    after, mapping, layer_mapping = {}, {}, {}
    for t, tq in plan.tensors.items():
        lo, hi = (0, 255) if np.dtype(tq.dtype) == np.uint8 else (-128, 127)
        p = f"{t}_fq"
        inits += [
            numpy_helper.from_array(np.array(tq.scale, np.float32), f"{p}_scale"),
            numpy_helper.from_array(np.array(float(tq.zero_point), np.float32), f"{p}_zero_point"),
            numpy_helper.from_array(np.array(float(lo), np.float32), f"{p}_qmin"),
            numpy_helper.from_array(np.array(float(hi), np.float32), f"{p}_qmax"),
        ]
        nodes = [
            helper.make_node("Div", [t, f"{p}_scale"], [f"{p}_div"], name=f"{p}_Div"),
            helper.make_node("Round", [f"{p}_div"], [f"{p}_round"], name=f"{p}_Round"),
            helper.make_node("Add", [f"{p}_round", f"{p}_zero_point"], [f"{p}_shift"], name=f"{p}_AddZeroPoint"),
            helper.make_node("Clip", [f"{p}_shift", f"{p}_qmin", f"{p}_qmax"], [f"{p}_q"], name=f"{p}_Clip"),
            helper.make_node("Sub", [f"{p}_q", f"{p}_zero_point"], [f"{p}_int"], name=f"{p}_SubZeroPoint"),
            helper.make_node("Mul", [f"{p}_int", f"{p}_scale"], [f"{p}_out"], name=f"{p}_Mul"),
        ]
        after.setdefault(t, []).extend(nodes)
        mapping[t] = f"{p}_out"
        layer_mapping[t] = f"{p}_int"
    idx = GraphIndex(g)
    for name, lq in plan.layers.items():
        node = next(n for n in g.node if n.name == name)
        wn = f"{lq.weight}_fake_quant_int"
        inits.append(numpy_helper.from_array(lq.w_q.astype(np.float32), wn))
        node.input[lq.weight_index] = wn
        if lq.b_q is not None:
            bn = f"{lq.bias}_fake_quant_int"
            inits.append(numpy_helper.from_array(lq.b_q.astype(np.float32).reshape(lq.bias_shape), bn))
            node.input[lq.bias_index] = bn
        # rescale the integer accumulator: scale_x * scale_w per output channel; when the
        # output is requantized right away, as int8 kernels do it: acc * (sx * sw / sy), then sy
        sx = np.float32(plan.tensors[lq.activation].scale)
        deq = (sx * lq.w_scale.astype(np.float32)).astype(np.float32).reshape(-1)
        out_q = _requantized_by(idx, node.output[0], plan.tensors)
        if out_q is not None:
            deq = (deq / np.float32(plan.tensors[out_q].scale)).astype(np.float32)
        if lq.op_type in ("Conv", "ConvTranspose") and deq.size > 1:
            deq = deq.reshape((-1,) + (1,) * (lq.w_q.ndim - 2))
        elif deq.size == 1:
            deq = deq.reshape(())
        out = node.output[0]
        acc = f"{name}_fq_accumulator"
        node.output[0] = acc
        dn = f"{name}_fq_dequant_scale"
        inits.append(numpy_helper.from_array(deq, dn))
        if out_q is None:
            after.setdefault(acc, []).append(helper.make_node("Mul", [acc, dn], [out], name=f"{name}_fq_Dequant"))
        else:
            after.setdefault(acc, []).extend([
                helper.make_node("Mul", [acc, dn], [f"{name}_fq_requant"], name=f"{name}_fq_Requant"),
                helper.make_node("Mul", [f"{name}_fq_requant", f"{out_q}_fq_scale"], [out], name=f"{name}_fq_Dequant"),
            ])
    for node in g.node:  # (the new nodes are not in g.node yet)
        is_layer = node.name in plan.layers
        for i, name in enumerate(node.input):
            table = layer_mapping if (is_layer and i == 0) else mapping
            if name in table:
                node.input[i] = table[name]
    _ordered_insert(g, after, [])
    g.initializer.extend(inits)
    _drop_unused_initializers(g)
    _mark(m, "fake_quant")
    return fit_ir_version(m)


def _requantized_by(idx: GraphIndex, out: str, tensors: dict) -> str | None:
    """The quant point that directly requantizes a layer output (through Relu/Clip), if any."""
    t = out
    while t not in tensors:
        nxt = idx.single_consumer(t)
        if nxt is None or nxt.op_type not in ("Relu", "Clip"):
            return None
        t = nxt.output[0]
    return t


def _mark(m: onnx.ModelProto, kind: str):
    from . import __version__

    props = {p.key: p.value for p in m.metadata_props if not p.key.startswith("amct_nb.")}
    props["amct_nb.kind"] = kind
    props["amct_nb.version"] = __version__
    del m.metadata_props[:]
    for k in sorted(props):
        m.metadata_props.append(onnx.StringStringEntryProto(key=k, value=props[k]))
    m.producer_name = "amct-nb"
    m.producer_version = __version__
