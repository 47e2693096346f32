"""Small synthetic ONNX models covering every registered op type (built with onnx.helper)."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17


def _rng(seed):
    return np.random.default_rng(seed)


def _model(nodes, inputs, outputs, inits, opset=OPSET, name="g"):
    g = helper.make_graph(nodes, name, inputs, outputs, inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], producer_name="tests")
    m.ir_version = 8 if opset >= 15 else 7
    if opset < 13:
        m.ir_version = 6
    onnx.checker.check_model(m)
    return m


def f32(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def w(name, arr):
    return numpy_helper.from_array(np.asarray(arr, dtype=np.float32), name)


def conv_bn_relu(seed=0, c_in=4, c=32, opset=OPSET, depthwise=True, classes=10):
    """Conv-BN-ReLU, depthwise Conv-BN-Clip, 1x1 Conv, residual Add, GlobalAveragePool, Gemm(transB=1)."""
    r = _rng(seed)
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c1", "g1", "be1", "m1", "v1"], ["bn1"], name="bn1"),
        helper.make_node("Relu", ["bn1"], ["r1"], name="relu1"),
    ]
    inits = [
        w("w1", r.normal(0, 0.3, (c, c_in, 3, 3))), w("b1", r.normal(0, 0.1, c)),
        w("g1", r.uniform(0.5, 1.5, c)), w("be1", r.normal(0, 0.2, c)), w("m1", r.normal(0, 0.2, c)),
        w("v1", r.uniform(0.5, 2, c)),
    ]
    if depthwise:
        nodes += [
            helper.make_node("Conv", ["r1", "w2"], ["c2"], name="dwconv", group=c, pads=[1, 1, 1, 1]),
            helper.make_node("BatchNormalization", ["c2", "g2", "be2", "m2", "v2"], ["bn2"], name="bn2"),
            helper.make_node("Clip", ["bn2", "zero", "six"], ["r2"], name="relu6"),
        ]
        inits += [
            w("w2", r.normal(0, 0.3, (c, 1, 3, 3))), w("g2", r.uniform(0.5, 1.5, c)), w("be2", r.normal(0, 0.2, c)),
            w("m2", r.normal(0, 0.2, c)), w("v2", r.uniform(0.5, 2, c)), w("zero", 0.0), w("six", 6.0),
        ]
        last = "r2"
    else:
        last = "r1"
    nodes += [
        helper.make_node("Conv", [last, "w3", "b3"], ["c3"], name="pwconv"),
        helper.make_node("Add", ["c3", "r1"], ["add"], name="residual"),
        helper.make_node("GlobalAveragePool", ["add"], ["gap"], name="gap"),
        helper.make_node("Flatten", ["gap"], ["flat"], name="flatten"),
        helper.make_node("Gemm", ["flat", "wfc", "bfc"], ["y"], name="fc", transB=1),
    ]
    inits += [w("w3", r.normal(0, 0.2, (c, c, 1, 1))), w("b3", r.normal(0, 0.1, c)),
              w("wfc", r.normal(0, 0.3, (classes, c))), w("bfc", r.normal(0, 0.1, classes))]
    return _model(nodes, [f32("x", ["N", c_in, 16, 16])], [f32("y", ["N", classes])], inits, opset=opset)


def convtranspose_model(seed=1):
    r = _rng(seed)
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="down", strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu"),
        helper.make_node("ConvTranspose", ["r1", "wt", "bt"], ["y"], name="up", strides=[2, 2], pads=[1, 1, 1, 1],
                         output_padding=[1, 1]),
    ]
    inits = [w("w1", r.normal(0, 0.3, (8, 4, 3, 3))), w("b1", r.normal(0, 0.1, 8)),
             w("wt", r.normal(0, 0.3, (8, 4, 3, 3))), w("bt", r.normal(0, 0.1, 4))]
    return _model(nodes, [f32("x", ["N", 4, 16, 16])], [f32("y", ["N", 4, 16, 16])], inits)


def mlp_matmul(seed=2, d_in=32, hidden=64, d_out=10):
    """MatMul + Add + Relu, MatMul, Gemm(transB=0)."""
    r = _rng(seed)
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h1"], name="mm1"),
        helper.make_node("Add", ["h1", "b1"], ["h1b"], name="bias1"),
        helper.make_node("Relu", ["h1b"], ["a1"], name="act1"),
        helper.make_node("MatMul", ["a1", "w2"], ["h2"], name="mm2"),
        helper.make_node("Gemm", ["h2", "w3", "b3"], ["y"], name="gemm", transB=0),
    ]
    inits = [w("w1", r.normal(0, 0.2, (d_in, hidden))), w("b1", r.normal(0, 0.1, hidden)),
             w("w2", r.normal(0, 0.2, (hidden, hidden))), w("w3", r.normal(0, 0.2, (hidden, d_out))),
             w("b3", r.normal(0, 0.1, d_out))]
    return _model(nodes, [f32("x", ["N", d_in])], [f32("y", ["N", d_out])], inits)


def constant_weights(seed=3):
    """Weights held in Constant nodes, plus Identity and Dropout no-ops."""
    r = _rng(seed)
    wc = numpy_helper.from_array(r.normal(0, 0.3, (8, 4, 3, 3)).astype(np.float32), "wc")
    nodes = [
        helper.make_node("Constant", [], ["wconst"], name="const_w", value=wc),
        helper.make_node("Identity", ["x"], ["xi"], name="ident"),
        helper.make_node("Conv", ["xi", "wconst"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Dropout", ["c"], ["d"], name="drop"),
        helper.make_node("Relu", ["d"], ["y"], name="relu"),
    ]
    return _model(nodes, [f32("x", ["N", 4, 8, 8])], [f32("y", ["N", 8, 8, 8])], [])


def images(n, shape, seed=0, lo=-1.0, hi=1.0):
    """Smooth random 'images' (low-frequency noise), float32."""
    r = _rng(seed)
    small = r.uniform(lo, hi, (n, shape[0], max(2, shape[1] // 4), max(2, shape[2] // 4))).astype(np.float32)
    return np.repeat(np.repeat(small, 4, axis=2), 4, axis=3)[:, :, : shape[1], : shape[2]].copy()


def weight_ints(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    """The integer weights of a deploy model, by initializer name: int8 as stored, uint8 minus its
    zero point 128 (the ``uint8`` saturation guard stores ``q + 128``)."""
    inits = {t.name: t for t in model.graph.initializer}
    out = {}
    for n in model.graph.node:
        t = inits.get(n.input[0]) if n.op_type == "DequantizeLinear" else None
        if t is None or t.data_type not in (TensorProto.INT8, TensorProto.UINT8):
            continue
        zp = numpy_helper.to_array(inits[n.input[2]]).astype(np.int32).reshape(-1) if len(n.input) > 2 else np.zeros(1)
        assert np.all(zp == zp[0]), "a weight's zero points differ"
        out[t.name] = numpy_helper.to_array(t).astype(np.int32) - int(zp[0])
    return out
