"""Compact storage of few-level int8 weights: bit-packed indices plus a codebook, expanded at load.

A non-uniform (NUQ) layer's int8 weights take at most 16 or 32 values, yet the deploy model stores
8 bits for each. :func:`compact_weights` stores every such initializer as ``ceil(log2(levels))``-bit
indices packed eight to a group of bytes, with its codebook of int8 values, and puts in front of the
graph the nodes that expand them (Cast, MatMul, Div, Mod, Reshape, Slice, Gather: integer ops of
opset 13, so the model's opset does not change). Every input of those nodes is a constant, so ONNX
Runtime folds them when it loads the model: the session holds the same int8 initializers feeding the
same DequantizeLinear nodes, fuses them into the same int8 kernels and computes bit-identical outputs
(measured in benchmarks/NUQ.md, with the load time). ONNX's own 4-bit types would need opset 21 and
cover 16 levels only.
"""

from __future__ import annotations

import math

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ..errors import ModelError

__all__ = ["compact_weights", "packed_bits"]

_GROUP = 8  # indices per packed group: b bits each fill exactly b bytes


def packed_bits(levels: int) -> int:
    """Bits per index for ``levels`` distinct values (8: not worth packing)."""
    return max(1, math.ceil(math.log2(max(levels, 2))))


def _pack(idx: np.ndarray, bits: int) -> np.ndarray:
    """Indices (< 2**bits) as uint8 [groups, bits]: eight indices per ``bits`` bytes, little-endian."""
    flat = idx.reshape(-1).astype(np.int64)
    flat = np.concatenate([flat, np.zeros((-flat.size) % _GROUP, np.int64)]).reshape(-1, _GROUP)
    v = (flat << (bits * np.arange(_GROUP, dtype=np.int64))).sum(axis=1)
    return ((v[:, None] >> (8 * np.arange(bits, dtype=np.int64))) & 255).astype(np.uint8)


def _unpack_nodes(name: str, packed: str, shape: tuple, count: int, bits: int, codebook: str, consts: dict):
    """Nodes computing initializer ``name`` (int8 ``shape``) from ``packed`` and ``codebook``."""
    def const(key, arr):
        consts[f"{name}_compact_{key}"] = np.asarray(arr)
        return f"{name}_compact_{key}"

    t = lambda key: f"{name}_compact_{key}"  # noqa: E731
    return [
        helper.make_node("Cast", [packed], [t("i64")], to=onnx.TensorProto.INT64),
        helper.make_node("MatMul", [t("i64"), const("bytes", (256 ** np.arange(bits, dtype=np.int64))[:, None])],
                         [t("word")]),
        helper.make_node("Div", [t("word"), const("shift", (2 ** (bits * np.arange(_GROUP, dtype=np.int64)))[None])],
                         [t("shifted")]),
        helper.make_node("Mod", [t("shifted"), const("mod", np.array(2 ** bits, np.int64))], [t("groups")]),
        helper.make_node("Reshape", [t("groups"), const("flat", np.array([-1], np.int64))], [t("all")]),
        helper.make_node("Slice", [t("all"), const("start", np.array([0], np.int64)),
                                   const("stop", np.array([count], np.int64))], [t("idx")]),
        helper.make_node("Reshape", [t("idx"), const("shape", np.array(shape, np.int64))], [t("idx_shaped")]),
        helper.make_node("Gather", [codebook, t("idx_shaped")], [name], axis=0),
    ]


def compact_weights(model: onnx.ModelProto, max_levels: int = 32, min_saving: int = 1024
                    ) -> tuple[onnx.ModelProto, int]:
    """A copy of a deploy ``model`` with every int8 (or uint8) initializer that feeds only DequantizeLinear nodes
    and takes at most ``max_levels`` (<= 128) distinct values stored packed (see the module docstring);
    returns (model, number of initializers packed). An initializer stays as it is unless packing saves
    at least ``min_saving`` bytes (the expanding nodes and constants take about 600)."""
    if not 2 <= max_levels <= 128:
        raise ModelError(f"max_levels {max_levels}: give 2..128 (more than 128 levels need 8 bits: nothing to gain)")
    if not any(o.domain in ("", "ai.onnx") and o.version >= 13 for o in model.opset_import):
        raise ModelError("compact weights need a model of opset 13 or later (amct-nb's deploy models are)")
    out = onnx.ModelProto()
    out.CopyFrom(model)
    g = out.graph
    users: dict[str, list[str]] = {}
    for n in g.node:
        for i in n.input:
            users.setdefault(i, []).append(n.op_type)
    graph_inputs = {i.name for i in g.input}
    keep, nodes, consts, packed_count = [], [], {}, 0
    for t in g.initializer:
        ops = users.get(t.name, [])
        if (t.data_type not in (onnx.TensorProto.INT8, onnx.TensorProto.UINT8) or t.name in graph_inputs or not ops
                or any(o != "DequantizeLinear" for o in ops)):
            keep.append(t)
            continue
        a = numpy_helper.to_array(t)
        levels = np.unique(a)
        bits = packed_bits(levels.size)
        if levels.size > max_levels or bits >= 8 or a.size * (8 - bits) // 8 < min_saving:
            keep.append(t)
            continue
        idx = np.searchsorted(levels, a)
        packed, book = f"{t.name}_compact_packed", f"{t.name}_compact_codebook"
        consts[packed] = _pack(idx, bits)
        consts[book] = levels.astype(a.dtype)  # int8, or uint8 q + 128 (the uint8 saturation guard)
        nodes += _unpack_nodes(t.name, packed, a.shape, a.size, bits, book, consts)
        packed_count += 1
    if not packed_count:
        return out, 0
    del g.initializer[:]
    g.initializer.extend(keep)
    g.initializer.extend(numpy_helper.from_array(v, k) for k, v in consts.items())
    rest = list(g.node)
    del g.node[:]
    g.node.extend(nodes + rest)
    return out, packed_count
