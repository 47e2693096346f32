"""Calibration and evaluation data: datasets, preprocessing presets, and batching into model feeds.

A dataset is a sized iterable of :class:`Sample` objects. A sample is a dict
``{input_name_or_None: array}`` holding ONE sample without a batch axis (``None`` stands for
"the model's only input"), plus ``label`` and ``source`` attributes. :func:`iter_batches` stacks
samples into feeds ``{input_name: array}`` for ONNX Runtime. Datasets load lazily: image folders
decode on iteration, ``.npy``, IDX, CIFAR-10 and uncompressed ``.npz`` files are memory-mapped,
so memory stays bounded by one batch, not by the data set.

Only numpy is needed at import; Pillow is imported when images are read, tqdm (optional) when a
progress bar is asked for.
"""

from __future__ import annotations

import csv
import dataclasses
import gzip
import math
import os
import struct
import warnings
import zipfile
import zlib
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, Callable, Union

import numpy as np

from .errors import DataError

__all__ = [
    "Sample",
    "Preprocess",
    "PRESETS",
    "preset",
    "Dataset",
    "ArrayDataset",
    "ImageFolder",
    "IDXDataset",
    "Cifar10Binary",
    "NpyDataset",
    "NpzDataset",
    "NpzFolder",
    "open_data",
    "iter_batches",
    "labels_of",
    "IMAGE_EXTENSIONS",
    "CIFAR10_CLASSES",
]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".pbm")
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")

_ACCEPTED = (
    "accepted: a folder of images (class sub-folders, a labels.csv, or neither), a folder of .npz files "
    "(one feed each), a .npy or .npz file, an MNIST-style IDX file (.idx / *-ubyte, raw or .gz), "
    "a CIFAR-10 binary folder (cifar-10-batches-bin) or .bin file, a numpy array or dict of arrays "
    "(first axis = samples), or an iterable of feeds"
)


def _pil():
    """The PIL.Image module, or a DataError saying how to install it."""
    try:
        from PIL import Image
    except ImportError as e:  # pragma: no cover - Pillow is installed in the test environment
        raise DataError(
            "reading or resizing images needs Pillow, which is not installed: "
            "install Pillow: pip install pillow (or pip install 'amct-nb[images]')"
        ) from e
    return Image


# --------------------------------------------------------------------------------------------
# Samples
# --------------------------------------------------------------------------------------------


class Sample(dict):
    """One sample: ``{input_name_or_None: np.ndarray}`` plus metadata.

    ``label``: the class index (or any label value), or None. ``source``: the file it came from,
    or None. ``complete``: False for an ordinary sample (arrays WITHOUT a batch axis, stacked by
    :func:`iter_batches`); True when the arrays already are a whole model feed (``NpzFolder``).
    """

    __slots__ = ("label", "source", "complete")

    def __init__(self, arrays=(), label=None, source=None, complete=False):
        super().__init__(arrays)
        self.label = label
        self.source = source
        self.complete = complete

    def __repr__(self) -> str:
        shapes = ", ".join(f"{k!r}: {getattr(v, 'dtype', '?')}{list(getattr(v, 'shape', ()))}" for k, v in self.items())
        return f"Sample({{{shapes}}}, label={self.label!r}, source={self.source!r})"


# --------------------------------------------------------------------------------------------
# Preprocessing
# --------------------------------------------------------------------------------------------

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

    size: Union[int, tuple[int, int], None] = None
    crop: Union[int, tuple[int, int], None] = None
    resize_mode: str = "shorter"
    interpolation: str = "bilinear"
    scale: float = 1.0
    mean: Union[float, tuple[float, ...]] = 0.0
    std: Union[float, tuple[float, ...]] = 1.0
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
            raise DataError(f"Preprocess.{field}={value!r} is not valid: give a number or one number per channel") from e
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
            image = _pil().fromarray(image)
        Image = _pil()
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
        Image = _pil()
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


PreprocessLike = Union[Preprocess, str, Callable[[Any], np.ndarray], None]


def _as_preprocess(p: PreprocessLike):
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


# --------------------------------------------------------------------------------------------
# Datasets
# --------------------------------------------------------------------------------------------


class Dataset:
    """Base of amct-nb datasets: a sized, indexable iterable of :class:`Sample`.

    Subclasses implement ``__len__`` and ``_sample(i)``; ``labels`` is an int array (one label
    per sample) or None. ``complete_feeds`` is True when every sample already is a model feed.
    """

    complete_feeds = False

    def __len__(self) -> int:
        raise NotImplementedError

    def _sample(self, i: int) -> Sample:
        raise NotImplementedError

    def __getitem__(self, i) -> Sample:
        n = len(self)
        if not isinstance(i, (int, np.integer)):
            raise TypeError(f"{type(self).__name__} indices must be integers, not {type(i).__name__}")
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"sample {i} out of range: {type(self).__name__} has {n} samples")
        return self._sample(int(i))

    def __iter__(self) -> Iterator[Sample]:
        for i in range(len(self)):
            yield self._sample(i)

    @property
    def labels(self) -> np.ndarray | None:
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self)} samples)"


def _first_dims(arrays: Mapping, where: str) -> int:
    """The common first dimension of ``arrays``, or a DataError naming the shapes."""
    if not arrays:
        raise DataError(f"{where} holds no arrays: give at least one array (first axis = samples)")
    for k, a in arrays.items():
        if a.ndim == 0:
            raise DataError(
                f"{where}: array {k!r} is a scalar; the first axis must count samples: save an array of shape [N, ...]"
            )
    dims = {a.shape[0] for a in arrays.values()}
    if len(dims) != 1:
        shapes = ", ".join(f"{k!r}: {list(a.shape)}" for k, a in arrays.items())
        raise DataError(
            f"{where}: arrays have different first dimensions ({shapes}); the first axis counts samples "
            "and must be the same in every array: save the same number of samples for every input"
        )
    n = dims.pop()
    if n == 0:
        raise DataError(f"{where} holds 0 samples (first axis is 0): give at least one sample")
    return n


