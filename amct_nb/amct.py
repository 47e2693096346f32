"""AMCT's function names and files, for users migrating from Huawei's amct_onnx.

The AMCT flow and its amct-nb equivalent (the one line that changes is marked)::

    import amct_nb.amct as amct                     # was: import amct_onnx as amct
    amct.create_quant_config("tmp/config.json", "model.onnx", skip_layers=[], batch_num=2)
    amct.quantize_model("tmp/config.json", "model.onnx", "tmp/modified_model.onnx", "tmp/record.txt")
    sess = amct.InferenceSession("tmp/modified_model.onnx")   # was: ort.InferenceSession(path, amct.AMCT_SO)
    for batch in batches[:2]:
        sess.run(None, {"input": batch})             # statistics are collected while it runs
    amct.save_model("tmp/modified_model.onnx", "tmp/record.txt", "outputs/model")

AMCT needs a compiled onnxruntime custom-op library (``AMCT_SO``) for calibration; amct-nb
observes tensors as extra outputs of a plain ONNX Runtime session, so nothing is compiled.
``AMCT_SO`` still exists (plain SessionOptions) so old code runs, but a session made with it
records nothing, and ``save_model`` then says the record is empty and what to change.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from .calibrate import Prepared, build, fusion_info, modified_model_for, prepare
from .config import LayerConfig, QuantConfig
from .errors import ConfigError, ModelError, OutputError
from .feeds import check_feed, input_specs
from .io import atomic_write_text, save_model_file
from .model import load_model
from .observe import make_session, with_outputs
from .plan import record_from_stats
from .record import Record
from .registry import find_layers
from .stats import TensorStats
from .textproto import parse_textproto

__all__ = [
    "create_quant_config", "quantize_model", "save_model", "InferenceSession", "AMCT_SO",
    "accuracy_based_auto_calibration",
]

#: Kept so that code written for AMCT runs; use :class:`InferenceSession` to calibrate.
AMCT_SO = ort.SessionOptions()


def _cfg_from_definition(path) -> QuantConfig:
    """AMCT's simple config (.cfg, protobuf text of AMCTConfig) -> QuantConfig."""
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"config_defination file not found: {p}")
    d = parse_textproto(p.read_text(), where=str(p))
    one = lambda k, default: d.get(k, [default])[-1]
    cfg = QuantConfig()
    cfg.batch_num = int(one("batch_num", 1))
    cfg.activation_offset = bool(one("activation_offset", True))
    cfg.do_fusion = bool(one("do_fusion", True))
    cfg.skip_layers = [str(s) for s in d.get("skip_layers", [])]
    cfg.skip_layer_types = [str(s) for s in d.get("skip_layer_types", [])]
    cfg.skip_fusion_layers = [str(s) for s in d.get("skip_fusion_layers", [])]

    def layer_cfg(block: dict, base: LayerConfig) -> LayerConfig:
        lc = LayerConfig(**base.__dict__)
        if "arq_quantize" in block:
            arq = block["arq_quantize"][-1]
            lc.channel_wise = bool(arq.get("channel_wise", [lc.channel_wise])[-1])
            lc.wts_bits = int(arq.get("quant_bits", [8])[-1])
        if "ifmr_quantize" in block:
            lc.act_algo = "mse"
            lc.asymmetric = bool(block["ifmr_quantize"][-1]["asymmetric"][-1]) if "asymmetric" in block["ifmr_quantize"][-1] else None
        if "hfmg_quantize" in block:
            lc.act_algo = "mse"
        for ours in ("minmax_quantize", "percentile_quantize", "entropy_quantize", "mse_quantize"):
            if ours in block:
                lc.act_algo = ours.split("_")[0]
                if ours == "percentile_quantize" and "percentile" in block[ours][-1]:
                    lc.percentile = float(block[ours][-1]["percentile"][-1])
        return lc

    if "common_config" in d:
        cfg.default = layer_cfg(d["common_config"][-1], cfg.default)
    for item in d.get("override_layer_configs", []):
        name = item.get("layer_name", [None])[-1]
        if name:
            cfg.layers[str(name)] = layer_cfg(item.get("calibration_config", [{}])[-1], cfg.default)
    cfg.__dict__["_type_overrides"] = {
        str(item.get("layer_type", [""])[-1]): layer_cfg(item.get("calibration_config", [{}])[-1], cfg.default)
        for item in d.get("override_layer_types", [])
    }
    if "nuq_config" in d:
        raise ConfigError(f"{p}: nuq_config: non-uniform quantization is not part of calibrate; use amct-nb nuq")
    return cfg


