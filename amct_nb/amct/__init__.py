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
import warnings
from pathlib import Path

import onnxruntime as ort

from ..analysis import CosineSimilarity as CosineSimilaritySensitivity
from ..analysis import MseSensitivity, SensitivityBase
from ..auto import AutoCalibrationStrategyBase, BinarySearchStrategy
from ..config import LayerConfig, QuantConfig
from ..errors import ConfigError
from ..ir import atomic_write_text, load_model, save_model_file
from ..ops import find_layers
from ..passes import Change, name_nodes
from ..ptq import Prepared, build, input_channels, modified_model_for, prepare, with_nuq
from ..record import Record
from .auto import AutoCalibrationEvaluatorBase, accuracy_based_auto_calibration
from .cfg import config_from_definition
from .convert import convert_qat_model
from .session import InferenceSession, modified_metadata

__all__ = [
    "create_quant_config", "quantize_model", "save_model", "write_amct_files", "InferenceSession", "AMCT_SO",
    "accuracy_based_auto_calibration", "AutoCalibrationEvaluatorBase", "convert_qat_model",
    "AutoCalibrationStrategyBase", "BinarySearchStrategy", "SensitivityBase", "CosineSimilaritySensitivity",
    "MseSensitivity",
]

#: Kept so that code written for AMCT runs; use :class:`InferenceSession` to calibrate.
AMCT_SO = ort.SessionOptions()


def create_quant_config(config_file, model_file, skip_layers=None, batch_num=1, activation_offset=True,
                        config_defination=None, updated_model=None) -> None:
    """Write the per-layer JSON config of every quantizable layer of ``model_file``.

    With ``config_defination`` (an AMCT .cfg), ``skip_layers``, ``batch_num`` and
    ``activation_offset`` come from that file, as in AMCT. ``updated_model`` receives the model
    with every node named (unnamed nodes become ``{op_type}_{index}``).
    """
    if config_defination:
        cfg = config_from_definition(config_defination)
    else:
        cfg = QuantConfig(skip_layers=list(skip_layers or []), batch_num=int(batch_num),
                          activation_offset=bool(activation_offset))
    if cfg.batch_num < 1:
        raise ConfigError(f"batch_num must be >= 1, got {cfg.batch_num}")
    p = prepare(model_file, cfg)
    if cfg.nuq is not None:  # AMCT's nuq_config: NUQ on the layers that can take it (the mapping file's, if given)
        req, cfg.nuq = cfg.nuq, None
        cfg = with_nuq(cfg, p.layers, req.num_steps, req.num_of_iteration, mapping_file=req.mapping_file)
    for l in p.layers:
        if l.quantizable and l.name not in cfg.layers:
            cfg.layers[l.name] = LayerConfig(**cfg.for_layer(l.name, l.op_type).__dict__)
        k = input_channels(l)
        if l.name in cfg.layers and cfg.min_input_channels and k is not None and k < cfg.min_input_channels:
            cfg.layers[l.name].quant_enable = False
        if l.name in cfg.skip_layers and l.name in cfg.layers:
            cfg.layers[l.name].quant_enable = False
    cfg.type_overrides = {}  # every layer is listed now
    bad = [s for s in cfg.skip_layers if s not in {l.name for l in p.layers}]
    cfg.skip_layers = [s for s in cfg.skip_layers if s not in bad]
    cfg.validate([l.name for l in p.layers])
    if bad:
        warnings.warn(f"skip_layers not in the model (ignored): {', '.join(bad)}", stacklevel=2)
    atomic_write_text(config_file, cfg.to_json(p.layers))
    if updated_model:
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
    save_model_file(modified_model_for(p, cfg, config_file, record_file), modified_onnx_file)
    atomic_write_text(record_file, "")


def save_model(modified_onnx_file, record_file, save_path) -> dict:
    """Write ``<save_path>_fake_quant_model.onnx``, ``<save_path>_deploy_model.onnx`` and
    ``<save_path>_quant.json`` from a modified model and a filled record."""
    model = load_model(modified_onnx_file)
    meta = modified_metadata(model, modified_onnx_file)
    text = Path(record_file).read_text() if Path(record_file).exists() else ""
    if not text.strip():
        raise ConfigError(
            f"the record {record_file} is empty: run batch_num calibration batches through "
            "amct_nb.amct.InferenceSession(modified_model) "
            "(it replaces ort.InferenceSession(modified_model, amct.AMCT_SO)) "
            "before save_model"
        )
    record = Record.from_text(text, where=str(record_file))
    cfg = QuantConfig.load(meta["amct_nb.config_file"])
    changes = [Change("note", n) for n in json.loads(meta.get("amct_nb.notes", "[]"))]
    fusion = json.loads(meta.get("amct_nb.fusion", "{}"))
    p = Prepared(model, model, find_layers(model), changes, meta.get("amct_nb.source") or None)
    return write_amct_files(build(p, cfg, {}, record=record), save_path, fusion)


def write_amct_files(result, save_path, fusion: dict) -> dict:
    """``<save_path>_fake_quant_model.onnx``, ``<save_path>_deploy_model.onnx`` and ``<save_path>_quant.json``
    of a result (each written atomically); returns the paths."""
    prefix = Path(save_path)
    paths = {
        "fake_quant": Path(f"{prefix}_fake_quant_model.onnx"),
        "deploy": Path(f"{prefix}_deploy_model.onnx"),
        "quant_json": Path(f"{prefix}_quant.json"),
    }
    save_model_file(result.fake_quant_model, paths["fake_quant"])
    save_model_file(result.deploy_model, paths["deploy"])
    atomic_write_text(paths["quant_json"], json.dumps({"fusion_info": fusion}, indent=2) + "\n")
    return paths
