"""Mark a written model as amct-nb's: producer, version and kind in its metadata."""

from __future__ import annotations

import onnx

from .._version import __version__
from ..ir import set_metadata

__all__ = ["stamp"]


def stamp(model: onnx.ModelProto, kind: str) -> None:
    """``amct_nb.kind`` (``deploy``, ``fake_quant``...) and ``amct_nb.version`` in the metadata
    (earlier ``amct_nb.*`` entries dropped), producer amct-nb."""
    set_metadata(model, {"amct_nb.kind": kind, "amct_nb.version": __version__}, drop_prefix="amct_nb.")
    model.producer_name = "amct-nb"
    model.producer_version = __version__
