"""What a calibration produced (:class:`QuantResult`) and AMCT's files it writes.

:meth:`QuantResult.save` writes every file into a staging folder inside the output folder, then
renames each into place under a folder lock: a failure (disk full, permission) leaves the previous
outputs untouched and no partial model behind.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx

from ..analysis import sqnr_db
from ..config import QuantConfig
from ..export import QuantPlan, compact_weights
from ..ir import (
    byte_size,
    check_output_dir,
    clone,
    is_large,
    os_error,
    output_lock,
    save_model_file,
    set_metadata,
    walk_nodes,
    without_large_data,
)
from ..passes import fusion_info
from ..quant import platform_report
from ..reasons import Code, Reason
from ..record import Record
from .points import quant_points
from .prepared import Prepared

__all__ = ["QuantResult", "unsupported_ops", "modified_model_for", "fusion_info_of", "weight_sqnr", "OUTPUT_FILES"]

log = logging.getLogger("amct_nb")

_RECURRENT = ("LSTM", "GRU", "RNN")

#: The files :meth:`QuantResult.save` writes, relative to the output folder (``{name}``: the prefix).
OUTPUT_FILES = {
    "fake_quant": "{name}_fake_quant_model.onnx",
    "deploy": "{name}_deploy_model.onnx",
    "quant_json": "{name}_quant.json",
    "report": "{name}_report.json",
    "config": "tmp/config.json",
    "record": "tmp/record.txt",
    "modified": "tmp/modified_model.onnx",
    "log": "amct_log/amct_onnx.log",
}


def unsupported_ops(model: onnx.ModelProto) -> list[dict]:
    """Weighted ops amct-nb leaves float: recurrent layers (in If/Loop/Scan bodies too; the fallback ladder can
    still give their weights int8 storage)."""
    out = []
    for n in walk_nodes(model.graph):
        if n.op_type in _RECURRENT:
            r = Reason(Code.RECURRENT, "recurrent layers are left float (not supported)")
            out.append({"name": n.name, "op_type": n.op_type, "reason": r.text, "code": r.code.value})
    return out


def fusion_info_of(prepared: Prepared) -> dict:
    """AMCT's ``<prefix>_quant.json``: which BatchNorm went into which layer."""
    return {"fusion_info": fusion_info(prepared.changes)}


def modified_model_for(p: Prepared, cfg: QuantConfig, config_file, record_file, *,
                       light: bool = False) -> onnx.ModelProto:
    """AMCT's tmp/modified_model.onnx: the prepared (BN-folded) float model, with the tensors to
    observe, the config/record paths and the fusion info in its metadata, so
    :class:`amct_nb.amct.InferenceSession` can calibrate it and :func:`amct_nb.amct.save_model`
    can finish the job. ``light``: without the data of its weights over 1 MB (no copy of them), to
    save with ``save_model_file(m, path, weights=p.model)``."""
    m = without_large_data(p.model) if light else clone(p.model)
    can = [l for l in p.layers if l.quantizable]
    set_metadata(m, {
        "amct_nb.kind": "modified",
        "amct_nb.observe": json.dumps(quant_points(m, can, True)),
        "amct_nb.config_file": str(Path(config_file).resolve()),
        "amct_nb.record_file": str(Path(record_file).resolve()),
        "amct_nb.batch_num": str(cfg.batch_num),
        "amct_nb.notes": json.dumps(p.notes),
        "amct_nb.fusion": json.dumps(fusion_info(p.changes)),
        "amct_nb.source": p.source or "",
    })
    return m


def weight_sqnr(weight: onnx.TensorProto, lq) -> float:
    """SQNR (dB, 2 decimals) of a layer's dequantized int8 weight against its float ``weight``."""
    w = onnx.numpy_helper.to_array(weight).astype(np.float32, copy=False)
    return round(sqnr_db(w, lq.dequantized_weight()), 2)


def _reasons(d: dict[str, Reason]) -> list[dict]:
    return [{"name": n, "reason": str(r), "code": r.code.value} for n, r in d.items()]


def _entropy_bits(counts: np.ndarray) -> float:
    p = counts[counts > 0] / max(int(counts.sum()), 1)
    return float(-(p * np.log2(p)).sum())


