"""QuantConfig: global defaults plus per-layer overrides, read from and written to AMCT's JSON.

AMCT's ``config.json`` has global keys (``version``, ``batch_num``, ``activation_offset``,
``do_fusion``, ``skip_fusion_layers``) and one object per layer name::

    "conv1": {"quant_enable": true,
              "activation_quant_params": {"num_bits": 8, "act_algo": "mse", "asymmetric": true},
              "weight_quant_params": {"num_bits": 8, "wts_algo": "arq_quantize", "channel_wise": true}}

amct-nb reads AMCT's ``act_algo`` values (``ifmr`` and ``hfmg`` both map to the MSE search) and
adds its own algorithms (``minmax``, ``percentile``, ``entropy``, ``mse``); its extra global
settings live under the ``"amct_nb"`` key, which AMCT ignores.

Nothing is accepted and silently ignored: a key amct-nb does not know is refused (with a close match and the
keys accepted there), and an AMCT field for a feature amct-nb does not have (``joint_quant``, IFMR's search
parameters, ``num_of_bins``...) loads only at the default AMCT's own tools write; any other value is refused,
saying why. The helpers for this are shared with the .cfg readers of :mod:`amct_nb.amct`.
"""

from __future__ import annotations

import copy
import difflib
import json
import math
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import numpy as np

from .errors import ConfigError, NotSupportedError
from .ops import OPS
from .quant.guard import GUARD_MODES
from .quant.nuq import NUQ_STEPS, NonUniform
from .quant.ranges import ALGORITHMS
from .quant.weights import DEFAULT_SCHEME, get_scheme

__all__ = ["LayerConfig", "QuantConfig", "NuqRequest", "NUQ", "ACT_ALGOS", "DEFAULT_ACT_ALGO"]

#: Range algorithms for activations (amct_nb.quant.ranges); AMCT's names are accepted as aliases.
ACT_ALGOS = tuple(ALGORITHMS)
_ALIASES = {"ifmr": "mse", "hfmg": "mse", "kl": "entropy", "max": "minmax"}
NUQ = NonUniform.name
_NUQ_FIELDS = ("num_steps", "num_of_iteration")
#: Chosen by measurement (benchmarks/compare_ranges.py): see README "Range algorithms".
DEFAULT_ACT_ALGO = "mse"

#: The keys of AMCT's config.json that are read (the rest of the top level are layer names), and amct-nb's own.
_GLOBAL_KEYS = ("version", "batch_num", "activation_offset", "do_fusion", "skip_fusion_layers", "joint_quant",
                "tensor_quantize", "amct_nb")
_LAYER_KEYS = ("quant_enable", "activation_quant_params", "weight_quant_params", "dmq_balancer_param")
_ACT_KEYS = ("num_bits", "act_algo", "asymmetric", "percentile", "max_percentile", "min_percentile", "search_range",
             "search_step", "num_of_bins")
_WTS_KEYS = ("num_bits", "wts_algo", "channel_wise", "num_steps", "num_of_iteration")
_EXT_KEYS = ("default", "layer_type_overrides", "skip_layer_types", "activation_dtype", "saturation_guard",
             "quantize_outputs", "min_input_channels", "safety_net", "min_sqnr_db", "min_channel_snr_db",
             "min_output_sqnr_db", "weight_only_fallback", "quantize_activation_matmul", "bias_correction")
#: AMCT's IFMR parameters at the defaults its create_quant_config writes (amct-nb reads ``ifmr`` as its MSE search)
IFMR_DEFAULTS = {"max_percentile": 0.999999, "min_percentile": 0.999999, "search_range": [0.7, 1.3],
                 "search_step": 0.01}
_NO_IFMR = "its ifmr is the MSE search over the calibration histogram, without IFMR's percentile and search range"
#: AMCT's HFMG bin counts and its default
HFMG_BINS, HFMG_DEFAULT_BINS = (1024, 2048, 4096, 8192), 4096
_NO_BINS = ("its histograms have a fixed resolution: 8192 exactly merged bins per tensor, searched on 1024; "
            "hfmg is read as the MSE search")
