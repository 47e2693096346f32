"""`amct-nb demo`: the seed-002 flow on the embedded default model, end to end."""

import re
import subprocess
import sys
import time


def test_demo_end_to_end(tmp_path):
    t = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "amct_nb.cli", "demo", "--quiet"], cwd=tmp_path, capture_output=True,
                       text=True, timeout=300)
    elapsed = time.perf_counter() - t
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert elapsed < 60, elapsed
    m1 = re.search(r"Origin Model Prediction: category index (\d) \((.+)\), prob: ([0-9.]+)", out)
    m2 = re.search(r"Quantized Model Prediction: category index (\d) \((.+)\), prob: ([0-9.]+)", out)
    assert m1 and m2, out
    assert 0 < float(m1.group(3)) <= 1 and 0 < float(m2.group(3)) <= 1
    acc = re.findall(r"(Origin|Quantized) Model top1 accuracy: ([0-9.]+), top5: ([0-9.]+)", out)
    assert [a[0] for a in acc] == ["Origin", "Quantized"]
    (o1, o5), (q1, q5) = [(float(a[1]), float(a[2])) for a in acc]
    assert o1 == 0.936  # the manifest's top-1 of fmnist_resnet on the 500 shipped test images
    assert o1 <= o5 and q1 <= q5 and abs(o1 - q1) <= 0.01 and q1 >= 0.92
    agree = float(re.search(r"top-1 agreement original vs quantized: ([0-9.]+)", out).group(1))
    assert agree >= 0.98
    d = tmp_path / "outputs" / "calibration"
    for f in ("fmnist_resnet_deploy_model.onnx", "fmnist_resnet_fake_quant_model.onnx", "tmp/config.json",
              "tmp/record.txt", "tmp/modified_model.onnx", "amct_log/amct_onnx.log"):
        assert (d / f).is_file(), f
