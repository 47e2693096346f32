"""The state every panel shares: model, data, settings, statistics, results (no widgets here).

A :class:`Session` calls the public engine API (``prepare``, ``collect_stats``, ``build``,
``rebuild``) and
tells listeners what changed (``"config"``, ``"stats"``, ``"result"``, ``"compare"``), so each
panel redraws only on the events it shows. It works without Jupyter::

    s = Session("fmnist-resnet")
    s.calibrate()                     # statistics once, then build
    s.set_layers(["conv1"], quant_enable=False)
    s.build()                         # ranges and models again, no re-observation
    s.compare()                       # original vs fake-quant: top-k, agreement, per-layer error
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

import amct_nb as an
from amct_nb import zoo
from amct_nb.analysis import Comparer, Comparison
from amct_nb.auto import AutoCalibration, loss_within, top1_evaluator
from amct_nb.auto import search as auto_search
from amct_nb.config import QuantConfig
from amct_nb.errors import ConfigError, DataError
from amct_nb.ptq import needs_channel_moments, range_spec
from amct_nb.quant import RangeSpec, range_errors

__all__ = ["Session", "EVENTS"]

#: What a session announces to its listeners.
EVENTS = ("config", "stats", "result", "compare", "progress", "errors", "auto_trial", "auto")


def _as_images(x: np.ndarray) -> np.ndarray:
    """Displayable images (N, H, W) or (N, H, W, 3) in [0, 1] from NCHW/NHWC model input."""
    x = np.asarray(x, np.float32)
    if x.ndim == 4 and x.shape[1] in (1, 3) and x.shape[-1] not in (1, 3):
        x = np.moveaxis(x, 1, -1)
    if x.ndim == 4 and x.shape[-1] == 1:
        x = x[..., 0]
    lo = x.reshape(len(x), -1).min(axis=1).reshape((-1,) + (1,) * (x.ndim - 1))
    hi = x.reshape(len(x), -1).max(axis=1).reshape((-1,) + (1,) * (x.ndim - 1))
    return (x - lo) / np.maximum(hi - lo, 1e-12)


class Session:
    """Model, data, config, statistics and results of one quantization, with change events.

    ``model``: a zoo name (``"fmnist-resnet"``), a :class:`amct_nb.zoo.ZooModel`, a path, bytes,
    an ``onnx.ModelProto``, an :class:`amct_nb.Prepared`, or a finished :class:`amct_nb.QuantResult`
    (a converted QAT model, say: the panels show it, calibration data then only feeds the
    histograms, and its numbers are not rebuilt). With a zoo model, calibration and evaluation
    data, classes and display images default to the zoo's.
    ``eval_data``: ``(x, labels)`` (labels may be None) for the comparison.
    """

    def __init__(self, model, calibration_data=None, eval_data=None, classes=None, images=None,
                 config: QuantConfig | None = None, error_samples: int = 16):
        self.zoo_model = None
        given = model if isinstance(model, an.QuantResult) else None
        if given is not None:
            model, config = given.prepared, config or given.config
        if isinstance(model, str) and model in zoo.available():
            model = zoo.load(model)
        if isinstance(model, zoo.ZooModel):
            self.zoo_model = model
            classes = classes if classes is not None else model.classes
            if calibration_data is None:
                calibration_data = model.calibration_data(100)
            if eval_data is None:
                eval_data = model.test_data(100)
                if images is None:
                    images = model.test_images(100)
            model = str(model.path)
        self.prepared = model if isinstance(model, an.Prepared) else an.prepare(model, config)
        self.calibration_data = calibration_data
        self.eval_data = eval_data
        self.classes = list(classes) if classes is not None else None
        self._images = images
        self.config = (config or QuantConfig()).copy().validate([l.name for l in self.prepared.layers])
        self.error_samples = error_samples
        self.stats: dict | None = None
        self.result: an.QuantResult | None = None
        self.comparison: Comparison | None = None
        self.auto: AutoCalibration | None = None
        self.timings: dict[str, float] = {}
        self._listeners: dict[str, list] = {e: [] for e in EVENTS}
        self._lock = threading.RLock()
        self._errors_cache: dict = {}
        self._comparer: Comparer | None = None
        self.last_build_fast = False
        #: True when the result was given (not built here): it is shown, never rebuilt
        self.given_result = given is not None
        self.result = given

    # -- events -----------------------------------------------------------------------
    def on(self, event: str, fn) -> None:
        """Call ``fn(session)`` after ``event`` (one of :data:`EVENTS`)."""
        if event not in self._listeners:
            raise ValueError(f"unknown event '{event}': use one of {', '.join(EVENTS)}")
        self._listeners[event].append(fn)

    def emit(self, event: str, *args) -> None:
        for fn in list(self._listeners[event]):
            fn(self, *args)

    # -- model facts ------------------------------------------------------------------
    @property
    def layers(self):
        """Every layer of a registered op type (quantizable or not, with the reason)."""
        return self.prepared.layers

    @property
    def quantizable(self):
        return [l for l in self.prepared.layers if l.quantizable]

    def layer(self, name: str):
        return self.prepared.layer(name)

    def weight(self, name: str) -> np.ndarray | None:
        """The float weight of a layer (after BatchNorm folding)."""
        l = self.layer(name)
        for t in self.prepared.model.graph.initializer:
            if t.name == l.weight:
                return numpy_helper.to_array(t)
        return None

    def channel_axis(self, name: str) -> int | None:
        """The weight axis of the layer's output channels (from the op registry)."""
        return self.layer(name).channel_axis

    def planned(self, name: str) -> str:
        """The layer's setting in words ("int8 mse per-channel", "float: reason")."""
        l = self.layer(name)
        if self.result is not None and name in self.result.activation_matmuls:
            return "int8 inputs and output (MatMul between activations: QLinearMatMul)"
        if not l.quantizable:
            wo = " (int8 weights only)" if self.result is not None and name in self.result.weight_only_layers else ""
            return f"float{wo}: {l.reason}"
        lc = self.config.for_layer(name, l.op_type)
        if not lc.quant_enable:
            return "float (skipped)"
        if self.result is not None and name in self.result.float_layers:
            wo = " (int8 weights only)" if name in self.result.weight_only_layers else ""
            return f"float{wo}: {self.result.float_layers[name]}"
        gran = "per-channel" if lc.channel_wise else "per-tensor"
        if lc.nuq:
            lq = self.result.plan.layers.get(name) if self.result is not None else None
            if lq is not None and not lq.codebook:  # the output check sent it back to uniform
                return f"int8 {lc.act_algo} {gran} (NUQ {lc.num_steps} -> uniform: output check)"
            used = f", {len(set(lq.w_q.reshape(-1).tolist()))} levels used" if lq is not None else ""
            return f"int8 NUQ {lc.num_steps}{used} {lc.act_algo} {gran}"
        return f"int{lc.wts_bits} {lc.act_algo} {gran}"

    # -- settings ---------------------------------------------------------------------
    def set_layers(self, names, **changes) -> None:
        """Change settings of layers (a name or a list), e.g. ``quant_enable=False``."""
        if isinstance(names, str):
            names = [names]
        known = {l.name for l in self.quantizable}
        bad = [n for n in names if n not in known]
        if bad:
            raise ConfigError(
                f"not a quantizable layer of this model: {', '.join(bad[:3])}: pick names from the layer table"
            )
        with self._lock:
            self.config.set(list(names), **changes)
        self.emit("config")

    def set_config(self, cfg: QuantConfig) -> None:
        self.config = cfg.copy().validate([l.name for l in self.prepared.layers])
        self.emit("config")

    def config_json(self) -> str:
        """config.json in AMCT's format (every quantizable layer listed)."""
        return self.config.to_json(self.prepared.layers)

    def export_config(self, path) -> Path:
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(self.config_json())
        return p

    def import_config(self, source) -> None:
        """Settings from a config.json: a path, JSON text, bytes or a dict."""
        if isinstance(source, dict):
            d = source
        elif isinstance(source, (bytes, bytearray)):
            d = json.loads(source.decode())
        elif isinstance(source, str) and source.lstrip().startswith("{"):
            d = json.loads(source)
        else:
            return self.set_config(QuantConfig.load(source))
        self.set_config(QuantConfig.from_amct_dict(d))

    # -- calibration and build --------------------------------------------------------
    def calibrate(self, cancel: threading.Event | None = None, on_batch=None, build: bool = True):
        """Collect statistics once (cancellable), then build; returns the statistics."""
        if self.calibration_data is None:
            raise DataError("no calibration data: pass calibration_data= to the Workbench")
        t0 = time.perf_counter()

        def progress(seen, total):
            if on_batch is not None:
                on_batch(seen, total)
            self.emit("progress", seen, total)

        stats = an.collect_stats(self.prepared, self.calibration_data, progress=False, cancel=cancel, on_batch=progress,
                                 channel_moments=needs_channel_moments(self.config, self.quantizable))
        with self._lock:
            self.stats = stats
            if not self.given_result:
                self.result = None
            self._errors_cache.clear()
        self.timings["observe"] = time.perf_counter() - t0
        self.emit("stats")
        if build and not self.given_result:
            self.build()
        return stats

    def build(self) -> an.QuantResult:
        """Ranges, record and models from the statistics with the current config."""
        if self.given_result:
            raise DataError("this session shows a result made elsewhere (e.g. a converted QAT model), whose numbers "
                            "are not rebuilt here: convert again with other options, or open the float model in a new "
                            "Workbench to calibrate it")
        if self.stats is None:
            raise DataError("no statistics yet: calibrate first (the Calibrate button or session.calibrate())")
        if self._needs_moments():  # a layer turned to NUQ after calibration: one more pass, with the moments
            self.calibrate(build=False)
        t0 = time.perf_counter()
        with self._lock:
            cfg = self.config.copy()
            prev = self.result
            if prev is not None and prev.stats is self.stats:
                res, self.last_build_fast = an.rebuild(prev, cfg)
            else:
                res, self.last_build_fast = an.build(self.prepared, cfg, self.stats), False
            self.result = res
        self.timings["build"] = time.perf_counter() - t0
        self.emit("result")
        return res

    def _needs_moments(self) -> bool:
        """Whether a layer's input lacks the per-channel moments its NUQ weights or its bias correction need
        (and data can give them)."""
        if self.calibration_data is None or not needs_channel_moments(self.config, self.quantizable):
            return False
        return any((self.config.for_layer(l.name, l.op_type).nuq or (self.config.bias_correction and l.bias))
                   and l.activation in self.stats and self.stats[l.activation].channel_moments() is None
                   for l in self.quantizable)

    def warm_range_errors(self, background: bool = True):
        """Compute every layer's range errors ahead of time (a thread by default), so that
        switching the histogram's layer only draws; emits ``"errors"`` when done."""
        stats = self.stats

        def work():
            for l in self.quantizable:
                if self.stats is not stats:
                    return  # re-calibrated meanwhile
                self.range_errors(l.name)
            self.emit("errors")

        if not background:
            return work()
        t = threading.Thread(target=work, daemon=True, name="amct-nb range errors")
        t.start()
        return t

    # -- per-layer views --------------------------------------------------------------
    def range_spec(self, name: str) -> RangeSpec:
        """The range settings the config gives the layer's input."""
        l = self.layer(name)
        return range_spec(self.config, self.config.for_layer(name, l.op_type))

    def range_errors(self, name: str) -> dict:
        """Each range algorithm's range, clipped share and expected error on the layer's input."""
        if self.stats is None:
            raise DataError("no statistics yet: calibrate first")
        l = self.layer(name)
        spec = self.range_spec(name)
        key = (l.activation, spec)
        if key not in self._errors_cache:
            self._errors_cache[key] = range_errors(self.stats[l.activation], spec)
        return self._errors_cache[key]

    def clear_range_errors(self) -> None:
        """Forget the computed range errors (they are recomputed on demand)."""
        self._errors_cache.clear()

    def clipped_share(self, name: str) -> float | None:
        """The share of the layer's input values its chosen range clips, when the range errors were
        already computed (:meth:`range_errors`, :meth:`warm_range_errors`); None otherwise."""
        l = self.layer(name)
        if self.stats is None or not l.quantizable:
            return None
        errors = self._errors_cache.get((l.activation, self.range_spec(name)))
        return None if errors is None else errors[self.config.for_layer(name, l.op_type).act_algo]["clipped"]

    def chosen_range(self, name: str) -> tuple[float, float] | None:
        """The grid range ``[(qmin - zp) * s, (qmax - zp) * s]`` the result uses for the layer's input."""
        if self.result is None:
            return None
        tq = self.result.plan.tensors.get(self.layer(name).activation)
        return None if tq is None else (tq.lo, tq.hi)

    def weight_ranges(self, name: str) -> dict | None:
        """Per output channel: min and max of the float weight, and the int8 grid limit."""
        w = self.weight(name)
        if w is None:
            return None
        axis = self.channel_axis(name)
        if axis is None:
            axis = 0
        wc = np.moveaxis(w, axis, 0).reshape(w.shape[axis], -1)
        out = {"min": wc.min(axis=1), "max": wc.max(axis=1), "grid": None}
        if self.result is not None and name in self.result.plan.layers:
            lq = self.result.plan.layers[name]
            qmax = 2 ** (lq.weight_bits - 1) - 1
            out["grid"] = np.broadcast_to(np.asarray(lq.w_scale, np.float64).reshape(-1) * qmax, (wc.shape[0],))
        return out

    def sparkline(self, name: str, bins: int = 24) -> list[float]:
        """A short list of log-scaled histogram heights (0..1) of the layer's input, for tables."""
        if self.stats is None:
            return []
        st = self.stats.get(self.layer(name).activation)
        if st is None or st.empty:
            return []
        h = st.histogram()
        c = h.counts
        idx = np.minimum((np.arange(len(c)) * bins) // max(len(c), 1), bins - 1)
        agg = np.log1p(np.bincount(idx, weights=c, minlength=bins))
        top = agg.max()
        return [round(float(v / top), 3) if top > 0 else 0.0 for v in agg]

    # -- comparison -------------------------------------------------------------------
    def eval_arrays(self):
        if self.eval_data is None:
            raise DataError("no evaluation data: pass eval_data=(x, labels) to the Workbench")
        if isinstance(self.eval_data, tuple):
            x, labels = self.eval_data
        else:
            x, labels = self.eval_data, None
        return np.asarray(x, np.float32), None if labels is None else np.asarray(labels)

    def images(self, n: int) -> np.ndarray:
        """Images to show next to predictions (the given ones, else the rescaled inputs)."""
        if self._images is not None:
            imgs = np.asarray(self._images[:n])
            return imgs.astype(np.float32) / 255.0 if imgs.dtype == np.uint8 else imgs
        return _as_images(self.eval_arrays()[0][:n])

    def compare(self) -> Comparison:
        """Original vs fake-quant on the evaluation data: top-k, agreement, per-layer error."""
        if self.result is None:
            self.build()
        x, labels = self.eval_arrays()
        t0 = time.perf_counter()
        with self._lock:
            if self._comparer is None:
                self._comparer = Comparer(self.prepared, x, labels, error_samples=self.error_samples)
            self.comparison = self._comparer.run(self.result)
        self.timings["compare"] = time.perf_counter() - t0
        self.emit("compare")
        return self.comparison

    def auto_calibrate(self, max_loss: float = 0.005, evaluate=None, *, metric_eval=None, strategy=None,
                       sensitivity=None, evaluate_on: str = "deploy") -> AutoCalibration:
        """Accuracy-based auto calibration on this session's statistics (calibrating first if needed):
        ``evaluate(model_proto) -> float`` (default: top-1 on ``eval_data``, which then needs labels).
        Emits ``"auto_trial"`` after each evaluated config and ``"auto"`` at the end; the final config
        and result become the session's."""
        if self.given_result:
            raise DataError("this session shows a result made elsewhere (e.g. a converted QAT model): auto calibration "
                            "searches over calibrations of a float model: open that model in a new Workbench")
        if self.stats is None:
            self.calibrate(build=False)
        if evaluate is None:
            x, labels = self.eval_arrays()
            if labels is None:
                raise DataError("auto calibration needs a metric: pass eval_data=(x, labels) to the Workbench, or "
                                "evaluate=your_function(model) -> float")
            evaluate = top1_evaluator(x, labels)
        me = metric_eval or loss_within(max_loss)
        self.auto = None

        def score(res):
            if res is None:
                return evaluate(self.prepared.original)
            return evaluate(res.deploy_model if evaluate_on == "deploy" else res.fake_quant_model)

        t0 = time.perf_counter()
        outcome = auto_search(self.prepared, self.stats, score, me, self.config, strategy=strategy,
                              sensitivity=sensitivity, progress=False, on_trial=lambda t: self.emit("auto_trial", t))
        with self._lock:
            self.auto = outcome
            self.config = outcome.config.copy()
            self.result = outcome.result
        self.timings["auto"] = time.perf_counter() - t0
        self.emit("config")
        self.emit("result")
        self.emit("auto")
        return outcome

    def skip_and_rescore(self, name: str) -> Comparison:
        """Turn one layer off, rebuild from the same statistics and compare again."""
        t0 = time.perf_counter()
        self.set_layers([name], quant_enable=False)
        self.build()
        c = self.compare()
        self.timings["skip_and_rescore"] = time.perf_counter() - t0
        return c

    def model_file(self, which: str = "original") -> onnx.ModelProto:
        """``original``, ``prepared``, ``fake_quant`` or ``deploy`` as a ModelProto."""
        if which == "original":
            return self.prepared.original
        if which == "prepared":
            return self.prepared.model
        if self.result is None:
            raise DataError(f"no {which} model yet: calibrate first")
        return {"fake_quant": self.result.fake_quant_model, "deploy": self.result.deploy_model}[which]