def _labels_array(labels, n: int, where: str) -> np.ndarray | None:
    if labels is None:
        return None
    labels = np.asarray(labels)
    if labels.ndim == 0 or labels.shape[0] != n:
        raise DataError(
            f"{where} has {n} samples but {labels.shape[0] if labels.ndim else 'a scalar'} labels: "
            "give one label per sample"
        )
    return labels


class ArrayDataset(Dataset):
    """Samples from in-memory (or memory-mapped) arrays, first axis = samples.

    ``arrays``: ``{input_name_or_None: array}`` (or one array, meaning ``{None: array}``);
    ``labels``: one label per sample, or None.
    """

    def __init__(self, arrays: Mapping[str | None, np.ndarray] | np.ndarray, labels=None, *, _where: str = "the arrays"):
        if isinstance(arrays, np.ndarray):
            arrays = {None: arrays}
        if not isinstance(arrays, Mapping):
            raise DataError(
                f"ArrayDataset takes a dict {{input name: array}} or one array, not {type(arrays).__name__}"
            )
        self.arrays = {k: (v if isinstance(v, np.ndarray) else np.asarray(v)) for k, v in arrays.items()}
        self._n = _first_dims(self.arrays, _where)
        self._labels = _labels_array(labels, self._n, _where)

    def __len__(self) -> int:
        return self._n

    def _sample(self, i: int) -> Sample:
        label = None if self._labels is None else self._labels[i].item() if self._labels.ndim == 1 else self._labels[i]
        return Sample({k: np.array(a[i]) for k, a in self.arrays.items()}, label=label)

    @property
    def labels(self) -> np.ndarray | None:
        return self._labels


def _norm_extensions(extensions) -> tuple[str, ...]:
    if isinstance(extensions, str):
        extensions = [extensions]
    return tuple(e.lower() if e.startswith(".") else "." + e.lower() for e in extensions)


