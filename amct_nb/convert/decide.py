"""From what a QDQ model says to amct-nb's pivot: the Record, the QuantConfig and the integer weights.

A layer (a registered op: Conv, ConvTranspose, Gemm, MatMul) keeps the QAT model's numbers when its
activation input was quantized and its weight was stored as int8 with zero point 0: the record then
holds ``scale_d``/``offset_d`` (the input grid, offset on the signed int8 grid) and ``scale_w`` (one
or one per output channel, offsets 0), and its integers go to ``ptq.build`` as they are. Every
other quantized tensor is a ``tensor:<name>`` entry. Layers the QAT model did not quantize stay
float with the reason; their weights hold the QAT model's values either way.

``recalibrated`` re-observes the activation ranges of the same tensors with the statistics and
range machinery of calibration (``ptq.collect_stats``, ``quant.compute_range``), keeping the QAT
weights, and keeps each new range inside the QAT grid's range (an exporter may have folded a
ReLU/ReLU6 into that grid, e.g. ONNX Runtime drops a Clip before a uint8 QuantizeLinear).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace

import numpy as np
import onnx
from onnx import helper

from ..config import QuantConfig
from ..errors import ModelError
from ..ir import GraphEdit, GraphIndex
from ..ops import OPS, Layer, find_layers
from ..ptq import Observation, range_spec
from ..quant import compute_qparams, compute_range
from ..reasons import Code, Reason
from ..record import TENSOR_PREFIX, LayerRecord, Record
from .grids import Grid, QatConst
from .reading import Reading

__all__ = ["Decision", "decide", "config_for", "recalibrated", "split_wide_biases", "bias_fits_int32"]


@dataclass
class Decision:
    """The record, the integer weights per layer, the layers left float (why) and what was found."""

    record: Record
    int_weights: dict[str, np.ndarray]
    qat_layers: list[str]  # layers whose weights are the QAT integers
    float_layers: dict[str, Reason] = field(default_factory=dict)
    per_channel: dict[str, bool] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _weight_check(l: Layer, c: QatConst) -> None:
    if c.dtype == "uint8":
        raise ModelError(
            f"layer '{l.name}' ({l.op_type}): its weight is uint8 (DequantizeLinear '{c.node}'): int8 kernels and "
            "AMCT take int8 weights with zero point 0: re-export with signed symmetric weights (PyTorch: "
            "dtype=torch.qint8, qscheme=torch.per_channel_symmetric; ONNX Runtime: weight_type=QuantType.QInt8)")
    if c.dtype != "int8":
        raise ModelError(f"layer '{l.name}' ({l.op_type}): its weight is {c.dtype} (DequantizeLinear '{c.node}'): "
                         "weights must be int8: re-export with 8-bit weights")
    if np.any(c.zero_point != 0):
        z = c.zero_point.reshape(-1)
        raise ModelError(
            f"layer '{l.name}' ({l.op_type}): its int8 weight is asymmetric (zero point {int(z[z != 0][0])} in "
            f"DequantizeLinear '{c.node}'): int8 kernels and AMCT take symmetric weights (zero point 0): re-export "
            "with symmetric weight quantization (PyTorch: qscheme=torch.per_channel_symmetric or "
            "per_tensor_symmetric; ONNX Runtime: the default symmetric QInt8 weights)")


def _why_float(l: Layer, grid: Grid | None, c: QatConst | None, idx: GraphIndex) -> str | None:
    """Why a layer with QAT numbers cannot be an int8 layer (None: it can)."""
    if c is None:
        return "its weight had no Q/DQ in the QAT model (float weight): it stays float"
    if grid is None:
        return "its input had no Q/DQ in the QAT model: it stays float (its weight holds the QAT values)"
    if c.per_channel:
        want = OPS[l.op_type].channel_axis(idx.node(l.name), c.q)
        if want is None or c.axis != want % c.q.ndim:
            where = "per-tensor scales only" if want is None else f"per output channel needs axis {want}"
            return (f"its weight scales run along axis {c.axis} ({c.scale.size} scales), which its int8 kernel cannot "
                    f"take ({where}): it stays float with the QAT weight values")
    return None


def decide(reading: Reading, model: onnx.ModelProto, cfg: QuantConfig | None = None) -> Decision:
    """The record and integer weights of the float model ``model`` (``reading.model`` after the
    prepare passes) from what the QDQ model quantized; ``cfg`` may disable layers."""
    idx = GraphIndex(model.graph)
    d = Decision(Record(), {}, [])
    for l in find_layers(model):
        grid, c = reading.tensors.get(l.activation), reading.consts.get(l.weight)
        if grid is None and c is None:
            continue  # not quantized in the QAT model either (the engine says it stays float: not in the record)
        if not l.quantizable:
            d.float_layers[l.name] = l.reason
            continue
        if c is not None and grid is not None:
            _weight_check(l, c)
        why = _why_float(l, grid, c, idx)
        if why is None and cfg is not None and not cfg.for_layer(l.name, l.op_type).quant_enable:
            why = "disabled in the config (quant_enable: false): it stays float with the QAT weight values"
        if why is not None:
            d.float_layers[l.name] = Reason(Code.NOT_IN_RECORD, why)
            continue
        sw = c.scale.reshape(-1).astype(np.float32)
        d.record.layers[l.name] = LayerRecord(scale_d=float(grid.scale), offset_d=grid.offset_d,
                                              scale_w=[float(v) for v in sw], offset_w=[0] * sw.size)
        d.int_weights[l.name] = c.q.astype(np.int8)
        d.qat_layers.append(l.name)
        d.per_channel[l.name] = c.per_channel
    inputs = {idx.node(n).input[OPS[idx.node(n).op_type].activation_index] for n in d.qat_layers}
    order = idx.tensor_order()
    for t in sorted(reading.tensors, key=lambda t: order.get(t, 1 << 30)):
        if t in inputs:
            continue
        if t not in order:
            d.notes.append(f"tensor '{t}' of the QAT model is gone from the prepared model (folded away): its grid "
                           "is not used")
            continue
        g = reading.tensors[t]
        d.record.layers[TENSOR_PREFIX + t] = LayerRecord(scale_d=float(g.scale), offset_d=g.offset_d)
    return d


def bias_fits_int32(b: np.ndarray, scale_d, scale_w: np.ndarray) -> bool:
    """Whether ``round(b / (scale_d * scale_w))`` fits int32 (for the QAT model's own integers the
    engine allows the whole int32 range; ONNX Runtime's quantizer puts biases up to 2^31 by design)."""
    b = np.asarray(b, np.float64).reshape(-1)
    b = np.broadcast_to(b, np.shape(scale_w)) if b.size == 1 and np.ndim(scale_w) else b
    bs = (np.float32(scale_d) * np.asarray(scale_w, np.float32)).astype(np.float64)
    return bool(np.all(np.abs(np.round(b / bs)) <= 2**31 - 1))


def split_wide_biases(reading: Reading) -> tuple[onnx.ModelProto, list[str]]:
    """Layers with QAT integers whose bias does not fit int32 at ``scale_d * scale_w`` (a float bias
    next to a near-zero weight scale) keep their int8 weights and get their bias as a float ``Add``
    after the layer: the same numbers, nothing re-rounded. Returns (model, layers split)."""
    idx = GraphIndex(reading.model.graph)
    wide = []
    for l in find_layers(reading.model):
        grid, c = reading.tensors.get(l.activation), reading.consts.get(l.weight)
        if grid is None or c is None or l.bias is None or not l.quantizable:
            continue
        if not bias_fits_int32(idx.array(l.bias), grid.scale, c.scale):
            wide.append(l)
    if not wide:
        return reading.model, []
    ed = GraphEdit(reading.model)
    for l in wide:
        node = ed.node(l.name)
        spec = OPS[l.op_type]
        b = idx.array(l.bias).astype(np.float32).reshape(-1)
        if l.op_type in ("Conv", "ConvTranspose"):  # [C] along axis 1 of N, C, spatial...
            b = b.reshape((-1,) + (1,) * (len(l.weight_shape) - 2))
        acc = f"{l.output}_before_bias"
        bias = ed.initializer(f"{l.bias}_after_{l.name}", b)
        node.input[spec.bias_index] = ""
        while node.input and not node.input[-1]:
            node.input.pop()
        node.output[0] = acc
        ed.hook(acc, [helper.make_node("Add", [acc, bias], [l.output], name=f"{l.name}_bias")])
    return ed.finish(drop_unused=True), [l.name for l in wide]


def config_for(reading: Reading, model: onnx.ModelProto, config: QuantConfig | None, guard: str) -> QuantConfig:
    """The settings of a conversion: the QAT model's activation type, its weight layout per layer,
    no safety net and no bias correction (the numbers are decided), every layer eligible (no stem rule),
    and no BatchNorm folded into a layer with QAT integers or into a quantized tensor (that would change them)."""
    cfg = (config or QuantConfig()).copy()
    cfg.activation_dtype = _majority(reading.dtypes)
    cfg.saturation_guard = guard
    cfg.safety_net = False
    cfg.min_output_sqnr_db = None
    cfg.min_input_channels = 0
    cfg.bias_correction = False  # the QAT model's biases are part of what it decided
    keep = set(cfg.skip_fusion_layers)
    for l in find_layers(model):
        if l.weight in reading.consts or l.output in reading.tensors:
            keep.add(l.name)
        c = reading.consts.get(l.weight)
        if c is not None:
            lc = cfg.for_layer(l.name, l.op_type)
            cfg.layers[l.name] = replace(lc, channel_wise=c.per_channel).validate(f"layer {l.name}")
    cfg.skip_fusion_layers = sorted(keep)
    return cfg


def _majority(dtypes: Counter) -> str:
    """uint8 unless most activation Q/DQ of the model are int8 (both grids represent the same
    values: uint8 zp z is int8 zp z - 128)."""
    return "int8" if dtypes.get("int8", 0) > dtypes.get("uint8", 0) else "uint8"


def recalibrated(record: Record, tensors: dict[str, Grid], layer_inputs: dict[str, str], cfg: QuantConfig,
                 obs: Observation, bias_ok=None) -> tuple[Record, dict]:
    """``record`` with every activation grid re-observed on ``obs`` (weights and their scales kept),
    each range kept inside the QAT grid's; a tensor keeps its QAT grid when it has no usable
    statistics or when ``bias_ok(layer, scale_d)`` says a layer reading it would overflow its int32
    bias at the new scale. Returns (record, what changed)."""
    signed = cfg.activation_dtype == "int8"
    key_tensor = {k: (k[len(TENSOR_PREFIX):] if k.startswith(TENSOR_PREFIX) else layer_inputs[k])
                  for k in record.layers}
    new: dict[str, tuple[float, int]] = {}
    kept: dict[str, str] = {}
    for key, t in key_tensor.items():
        if t in new or t in kept:
            continue
        grid, st = tensors[t], obs.stats.get(t)
        if st is None or st.nonfinite or st.empty:
            kept[t] = "no finite statistics"
            continue
        lc = cfg.for_layer(key) if key in layer_inputs else cfg.default
        spec = replace(range_spec(cfg, lc), symmetric=grid.symmetric, signed=signed)
        lo, hi = compute_range(st, spec)
        lo, hi = max(float(lo), grid.lo), min(float(hi), grid.hi)
        s, z = compute_qparams(lo, hi, bits=spec.bits, symmetric=spec.symmetric, signed=signed)
        new[t] = (float(s), int(z if signed else z - 128))
    if bias_ok is not None:
        for key, t in key_tensor.items():
            if t in new and key in layer_inputs and not bias_ok(key, new[t][0]):
                del new[t]
                kept[t] = f"layer {key}'s int32 bias would overflow at the new scale"
    out = Record()
    changed = set()
    for key, r in record.layers.items():
        t = key_tensor[key]
        if t in new:
            s, off = new[t]
            if np.float32(s) != np.float32(r.scale_d) or off != r.offset_d:
                changed.add(t)
            r = replace(r, scale_d=s, offset_d=off)
        out.layers[key] = r
    return out, {"tensors": len(set(key_tensor.values())), "changed": len(changed), "kept_qat_grid": kept}
