"""The fake-quant model: the deploy model's numbers in plain float ops that run anywhere.

Each quantized tensor passes through ``Div(scale) -> Round -> Add(zp) -> Clip(qmin, qmax) ->
Sub(zp) -> Mul(scale)``, which is QuantizeLinear followed by DequantizeLinear. Like AMCT's
fake-quant model, quantized layers run on integer-valued floats: the layer reads ``q - zp`` of
its input, integer weights ``q_w`` and the int32 bias ``q_b``, so the float convolution / GEMM
accumulates exactly what the int8 kernel accumulates, and a ``Mul`` by ``scale_x * scale_w`` (per
output channel) brings the result back to real values.

Emulating ONNX Runtime's int8 kernels (x86 CPU)
-----------------------------------------------
ONNX Runtime fuses the deploy model's Q/DQ pairs into int8 kernels whose float steps round
differently from the QDQ reference. One flipped rounding is one step of one value, but it grows
layer by layer (EfficientNet-Lite0: half of the last block's integers differ, ~1% of the top-1
predictions), so the fake-quant model copies those steps with float ops (``emulate_ort``, on by
default). Per op type as the deploy model runs it (``benchmarks/sim_vs_deploy.py`` measures each,
``tests/test_emulation.py`` checks them integer for integer; read from ONNX Runtime 1.32's sources):

* QLinearConv (depthwise too), QGemm, QLinearMatMul, i.e. a quantized layer whose output is
  requantized (through a Relu/Clip that the grid makes redundant): MLAS computes
  ``nearbyint(float(acc + bias) * m) + zp`` (round half to even, clamped) with one multiplier per
  output channel ``m = float32(float32(s_x * s_w) / s_y)``. Emulated: ``Mul(m, acc) -> Round``, and
  only then ``Mul(s_y)``; the output grid's ``Div(s_y) -> Round`` gets back that very integer (the
  former ``acc * m * s_y / s_y`` flipped ~1 value in 10^5 at .5). ``m`` is the first input of its
  ``Mul`` so that ONNX Runtime's ConvMulFusion / MatMulScaleFusion leave it alone (folded into this
  model's integer weights it would round every product); one value per channel, ``[1, C, 1, 1]`` or
  ``[N]``. The Relu/Clip needs nothing: rounding before the clip gives the same integer.
* Layers left float between two quantized tensors (input quantized, output going through Relu/Clip
  to a quantized tensor; :func:`ort_requantized_layers`): ONNX Runtime runs them as int8 kernels all
  the same. A weight-only weight (int8 behind a DequantizeLinear) is used as it is; a float weight of
  a Conv/ConvTranspose/Gemm gets quantized by ONNX Runtime's WeightBiasQuantization, per tensor,
  asymmetric int8 from its min/max (:func:`ort_weight_quant`); a float bias becomes int32 at
  ``s_x * s_w``. Emulated: the same integers, then as above.
* QLinearAdd (an Add of two quantized tensors into a quantized tensor): MLAS's AVX2 kernel computes
  ``nearbyint(fma(a, r_a, fma(b, r_b, F)))`` on the raw integers with ``r = s / s_c`` and a fixed
  part ``F = zp_c - fma(r_a, zp_a, r_b * zp_b)``, not ``(s_a (a - zp_a) + s_b (b - zp_b)) / s_c``
  (~1 pair in 2 x 10^5 differs). Emulated: each fused multiply-add as a float64 ``Mul`` and ``Add``
  (exact for an 8-bit integer times a float32) rounded once by a ``Cast`` to float32; the Add node
  is replaced by that chain (its output keeps its name: ``(c - zp_c) * s_c``).
* QLinearMatMul of two activations (a MatMul whose inputs and requantized output are all on grids):
  as a layer, on both inputs' integers (:func:`_emulate_activation_matmuls`).
* Exact without any change: QuantizeLinear (``x / s``, round half to even), QLinearConcat (each
  input requantized through dequantized values), ops between grids that ONNX Runtime runs in float
  on dequantized values in both models (GlobalAveragePool, ReduceMean, Reshape/Flatten...), and
  QGemm with a float output (``float(acc) * s_x * s_w``, the fake-quant ``Mul``).

Not emulated (float rounding, a step on a few values in 10^5 at most): layers ONNX Runtime runs
in float on dequantized values (ConvTranspose; Conv with int8 activations, which it does not fuse
into QLinearConv here; a float MatMul between grids; a quantized Conv whose output stays float),
whose float sums round in another order than the integer accumulator; float layers in both models
(ONNX Runtime picks other convolution kernels for a weight behind a DequantizeLinear than for a
float constant); int32 accumulators above 2**24; a QLinearAdd that broadcasts one input; other
CPUs (MLAS's SSE2 and ARM kernels round the Add differently; x86 without VNNI saturates, see
``amct_nb.quant.guard``).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper

from ..ir import GraphEdit, GraphIndex, attr, fit_ir_version, is_default_domain, walk_graphs
from .metadata import stamp
from .plan import PASS_ACTIVATIONS, LayerQuant, QuantPlan
from .share import share_identical
from .weight_only import apply_weight_only

__all__ = ["build_fake_quant", "requantized_by", "ort_requantized_layers", "ort_weight_quant"]

#: Float layer types ONNX Runtime runs as int8 kernels between quantized tensors (see :func:`ort_requantized_layers`).
ORT_LAYER_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")


def build_fake_quant(prepared: onnx.ModelProto, plan: QuantPlan, *, emulate_ort: bool = True) -> onnx.ModelProto:
    """Float model of ``prepared`` that computes what the deploy model computes.

    ``emulate_ort=False`` writes the model without the emulation of the module docstring (one
    rounding of ``acc * (m * s_y) / s_y`` at the output grid, float layers stay float), as amct-nb
    did before; ``benchmarks/sim_vs_deploy.py`` uses it to measure what the emulation changes."""
    ed = GraphEdit(prepared)
    idx = GraphIndex(ed.graph)
    order = idx.tensor_order()  # before the edits rename layer outputs
    layers = dict(plan.layers)
    if emulate_ort:
        layers.update(ort_requantized_layers(idx, plan))
    deep = GraphIndex(ed.graph, deep=True)  # layers of If/Loop bodies: their requantization is in the body
    deep.graph_outputs += [o.name for _, g in walk_graphs(ed.graph) for o in g.output]
    requant = {name: requantized_by(deep, ed.node(name).output[0], plan.tensors) for name in layers}
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
    for name, lq in layers.items():
        node = ed.node(name)
        own = name not in plan.layers  # quantized here as ONNX Runtime does it (see ort_requantized_layers)
        wname = f"{name}_ort_weight_int" if own else f"{lq.weight}_fake_quant_int"
        node.input[lq.weight_index] = ed.initializer(wname, lq.w_q.astype(np.float32))
        if lq.b_q is not None:
            bname = f"{name}_ort_bias_int" if own else f"{lq.bias}_fake_quant_int"
            node.input[lq.bias_index] = ed.initializer(bname, lq.b_q.astype(np.float32).reshape(lq.bias_shape))
        # rescale the integer accumulator: scale_x * scale_w per output channel; when the output is
        # requantized right away, as the int8 kernels do it: nearbyint(acc * (sx * sw / sy)), then sy
        sx = np.float32(plan.tensors[lq.activation].scale)
        mult = (sx * np.asarray(lq.w_scale, np.float32)).astype(np.float32).reshape(-1)
        out_q = requant[name]
        if out_q is not None:
            mult = (mult / np.float32(plan.tensors[out_q].scale)).astype(np.float32)
        out = node.output[0]
        acc = f"{name}_fq_accumulator"
        node.output[0] = acc
        dn = ed.initializer(f"{name}_fq_multiplier", _channel_shaped(mult, lq, node, emulate_ort))
        if out_q is None:
            ed.hook(acc, [helper.make_node("Mul", [dn, acc] if emulate_ort else [acc, dn], [out],
                                           name=f"{name}_fq_Dequant")])
        elif not emulate_ort:
            ed.hook(acc, [
                helper.make_node("Mul", [acc, dn], [f"{name}_fq_requant"], name=f"{name}_fq_Requant"),
                helper.make_node("Mul", [f"{name}_fq_requant", f"{out_q}_fq_scale"], [out], name=f"{name}_fq_Dequant"),
            ])
        else:
            ed.hook(acc, [
                helper.make_node("Mul", [dn, acc], [f"{name}_fq_requant"], name=f"{name}_fq_Requant"),
                helper.make_node("Round", [f"{name}_fq_requant"], [f"{name}_fq_requant_int"],
                                 name=f"{name}_fq_RoundRequant"),
                helper.make_node("Mul", [f"{name}_fq_requant_int", f"{out_q}_fq_scale"], [out],
                                 name=f"{name}_fq_Dequant"),
            ])
    if emulate_ort:
        _emulate_qlinear_add(ed, order, plan)
        _emulate_activation_matmuls(ed, idx, plan, layers)
    # layers read their input's integer values, every other node the real values
    ed.redirect(layer_mapping, skip=lambda node, i: not (node.name in layers and i == 0))
    ed.redirect(mapping, skip=lambda node, i: node.name in layers and i == 0)
    apply_weight_only(ed, plan, "fake")  # other readers of weight-only weights: the dequantized values
    m = ed.finish()
    share_identical(m)
    stamp(m, "fake_quant")
    return fit_ir_version(m)


def _channel_shaped(mult: np.ndarray, lq: LayerQuant, node: onnx.NodeProto, emulate_ort: bool = True) -> np.ndarray:
    """The multiplier broadcast over the layer's output channels: one value per channel, [1, C, 1, ...]
    (Conv) or [N] (Gemm/MatMul); without ``emulate_ort`` as before: [C, 1, ...] or [N], a scalar if one."""
    w = lq.w_q
    if not emulate_ort:
        if mult.size == 1:
            return mult.reshape(())
        return mult.reshape((-1,) + (1,) * (w.ndim - 2)) if lq.op_type in ("Conv", "ConvTranspose") else mult
    if lq.op_type == "Conv":
        c = w.shape[0]
    elif lq.op_type == "ConvTranspose":
        c = w.shape[1] * int(attr(node, "group", 1))
    elif lq.op_type == "Gemm":
        c = w.shape[0] if int(attr(node, "transB", 0)) else w.shape[1]
    else:  # MatMul: [..., K, N]
        c = w.shape[-1]
    full = np.broadcast_to(mult, (c,)).astype(np.float32)
    if lq.op_type in ("Conv", "ConvTranspose"):
        return full.reshape((1, c) + (1,) * (w.ndim - 2))
    return full


def _f64(x) -> np.ndarray:
    return np.array(x, np.float64)


def _emulate_qlinear_add(ed: GraphEdit, order: dict[str, int], plan: QuantPlan) -> None:
    """Replace each Add of two quantized tensors into a quantized tensor (ONNX Runtime's QLinearAdd) by
    MLAS's x86 AVX2 arithmetic on the input integers ``a``, ``b`` (zero points included): ``r_a = s_a / s_c``,
    ``r_b = s_b / s_c``, ``F = zp_c - fma(r_a, zp_a, r_b * zp_b)``, ``c = nearbyint(fma(a, r_a, fma(b, r_b, F)))``.
    Each fused multiply-add is a float64 multiply and add (the product of an 8-bit integer and a float32
    is exact there) rounded once to float32 by a Cast. The output keeps its name: ``(c - zp_c) * s_c``."""
    f32 = np.float32
    for node in list(ed.graph.node):
        if (node.op_type != "Add" or not is_default_domain(node) or len(node.input) != 2
                or node.output[0] not in plan.tensors or any(i not in plan.tensors for i in node.input)):
            continue
        (a, b), c = node.input, node.output[0]
        qa, qb, qc = plan.tensors[a], plan.tensors[b], plan.tensors[c]
        if not qa.dtype == qb.dtype == qc.dtype:
            continue
        ra, rb = f32(f32(qa.scale) / f32(qc.scale)), f32(f32(qb.scale) / f32(qc.scale))
        fixed = f32(f32(qc.zero_point) - f32(_f64(ra) * qa.zero_point + _f64(f32(rb * f32(qb.zero_point)))))
        p = f"{c}_fq_qladd"
        ed.initializer(f"{p}_ratio_a", _f64(ra))
        ed.initializer(f"{p}_ratio_b", _f64(rb))
        ed.initializer(f"{p}_fixed", _f64(fixed))
        d, fl = onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT
        later = max((a, b), key=lambda t: order.get(t, -1))
        ed.hook(later, [
            helper.make_node("Cast", [f"{b}_fq_q"], [f"{p}_b"], name=f"{p}_CastB", to=d),
            helper.make_node("Mul", [f"{p}_b", f"{p}_ratio_b"], [f"{p}_bs"], name=f"{p}_MulB"),
            helper.make_node("Add", [f"{p}_bs", f"{p}_fixed"], [f"{p}_bf"], name=f"{p}_AddFixed"),
            helper.make_node("Cast", [f"{p}_bf"], [f"{p}_t"], name=f"{p}_RoundB", to=fl),
            helper.make_node("Cast", [f"{p}_t"], [f"{p}_t64"], name=f"{p}_CastT", to=d),
            helper.make_node("Cast", [f"{a}_fq_q"], [f"{p}_a"], name=f"{p}_CastA", to=d),
            helper.make_node("Mul", [f"{p}_a", f"{p}_ratio_a"], [f"{p}_as"], name=f"{p}_MulA"),
            helper.make_node("Add", [f"{p}_as", f"{p}_t64"], [f"{p}_sum"], name=f"{p}_AddA"),
            helper.make_node("Cast", [f"{p}_sum"], [f"{p}_o"], name=f"{p}_RoundSum", to=fl),
            helper.make_node("Round", [f"{p}_o"], [f"{p}_q"], name=f"{p}_Round"),
            helper.make_node("Sub", [f"{p}_q", f"{c}_fq_zero_point"], [f"{p}_int"], name=f"{p}_SubZeroPoint"),
            helper.make_node("Mul", [f"{p}_int", f"{c}_fq_scale"], [c], name=f"{p}_Dequant"),
        ])
        ed.graph.node.remove(node)


def _emulate_activation_matmuls(ed: GraphEdit, idx: GraphIndex, plan: QuantPlan, layers: dict) -> None:
    """A MatMul of two quantized activations whose output is requantized (ONNX Runtime's QLinearMatMul) reads
    both inputs' integers, and its accumulator is requantized as a layer's: ``nearbyint(acc * m)``, ``m =
    float32(float32(s_a * s_b) / s_y)``. A ``Round`` of the (integer) accumulator comes first, so that ONNX
    Runtime's MatMulScaleFusion cannot fold the scalar ``m`` into the MatMul."""
    for node in list(ed.graph.node):
        if (node.op_type != "MatMul" or not is_default_domain(node) or node.name in layers or len(node.input) != 2
                or any(i not in plan.tensors or idx.is_const(i) for i in node.input)):
            continue
        out_q = requantized_by(idx, node.output[0], plan.tensors)
        if out_q is None:
            continue  # a float output: ONNX Runtime multiplies the dequantized inputs in float, as this model does
        (a, b), out, p = node.input, node.output[0], f"{node.name or node.output[0]}_fq"
        m = np.float32(np.float32(plan.tensors[a].scale) * np.float32(plan.tensors[b].scale))
        ed.initializer(f"{p}_multiplier", np.array(np.float32(m / np.float32(plan.tensors[out_q].scale))))
        node.input[0], node.input[1], node.output[0] = f"{a}_fq_int", f"{b}_fq_int", f"{p}_accumulator"
        ed.hook(f"{p}_accumulator", [
            helper.make_node("Round", [f"{p}_accumulator"], [f"{p}_acc"], name=f"{p}_RoundAccumulator"),
            helper.make_node("Mul", [f"{p}_multiplier", f"{p}_acc"], [f"{p}_requant"], name=f"{p}_Requant"),
            helper.make_node("Round", [f"{p}_requant"], [f"{p}_requant_int"], name=f"{p}_RoundRequant"),
            helper.make_node("Mul", [f"{p}_requant_int", f"{out_q}_fq_scale"], [out], name=f"{p}_Dequant"),
        ])


def requantized_by(idx: GraphIndex, out: str, tensors: dict) -> str | None:
    """The quant point that directly requantizes a layer output (through Relu/Clip), if any."""
    t = out
    while t not in tensors:
        nxt = idx.single_consumer(t)
        if nxt is None or nxt.op_type not in PASS_ACTIVATIONS:
            return None
        t = nxt.output[0]
    return t


def ort_weight_quant(w: np.ndarray) -> tuple[np.ndarray, np.float32, int]:
    """(q - zero point, scale, zero point) of a float weight as ONNX Runtime's WeightBiasQuantization
    makes them: per tensor, asymmetric int8 from min/max (``GetQuantizationParameter<int8_t>``), then
    QuantizeLinear (divide, round half to even, clamp), all in float32."""
    w = np.asarray(w, np.float32)
    lo, hi = min(np.float32(w.min()), np.float32(0)), max(np.float32(w.max()), np.float32(0))
    scale = np.float32(1.0) if hi == lo else np.float32(np.float32(hi - lo) / np.float32(255))
    izp = np.float32(np.float32(-128) - np.float32(lo / scale))
    zp = int(np.round(np.clip(izp, np.float32(-128), np.float32(127))))
    q = np.clip(np.round(w / scale), -128 - zp, 127 - zp)  # already shifted by -zp
    return q.astype(np.int32), scale, zp


def ort_requantized_layers(idx: GraphIndex, plan: QuantPlan) -> dict[str, LayerQuant]:
    """Float layers that ONNX Runtime runs as int8 kernels all the same, as :class:`LayerQuant`: a Conv /
    ConvTranspose / Gemm / MatMul outside ``plan.layers`` whose input is a quantized tensor and whose
    output goes, through Relu/Clip only, to a quantized tensor. Its weight is the plan's weight-only int8
    weight (read through a DequantizeLinear), or else a float constant that ONNX Runtime's
    WeightBiasQuantization quantizes per tensor (:func:`ort_weight_quant`; not MatMul); a 1-D float bias
    becomes int32 at ``s_x * s_w`` (``round(b / (s_x * s_w))``, per channel for weight-only weights)."""
    out: dict[str, LayerQuant] = {}
    weight_only = getattr(plan, "weight_only", None) or {}
    for node in idx.graph.node:
        if (node.op_type not in ORT_LAYER_OPS or not is_default_domain(node) or not node.name
                or node.name in plan.layers or len(node.input) < 2 or node.input[0] not in plan.tensors
                or requantized_by(idx, node.output[0], plan.tensors) is None):
            continue
        if node.op_type == "Gemm" and (float(attr(node, "alpha", 1.0)) != 1.0 or float(attr(node, "beta", 1.0)) != 1.0
                                       or int(attr(node, "transA", 0)) != 0):
            continue
        bias = node.input[2] if node.op_type != "MatMul" and len(node.input) > 2 and node.input[2] else None
        if bias is not None and not (idx.is_const(bias) and idx.array(bias).ndim == 1
                                     and idx.array(bias).dtype == np.float32):
            continue
        wo = weight_only.get(node.input[1])
        if wo is not None:
            q, scale, axis = np.asarray(wo.w_q), np.asarray(wo.w_scale, np.float32).reshape(-1), wo.axis
            want = (q.ndim - 1 if node.op_type == "MatMul" else
                    (0 if int(attr(node, "transB", 0)) else 1) if node.op_type == "Gemm" else 0)
            if scale.size == 1:
                axis = None
            elif axis != want or (bias is not None and idx.array(bias).size != scale.size):
                continue  # ONNX Runtime leaves such a layer float (dequantized weight, float bias)
        elif node.op_type != "MatMul" and idx.is_const(node.input[1]) and idx.array(node.input[1]).dtype == np.float32:
            w = idx.array(node.input[1])
            if w.ndim < 2 or (node.op_type == "Gemm" and w.ndim != 2):
                continue
            q, s, _ = ort_weight_quant(w)
            scale, axis = np.array([s], np.float32), None
        else:
            continue
        lq = LayerQuant(node.name, node.op_type, node.input[0], node.input[1], 1, bias, 2 if bias else None, axis,
                        q.astype(np.int32), scale)
        if bias is not None:
            b = idx.array(bias)
            bs = (np.float32(plan.tensors[node.input[0]].scale) * scale).astype(np.float32)
            lq.b_q = np.round((b / bs).astype(np.float32)).astype(np.int64)
            lq.b_scale, lq.bias_shape = np.broadcast_to(bs, b.shape).astype(np.float32), b.shape
        out[node.name] = lq
    return out