#: Op types AMCT quantizes that amct-nb leaves float: skipping them is what happens anyway, an override is refused.
FLOAT_LAYER_TYPES = ("AveragePool", "LSTM", "GRU")


class UnsupportedSettingError(ConfigError, NotSupportedError):
    """An AMCT setting for a feature amct-nb does not have (caught as a ConfigError or a NotSupportedError)."""


def unknown_key(key, accepted, where: str, what: str = "key") -> ConfigError:
    """The error for a key ``where`` does not know: the key, a close match, and the keys accepted there."""
    accepted = sorted(accepted)
    near = difflib.get_close_matches(str(key), accepted, n=1)
    hint = f" (did you mean '{near[0]}'?)" if near else ""
    return ConfigError(f"{where}: unknown {what} '{key}'{hint}: the accepted ones are {', '.join(accepted)}")


def check_keys(d: dict, accepted, where: str, what: str = "key") -> None:
    """Refuse the first key of ``d`` that is not in ``accepted`` (see :func:`unknown_key`)."""
    for k in d:
        if k not in accepted:
            raise unknown_key(k, accepted, where, what)


def _same(value, default) -> bool:
    if isinstance(default, bool) or isinstance(value, bool):
        return type(value) is type(default) and value == default
    if isinstance(default, (int, float)):  # float32 fields of AMCT's protos come back as e.g. 0.9999989867
        return isinstance(value, (int, float)) and math.isclose(value, default, rel_tol=1e-6)
    if isinstance(default, (list, tuple)):
        return isinstance(value, (list, tuple)) and len(value) == len(default) and all(map(_same, value, default))
    return value == default


def _show(v, cfg: bool) -> str:
    if not cfg:
        return json.dumps(v)
    return str(v).lower() if isinstance(v, bool) else str(v)


def require_default(where: str, key: str, value, default, why: str, cfg: bool = False) -> None:
    """Accept a field for a feature amct-nb does not have only at AMCT's default (what AMCT's own tools write,
    so its files keep loading); refuse any other value, saying why and what to write instead. ``cfg``: show
    the values as a .cfg spells them."""
    if not _same(value, default):
        raise UnsupportedSettingError(f"{where}: {key} {_show(value, cfg)} is not supported by amct-nb ({why}): "
                                      f"remove it or set it to {_show(default, cfg)}")


def refuse(where: str, key: str, why: str, fix: str = "remove it") -> UnsupportedSettingError:
    """The error for a field amct-nb has no feature for, at any value."""
    return UnsupportedSettingError(f"{where}: {key} is not supported by amct-nb ({why}): {fix}")


def check_bins(where: str, value, cfg: bool = False) -> None:
    """AMCT's ``num_of_bins``: one of AMCT's values, and only its default (amct-nb's bins are fixed)."""
    if isinstance(value, bool) or value not in HFMG_BINS:
        raise ConfigError(f"{where}: num_of_bins {_show(value, cfg)} is not one of AMCT's values "
                          f"{', '.join(map(str, HFMG_BINS))}: remove it or use {HFMG_DEFAULT_BINS}")
    require_default(where, "num_of_bins", value, HFMG_DEFAULT_BINS, _NO_BINS, cfg)


def check_ifmr(where: str, params: dict, cfg: bool = False) -> None:
    """AMCT's IFMR parameters (JSON names), each accepted only at its default."""
    for k, v in params.items():
        require_default(where, k, v, IFMR_DEFAULTS[k], _NO_IFMR, cfg)


