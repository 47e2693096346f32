"""Tensors of If/Loop bodies as outputs of the main graph, so one ONNX Runtime run can observe them.

ONNX Runtime returns only the main graph's outputs. :func:`expose` routes a body's tensor out through the
nodes that hold the body, all its values of one run flattened into one 1-D tensor (a Scan body like a Loop's,
with a scan output):

* ``If``: the branch that holds it outputs it flattened, the other branch an empty tensor; the If gets
  one more output (empty when the branch did not run).
* ``Loop``: one more scan output (the flattened values of each iteration, stacked by ONNX Runtime, then
  flattened once more outside); empty when the body never ran. ONNX Runtime stacks scan outputs of one shape
  only: where the values change size between iterations, :class:`ObservingSession` builds the session again
  with a loop-carried ``Concat`` accumulator instead.

Nested bodies pass the result up level by level; the main graph's new output keeps the tensor's own name
(inside, the tensor is renamed). Used on a session's private copy of a model only. A Scan whose values change
size between iterations cannot be observed (its state variables keep their shapes: no accumulator).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

__all__ = ["expose", "ROUTED_OWNERS", "body_paths"]

#: Ops whose bodies' tensors :func:`expose` can route out.
ROUTED_OWNERS = ("If", "Loop", "Scan")


def body_paths(graph: onnx.GraphProto) -> dict[str, list[tuple[onnx.GraphProto, onnx.NodeProto, str]]]:
    """For every name defined inside a body: the (graph, owner node, attribute) steps from the main graph down
    to the body that defines it (names of the main graph are not listed)."""
    where: dict[str, list] = {}

    def scan(g, path):
        if path:
            for i in g.input:
                where.setdefault(i.name, path)
        for n in g.node:
            if path:
                for o in n.output:
                    if o:
                        where.setdefault(o, path)
            for a in n.attribute:
                if a.type == onnx.AttributeProto.GRAPH:
                    scan(a.g, [*path, (g, n, a.name)])

    scan(graph, [])
    return where


def _body(node: onnx.NodeProto, attr: str) -> onnx.GraphProto:
    return next(a.g for a in node.attribute if a.name == attr)


def _rename(g: onnx.GraphProto, old: str, new: str) -> None:
    """``old`` -> ``new`` everywhere in ``g`` and its bodies (inputs, node inputs and outputs, outputs)."""
    for v in (*g.input, *g.output):
        if v.name == old:
            v.name = new
    for n in g.node:
        for i, x in enumerate(n.input):
            if x == old:
                n.input[i] = new
        for i, x in enumerate(n.output):
            if x == old:
                n.output[i] = new
        for a in n.attribute:
            if a.type == onnx.AttributeProto.GRAPH:
                _rename(a.g, old, new)


def _empty(name: str, elem: int) -> onnx.NodeProto:
    arr = np.zeros(0, helper.tensor_dtype_to_np_dtype(elem))
    return helper.make_node("Constant", [], [name], name=f"{name}_Constant", value=numpy_helper.from_array(arr))


def expose(model: onnx.ModelProto, names: list[str], elem_types: dict[str, int] | None = None,
           stack: str = "scan") -> list[str]:
    """Route each body tensor of ``names`` out to a main-graph output of the same name (1-D, see the module
    docstring), in place; returns the names it routed. ``stack="concat"``: Loops gather the values in a
    loop-carried accumulator instead of a scan output (any number of values per iteration, but each iteration
    copies what came before). Raises ValueError for a tensor in the body of another op."""
    where = body_paths(model.graph)
    done = []
    for name in names:
        path = where.get(name)
        if not path:
            continue
        elem = (elem_types or {}).get(name, onnx.TensorProto.FLOAT)
        owner_ops = {n.op_type for _, n, _ in path}
        if not owner_ops <= set(ROUTED_OWNERS):
            raise ValueError(f"tensor '{name}' is inside a {'/'.join(sorted(owner_ops - set(ROUTED_OWNERS)))} body: "
                             "only If, Loop and Scan bodies can be observed")
        _, owner, attr = path[-1]
        body = _body(owner, attr)
        inner, tag = f"{name}__amct_inner", f"{name}__amct"
        _rename(body, name, inner)
        shape = f"{tag}_flat_shape"
        body.node.append(helper.make_node("Constant", [], [shape], name=f"{shape}_Constant",
                                          value=numpy_helper.from_array(np.array([-1], np.int64))))
        cur = f"{tag}_flat"
        body.node.append(helper.make_node("Reshape", [inner, shape], [cur], name=f"{cur}_Reshape"))
        for level in range(len(path) - 1, -1, -1):
            g, owner, attr = path[level]
            body = _body(owner, attr)
            up = name if level == 0 else f"{tag}_up{level}"
            if owner.op_type == "If":
                body.output.append(helper.make_tensor_value_info(cur, elem, ["amct_n"]))
                for a in owner.attribute:
                    if a.type == onnx.AttributeProto.GRAPH and a.name != attr:
                        e = f"{tag}_empty{level}_{a.name}"
                        a.g.node.append(_empty(e, elem))
                        a.g.output.append(helper.make_tensor_value_info(e, elem, ["amct_n"]))
                owner.output.append(up)
            elif stack == "scan" or owner.op_type == "Scan":  # one more scan output (the last output of both)
                scan = f"{tag}_scan{level}"
                body.output.append(helper.make_tensor_value_info(cur, elem, ["amct_n"]))
                owner.output.append(scan)  # [iterations, values per iteration]
                for a in owner.attribute:  # a Scan's per-scan-output attributes, when given
                    if a.name in ("scan_output_axes", "scan_output_directions"):
                        a.ints.append(0)
                g.node.append(helper.make_node("Constant", [], [f"{scan}_shape"], name=f"{scan}_shape_Constant",
                                               value=numpy_helper.from_array(np.array([-1], np.int64))))
                g.node.append(helper.make_node("Reshape", [scan, f"{scan}_shape"], [up], name=f"{scan}_Reshape"))
            else:  # a loop-carried accumulator: Concat(acc, values), any size per iteration (copies grow)
                carried = len(owner.input) - 2
                acc_in, acc_out, init = f"{tag}_acc{level}", f"{tag}_acc{level}_next", f"{tag}_init{level}"
                body.input.append(helper.make_tensor_value_info(acc_in, elem, ["amct_n"]))
                body.node.append(helper.make_node("Concat", [acc_in, cur], [acc_out], name=f"{acc_out}_Concat",
                                                  axis=0))
                body.output.insert(1 + carried, helper.make_tensor_value_info(acc_out, elem, ["amct_n"]))
                g.node.insert(0, _empty(init, elem))
                owner.input.append(init)
                owner.output.insert(carried, up)
            cur = up
        done.append(name)
    return done
