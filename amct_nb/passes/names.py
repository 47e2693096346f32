"""Give every node a unique name (AMCT's convention: unnamed nodes become ``{op_type}_{index}``)."""

from __future__ import annotations

import onnx

from .base import Change

__all__ = ["name_nodes"]


def name_nodes(model: onnx.ModelProto) -> tuple[onnx.ModelProto, list[Change]]:
    """Name unnamed nodes ``{op_type}_{index}`` and suffix duplicates ``_1``, ``_2``... (the model itself
    when every node has a unique name already)."""
    seen: set[str] = set()
    names = []
    for i, node in enumerate(model.graph.node):
        name = node.name or f"{node.op_type}_{i}"
        base, k = name, 0
        while name in seen:
            k += 1
            name = f"{base}_{k}"
        names.append(name)
        seen.add(name)
    renamed = sum(name != node.name for name, node in zip(names, model.graph.node))
    if not renamed:
        return model, []
    out = onnx.ModelProto()
    out.CopyFrom(model)
    for name, node in zip(names, out.graph.node):
        if name != node.name:
            node.name = name
    return out, [Change("named", f"{renamed} node(s) named or renamed to be unique")]