def create_quant_config(config_file, model_file, skip_layers=None, batch_num=1, activation_offset=True,
                        config_defination=None, updated_model=None) -> None:
    """Write the per-layer JSON config of every quantizable layer of ``model_file``.

    With ``config_defination`` (an AMCT .cfg), ``skip_layers``, ``batch_num`` and
    ``activation_offset`` come from that file, as in AMCT. ``updated_model`` receives the model
    with every node named (unnamed nodes become ``{op_type}_{index}``).
    """
    if config_defination:
        cfg = _cfg_from_definition(config_defination)
    else:
        cfg = QuantConfig(skip_layers=list(skip_layers or []), batch_num=int(batch_num),
                          activation_offset=bool(activation_offset))
    if cfg.batch_num < 1:
        raise ConfigError(f"batch_num must be >= 1, got {cfg.batch_num}")
    p = prepare(model_file, cfg)
    overrides = cfg.__dict__.pop("_type_overrides", {})
    for l in p.layers:
        if l.op_type in overrides and l.name not in cfg.layers:
            cfg.layers[l.name] = overrides[l.op_type]
    from .plan import input_channels

    for l in p.layers:
        if l.quantizable and l.name not in cfg.layers:
            cfg.layers[l.name] = LayerConfig(**cfg.default.__dict__)
        k = input_channels(l)
        if l.name in cfg.layers and cfg.min_input_channels and k is not None and k < cfg.min_input_channels:
            cfg.layers[l.name].quant_enable = False
        if l.name in cfg.skip_layers and l.name in cfg.layers:
            cfg.layers[l.name].quant_enable = False
    bad = [s for s in cfg.skip_layers if s not in {l.name for l in p.layers}]
    cfg.skip_layers = [s for s in cfg.skip_layers if s not in bad]
    cfg.validate([l.name for l in p.layers])
    if bad:
        import warnings

        warnings.warn(f"skip_layers not in the model (ignored): {', '.join(bad)}")
    atomic_write_text(config_file, cfg.to_json(p.layers))
    if updated_model:
        from .passes.names import name_nodes

        named, _ = name_nodes(load_model(model_file))
        save_model_file(named, updated_model)


def quantize_model(config_file, model_file, modified_onnx_file, record_file) -> None:
    """Prepare the model as the config says (BN folding) and write the calibration model.

    The modified model is the BN-folded float model; the tensors to observe and the paths of the
    config and record are stored in its metadata for :class:`InferenceSession`. The record file
    is created empty (or emptied).
    """
    cfg = QuantConfig.load(config_file)
    p = prepare(model_file, cfg)
    cfg.validate([l.name for l in p.layers])
    m = modified_model_for(p, cfg, config_file, record_file)
    save_model_file(m, modified_onnx_file)
    atomic_write_text(record_file, "")


def _meta(model: onnx.ModelProto, where) -> dict:
    props = {x.key: x.value for x in model.metadata_props}
    if props.get("amct_nb.kind") != "modified":
        raise ModelError(f"{where} is not a modified model written by amct_nb.amct.quantize_model: run quantize_model first")
    return props


