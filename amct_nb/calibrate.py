"""The post-training quantization pipeline: prepare -> observe -> ranges -> record -> models.

    result = amct_nb.quantize("model.onnx", calibration_data)
    result.save("outputs/calibration", prefix="model")

Each step is also a function of its own (:func:`prepare`, :func:`collect_stats`, :func:`build`),
so a notebook can observe once and rebuild in a second after changing per-layer settings.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx

from .config import QuantConfig
from .errors import AmctError, DataError, ModelError, OutputError
from .export import build_deploy, build_fake_quant
from .feeds import input_specs
from .io import check_output_dir, output_lock, save_model_file, _os_error
from .model import byte_size, fit_ir_version, is_large, load_model, without_large_data
from .observe import DEFAULT_BATCH_BYTES, float_tensors, make_session, observe
from .passes import constants_to_initializers, fold_batchnorm, infer_shapes, name_nodes, remove_noops, upgrade_opset
from .plan import QuantPlan, plan_from_record, quant_points, record_from_stats
from .probe import int8_saturates, pair_guard_exact, platform_report
from .record import Record
from .registry import Layer, find_layers

__all__ = ["Prepared", "QuantResult", "prepare", "collect_stats", "build", "quantize", "resolve_guard", "sample_feeds"]

log = logging.getLogger("amct_nb")


@dataclass
class Prepared:
    """A loaded, validated and prepared (BN-folded) model with its quantizable layers."""

    original: onnx.ModelProto
    model: onnx.ModelProto
    layers: list[Layer]
    notes: list[str] = field(default_factory=list)
    source: str | None = None
    #: serialized size of the user's model (for a model over 2 GB, ``original`` keeps no weights)
    original_bytes: int = 0
    #: weight quantizations of earlier builds (plan._weight_quant), so a rebuild redoes only what changed
    weight_cache: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def name(self) -> str:
        return Path(self.source).stem if self.source else (self.original.graph.name or "model")

    def layer(self, name: str) -> Layer:
        for l in self.layers:
            if l.name == name:
                return l
        raise KeyError(name)


def prepare(model, config: QuantConfig | None = None) -> Prepared:
    """Load, validate and prepare a model: unique node names, opset >= 13, Constant weights as
    initializers, no-op nodes removed, BatchNorm folded, shapes inferred. The input is not modified."""
    cfg = config or QuantConfig()
    source = str(model) if isinstance(model, (str, os.PathLike)) else None
    original = load_model(model)
    m, notes = original, []
    steps = [name_nodes, upgrade_opset, constants_to_initializers, remove_noops]
    for step in steps:
        m, n = step(m)
        notes += n
    if cfg.do_fusion:
        m, n = fold_batchnorm(m, cfg.skip_fusion_layers)
        notes += n
    m, n = infer_shapes(m)
    notes += n
    fit_ir_version(m)
    layers = find_layers(m)
    original_bytes = byte_size(original)
    if is_large(original):  # one copy of the weights in memory is enough: keep the original's graph only
        original = without_large_data(original)
        notes.append("model over 2 GB: its weights are kept once in memory (the original's graph is kept without them)")
    for note in notes:
        log.info("prepare: %s", note)
    return Prepared(original, m, layers, notes, source, original_bytes)


def sample_feeds(data, specs, batch_size: int = 1):
    """Feeds from calibration data (see :func:`amct_nb.feeds.as_feeds` for what is accepted)."""
    from .feeds import as_feeds

    return as_feeds(data, specs, batch_size)


def _total(data) -> int | None:
    try:
        return len(data)
    except TypeError:
        return None


def collect_stats(
    prepared: Prepared,
    data,
    *,
    tensors: list[str] | None = None,
    all_tensors: bool = False,
    progress: bool = True,
    cancel: threading.Event | None = None,
    batch_bytes: int = DEFAULT_BATCH_BYTES,
    on_batch=None,
) -> dict:
    """One streaming pass: statistics of every tensor any config could quantize (or of all
    float tensors with ``all_tensors``), so settings can change later without re-running."""
    if tensors is None:
        can = [l for l in prepared.layers if l.quantizable]
        tensors = float_tensors(prepared.model) if all_tensors else quant_points(prepared.model, can, True)
    specs = input_specs(prepared.model)
    feeds = sample_feeds(data, specs)
    return observe(prepared.model, feeds, tensors, progress=progress, total=_total(data), cancel=cancel,
                   batch_bytes=batch_bytes, on_batch=on_batch)


def resolve_guard(mode: str) -> tuple[str, str]:
    """(guard, why) for a config's ``saturation_guard`` on this machine."""
    sat = int8_saturates()
    if mode == "off":
        return "none", "saturation guard turned off" + (" (this CPU's int8 kernels saturate!)" if sat else "")
    if mode == "reduce_range":
        return "reduce_range", "7-bit weights requested (reduce_range)"
    if sat and not pair_guard_exact():
        return "reduce_range", "this CPU's int8 kernels saturate in an unknown pattern: 7-bit weights"
    if mode == "always":
        return "pairs", ("this CPU's int8 kernels saturate (no VNNI): " if sat else "portable int8 (no saturation on CPUs without VNNI): ") + "adjacent weight pairs kept within |a|+|b|<=128"
    if sat:
        return "pairs", "this CPU's int8 kernels saturate (no VNNI): adjacent weight pairs kept within |a|+|b|<=128"
    return "none", "this CPU's int8 kernels do not saturate: weights unchanged"


