"""Samples and datasets: the sized, indexable iterables every data source of amct-nb is.

A dataset is a sized iterable of :class:`Sample` objects. A sample is a dict
``{input_name_or_None: array}`` holding ONE sample without a batch axis (``None`` stands for
"the model's only input"), plus ``label`` and ``source`` attributes.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import numpy as np

from ..errors import DataError

__all__ = ["Sample", "Dataset", "ArrayDataset", "Head"]


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

    def __init__(
        self, arrays: Mapping[str | None, np.ndarray] | np.ndarray, labels=None, *, _where: str = "the arrays"
    ):
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


class Head(Dataset):
    """The first ``n`` samples of another dataset (and their labels)."""

    def __init__(self, data: Dataset, n: int):
        self.data, self.n = data, int(n)
        self.complete_feeds = data.complete_feeds

    def __len__(self) -> int:
        return min(self.n, len(self.data))

    def _sample(self, i: int) -> Sample:
        return self.data[i]

    @property
    def labels(self) -> np.ndarray | None:
        lab = self.data.labels
        return None if lab is None else lab[: len(self)]
