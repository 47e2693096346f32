"""The fallback ladder: what stays float keeps int8 weights where the outputs can afford it.

A layer whose activations cannot be int8 (the safety net's checks, a float input, a bias that would
overflow, a weight some non-layer also reads) need not be float altogether: its weight can still be
stored as int8 with one scale per output channel and dequantized in front of the float op
(weight-only, :mod:`amct_nb.export.weight_only`). The same holds for embedding tables (the constant
table of a Gather, one scale per row) and the weights of LSTM/GRU/RNN layers. Each such weight is a
step down the ladder: int8 layer -> int8 weights only -> float.

Weight-only needs the output check (calibration samples, the safety net on): the weights are measured
on the gated model (one session, every subset by its gates): if the outputs lose more than
:data:`LADDER_MARGIN_DB` of SQNR while over :data:`CLEAN_DB` (or fall under the output target), the most
harmful weights stay float
(each weight's harm alone, then a binary search on how many to leave float). The weights of layers in an
If branch or Loop body that never ran on the calibration data are stored int8 unmeasured (per-channel
int8 weights with float activations, as weight-only quantizers store them without data): the ladder's
``not_measured`` lists them.
"""

from __future__ import annotations

import numpy as np
import onnx

from ..analysis import GatedSession, fallback_search, first_samples, harm_of
from ..config import QuantConfig
from ..export import QuantPlan, Unit, WeightOnly, units_of
from ..ir import GraphIndex, is_large, make_session, node_scopes, walk_nodes
from ..ops import OPS, Layer
from ..quant.grid import quantize_weight
from ..quant.guard import pairs_over_limit
from ..reasons import Code

__all__ = ["weight_only_candidates", "choose_weight_only", "LADDER_CODES", "LADDER_MARGIN_DB", "CLEAN_DB",
           "MIN_WEIGHTS", "MIN_STEM_SHARE"]

#: Why a layer stayed float, for which its weight may still be int8: its activations cannot or should not be
#: int8 (the safety net, a float input, the stem rule: a first layer over one to three channels, an If branch
#: or Loop body that never ran in calibration, ...). Not: the user's own choices, a weight that is not
#: float32, a layer missing from a record.
LADDER_CODES = frozenset({Code.INPUT_FLOAT, Code.BIAS_OVERFLOW, Code.NO_STATS, Code.EMPTY, Code.TENSOR_CHECK,
                          Code.CHANNEL_CHECK, Code.OUTPUT_CHECK, Code.SHARED_WEIGHT, Code.UNSUPPORTED,
                          Code.STEM, Code.SUBGRAPH})

#: The weight-only weights may cost the outputs at most this much SQNR (dB) on the calibration samples ...
LADDER_MARGIN_DB = 1.0
#: ... or bring them down to this SQNR (dB; cosine ~0.9995), whichever allows more, never under the
#: output target: outputs that clean pass every task check of the real-model set.
CLEAN_DB = 30.0

#: Smaller weights stay float (a DequantizeLinear and its scales would outweigh the saving).
MIN_WEIGHTS = 256
#: A stem (the first layer, the most sensitive) takes the step only where its weights are at least this share
#: of the model's float weights (an STFT over raw audio: 3-21% of a VAD; an image stem, 0.07% of
#: EfficientNet-Lite0, would cost its logits 1.2 dB for 2.6 kB)
MIN_STEM_SHARE = 0.01

_RECURRENT = ("LSTM", "GRU", "RNN")


def _readers(model: onnx.ModelProto) -> dict[str, list[str]]:
    """Readers of each tensor, If/Loop/Scan bodies' nodes included (a body reads the main graph's weights;
    the DequantizeLinear of a weight-only weight sits in the main graph, where every body sees it)."""
    readers: dict[str, list[str]] = {}
    for n in walk_nodes(model.graph):
        for i in n.input:
            readers.setdefault(i, []).append(n.name)
    return readers


def weight_only_candidates(model: onnx.ModelProto, layers: list[Layer], plan: QuantPlan) -> dict[str, WeightOnly]:
    """Every float32 constant weight that may be stored int8: the weights of the plan's float layers whose
    reason is in :data:`LADDER_CODES`, Gather tables (2-D or more, per row) and LSTM/GRU/RNN weights."""
    idx = GraphIndex(model.graph)
    readers = _readers(model)
    taken = {l.weight for l in plan.layers.values()}
    by_name = {l.name: l for l in layers}
    out: dict[str, WeightOnly] = {}

    def add(w: str, axis: int, kind: str, node: onnx.NodeProto | None = None, op_type: str | None = None) -> None:
        if w in out or w in taken or w not in idx.initializers or not all(readers.get(w, [""])):
            return
        t = idx.initializers[w]
        if t.data_type != onnx.TensorProto.FLOAT or len(t.dims) < 2 or int(np.prod(t.dims)) < MIN_WEIGHTS:
            return
        a = idx.array(w).astype(np.float32)
        if not np.all(np.isfinite(a)):
            return
        q, s = quantize_weight(a, axis % a.ndim, bits=8)
        storage = "int8"
        if node is not None and plan.guard != "none":  # ONNX Runtime may fuse it into an int8 kernel: guard it
            rows = OPS[op_type].kernel_rows(node, q)
            if rows is not None and pairs_over_limit(rows):
                storage = "uint8"
        out[w] = WeightOnly(w, axis % a.ndim, q.astype(np.int8), np.asarray(s, np.float32).reshape(-1),
                            tuple(readers.get(w, ())), kind, storage)

    total = sum(int(np.prod(t.dims)) for t in idx.initializers.values() if t.data_type == onnx.TensorProto.FLOAT)
    for name, why in plan.float_layers.items():
        l = by_name.get(name)
        if l is None or getattr(why, "code", None) not in LADDER_CODES or l.weight not in idx.initializers:
            continue
        if why.code == Code.STEM and int(np.prod(idx.initializers[l.weight].dims)) < MIN_STEM_SHARE * total:
            continue
        node = idx.node(name)
        axis = l.channel_axis if l.channel_axis is not None else OPS[l.op_type].channel_axis(node, idx.array(l.weight))
        add(l.weight, axis, "layer", node, l.op_type)
    for n in walk_nodes(model.graph):
        if n.op_type == "Gather" and n.input and n.input[0] in idx.initializers:
            axis = next((a.i for a in n.attribute if a.name == "axis"), 0)
            if axis == 0:  # rows are what a Gather on axis 0 picks: one scale per row
                add(n.input[0], 0, "embedding")
        elif n.op_type in _RECURRENT:
            for w in n.input[1:3]:  # W and R: [directions, gates * hidden, inputs]
                add(w, 1, "recurrent")
    return out


