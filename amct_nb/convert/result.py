"""What a conversion produced: :class:`ConvertResult` (a QuantResult whose report has a
``conversion`` section) and the measurements that fill it.

* saturation risk: per layer, the adjacent same-signed int8 weight pairs over the limit in the
  kernel's reduction order (``quant.guard.pairs_over_limit``), whether this CPU's int8 kernels
  saturate, and how many pairs the guard adjusted;
* bias requantization: the int32 bias at ``scale_d * scale_w`` (as AMCT does) against the QAT
  model's bias, ``max |b - round(b / s) * s|`` per layer (no data needed), and how many of the
  model's own int32 bias values changed;
* outputs: cosine / SQNR / max error (and top-1 agreement for [N, classes] outputs) of the
  fake-quant and deploy models against the QAT model itself, on feeds when some are given.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import numpy as np
import onnx

from ..analysis import cosine, sqnr_db
from ..export import QuantPlan
from ..ir import GraphIndex, lean_options, make_session
from ..ops import OPS
from ..ptq import QuantResult
from ..quant import int8_saturates
from ..quant.guard import pairs_over_limit
from .grids import QatConst

__all__ = ["ConvertResult", "saturation_risk", "bias_requantization", "output_agreement"]


@dataclass
class ConvertResult(QuantResult):
    """A QuantResult from a converted QAT/QDQ model; :meth:`report` adds ``conversion``, which
    :meth:`save` writes into ``<prefix>_report.json`` with the rest."""

    conversion: dict = field(default_factory=dict)

    @classmethod
    def of(cls, result: QuantResult, conversion: dict) -> ConvertResult:
        return cls(**{f.name: getattr(result, f.name) for f in fields(QuantResult)}, conversion=conversion)

    def report(self) -> dict:
        rep = super().report()
        rep["conversion"] = self.conversion
        return rep


def saturation_risk(model: onnx.ModelProto, int_weights: dict[str, np.ndarray], plan: QuantPlan) -> dict:
    """Per layer with QAT integers: pairs a saturating u8*s8 kernel would get wrong, and pairs adjusted."""
    idx = GraphIndex(model.graph)
    layers, total, checked = {}, 0, 0
    for name, q in int_weights.items():
        node = idx.node(name)
        rows = OPS[node.op_type].kernel_rows(node, q)
        if rows is None:  # depthwise: ONNX Runtime's kernel accumulates in int32
            continue
        checked += 1
        n = pairs_over_limit(rows)
        adjusted = plan.layers[name].pairs_fixed if name in plan.layers else 0
        if n or adjusted:
            layers[name] = {"pairs_over_limit": n, "pairs_adjusted": adjusted}
        total += n
    sat = int8_saturates()
    return {
        "this_cpu_saturates": sat,
        "guard": plan.guard,
        "layers_checked": checked,
        "pairs_over_limit": total,
        "pairs_adjusted": plan.pairs_fixed,
        "uint8_weight_layers": plan.uint8_layers,
        "layers": layers,
        "advice": _advice(sat, total, plan),
    }


def _advice(sat: bool, total: int, plan: QuantPlan) -> str:
    if total == 0:
        return "no weight pair can saturate an int8 kernel: the QAT weights are exact on every CPU"
    if plan.uint8_layers and not plan.pairs_fixed:
        return (f"{total} weight pair(s) exceed |a|+|b| = 128 in {len(plan.uint8_layers)} layer(s), stored as uint8 "
                "(zero point 128): the same QAT integers, exact on every x86 CPU (ONNX Runtime's u8 x u8 kernels)")
    if plan.pairs_fixed:
        return (f"{plan.pairs_fixed} pair(s) moved to |a|+|b| <= 128 so that CPUs without VNNI compute them "
                "exactly (saturation_guard); the QAT scales are kept, so each moved pair loses accuracy: compare the "
                "outputs (feeds=), and if they suffer, use saturation_guard='always' (uint8 weights, the same "
                "integers)")
    where = ("this CPU's int8 kernels saturate (no VNNI): the deploy model computes them wrongly here"
             if sat else "this CPU does not saturate, but x86 CPUs without VNNI (AVX2 only) would")
    return (f"{total} weight pair(s) exceed |a|+|b| = 128: {where}; saturation_guard='always' stores those layers "
            "as uint8 weights (same integers, exact everywhere), 'auto' does so only on a CPU that saturates")


def bias_requantization(model: onnx.ModelProto, plan: QuantPlan, consts: dict[str, QatConst]) -> dict:
    """``max |b - b_q * s_b|`` per layer, with ``s_b = scale_d * scale_w``; and, where the QAT model
    stored an int32 bias, how many of its integers the requantization changed."""
    idx = GraphIndex(model.graph)
    layers, worst = {}, 0.0
    for name, lq in plan.layers.items():
        if lq.b_q is None:
            continue
        b = idx.array(lq.bias).astype(np.float64).reshape(-1)
        bq = lq.b_q.reshape(-1)
        b = np.broadcast_to(b, bq.shape) if b.size == 1 else b
        err = float(np.abs(b - bq.astype(np.float64) * lq.b_scale.reshape(-1).astype(np.float64)).max())
        entry = {"max_abs_error": err, "max_abs_bias": float(np.abs(b).max()), "source": "float bias"}
        src = consts.get(lq.bias)
        if src is not None:
            entry["source"] = f"{src.dtype} DequantizeLinear"
            if src.q.size == bq.size:
                entry["integers_changed"] = int((src.q.reshape(-1) != bq).sum())
        layers[name] = entry
        worst = max(worst, err)
    return {"max_abs_error": worst, "layers": layers}


def _run(model: onnx.ModelProto, feeds: list[dict], names: list[str]) -> list[np.ndarray]:
    s = make_session(model, options=lean_options())
    outs = [s.run(names, f) for f in feeds]
    return [np.concatenate([o[j] for o in outs]) for j in range(len(names))]


def output_agreement(source: onnx.ModelProto, fake: onnx.ModelProto, deploy: onnx.ModelProto,
                     feeds: list[dict]) -> dict:
    """The converted models' outputs against the QAT model's on ``feeds`` (same ONNX Runtime)."""
    names = [o.name for o in source.graph.output]
    ref = _run(source, feeds, names)
    res: dict = {"samples": int(sum(next(iter(f.values())).shape[0] for f in feeds)) if feeds else 0}
    for kind, m in (("fake_quant", fake), ("deploy", deploy)):
        got = _run(m, feeds, names)
        per = {}
        for n, x, y in zip(names, ref, got):
            x64, y64 = x.astype(np.float64), y.astype(np.float64)
            e = {"cosine": cosine(x64, y64), "sqnr_db": sqnr_db(x64, y64),
                 "max_abs_error": float(np.abs(x64 - y64).max()) if x.size else 0.0}
            if x.ndim == 2 and x.shape[1] > 1:
                e["top1_agreement"] = float((x.argmax(1) == y.argmax(1)).mean())
            per[n] = e
        res[kind] = per
    return res
