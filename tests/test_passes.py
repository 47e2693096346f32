import models
import numpy as np
import onnx

from amct_nb.ir import make_session, model_opset
from amct_nb.passes import (
    BN_FOLDED,
    constants_to_initializers,
    fold_batchnorm,
    infer_shapes,
    name_nodes,
    remove_noops,
    upgrade_opset,
)


def run(m, x):
    return make_session(m, optimize=False).run(None, {m.graph.input[0].name: x})[0]


def test_fold_bn_structure_and_numbers():
    m = models.conv_bn_relu()
    before = onnx.ModelProto()
    before.CopyFrom(m)
    out, notes = fold_batchnorm(m)
    assert m == before  # input untouched
    ops = [n.op_type for n in out.graph.node]
    assert "BatchNormalization" not in ops and ops.count("Conv") == 3
    assert [(c.kind, c.target) for c in notes] == [(BN_FOLDED, "conv1"), (BN_FOLDED, "dwconv")]
    x = models.images(4, (4, 16, 16))
    np.testing.assert_allclose(run(out, x), run(m, x), rtol=1e-4, atol=1e-4)


def test_fold_bn_convtranspose_and_gemm():
    from onnx import helper
    r = np.random.default_rng(0)
    nodes = [
        helper.make_node("ConvTranspose", ["x", "wt"], ["c"], name="ct", group=2),
        helper.make_node("BatchNormalization", ["c", "g", "b", "m", "v"], ["bn"], name="bn"),
        helper.make_node("Flatten", ["bn"], ["f"], name="fl"),
        helper.make_node("Gemm", ["f", "wg"], ["gm"], name="gemm", transB=1, alpha=0.5),
        helper.make_node("BatchNormalization", ["gm", "g2", "b2", "m2", "v2"], ["y"], name="bn2"),
    ]
    inits = [models.w("wt", r.normal(0, .3, (4, 3, 2, 2))),
             models.w("g", r.uniform(.5, 1.5, 6)), models.w("b", r.normal(0, .2, 6)),
             models.w("m", r.normal(0, .2, 6)), models.w("v", r.uniform(.5, 2, 6)),
             models.w("wg", r.normal(0, .3, (5, 6 * 5 * 5))),
             models.w("g2", r.uniform(.5, 1.5, 5)), models.w("b2", r.normal(0, .2, 5)),
             models.w("m2", r.normal(0, .2, 5)), models.w("v2", r.uniform(.5, 2, 5))]
    m = models._model(nodes, [models.f32("x", [2, 4, 4, 4])], [models.f32("y", [2, 5])], inits)
    out, notes = fold_batchnorm(m)
    assert [n.op_type for n in out.graph.node] == ["ConvTranspose", "Flatten", "Gemm"]
    x = np.random.default_rng(1).normal(size=(2, 4, 4, 4)).astype(np.float32)
    np.testing.assert_allclose(run(out, x), run(m, x), rtol=1e-4, atol=1e-4)


def test_fold_bn_refuses_shared_output():
    m = models.conv_bn_relu()
    # make conv1's output also a graph output: BN must not be folded
    m.graph.output.append(models.f32("c1", None))
    out, notes = fold_batchnorm(m)
    assert any(c.kind == "bn_not_folded" and c.target == "conv1" and "other consumers" in c.text for c in notes)
    assert sum(n.op_type == "BatchNormalization" for n in out.graph.node) == 1


def test_constants_and_noops():
    m = models.constant_weights()
    a, n1 = constants_to_initializers(m)
    b, n2 = remove_noops(a)
    assert [n.op_type for n in b.graph.node] == ["Conv", "Relu"]
    assert {t.name for t in b.graph.initializer} == {"wconst"}
    assert n1 and n2
    x = models.images(2, (4, 8, 8))
    np.testing.assert_allclose(run(b, x), run(m, x), rtol=1e-6)
    # nothing to do -> no notes, same graph
    c, n3 = remove_noops(b)
    assert n3 == [] and c == b


def test_upgrade_opset_11():
    m = models.conv_bn_relu(opset=11)
    out, notes = upgrade_opset(m)
    assert model_opset(m) == 11 and model_opset(out) == 13 and notes
    x = models.images(2, (4, 16, 16))
    np.testing.assert_allclose(run(out, x), run(m, x), rtol=1e-5, atol=1e-5)


def test_name_nodes():
    m = models.mlp_matmul()
    m.graph.node[0].name = ""
    m.graph.node[1].name = "mm2"
    out, notes = name_nodes(m)
    names = [n.name for n in out.graph.node]
    assert names[0] == "MatMul_0" and len(set(names)) == len(names)


def test_infer_shapes_fills_value_info():
    out, _ = infer_shapes(models.conv_bn_relu())
    known = {vi.name for vi in out.graph.value_info}
    assert {"c1", "r1", "add", "gap"} <= known
