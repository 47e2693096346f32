"""Read a QDQ model: find its Q/DQ patterns, check them, and build the float model they stand for.

Patterns (AMCT's, and the ones real exporters write):

* ``x -> QuantizeLinear -> DequantizeLinear -> ...`` on any activation tensor: ``x`` is quantized with
  that grid (one grid per tensor; a ``Clip`` between Q and DQ narrows it, as PyTorch exports
  ``quant_max=127``). Consumers of the DQ read ``x``; a DQ output that is a graph output becomes
  ``Identity(x)``.
* a constant weight as ``int8 initializer -> DequantizeLinear`` (ONNX Runtime, NNCF, TensorRT) or
  ``float initializer -> QuantizeLinear -> DequantizeLinear`` (PyTorch and TensorFlow fake-quant):
  the float model holds ``(q - zp) * s`` and the integers ``q`` are kept (:class:`QatConst`); int32
  biases the same way.
* a uint8/int8 grid whose zero point is the type's minimum represents nothing below 0: the QDQ model
  clamps the tensor at 0 there. ONNX Runtime's quantizer relies on that and removes a ``Relu`` (or a
  ``Clip`` at 0) before such a QuantizeLinear, so the float model gets the ``Relu`` back where the
  tensor may be negative (its producer is no Relu, Sigmoid, Clip at 0 ... and reads no such grid);
  without it, the float model would skip the model's ReLUs.
* a lone ``QuantizeLinear`` on a graph output stays (its input is quantized with its grid), and a
  ``DequantizeLinear`` of an integer graph input stays (its output is quantized with its grid).

Anything else involving a Q or DQ is an error that names the node and the fix. Nodes are named
first (``amct_nb.passes.name_nodes``), so layer names are those :func:`amct_nb.ptq.prepare` gives.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import TensorProto, helper

from ..errors import ModelError
from ..ir import GraphEdit, GraphIndex, is_default_domain, subgraphs
from ..passes import constants_to_initializers, name_nodes, remove_noops
from .grids import Grid, NodeNumbers, QatConst, dequantize_like_dq, node_numbers, quantize_like_q, type_name

__all__ = ["Reading", "read_qdq", "QOPERATOR_OPS"]

#: ONNX Runtime's QOperator format (integer ops instead of Q/DQ pairs): not read.
QOPERATOR_OPS = ("QLinearConv", "QLinearMatMul", "ConvInteger", "MatMulInteger", "QLinearAdd", "QGemm",
                 "QLinearConcat", "QLinearMul", "QLinearGlobalAveragePool", "QLinearAveragePool")


@dataclass
class Reading:
    """What a QDQ model says: the float model, its quantized tensors and its integer constants."""

    model: onnx.ModelProto  # the float model: no Q/DQ pairs, named nodes
    tensors: dict[str, Grid]  # quantized activation tensors (names in ``model``) -> grid
    consts: dict[str, QatConst]  # float initializer of ``model`` -> the integers the QAT model held
    patterns: Counter = field(default_factory=Counter)
    dtypes: Counter = field(default_factory=Counter)  # integer type of the activation Q/DQ
    notes: list[str] = field(default_factory=list)
    #: tensors of ``model`` that have another name in the QDQ model (a narrowed grid's float Clip output)
    origin: dict[str, str] = field(default_factory=dict)


def _elem_types(g: onnx.GraphProto) -> dict[str, int]:
    types = {vi.name: vi.type.tensor_type.elem_type for vi in [*g.input, *g.value_info, *g.output]}
    types.update({t.name: t.data_type for t in g.initializer})
    return types


def _refuse_other_formats(g: onnx.GraphProto) -> None:
    for n in g.node:
        if n.op_type in QOPERATOR_OPS:
            raise ModelError(
                f"{n.op_type} '{n.name}' is ONNX Runtime's QOperator format (integer ops, no Q/DQ pairs): amct-nb "
                "converts QDQ models: quantize the float model with onnxruntime.quantization.quantize_static(..., "
                "quant_format=QuantFormat.QDQ), or export the QAT model with QuantizeLinear/DequantizeLinear")
        if n.op_type in ("QuantizeLinear", "DequantizeLinear") and not is_default_domain(n):
            raise ModelError(
                f"{n.op_type} '{n.name}' is from domain '{n.domain}' (ONNX Runtime's contrib Q/DQ, used for 16-bit "
                "and 4-bit types): amct-nb converts standard 8-bit QuantizeLinear/DequantizeLinear: re-export with "
                "uint8/int8 quantization in the default ONNX domain")


class _Walk:
    """One pass over the QDQ graph that collects the edits of the float model."""

    def __init__(self, model: onnx.ModelProto):
        self.g = model.graph
        self.idx = GraphIndex(self.g)
        self.types = _elem_types(self.g)
        self.outputs = {o.name for o in self.g.output}
        self.ed = GraphEdit(model)
        self.drop: set[str] = set()  # node names removed
        self.rename: dict[str, str] = {}  # DQ output -> what its consumers read now
        self.tensors: dict[str, Grid] = {}
        self.consts: dict[str, QatConst] = {}
        self.patterns: Counter = Counter()
        self.dtypes: Counter = Counter()
        self.notes: list[str] = []
        self.used_names = {t.name for t in self.g.initializer} | {n.name for n in self.g.node}
        self.used_names |= {o for n in self.g.node for o in n.output} | {i.name for i in self.g.input}
        self.pairs: set[str] = set()  # DQ nodes of activation pairs
        self.origin: dict[str, str] = {}
        self.clamped: dict[str, str] = {}  # tensor -> its Relu'd value (a grid with the zero point at qmin)

    # -- helpers ---------------------------------------------------------------------------
    def numbers(self, node) -> NodeNumbers:
        return node_numbers(self.idx, node, self.types)

    def fresh(self, base: str) -> str:
        name, k = base, 0
        while name in self.used_names:
            k += 1
            name = f"{base}_{k}"
        self.used_names.add(name)
        return name

    def producer(self, name: str):
        return self.idx.producer.get(name)

    def add_tensor(self, t: str, grid: Grid, what: str) -> None:
        have = self.tensors.get(t)
        if have is not None and not have.same(grid):
            raise ModelError(
                f"tensor '{t}' is quantized twice with different grids ({what}: '{have.node}' scale "
                f"{float(have.scale):.9g} zp {have.zero_point}, '{grid.node}' scale {float(grid.scale):.9g} zp "
                f"{grid.zero_point}): a converted model keeps one grid per tensor: re-export with one "
                "QuantizeLinear/DequantizeLinear pair on it")
        self.tensors[t] = grid
        self.dtypes[grid.dtype] += 0 if have is not None else 1

    def grid_of(self, node, nn: NodeNumbers, x: str, qmin: int, qmax: int) -> Grid:
        if nn.axis is not None:
            raise ModelError(
                f"{node.op_type} '{node.name}' quantizes the activation '{x}' per channel (axis {nn.axis}, "
                f"{nn.scale.size} scales): only weights may be per channel, int8 kernels take one scale per "
                "activation tensor: re-export with per-tensor activation quantization (PyTorch: "
                "qscheme=torch.per_tensor_affine for activations)")
        if nn.elem_type not in (TensorProto.UINT8, TensorProto.INT8):
            raise ModelError(f"{node.op_type} '{node.name}' quantizes the activation '{x}' to "
                             f"{type_name(nn.elem_type)}: activations must be uint8 or int8: re-export with 8-bit "
                             "activations")
        return Grid(nn.scale.astype(np.float32), int(nn.zero_point), type_name(nn.elem_type), qmin, qmax, node.name)

    def narrowing_clip(self, clip, qnode, dq, nn: NodeNumbers) -> tuple[int, int]:
        """(qmin, qmax) of a Clip between Q and DQ with constant integer bounds."""
        lo, hi = _type_range(nn)
        for i, name in ((1, "min"), (2, "max")):
            if len(clip.input) > i and clip.input[i]:
                if not self.idx.is_const(clip.input[i]):
                    raise self.between(clip, qnode, dq, f"its {name} is not a constant")
                v = int(np.asarray(self.idx.array(clip.input[i])).reshape(()))
                lo, hi = (max(lo, v), hi) if i == 1 else (lo, min(hi, v))
        if lo > hi:
            raise self.between(clip, qnode, dq, f"it clips to the empty range [{lo}, {hi}]")
        return lo, hi

    def between(self, op, qnode, dq, why: str = "") -> ModelError:
        return ModelError(
            f"{op.op_type} '{op.name}' sits between QuantizeLinear '{qnode.name}' and DequantizeLinear "
            f"'{dq.name if dq is not None else '?'}' and computes on the integers{f' ({why})' if why else ''}: "
            "amct-nb accepts a QuantizeLinear followed directly by its DequantizeLinear (or by a Clip with constant "
            f"bounds, then the DequantizeLinear): re-export with the {op.op_type} after the DequantizeLinear, e.g. "
            "onnxruntime.quantization.quantize_static(..., quant_format=QuantFormat.QDQ)")

    # -- the patterns ----------------------------------------------------------------------
    def dq(self, d) -> None:
        src = d.input[0]
        if self.idx.is_const(src):
            self.const_dq(d)
            return
        p = self.producer(src)
        clip = None
        if p is not None and p.op_type == "Clip" and self.producer(p.input[0]) is not None \
                and self.producer(p.input[0]).op_type == "QuantizeLinear":
            clip, p = p, self.producer(p.input[0])
        if p is not None and p.op_type == "QuantizeLinear" and is_default_domain(p):
            self.pair(p, clip, d)
            return
        if p is None and src not in self.idx.initializers:  # an integer graph input
            nn = self.numbers(d)
            self.add_tensor(d.output[0], self.grid_of(d, nn, d.output[0], *_type_range(nn)), "input DQ")
            self.patterns["input_dequantize"] += 1
            return
        q = self.q_above(p)
        if q is not None:
            raise self.between(p, q, d)
        raise ModelError(
            f"DequantizeLinear '{d.name}' reads '{src}', which {p.op_type} '{p.name}' computes, not a "
            "QuantizeLinear or an integer constant: amct-nb converts Q -> DQ pairs and quantized constants: "
            "re-export the model in QDQ form")

    def q_above(self, node, depth: int = 4):
        """A QuantizeLinear feeding ``node`` through at most ``depth`` ops (for the error message)."""
        for i in node.input:
            p = self.producer(i)
            if p is None:
                continue
            if p.op_type == "QuantizeLinear":
                return p
            if depth > 0:
                found = self.q_above(p, depth - 1)
                if found is not None:
                    return found
        return None

    def pair(self, qn, clip, d) -> None:
        nq, nd = self.numbers(qn), self.numbers(d)
        if not nq.agrees(nd):
            raise ModelError(
                f"QuantizeLinear '{qn.name}' and DequantizeLinear '{d.name}' on '{qn.input[0]}' disagree "
                f"({nq.describe()} vs {nd.describe()}): a Q/DQ pair must use one grid, its values are "
                "otherwise rescaled between the two: re-export the model, or give the DequantizeLinear the "
                "QuantizeLinear's scale and zero point")
        qmin, qmax = self.narrowing_clip(clip, qn, d, nq) if clip is not None else _type_range(nq)
        if clip is not None:
            other = [c for c in self.idx.consumers.get(clip.output[0], []) if c.op_type != "DequantizeLinear"]
            if other or clip.output[0] in self.outputs:
                raise self.between(clip, qn, d, "its integers are also read elsewhere")
        self.drop.add(d.name)
        if clip is not None:
            self.drop.add(clip.name)
        x = qn.input[0]
        if self.idx.is_const(x):  # float weight -> Q -> DQ (fake-quant export)
            q = quantize_like_q(self.idx.array(x), nq, qmin, qmax)
            self.new_const(d, q, nq, "float weight -> QuantizeLinear", prefer=x if self.only_reader(x, qn) else None)
            return
        px = self.producer(x)
        if px is not None and px.op_type == "DequantizeLinear" and px.name in self.pairs:
            raise ModelError(
                f"DequantizeLinear '{px.name}' feeds QuantizeLinear '{qn.name}' directly (a requantization from one "
                "grid to another): a converted model keeps one grid per tensor: re-export without the second "
                "Q/DQ pair, or with an op between them")
        self.pairs.add(d.name)
        grid = self.grid_of(qn, nq, x, qmin, qmax)
        t = x
        if clip is not None:  # the narrowed grid as a float Clip before the quantization point
            self.patterns["narrowed_pairs"] += 1
            t = self.fresh(f"{x}_qat_range")
            self.origin[t] = x
            lo = self.ed.initializer(self.fresh(f"{t}_min"), np.array(grid.lo, np.float32))
            hi = self.ed.initializer(self.fresh(f"{t}_max"), np.array(grid.hi, np.float32))
            self.ed.hook(x, [helper.make_node("Clip", [x, lo, hi], [t], name=self.fresh(f"{clip.name}_float"))])
        elif grid.zero_point == grid.qmin and not self.nonnegative(x):
            t = self.clamp_at_zero(x)
        self.add_tensor(t, grid, "two Q/DQ pairs")
        self.patterns["activation_pairs"] += 1
        self.rename[d.output[0]] = t

    def nonnegative(self, name: str, depth: int = 16) -> bool:
        """Whether tensor ``name`` of the QDQ model is >= 0 in the float model too, by its producers: a
        Relu, Sigmoid, Softmax, Abs, Exp or Clip at 0 or above, a DequantizeLinear whose zero point is
        the type's minimum (the float model clamps it at 0 as well), or pooling and reshaping of those."""
        p = self.producer(name)
        if p is None or depth < 0:
            return False
        if p.op_type in _NONNEGATIVE_OPS:
            return True
        if p.op_type == "Clip":
            lo = p.input[1] if len(p.input) > 1 and p.input[1] else None
            return lo is not None and self.idx.is_const(lo) and float(np.asarray(self.idx.array(lo)).min()) >= 0
        if p.op_type == "DequantizeLinear":
            nn = self.numbers(p)
            return not self.idx.is_const(p.input[0]) and bool(np.all(nn.zero_point == _type_range(nn)[0]))
        if p.op_type in _SIGN_KEEPING_OPS:
            data = list(p.input) if p.op_type == "Concat" else [p.input[0]]
            return all(self.nonnegative(i, depth - 1) for i in data)
        return False

    def clamp_at_zero(self, x: str) -> str:
        """Put back the Relu that a grid with its zero point at qmin stands for; returns the tensor that
        holds ``Relu(x)`` (``x`` itself when only QuantizeLinears read it: the producer's output is renamed)."""
        if x in self.clamped:
            return self.clamped[x]
        p = self.producer(x)
        readers = self.idx.consumers.get(x, [])
        self.patterns["relu_restored"] += 1
        if p is not None and readers and all(c.op_type == "QuantizeLinear" for c in readers) and x not in self.outputs:
            node = self.ed.node(p.name)
            pre = self.fresh(f"{x}_before_relu")
            node.output[list(node.output).index(x)] = pre
            self.ed.hook(pre, [helper.make_node("Relu", [pre], [x], name=self.fresh(f"{x}_qat_relu"))])
            t = x
        else:  # other ops read x unclamped in the QDQ model too: only the quantized path gets the Relu
            t = self.fresh(f"{x}_qat_relu")
            self.origin[t] = x
            self.ed.hook(x, [helper.make_node("Relu", [x], [t], name=self.fresh(f"{x}_qat_relu_node"))])
        self.clamped[x] = t
        return t

    def only_reader(self, name: str, node) -> bool:
        return [c.name for c in self.idx.consumers.get(name, [])] == [node.name] and name not in self.outputs

    def const_dq(self, d) -> None:
        nn = self.numbers(d)
        src = d.input[0]
        q = np.asarray(self.idx.array(src)).astype(np.int64)
        base = src[: -len("_quantized")] if src.endswith("_quantized") else None
        self.new_const(d, q, nn, "integer initializer", prefer=base if base and base not in self.used_names else None)
        self.drop.add(d.name)

    def new_const(self, d, q: np.ndarray, nn: NodeNumbers, form: str, prefer: str | None) -> None:
        name = prefer if prefer is not None else self.fresh(d.output[0] + "_float")
        self.used_names.add(name)
        if name in self.idx.initializers:  # the float weight of a fake-quant export: replaced by (q - zp) * s
            inits = [t for t in self.ed.graph.initializer if t.name != name]
            del self.ed.graph.initializer[:]
            self.ed.graph.initializer.extend(inits)
        axis = None if nn.axis is None else _const_axis(d, q, nn)
        nn = NodeNumbers(nn.scale, nn.zero_point, axis, nn.elem_type)
        self.ed.initializer(name, dequantize_like_dq(q, nn))
        self.consts[name] = QatConst(q, nn.scale, nn.zero_point, axis, nn.elem_type, form, d.name)
        self.patterns["integer_constants" if form == "integer initializer" else "fake_quant_constants"] += 1
        self.rename[d.output[0]] = name

    def q(self, qn) -> None:
        out = qn.output[0]
        cons = self.idx.consumers.get(out, [])
        for c in cons:
            if c.op_type == "DequantizeLinear" or (c.op_type == "Clip" and c.name in self.drop):
                continue
            dq_below = next((n for n in self.idx.consumers.get(c.output[0], []) if n.op_type == "DequantizeLinear"),
                            None) if c.output else None
            raise self.between(c, qn, dq_below)
        if out in self.outputs:  # a lone QuantizeLinear on a graph output stays; its input is quantized
            nn = self.numbers(qn)
            if not self.idx.is_const(qn.input[0]):
                self.add_tensor(qn.input[0], self.grid_of(qn, nn, qn.input[0], *_type_range(nn)), "output Q")
            self.patterns["output_quantize"] += 1
            return
        self.drop.add(qn.name)
        if not cons:
            self.notes.append(f"QuantizeLinear '{qn.name}' had no consumer and was dropped")

    # -- the float model -------------------------------------------------------------------
    def resolve(self, n: str) -> str:
        seen = set()
        while n in self.rename and n not in seen:
            seen.add(n)
            n = self.rename[n]
        return n

    def finish(self) -> onnx.ModelProto:
        mapping = {k: self.resolve(k) for k in self.rename}
        tensors, self.tensors, self.dtypes = self.tensors, {}, Counter()
        for t, grid in tensors.items():  # a lone output Q may read a DQ output: the grid goes to its source
            self.add_tensor(self.resolve(t), grid, "a Q/DQ pair and an output QuantizeLinear")
        for old, new in mapping.items():
            if old in self.outputs:  # keep the model's interface: the output reads the value
                self.ed.hook(new, [helper.make_node("Identity", [new], [old], name=self.fresh(f"{old}_qat_output"))])
        keep = [n for n in self.ed.graph.node if n.name not in self.drop]
        del self.ed.graph.node[:]
        self.ed.graph.node.extend(keep)
        for n in self.ed.graph.node:
            _rename_inputs(n, mapping)
        del self.ed.graph.value_info[:]  # stale types of removed tensors; prepare infers shapes again
        return self.ed.finish(drop_unused=True)


