"""AMCT's retrain configs: the ``.cfg`` (protobuf text of ``AMCTRetrainConfig``) and the per-layer retrain JSON.

:func:`read_retrain_cfg` reads a .cfg into global settings, skips and overrides; :func:`retrain_layers` turns
them into the retrain JSON's layer entries for a model's layers (precedence as in AMCT:
``override_layer_configs`` > ``override_layer_types`` > the global blocks; fields an override leaves out come
from the global settings). Layer types are ONNX op types or AMCT PyTorch's module types (``Conv2d``,
``Linear``...). :func:`check_retrain_json` refuses retrain JSON keys it does not know and AMCT values amct-nb
cannot honour. Used by :mod:`amct_nb.qat.amct`; nothing here needs torch.
"""

from __future__ import annotations

import difflib
import warnings
from pathlib import Path

from ..config import check_keys, layer_types, refuse, unknown_key
from ..errors import ConfigError
from .textproto import check_fields, parse_textproto

__all__ = ["read_retrain_cfg", "retrain_layers", "check_retrain_json", "RETRAIN_CONFIG_FIELDS", "TORCH_TYPES",
           "DEFAULT_RETRAIN"]

_ULQ = {"clip_max_min": {"clip_max": float, "clip_min": float}, "fixed_min": bool, "dst_type": str}
_DATA = {"ulq_quantize": _ULQ}
_WTS = {"dst_type": str, "channel_wise": bool}
_WEIGHT = {"arq_retrain": _WTS, "ulq_retrain": _WTS}
_OVERRIDE = {"retrain_data_quant_config": _DATA, "retrain_weight_quant_config": _WEIGHT, "prune_config": ...}
#: ``AMCTRetrainConfig`` of AMCT's PyTorch proto
RETRAIN_CONFIG_FIELDS = {
    "batch_num": int, "retrain_data_quant_config": _DATA, "retrain_weight_quant_config": _WEIGHT,
    "skip_layers": str, "skip_layer_types": str, "quant_skip_layers": str, "quant_skip_types": str,
    "override_layer_configs": {"layer_name": str, **_OVERRIDE},
    "override_layer_types": {"layer_type": str, **_OVERRIDE},
    "prune_config": ..., "regular_prune_skip_layers": str, "regular_prune_skip_types": str,
    "fakequant_precision_mode": str,
}
#: AMCT PyTorch's layer types, as the op types of the exported graph
TORCH_TYPES = {**{f"Conv{k}d": ["Conv"] for k in (1, 2, 3)},
               **{f"ConvTranspose{k}d": ["ConvTranspose"] for k in (1, 2, 3)}, "Linear": ["Gemm", "MatMul"]}
#: the settings without a .cfg
DEFAULT_RETRAIN = {"batch_num": 1, "skip": [], "skip_types": [], "data": {"dst_type": "INT8"},
                   "weight": {"algo": "arq_retrain", "channel_wise": True, "dst_type": "INT8"}, "types": {},
                   "layers": {}, "where": "retrain config"}
_PRUNING = "pruning is not implemented"


def _data(block: dict, where: str) -> dict:
    """The retrain JSON's ``retrain_data_config`` fields a ``retrain_data_quant_config`` block sets."""
    ulq = (block.get("ulq_quantize") or [{}])[-1]
    out = {} if "dst_type" not in ulq else {"dst_type": str(ulq["dst_type"][-1])}
    clip = (ulq.get("clip_max_min") or [None])[-1]
    if clip is not None:
        if "clip_max" not in clip or "clip_min" not in clip:
            raise ConfigError(f"{where}: ulq_quantize: clip_max_min needs both clip_max and clip_min")
        out.update(clip_max=float(clip["clip_max"][-1]), clip_min=float(clip["clip_min"][-1]))
    if "fixed_min" in ulq:
        out["fixed_min"] = bool(ulq["fixed_min"][-1])
    return out


def _weight(block: dict, where: str) -> dict:
    """The retrain JSON's ``retrain_weight_config`` fields a ``retrain_weight_quant_config`` block sets."""
    algos = [a for a in ("arq_retrain", "ulq_retrain") if a in block]
    if len(algos) > 1:
        raise ConfigError(f"{where}: arq_retrain and ulq_retrain are alternatives (a oneof of AMCT's proto): keep one")
    if not algos:
        return {}
    w = block[algos[0]][-1]
    out = {"algo": algos[0]}
    if "channel_wise" in w:
        out["channel_wise"] = bool(w["channel_wise"][-1])
    if "dst_type" in w:
        out["dst_type"] = str(w["dst_type"][-1])
    return out


def _blocks(item: dict, where: str) -> dict:
    """The data and weight settings of the global part or of one override."""
    if "prune_config" in item:
        raise refuse(where, "prune_config", _PRUNING)
    data = _data((item.get("retrain_data_quant_config") or [{}])[-1], where)
    return {"data": data, "weight": _weight((item.get("retrain_weight_quant_config") or [{}])[-1], where)}


