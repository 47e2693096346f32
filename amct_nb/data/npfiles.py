"""numpy files: a .npy array, a .npz of arrays (one per input), a folder of .npz feeds."""

from __future__ import annotations

import math
import struct
import zipfile
from pathlib import Path

import numpy as np

from ..errors import DataError
from .base import ArrayDataset, Dataset, Sample

__all__ = ["NpyDataset", "NpzDataset", "NpzFolder"]


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
        self.files = sorted((p for p in self.path.iterdir() if p.suffix.lower() == ".npz" and p.is_file()),
                            key=lambda p: p.name)
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