@dataclass
class QuantResult:
    """Everything one calibration produced; :meth:`save` writes AMCT's files."""

    prepared: Prepared
    config: QuantConfig
    record: Record
    plan: QuantPlan
    stats: dict
    fake_quant_model: onnx.ModelProto
    deploy_model: onnx.ModelProto
    guard: str
    guard_reason: str
    log_lines: list[str] = field(default_factory=list)
    tensor_errors: dict = field(default_factory=dict)
    output_errors: dict = field(default_factory=dict)
    #: what the safety net's output check measured and left float (see amct_nb.safety.output_check)
    output_check: dict = field(default_factory=dict)

    @property
    def quantized_layers(self) -> list[str]:
        return list(self.plan.layers)

    @property
    def float_layers(self) -> dict[str, str]:
        return dict(self.plan.float_layers)

    def report(self) -> dict:
        """What was quantized, what stayed float and why, and sizes."""
        orig = self.prepared.original_bytes or byte_size(self.prepared.original)
        dep = byte_size(self.deploy_model)
        from .safety import sqnr_db

        inits = {t.name: t for t in self.prepared.model.graph.initializer}

        def wsqnr(l):
            w = onnx.numpy_helper.to_array(inits[l.weight]).astype(np.float32)
            shape = [1] * w.ndim
            if l.axis is not None:
                shape[l.axis] = -1
            return round(sqnr_db(w, l.w_q.astype(np.float32) * l.w_scale.reshape(shape)), 2)

        def terr(t):
            e = self.tensor_errors.get(t)
            return None if e is None else round(e["sqnr_db"], 2)

        return {
            "model": self.prepared.name,
            "quantized_layers": [
                {"name": n, "op_type": l.op_type, "channel_wise": l.axis is not None, "weight_bits": l.weight_bits,
                 "pairs_adjusted": l.pairs_fixed, "weight_sqnr_db": wsqnr(l), "input_sqnr_db": terr(l.activation)}
                for n, l in self.plan.layers.items()
            ],
            "unsupported": unsupported_ops(self.prepared.model),
            "output_error": self.output_errors,
            "output_check": self.output_check,
            "float_layers": [{"name": n, "reason": r} for n, r in self.plan.float_layers.items()],
            "quantized_tensors": len(self.plan.tensors),
            "float_tensors": [{"name": n, "reason": r} for n, r in self.plan.float_tensors.items()],
            "saturation_guard": {"mode": self.guard, "reason": self.guard_reason, "pairs_adjusted": self.plan.pairs_fixed,
                                 **platform_report()},
            "prepare": list(self.prepared.notes),
            "size_bytes": {"original": orig, "deploy": dep, "ratio": round(dep / max(orig, 1), 4)},
        }

    def paths(self, outdir, prefix: str | None = None) -> dict[str, Path]:
        out = Path(outdir)
        name = prefix or self.prepared.name
        return {
            "fake_quant": out / f"{name}_fake_quant_model.onnx",
            "deploy": out / f"{name}_deploy_model.onnx",
            "quant_json": out / f"{name}_quant.json",
            "report": out / f"{name}_report.json",
            "config": out / "tmp" / "config.json",
            "record": out / "tmp" / "record.txt",
            "modified": out / "tmp" / "modified_model.onnx",
            "log": out / "amct_log" / "amct_onnx.log",
        }

    def save(self, outdir, prefix: str | None = None) -> dict[str, Path]:
        """Write the AMCT-named outputs into ``outdir`` (atomically, under a folder lock).

        Every file is first written into a staging folder inside ``outdir`` and then renamed into
        place, so a failure (disk full, permission) leaves the previous outputs untouched and no
        partial model behind. Returns the paths written.
        """
        check_output_dir(outdir, self.prepared.source)
        paths = self.paths(outdir, prefix)
        files = {
            "fake_quant": self.fake_quant_model,
            "deploy": self.deploy_model,
            "modified": modified_model_for(self.prepared, self.config, paths["config"], paths["record"]),
            "config": self.config.to_json(self.prepared.layers),
            "record": self.record.to_text(),
            "quant_json": json.dumps(fusion_info(self.prepared), indent=2) + "\n",
            "report": json.dumps(self.report(), indent=2) + "\n",
            "log": "\n".join(self.log_lines) + "\n",
        }
        with output_lock(outdir) as out:
            stage = Path(tempfile.mkdtemp(prefix=".amct-nb-staging-", dir=out))
            try:
                staged = {}
                for key, content in files.items():
                    target = stage / paths[key].relative_to(out)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    if isinstance(content, onnx.ModelProto):
                        save_model_file(content, target)
                    else:
                        target.write_text(content)
                    staged[key] = target
                for key, src in staged.items():
                    paths[key].parent.mkdir(parents=True, exist_ok=True)
                    for extra in src.parent.glob(src.name + ".data"):
                        os.replace(extra, paths[key].parent / extra.name)
                    os.replace(src, paths[key])
            except OSError as e:
                raise _os_error(out, e) from e
            finally:
                shutil.rmtree(stage, ignore_errors=True)
        log.info("saved %s", ", ".join(str(p) for p in paths.values()))
        return paths


