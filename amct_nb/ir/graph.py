"""Read-only views of a graph: producer/consumer index, constant weights, subgraphs, model inputs.

The one subgraph walker of the package lives here (:func:`subgraphs`, :func:`walk_nodes`,
:func:`outer_names`): If/Loop/Scan bodies are reached through a node's GRAPH/GRAPHS attributes.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper, numpy_helper

__all__ = ["GraphIndex", "attr", "subgraphs", "named_subgraphs", "walk_nodes", "outer_names", "InputSpec",
           "input_specs", "is_default_domain", "walk_graphs", "node_scopes"]


def attr(node: onnx.NodeProto, name: str, default=None):
    """The value of a node's attribute ``name``, or ``default``."""
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def is_default_domain(node: onnx.NodeProto) -> bool:
    return node.domain in ("", "ai.onnx")


def named_subgraphs(node: onnx.NodeProto) -> Iterator[tuple[str, onnx.GraphProto]]:
    """(attribute name, body) of each subgraph of an If/Loop/Scan (any GRAPH/GRAPHS attribute)."""
    for a in node.attribute:
        if a.type == onnx.AttributeProto.GRAPH:
            yield a.name, a.g
        elif a.type == onnx.AttributeProto.GRAPHS:
            for g in a.graphs:
                yield a.name, g


def subgraphs(node: onnx.NodeProto) -> Iterator[onnx.GraphProto]:
    """The bodies of an If/Loop/Scan (or any node with GRAPH/GRAPHS attributes)."""
    for _, g in named_subgraphs(node):
        yield g


def walk_nodes(graph: onnx.GraphProto) -> Iterator[onnx.NodeProto]:
    """Every node of ``graph`` and of its subgraphs, depth first, in graph order."""
    for node in graph.node:
        yield node
        for sub in subgraphs(node):
            yield from walk_nodes(sub)


def walk_graphs(graph: onnx.GraphProto, scope: str = "") -> Iterator[tuple[str, onnx.GraphProto]]:
    """(scope, graph) of ``graph`` (scope ``""``) and of every If/Loop/Scan body in it, depth first; a body's
    scope is ``owner node name/attribute name`` after its enclosing scope (``If_0/then_branch``)."""
    yield scope, graph
    for node in graph.node:
        for attr_name, sub in named_subgraphs(node):
            yield from walk_graphs(sub, f"{scope}/{node.name}/{attr_name}".lstrip("/"))


def node_scopes(graph: onnx.GraphProto) -> dict[str, str]:
    """The scope (see :func:`walk_graphs`) of every named node, ``""`` for the main graph's."""
    return {n.name: scope for scope, g in walk_graphs(graph) for n in g.node}


def outer_names(graph: onnx.GraphProto) -> set[str]:
    """Names a subgraph reads from its enclosing scope (values captured from outside)."""
    defined = {i.name for i in graph.input} | {t.name for t in graph.initializer}
    used = set()
    for node in graph.node:
        for inp in node.input:
            if inp and inp not in defined:
                used.add(inp)
        for sub in subgraphs(node):
            used |= outer_names(sub) - defined
        defined.update(o for o in node.output if o)
    return used


#: Initializer values up to this size are kept by :meth:`GraphIndex.array` for the next call.
CACHE_BYTES = 16 << 20


class GraphIndex:
    """Producer/consumer maps and constant weights of a graph, for read-only queries.

    A tensor read inside a node's subgraph counts as consumed by that node; with ``deep``, the nodes of
    If/Loop/Scan bodies are indexed themselves instead (a tensor read in a body is consumed by the body's
    node that reads it, a body's node produces its outputs)."""

    def __init__(self, graph: onnx.GraphProto, deep: bool = False):
        self.graph = graph
        self.producer: dict[str, onnx.NodeProto] = {}
        self.consumers: dict[str, list[onnx.NodeProto]] = defaultdict(list)
        for node in (walk_nodes(graph) if deep else graph.node):
            for out in node.output:
                if out:
                    self.producer[out] = node
            for inp in node.input:
                if inp:
                    self.consumers[inp].append(node)
            for sub in () if deep else subgraphs(node):
                for name in outer_names(sub):
                    if node not in self.consumers[name]:
                        self.consumers[name].append(node)
        self.initializers = {t.name: t for _, g in (walk_graphs(graph) if deep else [("", graph)])
                             for t in g.initializer}
        self.graph_inputs = [i.name for i in graph.input if i.name not in self.initializers]
        self.graph_outputs = [o.name for o in graph.output]
        self._arrays: dict[str, np.ndarray] = {}
        self._nodes: dict[str, onnx.NodeProto] | None = None

    def is_const(self, name: str) -> bool:
        return name in self.initializers

    def array(self, name: str) -> np.ndarray:
        """The value of initializer ``name`` (not to be modified); kept for the next call unless it is over
        :data:`CACHE_BYTES` (a big weight is read again instead of being held as a second copy of the model)."""
        a = self._arrays.get(name)
        if a is None:
            a = numpy_helper.to_array(self.initializers[name])
            if a.nbytes <= CACHE_BYTES:
                self._arrays[name] = a
        return a

    def node(self, name: str) -> onnx.NodeProto:
        """The node called ``name`` (KeyError if none)."""
        if self._nodes is None:
            self._nodes = {n.name: n for n in walk_nodes(self.graph)}
        return self._nodes[name]

    def single_consumer(self, name: str):
        cons = self.consumers.get(name, [])
        if len(cons) == 1 and name not in self.graph_outputs:
            return cons[0]
        return None

    def tensor_order(self) -> dict[str, int]:
        """Position of every graph input and node output in graph order."""
        order: dict[str, int] = {}
        for i, name in enumerate([*self.graph_inputs, *[o for n in self.graph.node for o in n.output]]):
            order.setdefault(name, i)
        return order


@dataclass(frozen=True)
class InputSpec:
    """A model input: name, element type and shape (None for symbolic or unknown dims)."""

    name: str
    dtype: np.dtype
    shape: tuple

    @property
    def batch_dynamic(self) -> bool:
        return len(self.shape) > 0 and self.shape[0] is None

    @property
    def has_batch_axis(self) -> bool:
        """Whether samples get a batch axis added: a dynamic or size-1 first axis."""
        return bool(self.shape) and (self.shape[0] is None or self.shape[0] == 1)

    def describe(self) -> str:
        return f"{self.name}: {self.dtype} [{', '.join('?' if d is None else str(d) for d in self.shape)}]"


def input_specs(model: onnx.ModelProto) -> list[InputSpec]:
    """The model's inputs that are not initializers, in order."""
    inits = {t.name for t in model.graph.initializer}
    specs = []
    for vi in model.graph.input:
        if vi.name in inits:
            continue
        tt = vi.type.tensor_type
        dtype = np.dtype(helper.tensor_dtype_to_np_dtype(tt.elem_type)) if tt.elem_type else np.dtype(np.float32)
        shape = tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in tt.shape.dim)
        specs.append(InputSpec(vi.name, dtype, shape))
    return specs
