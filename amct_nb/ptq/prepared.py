"""Load, validate and prepare a model for quantization: the prepare passes, then its layers."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import onnx

from ..config import QuantConfig
from ..ir import ModelLike, byte_size, clone, fit_ir_version, is_large, load_model, without_large_data
from ..ops import OPS, Layer, find_layers
from ..passes import (
    Change,
    constants_to_initializers,
    fold_batchnorm,
    fold_weight_chains,
    infer_shapes,
    name_nodes,
    remove_noops,
    unshare_weights,
    upgrade_opset,
)

__all__ = ["Prepared", "prepare", "prepare_passes"]

log = logging.getLogger("amct_nb")


@dataclass
class Prepared:
    """A loaded, validated and prepared (BN-folded) model with its quantizable layers."""

    original: onnx.ModelProto
    model: onnx.ModelProto
    layers: list[Layer]
    changes: list[Change] = field(default_factory=list)
    source: str | None = None
    #: serialized size of the user's model (for a model over 2 GB, ``original`` keeps no weights)
    original_bytes: int = 0
    #: weight quantizations of earlier builds (see amct_nb.ptq.weights), so a rebuild redoes only what changed
    weight_cache: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def name(self) -> str:
        return Path(self.source).stem if self.source else (self.original.graph.name or "model")

    @property
    def notes(self) -> list[str]:
        """What preparation changed, in words."""
        return [c.text for c in self.changes]

    def layer(self, name: str) -> Layer:
        for l in self.layers:
            if l.name == name:
                return l
        raise KeyError(name)


def prepare_passes(cfg: QuantConfig) -> list[Callable[[onnx.ModelProto], tuple[onnx.ModelProto, list[Change]]]]:
    """The passes that prepare a model, in order: unique node names, opset >= 13, Constant weights
    as initializers, shape ops on constants computed, no-op nodes removed, shared weights copied per layer,
    BatchNorm folded (``do_fusion``), shapes inferred."""
    steps = [name_nodes, upgrade_opset, constants_to_initializers, fold_weight_chains, remove_noops,
             partial(unshare_weights, weight_inputs={k: (s.weight_index, s.bias_index) for k, s in OPS.items()})]
    if cfg.do_fusion:
        steps.append(partial(fold_batchnorm, skip_layers=cfg.skip_fusion_layers))
    steps.append(infer_shapes)
    return steps


def prepare(model: ModelLike, config: QuantConfig | None = None) -> Prepared:
    """Load, validate and prepare ``model`` (a path, bytes or ModelProto; never modified) with
    :func:`prepare_passes`, and find its layers."""
    cfg = config or QuantConfig()
    source = str(model) if isinstance(model, (str, os.PathLike)) else None
    original = load_model(model)  # our own copy: the passes return it unchanged when they change nothing
    m, changes = original, []
    for step in prepare_passes(cfg):
        m, c = step(m)
        changes += c
    original_bytes = byte_size(original)
    if is_large(original):  # one copy of the weights in memory is enough: keep the original's graph only
        original = without_large_data(original)  # a light copy: the full one goes unless it is ``m``
        changes.append(Change("large_model", "model over 2 GB: its weights are kept once in memory (the original's "
                                             "graph is kept without them)"))
    elif m is original:  # no pass changed anything: the prepared model is edited below, the original is kept
        m = clone(original)
    fit_ir_version(m)
    layers = find_layers(m)
    for c in changes:
        log.info("prepare: %s", c.text)
    return Prepared(original, m, layers, changes, source, original_bytes)
