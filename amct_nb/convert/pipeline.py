"""``convert_qat``: a model quantized elsewhere (QAT fake-quant or QDQ) to AMCT's outputs, on the engine.

    result = amct_nb.convert.convert_qat("qat.onnx")          # no data needed
    result.save("outputs/convert", prefix="model")             # AMCT's files, as after a calibration

The record is the pivot, as for a calibration: :func:`~amct_nb.convert.reading.read_qdq` turns
the Q/DQ patterns into a float model, quantized tensors and the QAT integers;
:func:`~amct_nb.convert.decide.decide` makes the Record and the integer weights; ``ptq.prepare``
and ``ptq.build(..., record=..., int_weights=...)`` write the fake-quant and deploy models (the
integer weights taken as they are, changed only by the saturation guard when asked). The report
gets a ``conversion`` section (:mod:`amct_nb.convert.result`).
"""

from __future__ import annotations

import logging
import os

from ..config import QuantConfig
from ..data import as_feeds, check_feed, rebatch
from ..errors import ConfigError, ModelError, NotSupportedError
from ..ir import GraphIndex, ModelLike, input_specs, load_model
from ..ops import OPS
from ..ptq import Observation, build, observe, prepare
from ..quant import resolve_guard
from ..reasons import Code, Reason
from ..record import TENSOR_PREFIX
from .decide import bias_fits_int32, config_for, decide, recalibrated, split_wide_biases
from .reading import read_qdq
from .result import ConvertResult, bias_requantization, output_agreement, saturation_risk

__all__ = ["convert_qat", "GUARDS"]

log = logging.getLogger("amct_nb")

#: ``saturation_guard`` values of a conversion (all but "pairs" keep every QAT integer).
GUARDS = ("always", "auto", "off", "pairs")
#: ``Change.kind`` of a BatchNormalization that prepare left unfolded (amct_nb.passes.fold_bn).
BN_NOT_FOLDED = "bn_not_folded"


def _feeds(data, model) -> list[dict]:
    specs = input_specs(model)
    checked = (check_feed(f, specs, i) for i, f in enumerate(as_feeds(data, specs)))
    return list(rebatch(checked, specs, 32))


def _observe_qat(source, reading, tensors: list[str], data, progress: bool) -> tuple[Observation, int]:
    """Statistics of the quantized tensors as the QAT model computes them (its own weights and
    grids upstream: an exporter may have folded a ReLU6 into a grid, so the float model would see
    values the QAT model never does), keyed by the float model's names."""
    names = {t: reading.origin.get(t, t) for t in dict.fromkeys(tensors)}
    specs = input_specs(source)
    seen = [0]
    try:
        total = len(data)
    except TypeError:
        total = None
    obs = observe(source, as_feeds(data, specs), list(dict.fromkeys(names.values())), progress=progress, total=total,
                  on_batch=lambda n, _t: seen.__setitem__(0, n))
    return Observation({t: obs.stats[src] for t, src in names.items()}, obs.samples), seen[0]