class InferenceSession:
    """ONNX Runtime session over a modified model that collects calibration statistics.

    Use it where AMCT used ``ort.InferenceSession(modified_model, amct.AMCT_SO)``. ``run``
    returns the model's normal outputs; after ``batch_num`` runs (from the config) the record
    file is written, as AMCT's calibration ops do.
    """

    def __init__(self, modified_onnx_file, sess_options=None, providers=None, **kwargs):
        self._path = str(modified_onnx_file)
        self._model = load_model(modified_onnx_file)
        self._meta = _meta(self._model, modified_onnx_file)
        self._tensors = json.loads(self._meta["amct_nb.observe"])
        self._outputs = [o.name for o in self._model.graph.output]
        self._session = make_session(with_outputs(self._model, self._tensors), options=sess_options)
        self._stats = {t: TensorStats(t) for t in self._tensors}
        self._specs = input_specs(self._model)
        self.batch_num = int(self._meta.get("amct_nb.batch_num", "1"))
        self.batches = 0

    def get_inputs(self):
        return self._session.get_inputs()

    def get_outputs(self):
        return [o for o in self._session.get_outputs() if o.name in self._outputs]

    def run(self, output_names, input_feed, run_options=None):
        feed = check_feed(input_feed, self._specs, self.batches)
        names = list(output_names) if output_names else self._outputs
        if self.batches >= self.batch_num:
            return self._session.run(names, feed, run_options)
        res = self._session.run(names + self._tensors, feed, run_options)
        n = next(iter(feed.values())).shape[0] if self._specs and self._specs[0].batch_dynamic else 1
        for t, v in zip(self._tensors, res[len(names):]):
            self._stats[t].update(v, samples=n)
        self.batches += 1
        if self.batches == self.batch_num:
            self._write_record()
        return res[: len(names)]

    def _write_record(self):
        cfg = QuantConfig.load(self._meta["amct_nb.config_file"])
        layers = find_layers(self._model)
        from .calibrate import resolve_guard

        guard, _ = resolve_guard(cfg.saturation_guard)
        rec, _, _ = record_from_stats(self._model, layers, cfg, self._stats, guard)
        atomic_write_text(self._meta["amct_nb.record_file"], rec.to_text())


def save_model(modified_onnx_file, record_file, save_path) -> dict:
    """Write ``<save_path>_fake_quant_model.onnx``, ``<save_path>_deploy_model.onnx`` and
    ``<save_path>_quant.json`` from a modified model and a filled record."""
    model = load_model(modified_onnx_file)
    meta = _meta(model, modified_onnx_file)
    text = Path(record_file).read_text() if Path(record_file).exists() else ""
    if not text.strip():
        raise ConfigError(
            f"the record {record_file} is empty: run batch_num calibration batches through "
            "amct_nb.amct.InferenceSession(modified_model) (it replaces ort.InferenceSession(modified_model, amct.AMCT_SO)) "
            "before save_model"
        )
    record = Record.from_text(text, where=str(record_file))
    cfg = QuantConfig.load(meta["amct_nb.config_file"])
    p = Prepared(model, model, find_layers(model), json.loads(meta.get("amct_nb.notes", "[]")),
                 meta.get("amct_nb.source") or None)
    result = build(p, cfg, {}, record=record)
    prefix = Path(save_path)
    paths = {
        "fake_quant": Path(f"{prefix}_fake_quant_model.onnx"),
        "deploy": Path(f"{prefix}_deploy_model.onnx"),
        "quant_json": Path(f"{prefix}_quant.json"),
    }
    save_model_file(result.fake_quant_model, paths["fake_quant"])
    save_model_file(result.deploy_model, paths["deploy"])
    atomic_write_text(paths["quant_json"], json.dumps(fusion_info(p), indent=2) + "\n")
    return paths


def accuracy_based_auto_calibration(*args, **kwargs):
    raise NotImplementedError("accuracy_based_auto_calibration is not available yet in amct-nb")
