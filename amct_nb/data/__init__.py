"""Calibration and evaluation data: datasets per format, preprocessing presets, batching into feeds.

A dataset is a sized iterable of :class:`Sample` objects (one sample, no batch axis, plus
``label`` and ``source``); :func:`iter_batches` stacks samples into feeds ``{input_name: array}``
for ONNX Runtime, :func:`open_data` is the one place that tells what a path or object holds, and
:func:`as_feeds` / :func:`check_feed` turn calibration data into checked feeds for a model.
Datasets load lazily: image folders decode on iteration, ``.npy``, IDX, CIFAR-10 and uncompressed
``.npz`` files are memory-mapped, so memory stays bounded by one batch, not by the data set.

Only numpy is needed at import; Pillow is imported when images are read, tqdm (optional) when a
progress bar is asked for.
"""

from .base import ArrayDataset, Dataset, Head, Sample
from .batching import iter_batches, labels_of, name_arrays
from .binary import CIFAR10_CLASSES, Cifar10Binary, IDXDataset
from .feeds import as_feeds, check_feed, rebatch
from .images import IMAGE_EXTENSIONS, ImageFolder
from .npfiles import NpyDataset, NpzDataset, NpzFolder
from .open import open_data
from .preprocess import PRESETS, Preprocess, preset

__all__ = [
    "Sample", "Preprocess", "PRESETS", "preset", "Dataset", "ArrayDataset", "Head", "ImageFolder", "IDXDataset",
    "Cifar10Binary", "NpyDataset", "NpzDataset", "NpzFolder", "open_data", "iter_batches", "labels_of",
    "IMAGE_EXTENSIONS", "CIFAR10_CLASSES", "as_feeds", "check_feed", "rebatch", "name_arrays",
]
