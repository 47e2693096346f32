"""An ONNX graph as a trainable torch module: each node runs as the torch op it names.

:class:`TorchGraph` interprets a (prepared) ONNX model node by node with ``torch.nn.functional``;
the weights and biases of Conv/ConvTranspose/Gemm/MatMul layers are ``nn.Parameter``\\ s (what
training changes), every other constant a buffer. Hooks let the QAT model replace a tensor where
it is produced (activation fake-quant) and a layer's weight and bias where they are read. Written
here rather than taken from onnx2torch: that package imports torchvision (whose wheels do not load
with torch 2.13.0 on the machines here) and lacks Reshape ``allowzero``; an interpreter over the op
set amct-nb's registry and model zoo use is short, exact (tests compare it with ONNX Runtime) and
keeps the ONNX tensor names, which the record and the export need.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import numpy_helper
from torch import nn

from ..errors import NotSupportedError
from ..ir import GraphIndex

__all__ = ["TorchGraph", "SUPPORTED_OPS"]

_LAYER_OPS = {"Conv": (1, 2), "ConvTranspose": (1, 2), "Gemm": (1, 2), "MatMul": (1, None)}


def _attrs(node: onnx.NodeProto) -> dict:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _pads(pads, n):
    """ONNX pads [b1..bn, e1..en] -> (symmetric padding list, F.pad list or None)."""
    pads = list(pads or [0] * (2 * n))
    begin, end = pads[:n], pads[n:]
    if begin == end:
        return begin, None
    flat = []
    for b, e in zip(reversed(begin), reversed(end)):
        flat += [b, e]
    return [0] * n, flat


def _conv(x, w, b, a):
    n = w.dim() - 2
    if a.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET", b"VALID", "VALID"):
        raise NotSupportedError("Conv with auto_pad SAME_* is not supported for training: re-export the model with "
                                "explicit pads, or use post-training quantization")
    pad, extra = _pads(a.get("pads"), n)
    if extra:
        x = F.pad(x, extra)
    fn = (F.conv1d, F.conv2d, F.conv3d)[n - 1]
    return fn(x, w, b, stride=a.get("strides", [1] * n), padding=pad, dilation=a.get("dilations", [1] * n),
              groups=a.get("group", 1))


def _conv_t(x, w, b, a):
    n = w.dim() - 2
    pad, extra = _pads(a.get("pads"), n)
    if extra or "output_shape" in a:
        raise NotSupportedError("ConvTranspose with asymmetric pads or output_shape is not supported for training: "
                                "use post-training quantization")
    fn = (F.conv_transpose1d, F.conv_transpose2d, F.conv_transpose3d)[n - 1]
    return fn(x, w, b, stride=a.get("strides", [1] * n), padding=pad, output_padding=a.get("output_padding", [0] * n),
              groups=a.get("group", 1), dilation=a.get("dilations", [1] * n))


def _gemm(x, w, b, a):
    if a.get("transA", 0):
        x = x.transpose(0, 1)
    if a.get("transB", 0):
        w = w.transpose(0, 1)
    y = a.get("alpha", 1.0) * (x @ w)
    return y if b is None else y + a.get("beta", 1.0) * b


def _pool(kind, x, a):
    n = x.dim() - 2
    k = a["kernel_shape"]
    pad, extra = _pads(a.get("pads"), n)
    if extra:
        x = F.pad(x, extra, value=float("-inf") if kind == "max" else 0.0)
    if kind == "max":
        fn = (F.max_pool1d, F.max_pool2d, F.max_pool3d)[n - 1]
        return fn(x, k, a.get("strides", [1] * n), pad, a.get("dilations", [1] * n), bool(a.get("ceil_mode", 0)))
    fn = (F.avg_pool1d, F.avg_pool2d, F.avg_pool3d)[n - 1]
    return fn(x, k, a.get("strides", [1] * n), pad, bool(a.get("ceil_mode", 0)),
              count_include_pad=bool(a.get("count_include_pad", 0)))


def _axes(ins, a, i=1):
    if len(ins) > i and ins[i] is not None:
        return [int(v) for v in ins[i].reshape(-1).tolist()]
    return list(a["axes"]) if "axes" in a else None


def _reshape(x, shape, a):
    shape = [int(v) for v in shape.reshape(-1).tolist()]
    if not a.get("allowzero", 0):
        shape = [x.shape[i] if v == 0 else v for i, v in enumerate(shape)]
    return x.reshape(shape)


def _clip(ins, a):
    lo = ins[1] if len(ins) > 1 and ins[1] is not None else a.get("min")
    hi = ins[2] if len(ins) > 2 and ins[2] is not None else a.get("max")
    lo = None if lo is None else float(lo)
    hi = None if hi is None else float(hi)
    return torch.clamp(ins[0], lo, hi)


def _reduce(fn, ins, a):
    axes = _axes(ins, a)
    keep = bool(a.get("keepdims", 1))
    if axes is None:
        return fn(ins[0], dim=tuple(range(ins[0].dim())), keepdim=keep)
    return fn(ins[0], dim=tuple(axes), keepdim=keep)


def _unsqueeze(x, axes):
    for ax in sorted(v % (x.dim() + len(axes)) for v in axes):
        x = x.unsqueeze(ax)
    return x


def _bn(ins, a):
    x, s, b, m, v = ins
    return F.batch_norm(x, m, v, s, b, training=False, eps=a.get("epsilon", 1e-5))


OPS: dict[str, Callable] = {
    "Add": lambda i, a: i[0] + i[1], "Sub": lambda i, a: i[0] - i[1], "Mul": lambda i, a: i[0] * i[1],
    "Div": lambda i, a: i[0] / i[1], "Pow": lambda i, a: torch.pow(i[0], i[1]), "Neg": lambda i, a: -i[0],
    "Sqrt": lambda i, a: torch.sqrt(i[0]), "Abs": lambda i, a: torch.abs(i[0]), "Exp": lambda i, a: torch.exp(i[0]),
    "Log": lambda i, a: torch.log(i[0]), "Erf": lambda i, a: torch.erf(i[0]),
    "Relu": lambda i, a: F.relu(i[0]), "Sigmoid": lambda i, a: torch.sigmoid(i[0]),
    "Tanh": lambda i, a: torch.tanh(i[0]),
    "LeakyRelu": lambda i, a: F.leaky_relu(i[0], a.get("alpha", 0.01)),
    "HardSigmoid": lambda i, a: torch.clamp(a.get("alpha", 0.2) * i[0] + a.get("beta", 0.5), 0.0, 1.0),
    "HardSwish": lambda i, a: F.hardswish(i[0]), "Clip": _clip,
    "Softmax": lambda i, a: torch.softmax(i[0], a.get("axis", -1)),
    "GlobalAveragePool": lambda i, a: i[0].mean(dim=tuple(range(2, i[0].dim())), keepdim=True),
    "GlobalMaxPool": lambda i, a: i[0].amax(dim=tuple(range(2, i[0].dim())), keepdim=True),
    "AveragePool": lambda i, a: _pool("avg", i[0], a), "MaxPool": lambda i, a: _pool("max", i[0], a),
    "Flatten": lambda i, a: i[0].reshape(int(np.prod(i[0].shape[:a.get("axis", 1)])), -1),
    "Reshape": lambda i, a: _reshape(i[0], i[1], a),
    "Transpose": lambda i, a: i[0].permute(*(a["perm"] if "perm" in a else reversed(range(i[0].dim())))),
    "Concat": lambda i, a: torch.cat(list(i), dim=a["axis"]),
    "Squeeze": lambda i, a: (i[0].squeeze() if _axes(i, a) is None
                             else i[0].squeeze(tuple(v % i[0].dim() for v in _axes(i, a)))),
    "Unsqueeze": lambda i, a: _unsqueeze(i[0], _axes(i, a)),
    "ReduceMean": lambda i, a: _reduce(torch.mean, i, a), "ReduceSum": lambda i, a: _reduce(torch.sum, i, a),
    "ReduceMax": lambda i, a: _reduce(torch.amax, i, a),
    "Identity": lambda i, a: i[0], "Dropout": lambda i, a: i[0],
    "Shape": lambda i, a: torch.tensor(list(i[0].shape), dtype=torch.int64),
    "Gather": lambda i, a: torch.index_select(i[0], a.get("axis", 0), i[1].reshape(-1).long()).reshape(
        tuple(i[0].shape[:a.get("axis", 0)]) + tuple(i[1].shape) + tuple(i[0].shape[a.get("axis", 0) + 1:])),
    "BatchNormalization": _bn,
}
SUPPORTED_OPS = tuple(sorted(set(OPS) | set(_LAYER_OPS) | {"Constant"}))


class TorchGraph(nn.Module):
    """``model`` (an ONNX ModelProto with one float input per feed) as a torch module.

    ``forward(*inputs)`` takes the graph inputs in order and returns the first output (or a tuple).
    ``tensor_hooks``: ONNX tensor name -> module applied where the tensor is produced (a graph input
    or a node output); ``layer_hooks``: layer node name -> callable ``(weight, bias) -> (weight, bias)``
    applied where the layer reads them, or ``(weight, bias, post)`` where ``post(output)`` then transforms the
    layer's output (the BatchNorm of :class:`~amct_nb.qat.bn.FoldedBn`). ``tied``: initializer -> the one it is
    a copy of (a shared weight preparation copied per layer): both read one parameter."""

    def __init__(self, model: onnx.ModelProto, tied: dict[str, str] | None = None):
        super().__init__()
        g = model.graph
        bad = sorted({n.op_type for n in g.node if n.op_type not in SUPPORTED_OPS or n.domain not in ("", "ai.onnx")})
        if bad:
            raise NotSupportedError(f"ONNX op(s) {', '.join(bad)} cannot be turned into torch for training here: use "
                                    "post-training quantization (amct-nb calibrate), or the output check and auto "
                                    "calibration for accuracy")
        self.nodes = list(g.node)
        self.node_names = [n.name or f"{n.op_type}_{i}" for i, n in enumerate(self.nodes)]
        self.attrs = [_attrs(n) for n in self.nodes]
        self.inputs = [i.name for i in g.input if i.name not in {t.name for t in g.initializer}]
        self.outputs = [o.name for o in g.output]
        trainable = set()
        for n in self.nodes:
            if n.op_type in _LAYER_OPS:
                wi, bi = _LAYER_OPS[n.op_type]
                for i in (wi, bi):
                    if i is not None and len(n.input) > i and n.input[i]:
                        trainable.add(n.input[i])
        self.params = nn.ParameterDict()
        self.key: dict[str, str] = {}
        consts: dict[str, torch.Tensor] = {}
        for t in g.initializer:
            arr = numpy_helper.to_array(t)
            ten = torch.from_numpy(np.array(arr))
            if t.name in trainable and arr.dtype == np.float32:
                k = f"p{len(self.key)}"
                self.key[t.name] = k
                self.params[k] = nn.Parameter(ten)
            else:
                consts[t.name] = ten
        for copy, orig in (tied or {}).items():  # copies of one shared weight train as one parameter
            if copy in self.key and orig in self.key and torch.equal(self.params[self.key[copy]],
                                                                      self.params[self.key[orig]]):
                del self.params[self.key[copy]]
                self.key[copy] = self.key[orig]
        for n in self.nodes:
            if n.op_type == "Constant":
                consts[n.output[0]] = torch.from_numpy(np.array(numpy_helper.to_array(_attrs(n)["value"])))
        self._const_names = list(consts)
        for i, name in enumerate(self._const_names):
            self.register_buffer(f"c{i}", consts[name], persistent=False)
        self.tensor_hooks = nn.ModuleDict()
        self._hook_key: dict[str, str] = {}
        self.layer_hooks: dict[str, Callable] = {}
        self.index = GraphIndex(g)

    # -- hooks ------------------------------------------------------------------------------
    def hook_tensor(self, name: str, module: nn.Module) -> None:
        k = f"h{len(self._hook_key)}"
        self._hook_key[name] = k
        self.tensor_hooks[k] = module

    def tensor_hook(self, name: str) -> nn.Module | None:
        k = self._hook_key.get(name)
        return None if k is None else self.tensor_hooks[k]

    def param(self, name: str) -> nn.Parameter:
        return self.params[self.key[name]]

    # -- run --------------------------------------------------------------------------------
    def _env(self) -> dict:
        env = {name: getattr(self, f"c{i}") for i, name in enumerate(self._const_names)}
        env.update({name: self.params[k] for name, k in self.key.items()})
        return env

    def _set(self, env, name, value):
        k = self._hook_key.get(name)
        env[name] = self.tensor_hooks[k](value) if k is not None else value

    def forward(self, *inputs):
        env = self._env()
        for name, x in zip(self.inputs, inputs):
            self._set(env, name, x)
        for node, nname, a in zip(self.nodes, self.node_names, self.attrs):
            if node.op_type == "Constant":
                continue
            ins = [env[i] if i else None for i in node.input]
            if node.op_type in _LAYER_OPS:
                wi, bi = _LAYER_OPS[node.op_type]
                w = ins[wi]
                b = ins[bi] if bi is not None and len(ins) > bi else None
                hook = self.layer_hooks.get(nname)
                post = None
                if hook is not None:
                    w, b, *rest = hook(w, b)
                    post = rest[0] if rest else None
                if node.op_type == "Conv":
                    out = _conv(ins[0], w, b, a)
                elif node.op_type == "ConvTranspose":
                    out = _conv_t(ins[0], w, b, a)
                elif node.op_type == "Gemm":
                    out = _gemm(ins[0], w, b, a)
                else:
                    out = torch.matmul(ins[0], w)
                if post is not None:
                    out = post(out)
            else:
                out = OPS[node.op_type](ins, a)
            outs = out if isinstance(out, (tuple, list)) else (out,)
            for name, v in zip(node.output, outs):
                if name:
                    self._set(env, name, v)
        res = tuple(env[o] for o in self.outputs)
        return res[0] if len(res) == 1 else res
