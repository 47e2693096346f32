"""Turn weights held in ``Constant`` nodes, or computed from constants by shape ops, into graph initializers."""

from __future__ import annotations

from collections import Counter

import numpy as np
import onnx
from onnx import numpy_helper

from ..ir import keep_only, walk_graphs, walk_nodes
from .base import Change

__all__ = ["constants_to_initializers", "fold_weight_chains"]


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


def _movable(node: onnx.NodeProto, graph_outputs: set[str]) -> bool:
    """A Constant node of a value :func:`_constant_value` reads, not a graph output."""
    return (node.op_type == "Constant" and node.domain in ("", "ai.onnx") and node.output[0] not in graph_outputs
            and any(a.name in ("value", "value_float", "value_floats", "value_int", "value_ints")
                    for a in node.attribute))


def constants_to_initializers(model: onnx.ModelProto) -> tuple[onnx.ModelProto, list[Change]]:
    """Move every ``Constant`` node into ``graph.initializer`` of the main graph, those of If/Loop/Scan
    bodies too, and the bodies' own initializers (a body reads the main graph's names).

    Weights exported as Constant nodes (tf2onnx, old PyTorch, inlined functions, every weight of a branch
    of an If) then look like every other weight, so they are found, quantized and stored as int8 like
    the rest; a body's layers then read their weights from the main graph like any captured value."""
    if not any(_movable(n, set()) for n in walk_nodes(model.graph)) and \
            not any(len(g.initializer) for scope, g in walk_graphs(model.graph) if scope):
        return model, []
    out = onnx.ModelProto()
    out.CopyFrom(model)
    main = out.graph
    moved, hoisted = [], 0
    for scope, g in reversed(list(walk_graphs(main))):  # bodies before the graphs holding them (rebuilt below)
        keep_out = {o.name for o in g.output}
        if scope:
            for t in g.initializer:
                main.initializer.append(t)
            hoisted += len(g.initializer)
            keep_only(g.initializer, lambda t: False)
        keep = []
        for node in g.node:
            if _movable(node, keep_out):
                value = _constant_value(node)
                if value is not None:
                    main.initializer.append(numpy_helper.from_array(value, node.output[0]))
                    moved.append(node.output[0])
                    continue
            keep.append(node)
        if len(keep) != len(g.node):
            del g.node[:]
            g.node.extend(keep)
    if not moved and not hoisted:
        return model, []
    text = f"{len(moved)} Constant node(s) turned into initializers"
    if hoisted:
        text += f"; {hoisted} initializer(s) of If/Loop/Scan bodies moved to the main graph"
    # initializers must not be repeated as graph inputs with conflicting info; value_info is harmless
    return out, [Change("constants_to_initializers", text)]


#: Shape-only ops computed here when every input is a constant (a weight reshaped or transposed for a MatMul).
_FOLDABLE = ("Reshape", "Transpose", "Squeeze", "Unsqueeze", "Flatten", "Identity", "Slice", "Concat")


def _fold(node: onnx.NodeProto, args: list[np.ndarray]) -> np.ndarray | None:
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    x = args[0]
    if node.op_type == "Identity":
        return x
    if node.op_type == "Transpose":
        return np.transpose(x, attrs.get("perm"))
    if node.op_type == "Flatten":
        ax = attrs.get("axis", 1) % (x.ndim + 1) if x.ndim else 0
        return x.reshape(int(np.prod(x.shape[:ax], dtype=np.int64)), -1)
    if node.op_type == "Reshape":
        shape = [int(v) for v in args[1]]
        if not attrs.get("allowzero", 0):
            shape = [x.shape[i] if v == 0 else v for i, v in enumerate(shape)]
        return x.reshape(shape)
    if node.op_type == "Concat":
        return np.concatenate(args, axis=int(attrs["axis"]))
    if node.op_type == "Slice":  # opset >= 10: starts, ends[, axes[, steps]] as inputs
        if len(args) < 3 or len(node.input) > 5:
            return None
        starts, ends = (np.atleast_1d(a).astype(np.int64) for a in args[1:3])
        axes = np.atleast_1d(args[3]).astype(np.int64) if len(args) > 3 else np.arange(len(starts))
        steps = np.atleast_1d(args[4]).astype(np.int64) if len(args) > 4 else np.ones(len(starts), np.int64)
        index = [slice(None)] * x.ndim
        for a, b, e, st in zip(axes, starts, ends, steps, strict=True):
            index[int(a) % x.ndim] = slice(int(b), int(e), int(st))  # numpy clamps as ONNX does
        return x[tuple(index)]
    axes = args[1] if len(args) > 1 else attrs.get("axes")
    if node.op_type == "Squeeze":
        return np.squeeze(x, axis=None if axes is None else tuple(int(a) for a in np.atleast_1d(axes)))
    if node.op_type == "Unsqueeze" and axes is not None:
        out_rank = x.ndim + np.size(axes)
        return np.expand_dims(x, tuple(sorted(int(a) % out_rank for a in np.atleast_1d(axes))))
    return None