def convert_qat(model: ModelLike, *, saturation_guard: str = "auto", recalibrate=None, feeds=None,
                config: QuantConfig | None = None, progress: bool = True) -> ConvertResult:
    """Convert a QAT (fake-quant) or QDQ ONNX model into amct-nb's fake-quant and deploy models.

    ``model``: path, bytes or ModelProto (never modified). The QAT model's scales, zero points and
    integer weights are kept. ``saturation_guard``: ``"always"`` stores the layers whose weight pairs x86
    int8 kernels without VNNI would saturate on as uint8 with zero point 128 (same integers, exact on every
    x86 CPU), ``"auto"`` (default) only when this CPU saturates, ``"off"`` never; ``"pairs"`` moves those
    pairs instead (changes QAT integers).
    ``recalibrate``: calibration data (as for :func:`amct_nb.quantize`) to re-observe the activation
    ranges, keeping the QAT weights. ``feeds``: data on which to compare the converted models'
    outputs with the QAT model's (the recalibration samples are used when not given).
    ``config``: settings such as ``act_algo`` for recalibration or ``quant_enable: false`` layers.
    """
    if saturation_guard not in GUARDS:
        hint = (": 7-bit weights would re-round the QAT integers" if saturation_guard == "reduce_range" else "")
        raise ConfigError(f"saturation_guard '{saturation_guard}' is not a conversion setting{hint}: use "
                          f"{', '.join(GUARDS)} (all but 'pairs' keep every QAT integer)")
    guard, _ = resolve_guard(saturation_guard)
    if guard == "reduce_range":
        raise NotSupportedError("this CPU's int8 kernels saturate in a pattern neither uint8 weights nor the pair "
                                "guard fix, and 7-bit weights would re-round the QAT integers: use "
                                "saturation_guard='off' and deploy on a CPU with VNNI")
    source = load_model(model)
    reading = read_qdq(source)
    reading.model, split = split_wide_biases(reading)
    cfg = config_for(reading, reading.model, config, saturation_guard)
    prepared = prepare(reading.model, cfg)
    if isinstance(model, (str, os.PathLike)):
        prepared.source = str(model)
    dec = decide(reading, prepared.model, cfg)
    if not dec.qat_layers:
        why = "; ".join(f"{n}: {r}" for n, r in list(dec.float_layers.items())[:4])
        raise ModelError(
            "no layer of the QAT model has both a quantized input and an int8 weight, so there is no int8 layer "
            f"to convert{f' ({why})' if why else ''}: AMCT's pattern is QuantizeLinear -> DequantizeLinear on the "
            "activation input and on the constant weight of a Conv, ConvTranspose, Gemm or MatMul")
    record, recal = dec.record, None
    if recalibrate is not None:
        inputs = {n: prepared.layer(n).activation for n in dec.qat_layers}
        want = [k[len(TENSOR_PREFIX):] if k.startswith(TENSOR_PREFIX) else inputs[k] for k in record.layers]
        obs, seen = _observe_qat(source, reading, want, recalibrate, progress)
        idx = GraphIndex(prepared.model.graph)

        def bias_ok(layer: str, scale_d: float) -> bool:
            l = prepared.layer(layer)
            return l.bias is None or bias_fits_int32(idx.array(l.bias), scale_d, reading.consts[l.weight].scale)

        record, recal = recalibrated(record, reading.tensors, inputs, cfg, obs, bias_ok)
        recal["samples"] = seen
        if feeds is None:
            feeds = obs.samples
    res = build(prepared, cfg, {}, record=record, int_weights=dec.int_weights)
    _reasons(res, dec.float_layers)
    conversion = _conversion(reading, dec, cfg, res, source, recal)
    conversion["bias_requantization"]["moved_to_float_add"] = split
    if feeds is not None:
        fl = feeds if isinstance(feeds, list) and all(isinstance(f, dict) for f in feeds) else _feeds(feeds, source)
        conversion["output_vs_qat_model"] = output_agreement(source, res.fake_quant_model, res.deploy_model, fl)
    else:
        conversion["output_vs_qat_model"] = {
            "skipped": "no feeds: pass feeds= (or recalibrate=) to compare the outputs with the QAT model's; the "
                       "bias requantization error above needs no data"}
    lines = _lines(conversion)
    for line in lines:
        log.info("%s", line)
    res.log_lines.extend(lines)
    return ConvertResult.of(res, conversion)


def _reasons(res, float_layers: dict[str, Reason]) -> None:
    """Say why, in the QAT model's terms, layers stay float (the engine only knows 'not in the record')."""
    for n, r in list(res.plan.float_layers.items()):
        new = float_layers.get(n)
        if new is None and r.code == Code.NOT_IN_RECORD:
            new = Reason(Code.NOT_IN_RECORD, "not quantized in the QAT model (no Q/DQ on its input and weight)")
        if new is not None and new != r:
            res.plan.float_layers[n] = new
            res.log_lines[:] = [f"layer {n} left float: {new}" if x == f"layer {n} left float: {r}" else x
                                for x in res.log_lines]


