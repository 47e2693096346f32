"""int8 kernels that saturate (x86 without VNNI): detection, and deploy == fake-quant there.

The emulated CPU (qemu-user with a Haswell model: AVX2, no VNNI) runs the same ONNX Runtime
build as the host, through its AVX2 u8*s8 kernels that add neighbouring products in int16.
"""

import json
import os
import shutil
import subprocess
import sys
import textwrap

import models
import numpy as np
import onnx
import pytest

import amct_nb as an
from amct_nb.ir import make_session
from amct_nb.ops import OPS
from amct_nb.quant import PAIR_LIMIT

QEMU = shutil.which("qemu-x86_64")


def pairs_ok(rows):
    k = rows.shape[1] - rows.shape[1] % 2
    a, b = rows[:, 0:k:2].astype(int), rows[:, 1:k:2].astype(int)
    same = np.sign(a) == np.sign(b)
    return bool((np.abs(a + b)[same] <= PAIR_LIMIT).all())


def saturating_model():
    """1x1 and 3x3 convs and a Gemm whose largest weights sit in adjacent same-signed pairs."""
    m = models.conv_bn_relu(seed=7)
    for t in m.graph.initializer:
        if t.name in ("w3", "wfc", "w1"):
            w = onnx.numpy_helper.to_array(t).copy()
            flat = w.reshape(w.shape[0], -1)
            flat[:, :4] = np.abs(flat).max() * np.sign(flat[:, :1] + 1e-9)
            t.CopyFrom(onnx.numpy_helper.from_array(flat.reshape(w.shape), t.name))
    return m


def test_guard_keeps_pairs_in_kernel_order():
    res = an.quantize(saturating_model(), models.images(32, (4, 16, 16)), an.QuantConfig(saturation_guard="pairs"),
                      progress=False)
    nodes = {n.name: n for n in res.prepared.model.graph.node}
    checked = 0
    for name, lq in res.plan.layers.items():
        rows = OPS[lq.op_type].kernel_rows(nodes[name], lq.w_q)
        if rows is not None:
            assert pairs_ok(rows), name
            checked += 1
    assert checked == 3  # conv1, pwconv, fc; the depthwise conv has its own exact kernel
    off = an.quantize(saturating_model(), models.images(32, (4, 16, 16)), an.QuantConfig(saturation_guard="off"),
                      progress=False)
    assert not pairs_ok(OPS["Conv"].kernel_rows(nodes["pwconv"], off.plan.layers["pwconv"].w_q))


def _run(model, x):
    s = make_session(model)
    return s.run(None, {s.get_inputs()[0].name: x})[0]


def _weights(model):
    """{DequantizeLinear weight name: (stored array, zero point)} of a deploy model."""
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    return {n.input[0]: (inits[n.input[0]], inits[n.input[2]]) for n in model.graph.node
            if n.op_type == "DequantizeLinear" and n.input[0] in inits and inits[n.input[0]].dtype != np.int32}


