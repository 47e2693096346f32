"""Weight-only int8 in the exported models: ``DequantizeLinear(int8 weight, scales)`` in front of float ops.

A :class:`~amct_nb.export.plan.WeightOnly` entry of the plan names a constant weight whose readers stay
float (their activations are not quantized): the deploy model stores it as int8 with one scale per
row along its axis, and a DequantizeLinear feeds every reader; the fake-quant model holds the same
dequantized float32 values, so both compute the same thing. Files shrink by ~4x for those weights;
ONNX Runtime runs the float op on the dequantized weight.
"""

from __future__ import annotations

import numpy as np
from onnx import helper

from ..ir import GraphEdit
from .plan import QuantPlan

__all__ = ["apply_weight_only"]


def apply_weight_only(ed: GraphEdit, plan: QuantPlan, form: str) -> None:
    """Rewire every reader of each weight-only weight: ``form`` "deploy" reads a DequantizeLinear of the
    int8 copy, "fake" the dequantized float32 values."""
    for w, wo in plan.weight_only.items():
        if form == "deploy":
            q, s, z, out = f"{w}_wo_quantized", f"{w}_wo_scale", f"{w}_wo_zero_point", f"{w}_wo_dequantized"
            n = np.asarray(wo.w_scale).size
            if wo.storage == "uint8":  # the same values, for u8 x u8 kernels that cannot saturate
                ed.initializer(q, (wo.w_q.astype(np.int16) + 128).astype(np.uint8))
                ed.initializer(z, np.full(n, 128, np.uint8))
            else:
                ed.initializer(q, wo.w_q.astype(np.int8))
                ed.initializer(z, np.zeros(n, np.int8))
            ed.initializer(s, np.asarray(wo.w_scale, np.float32).reshape(-1))
            ed.first([helper.make_node("DequantizeLinear", [q, s, z], [out], name=f"{w}_wo_DequantizeLinear",
                                       axis=wo.axis)])
        else:
            out = ed.initializer(f"{w}_wo_fake_quant", wo.dequantized())
        for user in wo.users:
            node = ed.node(user)
            for i, name in enumerate(node.input):
                if name == w:
                    node.input[i] = out
