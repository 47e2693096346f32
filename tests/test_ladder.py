"""The fallback ladder: layers whose activations stay float keep int8 weights (weight-only), and so do
embedding tables and recurrent weights, where the output check finds it affordable."""

import json

import models
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import amct_nb as an
import amct_nb.ptq.ladder as ladder
from amct_nb import zoo
from amct_nb.ir import make_session
from amct_nb.ops import OPS
from amct_nb.quant.guard import pairs_over_limit


def _run(model, feed):
    s = make_session(model)
    if not isinstance(feed, dict):
        feed = {s.get_inputs()[0].name: feed}
    return s.run(None, feed)[0]


def _sqnr(ref, y):
    ref, y = ref.astype(np.float64), y.astype(np.float64)
    return 10 * np.log10((ref ** 2).sum() / ((ref - y) ** 2).sum())


def _dq_readers(model, w):
    """Nodes reading the DequantizeLinear of weight-only weight ``w`` in a deploy model, and the stored dtype."""
    inits = {t.name: t for t in model.graph.initializer}
    dq = [n for n in model.graph.node if n.op_type == "DequantizeLinear" and n.input[0] == f"{w}_wo_quantized"]
    assert len(dq) == 1, w
    return sorted(n.name for n in model.graph.node if dq[0].output[0] in n.input), inits[dq[0].input[0]].data_type


@pytest.fixture(scope="module")
def resnet():
    zm = zoo.load("fmnist-resnet")
    p = an.prepare(str(zm.path))
    obs = an.collect_stats(p, zm.calibration_data(64), progress=False)
    return zm, p, obs


def test_layers_left_float_keep_int8_weights(resnet):
    """A strict output target leaves layers float; the ladder stores the weights of those the outputs can
    afford as int8: one DequantizeLinear feeding the float layer, the fake-quant model computing the same."""
    zm, p, obs = resnet
    strict = an.QuantConfig(min_output_sqnr_db=35, saturation_guard="always")
    res = an.build(p, strict, obs)
    info = res.output_check["weight_only"]
    assert info["checked"] and res.plan.float_layers
    kept = res.plan.weight_only
    sizes = {t.name: int(np.prod(t.dims)) for t in p.model.graph.initializer}
    assert kept and set(kept) | set(info["left_float"]) == {
        p.layer(n).weight for n, why in res.plan.float_layers.items()
        if why.code in ladder.LADDER_CODES and sizes[p.layer(n).weight] >= ladder.MIN_WEIGHTS}
    assert info["after_sqnr_db"] >= info["floor_db"] == max(35, min(info["before_sqnr_db"] - ladder.LADDER_MARGIN_DB,
                                                                ladder.CLEAN_DB))
    rep = res.report()
    assert set(rep["weight_only"]) == set(kept)
    nodes = {n.name: n for n in p.model.graph.node}
    for w, wo in kept.items():
        readers, dtype = _dq_readers(res.deploy_model, w)
        assert readers == sorted(wo.users) and wo.kind == "layer"
        assert np.abs(wo.w_q).max() <= 127
        # ONNX Runtime fuses a weight-only layer whose input and output are quantized into an int8 kernel: the
        # saturation guard stores it as uint8 when its pairs could saturate
        node = nodes[wo.users[0]]
        over = pairs_over_limit(OPS[node.op_type].kernel_rows(node, wo.w_q))
        guarded = over and res.plan.guard != "none"
        assert (wo.storage, dtype) == (("uint8", TensorProto.UINT8) if guarded else ("int8", TensorProto.INT8))
    assert set(res.weight_only_layers) == {u for wo in kept.values() for u in wo.users}
    x = zm.test_data(200)[0]
    ref, dep, fq = _run(p.original, x), _run(res.deploy_model, x), _run(res.fake_quant_model, x)
    assert (dep.argmax(1) == fq.argmax(1)).mean() >= 0.99
    assert _sqnr(ref, dep) > 20
    # without the ladder: the same plan, the weights float, a bigger file
    off = strict.copy()
    off.weight_only_fallback = False
    plain = an.build(p, off, obs)
    assert not plain.plan.weight_only and list(plain.plan.layers) == list(res.plan.layers)
    assert res.deploy_model.ByteSize() < plain.deploy_model.ByteSize() - 2 * sum(wo.w_q.size for wo in kept.values())


def test_weights_the_outputs_cannot_afford_stay_float(resnet, monkeypatch):
    """With no margin (and a target just under what the plan reaches), the most harmful weight-only weights
    stay float and the rest still meet the floor."""
    zm, p, obs = resnet
    monkeypatch.setattr(ladder, "LADDER_MARGIN_DB", 0.0)
    monkeypatch.setattr(ladder, "CLEAN_DB", 100.0)
    res = an.build(p, an.QuantConfig(min_output_sqnr_db=35), obs)
    info = res.output_check["weight_only"]
    assert info["floor_db"] == info["before_sqnr_db"] or info["floor_db"] == 35
    assert info["after_sqnr_db"] >= info["floor_db"]
    assert info["left_float"], info  # rounding any weight costs something: not all can stay
    assert not set(info["left_float"]) & set(res.plan.weight_only)


