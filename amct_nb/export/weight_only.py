"""Weight-only int8 in the exported models: ``DequantizeLinear(int8 weight, scales)`` in front of float ops.

A :class:`~amct_nb.export.plan.WeightOnly` entry of the plan names a constant weight whose readers stay
float (their activations are not quantized): the deploy model stores it as int8 with one scale per
row along its axis, and a DequantizeLinear feeds every reader. The fake-quant model reads the weight the
same way (the same int8 initializer and DequantizeLinear), not as float constants: ONNX Runtime picks
other kernels for a Conv whose weight is a constant (it pre-packs it, NCHWc) than for one whose weight is
computed, and their different float sums, rounded onto the next int8 grid, made the fake-quant model
disagree with the deploy model on 0.25-1.25% of EfficientNet-Lite0's top-1 once its stem was weight-only.
Files shrink by ~4x for those weights; ONNX Runtime runs the float op on the dequantized weight.
"""

from __future__ import annotations

import numpy as np
from onnx import helper

from ..ir import GraphEdit
from .plan import QuantPlan

__all__ = ["apply_weight_only"]


def apply_weight_only(ed: GraphEdit, plan: QuantPlan, form: str) -> None:
    """Rewire every reader of each weight-only weight to a DequantizeLinear of its int8 copy (``form``
    "deploy" or "fake": the same nodes, see the module docstring)."""
    if form not in ("deploy", "fake"):
        raise ValueError(f"form must be 'deploy' or 'fake', not {form!r}")
    for w, wo in plan.weight_only.items():
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
        for user in wo.users:
            node = ed.node(user)
            for i, name in enumerate(node.input):
                if name == w:
                    node.input[i] = out
