"""Remove nodes that compute nothing at inference time (Identity, inference Dropout)."""

from __future__ import annotations

import onnx

from ..ir import subgraphs, walk_nodes
from .base import Change

__all__ = ["remove_noops"]


def _is_noop(node: onnx.NodeProto) -> bool:
    if node.domain not in ("", "ai.onnx"):
        return False
    if node.op_type == "Identity":
        return True
    if node.op_type == "Dropout":
        # training_mode input absent (or empty) means inference: output = input; mask must be unused
        return len(node.input) < 3 or node.input[2] == ""
    return False


def _removable(node: onnx.NodeProto, graph_outputs: set[str], used: set[str]) -> bool:
    return _is_noop(node) and node.output[0] not in graph_outputs and not (
        len(node.output) > 1 and node.output[1] in used | graph_outputs)


def remove_noops(model: onnx.ModelProto) -> tuple[onnx.ModelProto, list[Change]]:
    """Bypass Identity and inference-mode Dropout nodes of the main graph.

    A no-op whose output is a graph output is kept (renaming graph outputs would change the
    model's interface), and so is a Dropout whose mask output is used; the model itself when nothing goes.
    """
    outs = {o.name for o in model.graph.output}
    read = {i for n in walk_nodes(model.graph) for i in n.input}
    if not any(_removable(n, outs, read) for n in model.graph.node):
        return model, []
    out = onnx.ModelProto()
    out.CopyFrom(model)
    g = out.graph
    graph_outputs = {o.name for o in g.output}
    used = {i for n in walk_nodes(g) for i in n.input}
    rename: dict[str, str] = {}
    keep, removed = [], 0
    for node in g.node:
        if _removable(node, graph_outputs, used):
            src = node.input[0]
            rename[node.output[0]] = rename.get(src, src)
            removed += 1
            continue
        keep.append(node)
    if not removed:
        return out, []
    for node in keep:
        for i, name in enumerate(node.input):
            if name in rename:
                node.input[i] = rename[name]
        _rename_in_subgraphs(node, rename)
    del g.node[:]
    g.node.extend(keep)
    return out, [Change("noops_removed", f"{removed} no-op node(s) removed (Identity/Dropout)")]


def _rename_in_subgraphs(node: onnx.NodeProto, rename: dict[str, str]) -> None:
    for sub in subgraphs(node):
        for n in sub.node:
            for i, name in enumerate(n.input):
                if name in rename:
                    n.input[i] = rename[name]
            _rename_in_subgraphs(n, rename)