def layer_types(names, where: str, key: str, override: bool = False, aliases: dict | None = None) -> list[str]:
    """The ONNX op types ``names`` stand for (``aliases``: other names, e.g. torch module types, for lists of op
    types). A name that is no quantizable type is refused; a type amct-nb leaves float is refused in an override
    (there is nothing to apply it to) and kept in a skip list (those layers stay float anyway)."""
    aliases = aliases or {}
    known = sorted(set(OPS) | set(FLOAT_LAYER_TYPES) | set(aliases))
    out: list[str] = []
    for name in names:
        for t in aliases.get(name, [name]):
            if t in FLOAT_LAYER_TYPES and override:
                raise refuse(where, f"{key} '{name}'", f"it leaves {t} layers float",
                             "remove it (skip_layer_types keeps such layers float)")
            if t not in OPS and t not in FLOAT_LAYER_TYPES:
                raise unknown_key(name, known, where, f"layer type in {key}")
            out.append(t)
    return out


def _bool(v, where: str, key: str, none_ok: bool = False):
    if isinstance(v, bool) or (v is None and none_ok):
        return v
    if isinstance(v, int) and v in (0, 1):
        return bool(v)
    raise ConfigError(f"{where}: {key} {json.dumps(v)} must be true or false")


def _block(v: dict, key: str, accepted, where: str) -> dict:
    """The object ``v[key]`` (empty when absent), its keys checked (unless ``accepted`` is None)."""
    b = v.get(key) or {}
    if not isinstance(b, dict):
        raise ConfigError(f"{where}: {key} must be an object, not {json.dumps(b)}")
    if accepted is not None:
        check_keys(b, accepted, f"{where}: {key}")
    return b


@dataclass
class LayerConfig:
    """How one layer is quantized."""

    quant_enable: bool = True
    act_algo: str = DEFAULT_ACT_ALGO
    act_bits: int = 8
    asymmetric: bool | None = None  # None: the global activation_offset
    percentile: float = 99.99
    wts_bits: int = 8
    channel_wise: bool = True
    wts_algo: str = DEFAULT_SCHEME
    #: non-uniform weights (``wts_algo: nuq_quantize``): levels per layer (16 or 32) and rounds of
    #: level search and scale refit, AMCT's ``num_steps`` and ``num_of_iteration``
    num_steps: int = 32
    num_of_iteration: int = 1

    @property
    def nuq(self) -> bool:
        return self.wts_algo == NUQ

    def validate(self, where: str) -> LayerConfig:
        algo = _ALIASES.get(self.act_algo, self.act_algo)
        if algo not in ACT_ALGOS:
            raise ConfigError(f"{where}: act_algo '{self.act_algo}' is unknown: use one of {', '.join(ACT_ALGOS)}")
        if self.act_bits != 8:
            raise ConfigError(f"{where}: activation num_bits {self.act_bits} is not supported: use 8")
        if not (50.0 < float(self.percentile) <= 100.0):
            raise ConfigError(f"{where}: percentile {self.percentile} must be in (50, 100]")
        why = get_scheme(self.wts_algo, where).check(self.wts_bits)
        if why:
            raise ConfigError(f"{where}: {why}")
        if self.nuq and self.num_steps not in NUQ_STEPS:
            raise ConfigError(f"{where}: num_steps {self.num_steps} is not supported: AMCT's non-uniform quantization "
                              f"takes {' or '.join(map(str, NUQ_STEPS))} levels")
        if self.nuq and (isinstance(self.num_of_iteration, bool) or int(self.num_of_iteration) < 0):
            raise ConfigError(f"{where}: num_of_iteration {self.num_of_iteration} must be 0 or more (rounds of level "
                              "search and scale refit; AMCT's samples use 0 or 1)")
        return replace(self, act_algo=algo)

    def weight_params(self) -> dict:
        """AMCT's ``weight_quant_params`` (num_steps and num_of_iteration only for NUQ)."""
        d = {"num_bits": self.wts_bits, "wts_algo": self.wts_algo, "channel_wise": self.channel_wise}
        if self.nuq:
            d.update(num_steps=self.num_steps, num_of_iteration=self.num_of_iteration)
        return d

    def as_dict(self) -> dict:
        """The fields, without the NUQ ones for uniform weights (config files stay as they were)."""
        return {k: v for k, v in asdict(self).items() if self.nuq or k not in _NUQ_FIELDS}


