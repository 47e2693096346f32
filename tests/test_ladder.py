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
