"""The local model: every quantized layer computed twice on its float input, as is and fake-quantized alone.

For layer ``L`` reading ``x`` and writing ``y``, the model also computes ``y_local = L(fq(x), dq(w_q),
dq(b_q))``: the layer's own quantization error with no error from upstream layers mixed in.
AMCT ranks layers for auto calibration this way (it dumps each layer's inputs to disk and runs
the layer twice); here one ONNX Runtime session over the float model gives both outputs of every
layer, and nothing is written to disk.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper

from ..ir import GraphEdit
from .plan import QuantPlan

__all__ = ["build_local", "local_output"]


def local_output(layer_output: str) -> str:
    """Name of the fake-quantized-alone copy of ``layer_output`` in the local model."""
    return f"{layer_output}__amct_nb_local"


def build_local(model: onnx.ModelProto, plan: QuantPlan) -> tuple[onnx.ModelProto, dict[str, tuple[str, str]]]:
    """(local model, {layer: (float output, local output)}) for every quantized layer of ``plan``."""
    ed = GraphEdit(model)
    pairs: dict[str, tuple[str, str]] = {}
    for name, lq in plan.layers.items():
        node = ed.node(name)
        tq = plan.tensors[lq.activation]
        p = f"{name}__amct_nb_local"
        ed.initializer(f"{p}_s", np.array(tq.scale, np.float32))
        ed.initializer(f"{p}_z", np.array(tq.zero_point, np.dtype(tq.dtype)))
        ed.initializer(f"{p}_w", lq.dequantized_weight())
        inputs = list(node.input)
        inputs[0] = f"{p}_x"
        inputs[lq.weight_index] = f"{p}_w"
        if lq.b_q is not None:
            b = (lq.b_q.astype(np.float32) * lq.b_scale).astype(np.float32).reshape(lq.bias_shape)
            inputs[lq.bias_index] = ed.initializer(f"{p}_b", b)
        out = local_output(node.output[0])
        copy = helper.make_node(node.op_type, inputs, [out], name=p, domain=node.domain)
        copy.attribute.extend(node.attribute)
        ed.hook(node.output[0], [
            helper.make_node("QuantizeLinear", [lq.activation, f"{p}_s", f"{p}_z"], [f"{p}_q"], name=f"{p}_Q"),
            helper.make_node("DequantizeLinear", [f"{p}_q", f"{p}_s", f"{p}_z"], [f"{p}_x"], name=f"{p}_DQ"),
            copy,
        ])
        pairs[name] = (node.output[0], out)
    m = ed.finish(drop_unused=False)
    have = {o.name for o in m.graph.output}
    for y, yl in pairs.values():
        for t in (y, yl):
            if t not in have:
                m.graph.output.append(helper.make_tensor_value_info(t, onnx.TensorProto.FLOAT, None))
                have.add(t)
    return m, pairs
