"""Post-training calibration, stage by stage: statistics -> record (+ safety net) -> plan -> models.

    result = amct_nb.quantize("model.onnx", calibration_data)
    result.save("outputs/calibration", prefix="model")

:func:`build` runs named stages, each a function of its own:

1. :func:`calibrate_record`: ranges and weight scales from the statistics (the record), then the
   safety net's tensor check (tensors whose quantization destroys them stay float; repeated, since
   leaving a tensor float changes its neighbours' plan) and its output check (the units the
   outputs cannot afford stay float); or :func:`record_decision` when a record is given;
2. :func:`plan_from_record` (always from a record, whatever produced it);
3. :func:`write_models`: the fake-quant and deploy models, checked;
4. the end-to-end output error on the calibration samples, and the log.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

import numpy as np
import onnx

from ..analysis import (
    GatedSession,
    first_samples,
    flag_tensors,
    output_check,
    output_errors,
    reference_outputs,
    tensor_errors,
)
from ..config import QuantConfig
from ..errors import AmctError
from ..export import QuantPlan, Unit, build_deploy, build_fake_quant, units_of
from ..ir import ModelLike, Spill, is_large, is_not_loaded, light_copy, make_session, walk_graphs, walk_nodes
from ..quant import TensorStats, resolve_guard
from ..quant.weights import DEFAULT_SCHEME
from ..reasons import Code, Reason
from ..record import Record
from .ladder import choose_weight_only
from .observation import DEFAULT_BATCH_BYTES, Observation, collect_stats
from .plan import plan_from_record
from .prepared import Prepared, prepare
from .result import QuantResult, bias_correction_summary, unsupported_ops, weight_sqnr
from .scales import needs_channel_moments, record_from_stats

__all__ = ["build", "quantize", "calibrate_record", "record_decision", "write_models", "Decision",
           "TENSOR_CHECK_ROUNDS", "bias_check_of"]

log = logging.getLogger("amct_nb")

#: Why a tensor or layer of an If branch no calibration sample took (a Loop body run 0 times) stays float.
_IDLE = Reason(Code.SUBGRAPH, "the If branch or Loop body it is in never ran on the calibration data, so it has no "
                              "range: calibrate with data that runs it")

#: Rounds of the safety net's tensor check (each may leave more tensors float).
TENSOR_CHECK_ROUNDS = 3
#: Bias correction stays on when it lifts the outputs' SQNR on the calibration samples by at least this
#: much: a smaller gain is within what moving biases against fixed activation grids changes either way
#: (ddddocr_rec: +0.15 dB on the calibration feeds, -2 dB on unseen ones, 3 of 32 strings lost).
BIAS_MIN_GAIN_DB = 0.5
#: Calibration samples the bias-correction check measures the outputs on.
BIAS_CHECK_SAMPLES = 16


@dataclass
class Decision:
    """What calibration decided: the record, the plan built from it, and what was measured."""

    record: Record
    plan: QuantPlan
    tensor_errors: dict = field(default_factory=dict)
    output_check: dict = field(default_factory=dict)
    log: list[str] = field(default_factory=list)
    config: QuantConfig | None = None  # the config the record was made with, when the safety net changed it
    bias_check: dict = field(default_factory=dict)  # the outputs with and without bias correction


def _planned(prepared: Prepared, cfg: QuantConfig, obs: Observation, guard: str, forced: dict[str, Reason],
             forced_layers: dict[str, Reason] | None = None) -> tuple[Record, QuantPlan]:
    idle_scopes = _idle_scopes(prepared.model, obs) if any(l.scope for l in prepared.layers) else set()
    idle = {l.name: _IDLE for l in prepared.layers if l.scope in idle_scopes}
    forced_layers = {**idle, **(forced_layers or {})}
    record, float_layers, float_tensors = record_from_stats(prepared.model, prepared.layers, cfg, obs, guard, forced,
                                                            forced_layers, cache=prepared.weight_cache)
    plan = plan_from_record(prepared.model, prepared.layers, cfg, record, guard, float_layers, float_tensors,
                            cache=prepared.weight_cache)
    return record, plan


def _idle_scopes(model: onnx.ModelProto, obs: Observation) -> set[str]:
    """If branches / Loop bodies none of whose observed tensors got a value during calibration."""
    seen: dict[str, bool] = {}
    for scope, g in walk_graphs(model.graph):
        if scope:
            for t in [*(i.name for i in g.input), *(o for n in g.node for o in n.output)]:
                if t in obs.stats:
                    seen[scope] = seen.get(scope, False) or obs.stats[t].count > 0
    return {s for s, ran in seen.items() if not ran}


def calibrate_record(prepared: Prepared, cfg: QuantConfig, obs: Observation, guard: str) -> Decision:
    """Ranges and scales from the statistics, with the safety net (tensor check, output check)
    when ``cfg.safety_net`` is on and calibration samples were kept."""
    samples = obs.samples if cfg.safety_net else []
    forced: dict[str, Reason] = {t: _IDLE for t, st in obs.stats.items() if st.count == 0}
    cfg0, bias_check, first = cfg, {}, None
    if samples and cfg.bias_correction:
        cfg, bias_check, first = _bias_check(prepared, cfg, obs, guard, forced)
    errors: dict = {}
    for _ in range(TENSOR_CHECK_ROUNDS):
        record, plan = first or _planned(prepared, cfg, obs, guard, forced)  # the check's plan of this cfg
        first = None
        if not samples:
            break
        errors = tensor_errors(prepared.model, plan, samples, obs)
        new = {t: r for t, r in flag_tensors(errors, cfg.min_sqnr_db, cfg.min_channel_snr_db).items()
               if t not in forced}
        if not new:
            break
        forced.update(new)
    else:  # the last round flagged more tensors: plan once more without them
        record, plan = _planned(prepared, cfg, obs, guard, forced)
    d = Decision(record, plan, errors, config=None if cfg is cfg0 else cfg, bias_check=bias_check)
    if samples and cfg.min_output_sqnr_db is not None and plan.layers:
        _output_stage(prepared, cfg, obs, guard, forced, d)
    return d


def bias_check_of(prepared: Prepared, cfg: QuantConfig, obs: Observation, guard: str,
                  forced: dict[str, Reason] | None = None) -> tuple[QuantConfig, dict, Record]:
    """The safety net's look at bias correction: the outputs' SQNR on the first calibration samples with
    and without it; it stays on when it gains :data:`BIAS_MIN_GAIN_DB`, else the config goes on without it.
    Returns (that config, what was measured, the record of that config)."""
    cfg, info, (record, _) = _bias_check(prepared, cfg, obs, guard, forced or {})
    return cfg, info, record


def _bias_check(prepared: Prepared, cfg: QuantConfig, obs: Observation, guard: str,
                forced: dict[str, Reason]) -> tuple[QuantConfig, dict, tuple | None]:
    """:func:`bias_check_of`, with the (record, plan) of the config it returns."""
    record, plan = _planned(prepared, cfg, obs, guard, forced)
    if not plan.layers or is_large(prepared.model) or not any(r.bias_correction for r in record.layers.values()):
        return cfg, {}, (record, plan)
    off = cfg.copy()
    off.bias_correction = False
    derived = _without_correction(prepared, off, record, plan, guard)
    planned_off = derived or _planned(prepared, off, obs, guard, forced)
    plan_off = planned_off[1]
    samples = first_samples(obs.samples, BIAS_CHECK_SAMPLES)
    db = {}
    if derived is not None:  # the same layers and weights: one gated session, its last gate swaps the biases
        units = [*units_of(plan), Unit("bias_alt", "without bias correction", ())]
        gs = GatedSession(prepared.model, plan, units, bias_alt=plan_off)
        if not gs.outputs:
            return cfg, {}, (record, plan)
        for key, alt in (("with_db", 0), ("without_db", 1)):
            gates = np.ones(len(units), np.float32)
            gates[-1] = alt
            db[key] = round(float(gs.output_sqnr(gates, samples)), 2)
        del gs
    else:  # planned again from scratch (a bias overflows without its correction): a session per plan
        for key, p in (("with_db", plan), ("without_db", plan_off)):
            units = units_of(p)
            gs = GatedSession(prepared.model, p, units)
            if not gs.outputs:
                return cfg, {}, (record, plan)
            db[key] = round(float(gs.output_sqnr(np.ones(len(units), np.float32), samples)), 2)
            del gs
    kept = db["with_db"] >= db["without_db"] + BIAS_MIN_GAIN_DB
    info = {**db, "kept": kept, "min_gain_db": BIAS_MIN_GAIN_DB,
            "samples": sum(next(iter(f.values())).shape[0] for f in samples)}
    return (cfg, info, (record, plan)) if kept else (off, info, planned_off)


def _without_correction(prepared: Prepared, off: QuantConfig, record: Record, plan: QuantPlan,
                        guard: str) -> tuple[Record, QuantPlan] | None:
    """What ``_planned`` gives for ``off`` (bias correction off), from the record and plan with it: the same
    scales (bias correction changes no range), without the uniform layers' ``bias_correction`` lines (non-uniform
    layers keep theirs); None where a bias overflows without its correction (then plan it all again)."""
    types = {l.name: l.op_type for l in prepared.layers}
    rec = Record({k: replace(r, bias_correction=[] if k in types and not off.for_layer(k, types[k]).nuq
                             else list(r.bias_correction)) for k, r in record.layers.items()})
    try:
        return rec, plan_from_record(prepared.model, prepared.layers, off, rec, guard, plan.float_layers,
                                     plan.float_tensors, cache=prepared.weight_cache)
    except AmctError:
        return None


def _output_stage(prepared: Prepared, cfg: QuantConfig, obs: Observation, guard: str, forced: dict[str, Reason],
                  d: Decision) -> None:
    """The safety net's output check: leave float the units the outputs cannot afford. Layers with
    non-uniform weights among them first go back to uniform int8 (and the check runs again)."""
    chk = output_check(prepared.model, d.plan, obs.samples, cfg.min_output_sqnr_db)
    types = {l.name: l.op_type for l in prepared.layers}
    nuq = [u.name for u in (chk.fallen if chk is not None else []) if u.kind == "layer"
           and cfg.for_layer(u.name, types[u.name]).nuq]
    if nuq:
        cfg = cfg.copy()
        for n in nuq:
            cfg.layers[n] = replace(cfg.for_layer(n, types[n]), wts_algo=DEFAULT_SCHEME)
        d.config = cfg
        d.log.append(f"output check: {chk.before_db:.1f} dB output SQNR with everything quantized (target "
                     f"{chk.target_db:g} dB): {len(nuq)} layer(s) with non-uniform weights go back to uniform int8")
        d.record, d.plan = _planned(prepared, cfg, obs, guard, forced)
        nuq_info = {"nuq_to_uniform": nuq, "before_nuq_to_uniform_sqnr_db": chk.as_dict()["before_sqnr_db"]}
        chk = output_check(prepared.model, d.plan, obs.samples, cfg.min_output_sqnr_db)
    else:
        nuq_info = {}
    if chk is None:
        d.output_check = {"skipped": "the model is over 2 GB (the check would hold every weight twice)"
                          if is_large(prepared.model) else "no float outputs or no calibration samples"}
        d.log.append(f"output check: skipped ({d.output_check['skipped']})")
        return
    d.output_check = {**chk.as_dict(), **nuq_info}
    d.log.append(f"output check: {chk.before_db:.1f} dB output SQNR with everything quantized (target "
                 f"{chk.target_db:g} dB); {len(chk.fallen)} of {len(chk.units)} left float -> {chk.after_db:.1f} dB "
                 f"({chk.seconds:.1f} s)")
    if not chk.fallen:
        return
    layers: dict[str, Reason] = {}
    tensors = dict(forced)
    for u in chk.fallen:
        why = Reason(Code.OUTPUT_CHECK, f"left float by the output check: with everything quantized the outputs keep "
                                        f"{chk.before_db:.1f} dB SQNR (< {chk.target_db:g} dB); this {u.kind} alone "
                                        f"brings them to {chk.harm_db.get(u, float('inf')):.1f} dB")
        (layers if u.kind == "layer" else tensors)[u.name] = why
    d.record, d.plan = _planned(prepared, cfg, obs, guard, tensors, layers)


def record_decision(prepared: Prepared, cfg: QuantConfig, record: Record, guard: str,
                    int_weights: dict | None = None) -> Decision:
    """The plan of a given record (and given integer weights); layers it leaves out stay float with the reason."""
    float_layers = {}
    for l in prepared.layers:
        if l.name not in record.layers:
            if l.reason is not None:
                float_layers[l.name] = l.reason
            elif not cfg.for_layer(l.name, l.op_type).quant_enable:
                float_layers[l.name] = Reason(Code.DISABLED, "disabled in the config (quant_enable: false)")
            else:
                float_layers[l.name] = Reason(Code.NOT_IN_RECORD, "not in the record")
    plan = plan_from_record(prepared.model, prepared.layers, cfg, record, guard, float_layers, {},
                            cache=prepared.weight_cache, int_weights=int_weights)
    return Decision(record, plan)


def _require_layers(prepared: Prepared, plan: QuantPlan) -> None:
    if plan.layers:
        return
    why = [f"{k}: {v}" for k, v in list(plan.float_layers.items())[:5]]
    why += [f"{u['name']} ({u['op_type']}): {u['reason']}" for u in unsupported_ops(prepared.model)[:5]]
    raise AmctError(
        "no layer could be quantized, so no int8 model was written: "
        + ("; ".join(why) or "the model has no Conv/Gemm/MatMul/ConvTranspose with constant weights")
        + ". Check the config (quant_enable) and the model"
    )


def _writers_source(model: onnx.ModelProto, plan: QuantPlan) -> onnx.ModelProto:
    """``model`` without the data of the float weights both writers replace by the plan's integer weights
    (each read by its layer alone; a light copy, field by field): the writers never copy them."""
    readers = Counter(i for n in walk_nodes(model.graph) for i in n.input)
    readers.update(o.name for o in model.graph.output)
    replaced = {lq.weight for lq in plan.layers.values() if readers[lq.weight] == 1}
    return light_copy(model, lambda t: t.name in replaced) if replaced else model


def write_models(prepared: Prepared, plan: QuantPlan) -> tuple[onnx.ModelProto, onnx.ModelProto]:
    """(fake-quant, deploy) models of the plan; both pass the ONNX checker and the deploy model loads."""
    src = _writers_source(prepared.model, plan)
    deploy = _checked("deploy", build_deploy(src, plan))
    make_session(deploy)  # before the fake-quant model exists: its load and the float weights never meet
    parked = None
    if is_large(prepared.model):  # the deploy model waits in a temporary file while the fake-quant one is made
        try:
            parked = Spill(deploy)
            del deploy
        except OSError:
            pass
    fake = _checked("fake-quant", build_fake_quant(src, plan))
    if parked is not None:
        with parked:
            deploy = parked.load()
    return fake, deploy


def _checked(name: str, m: onnx.ModelProto) -> onnx.ModelProto:
    if any(is_not_loaded(t) for t in m.graph.initializer):  # a replaced weight that another node reads
        raise AmctError(f"internal error: the {name} model lost the data of a weight; please report this "
                        "with the model")
    try:
        if not is_large(m):
            onnx.checker.check_model(m)
    except onnx.checker.ValidationError as e:  # a bug of ours: never write such a file
        raise AmctError(f"internal error: the {name} model fails the ONNX checker ({str(e).splitlines()[0]}); "
                        "please report this with the model") from e
    return m


def _fake_errors(model: onnx.ModelProto, holder: list[onnx.ModelProto], samples: list[dict], ref) -> tuple:
    """(the fake-quant and deploy models, taken out of ``holder``; the fake-quant model's output errors). Over
    2 GB, both wait in temporary files during the session (which maps the fake-quant weights from its file)
    and are read back afterwards, so that the fake-quant weights are in memory once."""
    fake, deploy = holder
    holder.clear()
    if not is_large(fake):
        return fake, deploy, output_errors(model, fake, samples, reference=ref)
    parked = []
    try:
        parked += [Spill(deploy)]
        parked += [Spill(fake)]
    except OSError:  # no room for the files: the session copies the weights
        for p in parked:
            p.close()
        return fake, deploy, output_errors(model, fake, samples, reference=ref)
    del fake, deploy
    with parked[0], parked[1]:
        errors = output_errors(model, parked[1], samples, reference=ref)
        return parked[1].load(), parked[0].load(), errors


def _plan_lines(plan: QuantPlan) -> list[str]:
    lines = []
    for n, l in plan.layers.items():
        tq = plan.tensors[l.activation]
        lines.append(f"layer {n} ({l.op_type}): scale_d {float(tq.scale):.6g} zp {tq.zero_point}, "
                     f"{'per-channel' if l.axis is not None else 'per-tensor'} weights, "
                     f"{l.pairs_fixed} pair(s) adjusted")
    lines += [f"layer {n} left float: {r}" for n, r in plan.float_layers.items()]
    lines += [f"tensor {n} left float: {r}" for n, r in plan.float_tensors.items()]
    lines += [f"weight {w} ({wo.kind}, read by {', '.join(wo.users)}): int8 weight-only" for w, wo in
              plan.weight_only.items()]
    return lines


def build(
    prepared: Prepared, config: QuantConfig | None = None, stats: Mapping[str, TensorStats] | None = None, *,
    record: Record | None = None, int_weights: dict | None = None,
) -> QuantResult:
    """Ranges, record, plan and both models from statistics (an :class:`Observation` from
    :func:`collect_stats`, or a plain mapping of statistics, which gets no safety net), or from a
    given ``record`` (with ``int_weights``: integer weights per layer used as they are, for jobs
    such as convert-QAT that already decided them)."""
    cfg = (config or QuantConfig()).copy().validate([l.name for l in prepared.layers])
    guard, why = resolve_guard(cfg.saturation_guard)
    obs = Observation.of(stats)
    lines = [f"amct-nb: model {prepared.name}", *[f"prepare: {n}" for n in prepared.notes],
             f"saturation guard: {guard} ({why})"]
    if record is None:
        d = calibrate_record(prepared, cfg, obs, guard)
    else:
        d = record_decision(prepared, cfg, record, guard, int_weights)
    if d.bias_check:
        bc = d.bias_check
        d.output_check = {**d.output_check, "bias_correction": bc}
        lines.append(f"bias correction check: outputs {bc['with_db']} dB with it, {bc['without_db']} dB without "
                     f"({bc['samples']} calibration samples): " + ("kept" if bc["kept"] else
                                                                    f"left out (it must gain {bc['min_gain_db']} dB)"))
    lines += d.log
    _require_layers(prepared, d.plan)
    bc = bias_correction_summary(d.config or cfg, d.plan, d.record)
    if bc["enabled"] or bc["corrected_layers"]:
        lines.append(f"bias correction: {bc['corrected_layers']} of {bc['layers_with_bias']} int8 layers with a bias "
                     "take the mean shift of their weights' rounding into it"
                     + (f"; not: {', '.join(bc['not_corrected'][:5])}" if bc.get("not_corrected") else ""))
    if is_large(prepared.model):  # the cache keeps the plan's integer weights only (a rebuild quantizes again)
        used = {id(l.w_q) for l in d.plan.layers.values()}
        for k in [k for k, v in prepared.weight_cache.items() if id(getattr(v, "q", None)) not in used]:
            del prepared.weight_cache[k]
    d.plan.weight_only, ladder = choose_weight_only(prepared.model, prepared.layers, d.plan, cfg,
                                                    obs.samples if cfg.safety_net else [])
    if ladder.get("candidates"):
        d.output_check = {**d.output_check, "weight_only": ladder}
        lines.append(f"fallback ladder: {len(d.plan.weight_only)} of {ladder['candidates']} float weights stored "
                     "int8 (weight-only)" + (f"; outputs {ladder['before_sqnr_db']} -> {ladder['after_sqnr_db']} dB"
                                             if ladder.get("checked") else f" ({ladder.get('skipped')})")
                     + (f"; {len(ladder['not_measured'])} of them in bodies that never ran (not measured)"
                        if ladder.get("not_measured") else ""))
    # the float outputs first: their session and the models' weights are never in memory together
    ref = reference_outputs(prepared.model, obs.samples) if obs.samples else None
    wsq = {}
    if is_large(prepared.model):  # the report's weight SQNR too (a float64 copy of one weight at a time)
        inits = {t.name: t for t in prepared.model.graph.initializer}
        wsq = {n: (lq, weight_sqnr(inits[lq.weight], lq)) for n, lq in d.plan.layers.items()}
        del inits
    fake, deploy = write_models(prepared, d.plan)
    lines += _plan_lines(d.plan)
    out_err = {}
    if ref is not None:
        holder = [fake, deploy]
        del fake, deploy  # the holder's are the only references: they can wait in files during the session
        fake, deploy, out_err = _fake_errors(prepared.model, holder, obs.samples, ref)
    n_samples = sum(next(iter(f.values())).shape[0] for f in obs.samples)
    for n, e in out_err.items():
        lines.append(f"output {n}: cosine {e['cosine']:.6f}, SQNR {e['sqnr_db']:.1f} dB vs the float model "
                     f"({n_samples} calibration samples)")
    for line in lines:
        log.info("%s", line)
    return QuantResult(prepared, d.config or cfg, d.record, d.plan, obs, fake, deploy, guard, why, lines,
                       d.tensor_errors, out_err, d.output_check, weight_sqnr_db=wsq)


def quantize(model: ModelLike, data, config: QuantConfig | None = None, *, progress: bool = True,
             cancel: threading.Event | None = None, batch_bytes: int = DEFAULT_BATCH_BYTES) -> QuantResult:
    """Calibrate ``model`` on ``data`` and return the fake-quant and deploy models.

    ``model``: path, bytes or ModelProto. ``data``: an iterable of feeds (array or dict per feed),
    an array whose first axis is samples, or a path (.npy, .npz, image folder, folder of .npz).
    """
    cfg = (config or QuantConfig()).copy()
    prepared = prepare(model, cfg)
    cfg.validate([l.name for l in prepared.layers])
    stats = collect_stats(prepared, data, progress=progress, cancel=cancel, batch_bytes=batch_bytes,
                          channel_moments=needs_channel_moments(cfg, prepared.layers))
    return build(prepared, cfg, stats)