def _walk_images(root: Path, exts: tuple[str, ...]) -> Iterator[Path]:
    """Image files under ``root`` (recursive, hidden files and folders skipped), in walk order."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for f in sorted(filenames):
            if not f.startswith(".") and f.lower().endswith(exts):
                yield Path(dirpath) / f


class ImageFolder(Dataset):
    """Images in a folder, decoded and preprocessed on iteration (one sample ``{None: array}`` each).

    ``labels``:

    - ``"auto"`` (default): ``"csv"`` if ``root/labels.csv`` exists, else ``"folders"`` if a
      sub-folder of root holds images, else no labels;
    - ``"csv"``: ``root/labels.csv`` with a header naming a ``file`` column (path relative to root)
      and a ``class_index`` (or ``label``) column of integers; the csv lists the data set (a row
      naming a missing file is a DataError; images without a row are left out with a warning);
    - ``"folders"``: every sub-folder of root is a class; class index = position in the sorted
      folder names (``classes``); images directly in root are a DataError;
    - ``None``: every image under root, no labels.

    Files are sorted by their path relative to root (``sort=True``), then ``offset`` and ``limit``
    pick a slice (e.g. ``limit=100`` to calibrate, ``offset=100`` to evaluate on the rest).

    ``on_error="skip"`` (default): an image that cannot be decoded or preprocessed (corrupt,
    truncated, too small for the crop) is skipped during iteration with a ``warnings.warn`` naming
    the file, and listed in ``skipped``; ``labels_of`` then leaves its label out. ``"raise"``:
    such an image raises DataError naming the file. Indexing (``ds[i]``) always raises.
    """

    def __init__(
        self,
        root,
        preprocess: PreprocessLike,
        labels: str | None = "auto",
        extensions=IMAGE_EXTENSIONS,
        on_error: str = "skip",
        limit: int | None = None,
        sort: bool = True,
        offset: int = 0,
    ):
        self.root = Path(root)
        if not self.root.exists():
            raise DataError(f"image folder {self.root} does not exist: check the path (relative paths start at {os.getcwd()})")
        if not self.root.is_dir():
            raise DataError(f"{self.root} is a file, not a folder of images: pass the folder that holds the images")
        if preprocess is None:
            raise DataError(
                f"images in {self.root} need a preprocess to become model inputs: pass "
                f"preprocess=preset('imagenet') (presets: {', '.join(sorted(PRESETS))}) or a Preprocess(...)"
            )
        self.preprocess = _as_preprocess(preprocess)
        if on_error not in ("skip", "raise"):
            raise DataError(f"on_error={on_error!r} is not valid: use 'skip' or 'raise'")
        self.on_error = on_error
        self.extensions = _norm_extensions(extensions)
        _pil()  # fail early, not once per image, when Pillow is missing
        mode = labels
        if mode == "auto":
            if (self.root / "labels.csv").is_file():
                mode = "csv"
            elif any(p.is_dir() and not p.name.startswith(".") and _has_images(p) for p in self.root.iterdir()):
                mode = "folders"
            else:
                mode = None
        if mode not in ("csv", "folders", None):
            raise DataError(f"labels={labels!r} is not valid: use 'auto', 'csv', 'folders' or None")
        self.labels_mode = mode
        self.classes: list[str] | None = None

        if mode == "csv":
            files, labs = self._from_csv(sort)
        else:
            files = list(_walk_images(self.root, self.extensions))
            labs = None
            if mode == "folders":
                files, labs = self._from_folders(files)
            if sort:
                order = sorted(range(len(files)), key=lambda j: files[j].relative_to(self.root).parts)
                files = [files[j] for j in order]
                labs = None if labs is None else [labs[j] for j in order]
        if not files:
            raise DataError(
                f"no images found in {self.root} (looked for {', '.join(self.extensions)} in it and its sub-folders): "
                "add images, or point to the folder that holds them"
            )
        if isinstance(offset, bool) or not isinstance(offset, (int, np.integer)) or offset < 0:
            raise DataError(f"offset={offset!r} is not valid: give an int >= 0")
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, (int, np.integer)) or limit < 1):
            raise DataError(f"limit={limit!r} is not valid: give an int >= 1, or None for all images")
        stop = None if limit is None else offset + limit
        if offset >= len(files):
            raise DataError(f"offset={offset} leaves no images: {self.root} has {len(files)}; use a smaller offset")
        self.files: list[Path] = files[offset:stop]
        self._labels = None if labs is None else np.asarray(labs[offset:stop], dtype=np.int64)
        self.skipped: list[Path] = []
        self._bad: set[int] = set()

    def _from_folders(self, files: list[Path]):
        self.classes = sorted(p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))
        if not self.classes:
            raise DataError(
                f"labels='folders' but {self.root} has no sub-folders: put each class in its own sub-folder, "
                "or use labels=None"
            )
        loose = [f for f in files if f.parent == self.root]
        if loose:
            raise DataError(
                f"{self.root} has images directly in it ({loose[0].name}, ...) besides class sub-folders: "
                "move them into a class folder, or use labels=None"
            )
        index = {c: k for k, c in enumerate(self.classes)}
        labs = [index[f.relative_to(self.root).parts[0]] for f in files]
        empty = sorted(set(self.classes) - {self.classes[k] for k in labs})
        if empty:
            raise DataError(
                f"class folder(s) {', '.join(empty)} in {self.root} hold no images, which would shift the class "
                "indices (taken from the sorted folder names): add images or remove the folder(s)"
            )
        return files, labs

    def _from_csv(self, sort: bool):
        csv_path = self.root / "labels.csv"
        if not csv_path.is_file():
            raise DataError(f"labels='csv' but {csv_path} does not exist: add it (columns file,class_index) or use labels='auto'")
        files: list[Path] = []
        labs: list[int] = []
        seen: dict[str, int] = {}
        with open(csv_path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            header = [h.strip() for h in next(reader, [])]
            col = "class_index" if "class_index" in header else "label" if "label" in header else None
            if "file" not in header or col is None:
                raise DataError(
                    f"{csv_path} header is {header}: it needs a 'file' column and a 'class_index' (or 'label') "
                    "column: fix the first line, e.g. file,class_index"
                )
            fi, li = header.index("file"), header.index(col)
            for row in reader:
                line = reader.line_num
                if not any(cell.strip() for cell in row):
                    continue
                if len(row) <= max(fi, li):
                    raise DataError(
                        f"{csv_path} line {line} has {len(row)} field(s) but the header has {len(header)}: fix the line"
                    )
                name, value = row[fi].strip(), row[li].strip()
                try:
                    label = int(value)
                except ValueError:
                    raise DataError(
                        f"{csv_path} line {line}: {col} {value!r} is not an integer class index: fix the line"
                    ) from None
                path = self.root / name
                if not name or not path.is_file():
                    raise DataError(
                        f"{csv_path} line {line} names {name!r} which is not in {self.root}: fix the file or remove the line"
                    )
                if name in seen:
                    raise DataError(
                        f"{csv_path} line {line} names {name!r} again (first on line {seen[name]}): remove the duplicate"
                    )
                seen[name] = line
                files.append(path)
                labs.append(label)
        listed = {p.resolve() for p in files}
        extra = [p for p in _walk_images(self.root, self.extensions) if p.resolve() not in listed]
        if extra:
            warnings.warn(
                f"{len(extra)} image(s) in {self.root} have no row in {csv_path.name} and are left out "
                f"(e.g. {extra[0].relative_to(self.root)}): add rows for them to use them",
                stacklevel=3,
            )
        if sort:
            order = sorted(range(len(files)), key=lambda j: files[j].relative_to(self.root).parts)
            files, labs = [files[j] for j in order], [labs[j] for j in order]
        return files, labs

    def __len__(self) -> int:
        return len(self.files)

    @property
    def labels(self) -> np.ndarray | None:
        """One label per entry of ``files`` (skipped files included; ``labels_of`` drops them)."""
        return self._labels

    def _sample(self, i: int) -> Sample:
        path = self.files[i]
        Image = _pil()
        try:
            image = Image.open(path)
            image.load()
        except Exception as e:  # PIL raises many types for broken files
            raise DataError(
                f"cannot read image {path} ({type(e).__name__}: {e}): replace or delete the file"
            ) from e
        try:
            with image:
                arr = np.asarray(self.preprocess(image))
        except (DataError, OSError, ValueError) as e:
            raise DataError(f"cannot preprocess image {path}: {e}") from e
        label = None if self._labels is None else int(self._labels[i])
        return Sample({None: arr}, label=label, source=str(path))

    def __iter__(self) -> Iterator[Sample]:
        yielded = 0
        for i in range(len(self.files)):
            if i in self._bad:
                continue
            try:
                sample = self._sample(i)
            except DataError as e:
                if self.on_error == "raise":
                    raise
                self._bad.add(i)
                self.skipped.append(self.files[i])
                warnings.warn(f"{e} (skipped: on_error='skip')", stacklevel=2)
                continue
            yielded += 1
            yield sample
        if yielded == 0:
            raise DataError(
                f"none of the {len(self.files)} image(s) in {self.root} could be read (see the warnings): "
                "check the files and that they are images"
            )


# ---- IDX (MNIST family) ----------------------------------------------------------------------

_IDX_DTYPES = {0x08: "u1", 0x09: "i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(2) == b"\x1f\x8b"


def _idx_magic_ok(head: bytes) -> bool:
    return len(head) >= 4 and head[0] == 0 and head[1] == 0 and head[2] in _IDX_DTYPES and 1 <= head[3] <= 8


def _read_idx(path) -> np.ndarray:
    """The array in an IDX file (raw: memory-mapped; .gz: decompressed into memory), validated."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"IDX file {path} does not exist: check the path")
    gz = _is_gzip(path)
    what = "decompressed, it" if gz else "it"
    if gz:
        try:
            with gzip.open(path, "rb") as fh:
                data = fh.read()
        except (EOFError, OSError, zlib.error) as e:
            raise DataError(
                f"{path} is truncated or not a valid gzip file ({type(e).__name__}: {e}): download it again"
            ) from e
        actual = len(data)
        head = data[:64]
    else:
        actual = path.stat().st_size
        with open(path, "rb") as fh:
            head = fh.read(64)
    if not _idx_magic_ok(head):
        raise DataError(
            f"{path} is not an IDX file: its first bytes {head[:4].hex(' ') or '(none)'} are not an IDX magic "
            "number (00 00 <type 08-0e> <ndim>): pass an MNIST-style *-images-idx3-ubyte or *-labels-idx1-ubyte "
            "file (raw or .gz)"
        )
    ndim = head[3]
    header_len = 4 + 4 * ndim
    dtype = np.dtype(_IDX_DTYPES[head[2]])
    if actual < header_len:
        raise DataError(
            f"{path} is truncated: its header needs {header_len} bytes but {what} has {actual} bytes: download it again"
        )
    dims = struct.unpack(">" + "I" * ndim, head[4:header_len])
    count = math.prod(dims)
    expected = header_len + count * dtype.itemsize
    if actual < expected:
        raise DataError(
            f"{path} is truncated: its header promises shape {list(dims)} of {dtype.itemsize}-byte items, "
            f"{expected} bytes in all, but {what} has {actual} bytes: download it again"
        )
    if actual > expected:
        raise DataError(
            f"{path} has {actual - expected} bytes more than its header promises (expected {expected} bytes for "
            f"shape {list(dims)}, {what} has {actual}): the file is damaged or not IDX; download it again"
        )
    if gz:
        return np.frombuffer(data, dtype=dtype, count=count, offset=header_len).reshape(dims)
    if count == 0:
        return np.empty(dims, dtype=dtype)
    return np.memmap(path, dtype=dtype, mode="r", offset=header_len, shape=dims)