def _levels_info(lq) -> dict:
    """What non-uniform weights became: the codebook, how many values are used, their entropy (bits)."""
    counts = np.bincount(lq.w_q.reshape(-1).astype(np.int64) + 128, minlength=256)
    return {"weight_algo": "nuq_quantize", "codebook": [int(v) for v in lq.codebook],
            "weight_levels": int((counts > 0).sum()), "weight_entropy_bits": round(_entropy_bits(counts), 3)}


def _bias_info(record: Record, name: str) -> dict:
    r = record.layers.get(name)
    if r is None or not r.bias_correction:
        return {}
    return {"bias_correction_max_abs": float(np.max(np.abs(r.bias_correction)))}


def bias_correction_summary(config: QuantConfig, plan: QuantPlan, record: Record) -> dict:
    """Which int8 layers with a bias got the rounding's mean shift added to it, and which did not."""
    biased = [n for n, l in plan.layers.items() if l.b_q is not None]
    done = [n for n in biased if n in record.layers and record.layers[n].bias_correction]
    out = {"enabled": bool(config.bias_correction), "corrected_layers": len(done), "layers_with_bias": len(biased)}
    missed = [n for n in biased if n not in done]
    if config.bias_correction and missed:
        out["not_corrected"] = missed
        out["why_not"] = ("their inputs' per-channel means were not kept (collect_stats(..., channel_moments=True); "
                          "quantize(), the CLI and the Workbench keep them) or their input has no channel axis the "
                          "weight reduces over, or the record came without bias_correction lines")
    return out


def _storage(plan: QuantPlan) -> dict:
    """Bits per weight the int8 weights carry (their per-layer entropy, weighted by size): what a compressed
    store of the deploy model's weights needs, 8 for uniform int8 weights that use the whole grid."""
    total, bits, nuq = 0, 0.0, 0
    for lq in plan.layers.values():
        counts = np.bincount(lq.w_q.reshape(-1).astype(np.int64) + 128, minlength=256)
        total += lq.w_q.size
        bits += _entropy_bits(counts) * lq.w_q.size
        nuq += lq.w_q.size if lq.codebook else 0
    return {"int8_weights": total, "nuq_weights": nuq, "entropy_bits_per_weight": round(bits / max(total, 1), 3)}


