"""Feeds for a model: calibration data checked against the model's inputs, and re-batched.

:func:`as_feeds` turns anything a user passes as calibration data into an iterable of feeds,
:func:`check_feed` validates one feed (names, dtype, shape, finite values) with a message that
names the problem and the fix, :func:`rebatch` concatenates per-sample feeds into larger runs.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping

import numpy as np

from ..errors import DataError
from ..ir import InputSpec
from .base import Dataset
from .batching import iter_batches, name_arrays
from .open import open_data

__all__ = ["check_feed", "as_feeds", "rebatch"]


def check_feed(feed, specs: list[InputSpec], index: int) -> dict[str, np.ndarray]:
    """Return ``feed`` as a dict of arrays, or raise DataError naming the problem and the fix."""
    feed = name_arrays(feed, [s.name for s in specs], f"calibration sample {index}")
    out = {}
    for spec in specs:
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

    Accepted: anything :func:`amct_nb.data.open_data` accepts (a path, a numpy array or dict of
    arrays whose first axis is samples, a dataset) and an iterable of feeds (array or dict per
    feed, each a complete model input).
    """
    if isinstance(data, (str, bytes)) or hasattr(data, "__fspath__") or isinstance(data, np.ndarray) or (
            isinstance(data, Mapping) and all(isinstance(v, np.ndarray) for v in data.values())):
        data = open_data(data)
    if isinstance(data, Dataset):
        return iter_batches(data, [s.name for s in specs], batch_size,
                            has_batch_axis={s.name: s.has_batch_axis for s in specs})
    if hasattr(data, "__iter__") and not isinstance(data, Mapping):
        return data
    raise DataError(
        f"calibration data of type {type(data).__name__} is not supported: pass an iterable of feeds, "
        "a numpy array (first axis = samples), an .npy/.npz file or a folder"
    )


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
        if buf and (n + k > target or any(feed[s].shape[1:] != buf[0][s].shape[1:] for s in feed)):
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
