"""A record to a QuantPlan: weights, int32 biases and tensor grids, ready for the model writers.

The plan is always built from a record, so quantizing in one go and AMCT's ``quantize_model`` /
calibrate / ``save_model`` flow (or any job that produces a record) give identical models.
"""

from __future__ import annotations

import numpy as np
import onnx

from ..config import LayerConfig, QuantConfig
from ..errors import ConfigError
from ..export import LayerQuant, QuantPlan, TensorQuant
from ..ir import GraphIndex, walk_nodes
from ..ops import OPS, Layer
from ..quant import RangeSpec, quantize_bias
from ..quant.guard import pairs_over_limit
from ..reasons import Reason
from ..record import TENSOR_PREFIX, Record
from .weights import given_weight, layer_weight

__all__ = ["range_spec", "plan_from_record"]


def range_spec(cfg: QuantConfig, lc: LayerConfig) -> RangeSpec:
    """The RangeSpec a layer's settings give its activation tensors."""
    return RangeSpec(
        algo=lc.act_algo, bits=lc.act_bits, symmetric=not cfg.asymmetric(lc),
        signed=cfg.activation_dtype == "int8", percentile=lc.percentile,
    )


def _check(record: Record, by_name: dict[str, Layer]) -> None:
    for key, r in record.layers.items():
        if not key.startswith(TENSOR_PREFIX):
            if key not in by_name:
                raise ConfigError(f"record: layer '{key}' is not a quantizable layer of this model: the record belongs "
                                  "to another model")
            if r.scale_d is None or r.offset_d is None or not r.scale_w:
                raise ConfigError(
                    f"record: layer '{key}' lacks scale_d/offset_d/scale_w: the calibration did not finish"
                )
        if r.scale_d is None or not (np.isfinite(r.scale_d) and r.scale_d > 0):
            raise ConfigError(f"record: '{key}' has scale_d {r.scale_d}: scales must be finite and positive")


def plan_from_record(
    model: onnx.ModelProto, layers: list[Layer], cfg: QuantConfig, record: Record, guard: str = "none",
    float_layers: dict[str, Reason] | None = None, float_tensors: dict[str, Reason] | None = None,
    cache: dict | None = None, int_weights: dict[str, np.ndarray] | None = None,
) -> QuantPlan:
    """Weights, biases and tensor grids of ``model`` from ``record`` (ordered like the graph).

    ``int_weights``: integer weights per layer that a job already decided (a converted QAT model);
    they are used as they are with the record's scales (see :func:`~amct_nb.ptq.weights.given_weight`)."""
    idx = GraphIndex(model.graph)
    by_name = {l.name: l for l in layers}
    _check(record, by_name)
    signed = cfg.activation_dtype == "int8"
    dtype = "int8" if signed else "uint8"
    plan = QuantPlan(guard=guard, float_layers=dict(float_layers or {}), float_tensors=dict(float_tensors or {}))
    for key, r in record.layers.items():
        t = key[len(TENSOR_PREFIX):] if key.startswith(TENSOR_PREFIX) else by_name[key].activation
        zp = int(r.offset_d) if signed else int(r.offset_d) + 128
        plan.tensors.setdefault(t, TensorQuant(t, np.float32(r.scale_d), zp, dtype))
    for key, r in record.layers.items():
        if key.startswith(TENSOR_PREFIX):
            continue
        l = by_name[key]
        lc = cfg.for_layer(l.name, l.op_type)
        spec = OPS[l.op_type]
        given = int_weights is not None and l.name in int_weights
        if given:
            qw = given_weight(idx, l, int_weights[l.name], r.scale_w, lc, guard)
        else:
            qw = layer_weight(idx, l, lc, guard, scale_w=r.scale_w, codebook=r.levels or None, cache=cache)
        lq = LayerQuant(l.name, l.op_type, l.activation, l.weight, spec.weight_index, l.bias, spec.bias_index,
                        qw.axis, qw.q, qw.scale, pairs_fixed=qw.pairs_fixed, weight_bits=lc.wts_bits,
                        codebook=qw.codebook)
        if guard == "uint8" and not signed:  # int8 activations: ORT's s8 x s8 kernels widen, no saturation
            rows = spec.kernel_rows(idx.node(l.name), qw.q)
            if rows is not None and pairs_over_limit(rows):
                lq.w_storage = "uint8"
        if l.bias is not None:
            b = idx.array(l.bias)
            n_out = spec.out_channels(idx.node(l.name), qw.q)
            bflat = np.broadcast_to(b.reshape(-1), (n_out,)) if b.size in (1, n_out) else b.reshape(-1)
            if r.bias_correction:  # the record's bias correction, added in float32 (as a float bias would hold it)
                bflat = bflat.astype(np.float32) + np.asarray(r.bias_correction, np.float32)
            bq, bs, fits = quantize_bias(bflat, plan.tensors[l.activation].scale, qw.scale)
            if not fits and given:  # a job's own integers (QAT): int32 is the limit, not calibration's headroom
                fits = bool(np.all(np.abs(np.round(bflat.astype(np.float64) / bs.astype(np.float64))) <= 2**31 - 1))
            if not fits:
                raise ConfigError(f"record: layer '{key}': the int32 bias overflows with these scales: skip the layer")
            lq.b_q, lq.b_scale, lq.bias_shape = bq, bs, (n_out,) if b.ndim <= 1 else (1, n_out)
        plan.layers[l.name] = lq
    order = {n.name: i for i, n in enumerate(walk_nodes(model.graph))}
    plan.layers = dict(sorted(plan.layers.items(), key=lambda kv: order[kv[0]]))
    torder = {t: i for i, t in enumerate(dict.fromkeys([*idx.graph_inputs, *(o for n in walk_nodes(model.graph)
                                                                             for o in n.output)]))}
    plan.tensors = dict(sorted(plan.tensors.items(), key=lambda kv: torder.get(kv[0], 1 << 30)))
    return plan