#: Ops whose output is never negative, and ops that keep their (data) inputs' signs.
_NONNEGATIVE_OPS = ("Relu", "Sigmoid", "Softmax", "Abs", "Exp", "HardSigmoid")
_SIGN_KEEPING_OPS = ("MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "Flatten", "Reshape",
                     "Transpose", "Squeeze", "Unsqueeze", "Identity", "Concat")


def _const_axis(d, q: np.ndarray, nn: NodeNumbers) -> int:
    """The axis of a per-channel constant, checked as ONNX Runtime does: in [-rank, rank), one scale per
    index along it (ORT refuses an out-of-range axis, e.g. axis 1 on a rank-1 BatchNormalization scale,
    instead of wrapping it; its quantizer quantizes such a tensor per tensor)."""
    if not -q.ndim <= nn.axis < q.ndim or q.shape[nn.axis] != nn.scale.size:
        raise ModelError(
            f"DequantizeLinear '{d.name}' dequantizes a constant of shape {list(q.shape)} with {nn.scale.size} "
            f"scales along axis {nn.axis}, which "
            + ("is out of range for its rank" if not -q.ndim <= nn.axis < q.ndim else "has another length")
            + ": ONNX Runtime cannot run it either: re-export with the scales along an axis of the constant "
            "(or one scale per tensor)")
    return nn.axis % q.ndim


