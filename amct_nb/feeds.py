"""Model input specs, validation of calibration feeds, and re-batching of per-sample feeds."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Iterator

import numpy as np
import onnx
from onnx import helper

from .errors import DataError

__all__ = ["InputSpec", "input_specs", "check_feed", "as_feeds", "rebatch"]


@dataclass(frozen=True)
class InputSpec:
    name: str
    dtype: np.dtype
    shape: tuple  # ints for fixed dims, None for symbolic/unknown ones

    @property
    def batch_dynamic(self) -> bool:
        return len(self.shape) > 0 and self.shape[0] is None

    def describe(self) -> str:
        return f"{self.name}: {self.dtype} [{', '.join('?' if d is None else str(d) for d in self.shape)}]"


def input_specs(model: onnx.ModelProto) -> list[InputSpec]:
    inits = {t.name for t in model.graph.initializer}
    specs = []
    for vi in model.graph.input:
        if vi.name in inits:
            continue
        tt = vi.type.tensor_type
        dtype = np.dtype(helper.tensor_dtype_to_np_dtype(tt.elem_type)) if tt.elem_type else np.dtype(np.float32)
        shape = tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in tt.shape.dim)
        specs.append(InputSpec(vi.name, dtype, shape))
    return specs


def check_feed(feed, specs: list[InputSpec], index: int) -> dict[str, np.ndarray]:
    """Return ``feed`` as a dict of arrays, or raise DataError naming the problem and the fix."""
    names = [s.name for s in specs]
    if isinstance(feed, np.ndarray) or not isinstance(feed, dict):
        if len(specs) != 1:
            raise DataError(
                f"calibration sample {index} is a single array but the model has {len(specs)} inputs "
                f"({', '.join(names)}): give a dict {{input name: array}} per sample (or an .npz with one array per input)"
            )
        try:
            feed = {names[0]: np.asarray(feed)}
        except Exception as e:
            raise DataError(f"calibration sample {index} is not an array ({type(feed).__name__}): give numpy arrays") from e
    out = {}
    for key in feed:
        if key not in names:
            raise DataError(
                f"calibration sample {index} has input '{key}' but the model's inputs are {', '.join(names)}: "
                "rename the array (npz key / dict key) to the model's input name"
            )
    for spec in specs:
        if spec.name not in feed:
            raise DataError(
                f"calibration sample {index} has no value for model input '{spec.name}' "
                f"(it has: {', '.join(map(str, feed)) or 'nothing'}): provide every input ({', '.join(names)})"
            )
        arr = np.asarray(feed[spec.name])
        if arr.dtype != spec.dtype:
            raise DataError(
                f"model input '{spec.name}' expects {spec.dtype} but calibration sample {index} is {arr.dtype}: "
                f"convert the data (array.astype(np.{spec.dtype}))"
            )
        if spec.shape and arr.ndim != len(spec.shape):
            hint = " (add the batch axis: array[None])" if arr.ndim == len(spec.shape) - 1 else ""
            raise DataError(
                f"model input '{spec.name}' expects rank {len(spec.shape)} ({spec.describe()}) but calibration "
                f"sample {index} has shape {tuple(arr.shape)}{hint}: reshape the data to the model's input"
            )
        for axis, (want, got) in enumerate(zip(spec.shape, arr.shape)):
            if want is not None and want != got:
                raise DataError(
                    f"model input '{spec.name}' ({spec.describe()}) needs size {want} on axis {axis} but "
                    f"calibration sample {index} has {got} (shape {tuple(arr.shape)}): resize/crop or reshape the data"
                )
        if arr.dtype.kind == "f" and arr.size and not np.isfinite(arr).all():
            bad = "NaN" if np.isnan(arr).any() else "Inf"
            raise DataError(
                f"calibration sample {index} input '{spec.name}' contains {bad} values: clean the data "
                "(calibration needs real, finite inputs)"
            )
        out[spec.name] = arr
    return out


def as_feeds(data, specs: list[InputSpec], batch_size: int = 1) -> Iterable:
    """Turn what a user passes as calibration data into an iterable of feeds.

    Accepted: an iterable of feeds (array or dict per feed, each a complete model input),
    an ``np.ndarray`` whose first axis is samples (single-input models), a dict of such arrays,
    a path (``.npy``, ``.npz``, a folder of images or of ``.npz`` files), or an amct_nb.data dataset.
    """
    from . import data as _data

    if isinstance(data, (str, bytes)) or hasattr(data, "__fspath__"):
        data = _data.open_data(data)
    if isinstance(data, np.ndarray) or (isinstance(data, dict) and all(isinstance(v, np.ndarray) for v in data.values())):
        arrays = data if isinstance(data, dict) else {None: data}
        data = _data.ArrayDataset(arrays)
    if isinstance(data, _data.Dataset):
        return _data.iter_batches(data, [s.name for s in specs], batch_size,
                                  has_batch_axis={s.name: _has_batch_axis(s) for s in specs})
    if hasattr(data, "__iter__") and not isinstance(data, dict):
        return data
    raise DataError(
        f"calibration data of type {type(data).__name__} is not supported: pass an iterable of feeds, "
        "a numpy array (first axis = samples), an .npy/.npz file or a folder"
    )


def _has_batch_axis(spec: InputSpec) -> bool:
    """Whether samples need a batch axis added: inputs with a dynamic or size-1 first axis."""
    return bool(spec.shape) and (spec.shape[0] is None or spec.shape[0] == 1)


def rebatch(feeds: Iterator[dict], specs: list[InputSpec], target: int) -> Iterator[dict]:
    """Concatenate consecutive feeds along axis 0 into feeds of up to ``target`` samples.

    Only for models whose every input has a dynamic first axis; feeds of differing trailing
    shapes are never merged. Other models get their feeds unchanged.
    """
    if target <= 1 or not specs or not all(s.batch_dynamic for s in specs):
        yield from feeds
        return
    buf: list[dict] = []
    n = 0
    for feed in feeds:
        k = next(iter(feed.values())).shape[0]
        if buf and (
            n + k > target
            or any(feed[s].shape[1:] != buf[0][s].shape[1:] for s in feed)
        ):
            yield _cat(buf)
            buf, n = [], 0
        buf.append(feed)
        n += k
    if buf:
        yield _cat(buf)


def _cat(buf: list[dict]) -> dict:
    if len(buf) == 1:
        return buf[0]
    return {k: np.concatenate([f[k] for f in buf], axis=0) for k in buf[0]}
