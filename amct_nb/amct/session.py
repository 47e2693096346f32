"""AMCT's calibration session: an ONNX Runtime session over the modified model that records statistics."""

from __future__ import annotations

import json
from contextlib import contextmanager

import onnx

from ..config import QuantConfig
from ..data import check_feed
from ..errors import ModelError
from ..ir import atomic_write_text, input_specs, load_model, make_session, with_outputs
from ..ops import find_layers
from ..ptq import Observation, Prepared, record_from_stats
from ..ptq.pipeline import bias_check_of
from ..quant import TensorStats, resolve_guard

__all__ = ["InferenceSession", "modified_metadata", "capture_sessions", "KEEP_SAMPLES"]

#: Calibration samples a session keeps for the safety net and sensitivity measurements.
KEEP_SAMPLES = 8
_SINKS: list[list] = []


@contextmanager
def capture_sessions():
    """Collect the InferenceSessions created inside the block (in a list), e.g. the ones a user's
    ``evaluator.calibration(modified_model)`` opens, so their statistics can be used afterwards."""
    sink: list = []
    _SINKS.append(sink)
    try:
        yield sink
    finally:
        _SINKS.remove(sink)


def modified_metadata(model: onnx.ModelProto, where) -> dict:
    """The metadata amct_nb.amct.quantize_model wrote into a modified model (ModelError if none)."""
    props = {x.key: x.value for x in model.metadata_props}
    if props.get("amct_nb.kind") != "modified":
        raise ModelError(
            f"{where} is not a modified model written by amct_nb.amct.quantize_model: run quantize_model first"
        )
    return props


class InferenceSession:
    """ONNX Runtime session over a modified model that collects calibration statistics.

    Use it where AMCT used ``ort.InferenceSession(modified_model, amct.AMCT_SO)``. ``run``
    returns the model's normal outputs; after ``batch_num`` runs (from the config) the record
    file is written, as AMCT's calibration ops do.
    """

    def __init__(self, modified_onnx_file, sess_options=None, providers=None, **kwargs):
        self._model = load_model(modified_onnx_file)
        self._meta = modified_metadata(self._model, modified_onnx_file)
        self._tensors = json.loads(self._meta["amct_nb.observe"])
        self._outputs = [o.name for o in self._model.graph.output]
        self._session = make_session(with_outputs(self._model, self._tensors), options=sess_options)
        cfg = QuantConfig.load(self._meta["amct_nb.config_file"])
        layers = [l for l in find_layers(self._model) if l.quantizable]
        # non-uniform weights and bias correction use per-channel moments of their layers' inputs
        inputs = {l.activation for l in layers if cfg.for_layer(l.name, l.op_type).nuq
                  or (cfg.bias_correction and l.bias is not None)}
        self._stats = {t: TensorStats(t, channels=t in inputs) for t in self._tensors}
        self._specs = input_specs(self._model)
        self.batch_num = int(self._meta.get("amct_nb.batch_num", "1"))
        self.batches = 0
        self.samples: list[dict] = []  # the first calibration feeds (KEEP_SAMPLES samples at most)
        self._kept = 0
        for sink in _SINKS:
            sink.append(self)

    def get_inputs(self):
        return self._session.get_inputs()

    def get_outputs(self):
        return [o for o in self._session.get_outputs() if o.name in self._outputs]

    def run(self, output_names, input_feed, run_options=None):
        feed = check_feed(input_feed, self._specs, self.batches)
        names = list(output_names) if output_names else self._outputs
        if self.batches >= self.batch_num:
            return self._session.run(names, feed, run_options)
        res = self._session.run(names + self._tensors, feed, run_options)
        n = next(iter(feed.values())).shape[0] if self._specs and self._specs[0].batch_dynamic else 1
        if self._kept < KEEP_SAMPLES:
            take = min(n, KEEP_SAMPLES - self._kept)
            self.samples.append({k: (v[:take] if v.ndim and v.shape[0] == n and take < n else v).copy()
                                 for k, v in feed.items()})
            self._kept += take
        for t, v in zip(self._tensors, res[len(names):]):
            self._stats[t].update(v, samples=n)
        self.batches += 1
        if self.batches == self.batch_num:
            self._write_record()
        return res[: len(names)]

    def observation(self) -> Observation:
        """What the calibration batches showed: statistics and the first samples."""
        return Observation(dict(self._stats), list(self.samples))

    def _write_record(self):
        cfg = QuantConfig.load(self._meta["amct_nb.config_file"])
        guard, _ = resolve_guard(cfg.saturation_guard)
        obs = self.observation()
        layers = find_layers(self._model)
        if cfg.safety_net and cfg.bias_correction and obs.samples:  # as quantize() decides it (and its record)
            _, _, rec = bias_check_of(Prepared(self._model, self._model, layers, [], None), cfg, obs, guard)
        else:
            rec, _, _ = record_from_stats(self._model, layers, cfg, obs, guard)
        atomic_write_text(self._meta["amct_nb.record_file"], rec.to_text())