@pytest.mark.parametrize("channel_wise", [True, False])
def test_uint8_guard_costs_nothing(channel_wise):
    """The default guard stores the layers that could saturate as uint8 q + 128 (zero point 128):
    the same integers and scales as the unguarded build, so the same fake-quant model and deploy
    values; the other layers keep int8 storage."""
    cal = models.images(32, (4, 16, 16))
    cfg = lambda g: an.QuantConfig(saturation_guard=g, default=an.LayerConfig(channel_wise=channel_wise))  # noqa: E731
    on, off = (an.quantize(saturating_model(), cal, cfg(g), progress=False) for g in ("always", "off"))
    assert on.plan.guard == "uint8" and on.plan.pairs_fixed == 0
    nodes = {n.name: n for n in on.prepared.model.graph.node}
    want_u8 = set()
    for name, lq in on.plan.layers.items():
        ref = off.plan.layers[name]
        assert np.array_equal(lq.w_q, ref.w_q) and np.array_equal(lq.w_scale, ref.w_scale)
        rows = OPS[lq.op_type].kernel_rows(nodes[name], lq.w_q)
        if rows is not None and not pairs_ok(rows):
            want_u8.add(name)
    assert set(on.plan.uint8_layers) == want_u8 and {"conv1", "pwconv", "fc"} <= want_u8
    assert "dwconv" not in want_u8  # the depthwise kernel is exact: int8 storage, full speed
    x = models.images(8, (4, 16, 16), seed=5)
    for kind in ("fake_quant_model", "deploy_model"):
        a, b = (_run(getattr(r, kind), x) for r in (on, off))
        np.testing.assert_array_equal(a, b)
    got, ref = _weights(on.deploy_model), _weights(off.deploy_model)
    for name, lq in on.plan.layers.items():
        q, zp = got[lq.weight + "_quantized"]
        if name in want_u8:
            assert q.dtype == np.uint8 and np.all(zp == 128)
        else:
            assert q.dtype == np.int8 and np.all(zp == 0)
        np.testing.assert_array_equal(q.astype(np.int32) - int(zp.flat[0]), ref[lq.weight + "_quantized"][0])
    # int8 activations: ONNX Runtime's s8 x s8 kernels widen to 16 bits, nothing to guard
    signed = an.quantize(saturating_model(), cal, an.QuantConfig(activation_dtype="int8"), progress=False)
    assert signed.plan.uint8_layers == [] and signed.plan.pairs_fixed == 0


@pytest.mark.slow
def test_deploy_equals_fake_quant_on_cpu_without_vnni(tmp_path):
    if QEMU is None:
        if os.environ.get("CI"):
            pytest.fail("qemu-user is missing: .ci/run installs it (apt-get install qemu-user)")
        pytest.skip("qemu-user not installed (apt-get install qemu-user)")
    cal, ev = models.images(48, (4, 16, 16)), models.images(16, (4, 16, 16), seed=3, lo=-1.5, hi=1.5)
    np.save(tmp_path / "ev.npy", ev)
    guards = {"always": {}, "pairs": {}, "off": {}, "always_pt": {"channel_wise": False}}
    for name, lc in guards.items():
        cfg = an.QuantConfig(saturation_guard=name.split("_")[0], default=an.LayerConfig(**lc))
        res = an.quantize(saturating_model(), cal, cfg, progress=False)
        onnx.save(res.deploy_model, tmp_path / f"{name}_deploy.onnx")
        onnx.save(res.fake_quant_model, tmp_path / f"{name}_fake.onnx")
    script = textwrap.dedent(f"""
        import json, numpy as np, onnxruntime as ort
        from amct_nb.quant import platform_report
        x = np.load(r"{tmp_path}/ev.npy")
        out = {{"platform": platform_report()}}
        for g in ['always', 'pairs', 'off', 'always_pt']:
            y = {{}}
            for kind in ("deploy", "fake"):
                s = ort.InferenceSession(r"{tmp_path}/" + g + "_" + kind + ".onnx", providers=["CPUExecutionProvider"])
                y[kind] = s.run(None, {{"x": x}})[0]
            out[g] = float(np.abs(y["deploy"] - y["fake"]).max() / np.abs(y["fake"]).max())
        print(json.dumps(out))
    """)
    r = subprocess.run([QEMU, "-cpu", "Haswell", sys.executable, "-c", script], capture_output=True, text=True,
                       timeout=600, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["platform"]["int8_saturates"] is True
    assert out["platform"]["pair_guard_exact"] is True
    assert out["platform"]["uint8_weights_exact"] is True
    # guarded: the int8 model computes what the simulation says (uint8 storage: per channel and per tensor)
    assert max(out["always"], out["pairs"], out["always_pt"]) < 0.02, out
    assert out["off"] > 5 * max(out["always"], out["pairs"]), out  # unguarded: saturation shows