class IDXDataset(Dataset):
    """MNIST-family IDX files (raw or .gz): one sample per image, labels from an optional labels file.

    The files' magic numbers, dimensions and lengths are checked (a truncated file is a DataError
    giving the expected and actual sizes). Samples: ``preprocess(image)`` if a preprocess is
    given (e.g. ``preset("fashion-mnist")`` -> float32 ``[1, 28, 28]``), else the image as stored
    (uint8 ``[28, 28]`` for MNIST). Raw files are memory-mapped; .gz files are decompressed into
    memory once (47 MB for the 60,000 MNIST training images).
    """

    def __init__(self, images_path, labels_path=None, preprocess: PreprocessLike = None):
        self.images_path = Path(images_path)
        self.labels_path = None if labels_path is None else Path(labels_path)
        self.preprocess = _as_preprocess(preprocess)
        self.images = _read_idx(self.images_path)
        if self.images.ndim < 2:
            raise DataError(
                f"{self.images_path} holds a {self.images.ndim}-D array of shape {list(self.images.shape)}, not "
                "images: it looks like a labels file; pass it as labels_path and the *-images-idx3 file as images_path"
            )
        if self.images.shape[0] == 0:
            raise DataError(f"{self.images_path} holds 0 images: use a file with data")
        self._labels = None
        if self.labels_path is not None:
            labs = _read_idx(self.labels_path)
            if labs.ndim != 1:
                raise DataError(
                    f"{self.labels_path} holds an array of shape {list(labs.shape)}, not one label per image: "
                    "pass the *-labels-idx1 file as labels_path"
                )
            if labs.shape[0] != self.images.shape[0]:
                raise DataError(
                    f"{self.images_path} holds {self.images.shape[0]} images but {self.labels_path} holds "
                    f"{labs.shape[0]} labels: pass the labels file that belongs to these images "
                    "(e.g. t10k-images with t10k-labels)"
                )
            self._labels = np.asarray(labs, dtype=np.int64)

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def labels(self) -> np.ndarray | None:
        return self._labels

    def _sample(self, i: int) -> Sample:
        img = np.asarray(self.images[i])
        img = img.astype(img.dtype.newbyteorder("="), copy=True)
        arr = img if self.preprocess is None else np.asarray(self.preprocess(img))
        label = None if self._labels is None else int(self._labels[i])
        return Sample({None: arr}, label=label, source=f"{self.images_path}[{i}]")


# ---- CIFAR-10 binary -------------------------------------------------------------------------