@dataclass(frozen=True)
class NuqRequest:
    """AMCT's ``nuq_config`` of a .cfg: NUQ for every Conv/Gemm/MatMul layer (those the ``mapping_file``
    names, when given), applied to a model's layers by :func:`amct_nb.ptq.with_nuq`."""

    num_steps: int = 32
    num_of_iteration: int = 1
    mapping_file: str | None = None


@dataclass
class QuantConfig:
    """Global settings, defaults for every layer, and per-layer overrides.

    ``saturation_guard``: how to keep int8 kernels exact on CPUs whose u8*s8 dot products
    saturate (x86 without VNNI). ``"auto"`` (default) probes this CPU: where it saturates, each
    layer that could stores its weights as uint8 with zero point 128 (the same integers, so no
    accuracy cost in any mode, run by ONNX Runtime's u8 x u8 kernels, which cannot saturate); where it
    does not, nothing changes (full speed). ``"always"`` stores them as uint8 whatever this CPU is:
    deploy files for CPUs you do not know, exact on every x86 CPU, those layers up to ~2x slower on a
    CPU with VNNI (benchmarks/GUARD.md); ``"pairs"``
    keeps int8 weights and moves the few pairs that could overflow (costs accuracy with
    per-tensor weights); ``"reduce_range"`` uses 7-bit weights; ``"off"`` does nothing.
    See benchmarks/GUARD.md for what each costs.
    """

    default: LayerConfig = field(default_factory=LayerConfig)
    layers: dict[str, LayerConfig] = field(default_factory=dict)
    #: settings per op type for layers not in ``layers`` (AMCT's ``override_layer_types``)
    type_overrides: dict[str, LayerConfig] = field(default_factory=dict)
    #: a .cfg's ``nuq_config``, until create_quant_config writes it into the layers (never saved itself)
    nuq: NuqRequest | None = None
    skip_layers: list[str] = field(default_factory=list)
    skip_layer_types: list[str] = field(default_factory=list)
    activation_offset: bool = True
    do_fusion: bool = True
    skip_fusion_layers: list[str] = field(default_factory=list)
    batch_num: int = 1
    activation_dtype: str = "uint8"
    saturation_guard: str = "auto"
    quantize_outputs: bool = True  # Q/DQ on layer outputs so ONNX Runtime can fuse int8 kernels
    #: MatMul between two activations (attention) in int8 (QLinearMatMul); the safety net checks it
    quantize_activation_matmul: bool = True
    #: Convolutions with fewer input channels per group than this stay float: the RGB / grey
    #: stem conv of image models, whose int8 kernel in ONNX Runtime is slower than float (a 3x3x3
    #: reduction) and which is the most sensitive layer (AMCT advises not quantizing Cin <= 16).
    #: Depthwise convolutions use another kernel and are not affected. 0: off.
    min_input_channels: int = 4
    #: After calibration, measure each quantized tensor's error on a few calibration samples and
    #: leave float those whose quantization destroys information (see amct_nb.safety).
    safety_net: bool = True
    min_sqnr_db: float = 12.0
    min_channel_snr_db: float = 3.0
    #: End-to-end target of the safety net: if the fake-quant outputs fall below this SQNR (dB)
    #: against the float outputs on the calibration samples, the quantized layers/tensors that
    #: harm them most are left float until they reach it. None: no output check.
    min_output_sqnr_db: float | None = 15.0
    #: The fallback ladder (amct_nb.ptq.ladder): weights of layers left float, embedding tables and
    #: recurrent weights are stored int8 (weight-only) where the output check finds it affordable.
    weight_only_fallback: bool = True
    #: Bias correction: the mean shift that rounding a layer's weights to its grid causes in the
    #: layer's output, ``sum_k (w - q s) E[x_k]`` per output channel (E[x] from per-channel moments of
    #: its input kept during calibration), is added to the layer's bias before its int32
    #: quantization (layers with a bias; written to the record as ``bias_correction`` lines).
    #: Measured in benchmarks/BIAS_CORRECTION.md.
    bias_correction: bool = True

    def for_layer(self, name: str, op_type: str | None = None) -> LayerConfig:
        """The settings of one layer: its own, else its op type's, else the defaults."""
        lc = self.layers.get(name)
        if lc is None:
            lc = self.type_overrides.get(op_type, self.default) if op_type else self.default
        if name in self.skip_layers or (op_type and op_type in self.skip_layer_types):
            lc = replace(lc, quant_enable=False)
        return lc

    def asymmetric(self, lc: LayerConfig) -> bool:
        return self.activation_offset if lc.asymmetric is None else bool(lc.asymmetric)

    def set(self, names, **changes) -> QuantConfig:
        """Change settings of the named layers (a name or a list); returns self."""
        if isinstance(names, str):
            names = [names]
        for n in names:
            self.layers[n] = replace(self.layers.get(n, self.default), **changes).validate(f"layer {n}")
        return self

    def copy(self) -> QuantConfig:
        return copy.deepcopy(self)

    def validate(self, layer_names=None) -> QuantConfig:
        self.default = self.default.validate("default")
        for n, lc in list(self.layers.items()):
            self.layers[n] = lc.validate(f"layer {n}")
        for t, lc in list(self.type_overrides.items()):
            self.type_overrides[t] = lc.validate(f"op type {t}")
        if self.activation_dtype not in ("uint8", "int8"):
            raise ConfigError(f"activation_dtype '{self.activation_dtype}' is unknown: use uint8 or int8")
        if self.saturation_guard not in GUARD_MODES:
            raise ConfigError(
                f"saturation_guard '{self.saturation_guard}' is unknown: use {', '.join(GUARD_MODES)}"
            )
        if self.min_output_sqnr_db is not None and not (isinstance(self.min_output_sqnr_db, (int, float))
                                                        and np.isfinite(self.min_output_sqnr_db)):
            raise ConfigError(f"min_output_sqnr_db {self.min_output_sqnr_db!r} must be a number of dB (e.g. 20) or "
                              "None to turn the output check off")
        if layer_names is not None:
            known = set(layer_names)
            for n in list(self.layers) + list(self.skip_layers):
                if n not in known:
                    near = difflib.get_close_matches(n, sorted(known), n=3)
                    hint = f" (did you mean {', '.join(near)}?)" if near else ""
                    raise ConfigError(
                        f"the config names layer '{n}' that the model has no quantizable layer of{hint}: "
                        "fix the name or regenerate the config with create_quant_config"
                    )
        return self

    # -- AMCT JSON ----------------------------------------------------------------------
    def to_amct_dict(self, layers: list | None = None) -> dict:
        """AMCT-style dict; ``layers`` (a list of Layer) lists every quantizable layer."""
        d = {
            "version": 1,
            "batch_num": self.batch_num,
            "activation_offset": self.activation_offset,
            "do_fusion": self.do_fusion,
            "skip_fusion_layers": list(self.skip_fusion_layers),
        }
        names = [l.name for l in layers if l.quantizable] if layers is not None else sorted(self.layers)
        types = {l.name: l.op_type for l in layers} if layers is not None else {}
        for n in names:
            lc = self.for_layer(n, types.get(n))
            act = {"num_bits": lc.act_bits, "act_algo": lc.act_algo, "asymmetric": self.asymmetric(lc)}
            if lc.act_algo == "percentile":
                act["percentile"] = lc.percentile
            d[n] = {
                "quant_enable": lc.quant_enable,
                "activation_quant_params": act,
                "weight_quant_params": lc.weight_params(),
            }
        d["amct_nb"] = {
            "default": self.default.as_dict(),
            "skip_layer_types": list(self.skip_layer_types),
            "activation_dtype": self.activation_dtype,
            "saturation_guard": self.saturation_guard,
            "quantize_outputs": self.quantize_outputs,
            "min_input_channels": self.min_input_channels,
            "safety_net": self.safety_net,
            "min_sqnr_db": self.min_sqnr_db,
            "min_channel_snr_db": self.min_channel_snr_db,
            "min_output_sqnr_db": self.min_output_sqnr_db,
            "weight_only_fallback": self.weight_only_fallback,
            "quantize_activation_matmul": self.quantize_activation_matmul,
            "bias_correction": self.bias_correction,
        }
        if self.type_overrides:
            d["amct_nb"]["layer_type_overrides"] = {t: lc.as_dict() for t, lc in self.type_overrides.items()}
        return d

    def to_json(self, layers: list | None = None) -> str:
        return json.dumps(self.to_amct_dict(layers), indent=4, sort_keys=False) + "\n"

    @classmethod
    def from_amct_dict(cls, d: dict, where: str = "config") -> QuantConfig:
        """A QuantConfig from AMCT's config.json (and amct-nb's ``"amct_nb"`` key). Keys it does not know are
        refused, naming a close match; AMCT fields for features amct-nb lacks load only at AMCT's defaults."""
        if not isinstance(d, dict):
            raise ConfigError(f"{where}: expected a JSON object at the top level")
        for name, v in d.items():
            if name not in _GLOBAL_KEYS and not isinstance(v, dict):
                near = difflib.get_close_matches(name, _GLOBAL_KEYS, n=1)
                hint = f" (did you mean '{near[0]}'?)" if near else ""
                raise ConfigError(f"{where}: unknown key '{name}'{hint}: the global keys are "
                                  f"{', '.join(_GLOBAL_KEYS)}; "
                                  "any other key is a layer name, whose entry is an object with "
                                  "quant_enable/activation_quant_params/weight_quant_params")
        require_default(where, "joint_quant", d.get("joint_quant", False), False,
                        "it decides itself which Add/Concat tensors get int8")
        if d.get("tensor_quantize"):
            raise refuse(where, "tensor_quantize", "the Add/Concat tensors next to quantized layers get Q/DQ "
                         "automatically, and MaxPool none of its own", "remove it or set it to []")
        cfg = cls()
        try:
            cfg.batch_num = int(d.get("batch_num", 1))
            cfg.activation_offset = _bool(d.get("activation_offset", True), where, "activation_offset")
            cfg.do_fusion = _bool(d.get("do_fusion", True), where, "do_fusion")
            if not isinstance(d.get("skip_fusion_layers", []), list):
                raise TypeError("skip_fusion_layers must be a list of layer names")
            cfg.skip_fusion_layers = list(d.get("skip_fusion_layers", []))
            ext = _block(d, "amct_nb", _EXT_KEYS, where)
            names = [f.name for f in fields(LayerConfig)]
            if "default" in ext:
                cfg.default = LayerConfig(**_block(ext, "default", names, f"{where}: amct_nb"))
            types = _block(ext, "layer_type_overrides", None, f"{where}: amct_nb")
            for t in layer_types(types, f"{where}: amct_nb", "layer_type_overrides", override=True):
                cfg.type_overrides[t] = LayerConfig(**_block(types, t, names, f"{where}: amct_nb: "
                                                             "layer_type_overrides"))
            cfg.skip_layer_types = layer_types(ext.get("skip_layer_types", []), f"{where}: amct_nb", "skip_layer_types")
            cfg.activation_dtype = ext.get("activation_dtype", cfg.activation_dtype)
            cfg.saturation_guard = ext.get("saturation_guard", cfg.saturation_guard)
            cfg.quantize_outputs = _bool(ext.get("quantize_outputs", cfg.quantize_outputs), where, "quantize_outputs")
            cfg.min_input_channels = int(ext.get("min_input_channels", cfg.min_input_channels))
            cfg.safety_net = _bool(ext.get("safety_net", cfg.safety_net), where, "safety_net")
            cfg.min_sqnr_db = float(ext.get("min_sqnr_db", cfg.min_sqnr_db))
            cfg.min_channel_snr_db = float(ext.get("min_channel_snr_db", cfg.min_channel_snr_db))
            v = ext.get("min_output_sqnr_db", cfg.min_output_sqnr_db)
            cfg.min_output_sqnr_db = None if v is None else float(v)
            cfg.weight_only_fallback = _bool(ext.get("weight_only_fallback", cfg.weight_only_fallback), where,
                                             "weight_only_fallback")
            cfg.quantize_activation_matmul = _bool(ext.get("quantize_activation_matmul",
                                                           cfg.quantize_activation_matmul), where,
                                                   "quantize_activation_matmul")
            cfg.bias_correction = _bool(ext.get("bias_correction", cfg.bias_correction), where, "bias_correction")
        except (TypeError, ValueError) as e:
            raise ConfigError(
                f"{where}: a global setting has the wrong type ({e}): compare with a generated config.json"
            ) from e
        for name, v in d.items():
            if name not in _GLOBAL_KEYS:
                cfg.layers[name] = _layer_from_amct(v, cfg.default, f"{where}: layer '{name}'")
        return cfg.validate()

    @classmethod
    def load(cls, path) -> QuantConfig:
        p = Path(path)
        if not p.exists():
            raise ConfigError(f"config file not found: {p}: check the path or create one with create_quant_config")
        try:
            d = json.loads(p.read_text())
        except json.JSONDecodeError as e:
            raise ConfigError(f"{p} is not valid JSON ({e}): fix the file or regenerate it") from e
        return cls.from_amct_dict(d, where=str(p))


