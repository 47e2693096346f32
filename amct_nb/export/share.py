"""Store identical constants once: the int8 copies of a shared weight, and the DequantizeLinear nodes
that read them.

Preparation gives each layer that shares a weight its own copy (:mod:`amct_nb.passes.unshare`), so each
use is quantized with its own activation grid; the weight quantizes to the same integers and scales for
every use, so the exports merge the byte-identical initializers back into one and the identical
DequantizeLinear nodes into one that feeds every user (ONNX Runtime gives each fused int8 kernel its own
copy of the node when it optimizes the graph, so the kernels still fuse). Only tensors of at least
``MIN_ELEMENTS`` values are merged: weights, not the scalar scales of unrelated tensors.
"""

from __future__ import annotations

import collections
import hashlib
import math

import onnx

from ..ir import keep_only, walk_nodes

__all__ = ["share_identical", "MIN_ELEMENTS"]

MIN_ELEMENTS = 64


def _value_keys(g: onnx.GraphProto) -> dict[str, tuple]:
    """Initializer name -> (dtype, dims, digest of the bytes), for the initializers whose dtype, dims and
    size another one shares (only those can be equal, so only those are hashed)."""
    def shape(t):
        return t.data_type, tuple(t.dims), len(t.raw_data)

    inline = [t for t in g.initializer if t.raw_data and t.data_location != onnx.TensorProto.EXTERNAL]
    count = collections.Counter(shape(t) for t in inline)
    return {t.name: (*shape(t), hashlib.sha256(t.raw_data).hexdigest()) for t in inline if count[shape(t)] > 1}


def share_identical(model: onnx.ModelProto) -> int:
    """Merge byte-identical initializers (>= MIN_ELEMENTS values) and then DequantizeLinear nodes with
    the same inputs, in place; returns how many initializers were merged away."""
    g = model.graph
    keys = _value_keys(g)
    first: dict[tuple, str] = {}
    rename: dict[str, str] = {}
    for t in g.initializer:
        k = keys.get(t.name)
        if k is None or math.prod(t.dims) < MIN_ELEMENTS:
            continue
        if k in first:
            rename[t.name] = first[k]
        else:
            first[k] = t.name
    if not rename:
        return 0
    protected = {i.name for i in g.input} | {o.name for o in g.output}
    rename = {a: b for a, b in rename.items() if a not in protected}
    keep_only(g.initializer, lambda t: t.name not in rename)  # in place: the kept weights are not copied
    _rename_inputs(g, rename)
    # DequantizeLinear nodes that now read the same values (weight, scales, zero points): one feeds every user
    inits = {t.name: keys.get(t.name, t.name) for t in g.initializer}
    seen: dict[tuple, str] = {}
    out_rename: dict[str, str] = {}
    drop = set()
    for i, n in enumerate(g.node):
        if n.op_type != "DequantizeLinear" or not all(x in inits for x in n.input if x) or n.output[0] in protected:
            continue
        k = (tuple(inits[x] if x else "" for x in n.input), tuple(a.SerializeToString() for a in n.attribute))
        if k in seen:
            out_rename[n.output[0]] = seen[k]
            drop.add(i)
        else:
            seen[k] = n.output[0]
    if drop:
        nodes = [n for i, n in enumerate(g.node) if i not in drop]
        del g.node[:]
        g.node.extend(nodes)
        _rename_inputs(g, out_rename)
        kept = [v for v in g.value_info if v.name not in out_rename]
        del g.value_info[:]
        g.value_info.extend(kept)
        used = _read(g) | protected  # the dropped nodes' scales and zero points
        keep_only(g.initializer, lambda t: t.name in used)
    return len(rename)


def _rename_inputs(g: onnx.GraphProto, rename: dict[str, str]) -> None:
    for n in walk_nodes(g):  # names captured by If / Loop bodies too
        for j, x in enumerate(n.input):
            if x in rename:
                n.input[j] = rename[x]


def _read(g: onnx.GraphProto) -> set[str]:
    return {x for n in walk_nodes(g) for x in n.input if x}
