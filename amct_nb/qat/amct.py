"""AMCT's PyTorch API (``import amct_nb.qat.amct as amct`` where a script had ``import amct_pytorch as amct``).

Retrain (QAT): ``create_quant_retrain_config`` -> ``create_quant_retrain_model`` (a trainable module; the
user's own loop trains it) -> ``save_quant_retrain_model``; ``restore_quant_retrain_model`` continues from a
``state_dict`` checkpoint. PTQ of a torch model: ``create_quant_config`` -> ``quantize_model`` (a module the
calibration batches run through) -> ``save_model``.

The torch model is exported to ONNX (TorchScript exporter, opset 17), so the same engine and the same
outputs serve torch and ONNX users. As in AMCT, the retrain module's BatchNorms keep training with batch
statistics in your loop (in train mode; running statistics in eval mode), and ``save_quant_retrain_model``
folds them into the convolutions (``model.qat.freeze_bn()`` folds them earlier, for good). Layer names in the
configs are the exported graph's node names (``/layer1/conv1/Conv``), not the torch module names. Like
AMCT's ULQ, the returned retrain module initialises its activation clips during its first ``batch_num``
training forwards (here from the calibration statistics of those batches, as PTQ would); weights use
learnable per-channel (or per-tensor) scales initialised by ARQ. What differs from AMCT: ``arq_retrain``
weights learn their scales rather than recomputing max-abs each step, the saturation guard runs inside the
training graph, and pruning blocks of a retrain ``.cfg`` are refused (not supported).
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..amct import create_quant_config as _onnx_create_quant_config
from ..amct import quantize_model as _onnx_quantize_model
from ..amct import save_model, write_amct_files
from ..amct.retrain_cfg import check_retrain_json, read_retrain_cfg, retrain_layers
from ..amct.session import InferenceSession
from ..config import QuantConfig, UnsupportedSettingError
from ..errors import ConfigError
from ..ir import atomic_write_text
from ..ptq import build, collect_stats, fusion_info_of, prepare
from .model import QatModel

__all__ = ["create_quant_retrain_config", "create_quant_retrain_model", "restore_quant_retrain_model",
           "save_quant_retrain_model", "create_quant_config", "quantize_model", "save_model", "RetrainModule"]

_DST = {"INT8": 8, "INT4": 4}


def _inputs(input_data) -> tuple:
    return tuple(input_data) if isinstance(input_data, (tuple, list)) else (input_data,)


def export_onnx(model: nn.Module, input_data, path, input_names=None, output_names=None, dynamic_axes=None,
                keep_bn: bool = False) -> Path:
    """``model`` as ONNX at ``path`` (eval mode, TorchScript exporter, batch axis dynamic). ``keep_bn``: no
    constant folding, so BatchNormalization stays a node (preparation folds it and knows where it went)."""
    args = _inputs(input_data)
    names = list(input_names or [f"input{i}" if len(args) > 1 else "input" for i in range(len(args))])
    outs = list(output_names or ["output"])
    axes = dynamic_axes if dynamic_axes is not None else {n: {0: "batch"} for n in names + outs}
    was = model.training
    model.eval()
    try:
        torch.onnx.export(model, args, str(path), input_names=names, output_names=outs, dynamic_axes=axes,
                          opset_version=17, do_constant_folding=not keep_bn, dynamo=False)
    finally:
        model.train(was)
    return Path(path)


# -- retrain config --------------------------------------------------------------------------------
def _retrain_cfg_defaults(path) -> dict:
    """The settings of an AMCT retrain ``.cfg`` (None: the defaults): ``batch_num``, global data and weight
    settings, skips and overrides (see :func:`amct_nb.amct.retrain_cfg.read_retrain_cfg`)."""
    return read_retrain_cfg(path)


def create_quant_retrain_config(config_file, model: nn.Module, input_data, config_defination=None) -> None:
    """Write the retrain JSON (AMCT's format: ``version``, ``batch_num``, per layer ``retrain_enable``,
    ``retrain_data_config`` and ``retrain_weight_config``) for every quantizable layer of ``model``."""
    base = _retrain_cfg_defaults(config_defination or None)
    with tempfile.TemporaryDirectory() as tmp:
        p = prepare(str(export_onnx(model, input_data, Path(tmp) / "model.onnx", keep_bn=True)))
    d = {"version": 1, "batch_num": base["batch_num"], **retrain_layers(base, p.layers)}
    _config_from_retrain(d)  # validate before writing
    atomic_write_text(config_file, json.dumps(d, indent=4) + "\n")


def _config_from_retrain(d: dict) -> tuple[QuantConfig, dict]:
    """(QuantConfig, per-layer clip overrides) of a retrain JSON; errors name the layer and the field."""
    check_retrain_json(d)  # unknown keys, algo, fixed_min
    cfg = QuantConfig(min_output_sqnr_db=None, batch_num=int(d.get("batch_num", 1)), bias_correction=False)
    clips = {}
    for name, v in d.items():
        if not isinstance(v, dict):
            continue
        data, wts = v.get("retrain_data_config") or {}, v.get("retrain_weight_config") or {}
        if data.get("dst_type", "INT8") != "INT8":
            raise UnsupportedSettingError(f"layer {name}: activation dst_type {data.get('dst_type')} is not "
                                          "supported: amct-nb trains int8 activations (A8W8, A8W4)")
        if wts.get("algo", "arq_retrain") not in ("arq_retrain", "ulq_retrain"):
            raise ConfigError(f"layer {name}: retrain_weight_config algo {wts.get('algo')!r} is unknown: use "
                              "arq_retrain or ulq_retrain")
        bits = _DST.get(wts.get("dst_type", "INT8"))
        if bits is None:
            raise ConfigError(f"layer {name}: weight dst_type {wts.get('dst_type')!r}: use INT8 or INT4")
        cfg.set(name, quant_enable=bool(v.get("retrain_enable", True)), channel_wise=bool(wts.get("channel_wise",
                                                                                               True)), wts_bits=bits)
        if "clip_max" in data or "clip_min" in data:
            lo, hi = float(data.get("clip_min", 0.0)), float(data.get("clip_max", 0.0))
            if not lo < 0 < hi and not (lo == 0 and hi > 0):
                raise ConfigError(f"layer {name}: clip_min {lo} / clip_max {hi}: need clip_min <= 0 < clip_max")
            clips[name] = (lo, hi, bool(data.get("fixed_min", False)))
    return cfg, clips


# -- the retrain module ----------------------------------------------------------------------------
class RetrainModule(nn.Module):
    """The trainable module :func:`create_quant_retrain_model` returns (see the module docstring)."""

    def __init__(self, onnx_path: Path, config_file, record_file, input_data):
        super().__init__()
        text = Path(config_file).read_text()
        self.cfg, self.clips = _config_from_retrain(json.loads(text))
        self.prepared = prepare(str(onnx_path), self.cfg)
        self.record_file = Path(record_file)
        feeds = [np.asarray(t.detach().cpu().numpy(), np.float32) for t in _inputs(input_data)]
        ptq = build(self.prepared, self.cfg, collect_stats(self.prepared, [self._feed(feeds)], progress=False))
        self.qat = QatModel(ptq, train_bn=True)
        self._apply_clips()
        digest = hashlib.sha256(text.encode()).digest()[:16]
        self.register_buffer("amct_nb_config", torch.tensor(list(digest), dtype=torch.uint8))
        self.register_buffer("amct_nb_init_batches", torch.tensor(0))
        self._seen: list[dict] = []

    def _feed(self, arrays: list) -> dict:
        names = [i.name for i in self.prepared.model.graph.input
                 if i.name not in {t.name for t in self.prepared.model.graph.initializer}]
        return dict(zip(names, arrays))

    def _apply_clips(self) -> None:
        plan = self.qat.ptq.plan
        for name, (lo, hi, fixed) in self.clips.items():
            if name not in plan.layers:
                continue
            act = self.qat.graph.tensor_hook(plan.layers[name].activation)
            s = (hi - lo) / (act.qmax - act.qmin)
            with torch.no_grad():
                act.scale.fill_(s)
                act.zero_point.fill_(float(np.clip(np.round(act.qmin - lo / s), act.qmin, act.qmax)))
            act.zero_point.requires_grad_(not fixed)

    def forward(self, *inputs):
        if self.training and int(self.amct_nb_init_batches) < self.cfg.batch_num:
            self._initialise(inputs)
        return self.qat(*inputs)

    def _initialise(self, inputs) -> None:
        """AMCT's ULQ initialisation: the first ``batch_num`` training batches set the clips (PTQ on them)."""
        self._seen.append(self._feed([np.asarray(t.detach().cpu().numpy(), np.float32) for t in inputs]))
        self.amct_nb_init_batches += 1
        if int(self.amct_nb_init_batches) < self.cfg.batch_num:
            return
        ptq = build(self.prepared, self.cfg, collect_stats(self.prepared, self._seen, progress=False))
        with torch.no_grad():
            for t, tq in ptq.plan.tensors.items():
                act = self.qat.graph.tensor_hook(t)
                if act is not None:
                    act.scale.fill_(float(tq.scale))
                    act.zero_point.fill_(float(tq.zero_point))
            for name, lq in ptq.plan.layers.items():
                if name in self.qat._wkey:
                    self.qat.weights[self.qat._wkey[name]].scale.copy_(torch.from_numpy(
                        np.asarray(lq.w_scale, np.float32).reshape(-1 if lq.axis is not None else ())))
        self._apply_clips()
        self._seen = []


