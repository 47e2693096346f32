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

from .graph import named_subgraphs, node_scopes, walk_nodes
from .model import _has_unknown, copy_fields

__all__ = ["clone", "GraphEdit", "set_metadata", "keep_only"]


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

    If/Loop bodies: :meth:`node` and :meth:`redirect` reach their nodes, a hook after a body's tensor
    goes into that body, ``first(nodes, near=node name)`` puts nodes at the top of the body that holds
    that node; every initializer goes to the main graph (bodies read it from there).
    """

    def __init__(self, model: onnx.ModelProto):
        self.model = clone(model)
        self.graph = self.model.graph
        self._inits: list[onnx.TensorProto] = []
        self._head: list[onnx.NodeProto] = []
        self._after: dict[str, list[onnx.NodeProto]] = {}
        self._nodes = {n.name: n for n in walk_nodes(self.graph)}
        self._scopes = node_scopes(self.graph)
        self._head_in: dict[str, list[onnx.NodeProto]] = {}

    def node(self, name: str) -> onnx.NodeProto:
        return self._nodes[name]

    def initializer(self, name: str, array: np.ndarray) -> str:
        self._inits.append(numpy_helper.from_array(array, name))
        return name

    def first(self, nodes: list[onnx.NodeProto], near: str | None = None) -> None:
        scope = self._scopes.get(near, "") if near else ""
        (self._head_in.setdefault(scope, []) if scope else self._head).extend(nodes)

    def hook(self, tensor: str, nodes: list[onnx.NodeProto]) -> None:
        self._after.setdefault(tensor, []).extend(nodes)

    def redirect(self, mapping: dict[str, str], skip=None) -> None:
        """Point the inputs of the graph's nodes (bodies' too) at new names; ``skip(node, index)`` keeps an input."""
        for node in walk_nodes(self.graph):
            for i, name in enumerate(node.input):
                if name in mapping and not (skip is not None and skip(node, i)):
                    node.input[i] = mapping[name]

    def _emit_tree(self, g: onnx.GraphProto, scope: str, head: list, after: dict) -> None:
        """:func:`_emit` ``g``, then each body in its new node list (a rebuilt list holds copies of the bodies)."""
        _emit(g, head, after)
        for node in g.node:
            for attr_name, sub in named_subgraphs(node):
                inner = f"{scope}/{node.name}/{attr_name}".lstrip("/")
                self._emit_tree(sub, inner, self._head_in.pop(inner, []), after)

    def finish(self, drop_unused: bool = True) -> onnx.ModelProto:
        """Write the collected nodes and initializers; drop initializers nothing reads any more.

        When initializers of the copy are dropped, the result is a new model built field by field from
        what is kept (protobuf frees nothing of a message before the whole message goes: the copy's
        dropped weights would otherwise stay in memory as long as the result)."""
        g = self.graph
        after = dict(self._after)
        self._emit_tree(g, "", self._head, after)
        new, self._inits = self._inits, []
        if not drop_unused:
            _append(g, new)
            return self.model
        used = {i for n in walk_nodes(g) for i in n.input} | {o.name for o in g.output}
        dropped = {t.name for t in [*g.initializer, *new] if t.name not in used}
        new = [t for t in new if t.name in used]
        if not any(t.name in dropped for t in g.initializer) or _has_unknown(self.model, g):
            _append(g, new)
            _drop_unused(g, used, dropped)
            return self.model
        out = onnx.ModelProto()  # what is kept, field by field
        copy_fields(self.model, out, skip=("graph",))
        copy_fields(g, out.graph, skip=("initializer", "input"))
        out.graph.input.extend(i for i in g.input if i.name not in dropped)
        for t in g.initializer:
            if t.name in used:
                out.graph.initializer.add().CopyFrom(t)
        _append(out.graph, new)
        self.model, self.graph = out, out.graph
        self._nodes = {n.name: n for n in out.graph.node}
        return out


def _emit(g: onnx.GraphProto, head: list[onnx.NodeProto], after: dict) -> None:
    """Rebuild ``g``'s node list: ``head``, the nodes hooked after its inputs and initializers, then each node
    followed by what is hooked after its outputs (taken out of ``after``)."""
    inputs = {i.name for i in g.input} | {t.name for t in g.initializer}
    nodes = list(head)
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


def _append(g: onnx.GraphProto, tensors: list[onnx.TensorProto]) -> None:
    """Append ``tensors`` to the graph's initializers, letting each standalone copy go once it is in."""
    tensors.reverse()
    while tensors:
        g.initializer.append(tensors.pop())


def keep_only(field, keep) -> None:
    """Delete in place the elements of a repeated protobuf field for which ``keep(element)`` is false, one by
    one: clearing the field and adding back what is kept would copy every kept weight (protobuf frees
    nothing of a message before the whole message goes)."""
    for i in reversed([i for i, x in enumerate(field) if not keep(x)]):
        del field[i]


def _drop_unused(g: onnx.GraphProto, used: set[str], dropped: set[str]) -> None:
    """Remove the initializers not in ``used`` and the ``graph.input`` entries named in ``dropped`` (old
    exporters list weights there too), in place."""
    keep_only(g.initializer, lambda t: t.name in used)
    keep_only(g.input, lambda i: i.name not in dropped)


def set_metadata(model: onnx.ModelProto, props: dict[str, str], drop_prefix: str | None = None) -> None:
    """Merge ``props`` into the model's metadata (sorted by key, so reruns are byte-identical);
    keys starting with ``drop_prefix`` are removed first."""
    have = {p.key: p.value for p in model.metadata_props if not (drop_prefix and p.key.startswith(drop_prefix))}
    have.update(props)
    del model.metadata_props[:]
    for k in sorted(have):
        model.metadata_props.append(onnx.StringStringEntryProto(key=k, value=have[k]))
