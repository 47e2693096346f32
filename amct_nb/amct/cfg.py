"""AMCT's simple config file (``.cfg``, protobuf text of ``AMCTConfig``) read into a QuantConfig."""

from __future__ import annotations

from pathlib import Path

from ..config import LayerConfig, NuqRequest, QuantConfig
from ..errors import ConfigError
from .textproto import parse_textproto

__all__ = ["config_from_definition"]

_OUR_ALGOS = ("minmax_quantize", "percentile_quantize", "entropy_quantize", "mse_quantize")


def _layer_config(block: dict, base: LayerConfig) -> LayerConfig:
    """One ``calibration_config`` block over ``base``."""
    lc = LayerConfig(**base.__dict__)
    if "arq_quantize" in block:
        arq = block["arq_quantize"][-1]
        lc.channel_wise = bool(arq.get("channel_wise", [lc.channel_wise])[-1])
        lc.wts_bits = int(arq.get("quant_bits", [8])[-1])
    if "ifmr_quantize" in block:
        lc.act_algo = "mse"
        ifmr = block["ifmr_quantize"][-1]
        lc.asymmetric = bool(ifmr["asymmetric"][-1]) if "asymmetric" in ifmr else None
    if "hfmg_quantize" in block:
        lc.act_algo = "mse"
    for ours in _OUR_ALGOS:
        if ours in block:
            lc.act_algo = ours.split("_")[0]
            if ours == "percentile_quantize" and "percentile" in block[ours][-1]:
                lc.percentile = float(block[ours][-1]["percentile"][-1])
    return lc


def config_from_definition(path) -> QuantConfig:
    """A QuantConfig from AMCT's ``.cfg`` (``batch_num``, ``activation_offset``, ``do_fusion``,
    ``skip_layers``, ``skip_layer_types``, ``skip_fusion_layers``, ``common_config``,
    ``override_layer_configs``, ``override_layer_types``, ``nuq_config``: ``QuantConfig.nuq``, applied to
    the model's layers by :func:`amct_nb.ptq.with_nuq` when the config is made for a model)."""
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"config_defination file not found: {p}")
    d = parse_textproto(p.read_text(), where=str(p))
    nuq = d.get("nuq_config", [None])[-1]

    def one(k, default):
        return d.get(k, [default])[-1]

    cfg = QuantConfig()
    cfg.batch_num = int(one("batch_num", 1))
    cfg.activation_offset = bool(one("activation_offset", True))
    cfg.do_fusion = bool(one("do_fusion", True))
    cfg.skip_layers = [str(s) for s in d.get("skip_layers", [])]
    cfg.skip_layer_types = [str(s) for s in d.get("skip_layer_types", [])]
    cfg.skip_fusion_layers = [str(s) for s in d.get("skip_fusion_layers", [])]
    if "common_config" in d:
        cfg.default = _layer_config(d["common_config"][-1], cfg.default)
    for item in d.get("override_layer_configs", []):
        name = item.get("layer_name", [None])[-1]
        if name:
            cfg.layers[str(name)] = _layer_config(item.get("calibration_config", [{}])[-1], cfg.default)
    for item in d.get("override_layer_types", []):
        cfg.type_overrides[str(item.get("layer_type", [""])[-1])] = _layer_config(
            item.get("calibration_config", [{}])[-1], cfg.default)
    if nuq is not None:
        block = (nuq.get("nuq_quantize") or [{}])[-1]
        try:
            cfg.nuq = NuqRequest(int(block.get("num_steps", [32])[-1]), int(block.get("num_of_iteration", [1])[-1]),
                                 str(nuq["mapping_file"][-1]) if nuq.get("mapping_file") else None)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"{p}: nuq_config has a value of the wrong type ({e}): num_steps and num_of_iteration "
                              "are integers, mapping_file a path") from e
    return cfg
