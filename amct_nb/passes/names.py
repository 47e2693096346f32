"""Give every node a unique name (AMCT's convention: unnamed nodes become ``{op_type}_{index}``)."""

from __future__ import annotations

import onnx

from .base import Change

__all__ = ["name_nodes"]


def name_nodes(model: onnx.ModelProto) -> tuple[onnx.ModelProto, list[Change]]:
    """Name unnamed nodes ``{op_type}_{index}`` and suffix duplicates ``_1``, ``_2``..."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    seen: set[str] = set()
    renamed = 0
    for i, node in enumerate(out.graph.node):
        name = node.name or f"{node.op_type}_{i}"
        base, k = name, 0
        while name in seen:
            k += 1
            name = f"{base}_{k}"
        if name != node.name:
            renamed += 1
            node.name = name
        seen.add(name)
    return out, ([Change("named", f"{renamed} node(s) named or renamed to be unique")] if renamed else [])