def create_quant_retrain_model(config_file, model: nn.Module, record_file, input_data) -> RetrainModule:
    """A trainable module with fake quantization of every enabled layer's input and weight (AMCT's call)."""
    with tempfile.TemporaryDirectory(prefix="amct-nb-retrain-") as tmp:  # read once, by prepare
        return RetrainModule(export_onnx(model, input_data, Path(tmp) / "model.onnx", keep_bn=True), config_file,
                             record_file, input_data)


def restore_quant_retrain_model(config_file, model: nn.Module, record_file, input_data, pth_file,
                                state_dict_name=None) -> RetrainModule:
    """The same retrain module, with the weights and grids of a saved ``state_dict`` (the config must be
    the one the checkpoint was trained with)."""
    m = create_quant_retrain_model(config_file, model, record_file, input_data)
    try:
        ck = torch.load(pth_file, map_location="cpu", weights_only=False)
    except Exception as e:  # noqa: BLE001 - any unreadable file
        raise ConfigError(f"{pth_file} is not a torch checkpoint ({e})") from e
    sd = ck[state_dict_name] if state_dict_name else ck
    if not isinstance(sd, dict) or "amct_nb_config" not in sd:
        raise ConfigError(f"{pth_file}{f' [{state_dict_name!r}]' if state_dict_name else ''} holds no state_dict of a "
                          "model made by create_quant_retrain_model (pass state_dict_name= if it is nested)")
    if not torch.equal(sd["amct_nb_config"], m.amct_nb_config):
        raise ConfigError(f"{pth_file} was trained with another retrain config than {config_file}: restore with the "
                          "config used at create_quant_retrain_model (AMCT requires the identical config)")
    m.load_state_dict(sd)
    return m


