"""Sample models: embedded Fashion-MNIST classifiers (shipped in the wheel) and models built on
demand from PyPI weight packages.

    from amct_nb import zoo
    m = zoo.load("fmnist-resnet")          # the embedded default
    m.path, m.classes, m.preprocess        # ONNX file, class names, preprocessing preset
    x, y = m.calibration_data(), m.test_data()   # preprocessed float32 arrays and labels
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import ModelError

__all__ = ["ZooModel", "load", "available", "DEFAULT", "DATA_DIR"]

DATA_DIR = Path(__file__).resolve().parent / "data"
DEFAULT = "fmnist-resnet"

_FMNIST_MEAN, _FMNIST_STD = 0.2860, 0.3530


@dataclass
class ZooModel:
    """A sample model with what is needed to run it: file, classes, preprocessing, data."""

    name: str
    path: Path
    classes: list[str]
    preprocess: str
    description: str = ""
    _samples: dict = field(default_factory=dict, repr=False)

    def _load_npz(self, which: str):
        if which not in self._samples:
            d = np.load(DATA_DIR / f"fmnist_{which}_samples.npz")
            self._samples[which] = (d["images"], d["labels"])
        return self._samples[which]

    @staticmethod
    def _prep(images: np.ndarray) -> np.ndarray:
        x = images.astype(np.float32) / np.float32(255.0)
        return ((x - np.float32(_FMNIST_MEAN)) / np.float32(_FMNIST_STD))[:, None, :, :].astype(np.float32)

    def calibration_data(self, n: int | None = None) -> np.ndarray:
        """Preprocessed calibration images (training images, never used for evaluation)."""
        imgs, _ = self._load_npz("calib")
        return self._prep(imgs[:n])

    def test_data(self, n: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Preprocessed test images and their labels."""
        imgs, labels = self._load_npz("test")
        return self._prep(imgs[:n]), labels[:n]

    def test_images(self, n: int | None = None) -> np.ndarray:
        """The raw uint8 test images (for display)."""
        return self._load_npz("test")[0][:n]


_EMBEDDED = {
    "fmnist-resnet": ("fmnist_resnet.onnx", "small ResNet-style classifier (BatchNorm kept), Fashion-MNIST"),
    "fmnist-mobilenetv2": ("fmnist_mobilenetv2.onnx", "MobileNetV2-style classifier (depthwise, ReLU6), Fashion-MNIST"),
}


def available() -> dict[str, str]:
    """Names and one-line descriptions of the models the zoo can give."""
    out = {k: v[1] for k, v in _EMBEDDED.items() if (DATA_DIR / v[0]).exists()}
    out["efficientnet-lite0"] = "EfficientNet-Lite0, ImageNet (built on demand; pip install 'amct-nb[torch]')"
    return out


def load(name: str = DEFAULT) -> ZooModel:
    """A zoo model by name (see :func:`available`)."""
    if name in _EMBEDDED:
        fname, desc = _EMBEDDED[name]
        path = DATA_DIR / fname
        if not path.exists():
            raise ModelError(f"the embedded model file {path} is missing: "
                             "reinstall amct-nb (pip install --force-reinstall amct-nb)")
        classes = json.loads((DATA_DIR / "fmnist_classes.json").read_text())
        return ZooModel(name, path, classes, "fashion-mnist", desc)
    if name == "efficientnet-lite0":
        from .efficientnet import load_efficientnet_lite0

        return load_efficientnet_lite0()
    raise ModelError(f"unknown zoo model '{name}': choose one of {', '.join(available())}")