def test_no_output_check_no_weight_only(resnet):
    zm, p, obs = resnet
    res = an.build(p, an.QuantConfig(min_output_sqnr_db=None, min_sqnr_db=60), obs)  # the tensor check leaves some
    assert res.plan.float_layers and not res.plan.weight_only
    assert "output check" in res.output_check["weight_only"]["skipped"]


def _embedding_lstm_model():
    """ids -> Gather(table 500 x 32) -> LSTM (hidden 16) -> MatMul(16 x 8): an embedding table, recurrent
    weights and one int8 layer."""
    r = np.random.default_rng(3)
    h = 16
    nodes = [
        helper.make_node("Gather", ["table", "ids"], ["emb"], name="embed", axis=0),
        helper.make_node("Transpose", ["emb"], ["seq"], name="to_seq", perm=[1, 0, 2]),
        helper.make_node("LSTM", ["seq", "W", "R", "B"], ["Y"], name="lstm", hidden_size=h),
        helper.make_node("Squeeze", ["Y", "ax1"], ["ys"], name="squeeze"),
        helper.make_node("MatMul", ["ys", "wout"], ["y"], name="head"),
    ]
    inits = [models.w("table", r.normal(0, 1, (500, 32))), models.w("W", r.normal(0, .3, (1, 4 * h, 32))),
             models.w("R", r.normal(0, .3, (1, 4 * h, h))), models.w("B", r.normal(0, .1, (1, 8 * h))),
             models.w("wout", r.normal(0, .3, (h, 8))),
             onnx.numpy_helper.from_array(np.array([1], np.int64), "ax1")]
    g = helper.make_graph(nodes, "emb_lstm", [helper.make_tensor_value_info("ids", TensorProto.INT64, ["N", 12])],
                          [models.f32("y", [12, "N", 8])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(m)
    return m


def test_embedding_table_and_recurrent_weights_are_int8():
    m = _embedding_lstm_model()
    r = np.random.default_rng(0)
    cal = [{"ids": r.integers(0, 500, (4, 12)).astype(np.int64)} for _ in range(8)]
    res = an.quantize(m, cal, progress=False)
    kinds = {w: wo.kind for w, wo in res.plan.weight_only.items()}
    assert kinds == {"table": "embedding", "W": "recurrent", "R": "recurrent"}, res.output_check
    assert res.plan.weight_only["table"].axis == 0 and res.plan.weight_only["table"].w_scale.shape == (500,)
    assert _dq_readers(res.deploy_model, "table")[0] == ["embed"]
    assert _dq_readers(res.deploy_model, "W")[0] == ["lstm"]
    ev = {"ids": r.integers(0, 500, (16, 12)).astype(np.int64)}
    ref, dep, fq = _run(m, ev), _run(res.deploy_model, ev), _run(res.fake_quant_model, ev)
    assert _sqnr(ref, dep) > 25 and _sqnr(fq, dep) > 60
    # the table dominates the file: int8 rows instead of float32
    assert res.deploy_model.ByteSize() < 0.4 * m.ByteSize()


def test_config_round_trip_and_strict_key():
    cfg = an.QuantConfig(weight_only_fallback=False)
    back = an.QuantConfig.from_amct_dict(json.loads(cfg.to_json()))
    assert back.weight_only_fallback is False
    d = cfg.to_amct_dict()
    d["amct_nb"]["weight_only_fallbak"] = True
    with pytest.raises(an.ConfigError, match="weight_only_fallback"):
        an.QuantConfig.from_amct_dict(d)


def _lstm_branch(tag: str, h: int = 8) -> onnx.GraphProto:
    """An LSTM whose W and R are computed in the branch from the main graph's weights as PyTorch writes them
    (gates reordered: Slice x3 -> Concat -> Unsqueeze), with the same node and tensor names in both branches."""
    nodes = []
    for w in ("wih", "whh"):
        parts = []
        for k, (a, b) in enumerate([(0, h), (3 * h, 4 * h), (h, 3 * h)]):
            nodes.append(helper.make_node("Slice", [f"{tag}_{w}", f"s{a}", f"e{b}", "ax0"], [f"{w}_part{k}"],
                                          name=f"{w}_slice{k}"))
            parts.append(f"{w}_part{k}")
        nodes += [helper.make_node("Concat", parts, [f"{w}_cat"], name=f"{w}_concat", axis=0),
                  helper.make_node("Unsqueeze", [f"{w}_cat", "ax0"], [f"{w}_3d"], name=f"{w}_unsqueeze")]
    nodes += [helper.make_node("LSTM", ["seq", "wih_3d", "whh_3d"], [f"{tag}_Y"], name=f"{tag}_lstm", hidden_size=h),
              helper.make_node("Squeeze", [f"{tag}_Y", "ax1"], [f"{tag}_out"], name=f"{tag}_squeeze")]
    return helper.make_graph(nodes, tag, [], [models.f32(f"{tag}_out", ["T", "N", h])])


def test_lstm_weights_computed_inside_if_branches_are_int8():
    """silero_vad's pattern: each branch of an If computes its LSTM's weights from constants (then an int8
    head); both branches' weights are stored int8 (the one that never ran is reported unmeasured) and the
    model stays valid."""
    r = np.random.default_rng(4)
    h, i = 8, 12
    inits = [models.w(f"{t}_{w}", r.normal(0, .3, (4 * h, n))) for t in ("then", "else")
             for w, n in (("wih", i), ("whh", h))]
    inits += [onnx.numpy_helper.from_array(np.array([v], np.int64), f"{p}{v}")
              for p, v in (("s", 0), ("s", h), ("s", 3 * h), ("e", h), ("e", 3 * h), ("e", 4 * h))]
    inits += [onnx.numpy_helper.from_array(np.array([0], np.int64), "ax0"),
              onnx.numpy_helper.from_array(np.array([1], np.int64), "ax1"),
              onnx.numpy_helper.from_array(np.array(0.0, np.float32), "zero")]
    nodes = [helper.make_node("ReduceMean", ["seq"], ["m"], keepdims=0, name="mean"),
             helper.make_node("Greater", ["m", "zero"], ["cond"], name="gt"),
             helper.make_node("If", ["cond"], ["hs"], then_branch=_lstm_branch("then"),
                              else_branch=_lstm_branch("else"), name="If_0"),
             helper.make_node("MatMul", ["hs", "head_w"], ["y"], name="head")]
    inits.append(models.w("head_w", r.normal(0, .3, (h, 4))))
    g = helper.make_graph(nodes, "if_lstm", [models.f32("seq", ["T", "N", i])], [models.f32("y", ["T", "N", 4])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(m, full_check=True)
    cal = [{"seq": r.normal(0.5, 1, (5, 4, i)).astype(np.float32)} for _ in range(8)]  # the then branch only
    res = an.quantize(m, cal, progress=False)
    rec = {w: wo.users for w, wo in res.plan.weight_only.items() if wo.kind == "recurrent"}
    assert sorted(u for us in rec.values() for u in us) == ["else_lstm", "else_lstm", "then_lstm", "then_lstm"]
    unmeasured = res.output_check["weight_only"]["not_measured"]
    assert len(unmeasured) == 2 and all(rec[w] == ("else_lstm",) for w in unmeasured)
    onnx.checker.check_model(res.deploy_model, full_check=True)
    assert _sqnr(_run(m, cal[0]), _run(res.deploy_model, cal[0])) > 35
    # both branches, the one calibration never took included: the int8 weights cost at most the ladder's margin
    # next to the head's grid (on the else branch calibrated on the other branch's outputs)
    plain = an.quantize(m, cal, an.QuantConfig(weight_only_fallback=False), progress=False)
    for mean in (0.5, -0.5):
        xs = [{"seq": r.normal(mean, 1, (5, 4, i)).astype(np.float32)} for _ in range(4)]
        ref, ours, base = (np.concatenate([_run(mm, x) for x in xs]) for mm in (m, res.deploy_model,
                                                                                  plain.deploy_model))
        assert _sqnr(ref, ours) > _sqnr(ref, base) - ladder.LADDER_MARGIN_DB


def test_a_stem_keeps_int8_weights(monkeypatch):
    """The stem rule keeps a first layer over three channels float (int8 is slower there and it is sensitive);
    its weights are int8 all the same (weight-only), measured by the ladder, where they are a real share of
    the model's weights (here 1200 of 3504; not under MIN_STEM_SHARE)."""
    r = np.random.default_rng(5)
    nodes = [helper.make_node("Conv", ["x", "w0", "b0"], ["c0"], name="stem", pads=[2, 2, 2, 2]),
             helper.make_node("Relu", ["c0"], ["r0"], name="relu0"),
             helper.make_node("Conv", ["r0", "w1", "b1"], ["y"], name="conv1", pads=[1, 1, 1, 1])]
    inits = [models.w("w0", r.normal(0, .3, (16, 3, 5, 5))), models.w("b0", r.normal(0, .1, 16)),
             models.w("w1", r.normal(0, .1, (16, 16, 3, 3))), models.w("b1", r.normal(0, .1, 16))]
    g = helper.make_graph(nodes, "stem", [models.f32("x", ["N", 3, 12, 12])], [models.f32("y", ["N", 16, 12, 12])],
                          inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    cal = r.normal(0, 1, (16, 3, 12, 12)).astype(np.float32)
    res = an.quantize(m, cal, progress=False)
    assert res.plan.float_layers["stem"].code == "stem" and "conv1" in res.plan.layers
    assert res.plan.weight_only["w0"].users == ("stem",) and _dq_readers(res.deploy_model, "w0")[0] == ["stem"]
    x = {"x": r.normal(0, 1, (4, 3, 12, 12)).astype(np.float32)}
    assert _sqnr(_run(m, x), _run(res.deploy_model, x)) > 30
    monkeypatch.setattr(ladder, "MIN_STEM_SHARE", 0.5)  # 34% of the weights: a stem too small to bother
    res = an.quantize(m, cal, progress=False)
    assert res.plan.float_layers["stem"].code == "stem" and "w0" not in res.plan.weight_only