_RECURRENT = ("LSTM", "GRU", "RNN")


def unsupported_ops(model: onnx.ModelProto) -> list[dict]:
    """Weighted ops amct-nb leaves float: recurrent layers, and layers inside If/Loop/Scan bodies."""
    from .registry import OPS

    out = []
    for n in model.graph.node:
        if n.op_type in _RECURRENT:
            out.append({"name": n.name, "op_type": n.op_type, "reason": "recurrent layers are left float (not supported)"})
        for a in n.attribute:
            subs = [a.g] if a.type == onnx.AttributeProto.GRAPH else list(a.graphs)
            inner = [m for s in subs for m in _walk(s) if m.op_type in OPS or m.op_type in _RECURRENT]
            if inner:
                kinds = sorted({m.op_type for m in inner})
                out.append({"name": n.name, "op_type": n.op_type,
                            "reason": f"its subgraph '{a.name}' holds {len(inner)} weighted op(s) ({', '.join(kinds)}) "
                                      "that stay float: layers inside If/Loop/Scan bodies are not quantized"})
    return out


def _walk(g: onnx.GraphProto):
    for n in g.node:
        yield n
        for a in n.attribute:
            for s in ([a.g] if a.type == onnx.AttributeProto.GRAPH else list(a.graphs)):
                yield from _walk(s)