_CIFAR_RECORD = 1 + 3 * 32 * 32


class Cifar10Binary(Dataset):
    """CIFAR-10 binary batches (the ``cifar-10-batches-bin`` layout), memory-mapped.

    ``root_or_file``: the ``cifar-10-batches-bin`` folder, a folder containing it, or one ``.bin``
    file (then ``split`` is ignored). ``split="test"`` reads ``test_batch.bin``, ``"train"`` reads
    ``data_batch_1.bin`` .. ``data_batch_5.bin``. Each record is 1 label byte + 3072 pixel bytes
    (R, G, B planes of 32x32). Samples: ``preprocess(HxWxC uint8 image)`` if given (e.g.
    ``preset("cifar10")``), else the stored uint8 ``[3, 32, 32]``. ``classes`` = CIFAR10_CLASSES.
    """

    classes = list(CIFAR10_CLASSES)

    def __init__(self, root_or_file, split: str = "test", preprocess: PreprocessLike = None):
        path = Path(root_or_file)
        self.preprocess = _as_preprocess(preprocess)
        if not path.exists():
            raise DataError(f"CIFAR-10 path {path} does not exist: check the path")
        if path.is_file():
            files = [path]
        else:
            if (path / "cifar-10-batches-bin").is_dir():
                path = path / "cifar-10-batches-bin"
            if split == "test":
                names = ["test_batch.bin"]
            elif split == "train":
                names = [f"data_batch_{k}.bin" for k in range(1, 6)]
            else:
                raise DataError(f"split={split!r} is not valid: use 'test' or 'train'")
            missing = [n for n in names if not (path / n).is_file()]
            if missing:
                raise DataError(
                    f"{path} lacks {', '.join(missing)} for split {split!r}: point to the cifar-10-batches-bin "
                    "folder (from cifar-10-binary.tar.gz)"
                )
            files = [path / n for n in names]
        self.files = files
        self._maps: list[np.ndarray] = []
        labels = []
        for f in files:
            size = f.stat().st_size
            n, rest = divmod(size, _CIFAR_RECORD)
            if size == 0 or rest:
                raise DataError(
                    f"{f} is truncated or not a CIFAR-10 binary batch: its size, {size} bytes, is not a multiple of "
                    f"{_CIFAR_RECORD} (1 label byte + 3072 pixel bytes per image); {n} whole records would be "
                    f"{n * _CIFAR_RECORD} bytes, {n + 1} would be {(n + 1) * _CIFAR_RECORD}: download it again"
                )
            mm = np.memmap(f, dtype=np.uint8, mode="r", shape=(n, _CIFAR_RECORD))
            labs = np.array(mm[:, 0], dtype=np.int64)
            bad = np.flatnonzero(labs > 9)
            if bad.size:
                raise DataError(
                    f"{f} record {bad[0]} has label {labs[bad[0]]}, not 0..9: this is not a CIFAR-10 binary batch "
                    "(CIFAR-100 records start with 2 label bytes): use the CIFAR-10 binary files"
                )
            self._maps.append(mm)
            labels.append(labs)
        self._labels = np.concatenate(labels)
        self._starts = np.cumsum([0] + [m.shape[0] for m in self._maps])

    def __len__(self) -> int:
        return int(self._starts[-1])

    @property
    def labels(self) -> np.ndarray:
        return self._labels

    def _sample(self, i: int) -> Sample:
        k = int(np.searchsorted(self._starts, i, side="right")) - 1
        j = i - int(self._starts[k])
        chw = np.asarray(self._maps[k][j, 1:]).reshape(3, 32, 32)
        if self.preprocess is None:
            arr = np.array(chw)
        else:
            arr = np.asarray(self.preprocess(np.ascontiguousarray(chw.transpose(1, 2, 0))))
        return Sample({None: arr}, label=int(self._labels[i]), source=f"{self.files[k]}[{j}]")


# ---- numpy files -----------------------------------------------------------------------------


class NpyDataset(ArrayDataset):
    """A ``.npy`` file holding one array, first axis = samples, memory-mapped; input name None."""

    def __init__(self, path):
        self.path = Path(path)
        try:
            arr = np.load(self.path, mmap_mode="r", allow_pickle=False)
        except FileNotFoundError as e:
            raise DataError(f"{self.path} does not exist: check the path") from e
        except (ValueError, OSError, EOFError) as e:
            raise DataError(
                f"{self.path} cannot be read as a .npy array ({e}): save it with numpy.save from a numeric array"
            ) from e
        if not isinstance(arr, np.ndarray):
            raise DataError(f"{self.path} is not a .npy array file: use numpy.save, or NpzDataset for .npz files")
        super().__init__({None: arr}, _where=str(self.path))

    @property
    def array(self) -> np.ndarray:
        return self.arrays[None]


def _npz_member_memmap(fh, path: Path, info: zipfile.ZipInfo) -> np.ndarray | None:
    """Memory-map an uncompressed .npy member of a zip, or None when that is not possible."""
    fmt = np.lib.format
    try:
        fh.seek(info.header_offset)
        local = fh.read(30)
        if len(local) < 30 or local[:4] != b"PK\x03\x04":
            return None
        name_len, extra_len = struct.unpack("<HH", local[26:30])
        start = info.header_offset + 30 + name_len + extra_len
        fh.seek(start)
        version = fmt.read_magic(fh)
        if version == (1, 0):
            shape, fortran, dtype = fmt.read_array_header_1_0(fh)
        elif version == (2, 0):
            shape, fortran, dtype = fmt.read_array_header_2_0(fh)
        else:
            return None
        offset = fh.tell()
        if dtype.hasobject or offset - start + math.prod(shape) * dtype.itemsize > info.file_size:
            return None
        if math.prod(shape) == 0:
            return np.empty(shape, dtype=dtype)
        return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape, order="F" if fortran else "C")
    except Exception:
        return None


