"""Bad input: a clear error (type + message naming problem and fix), nothing written, nothing lost."""

import os
import stat
import subprocess
import sys

import models
import numpy as np
import onnx
import pytest
from onnx import helper

import amct_nb as an
from amct_nb.errors import ConfigError, DataError, ModelError, OutputError


@pytest.fixture
def model_file(tmp_path):
    p = tmp_path / "in" / "net.onnx"
    p.parent.mkdir()
    onnx.save(models.conv_bn_relu(), p)
    return p


def cal(n=8):
    return models.images(n, (4, 16, 16))


def assert_nothing_written(out):
    assert not out.exists() or not any(p for p in out.rglob("*") if p.is_file() and p.suffix == ".onnx")


def test_missing_file(tmp_path):
    with pytest.raises(ModelError, match="not found.*check the path"):
        an.quantize(tmp_path / "nope.onnx", cal())


def test_folder_instead_of_file(tmp_path):
    with pytest.raises(ModelError, match="is a folder"):
        an.load_model(tmp_path)


def test_not_onnx(tmp_path):
    p = tmp_path / "x.onnx"
    p.write_text("hello, I am not a model\n" * 10)
    with pytest.raises(ModelError, match="not a readable ONNX file|holds no ONNX graph"):
        an.load_model(p)


def test_zip_file_named_onnx(tmp_path):
    import zipfile
    p = tmp_path / "m.onnx"
    with zipfile.ZipFile(p, "w") as z:
        z.writestr("a.txt", "x" * 100)
    with pytest.raises(ModelError, match="zip archive"):
        an.load_model(p)


def test_truncated_file(model_file, tmp_path):
    data = model_file.read_bytes()
    p = tmp_path / "cut.onnx"
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelError, match="truncated"):
        an.load_model(p)


def test_empty_file(tmp_path):
    p = tmp_path / "e.onnx"
    p.write_bytes(b"")
    with pytest.raises(ModelError, match="empty"):
        an.load_model(p)


def test_checker_failure(tmp_path):
    m = models.conv_bn_relu()
    m.graph.node[0].input[0] = "does_not_exist"
    with pytest.raises(ModelError, match="ONNX checker"):
        an.load_model(m)


def test_graph_with_cycle():
    m = models.mlp_matmul()
    g = m.graph
    g.node[0].input[0] = "y"  # mm1 reads the graph's own output: a cycle
    with pytest.raises(ModelError, match="ONNX checker"):
        an.load_model(m)


def test_unknown_custom_domain():
    m = models.mlp_matmul()
    m.graph.node.append(helper.make_node("FancyOp", ["y"], ["z"], domain="com.acme", name="fancy"))
    m.graph.output[0].name = "z"
    m.opset_import.append(helper.make_opsetid("com.acme", 1))
    with pytest.raises(ModelError, match="custom operators.*com.acme.*FancyOp"):
        an.load_model(m)


def test_wrong_shape(model_file):
    bad = np.zeros((4, 4, 20, 20), np.float32)
    with pytest.raises(DataError, match="needs size 16 on axis 2"):
        an.quantize(model_file, bad, progress=False)


def test_wrong_rank(model_file):
    with pytest.raises(DataError, match="rank 4"):
        an.quantize(model_file, [np.zeros((4, 16, 16), np.float32)], progress=False)


def test_wrong_dtype(model_file):
    with pytest.raises(DataError, match="expects float32.*float64.*astype"):
        an.quantize(model_file, cal().astype(np.float64), progress=False)


def test_wrong_input_name(model_file):
    with pytest.raises(DataError, match=r"input\(s\) 'image' which are not model inputs.*rename"):
        an.quantize(model_file, [{"image": cal()[:2]}], progress=False)


def test_missing_input_for_multi_input_model():
    g = helper.make_graph([helper.make_node("Add", ["a", "b"], ["c"]),
                           helper.make_node("MatMul", ["c", "w"], ["y"], name="mm")], "g",
                          [models.f32("a", ["N", 4]), models.f32("b", ["N", 4])], [models.f32("y", ["N", 2])],
                          [models.w("w", np.ones((4, 2)))])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    with pytest.raises(DataError, match="single array but the model has 2 inputs"):
        an.quantize(m, [np.zeros((1, 4), np.float32)], progress=False)
    with pytest.raises(DataError, match=r"lacks model input\(s\) 'b'"):
        an.quantize(m, [{"a": np.zeros((1, 4), np.float32)}], progress=False)