def read_retrain_cfg(path) -> dict:
    """The settings of an AMCT retrain ``.cfg`` (None: the defaults): ``batch_num``, ``skip`` (layer names),
    ``skip_types`` (op types), global ``data`` and ``weight`` fields of the retrain JSON, and the overrides
    ``types`` (op type -> {data, weight}) and ``layers`` (name -> {data, weight})."""
    if path is None:
        return {**DEFAULT_RETRAIN, "data": dict(DEFAULT_RETRAIN["data"]), "weight": dict(DEFAULT_RETRAIN["weight"])}
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config_defination file not found: {p}")
    where = str(p)
    d = parse_textproto(p.read_text(), where=where)
    for k in ("prune_config", "regular_prune_skip_layers", "regular_prune_skip_types"):
        if k in d:
            raise refuse(where, k, _PRUNING)
    check_fields(d, RETRAIN_CONFIG_FIELDS, where)
    if "fakequant_precision_mode" in d:
        raise refuse(where, "fakequant_precision_mode", "scales stay float32; the fp16 rounding for Ascend is not "
                     "implemented")
    glob = _blocks(d, where)
    out = {"batch_num": int(d.get("batch_num", [1])[-1]), "where": where,
           "skip": [str(s) for k in ("skip_layers", "quant_skip_layers") for s in d.get(k, [])],
           "skip_types": [t for k in ("skip_layer_types", "quant_skip_types")
                          for t in layer_types(d.get(k, []), where, k, aliases=TORCH_TYPES)],
           "data": {**DEFAULT_RETRAIN["data"], **glob["data"]},
           "weight": {**DEFAULT_RETRAIN["weight"], **glob["weight"]}, "types": {}, "layers": {}}
    for key, id_field, dest in (("override_layer_types", "layer_type", "types"),
                                ("override_layer_configs", "layer_name", "layers")):
        for item in d.get(key, []):
            name = item.get(id_field, [None])[-1]
            if not name:
                raise ConfigError(f"{where}: each {key} entry needs a {id_field}")
            blocks = _blocks(item, f"{where}: {key} '{name}'")
            ids = layer_types([name], where, key, override=True, aliases=TORCH_TYPES) if dest == "types" else [name]
            for i in ids:
                out[dest][str(i)] = blocks
    return out


def retrain_layers(spec: dict, layers) -> dict:
    """The retrain JSON's entry of every quantizable layer (``layers``: amct_nb.ops.Layer) under ``spec``."""
    names = [l.name for l in layers if l.quantizable]
    for n in spec["layers"]:
        if n not in names:
            near = difflib.get_close_matches(n, names, n=3)
            hint = f" (did you mean {', '.join(near)}?)" if near else ""
            raise ConfigError(f"{spec['where']}: override_layer_configs names layer '{n}' that the model has no "
                              f"quantizable layer of{hint}: use the exported graph's node names")
    bad = [s for s in spec["skip"] if s not in names]
    if bad:
        warnings.warn(f"{spec['where']}: skip_layers not in the model (ignored): {', '.join(bad)}", stacklevel=3)
    out = {}
    for l in layers:
        if not l.quantizable:
            continue
        data, weight = dict(spec["data"]), dict(spec["weight"])
        for o in (spec["types"].get(l.op_type), spec["layers"].get(l.name)):
            if o:
                data.update(o["data"])
                weight.update(o["weight"])
        out[l.name] = {"retrain_enable": l.name not in spec["skip"] and l.op_type not in spec["skip_types"],
                       "retrain_data_config": {"algo": "ulq_quantize", **data}, "retrain_weight_config": weight}
    return out


_LAYER_KEYS = ("retrain_enable", "retrain_data_config", "retrain_weight_config")
_DATA_KEYS = ("algo", "dst_type", "clip_max", "clip_min", "fixed_min")
_WEIGHT_KEYS = ("algo", "channel_wise", "dst_type")


def _obj(v: dict, key: str, where: str) -> dict:
    b = v.get(key) or {}
    if not isinstance(b, dict):
        raise ConfigError(f"{where}: {key} must be an object")
    return b


def check_retrain_json(d: dict, where: str = "retrain config") -> None:
    """Refuse what a retrain JSON must not hold: keys amct-nb does not know (with a close match), an activation
    algorithm other than AMCT's ``ulq_quantize``, and ``fixed_min`` amct-nb cannot honour."""
    if not isinstance(d, dict):
        raise ConfigError(f"{where}: expected a JSON object at the top level")
    for name, v in d.items():
        if not isinstance(v, dict):
            if name not in ("version", "batch_num"):
                raise unknown_key(name, ("version", "batch_num"), f"{where} (a layer's entry is an object with "
                                  f"{'/'.join(_LAYER_KEYS)})", "global key")
            continue
        at = f"{where}: layer '{name}'"
        check_keys(v, _LAYER_KEYS, at)
        data, wts = _obj(v, "retrain_data_config", at), _obj(v, "retrain_weight_config", at)
        check_keys(data, _DATA_KEYS, f"{at}: retrain_data_config")
        check_keys(wts, _WEIGHT_KEYS, f"{at}: retrain_weight_config")
        if data.get("algo", "ulq_quantize") != "ulq_quantize":
            raise ConfigError(f"{at}: retrain_data_config algo {data['algo']!r} is unknown: ulq_quantize is AMCT's "
                              "only activation retrain algorithm")
        fixed = data.get("fixed_min", False)
        if not isinstance(fixed, bool):
            raise ConfigError(f"{at}: retrain_data_config fixed_min {fixed!r} must be true or false")
        if fixed and "clip_max" not in data:
            raise refuse(at, "retrain_data_config fixed_min true without clip_max/clip_min",
                         "the initial range comes from calibration, and its zero point is learned",
                         "give clip_max and clip_min 0 with it (the range it fixes at 0), or remove it")
        if fixed and float(data.get("clip_min", 0.0)) != 0.0:
            raise ConfigError(f"{at}: retrain_data_config fixed_min true holds clip_min at 0 (as in AMCT), but "
                              f"clip_min is {data['clip_min']}: set clip_min to 0, or fixed_min to false")
