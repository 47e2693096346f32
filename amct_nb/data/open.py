"""One place that turns what a user passes as data (a path, arrays, a dataset) into a dataset."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

from ..errors import DataError
from .base import ArrayDataset, Dataset, Head
from .binary import Cifar10Binary, IDXDataset
from .images import ImageFolder, has_images
from .npfiles import NpyDataset, NpzDataset, NpzFolder
from .preprocess import PreprocessLike

__all__ = ["open_data", "ACCEPTED"]

ACCEPTED = (
    "accepted: a folder of images (class sub-folders, a labels.csv, or neither), a folder of .npz files "
    "(one feed each), a .npy or .npz file, an MNIST-style IDX file (.idx / *-ubyte, raw or .gz), "
    "a CIFAR-10 binary folder (cifar-10-batches-bin) or .bin file, a numpy array or dict of arrays "
    "(first axis = samples), or an iterable of feeds"
)


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


def open_data(spec, preprocess: PreprocessLike = None, *, limit: int | None = None, **kwargs):
    """A dataset for ``spec``; extra keyword arguments go to the dataset's constructor.

    ``spec`` may be a path: a folder of images (-> ImageFolder, needs ``preprocess``), a folder of
    ``.npz`` files (-> NpzFolder), a CIFAR-10 binary folder or ``.bin`` file (-> Cifar10Binary),
    a ``.npy`` (-> NpyDataset) or ``.npz`` (-> NpzDataset) file, an IDX file named ``*.idx``,
    ``*-ubyte`` or ``*.gz`` (-> IDXDataset; ``x-images-idx3-ubyte`` finds ``x-labels-idx1-ubyte``
    beside it unless ``labels_path=`` is given). A Dataset is returned as is; a numpy array or a
    dict of arrays becomes an ArrayDataset (first axis = samples); any other iterable (e.g. a
    list or generator of feeds) is returned unchanged. ``limit``: only the first ``limit`` samples
    (an image folder then decodes no more than those).
    """
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, (int, np.integer)) or limit < 1):
        raise DataError(f"limit={limit!r} is not valid: give an int >= 1, or None for all samples")
    if isinstance(spec, Dataset):
        if preprocess is not None or kwargs:
            raise DataError(f"{spec!r} already is a dataset: set preprocess and options when creating it")
        data = spec
    elif isinstance(spec, (str, os.PathLike)):
        data = _open_path(Path(spec), preprocess, kwargs, limit)
        if isinstance(data, ImageFolder):  # it took the limit itself: it decodes no more images than that
            return data
    elif isinstance(spec, np.ndarray) or (
        isinstance(spec, Mapping) and all(isinstance(v, np.ndarray) for v in spec.values())
    ):
        if preprocess is not None:
            raise DataError("arrays are fed as they are: preprocess applies to images only; drop preprocess=")
        data = ArrayDataset(spec, **kwargs)
    elif isinstance(spec, Iterable) and not isinstance(spec, (bytes, Mapping)):
        if preprocess is not None or kwargs:
            raise DataError(
                f"a {type(spec).__name__} of feeds is used as it is: preprocess and options apply to paths only"
            )
        return spec if limit is None else itertools.islice(spec, limit)
    else:
        raise DataError(f"cannot use a {type(spec).__name__} as data; {ACCEPTED}")
    return data if limit is None or limit >= len(data) else Head(data, limit)


def _open_path(path: Path, preprocess, kwargs: dict, limit: int | None):
    if not path.exists():
        raise DataError(f"data path {path} does not exist (relative paths start at {os.getcwd()}): check the path")
    if path.is_dir():
        if _is_cifar_dir(path):
            return Cifar10Binary(path, preprocess=preprocess, **kwargs)
        has_npz = any(p.suffix.lower() == ".npz" and p.is_file() for p in path.iterdir())
        has_img = has_images(path)
        if has_npz and has_img:
            raise DataError(
                f"{path} holds both images and .npz files, so it is unclear which to use: move one kind elsewhere"
            )
        if has_img:
            return ImageFolder(path, preprocess, **({"limit": limit} if limit is not None else {}), **kwargs)
        if has_npz:
            _no_preprocess(preprocess, path)
            return NpzFolder(path, **kwargs)
        raise DataError(f"{path} holds no data amct-nb can read; {ACCEPTED}")
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
    raise DataError(f"{path}: unknown data file type {path.suffix or '(no extension)'!r}; {ACCEPTED}")