def fold_weight_chains(model: onnx.ModelProto) -> tuple[onnx.ModelProto, list[Change]]:
    """Compute Reshape / Transpose / Squeeze / Unsqueeze / Flatten / Identity / Slice / Concat nodes whose
    inputs are all initializers, in the main graph and in If/Loop/Scan bodies, and replace their outputs by
    initializers of the main graph: a weight reshaped or transposed on its way to a MatMul, or an LSTM's
    gates reordered by Slice and Concat, is then a constant the layer can quantize (and a weight read both
    as it is and through such a node is no longer shared)."""
    def foldable(node, inits, graph_io):
        ins = [i for i in node.input if i]
        return (node.op_type in _FOLDABLE and node.domain in ("", "ai.onnx") and ins and len(node.output) == 1
                and all(i in inits and i not in graph_io for i in ins) and node.output[0] not in graph_io)

    g = model.graph
    io = {o.name for _, sg in walk_graphs(g) for o in [*sg.output, *sg.input]}
    names = {t.name for t in g.initializer}
    if not any(foldable(n, names, io) for n in walk_nodes(g)):  # nothing to compute: no copy
        return model, []
    out = onnx.ModelProto()
    out.CopyFrom(model)
    g = out.graph
    inits = {t.name: t for t in g.initializer}
    values: dict[str, np.ndarray] = {}
    folded = []
    made = Counter(o for n in walk_nodes(g) for o in n.output)
    for _, sg in list(walk_graphs(g)):  # the main graph first: a body may read what it computes
        gone = set()
        for k, node in enumerate(sg.node):
            if not foldable(node, inits, io):
                continue
            try:
                args = [values.setdefault(i, numpy_helper.to_array(inits[i])) for i in node.input if i]
                v = _fold(node, args)
            except (ValueError, TypeError, IndexError, KeyError):
                v = None
            if v is None:
                continue
            name = node.output[0]
            if made[name] > 1:  # two branches may make the same name: an initializer of the main graph needs its own
                name = _unique(f"{name}_folded", inits)
                for n in walk_nodes(sg):
                    n.input[:] = [name if i == node.output[0] else i for i in n.input]
            t = numpy_helper.from_array(np.ascontiguousarray(v), name)
            g.initializer.append(t)
            inits[name] = t
            values[name] = v
            folded.append(node.name or node.output[0])
            gone.add(k)
        for k in sorted(gone, reverse=True):  # in place: the bodies stay where they are
            del sg.node[k]
    if not folded:
        return out, []
    used = {i for n in walk_nodes(g) for i in n.input} | io
    keep_only(g.initializer, lambda t: t.name in used)  # in place: the kept weights are not copied
    return out, [Change("fold_weight_chains", f"{len(folded)} shape op(s) on constants computed into initializers: "
                                              + ", ".join(folded[:5]) + ("..." if len(folded) > 5 else ""))]


def _unique(name: str, taken) -> str:
    k = 0
    while f"{name}{k}" in taken:
        k += 1
    return f"{name}{k}"