def _npz_arrays(path: Path, lazy: bool) -> dict[str, np.ndarray]:
    """The arrays of an .npz file; with ``lazy``, uncompressed members are memory-mapped."""
    if not path.is_file():
        raise DataError(f"{path} does not exist: check the path")
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as e:
        raise DataError(f"{path} is not a valid .npz file ({e}): save it with numpy.savez") from e
    out: dict[str, np.ndarray] = {}
    with zf, open(path, "rb") as fh:
        for info in zf.infolist():
            if not info.filename.endswith(".npy"):
                continue
            key = info.filename[:-4]
            arr = _npz_member_memmap(fh, path, info) if lazy and info.compress_type == zipfile.ZIP_STORED else None
            if arr is None:
                try:
                    with zf.open(info) as member:
                        arr = np.lib.format.read_array(member, allow_pickle=False)
                except Exception as e:
                    raise DataError(
                        f"array {key!r} in {path} cannot be read ({type(e).__name__}: {e}): save the file again "
                        "with numpy.savez from numeric arrays"
                    ) from e
            out[key] = arr
    if not out:
        raise DataError(f"{path} holds no arrays: save one array per model input with numpy.savez(path, name=array)")
    return out


def _npz_names(arrays: dict) -> dict:
    """numpy.savez's default single name ``arr_0`` means "the model's only input" (None)."""
    return {None: arrays["arr_0"]} if list(arrays) == ["arr_0"] else arrays


def _pop_labels(arrays: dict, labels_key, path: Path):
    if labels_key is None:
        return None
    if labels_key not in arrays:
        raise DataError(
            f"{path} has no array {labels_key!r} for labels (it has {', '.join(arrays)}): "
            "fix labels_key or add the labels array"
        )
    return arrays.pop(labels_key)


class NpzDataset(ArrayDataset):
    """A ``.npz`` file with one array per model input (keys = input names), first axis = samples.

    All arrays must have the same first dimension. A file saved as ``numpy.savez(path, x)``
    (single key ``arr_0``) feeds the model's only input. ``labels_key``: an array in the file
    holding one label per sample (it is then not an input). Uncompressed members
    (``numpy.savez``) are memory-mapped; compressed ones (``savez_compressed``) are read into memory.
    """

    def __init__(self, path, labels_key: str | None = None):
        self.path = Path(path)
        arrays = _npz_arrays(self.path, lazy=True)
        labels = _pop_labels(arrays, labels_key, self.path)
        super().__init__(_npz_names(arrays), labels=labels, _where=str(self.path))


class NpzFolder(Dataset):
    """A folder of ``.npz`` files, one complete model feed per file, in sorted file-name order.

    Each file holds ONE COMPLETE FEED for the model: its arrays are passed to the model as they
    are, with whatever batch axis the file has (nothing is stacked or added), and shapes may differ
    between files. Keys are input names (a single ``arr_0`` feeds the only input). ``labels_key``:
    an array in each file holding that feed's label(s).
    """

    complete_feeds = True

    def __init__(self, path, labels_key: str | None = None):
        self.path = Path(path)
        if not self.path.is_dir():
            raise DataError(f"{self.path} is not a folder: pass the folder that holds the .npz files")
        self.files = sorted((p for p in self.path.iterdir() if p.suffix.lower() == ".npz" and p.is_file()), key=lambda p: p.name)
        if not self.files:
            raise DataError(f"no .npz files in {self.path}: save one feed per file with numpy.savez(path, name=array)")
        self.labels_key = labels_key
        self._labels: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.files)

    def _sample(self, i: int) -> Sample:
        path = self.files[i]
        arrays = _npz_arrays(path, lazy=False)
        label = _pop_labels(arrays, self.labels_key, path)
        return Sample(_npz_names(arrays), label=label, source=str(path), complete=True)

    @property
    def labels(self) -> np.ndarray | None:
        """The ``labels_key`` arrays of all files, concatenated (None without labels_key)."""
        if self.labels_key is None:
            return None
        if self._labels is None:
            parts = []
            for f in self.files:
                with np.load(f, allow_pickle=False) as z:
                    if self.labels_key not in z.files:
                        raise DataError(f"{f} has no array {self.labels_key!r} for labels: add it or fix labels_key")
                    parts.append(np.atleast_1d(z[self.labels_key]))
            self._labels = np.concatenate(parts)
        return self._labels


# --------------------------------------------------------------------------------------------
# Opening data from a path or object
# --------------------------------------------------------------------------------------------


def _has_images(folder: Path) -> bool:
    return next(_walk_images(folder, IMAGE_EXTENSIONS), None) is not None


def _is_cifar_dir(folder: Path) -> bool:
    if (folder / "cifar-10-batches-bin").is_dir():
        return True
    return (folder / "test_batch.bin").is_file() or (folder / "data_batch_1.bin").is_file()


def _looks_idx(path: Path) -> bool:
    name = path.name.lower()
    return name.endswith((".idx", ".gz")) or "ubyte" in name or ".idx" in name


def _idx_labels_guess(path: Path) -> Path | None:
    """``x-images-idx3-ubyte[.gz]`` -> the ``x-labels-idx1-ubyte[.gz]`` beside it, if present."""
    name = path.name
    if "images-idx3" not in name:
        return None
    base = name.replace("images-idx3", "labels-idx1")
    stem = base[:-3] if base.endswith(".gz") else base
    for cand in (base, stem, stem + ".gz"):
        if (path.parent / cand).is_file():
            return path.parent / cand
    return None