@dataclass
class QuantResult:
    """Everything one calibration produced; :meth:`save` writes AMCT's files."""

    prepared: Prepared
    config: QuantConfig
    record: Record
    plan: QuantPlan
    stats: object  # the Observation (statistics and samples) the result was built from
    fake_quant_model: onnx.ModelProto
    deploy_model: onnx.ModelProto
    guard: str
    guard_reason: str
    log_lines: list[str] = field(default_factory=list)
    tensor_errors: dict = field(default_factory=dict)
    output_errors: dict = field(default_factory=dict)
    #: what the safety net's output check measured and left float (see amct_nb.analysis.output_check)
    output_check: dict = field(default_factory=dict)
    #: layer -> (its LayerQuant, :func:`weight_sqnr`) measured ahead (a model over 2 GB: before its exports existed)
    weight_sqnr_db: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def quantized_layers(self) -> list[str]:
        return list(self.plan.layers)

    @property
    def float_layers(self) -> dict[str, Reason]:
        """Layers left float, with why (``str(reason)`` is the text); some keep int8 weights
        (:attr:`weight_only_layers`)."""
        return dict(self.plan.float_layers)

    @property
    def activation_matmuls(self) -> list[str]:
        """MatMul nodes between two activations whose inputs are both on int8 grids (ONNX Runtime runs them as
        QLinearMatMul); they have no weight, so they are not among :attr:`quantized_layers`."""
        inits = {t.name for t in self.prepared.model.graph.initializer}
        return [n.name for n in self.prepared.model.graph.node
                if n.op_type == "MatMul" and len(n.input) == 2 and not (set(n.input) & inits)
                and all(i in self.plan.tensors for i in n.input)]

    @property
    def weight_only_layers(self) -> list[str]:
        """Float layers whose weights are stored int8 (the fallback ladder's weight-only step)."""
        users = {u for wo in self.plan.weight_only.values() for u in wo.users}
        return [n for n in self.plan.float_layers if n in users]

    def report(self) -> dict:
        """What was quantized, what stayed float and why, and sizes."""
        orig = self.prepared.original_bytes or byte_size(self.prepared.original)
        dep = byte_size(self.deploy_model)
        inits = {t.name: t for t in self.prepared.model.graph.initializer}

        def wsqnr(lq):
            have = self.weight_sqnr_db.get(lq.name)
            return have[1] if have is not None and have[0] is lq else weight_sqnr(inits[lq.weight], lq)

        def terr(t):
            e = self.tensor_errors.get(t)
            return None if e is None else round(e["sqnr_db"], 2)

        layers = [
            {"name": n, "op_type": l.op_type, "channel_wise": l.axis is not None, "weight_bits": l.weight_bits,
             "pairs_adjusted": l.pairs_fixed, "weight_sqnr_db": wsqnr(l), "input_sqnr_db": terr(l.activation),
             **_bias_info(self.record, n), **(_levels_info(l) if l.codebook else {})}
            for n, l in self.plan.layers.items()
        ]
        nuq = {"weight_storage": _storage(self.plan)} if any(l.codebook for l in self.plan.layers.values()) else {}
        return {
            "model": self.prepared.name,
            "quantized_layers": layers,
            "unsupported": unsupported_ops(self.prepared.model),
            "output_error": self.output_errors,
            "output_check": self.output_check,
            "float_layers": _reasons(self.plan.float_layers),
            "int8_activation_matmuls": self.activation_matmuls,
            "weight_only": {w: {"kind": wo.kind, "users": list(wo.users), "weights": int(wo.w_q.size)}
                            for w, wo in self.plan.weight_only.items()},
            "quantized_tensors": len(self.plan.tensors),
            "float_tensors": _reasons(self.plan.float_tensors),
            "saturation_guard": {"mode": self.guard, "reason": self.guard_reason,
                                 "pairs_adjusted": self.plan.pairs_fixed, "uint8_weight_layers": self.plan.uint8_layers,
                                 **platform_report()},
            "bias_correction": {**bias_correction_summary(self.config, self.plan, self.record),
                                **({"check": self.output_check["bias_correction"]}
                                   if "bias_correction" in self.output_check else {})},
            "prepare": list(self.prepared.notes),
            "size_bytes": {"original": orig, "deploy": dep, "ratio": round(dep / max(orig, 1), 4)},
            **nuq,
        }

    def paths(self, outdir, prefix: str | None = None) -> dict[str, Path]:
        out = Path(outdir)
        name = prefix or self.prepared.name
        return {k: out / f.format(name=name) for k, f in OUTPUT_FILES.items()}

    def save(self, outdir, prefix: str | None = None, compact: bool = False) -> dict[str, Path]:
        """Write the AMCT-named outputs into ``outdir`` (atomically, under a folder lock); returns the paths.

        ``compact``: the deploy model stores few-level (NUQ) weights bit-packed with their codebook,
        expanded by ONNX Runtime at load into the same int8 model (:func:`amct_nb.export.compact_weights`)."""
        check_output_dir(outdir, self.prepared.source)
        paths = self.paths(outdir, prefix)
        large = is_large(self.prepared.model)  # the modified model then shares the prepared model's weights
        files = {
            "fake_quant": self.fake_quant_model,
            "deploy": compact_weights(self.deploy_model)[0] if compact else self.deploy_model,
            "modified": modified_model_for(self.prepared, self.config, paths["config"], paths["record"],
                                           light=large),
            "config": self.config.to_json(self.prepared.layers),
            "record": self.record.to_text(),
            "quant_json": json.dumps(fusion_info_of(self.prepared), indent=2) + "\n",
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
                    if isinstance(content, onnx.ModelProto) and key == "modified" and large:
                        save_model_file(content, target, weights=self.prepared.model)  # its weights: the model's
                    elif isinstance(content, onnx.ModelProto):
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
                raise os_error(out, e) from e
            finally:
                shutil.rmtree(stage, ignore_errors=True)
        log.info("saved %s", ", ".join(str(p) for p in paths.values()))
        return paths
