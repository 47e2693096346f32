"""Re-run the notebooks in place so their stored outputs match the code (``python notebooks/refresh.py``).

Outputs stay in the files so they read well on GitHub and in nbconvert (each panel stores a
static HTML form next to the widget); the widget state nbconvert adds to the metadata is dropped
(it only duplicates those forms and triples the file size). Run from any directory.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from nbconvert.preprocessors import ExecutePreprocessor

HERE = Path(__file__).resolve().parent


def refresh(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    ExecutePreprocessor(timeout=600, kernel_name="python3").preprocess(nb, {"metadata": {"path": str(HERE)}})
    nb.metadata.pop("widgets", None)
    nbformat.write(nb, path)
    print(f"refreshed {path.name}")


if __name__ == "__main__":
    for p in sys.argv[1:] or sorted(HERE.glob("[0-9]*.ipynb")):
        refresh(Path(p).resolve())
