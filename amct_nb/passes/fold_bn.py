"""Fold BatchNormalization into the Conv / ConvTranspose / Gemm that feeds it.

For output channel c with BN parameters gamma, beta, mean, var and epsilon eps::

    k_c  = gamma_c / sqrt(var_c + eps)
    W'_c = W_c * k_c
    b'_c = (b_c - mean_c) * k_c + beta_c

so that ``BN(Conv(x, W, b)) == Conv(x, W', b')`` up to float rounding.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ..ir import GraphIndex, attr, keep_only, walk_nodes
from .base import BN_FOLDED, Change

__all__ = ["fold_batchnorm", "FOLDABLE"]

FOLDABLE = ("Conv", "ConvTranspose", "Gemm")


def _set_attr(node, name, value):
    for i, a in enumerate(node.attribute):
        if a.name == name:
            del node.attribute[i]
            break
    node.attribute.append(helper.make_attribute(name, value))


def _why_not(idx: GraphIndex, node, bn, skip: set[str]) -> str | None:
    if node.name in skip or bn.name in skip:
        return "listed in skip_fusion_layers"
    if int(attr(bn, "training_mode", 0)) != 0 or len([o for o in bn.output if o]) != 1:
        return "BatchNormalization is in training mode"
    if not all(idx.is_const(n) for n in bn.input[1:5]):
        return "BatchNormalization parameters are not constant"
    if len(node.input) < 2 or not idx.is_const(node.input[1]):
        return "weight is not constant"
    if len(node.input) > 2 and node.input[2] and not idx.is_const(node.input[2]):
        return "bias is not constant"
    if idx.single_consumer(node.output[0]) is not bn:
        return "the layer's output has other consumers"
    if node.op_type == "Gemm":
        if int(attr(node, "transA", 0)) != 0:
            return "Gemm with transA=1"
        if (len(node.input) > 2 and node.input[2] and idx.array(node.input[2]).ndim > 1
                and idx.array(node.input[2]).shape[0] != 1):
            return "Gemm bias is not per output channel"
    return None


def fold_batchnorm(model: onnx.ModelProto, skip_layers=()) -> tuple[onnx.ModelProto, list[Change]]:
    """Fold each foldable BatchNormalization into its producer; returns (model, notes).

    Each fold is a :class:`Change` of kind ``BN_FOLDED`` (``node``: the BatchNormalization,
    ``target``: the layer), each refusal one of kind ``"bn_not_folded"`` with the reason. A model with no
    BatchNormalization after such a layer is returned itself.
    """
    made = {o: n for n in model.graph.node for o in n.output if o}
    if not any(bn.op_type == "BatchNormalization" and bn.domain in ("", "ai.onnx") and bn.input
               and bn.input[0] in made and made[bn.input[0]].op_type in FOLDABLE
               and made[bn.input[0]].domain in ("", "ai.onnx") for bn in model.graph.node):
        return model, []
    out = onnx.ModelProto()
    out.CopyFrom(model)
    g = out.graph
    idx = GraphIndex(g)
    skip = set(skip_layers)
    uses = {}
    for n in walk_nodes(g):  # If/Loop bodies read the main graph's initializers too
        for i in n.input:
            uses[i] = uses.get(i, 0) + 1
    notes, removed = [], set()
    new_inits: dict[str, onnx.TensorProto] = {}
    for bn in list(g.node):
        if bn.op_type != "BatchNormalization" or bn.domain not in ("", "ai.onnx"):
            continue
        node = idx.producer.get(bn.input[0])
        if node is None or node.op_type not in FOLDABLE or node.domain not in ("", "ai.onnx"):
            continue
        reason = _why_not(idx, node, bn, skip)
        if reason:
            notes.append(Change("bn_not_folded", f"BN {bn.name or bn.output[0]} not folded into {node.name}: {reason}",
                                bn.name or bn.output[0], node.name))
            continue
        gamma, beta, mean, var = (idx.array(n).astype(np.float64) for n in bn.input[1:5])
        eps = float(attr(bn, "epsilon", 1e-5))
        k = gamma / np.sqrt(var + eps)
        w = idx.array(node.input[1]).astype(np.float64)
        cout = k.shape[0]
        if node.op_type == "Conv":
            wf = w * k.reshape((-1,) + (1,) * (w.ndim - 1))
        elif node.op_type == "ConvTranspose":
            group = int(attr(node, "group", 1))
            cin, cout_g = w.shape[0], w.shape[1]
            gi = np.arange(cin) // (cin // group)
            ch = gi[:, None] * cout_g + np.arange(cout_g)[None, :]
            wf = w * k[ch].reshape((cin, cout_g) + (1,) * (w.ndim - 2))
        else:  # Gemm
            alpha = float(attr(node, "alpha", 1.0))
            wf = w * alpha * (k[None, :] if int(attr(node, "transB", 0)) == 0 else k[:, None])
            _set_attr(node, "alpha", 1.0)
        if len(node.input) > 2 and node.input[2]:
            b = idx.array(node.input[2]).astype(np.float64).reshape(-1)
            if node.op_type == "Gemm":
                b = b * float(attr(node, "beta", 1.0))
            b = np.broadcast_to(b, (cout,))
        else:
            b = np.zeros(cout)
        if node.op_type == "Gemm":
            _set_attr(node, "beta", 1.0)
        bf = (b - mean) * k + beta
        wname = _fresh(node.input[1], uses, new_inits, idx)
        bname = _fresh(node.input[2] if len(node.input) > 2 and node.input[2] else node.name + "_bias",
                       uses, new_inits, idx)
        new_inits[wname] = numpy_helper.from_array(wf.astype(idx.array(node.input[1]).dtype), wname)
        new_inits[bname] = numpy_helper.from_array(bf.astype(np.float32), bname)
        while len(node.input) < 3:
            node.input.append("")
        node.input[1], node.input[2] = wname, bname
        node.output[0] = bn.output[0]
        removed.add(id(bn))
        notes.append(Change(BN_FOLDED, f"BN {bn.name or bn.output[0]} folded into {node.name}", bn.name or bn.output[0],
                            node.name))
    if not removed:
        return out, notes
    keep = [n for n in g.node if id(n) not in removed]
    del g.node[:]
    g.node.extend(keep)
    used = {i for n in walk_nodes(g) for i in n.input} | {o.name for o in g.output}
    keep_only(g.initializer, lambda t: t.name not in new_inits and t.name in used)  # in place: no copy
    g.initializer.extend(new_inits[k] for k in sorted(new_inits))
    # value_info of the folded layers' old outputs is stale now
    stale = {vi.name for vi in g.value_info} - {o for n in g.node for o in n.output}
    keep_vi = [vi for vi in g.value_info if vi.name not in stale]
    del g.value_info[:]
    g.value_info.extend(keep_vi)
    return out, notes


def _fresh(name: str, uses: dict, new_inits: dict, idx: GraphIndex) -> str:
    """Reuse a weight's name when only this layer reads it, else make a new name."""
    if name in idx.initializers and uses.get(name, 0) <= 1 and name not in new_inits:
        return name
    base, i = name + "_bnfold", 0
    cand = base
    while cand in idx.initializers or cand in new_inits:
        i += 1
        cand = f"{base}{i}"
    return cand
