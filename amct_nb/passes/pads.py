"""Fold zero ``Pad`` nodes into the ``pads`` attribute of the Conv that reads them.

TensorFlow's "SAME" padding exported from PyTorch (a ``ZeroPad2d`` before an unpadded conv) or
from tf2onnx becomes ``Pad(x) -> Conv``; a constant-zero spatial Pad with a single Conv consumer
is the Conv's own padding, so the pair becomes one Conv (one int8 kernel instead of a float pad).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper

from ..ir import GraphIndex, attr
from .base import Change

__all__ = ["fold_pads"]


def _foldable(idx: GraphIndex, node: onnx.NodeProto, outputs: set[str]) -> list[int] | None:
    """The Conv-order pads [top, left, bottom, right] a Pad adds, or None when it cannot be folded."""
    users = idx.consumers.get(node.output[0], [])
    if (attr(node, "mode", b"constant") not in (b"constant", "constant") or len(node.input) < 2
            or not idx.is_const(node.input[1]) or len(users) != 1 or users[0].op_type != "Conv"
            or node.output[0] in outputs):
        return None
    if (len(node.input) > 2 and node.input[2]
            and not (idx.is_const(node.input[2]) and not np.any(idx.array(node.input[2])))):
        return None
    if len(node.input) > 3 and node.input[3]:  # axes
        return None
    pads = idx.array(node.input[1]).tolist()
    if len(pads) != 8 or pads[0] or pads[1] or pads[4] or pads[5] or min(pads) < 0:
        return None
    return pads[2:4] + pads[6:8]


def fold_pads(model: onnx.ModelProto) -> tuple[onnx.ModelProto, list[Change]]:
    """Fold every foldable 4-D zero Pad into its Conv consumer; unused pad amounts are dropped."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    g = out.graph
    idx = GraphIndex(g)
    outputs = {o.name for o in g.output}
    drop, changes = set(), []
    for node in g.node:
        if node.op_type != "Pad":
            continue
        pads = _foldable(idx, node, outputs)
        if pads is None:
            continue
        conv = idx.consumers[node.output[0]][0]
        old = list(attr(conv, "pads", [0, 0, 0, 0]))
        for a in list(conv.attribute):
            if a.name == "pads":
                conv.attribute.remove(a)
        conv.attribute.append(helper.make_attribute("pads", [o + p for o, p in zip(old, pads)]))
        conv.input[0] = node.input[0]
        drop.add(id(node))
        changes.append(Change("pad_folded", f"Pad {node.name or node.output[0]} folded into {conv.name}",
                              node.name or node.output[0], conv.name))
    if not drop:
        return out, []
    keep = [n for n in g.node if id(n) not in drop]
    del g.node[:]
    g.node.extend(keep)
    used = {name for n in g.node for name in n.input}
    for t in [t for t in g.initializer if t.name not in used]:
        g.initializer.remove(t)
    return out, changes