def modified_model_for(p: Prepared, cfg: QuantConfig, config_file, record_file) -> onnx.ModelProto:
    """AMCT's tmp/modified_model.onnx: the prepared (BN-folded) float model, with the tensors to
    observe and the config/record paths in its metadata, so :class:`amct_nb.amct.InferenceSession`
    can calibrate it and :func:`amct_nb.amct.save_model` can finish the job."""
    m = onnx.ModelProto()
    m.CopyFrom(p.model)
    can = [l for l in p.layers if l.quantizable]
    props = {x.key: x.value for x in m.metadata_props}
    props.update({
        "amct_nb.kind": "modified",
        "amct_nb.observe": json.dumps(quant_points(m, can, True)),
        "amct_nb.config_file": str(Path(config_file).resolve()),
        "amct_nb.record_file": str(Path(record_file).resolve()),
        "amct_nb.batch_num": str(cfg.batch_num),
        "amct_nb.notes": json.dumps(p.notes),
        "amct_nb.source": p.source or "",
    })
    del m.metadata_props[:]
    for k in sorted(props):
        m.metadata_props.append(onnx.StringStringEntryProto(key=k, value=props[k]))
    return m


def fusion_info(prepared: Prepared) -> dict:
    """AMCT's ``<prefix>_quant.json``: which BatchNorm went into which layer."""
    fused = {}
    for note in prepared.notes:
        if note.startswith("BN ") and " folded into " in note:
            bn, layer = note[3:].split(" folded into ")
            fused.setdefault(layer, []).append(bn)
    return {"fusion_info": {k: v for k, v in sorted(fused.items())}}


