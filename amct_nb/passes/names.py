"""Give every node a unique name (AMCT's convention: unnamed nodes become ``{op_type}_{index}``)."""

from __future__ import annotations

import onnx

from ..ir import walk_graphs
from .base import Change

__all__ = ["name_nodes"]


def name_nodes(model: onnx.ModelProto) -> tuple[onnx.ModelProto, list[Change]]:
    """Name unnamed nodes ``{op_type}_{index}`` and suffix duplicates ``_1``, ``_2``... (the model itself
    when every node has a unique name already). Nodes of If/Loop/Scan bodies get names unique in the whole
    model too (``{owner}_{attribute}_{op_type}_{index}`` when unnamed)."""
    seen: set[str] = set()
    names = []
    for scope, g in walk_graphs(model.graph):
        prefix = scope.replace("/", "_") + "_" if scope else ""
        for i, node in enumerate(g.node):
            name = node.name or f"{prefix}{node.op_type}_{i}"
            base, k = name, 0
            while name in seen:
                k += 1
                name = f"{base}_{k}"
            names.append(name)
            seen.add(name)
    nodes = [n for _, g in walk_graphs(model.graph) for n in g.node]
    renamed = sum(name != node.name for name, node in zip(names, nodes))
    if not renamed:
        return model, []
    out = onnx.ModelProto()
    out.CopyFrom(model)
    for name, node in zip(names, [n for _, g in walk_graphs(out.graph) for n in g.node]):
        if name != node.name:
            node.name = name
    return out, [Change("named", f"{renamed} node(s) named or renamed to be unique")]