def _layer_from_amct(v: dict, default: LayerConfig, where: str) -> LayerConfig:
    """One layer entry of AMCT's config.json (``default``: where keys it leaves out come from)."""
    check_keys(v, _LAYER_KEYS, where)
    if "dmq_balancer_param" in v:
        raise refuse(where, "dmq_balancer_param", "DMQ balancing is not implemented")
    act = _block(v, "activation_quant_params", _ACT_KEYS, where)
    wts = _block(v, "weight_quant_params", _WTS_KEYS, where)
    check_ifmr(f"{where}: activation_quant_params", {k: x for k, x in act.items() if k in IFMR_DEFAULTS})
    if "num_of_bins" in act:
        check_bins(f"{where}: activation_quant_params", act["num_of_bins"])
    try:
        lc = LayerConfig(
            quant_enable=_bool(v.get("quant_enable", True), where, "quant_enable"),
            act_algo=str(act.get("act_algo", default.act_algo)),
            act_bits=int(act.get("num_bits", 8)),
            asymmetric=_bool(act.get("asymmetric"), where, "asymmetric", none_ok=True),
            percentile=float(act.get("percentile", default.percentile)),
            wts_bits=int(wts.get("num_bits", 8)),
            channel_wise=_bool(wts.get("channel_wise", True), where, "channel_wise"),
            wts_algo=str(wts.get("wts_algo", "arq_quantize")),
            num_steps=int(wts.get("num_steps", default.num_steps)),
            num_of_iteration=int(wts.get("num_of_iteration", default.num_of_iteration)),
        ).validate(where)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where}: a setting has the wrong type ({e})") from e
    if "percentile" in act and lc.act_algo != "percentile":
        raise ConfigError(f"{where}: percentile applies only to act_algo 'percentile' (this layer's is "
                          f"'{act.get('act_algo', default.act_algo)}'): remove it or set act_algo to percentile")
    extra = [k for k in _NUQ_FIELDS if k in wts]
    if extra and not lc.nuq:
        raise ConfigError(f"{where}: {extra[0]} applies only to wts_algo '{NUQ}' (this layer's is '{lc.wts_algo}'): "
                          "remove it")
    return lc