def _type_range(nn: NodeNumbers) -> tuple[int, int]:
    return {TensorProto.UINT8: (0, 255), TensorProto.INT8: (-128, 127)}.get(nn.elem_type, (0, 255))


def _rename_inputs(node: onnx.NodeProto, mapping: dict[str, str]) -> None:
    for i, name in enumerate(node.input):
        if name in mapping:
            node.input[i] = mapping[name]
    for sub in subgraphs(node):
        for n in sub.node:
            _rename_inputs(n, mapping)


def read_qdq(model: onnx.ModelProto) -> Reading:
    """The float model, quantized tensors and integer constants of a QDQ model (a ModelProto,
    never modified); raises ModelError / NotSupportedError naming the node for anything else."""
    m, _ = name_nodes(model)
    m, _ = constants_to_initializers(m)
    m, _ = remove_noops(m)
    _refuse_other_formats(m.graph)
    qs = [n for n in m.graph.node if n.op_type == "QuantizeLinear"]
    dqs = [n for n in m.graph.node if n.op_type == "DequantizeLinear"]
    if not qs and not dqs:
        raise ModelError(
            "the model has no QuantizeLinear/DequantizeLinear nodes, so there is nothing to convert: it is not a "
            "QAT (fake-quant) or QDQ export. Calibrate it instead: amct_nb.quantize(model, data) or "
            "amct-nb calibrate MODEL --data DATA --output DIR")
    w = _Walk(m)
    for d in dqs:
        w.dq(d)
    for qn in qs:
        w.q(qn)
    float_model = w.finish()
    if w.patterns.get("relu_restored"):
        w.notes.append(
            f"{w.patterns['relu_restored']} Relu(s) put back in the float model: a uint8/int8 grid whose zero point "
            "is the type's minimum clamps its tensor at 0 (ONNX Runtime's quantizer removes a Relu or Clip before "
            "such a QuantizeLinear), so the float model keeps that clamp")
    left = [n.name for n in float_model.graph.node if n.op_type == "DequantizeLinear" and n.name not in w.drop
            and n.output[0] not in w.tensors]
    if left:  # cannot happen: every DQ is a pattern or an error
        raise ModelError(f"internal error: DequantizeLinear {left[0]} was not converted; please report this")
    return Reading(float_model, w.tensors, w.consts, w.patterns, w.dtypes, w.notes, w.origin)
