"""Image preprocessing: a Preprocess recipe (resize, crop, normalize, layout) and named presets.

Pillow is imported when an image is read or resized, not at import.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from ..errors import DataError

__all__ = ["Preprocess", "PRESETS", "preset", "PreprocessLike", "as_preprocess", "pil"]


def pil():
    """The PIL.Image module, or a DataError saying how to install it."""
    try:
        from PIL import Image
    except ImportError as e:  # pragma: no cover - Pillow is installed in the test environment
        raise DataError(
            "reading or resizing images needs Pillow, which is not installed: "
            "install Pillow: pip install pillow (or pip install 'amct-nb[images]')"
        ) from e
    return Image


_INTERPOLATIONS = ("nearest", "bilinear", "bicubic")
_LAYOUTS = ("NCHW", "NHWC")
_CHANNEL_ORDERS = ("RGB", "BGR", "L")
_RESIZE_MODES = ("shorter", "exact")


def _pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, (int, np.integer)) else (int(v[0]), int(v[1]))


def _check_size(field: str, v, allow_pair: bool) -> None:
    def ok_int(x):
        return isinstance(x, (int, np.integer)) and not isinstance(x, bool) and x > 0

    if v is None or ok_int(v):
        return
    if allow_pair and isinstance(v, (tuple, list)) and len(v) == 2 and all(ok_int(x) for x in v):
        return
    want = "a positive int or an (h, w) pair of them" if allow_pair else "a positive int"
    raise DataError(f"Preprocess.{field}={v!r} is not valid: give {want}, or None to skip this step")


@dataclasses.dataclass(frozen=True)
class Preprocess:
    """Image -> array recipe, applied to one image (no batch axis in the result).

    Steps, in order:

    1. convert to ``channel_order`` ("RGB"/"BGR" decode as RGB, "L" as grey);
    2. resize (Pillow, ``interpolation``), if ``size`` is set. ``resize_mode="shorter"``: the
       shorter side becomes ``size``, the other ``round(other * size / shorter)`` (Python
       ``round``); an image whose shorter side already is ``size`` is left untouched.
       ``resize_mode="exact"``: the image becomes ``size`` x ``size`` (or ``(h, w)``);
    3. center crop to ``crop`` (int or ``(h, w)``), top = ``round((H - h) / 2)``, left likewise
       (as torchvision); an image smaller than the crop is a DataError;
    4. ``x = (pixel * scale - mean) / std`` per channel, in float32. ``mean`` and ``std`` are
       scalars or one value per channel in the OUTPUT channel order (for "BGR" give B, G, R);
    5. ``layout`` "NCHW" gives ``[C, H, W]``, "NHWC" gives ``[H, W, C]`` (C = 1 for "L");
       cast to ``dtype``.

    Input: a PIL image, or a uint8 array ``HxW`` / ``HxWxC`` (C = 1, 3 or 4, RGB order).
    Arrays whose channels already match and need no resize are processed in numpy alone.
    """

    size: int | tuple[int, int] | None = None
    crop: int | tuple[int, int] | None = None
    resize_mode: str = "shorter"
    interpolation: str = "bilinear"
    scale: float = 1.0
    mean: float | tuple[float, ...] = 0.0
    std: float | tuple[float, ...] = 1.0
    layout: str = "NCHW"
    channel_order: str = "RGB"
    dtype: str = "float32"

    def __post_init__(self):
        for field, allowed in (
            ("resize_mode", _RESIZE_MODES),
            ("interpolation", _INTERPOLATIONS),
            ("layout", _LAYOUTS),
            ("channel_order", _CHANNEL_ORDERS),
        ):
            value = getattr(self, field)
            if value not in allowed:
                raise DataError(
                    f"Preprocess.{field}={value!r} is not valid: use one of {', '.join(map(repr, allowed))}"
                )
        _check_size("size", self.size, allow_pair=self.resize_mode == "exact")
        _check_size("crop", self.crop, allow_pair=True)
        if isinstance(self.size, list):
            object.__setattr__(self, "size", tuple(self.size))
        if isinstance(self.crop, list):
            object.__setattr__(self, "crop", tuple(self.crop))
        try:
            scale = float(self.scale)
        except (TypeError, ValueError):
            scale = float("nan")
        if not math.isfinite(scale) or scale == 0:
            raise DataError(f"Preprocess.scale={self.scale!r} is not valid: give a finite non-zero number, e.g. 1/255")
        object.__setattr__(self, "scale", scale)
        for field in ("mean", "std"):
            object.__setattr__(self, field, self._per_channel(field, getattr(self, field)))
        if any(s == 0 for s in np.atleast_1d(self.std)):
            raise DataError(f"Preprocess.std={self.std!r} contains 0: give non-zero standard deviations")
        try:
            dt = np.dtype(self.dtype)
        except TypeError as e:
            raise DataError(f"Preprocess.dtype={self.dtype!r} is not a numpy dtype: use e.g. 'float32'") from e
        object.__setattr__(self, "dtype", dt.name)

    @property
    def channels(self) -> int:
        """Number of channels of the output: 1 for "L", else 3."""
        return 1 if self.channel_order == "L" else 3

    def _per_channel(self, field: str, value):
        if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
            return float(value)
        try:
            values = tuple(float(v) for v in value)
        except (TypeError, ValueError) as e:
            raise DataError(
                f"Preprocess.{field}={value!r} is not valid: give a number or one number per channel"
            ) from e
        if len(values) == 1:
            return values[0]
        if len(values) != self.channels:
            raise DataError(
                f"Preprocess.{field} has {len(values)} values but channel_order={self.channel_order!r} gives "
                f"{self.channels} channel(s): give one value per channel or a single number"
            )
        return values

    def __call__(self, image) -> np.ndarray:
        """Preprocess one image (PIL image or uint8 HxW[xC] array) into one sample array."""
        arr = self._center_crop(self._pixels(image))
        x = np.asarray(arr, dtype=np.float32)
        if x.ndim == 2:
            x = x[:, :, None]
        if self.channel_order == "BGR":
            x = x[:, :, ::-1]
        if self.scale != 1.0:
            x = x * np.float32(self.scale)
        if self.mean != 0.0:
            x = x - np.asarray(self.mean, dtype=np.float32)
        if self.std != 1.0:
            x = x / np.asarray(self.std, dtype=np.float32)
        if self.layout == "NCHW":
            x = x.transpose(2, 0, 1)
        return np.ascontiguousarray(x, dtype=self.dtype)

    def _pixels(self, image) -> np.ndarray:
        """Decoded pixels as an HxW (grey) or HxWx3 (RGB) array, resized."""
        want = "L" if self.channel_order == "L" else "RGB"
        if isinstance(image, np.ndarray):
            if image.ndim == 3 and image.shape[2] == 1:
                image = image[:, :, 0]
            mode = {2: "L"}.get(image.ndim) or ("RGB" if image.ndim == 3 and image.shape[2] == 3 else None)
            if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (3, 4)):
                raise DataError(
                    f"an image array of shape {list(image.shape)} is not HxW or HxWxC (C = 1, 3 or 4): "
                    "transpose CHW arrays to HWC (array.transpose(1, 2, 0))"
                )
            if mode == want and self.size is None:
                return image
            if image.dtype != np.uint8:
                raise DataError(
                    f"resizing or converting an image array needs uint8 pixels, got {image.dtype}: "
                    "pass uint8 HxWxC pixels (or a PIL image)"
                )
            image = pil().fromarray(image)
        Image = pil()
        if not isinstance(image, Image.Image):
            raise DataError(
                f"Preprocess takes a PIL image or a uint8 HxW / HxWxC array, not {type(image).__name__}: "
                "open files with PIL.Image.open"
            )
        if image.mode != want:
            image = image.convert(want)
        return np.asarray(self._resize(image))

    def _resize(self, image):
        if self.size is None:
            return image
        w, h = image.size
        if self.resize_mode == "shorter":
            s = int(self.size)
            if min(w, h) == s:
                return image
            if w <= h:
                nw, nh = s, max(1, int(round(h * s / w)))
            else:
                nw, nh = max(1, int(round(w * s / h))), s
        else:
            nh, nw = _pair(self.size)
            if (h, w) == (nh, nw):
                return image
        Image = pil()
        resampling = getattr(Image, "Resampling", Image)
        method = {"nearest": resampling.NEAREST, "bilinear": resampling.BILINEAR, "bicubic": resampling.BICUBIC}
        return image.resize((nw, nh), method[self.interpolation])

    def _center_crop(self, arr: np.ndarray) -> np.ndarray:
        if self.crop is None:
            return arr
        ch, cw = _pair(self.crop)
        h, w = arr.shape[:2]
        if h < ch or w < cw:
            raise DataError(
                f"the image is {h}x{w} (HxW) after resizing, smaller than the crop {ch}x{cw}: "
                "set Preprocess.size >= crop, or lower crop"
            )
        top = int(round((h - ch) / 2.0))
        left = int(round((w - cw) / 2.0))
        return arr[top : top + ch, left : left + cw]


PRESETS: dict[str, Preprocess] = {
    # torchvision's ImageNet evaluation transform.
    "imagenet": Preprocess(
        size=256, crop=224, scale=1 / 255, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)
    ),
    # TF EfficientNet-Lite reference: (pixel - 127) / 128.
    "efficientnet-lite": Preprocess(size=256, crop=224, interpolation="bilinear", scale=1.0, mean=127.0, std=128.0),
    # 32x32 images used as they are.
    "cifar10": Preprocess(scale=1 / 255, mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616)),
    # 28x28 grey, output [1, 28, 28].
    "fashion-mnist": Preprocess(channel_order="L", scale=1 / 255, mean=0.2860, std=0.3530),
}


def preset(name: str, **overrides) -> Preprocess:
    """The preprocessing preset ``name`` (see ``PRESETS``), with fields replaced by ``overrides``.

    >>> preset("imagenet", layout="NHWC").layout
    'NHWC'
    """
    key = str(name).strip().lower().replace("_", "-")
    if key not in PRESETS:
        raise DataError(f"unknown preprocessing preset {name!r}: use one of {', '.join(sorted(PRESETS))}")
    fields = {f.name for f in dataclasses.fields(Preprocess)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise DataError(f"Preprocess has no field(s) {', '.join(unknown)}: use {', '.join(sorted(fields))}")
    return dataclasses.replace(PRESETS[key], **overrides)


PreprocessLike = Preprocess | str | Callable[[Any], np.ndarray] | None


def as_preprocess(p: PreprocessLike):
    if p is None or isinstance(p, Preprocess):
        return p
    if isinstance(p, str):
        return preset(p)
    if callable(p):
        return p
    raise DataError(
        f"preprocess must be a Preprocess, a preset name or a callable, not {type(p).__name__}: "
        f"e.g. preprocess=preset('imagenet')"
    )
