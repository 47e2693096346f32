"""What gets quantized: which layers (:func:`select_layers`) and which activation tensors (:func:`quant_points`).

Activation tensors that get QuantizeLinear/DequantizeLinear:
  * the activation input of every quantized layer;
  * the output of every quantized layer, moved past a single-consumer Relu/Clip (the runtime
    removes the activation when the quantized range already clips), so ONNX Runtime can fuse
    int8 kernels that also write int8 outputs; graph outputs stay float;
  * the other inputs and the output of an Add/Concat fed by those, so residual additions and
    concatenations run as int8 (QLinearAdd / QLinearConcat) instead of falling back to float;
  * both inputs and the output of a MatMul between two float activations (attention's Q.K^T and
    probabilities.V), which ONNX Runtime then runs as QLinearMatMul; Softmax and LayerNormalization
    around them stay float (their inputs and outputs are dequantized), and the safety net leaves
    float any of these tensors that quantization destroys (``quantize_activation_matmul``).
The same list drives the deploy and the fake-quant models, which is why they compute the same
numbers.
"""

from __future__ import annotations

import onnx

from ..config import QuantConfig
from ..export import PASS_ACTIVATIONS
from ..ir import GraphIndex, is_default_domain, walk_graphs
from ..ops import Layer
from ..reasons import Code, Reason

__all__ = ["select_layers", "quant_points", "input_channels"]

_INT8_ELEMENTWISE = ("Add", "Concat")


def input_channels(layer: Layer) -> int | None:
    """Input channels per group of a non-depthwise convolution (None for other layers); a 1-D convolution over
    one channel (an audio front end: an STFT written as a Conv, a waveform encoder's first layer) counts as 1."""
    s = layer.weight_shape
    if layer.op_type == "Conv" and len(s) >= 3 and (s[1] > 1 or (len(s) == 3 and layer.groups == 1)):
        return int(s[1])
    return None


def select_layers(layers: list[Layer], cfg: QuantConfig,
                  forced: dict[str, Reason] | None = None) -> tuple[list[Layer], dict[str, Reason]]:
    """(layers to quantize, {layer left float: why}) for a config; ``forced`` layers stay float."""
    forced = forced or {}
    on, off = [], {}
    for l in layers:
        k = input_channels(l)
        if not l.quantizable:
            off[l.name] = l.reason
        elif cfg.min_input_channels and k is not None and k < cfg.min_input_channels:
            what = "an image stem" if len(l.weight_shape) != 3 else "a stem: the first layer over a signal"
            off[l.name] = Reason(Code.STEM, f"{k} input channels < min_input_channels {cfg.min_input_channels} "
                                            f"({what}): int8 is slower than float here and the layer is "
                                            "sensitive (set min_input_channels: 0 to quantize it)")
        elif l.name in forced:
            off[l.name] = forced[l.name]
        elif not cfg.for_layer(l.name, l.op_type).quant_enable:
            off[l.name] = Reason(Code.DISABLED, "disabled in the config (quant_enable: false)")
        else:
            on.append(l)
    return on, off


def _float_tensors(model: onnx.ModelProto) -> set[str]:
    """Tensors whose inferred type is float32 (in If/Loop/Scan bodies too)."""
    return {v.name for _, g in walk_graphs(model.graph) for v in (*g.value_info, *g.input, *g.output)
            if v.type.HasField("tensor_type") and v.type.tensor_type.elem_type == onnx.TensorProto.FLOAT}


def quant_points(model: onnx.ModelProto, layers: list[Layer], quantize_outputs: bool = True,
                 activation_matmul: bool = True) -> list[str]:
    """Activation tensors to quantize for the given (enabled) layers, in graph order (a body's tensors right
    after the node that holds the body). Each graph (the main one, every If/Loop/Scan body) follows the rules
    of the module docstring on its own; a body's outputs stay float like the model's."""
    pts: set[str] = set()
    floats = _float_tensors(model) if quantize_outputs and activation_matmul else set()
    by_scope: dict[str, list[Layer]] = {}
    for l in layers:
        by_scope.setdefault(l.scope, []).append(l)
    order: list[str] = []
    consts = {t.name for _, g in walk_graphs(model.graph) for t in g.initializer}  # bodies read the main graph's
    for scope, g in walk_graphs(model.graph):
        idx = GraphIndex(g)
        order.extend(i.name for i in g.input if i.name not in consts)
        order.extend(o for n in g.node for o in n.output)
        _graph_points(g, idx, consts, by_scope.get(scope, []), pts, floats, quantize_outputs, activation_matmul)
    return [t for t in dict.fromkeys(order) if t in pts]


def _graph_points(g: onnx.GraphProto, idx: GraphIndex, consts: set[str], layers: list[Layer], pts: set[str],
                  floats: set[str], quantize_outputs: bool, activation_matmul: bool) -> None:
    outputs = set(idx.graph_outputs)
    for l in layers:
        pts.add(l.activation)
    if quantize_outputs and activation_matmul:
        for node in g.node:
            if (node.op_type == "MatMul" and is_default_domain(node) and len(node.input) == 2
                    and all(i in floats and i not in consts for i in node.input)):
                pts.update(node.input)
                if node.output[0] not in outputs:
                    pts.add(node.output[0])
    if not quantize_outputs:
        return
    for l in layers:
        t = l.output
        while True:
            nxt = idx.single_consumer(t)
            if nxt is None or nxt.op_type not in PASS_ACTIVATIONS or not is_default_domain(nxt):
                break
            t = nxt.output[0]
        if t not in outputs:
            pts.add(t)
    for node in g.node:
        if node.op_type not in _INT8_ELEMENTWISE or not is_default_domain(node):
            continue
        ins = [i for i in node.input if i and i not in consts]
        if any(i in pts for i in ins) or node.output[0] in pts:
            pts.update(ins)
            if node.output[0] not in outputs:
                pts.add(node.output[0])