def _no_preprocess(preprocess, path: Path) -> None:
    if preprocess is not None:
        raise DataError(
            f"{path} holds arrays, which are fed as they are: preprocess applies to images only; "
            "drop preprocess= (or save already preprocessed arrays)"
        )


def open_data(spec, preprocess: PreprocessLike = None, **kwargs):
    """A dataset for ``spec``; extra keyword arguments go to the dataset's constructor.

    ``spec`` may be a path: a folder of images (-> ImageFolder, needs ``preprocess``), a folder of
    ``.npz`` files (-> NpzFolder), a CIFAR-10 binary folder or ``.bin`` file (-> Cifar10Binary),
    a ``.npy`` (-> NpyDataset) or ``.npz`` (-> NpzDataset) file, an IDX file named ``*.idx``,
    ``*-ubyte`` or ``*.gz`` (-> IDXDataset; ``x-images-idx3-ubyte`` finds ``x-labels-idx1-ubyte``
    beside it unless ``labels_path=`` is given). A Dataset is returned as is; a numpy array or a
    dict of arrays becomes an ArrayDataset (first axis = samples); any other iterable (e.g. a
    list or generator of feeds) is returned unchanged.
    """
    if isinstance(spec, Dataset):
        if preprocess is not None or kwargs:
            raise DataError(f"{spec!r} already is a dataset: set preprocess and options when creating it")
        return spec
    if isinstance(spec, (str, os.PathLike)):
        return _open_path(Path(spec), preprocess, kwargs)
    if isinstance(spec, np.ndarray) or (isinstance(spec, Mapping) and all(isinstance(v, np.ndarray) for v in spec.values())):
        if preprocess is not None:
            raise DataError("arrays are fed as they are: preprocess applies to images only; drop preprocess=")
        return ArrayDataset(spec, **kwargs)
    if isinstance(spec, Iterable) and not isinstance(spec, (bytes, Mapping)):
        if preprocess is not None or kwargs:
            raise DataError(
                f"a {type(spec).__name__} of feeds is used as it is: preprocess and options apply to paths only"
            )
        return spec
    raise DataError(f"cannot use a {type(spec).__name__} as data; {_ACCEPTED}")


def _open_path(path: Path, preprocess, kwargs):
    if not path.exists():
        raise DataError(f"data path {path} does not exist (relative paths start at {os.getcwd()}): check the path")
    if path.is_dir():
        if _is_cifar_dir(path):
            return Cifar10Binary(path, preprocess=preprocess, **kwargs)
        has_npz = any(p.suffix.lower() == ".npz" and p.is_file() for p in path.iterdir())
        has_img = _has_images(path)
        if has_npz and has_img:
            raise DataError(
                f"{path} holds both images and .npz files, so it is unclear which to use: move one kind elsewhere"
            )
        if has_img:
            return ImageFolder(path, preprocess, **kwargs)
        if has_npz:
            _no_preprocess(preprocess, path)
            return NpzFolder(path, **kwargs)
        raise DataError(f"{path} holds no data amct-nb can read; {_ACCEPTED}")
    name = path.name.lower()
    if name.endswith(".npy"):
        _no_preprocess(preprocess, path)
        return NpyDataset(path, **kwargs)
    if name.endswith(".npz"):
        _no_preprocess(preprocess, path)
        return NpzDataset(path, **kwargs)
    if name.endswith(".bin"):
        return Cifar10Binary(path, preprocess=preprocess, **kwargs)
    if _looks_idx(path):
        labels_path = kwargs.pop("labels_path", _idx_labels_guess(path))
        return IDXDataset(path, labels_path, preprocess=preprocess, **kwargs)
    raise DataError(f"{path}: unknown data file type {path.suffix or '(no extension)'!r}; {_ACCEPTED}")


# --------------------------------------------------------------------------------------------
# Batching
# --------------------------------------------------------------------------------------------


def _where(index: int, source) -> str:
    return f"sample {index}" + (f" ({source})" if source else "")


def _named(item: Mapping, names: list[str], where: str) -> Mapping:
    """``item`` with its None key mapped to the only input name; DataError if keys do not fit."""
    keys = list(item.keys())
    if None in keys:
        if len(names) != 1:
            raise DataError(
                f"{where} has an unnamed array but the model has {len(names)} inputs ({', '.join(names)}): "
                "name each array by its input (e.g. an .npz with one key per input)"
            )
        if len(keys) != 1:
            raise DataError(f"{where} mixes an unnamed array with named ones {keys}: name every array")
        return {names[0]: item[None]}
    extra = [k for k in keys if k not in names]
    missing = [n for n in names if n not in item]
    if extra:
        lacks = f" and lacks {', '.join(map(repr, missing))}" if missing else ""
        raise DataError(
            f"{where} has array(s) {', '.join(map(repr, extra))} which are not model inputs "
            f"({', '.join(names)}){lacks}: rename the arrays to the model's input names"
        )
    if missing:
        raise DataError(
            f"{where} lacks model input(s) {', '.join(map(repr, missing))} (it has {', '.join(map(repr, keys))}): "
            "provide an array for every input"
        )
    return item


