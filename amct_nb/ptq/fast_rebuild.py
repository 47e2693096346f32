"""Rebuild after a settings change without observing the data again, in a fraction of a build.

Turning layers off changes no range and no weight scale when all quantized layers share one
setting (the layer whose settings decide a tensor's range may change, its settings do not): the
kept layers' record entries and the scales of the tensors that stay quantization points go into a
record, and ``build(..., record=...)`` makes the same models a full build makes. Any other
change gets a full :func:`~amct_nb.ptq.pipeline.build` from the same statistics. Where the safety net left
bias correction out of the previous build, the fast path keeps that decision (the record has no corrections).
"""

from __future__ import annotations

from dataclasses import replace

from ..config import QuantConfig
from ..reasons import Code
from ..record import TENSOR_PREFIX, LayerRecord, Record
from .pipeline import build
from .points import quant_points
from .result import QuantResult

__all__ = ["rebuild", "reusable_record"]

#: Global settings whose change always needs a full build.
_GLOBAL = ("skip_layer_types", "activation_offset", "do_fusion", "skip_fusion_layers", "activation_dtype",
           "saturation_guard", "quantize_outputs", "type_overrides", "weight_only_fallback",
           "quantize_activation_matmul", "bias_correction")


def reusable_record(previous: QuantResult, config: QuantConfig) -> Record | None:
    """The record of ``previous`` restricted to what ``config`` keeps quantized, when the only
    change is layers turned off (see the module docstring); None otherwise."""
    pc, p = previous.config, previous.prepared
    if _left_out_bias_correction(previous) and config.bias_correction:
        pc = replace(pc, bias_correction=True)  # the safety net's decision, which the fast path keeps
    if any(getattr(pc, k) != getattr(config, k) for k in _GLOBAL):
        return None
    quantizable = [l for l in p.layers if l.quantizable]
    settings = []
    for l in quantizable:
        a, b = pc.for_layer(l.name, l.op_type), config.for_layer(l.name, l.op_type)
        if replace(a, quant_enable=True) != replace(b, quant_enable=True):
            return None
        if b.quant_enable and not a.quant_enable:
            return None  # turned on: its ranges were never computed
        if b.quant_enable:
            settings.append(replace(b, quant_enable=True))
    if any(x != settings[0] for x in settings):
        return None
    on = [l for l in quantizable
          if l.name in previous.record.layers and config.for_layer(l.name, l.op_type).quant_enable]
    if not on:
        return None
    scales = {}
    for key, r in previous.record.layers.items():
        t = key[len(TENSOR_PREFIX):] if key.startswith(TENSOR_PREFIX) else p.layer(key).activation
        scales.setdefault(t, r)
    rec = Record()
    for l in on:
        rec.layers[l.name] = previous.record.layers[l.name]
    inputs = {l.activation for l in on}
    for t in quant_points(p.model, on, config.quantize_outputs, config.quantize_activation_matmul):
        if t in inputs:
            continue
        if t not in scales:
            return None
        rec.layers[TENSOR_PREFIX + t] = LayerRecord(scale_d=scales[t].scale_d, offset_d=scales[t].offset_d)
    return rec


def _left_out_bias_correction(result: QuantResult) -> bool:
    """Whether the safety net left bias correction out of ``result`` (see ``ptq.pipeline.bias_check_of``)."""
    chk = result.output_check.get("bias_correction") if isinstance(result.output_check, dict) else None
    return bool(chk) and not chk.get("kept", True)


def rebuild(previous: QuantResult, config: QuantConfig) -> tuple[QuantResult, bool]:
    """``config`` applied to the prepared model and statistics of ``previous``: (result, whether
    the fast path reused the previous record)."""
    rec = reusable_record(previous, config)
    if rec is None:
        return build(previous.prepared, config, previous.stats), False
    res = build(previous.prepared, config, previous.stats, record=rec)
    if _left_out_bias_correction(previous):  # the record has no corrections: say why, as the full build did
        res.config = replace(res.config, bias_correction=False)
        res.output_check = {**res.output_check, "bias_correction": previous.output_check["bias_correction"]}
    for name, why in list(res.plan.float_layers.items()):
        # enabled but not in the record: float in the previous result too, for the reason it gave
        if why.code == Code.NOT_IN_RECORD and name in previous.plan.float_layers:
            res.plan.float_layers[name] = previous.plan.float_layers[name]
    return res, True
