"""Batching samples into model feeds ``{input_name: array}``, and the labels that go with them."""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping

import numpy as np

from ..errors import DataError
from .base import Dataset, Sample
from .images import ImageFolder
from .open import open_data

__all__ = ["iter_batches", "labels_of", "name_arrays"]


def _where(index: int, source) -> str:
    return f"sample {index}" + (f" ({source})" if source else "")


def name_arrays(item, names: list[str], where: str) -> dict:
    """``item`` (one array, or a dict of arrays whose None key means the only input) as a dict
    ``{input name: array}``; a DataError that names the problem and the fix when its keys do not
    match the model's inputs ``names``."""
    if not isinstance(item, Mapping):
        if len(names) != 1:
            raise DataError(
                f"{where} is a single array but the model has {len(names)} inputs ({', '.join(names)}): "
                "give a dict {input name: array} per sample (or an .npz with one array per input)"
            )
        return {names[0]: item}
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
            f"{where} has input(s) {', '.join(map(repr, extra))} which are not model inputs "
            f"({', '.join(names)}){lacks}: rename the arrays to the model's input names"
        )
    if missing:
        raise DataError(
            f"{where} lacks model input(s) {', '.join(map(repr, missing))} "
            f"(it has {', '.join(map(repr, keys)) or 'nothing'}): "
            f"provide an array for every input ({', '.join(names)})"
        )
    return item if type(item) is dict else dict(item)  # a Sample (or other mapping) becomes a plain feed


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
            arrays = name_arrays(item, names, where)
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
        yield name_arrays(item, names, where), (None if label is None else np.atleast_1d(np.asarray(label)))
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