def choose_weight_only(model: onnx.ModelProto, layers: list[Layer], plan: QuantPlan, cfg: QuantConfig,
                       samples: list[dict]) -> tuple[dict[str, WeightOnly], dict]:
    """The weight-only weights to keep (see the module docstring) and what was measured."""
    if not cfg.weight_only_fallback:
        return {}, {}
    cands = weight_only_candidates(model, layers, plan)
    info: dict = {"candidates": len(cands)}
    if not cands:
        return {}, info
    if not samples or cfg.min_output_sqnr_db is None or not cfg.safety_net or is_large(model):
        info.update(checked=False, skipped="weight-only needs the output check (calibration samples, safety_net on, "
                                           "min_output_sqnr_db set, a model under 2 GB): every candidate stays float")
        return {}, info
    blind = _never_ran(model, cands, first_samples(samples, 8))
    if blind:  # read only in If branches / Loop bodies that never ran: the check below cannot see them
        info["not_measured"] = blind
    trial = QuantPlan(plan.tensors, plan.layers, plan.float_layers, plan.float_tensors, plan.guard, cands)
    units = units_of(plan)
    wunits = [Unit("weight", w, ()) for w in cands]
    gs = GatedSession(model, trial, units + wunits)
    if not gs.outputs:
        info.update(checked=False, skipped="no float outputs to measure: every candidate stays float")
        return {}, info
    few, many = first_samples(samples, 2), first_samples(samples, 8)
    base = np.concatenate([np.ones(len(units), np.float32), np.zeros(len(wunits), np.float32)])
    allon = np.ones(len(units) + len(wunits), np.float32)
    before = gs.output_sqnr(base, many)
    floor = max(cfg.min_output_sqnr_db, min(before - LADDER_MARGIN_DB, CLEAN_DB))
    after = gs.output_sqnr(allon, many)
    info.update(before_sqnr_db=_r(before), floor_db=_r(floor), checked=True)
    if after >= floor:
        info.update(after_sqnr_db=_r(after), left_float=[])
        return cands, info
    # each weight's harm alone (on top of the plan), then the fewest most harmful to leave float
    groups = [[len(units) + i] for i in range(len(wunits))]
    harm = harm_of(groups, len(allon), lambda g: gs.output_sqnr(np.maximum(g, base), few))
    order = sorted(range(len(wunits)), key=lambda i: harm[i])  # lowest SQNR (most harmful) first

    def passes(k: int) -> tuple[bool, float]:
        gates = allon.copy()
        for i in order[:k]:
            gates[len(units) + i] = 0
        s = gs.output_sqnr(gates, many)
        return s >= floor, s

    k, best = fallback_search(len(wunits), passes)
    dropped = {wunits[i].name for i in order[:k]}
    info.update(after_sqnr_db=_r(best if k < len(wunits) else before), left_float=sorted(dropped))
    return {w: wo for w, wo in cands.items() if w not in dropped}, info


def _never_ran(model: onnx.ModelProto, cands: dict[str, WeightOnly], samples: list[dict]) -> list[str]:
    """The candidates whose readers all sit in If branches / Loop bodies that ran on none of ``samples``
    (one float run, each such reader's first output routed out: empty where its body did not run)."""
    scopes = node_scopes(model.graph)
    idx = GraphIndex(model.graph)
    probe = {u: next((o for o in idx.node(u).output if o), "") for wo in cands.values() for u in wo.users
             if scopes.get(u)}
    probe = {u: o for u, o in probe.items() if o}
    if not probe or not samples:
        return []
    names = sorted(set(probe.values()))
    sess = make_session(model, outputs=names)
    out = [o.name for o in sess.get_outputs()]
    ran = set()
    for feed in samples:
        for name, v in zip(out, sess.run(out, feed), strict=True):
            if name in names and np.asarray(v).size:
                ran.add(name)
    return sorted(w for w, wo in cands.items()
                  if wo.users and all(u in probe and probe[u] not in ran for u in wo.users))


def _r(x: float):
    return None if not np.isfinite(x) else round(float(x), 2)

