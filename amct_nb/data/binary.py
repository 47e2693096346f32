"""Binary image datasets: MNIST-family IDX files (raw or .gz) and CIFAR-10 batches, memory-mapped."""

from __future__ import annotations

import gzip
import math
import struct
import zlib
from pathlib import Path

import numpy as np

from ..errors import DataError
from .base import Dataset, Sample
from .preprocess import PreprocessLike, as_preprocess

__all__ = ["IDXDataset", "Cifar10Binary", "CIFAR10_CLASSES"]

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


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
        self.preprocess = as_preprocess(preprocess)
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
        self.preprocess = as_preprocess(preprocess)
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