def test_empty_data(model_file):
    with pytest.raises(DataError, match="no calibration data"):
        an.quantize(model_file, [], progress=False)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_inf_in_data(model_file, bad):
    x = cal()
    x[3, 0, 0, 0] = bad
    with pytest.raises(DataError, match="contains (NaN|Inf)"):
        an.quantize(model_file, x, progress=False)


def test_output_folder_not_writable(model_file, tmp_path):
    if os.geteuid() == 0:
        ro = tmp_path / "file_in_the_way"
        ro.write_text("x")
        out = ro / "sub"  # a folder below a regular file cannot be created, even by root
    else:
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(stat.S_IRUSR | stat.S_IXUSR)
        out = ro / "out"
    res = an.quantize(model_file, cal(), progress=False)
    with pytest.raises(OutputError):
        res.save(out)
    assert not out.exists()


def test_output_path_is_a_file(model_file, tmp_path):
    f = tmp_path / "taken"
    f.write_text("x")
    res = an.quantize(model_file, cal(), progress=False)
    with pytest.raises(OutputError, match="is a file, not a folder"):
        res.save(f)


def test_output_folder_holds_input_model(model_file):
    before = model_file.read_bytes()
    res = an.quantize(model_file, cal(), progress=False)
    with pytest.raises(OutputError, match="holds the input model"):
        res.save(model_file.parent)
    assert model_file.read_bytes() == before
    assert sorted(p.name for p in model_file.parent.iterdir()) == ["net.onnx"]


def test_second_run_while_first_writes(model_file, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        (out / ".amct-nb.lock").write_text(str(sleeper.pid))
        res = an.quantize(model_file, cal(), progress=False)
        with pytest.raises(OutputError, match=f"another amct-nb run \\(pid {sleeper.pid}\\)"):
            res.save(out)
        assert_nothing_written(out)
    finally:
        sleeper.kill()
        sleeper.wait()
    # the holder is gone: the stale lock is taken over
    res.save(out)
    assert (out / "net_deploy_model.onnx").exists() and not (out / ".amct-nb.lock").exists()


def test_disk_full_leaves_no_partial_model(model_file, tmp_path, monkeypatch):
    import errno

    import amct_nb.ir.files as io
    out = tmp_path / "out"
    res = an.quantize(model_file, cal(), progress=False)
    res.save(out)
    good = (out / "net_deploy_model.onnx").read_bytes()
    calls = {"n": 0}
    real = io.save_model_file

    def flaky(model, path):
        calls["n"] += 1
        if calls["n"] == 2:
            raise io.os_error(path, OSError(errno.ENOSPC, "No space left on device"))
        return real(model, path)

    monkeypatch.setattr("amct_nb.ptq.result.save_model_file", flaky)
    with pytest.raises(OutputError, match="disk is full"):
        res.save(out)
    assert (out / "net_deploy_model.onnx").read_bytes() == good  # previous outputs untouched
    assert not [p for p in out.rglob("*") if ".part" in p.name or "staging" in str(p)]


def test_bad_config_layer_name(model_file):
    cfg = an.QuantConfig(skip_layers=["conv_1"])
    with pytest.raises(ConfigError, match="did you mean conv1"):
        an.quantize(model_file, cal(), cfg, progress=False)


def test_bad_config_values():
    with pytest.raises(ConfigError, match="act_algo 'kmeans' is unknown"):
        an.QuantConfig.from_amct_dict({"conv1": {"activation_quant_params": {"act_algo": "kmeans"}}})
    with pytest.raises(ConfigError, match="saturation_guard"):
        an.QuantConfig(saturation_guard="maybe").validate()


def test_malformed_record():
    with pytest.raises(ConfigError, match="truncated|expected"):
        an.Record.from_text('record {\n  key: "a"\n  value {\n    scale_d: 0.1\n')


def test_user_model_never_modified(model_file):
    before = model_file.read_bytes()
    mtime = model_file.stat().st_mtime_ns
    an.quantize(model_file, cal(), progress=False).save(model_file.parent.parent / "out")
    assert model_file.read_bytes() == before and model_file.stat().st_mtime_ns == mtime
