"""Folders of images, decoded and preprocessed on iteration, labelled by sub-folder or labels.csv."""

from __future__ import annotations

import csv
import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ..errors import DataError
from .base import Dataset, Sample
from .preprocess import PRESETS, PreprocessLike, as_preprocess, pil

__all__ = ["ImageFolder", "IMAGE_EXTENSIONS", "has_images"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".pbm")


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


def has_images(folder: Path) -> bool:
    """Whether ``folder`` (or a sub-folder) holds an image file."""
    return next(_walk_images(folder, IMAGE_EXTENSIONS), None) is not None


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
            raise DataError(
                f"image folder {self.root} does not exist: check the path (relative paths start at {os.getcwd()})"
            )
        if not self.root.is_dir():
            raise DataError(f"{self.root} is a file, not a folder of images: pass the folder that holds the images")
        if preprocess is None:
            raise DataError(
                f"images in {self.root} need a preprocess to become model inputs: in Python pass "
                f"preprocess=preset('imagenet') (presets: {', '.join(sorted(PRESETS))}) or a Preprocess(...); on "
                "the command line add --preset NAME or --size/--crop/--scale/--mean/--std"
            )
        self.preprocess = as_preprocess(preprocess)
        if on_error not in ("skip", "raise"):
            raise DataError(f"on_error={on_error!r} is not valid: use 'skip' or 'raise'")
        self.on_error = on_error
        self.extensions = _norm_extensions(extensions)
        pil()  # fail early, not once per image, when Pillow is missing
        mode = labels
        if mode == "auto":
            if (self.root / "labels.csv").is_file():
                mode = "csv"
            elif any(p.is_dir() and not p.name.startswith(".") and has_images(p) for p in self.root.iterdir()):
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
            raise DataError(
                f"labels='csv' but {csv_path} does not exist: add it (columns file,class_index) or use labels='auto'"
            )
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
                        f"{csv_path} line {line} names {name!r} which is not in {self.root}: "
                        "fix the file or remove the line"
                    )
                if name in seen:
                    raise DataError(
                        f"{csv_path} line {line} names {name!r} again (first on line {seen[name]}): "
                        "remove the duplicate"
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
        Image = pil()
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