def build(prepared: Prepared, config: QuantConfig | None, stats: dict, *, record: Record | None = None) -> QuantResult:
    """Ranges, record, plan and both models from statistics (or from a given record)."""
    cfg = (config or QuantConfig()).copy().validate([l.name for l in prepared.layers])
    guard, why = resolve_guard(cfg.saturation_guard)
    lines = [f"amct-nb: model {prepared.name}", *[f"prepare: {n}" for n in prepared.notes], f"saturation guard: {guard} ({why})"]
    float_layers, float_tensors_ = {}, {}
    check_info: dict = {}
    feeds = list(getattr(stats, "feeds", []) or [])
    errors: dict = {}
    if record is None:
        forced: dict[str, str] = {}
        for _ in range(3):  # leaving a tensor float can change its neighbours' plan: re-check
            record, float_layers, float_tensors_ = record_from_stats(prepared.model, prepared.layers, cfg, stats, guard, forced,
                                                                     cache=prepared.weight_cache)
            plan = plan_from_record(prepared.model, prepared.layers, cfg, record, guard, float_layers, float_tensors_,
                                    cache=prepared.weight_cache)
            if not (cfg.safety_net and feeds):
                break
            from .safety import flag_tensors, tensor_errors

            errors = tensor_errors(prepared.model, plan, feeds, stats)
            bad = flag_tensors(errors, cfg.min_sqnr_db, cfg.min_channel_snr_db)
            new = {t: r for t, r in bad.items() if t not in forced}
            if not new:
                break
            forced.update(new)
        if cfg.safety_net and feeds and cfg.min_output_sqnr_db is not None and plan.layers:
            from .safety import output_check

            chk = output_check(prepared.model, plan, feeds, cfg.min_output_sqnr_db)
            if chk is None:
                check_info = {"skipped": "the model is over 2 GB (the check would hold every weight twice)"
                              if is_large(prepared.model) else "no float outputs or no calibration samples"}
                lines.append(f"output check: skipped ({check_info['skipped']})")
            else:
                check_info = chk.as_dict()
                lines.append(f"output check: {chk.before_db:.1f} dB output SQNR with everything quantized "
                             f"(target {chk.target_db:g} dB); {len(chk.fallen)} of {len(chk.units)} left float "
                             f"-> {chk.after_db:.1f} dB ({chk.seconds:.1f} s)")
            if chk is not None and chk.fallen:
                flayers = {}
                for u in chk.fallen:
                    why = (f"left float by the output check: with everything quantized the outputs keep "
                           f"{chk.before_db:.1f} dB SQNR (< {chk.target_db:g} dB); this {u.kind} alone brings them "
                           f"to {u.harm_db:.1f} dB")
                    if u.kind == "layer":
                        flayers[u.name] = why
                    else:
                        forced[u.name] = why
                record, float_layers, float_tensors_ = record_from_stats(prepared.model, prepared.layers, cfg, stats, guard,
                                                                         forced, flayers, cache=prepared.weight_cache)
                plan = plan_from_record(prepared.model, prepared.layers, cfg, record, guard, float_layers, float_tensors_,
                                    cache=prepared.weight_cache)
    else:
        done = set(record.layers)
        float_layers = {}
        for l in prepared.layers:
            if l.name not in done:
                lc = cfg.for_layer(l.name, l.op_type)
                float_layers[l.name] = l.reason or ("disabled in the config (quant_enable: false)" if not lc.quant_enable
                                                    else "not in the record")
        plan = plan_from_record(prepared.model, prepared.layers, cfg, record, guard, float_layers, float_tensors_,
                                    cache=prepared.weight_cache)
    if not plan.layers:
        why = [f"{k}: {v}" for k, v in list(plan.float_layers.items())[:5]]
        why += [f"{u['name']} ({u['op_type']}): {u['reason']}" for u in unsupported_ops(prepared.model)[:5]]
        raise AmctError(
            "no layer could be quantized, so no int8 model was written: "
            + ("; ".join(why) or "the model has no Conv/Gemm/MatMul/ConvTranspose with constant weights")
            + ". Check the config (quant_enable) and the model"
        )
    fake = build_fake_quant(prepared.model, plan)
    deploy = build_deploy(prepared.model, plan)
    _check_outputs(fake, deploy)
    for n, l in plan.layers.items():
        tq = plan.tensors[l.activation]
        lines.append(f"layer {n} ({l.op_type}): scale_d {float(tq.scale):.6g} zp {tq.zero_point}, "
                     f"{'per-channel' if l.axis is not None else 'per-tensor'} weights, {l.pairs_fixed} pair(s) adjusted")
    for n, r in plan.float_layers.items():
        lines.append(f"layer {n} left float: {r}")
    for n, r in plan.float_tensors.items():
        lines.append(f"tensor {n} left float: {r}")
    out_err = {}
    if feeds:
        from .safety import output_errors

        out_err = output_errors(prepared.model, fake, feeds)
        for n, e in out_err.items():
            lines.append(f"output {n}: cosine {e['cosine']:.6f}, SQNR {e['sqnr_db']:.1f} dB vs the float model "
                         f"({sum(next(iter(f.values())).shape[0] for f in feeds)} calibration samples)")
    for line in lines:
        log.info("%s", line)
    return QuantResult(prepared, cfg, record, plan, stats, fake, deploy, guard, why, lines, errors, out_err, check_info)


def _check_outputs(fake: onnx.ModelProto, deploy: onnx.ModelProto) -> None:
    for name, m in (("fake-quant", fake), ("deploy", deploy)):
        try:
            if not is_large(m):
                onnx.checker.check_model(m)
        except onnx.checker.ValidationError as e:  # a bug of ours: never write such a file
            raise AmctError(f"internal error: the {name} model fails the ONNX checker ({str(e).splitlines()[0]}); "
                            "please report this with the model") from e
    make_session(deploy)


def quantize(model, data, config: QuantConfig | None = None, *, progress: bool = True,
             cancel: threading.Event | None = None, batch_bytes: int = DEFAULT_BATCH_BYTES) -> QuantResult:
    """Calibrate ``model`` on ``data`` and return the fake-quant and deploy models.

    ``model``: path, bytes or ModelProto. ``data``: an iterable of feeds (array or dict per feed),
    an array whose first axis is samples, or a path (.npy, .npz, image folder, folder of .npz).
    """
    cfg = (config or QuantConfig()).copy()
    prepared = prepare(model, cfg)
    cfg.validate([l.name for l in prepared.layers])
    stats = collect_stats(prepared, data, progress=progress, cancel=cancel, batch_bytes=batch_bytes)
    return build(prepared, cfg, stats)
