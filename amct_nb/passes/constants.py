"""Turn weights held in ``Constant`` nodes into graph initializers."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

from .base import Change

__all__ = ["constants_to_initializers"]


def _constant_value(node: onnx.NodeProto):
    for attr in node.attribute:
        if attr.name == "value":
            return numpy_helper.to_array(attr.t)
        if attr.name == "value_float":
            return np.array(attr.f, dtype=np.float32)
        if attr.name == "value_floats":
            return np.array(list(attr.floats), dtype=np.float32)
        if attr.name == "value_int":
            return np.array(attr.i, dtype=np.int64)
        if attr.name == "value_ints":
            return np.array(list(attr.ints), dtype=np.int64)
    return None  # sparse_value / string values: left alone


def constants_to_initializers(model: onnx.ModelProto) -> tuple[onnx.ModelProto, list[Change]]:
    """Move every ``Constant`` node of the main graph into ``graph.initializer``.

    Weights exported as Constant nodes (tf2onnx, old PyTorch, hand-built graphs) then look like
    every other weight, so they are found, quantized and stored as int8 like the rest.
    """
    out = onnx.ModelProto()
    out.CopyFrom(model)
    g = out.graph
    graph_outputs = {o.name for o in g.output}
    keep, moved = [], []
    for node in g.node:
        if node.op_type == "Constant" and node.domain in ("", "ai.onnx") and node.output[0] not in graph_outputs:
            value = _constant_value(node)
            if value is not None:
                g.initializer.append(numpy_helper.from_array(value, node.output[0]))
                moved.append(node.output[0])
                continue
        keep.append(node)
    if not moved:
        return out, []
    del g.node[:]
    g.node.extend(keep)
    # initializers must not be repeated as graph inputs with conflicting info; value_info is harmless
    return out, [Change("constants_to_initializers", f"{len(moved)} Constant node(s) turned into initializers")]
