"""AMCT's simple config file (``.cfg``, protobuf text of ``AMCTConfig``) read into a QuantConfig.

As AMCT's protobuf parser does, field names the proto does not have are refused (with a close match and the
fields accepted there). Fields for features amct-nb does not have load only at AMCT's defaults, so that the
files AMCT's tools write keep loading; any other value is refused, saying why.
"""

from __future__ import annotations

from pathlib import Path

from ..config import LayerConfig, NuqRequest, QuantConfig, check_bins, layer_types, refuse, require_default
from ..errors import ConfigError
from .textproto import check_fields, parse_textproto

__all__ = ["config_from_definition", "AMCT_CONFIG_FIELDS", "CALIBRATION_CONFIG_FIELDS"]

_OUR_ALGOS = ("minmax_quantize", "percentile_quantize", "entropy_quantize", "mse_quantize")
_DST = {"dst_type": str}
#: ``CalibrationConfig`` of AMCT's proto, plus amct-nb's own activation algorithms
CALIBRATION_CONFIG_FIELDS = {
    "arq_quantize": {"channel_wise": bool, "quant_bits": int},
    "ada_quantize": ...,
    "ifmr_quantize": {"search_range_start": float, "search_range_end": float, "search_step": float,
                      "max_percentile": float, "min_percentile": float, "asymmetric": bool, **_DST},
    "hfmg_quantize": {"num_of_bins": int, "asymmetric": bool, **_DST},
    "dmq_balancer": ...,
    "minmax_quantize": {}, "percentile_quantize": {"percentile": float}, "entropy_quantize": {}, "mse_quantize": {},
}
#: ``AMCTConfig`` of AMCT's ONNX proto
AMCT_CONFIG_FIELDS = {
    "batch_num": int, "activation_offset": bool, "skip_layers": str, "skip_layer_types": str,
    "nuq_config": {"mapping_file": str, "nuq_quantize": {"num_steps": int, "num_of_iteration": int}},
    "joint_quant": bool, "fakequant_precision_mode": str, "common_config": CALIBRATION_CONFIG_FIELDS,
    "override_layer_types": {"layer_type": str, "calibration_config": CALIBRATION_CONFIG_FIELDS},
    "override_layer_configs": {"layer_name": str, "calibration_config": CALIBRATION_CONFIG_FIELDS},
    "do_fusion": bool, "skip_fusion_layers": str, "tensor_quantize": ...,
}
#: ifmr_quantize's search parameters at AMCT's defaults (amct-nb reads ifmr as its MSE search)
_IFMR_CFG_DEFAULTS = {"search_range_start": 0.7, "search_range_end": 1.3, "search_step": 0.01,
                      "max_percentile": 0.999999, "min_percentile": 0.999999}
_NO_IFMR = "its ifmr is the MSE search over the calibration histogram, without IFMR's percentile and search range"
_INT8 = "activations are quantized to int8 only"


def _one_of(block: dict, names, where: str) -> str | None:
    """The one of ``names`` in ``block`` (a proto oneof: two are refused)."""
    given = [n for n in names if n in block]
    if len(given) > 1:
        raise ConfigError(f"{where}: {' and '.join(given)} are alternatives (one oneof of AMCT's proto): keep one")
    return given[0] if given else None