def save_quant_retrain_model(config_file, model: RetrainModule, record_file, save_path, input_data,
                             input_names=None, output_names=None, dynamic_axes=None) -> dict:
    """Write the learned record and ``<save_path>_fake_quant_model.onnx`` / ``_deploy_model.onnx``."""
    if not isinstance(model, RetrainModule):
        raise ConfigError("save_quant_retrain_model takes the module create_quant_retrain_model (or "
                          "restore_quant_retrain_model) returned")
    model.eval()
    res = model.qat.export()
    atomic_write_text(record_file, res.record.to_text())
    return write_amct_files(res, save_path, fusion_info_of(res.prepared))


# -- PTQ of a torch model --------------------------------------------------------------------------
def _exported_path(config_file) -> Path:
    return Path(config_file).with_name(Path(config_file).stem + "_exported_model.onnx")


def create_quant_config(config_file, model: nn.Module, input_data, skip_layers=None, batch_num=1,
                        activation_offset=True, config_defination=None) -> None:
    """AMCT's PyTorch ``create_quant_config``: the model is exported beside ``config_file``
    (``<stem>_exported_model.onnx``) and configured as an ONNX model."""
    path = _exported_path(config_file)
    path.parent.mkdir(parents=True, exist_ok=True)
    export_onnx(model, input_data, path)
    _onnx_create_quant_config(config_file, str(path), skip_layers, batch_num, activation_offset, config_defination)


class CalibrationModule(nn.Module):
    """What :func:`quantize_model` returns: run the calibration batches through it (torch in, torch out)."""

    def __init__(self, modified_onnx_file):
        super().__init__()
        self.session = InferenceSession(modified_onnx_file)
        self.names = [i.name for i in self.session.get_inputs()]

    def forward(self, *inputs):
        outs = self.session.run(None, {n: t.detach().cpu().numpy() for n, t in zip(self.names, inputs)})
        res = tuple(torch.from_numpy(np.asarray(o)) for o in outs)
        return res[0] if len(res) == 1 else res


def quantize_model(config_file, modfied_onnx_file, record_file, model: nn.Module, input_data, input_names=None,
                   output_names=None, dynamic_axes=None) -> CalibrationModule:
    """AMCT's PyTorch ``quantize_model`` (its spelling of ``modfied``): export, write the modified model, and
    return the module that records ``batch_num`` calibration batches; then :func:`save_model`."""
    path = _exported_path(config_file)
    export_onnx(model, input_data, path, input_names, output_names, dynamic_axes)
    _onnx_quantize_model(config_file, str(path), modfied_onnx_file, record_file)
    return CalibrationModule(modfied_onnx_file)