def _as_feed(item, names: list[str], where: str):
    if isinstance(item, np.ndarray):
        if len(names) != 1:
            raise DataError(
                f"{where} is a single array but the model has {len(names)} inputs ({', '.join(names)}): "
                "give a dict {input name: array} per feed"
            )
        return {names[0]: item}
    if isinstance(item, Mapping):
        feed = _named(item, names, where)
        return dict(feed) if isinstance(feed, Sample) else feed
    raise DataError(f"{where} is a {type(item).__name__}, not a feed: give a numpy array or a dict {{input name: array}}")


def _stack(pending: list, names: list[str], axis: dict[str, bool]) -> tuple[dict, np.ndarray | None]:
    feed = {}
    for n in names:
        first_where, first = pending[0][0], np.asarray(pending[0][1][n])
        if not axis[n]:
            feed[n] = first
            continue
        arrays = [first]
        for where, arrs, _ in pending[1:]:
            a = np.asarray(arrs[n])
            if a.shape != first.shape:
                raise DataError(
                    f"{where} has input {n!r} of shape {list(a.shape)} but {first_where} in the same batch has "
                    f"{list(first.shape)}: samples in a batch must share a shape; resize/crop them alike "
                    "(Preprocess size/crop) or use batch_size=1"
                )
            arrays.append(a)
        feed[n] = np.stack(arrays)
    labels = [lab for _, _, lab in pending]
    return feed, (None if any(lab is None for lab in labels) else np.asarray(labels))


def iter_batches(
    dataset,
    input_names: list[str],
    batch_size: int,
    has_batch_axis: dict[str, bool] | bool = True,
    *,
    with_labels: bool = False,
    progress: bool = False,
) -> Iterator[dict[str, np.ndarray]]:
    """Feeds ``{input_name: array}`` for ONNX Runtime, built from ``dataset``.

    - Samples of a Dataset (no batch axis) are stacked along a new first axis into feeds of up
      to ``batch_size`` samples (the last one smaller). A None key maps to the model's only input.
    - ``has_batch_axis`` (per input name, or one bool for all): False means that model input has
      NO batch axis; the sample is then fed as it is and every feed holds exactly one sample.
    - Complete feeds pass through one per batch, unchanged: NpzFolder samples, and the items of
      any other iterable (a numpy array, mapped to the only input, or a dict of arrays).
    - ``dataset`` may also be anything :func:`open_data` accepts (a path, an array, ...).
    - ``with_labels=True`` yields ``(feed, labels)`` with labels an array (one per stacked
      sample) or None, aligned with the feed even when an ImageFolder skips files.
    - ``progress=True`` shows a tqdm bar if tqdm is installed.

    Raises DataError for keys that do not match ``input_names``, or samples of different shapes
    within one batch. Nothing at all to yield is a DataError too.
    """
    names = [input_names] if isinstance(input_names, str) else list(input_names)
    if not names:
        raise DataError("iter_batches needs the model's input names, got none: pass e.g. ['input']")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise DataError(f"batch_size={batch_size!r} is not valid: give an int >= 1")
    if isinstance(has_batch_axis, Mapping):
        unknown = [k for k in has_batch_axis if k not in names]
        if unknown:
            raise DataError(
                f"has_batch_axis names {', '.join(map(repr, unknown))}, which are not model inputs "
                f"({', '.join(names)}): use the model's input names"
            )
        axis = {n: bool(has_batch_axis.get(n, True)) for n in names}
    else:
        axis = {n: bool(has_batch_axis) for n in names}
    per_feed = int(batch_size) if all(axis.values()) else 1
    data = dataset if isinstance(dataset, Dataset) else open_data(dataset)
    samples_mode = isinstance(data, Dataset) and not data.complete_feeds
    gen = _batches(data, names, per_feed, axis, samples_mode)
    if not with_labels:
        gen = (feed for feed, _ in gen)
    if progress:
        try:
            from tqdm.auto import tqdm
        except ImportError:
            tqdm = None
        if tqdm is not None:
            total = None
            try:
                n = len(data)
                total = math.ceil(n / per_feed) if samples_mode else n
            except TypeError:
                pass
            gen = tqdm(gen, total=total, desc="data", unit="batch")
    return gen


def _batches(data, names, per_feed, axis, samples_mode):
    pending: list = []
    produced = False
    for index, item in enumerate(data):
        complete = item.complete if isinstance(item, Sample) else not samples_mode
        source = item.source if isinstance(item, Sample) else None
        label = item.label if isinstance(item, Sample) else None
        where = _where(index, source)
        if not complete:
            arrays = _named(item if isinstance(item, Mapping) else {None: item}, names, where)
            pending.append((where, arrays, label))
            if len(pending) == per_feed:
                produced = True
                yield _stack(pending, names, axis)
                pending = []
            continue
        if pending:
            yield _stack(pending, names, axis)
            pending = []
        produced = True
        yield _as_feed(item, names, where), (None if label is None else np.atleast_1d(np.asarray(label)))
    if pending:
        produced = True
        yield _stack(pending, names, axis)
    if not produced:
        raise DataError("the data yielded no samples: give at least one sample or feed")


def labels_of(dataset) -> np.ndarray | None:
    """The labels of the samples ``dataset`` yields, in order, or None when it has none.

    For an ImageFolder, images skipped so far (unreadable, on_error="skip") are left out, so
    after a pass the result lines up with what was yielded; ``iter_batches(...,
    with_labels=True)`` gives aligned labels in the same pass.
    """
    labels = getattr(dataset, "labels", None)
    if labels is None or callable(labels):
        return None
    labels = np.asarray(labels)
    if isinstance(dataset, ImageFolder) and dataset._bad:
        keep = np.ones(len(labels), dtype=bool)
        keep[sorted(dataset._bad)] = False
        labels = labels[keep]
    return labels
