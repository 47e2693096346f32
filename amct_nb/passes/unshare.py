"""Give every layer its own copy of a weight that several layers read.

A block applied several times, tied projections, ALBERT-style sharing: one initializer feeds several
Conv / Gemm / MatMul nodes. Each use sees different activations, so each gets its own activation grid
and its own record entry; the weight itself quantizes the same way for every use (its scales come from
the weight alone), and the exports store the int8 copy once again (:mod:`amct_nb.export.share`).

A weight also read by a node that is not a layer (a Gather of a tied embedding table, a Shape) is left
shared: its layers stay float, with the reason, as before.
"""

from __future__ import annotations

import onnx

from ..ir import walk_nodes
from .base import Change

__all__ = ["unshare_weights", "WEIGHT_UNSHARED"]

#: ``Change.kind`` of a shared weight or bias (``node``) copied for one of its layers (``target``: the copy's name).
WEIGHT_UNSHARED = "weight_unshared"


def _uses(graph: onnx.GraphProto) -> dict[str, int]:
    """How many node inputs read each name, subgraphs (If / Loop bodies) included."""
    n: dict[str, int] = {}
    for node in walk_nodes(graph):
        for i in node.input:
            if i:
                n[i] = n.get(i, 0) + 1
    return n


def unshare_weights(model: onnx.ModelProto, weight_inputs: dict[str, tuple]) -> tuple[onnx.ModelProto, list[Change]]:
    """Copy each initializer that only layers read (``weight_inputs``: op type -> (weight input index, bias
    input index or None)), and more than one of them, so every layer reads its own; a bias several layers
    read is copied whoever else reads it. Returns (model, changes): the model itself when no weight is shared."""
    g = model.graph
    inits = {t.name: t for t in g.initializer}
    readers: dict[tuple[str, bool], list[tuple[int, int]]] = {}
    for k, node in enumerate(walk_nodes(g)):  # layers in If/Loop bodies too
        spec = weight_inputs.get(node.op_type)
        if spec is None or node.domain not in ("", "ai.onnx"):
            continue
        for is_bias, i in enumerate(spec):
            if i is not None and len(node.input) > i and node.input[i] in inits:
                readers.setdefault((node.input[i], bool(is_bias)), []).append((k, i))
    uses = _uses(g)
    outputs = {o.name for o in g.output}
    shared = {key: nodes for key, nodes in readers.items() if len(nodes) >= 2 and key[0] not in outputs
              and (key[1] or uses.get(key[0], 0) == len(nodes))}
    if not shared:
        return model, []
    out = onnx.ModelProto()
    out.CopyFrom(model)
    g = out.graph
    inits = {t.name: t for t in g.initializer}
    every = list(walk_nodes(g))
    taken = set(inits) | {o for n in every for o in n.output} | {i.name for i in g.input}
    changes = []
    for (w, is_bias), nodes in shared.items():
        for k, (pos, idx) in enumerate(nodes[1:], 2):
            node = every[pos]
            name, j = f"{w}_use{k}", 0
            while name in taken:
                j += 1
                name = f"{w}_use{k}_{j}"
            taken.add(name)
            t = g.initializer.add()
            t.CopyFrom(inits[w])
            t.name = name
            node.input[idx] = name
            what = "bias" if is_bias else "weight"
            changes.append(Change(WEIGHT_UNSHARED, f"{what} {w} is shared by {len(nodes)} layers: {node.name} reads "
                                                   f"its own copy {name} (stored once again in the exports)",
                                  node=w, target=name))
    return out, changes