def _layer_config(block: dict, base: LayerConfig, where: str) -> LayerConfig:
    """One ``calibration_config`` block over ``base``."""
    lc = LayerConfig(**base.__dict__)
    wts = _one_of(block, ("arq_quantize", "ada_quantize"), where)
    if wts == "ada_quantize":
        raise refuse(where, "ada_quantize", "AdaRound is not implemented", "use arq_quantize or remove it")
    if "dmq_balancer" in block:
        raise refuse(where, "dmq_balancer", "DMQ balancing is not implemented")
    if wts == "arq_quantize":
        arq = block["arq_quantize"][-1]
        lc.channel_wise = bool(arq.get("channel_wise", [lc.channel_wise])[-1])
        lc.wts_bits = int(arq.get("quant_bits", [8])[-1])
    act = _one_of(block, ("ifmr_quantize", "hfmg_quantize", *_OUR_ALGOS), where)
    if act in ("ifmr_quantize", "hfmg_quantize"):
        b = {k: v[-1] for k, v in block[act][-1].items()}
        at = f"{where}: {act}"
        for k, default in _IFMR_CFG_DEFAULTS.items():
            if k in b:
                require_default(at, k, b[k], default, _NO_IFMR, cfg=True)
        if "num_of_bins" in b:
            check_bins(at, b["num_of_bins"], cfg=True)
        require_default(at, "dst_type", b.get("dst_type", "INT8"), "INT8", _INT8, cfg=True)
        lc.act_algo = "mse"
        lc.asymmetric = bool(b["asymmetric"]) if "asymmetric" in b else None
    elif act is not None:
        lc.act_algo = act.split("_")[0]
        if act == "percentile_quantize" and "percentile" in block[act][-1]:
            lc.percentile = float(block[act][-1]["percentile"][-1])
    return lc.validate(where)


def _overrides(d: dict, key: str, id_field: str, where: str):
    """(id, calibration_config) of each ``override_layer_types`` / ``override_layer_configs`` entry."""
    for item in d.get(key, []):
        name = item.get(id_field, [None])[-1]
        if not name or "calibration_config" not in item:
            raise ConfigError(f"{where}: each {key} entry needs a {id_field} and a calibration_config {{ ... }} block")
        yield str(name), item["calibration_config"][-1], f"{where}: {key} '{name}': calibration_config"


def config_from_definition(path) -> QuantConfig:
    """A QuantConfig from AMCT's ``.cfg`` (``batch_num``, ``activation_offset``, ``do_fusion``,
    ``skip_layers``, ``skip_layer_types``, ``skip_fusion_layers``, ``common_config``,
    ``override_layer_configs``, ``override_layer_types``, ``nuq_config``: ``QuantConfig.nuq``, applied to
    the model's layers by :func:`amct_nb.ptq.with_nuq` when the config is made for a model)."""
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"config_defination file not found: {p}")
    d = parse_textproto(p.read_text(), where=str(p))
    check_fields(d, AMCT_CONFIG_FIELDS, str(p))
    nuq = d.get("nuq_config", [None])[-1]

    def one(k, default):
        return d.get(k, [default])[-1]

    require_default(str(p), "joint_quant", one("joint_quant", False), False,
                    "it decides itself which Add/Concat tensors get int8", cfg=True)
    if "fakequant_precision_mode" in d:
        raise refuse(str(p), "fakequant_precision_mode", "scales stay float32; the fp16 rounding for Ascend is not "
                     "implemented")
    if "tensor_quantize" in d:
        raise refuse(str(p), "tensor_quantize", "the Add/Concat tensors next to quantized layers get Q/DQ "
                     "automatically, and MaxPool none of its own")
    cfg = QuantConfig()
    cfg.batch_num = int(one("batch_num", 1))
    cfg.activation_offset = bool(one("activation_offset", True))
    cfg.do_fusion = bool(one("do_fusion", True))
    cfg.skip_layers = [str(s) for s in d.get("skip_layers", [])]
    cfg.skip_layer_types = layer_types(d.get("skip_layer_types", []), str(p), "skip_layer_types")
    cfg.skip_fusion_layers = [str(s) for s in d.get("skip_fusion_layers", [])]
    if "common_config" in d:
        cfg.default = _layer_config(d["common_config"][-1], cfg.default, f"{p}: common_config")
    for name, block, where in _overrides(d, "override_layer_configs", "layer_name", str(p)):
        cfg.layers[name] = _layer_config(block, cfg.default, where)
    for t, block, where in _overrides(d, "override_layer_types", "layer_type", str(p)):
        (t,) = layer_types([t], str(p), "override_layer_types", override=True)
        cfg.type_overrides[t] = _layer_config(block, cfg.default, where)
    if nuq is not None:
        block = (nuq.get("nuq_quantize") or [{}])[-1]
        cfg.nuq = NuqRequest(int(block.get("num_steps", [32])[-1]), int(block.get("num_of_iteration", [1])[-1]),
                             str(nuq["mapping_file"][-1]) if nuq.get("mapping_file") else None)
    return cfg