def _conversion(reading, dec, cfg: QuantConfig, res, source, recal) -> dict:
    kept = changed = 0
    for n in dec.qat_layers:
        lq = res.plan.layers[n]
        diff = int((lq.w_q.astype(int) != dec.int_weights[n].astype(int)).sum())
        changed += diff
        kept += diff == 0
    not_folded = [c.text for c in res.prepared.changes if c.kind == BN_NOT_FOLDED]
    return {
        "source": res.prepared.name,
        "opset": max((o.version for o in source.opset_import if o.domain in ("", "ai.onnx")), default=0),
        "patterns": dict(reading.patterns),
        "activation_types": dict(reading.dtypes),
        "activation_dtype": cfg.activation_dtype,
        "qat_layers": len(dec.qat_layers),
        "layer_types": {t: sum(res.plan.layers[n].op_type == t for n in dec.qat_layers) for t in OPS
                        if any(res.plan.layers[n].op_type == t for n in dec.qat_layers)},
        "per_channel_layers": sum(dec.per_channel.values()),
        "weights": {"layers_exact": kept, "values_changed": changed,
                    "kept": "every integer weight is the QAT model's" if changed == 0 else
                            f"{changed} integer(s) moved by the saturation guard, all others are the QAT model's"},
        "quantized_tensors": len(reading.tensors),
        "saturation": saturation_risk(res.prepared.model, dec.int_weights, res.plan),
        "bias_requantization": bias_requantization(res.prepared.model, res.plan, reading.consts),
        "batchnorm_not_folded": not_folded,
        "recalibration": recal,
        "notes": reading.notes + dec.notes + _requantized_by_ort(res),
    }


def _requantized_by_ort(res) -> list[str]:
    """Float layers between a DequantizeLinear and a QuantizeLinear: recent ONNX Runtime versions (1.32
    here) give their float weights per-tensor int8 scales of their own (the WeightBiasQuantization
    optimizer), so such a layer does not run in float in the deploy model."""
    out = []
    for n in res.plan.float_layers:
        try:
            l = res.prepared.layer(n)
        except KeyError:
            continue
        if l.activation in res.plan.tensors and l.output in res.plan.tensors:
            out.append(f"layer {n} stays float between quantized tensors: ONNX Runtime quantizes its weight per "
                       "tensor itself when it runs the deploy model (its WeightBiasQuantization optimizer)")
    return out


def _lines(c: dict) -> list[str]:
    p = c["patterns"]
    sat, bias = c["saturation"], c["bias_requantization"]
    lines = [
        f"convert: {p.get('activation_pairs', 0)} activation Q/DQ pair(s), "
        f"{p.get('integer_constants', 0) + p.get('fake_quant_constants', 0)} quantized constant(s); "
        f"{c['qat_layers']} layer(s) keep the QAT integers ({c['per_channel_layers']} per channel), "
        f"{c['activation_dtype']} activations",
        f"convert: weights: {c['weights']['kept']}",
        f"convert: saturation: {sat['pairs_over_limit']} weight pair(s) over the int8 pair limit in "
        f"{len([v for v in sat['layers'].values() if v['pairs_over_limit']])} layer(s); this CPU "
        f"{'saturates' if sat['this_cpu_saturates'] else 'does not saturate'}; {sat['advice']}",
        f"convert: bias requantized to int32 at scale_d * scale_w: max |b - round(b/s)*s| = "
        f"{bias['max_abs_error']:.3g}",
    ]
    if c["recalibration"]:
        r = c["recalibration"]
        lines.append(f"convert: recalibrated {r['tensors']} activation grid(s) on {r['samples']} sample(s), "
                     f"{r['changed']} changed (QAT weights kept)")
    out = c.get("output_vs_qat_model") or {}
    for kind in ("fake_quant", "deploy"):
        for n, e in (out.get(kind) or {}).items():
            top = f", top-1 agreement {e['top1_agreement']:.4f}" if "top1_agreement" in e else ""
            lines.append(f"convert: {kind} output {n} vs the QAT model ({out['samples']} samples): cosine "
                         f"{e['cosine']:.6f}, SQNR {e['sqnr_db']:.1f} dB{top}")
    lines += [f"convert: BatchNormalization kept: {t}" for t in c["batchnorm_not_folded"]]
    lines += [f"convert: note: {t}" for t in c["notes"]]
    return lines
