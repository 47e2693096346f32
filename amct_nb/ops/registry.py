"""Registry of quantizable operator types, and the layers of a model that match it.

An :class:`OpSpec` says which input is the weight, which the bias, along which weight axis the
output channels lie, how to lay the weight out in the int8 kernel's reduction order (for the
saturation guard), and when a node of that type cannot be quantized (with the reason). Adding
an op type is one :func:`register` call (see :mod:`amct_nb.ops.builtin`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import onnx

from ..ir import GraphIndex, attr, is_default_domain, named_subgraphs, node_scopes, walk_nodes
from ..reasons import Code, Reason

__all__ = ["OpSpec", "register", "OPS", "Layer", "find_layers"]


@dataclass(frozen=True)
class OpSpec:
    """How to quantize one operator type.

    ``channel_axis(node, w)`` is the weight axis of the output channels (None: per-tensor only).
    ``kernel_rows(node, w)`` returns the weight as [C_out, K] in the order an int8 GEMM reduces
    over K (adjacent positions are summed pairwise by x86 u8*s8 kernels without VNNI), or None
    when the runtime uses a kernel that cannot saturate (e.g. depthwise convolution).
    ``check(node, idx)`` returns why a node cannot be quantized (a sentence), or None.
    ``out_channels(node, w)`` is the number of output channels (the length of a per-channel scale).
    """

    op_type: str
    weight_index: int
    bias_index: int | None
    channel_axis: Callable[[onnx.NodeProto, np.ndarray], int | None]
    kernel_rows: Callable[[onnx.NodeProto, np.ndarray], np.ndarray | None]
    check: Callable[[onnx.NodeProto, GraphIndex], str | None]
    out_channels: Callable[[onnx.NodeProto, np.ndarray], int] = lambda n, w: int(w.shape[0])
    activation_index: int = 0


OPS: dict[str, OpSpec] = {}


def register(spec: OpSpec) -> OpSpec:
    """Add (or replace) the quantization rule of an operator type."""
    OPS[spec.op_type] = spec
    return spec


@dataclass
class Layer:
    """A node of a registered op type found in a model (quantizable or not, with the reason)."""

    name: str
    op_type: str
    activation: str
    weight: str
    bias: str | None
    output: str
    weight_shape: tuple
    reason: Reason | None = None  # why it cannot be quantized (None: it can)
    #: output channels (the length of per-channel scales); None when the weight is not a constant
    out_channels: int | None = None
    #: weight axis of the output channels for per-channel scales (None: per-tensor only or unknown)
    channel_axis: int | None = None
    #: the If/Loop/Scan body it sits in (``If_0/then_branch``; ``""``: the main graph)
    scope: str = ""
    #: a Conv's ``group`` attribute (1 for other layers)
    groups: int = 1

    @property
    def quantizable(self) -> bool:
        return self.reason is None


def _owner_ops(graph: onnx.GraphProto, owners: tuple = ()) -> dict[str, tuple]:
    """Op types of the nodes holding each node's body (``()`` for the main graph's nodes)."""
    out = {}
    for n in graph.node:
        out[n.name] = owners
        for _, sub in named_subgraphs(n):
            out.update(_owner_ops(sub, (*owners, n.op_type)))
    return out


def find_layers(model: onnx.ModelProto) -> list[Layer]:
    """Every node of a registered op type, in the main graph and in If/Loop/Scan bodies, quantizable or not
    (with reason).

    Nodes without a name get ``{op_type}_{index}`` (AMCT's convention) in the returned list; the
    caller names the nodes in the model the same way with :func:`amct_nb.passes.name_nodes`.
    """
    idx = GraphIndex(model.graph, deep=True)
    scopes = node_scopes(model.graph)
    owners = _owner_ops(model.graph)
    layers = []
    for node in walk_nodes(model.graph):
        spec = OPS.get(node.op_type)
        if spec is None or not is_default_domain(node):
            continue
        text = spec.check(node, idx)
        reason = None if text is None else Reason(Code.UNSUPPORTED, text)
        if reason is None and any(o not in ("If", "Loop", "Scan") for o in owners.get(node.name, ())):
            reason = Reason(Code.SUBGRAPH, f"inside a {'/'.join(owners[node.name])} body: only the bodies of If, "
                                           "Loop and Scan are quantized")
        w = idx.array(node.input[spec.weight_index]) if idx.is_const(node.input[spec.weight_index]) else None
        if reason is None and w is not None and not np.issubdtype(w.dtype, np.floating):
            reason = Reason(Code.WEIGHT_DTYPE, f"weight is {w.dtype}, not float")
        if reason is None and w is not None and w.dtype != np.float32:
            reason = Reason(Code.WEIGHT_DTYPE, f"weight is {w.dtype} (only float32 models are quantized)")
        bias = None
        if spec.bias_index is not None and len(node.input) > spec.bias_index and node.input[spec.bias_index]:
            bias = node.input[spec.bias_index]
        if reason is None:
            shared = [c.name for c in idx.consumers.get(node.input[spec.weight_index], []) if c is not node]
            if shared:
                reason = Reason(Code.SHARED_WEIGHT,
                                f"weight shared with {', '.join(shared[:3])} (reused layers are not quantized)")
        shape_ok = w is not None and w.ndim >= 2
        layers.append(
            Layer(
                name=node.name,
                op_type=node.op_type,
                activation=node.input[spec.activation_index],
                weight=node.input[spec.weight_index],
                bias=bias,
                output=node.output[0],
                weight_shape=tuple(w.shape) if w is not None else (),
                reason=reason,
                out_channels=int(spec.out_channels(node, w)) if shape_ok else None,
                channel_axis=spec.channel_axis(node, w) if shape_ok else None,
                scope=scopes.get(node.name, ""),
                groups=int(attr(node, "group", 1)) if node.op_type == "Conv" else 1,
            )
        )
    return layers
