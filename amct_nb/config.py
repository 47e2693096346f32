"""QuantConfig: global defaults plus per-layer overrides, read from and written to AMCT's JSON.

AMCT's ``config.json`` has global keys (``version``, ``batch_num``, ``activation_offset``,
``do_fusion``, ``skip_fusion_layers``) and one object per layer name::

    "conv1": {"quant_enable": true,
              "activation_quant_params": {"num_bits": 8, "act_algo": "mse", "asymmetric": true},
              "weight_quant_params": {"num_bits": 8, "wts_algo": "arq_quantize", "channel_wise": true}}

amct-nb reads AMCT's ``act_algo`` values (``ifmr`` and ``hfmg`` both map to the MSE search) and
adds its own algorithms (``minmax``, ``percentile``, ``entropy``, ``mse``); its extra global
settings live under the ``"amct_nb"`` key, which AMCT ignores.
"""

from __future__ import annotations

import copy
import difflib
import json
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import numpy as np

from .errors import ConfigError
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
    saturate (x86 without VNNI): ``"auto"`` probes ONNX Runtime on this machine and adjusts
    the few weight pairs that could overflow only where needed, ``"always"`` does so
    regardless (deploy files portable to such CPUs), ``"reduce_range"`` uses 7-bit weights,
    ``"off"`` does nothing.
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
    saturation_guard: str = "always"
    quantize_outputs: bool = True  # Q/DQ on layer outputs so ONNX Runtime can fuse int8 kernels
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
        }
        if self.type_overrides:
            d["amct_nb"]["layer_type_overrides"] = {t: lc.as_dict() for t, lc in self.type_overrides.items()}
        return d

    def to_json(self, layers: list | None = None) -> str:
        return json.dumps(self.to_amct_dict(layers), indent=4, sort_keys=False) + "\n"

    @classmethod
    def from_amct_dict(cls, d: dict, where: str = "config") -> QuantConfig:
        if not isinstance(d, dict):
            raise ConfigError(f"{where}: expected a JSON object at the top level")
        cfg = cls()
        glob = {"version", "batch_num", "activation_offset", "do_fusion", "skip_fusion_layers", "amct_nb",
                "joint_quant", "tensor_quantize"}
        try:
            cfg.batch_num = int(d.get("batch_num", 1))
            cfg.activation_offset = bool(d.get("activation_offset", True))
            cfg.do_fusion = bool(d.get("do_fusion", True))
            cfg.skip_fusion_layers = list(d.get("skip_fusion_layers", []))
            ext = d.get("amct_nb", {}) or {}
            names = {f.name for f in fields(LayerConfig)}
            if "default" in ext:
                cfg.default = LayerConfig(**{k: v for k, v in ext["default"].items() if k in names})
            for t, v in (ext.get("layer_type_overrides") or {}).items():
                cfg.type_overrides[t] = LayerConfig(**{k: x for k, x in v.items() if k in names})
            cfg.skip_layer_types = list(ext.get("skip_layer_types", []))
            cfg.activation_dtype = ext.get("activation_dtype", cfg.activation_dtype)
            cfg.saturation_guard = ext.get("saturation_guard", cfg.saturation_guard)
            cfg.quantize_outputs = bool(ext.get("quantize_outputs", cfg.quantize_outputs))
            cfg.min_input_channels = int(ext.get("min_input_channels", cfg.min_input_channels))
            cfg.safety_net = bool(ext.get("safety_net", cfg.safety_net))
            cfg.min_sqnr_db = float(ext.get("min_sqnr_db", cfg.min_sqnr_db))
            cfg.min_channel_snr_db = float(ext.get("min_channel_snr_db", cfg.min_channel_snr_db))
            v = ext.get("min_output_sqnr_db", cfg.min_output_sqnr_db)
            cfg.min_output_sqnr_db = None if v is None else float(v)
        except (TypeError, ValueError) as e:
            raise ConfigError(
                f"{where}: a global setting has the wrong type ({e}): compare with a generated config.json"
            ) from e
        for name, v in d.items():
            if name in glob:
                continue
            if not isinstance(v, dict):
                raise ConfigError(
                    f"{where}: entry '{name}' must be an object with "
                    "quant_enable/activation_quant_params/weight_quant_params"
                )
            act = v.get("activation_quant_params", {}) or {}
            wts = v.get("weight_quant_params", {}) or {}
            try:
                lc = LayerConfig(
                    quant_enable=bool(v.get("quant_enable", True)),
                    act_algo=str(act.get("act_algo", cfg.default.act_algo)),
                    act_bits=int(act.get("num_bits", 8)),
                    asymmetric=act.get("asymmetric", None),
                    percentile=float(act.get("percentile", cfg.default.percentile)),
                    wts_bits=int(wts.get("num_bits", 8)),
                    channel_wise=bool(wts.get("channel_wise", True)),
                    wts_algo=str(wts.get("wts_algo", "arq_quantize")),
                    num_steps=int(wts.get("num_steps", cfg.default.num_steps)),
                    num_of_iteration=int(wts.get("num_of_iteration", cfg.default.num_of_iteration)),
                )
            except (TypeError, ValueError) as e:
                raise ConfigError(f"{where}: layer '{name}' has a setting of the wrong type ({e})") from e
            cfg.layers[name] = lc.validate(f"{where}: layer '{name}'")
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
