"""Graph editing shared by every model writer: new initializers, nodes hooked after tensors, one rebuild.

The deploy, fake-quant and gated (safety net) writers all do the same three things to a copy of a
model: add initializers, hook short chains of nodes right after the tensors they read (or first,
for graph inputs and weights), and point existing nodes at the chains' outputs. :class:`GraphEdit`
collects those edits and writes them in one pass, so the node order is deterministic and every
new node sits right after what it reads.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

from .graph import walk_nodes

__all__ = ["clone", "GraphEdit", "set_metadata"]


def clone(model: onnx.ModelProto) -> onnx.ModelProto:
    m = onnx.ModelProto()
    m.CopyFrom(model)
    return m


class GraphEdit:
    """Edits of a copy of ``model``; :meth:`finish` returns the edited copy.

    ``initializer(name, array)`` adds a weight, ``first(nodes)`` puts nodes at the top of the
    graph, ``hook(tensor, nodes)`` puts nodes right after the producer of ``tensor`` (after the
    top for graph inputs and initializers). Existing nodes are changed in place through
    :attr:`graph` / :meth:`node`: new nodes are not in the graph until :meth:`finish`.
    """

    def __init__(self, model: onnx.ModelProto):
        self.model = clone(model)
        self.graph = self.model.graph
        self._inits: list[onnx.TensorProto] = []
        self._head: list[onnx.NodeProto] = []
        self._after: dict[str, list[onnx.NodeProto]] = {}
        self._nodes = {n.name: n for n in self.graph.node}

    def node(self, name: str) -> onnx.NodeProto:
        return self._nodes[name]

    def initializer(self, name: str, array: np.ndarray) -> str:
        self._inits.append(numpy_helper.from_array(array, name))
        return name

    def first(self, nodes: list[onnx.NodeProto]) -> None:
        self._head.extend(nodes)

    def hook(self, tensor: str, nodes: list[onnx.NodeProto]) -> None:
        self._after.setdefault(tensor, []).extend(nodes)

    def redirect(self, mapping: dict[str, str], skip=None) -> None:
        """Point the inputs of the graph's own nodes at new names; ``skip(node, index)`` keeps an input."""
        for node in self.graph.node:
            for i, name in enumerate(node.input):
                if name in mapping and not (skip is not None and skip(node, i)):
                    node.input[i] = mapping[name]

    def finish(self, drop_unused: bool = True) -> onnx.ModelProto:
        """Write the collected nodes and initializers; drop initializers nothing reads any more."""
        g = self.graph
        after = dict(self._after)
        inputs = {i.name for i in g.input} | {t.name for t in g.initializer}
        nodes = list(self._head)
        for name in list(after):
            if name in inputs:
                for hooked in after.pop(name):
                    nodes.append(hooked)
                    for o in hooked.output:
                        nodes.extend(after.pop(o, []))

        def emit(node):
            nodes.append(node)
            for o in node.output:
                for hooked in after.pop(o, []):
                    emit(hooked)

        for node in g.node:
            emit(node)
        del g.node[:]
        g.node.extend(nodes)
        g.initializer.extend(self._inits)
        if drop_unused:
            _drop_unused_initializers(g)
        return self.model


def _drop_unused_initializers(g: onnx.GraphProto) -> None:
    """Remove initializers no node (subgraphs included) and no graph output reads, and their
    entries in ``graph.input`` (old exporters list weights there too)."""
    used = {i for n in walk_nodes(g) for i in n.input} | {o.name for o in g.output}
    before = {t.name for t in g.initializer}
    keep = [t for t in g.initializer if t.name in used]
    del g.initializer[:]
    g.initializer.extend(keep)
    dropped = before - {t.name for t in keep}
    if dropped:
        vis = [i for i in g.input if i.name not in dropped]
        del g.input[:]
        g.input.extend(vis)


def set_metadata(model: onnx.ModelProto, props: dict[str, str], drop_prefix: str | None = None) -> None:
    """Merge ``props`` into the model's metadata (sorted by key, so reruns are byte-identical);
    keys starting with ``drop_prefix`` are removed first."""
    have = {p.key: p.value for p in model.metadata_props if not (drop_prefix and p.key.startswith(drop_prefix))}
    have.update(props)
    del model.metadata_props[:]
    for k in sorted(have):
        model.metadata_props.append(onnx.StringStringEntryProto(key=k, value=have[k]))
