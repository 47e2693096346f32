"""Real model: EfficientNet-Lite0 on the ImageNet dev images of ../shared/data.

Calibrate on the first 100 images, evaluate on 200 others (the benchmark uses all 400).
"""

import sys
from pathlib import Path

import numpy as np
import pytest

import amct_nb as an
from amct_nb.ir import make_session

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))


@pytest.fixture(scope="module")
def result_and_data(shared_data):
    import imagenet_dev
    cal, _ = imagenet_dev.load(0, 100)
    ev, labels = imagenet_dev.load(100, 300)
    res = an.quantize(str(imagenet_dev.MODEL), cal, progress=False)
    return res, ev, labels, imagenet_dev.MODEL


def predict(model, x):
    s = make_session(model)
    return np.concatenate([s.run(None, {"input": x[i:i + 50]})[0] for i in range(0, len(x), 50)])


@pytest.mark.slow
def test_efficientnet_accuracy_bounds(result_and_data):
    res, ev, labels, path = result_and_data
    import onnx
    fp = predict(onnx.load(str(path)), ev).argmax(1)
    dep = predict(res.deploy_model, ev).argmax(1)
    fq = predict(res.fake_quant_model, ev).argmax(1)
    agree = (dep == fp).mean()
    drop = (fp == labels).mean() - (dep == labels).mean()
    # the RGB stem conv (3 input channels) stays float by default (min_input_channels), the rest is int8
    assert len(res.plan.layers) == 49 and list(res.plan.float_layers) == ["node_Conv_881"]
    oc = res.report()["output_check"]  # healthy: the output check measures and leaves everything int8
    assert oc["before_sqnr_db"] > oc["target_sqnr_db"] + 3 and not oc["left_float"]
    assert agree >= 0.985, agree  # 0.97 before bias correction (benchmarks/BIAS_CORRECTION.md)
    assert res.report()["bias_correction"]["corrected_layers"] == 49
    assert drop <= 0.01, drop  # 2 of 200 images (the benchmark's 400 images: <= 0.4 pt)
    assert (fq == dep).mean() >= 0.985
    assert res.report()["size_bytes"]["ratio"] < 0.3
