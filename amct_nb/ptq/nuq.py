"""Which layers take non-uniform weights (AMCT's NUQ), from a step count or AMCT's ``nuq_config``.

AMCT's NUQ covers Conv, Gemm and MatMul; amct-nb keeps convolutions with one input channel per filter
uniform by default (depthwise ones, and stems on one-channel images: few weights, the most sensitive
layers; measured in benchmarks/NUQ.md) and refuses other op types.
``mapping_file`` is the Ascend compiler's JSON dump of a uniformly quantized model that says which
layers the chip can compress; ONNX Runtime has no such compiler, so the file is optional: when
given, NUQ is restricted to the layers it names.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from ..config import NUQ, QuantConfig
from ..errors import ConfigError
from ..ops import Layer
from ..reasons import Code, Reason

__all__ = ["NUQ_OPS", "nuq_layers", "with_nuq", "mapping_file_layers", "nuq_refusal", "uses_nuq"]

#: Op types non-uniform weights apply to (AMCT's list).
NUQ_OPS = ("Conv", "Gemm", "MatMul")


def _depthwise(layer: Layer) -> bool:
    """One input channel per filter: depthwise, or a stem on one-channel images."""
    return layer.op_type == "Conv" and len(layer.weight_shape) >= 2 and layer.weight_shape[1] == 1


def nuq_refusal(layer: Layer) -> Reason | None:
    """Why ``layer`` cannot take non-uniform weights (None: it can)."""
    if layer.op_type not in NUQ_OPS:
        return Reason(Code.UNSUPPORTED, f"non-uniform weights (nuq_quantize) apply to {', '.join(NUQ_OPS)} layers, "
                                        f"not {layer.op_type}")
    return None


def mapping_file_layers(path, layers: list[Layer]) -> set[str]:
    """The layers of ``layers`` an Ascend ``mapping_file`` (JSON) names anywhere in its strings."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"nuq_config mapping_file not found: {p}: give the JSON file or leave mapping_file out "
                          "(amct-nb does not need it)")
    try:
        data = json.loads(p.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"nuq_config mapping_file {p} is not JSON ({e}): give the Ascend compiler's JSON dump, or "
                          "leave mapping_file out") from e
    strings: set[str] = set()
    stack = [data]
    while stack:
        x = stack.pop()
        if isinstance(x, dict):
            stack.extend(x.keys())
            stack.extend(x.values())
        elif isinstance(x, list):
            stack.extend(x)
        elif isinstance(x, str):
            strings.add(x)
            strings.update(s.strip() for s in x.split(","))
    named = {l.name for l in layers if l.name in strings}
    if not named:
        raise ConfigError(f"nuq_config mapping_file {p} names no layer of this model: it belongs to another model; "
                          "leave it out to apply NUQ to every Conv/Gemm/MatMul layer")
    return named


def nuq_layers(layers: list[Layer], depthwise: bool = False, only: set[str] | None = None) -> list[Layer]:
    """The quantizable layers NUQ goes to: Conv/Gemm/MatMul (those with one input channel per filter, such
    as depthwise ones, only with ``depthwise``), only those in ``only`` when given."""
    return [l for l in layers if l.quantizable and nuq_refusal(l) is None and (depthwise or not _depthwise(l))
            and (only is None or l.name in only)]


def with_nuq(config: QuantConfig, layers: list[Layer], num_steps: int = 32, num_of_iteration: int = 1, *,
             depthwise: bool = False, mapping_file=None) -> QuantConfig:
    """A copy of ``config`` with NUQ on the layers :func:`nuq_layers` picks (the others unchanged)."""
    cfg = config.copy()
    only = mapping_file_layers(mapping_file, layers) if mapping_file else None
    for l in nuq_layers(layers, depthwise, only):
        base = cfg.for_layer(l.name, l.op_type)
        cfg.layers[l.name] = replace(base, wts_algo=NUQ, num_steps=num_steps, num_of_iteration=num_of_iteration
                                     ).validate(f"layer {l.name}")
    return cfg


def uses_nuq(config: QuantConfig, layers: list[Layer]) -> bool:
    """Whether ``config`` gives any of ``layers`` non-uniform weights: calibration then also keeps
    per-channel moments of their inputs (``collect_stats(..., channel_moments=True)``)."""
    return any(config.for_layer(l.name, l.op_type).nuq for l in layers if l.quantizable)
