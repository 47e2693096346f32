"""Which quantized layers matter most: per-layer sensitivity, measured locally (AMCT) or at the outputs.

* :func:`local_ranking` is AMCT's measure: each layer's output with its own input and weights
  fake-quantized, compared with its float output on the same float input (no upstream error), by
  a :class:`SensitivityBase` (:class:`CosineSimilarity`: ``0.5 + 0.5 cos``, or :class:`MseSensitivity`);
  one session over the local model (:func:`amct_nb.export.build_local`), nothing dumped to disk.
* :func:`output_ranking` measures what a layer does to the model's outputs, on the gated model:
  ``"alone"``, the outputs' SQNR with only that layer quantized; ``"left_out"``, how much the
  outputs' SQNR improves when only that layer goes back to float.

A ranking is a list of ``(layer, score)`` ordered most sensitive first; ``score`` is a similarity
(lower: more sensitive), as AMCT's ranking file holds.
"""

from __future__ import annotations

import math

import numpy as np
import onnx

from ..export import QuantPlan, build_local, units_of
from ..ir import lean_options, make_session
from .metrics import cosine
from .safety import single_samples
from .sensitivity import GatedSession

__all__ = ["SensitivityBase", "CosineSimilarity", "MseSensitivity", "SENSITIVITIES", "local_ranking",
           "output_ranking", "OUTPUT_MODES"]


class SensitivityBase:
    """AMCT's sensitivity interface: ``compare(data, other)`` of a layer's float output ``data`` and
    its quantized output ``other`` gives a number; ``higher_is_similar`` says which way it points."""

    name = "custom"
    higher_is_similar = True

    def compare(self, data: np.ndarray, other: np.ndarray) -> float:
        raise NotImplementedError("a sensitivity implements compare(data, other) -> float")


class CosineSimilarity(SensitivityBase):
    """``0.5 + 0.5 cos(data, other)`` in [0, 1]; 1 when ``data`` is all zero, 0 when only ``other`` is."""

    name = "CosineSimilarity"

    def compare(self, data: np.ndarray, other: np.ndarray) -> float:
        if not np.any(data):
            return 1.0
        if not np.any(other):
            return 0.0
        return 0.5 + 0.5 * cosine(data, other)


class MseSensitivity(SensitivityBase):
    """``||data - other|| / batch`` (optionally of the max-normalized tensors): lower is more similar."""

    name = "MseSensitivity"
    higher_is_similar = False

    def __init__(self, do_normalization: bool = False):
        self.do_normalization = do_normalization

    def compare(self, data: np.ndarray, other: np.ndarray) -> float:
        a, b = data.astype(np.float64), other.astype(np.float64)
        if self.do_normalization:
            top = max(float(np.abs(a).max()), 1e-30)
            a, b = a / top, b / top
        return float(np.linalg.norm(a - b) / max(a.shape[0] if a.ndim else 1, 1))


#: Sensitivities by name (AMCT's ``sensitivity=`` argument).
SENSITIVITIES = {"CosineSimilarity": CosineSimilarity, "MseSensitivity": MseSensitivity}


def _ordered(scores: dict[str, float], higher_is_similar: bool) -> list[tuple[str, float]]:
    """Most sensitive first; scores turned into similarities (lower: more sensitive); ties in graph order."""
    sims = {n: (s if higher_is_similar else -s) for n, s in scores.items()}
    pos = {n: i for i, n in enumerate(scores)}
    return sorted(sims.items(), key=lambda kv: (kv[1], pos[kv[0]]))


def local_ranking(model: onnx.ModelProto, plan: QuantPlan, samples: list[dict],
                  sensitivity: SensitivityBase | None = None) -> list[tuple[str, float]]:
    """AMCT's layer-local ranking over the calibration ``samples`` (the mean of ``compare`` per sample)."""
    sens = sensitivity or CosineSimilarity()
    local, pairs = build_local(model, plan)
    sess = make_session(local, options=lean_options())
    names = [t for pair in pairs.values() for t in pair]
    sums = dict.fromkeys(pairs, 0.0)
    n = 0
    for f in single_samples(samples):
        out = dict(zip(names, sess.run(names, f)))
        for layer, (y, yl) in pairs.items():
            sums[layer] += float(sens.compare(out[y], out[yl]))
        n += 1
    scores = {k: v / max(n, 1) for k, v in sums.items()}
    return _ordered(scores, sens.higher_is_similar)


#: Modes of :func:`output_ranking`.
OUTPUT_MODES = ("alone", "left_out")


def output_ranking(model: onnx.ModelProto, plan: QuantPlan, samples: list[dict],
                   mode: str = "left_out") -> list[tuple[str, float]]:
    """Layers ranked by what they do to the outputs (worst output SQNR over the float outputs, dB).

    ``"alone"``: the SQNR with only the layer quantized (lower: more sensitive). ``"left_out"``: the
    SQNR with every quantization but the layer's, as a similarity its loss (``SQNR(all) - SQNR(all
    but the layer)``: lower, more sensitive). Layer units own their input grid when they alone read it;
    tensor grids of no single layer stay as in the mode's baseline."""
    if mode not in OUTPUT_MODES:
        raise ValueError(f"mode {mode!r}: use one of {', '.join(OUTPUT_MODES)}")
    units = units_of(plan)
    gs = GatedSession(model, plan, units)
    layer_units = [i for i, u in enumerate(units) if u.kind == "layer"]
    if not gs.outputs or not layer_units:
        return [(units[i].name, 0.0) for i in layer_units]
    scores = {}
    if mode == "alone":
        for i in layer_units:
            gates = np.zeros(len(units), np.float32)
            gates[i] = 1
            scores[units[i].name] = gs.output_sqnr(gates, samples)
        return _ordered({k: _finite(v) for k, v in scores.items()}, True)
    ones = np.ones(len(units), np.float32)
    base = _finite(gs.output_sqnr(ones, samples))
    for i in layer_units:
        gates = ones.copy()
        gates[i] = 0
        scores[units[i].name] = base - _finite(gs.output_sqnr(gates, samples))
    return _ordered(scores, True)


def _finite(x: float) -> float:
    return x if math.isfinite(x) else (300.0 if x > 0 else -300.0)
