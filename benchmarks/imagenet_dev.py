"""The ImageNet dev images of ../shared/data with the EfficientNet-Lite reference preprocessing."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

DATA = Path(os.environ.get("AMCT_NB_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
MODEL = DATA / "efficientnet_lite0.onnx"
IMAGES = DATA / "imagenet-dev"


def load(start: int = 0, stop: int = 500) -> tuple[np.ndarray, np.ndarray]:
    """Images [start, stop) in file-name order as float32 NCHW and their class indices."""
    from amct_nb.data import ImageFolder, labels_of, preset

    ds = ImageFolder(IMAGES, preset("efficientnet-lite"), labels="csv", offset=start, limit=stop - start)
    x = np.stack([s[None] for s in ds]).astype(np.float32)
    return x, labels_of(ds)
