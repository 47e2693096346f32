import json
import subprocess
import sys

import models
import numpy as np
import onnx
import pytest

from amct_nb.cli import main


@pytest.fixture
def model_file(tmp_path):
    p = tmp_path / "models" / "net.onnx"
    p.parent.mkdir()
    onnx.save(models.conv_bn_relu(), p)
    return p


def test_calibrate_npy(model_file, tmp_path, capsys):
    data = tmp_path / "cal.npy"
    np.save(data, models.images(24, (4, 16, 16)))
    out = tmp_path / "out"
    assert main(["calibrate", str(model_file), "--data", str(data), "--output", str(out), "--quiet"]) == 0
    for f in ("net_fake_quant_model.onnx", "net_deploy_model.onnx", "tmp/config.json", "tmp/record.txt",
              "tmp/modified_model.onnx", "amct_log/amct_onnx.log"):
        assert (out / f).is_file(), f
    log = (out / "amct_log/amct_onnx.log").read_text()
    assert "saturation guard" in log and "layer conv1" in log
    assert "bias correction: 4 of 4" in log and "bias_correction:" in (out / "tmp/record.txt").read_text()
    off = tmp_path / "off"
    assert main(["calibrate", str(model_file), "--data", str(data), "--output", str(off), "--quiet",
                 "--no-bias-correction"]) == 0
    assert "bias_correction:" not in (off / "tmp/record.txt").read_text()
    assert json.loads((off / "tmp/config.json").read_text())["amct_nb"]["bias_correction"] is False


def test_calibrate_npz_prefix_and_options(model_file, tmp_path, capsys):
    data = tmp_path / "cal.npz"
    np.savez(data, x=models.images(16, (4, 16, 16)))
    out = tmp_path / "out"
    rc = main(["calibrate", str(model_file), "--data", str(data), "--output", str(out), "--prefix", "mine",
               "--algo", "percentile", "--skip-layers", "fc", "--num-samples", "8"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "float: fc" in text and (out / "mine_deploy_model.onnx").exists()
    cfg = json.loads((out / "tmp/config.json").read_text())
    assert cfg["conv1"]["activation_quant_params"]["act_algo"] == "percentile"
    assert cfg["fc"]["quant_enable"] is False


def test_calibrate_npz_folder(model_file, tmp_path):
    folder = tmp_path / "feeds"
    folder.mkdir()
    for i in range(5):
        np.savez(folder / f"{i:03d}.npz", x=models.images(2, (4, 16, 16), seed=i))
    out = tmp_path / "out"
    assert main(["calibrate", str(model_file), "--data", str(folder), "--output", str(out), "--quiet"]) == 0
    assert (out / "net_deploy_model.onnx").exists()


def test_calibrate_image_folder(tmp_path):
    """The preprocessing flags reach the data: the CLI's record equals the Python API's on the same
    images preprocessed the same way (and differs when a flag changes)."""
    from PIL import Image

    import amct_nb as an
    from amct_nb.data import ImageFolder, Preprocess

    m = models.conv_bn_relu(c_in=3)
    p = tmp_path / "net.onnx"
    onnx.save(m, p)
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    rng = np.random.default_rng(0)
    for i in range(6):
        Image.fromarray(rng.integers(0, 255, (20, 24, 3), dtype=np.uint8)).save(imgs / f"{i}.png")
    flags = ["--size", "16", "--crop", "16", "--scale", "0.0039215686", "--mean", "0.5", "--std", "0.25"]
    out = tmp_path / "out"
    rc = main(["calibrate", str(p), "--data", str(imgs), "--output", str(out), "--quiet", *flags])
    assert rc == 0 and (out / "net_deploy_model.onnx").exists()
    pre = Preprocess(size=16, crop=16, scale=0.0039215686, mean=0.5, std=0.25)
    api = an.quantize(str(p), ImageFolder(imgs, pre), progress=False)
    assert (out / "tmp" / "record.txt").read_text() == api.record.to_text()
    other = tmp_path / "other"
    flags[flags.index("--std") + 1] = "0.5"
    assert main(["calibrate", str(p), "--data", str(imgs), "--output", str(other), "--quiet", *flags]) == 0
    assert (other / "tmp" / "record.txt").read_text() != api.record.to_text()


def test_cli_errors_are_one_line_exit_2(model_file, tmp_path, capsys):
    rc = main(["calibrate", str(tmp_path / "missing.onnx"), "--data", "x.npy", "--output", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("amct-nb: error:") and "Traceback" not in err and err.count("\n") == 1
    bad = tmp_path / "bad.npy"
    np.save(bad, np.zeros((4, 4, 8, 8), np.float32))
    rc = main(["calibrate", str(model_file), "--data", str(bad), "--output", str(tmp_path / "o")])
    assert rc == 2 and "needs size 16" in capsys.readouterr().err
    assert not (tmp_path / "o" / "net_deploy_model.onnx").exists()
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    from PIL import Image
    Image.new("RGB", (8, 8)).save(imgs / "a.png")
    rc = main(["calibrate", str(model_file), "--data", str(imgs), "--output", str(tmp_path / "o")])
    assert rc == 2 and "--preset" in capsys.readouterr().err


def test_console_script_and_debug_traceback(model_file, tmp_path):
    r = subprocess.run([sys.executable, "-m", "amct_nb.cli", "calibrate", str(model_file), "--data", "nope.npy",
                        "--output", str(tmp_path / "o"), "--debug"], capture_output=True, text=True)
    assert r.returncode != 0 and "Traceback" in r.stderr and "does not exist" in r.stderr


def test_inspect(model_file, capsys):
    assert main(["inspect", str(model_file)]) == 0
    out = capsys.readouterr().out
    assert "4 quantizable layer(s)" in out and "dwconv" in out and "folded into conv1" in out
