"""The auto calibration loop: evaluate, rank, roll layers back to float as a strategy says, keep the best.

    result = amct_nb.auto.auto_calibrate("model.onnx", calibration_data, evaluate, max_loss=0.005)
    result.save("outputs/auto", prefix="model")

One observation pass (no activation dumps on disk); every tried config is built from the same
statistics (:func:`amct_nb.ptq.rebuild`), evaluated with the user's function, and kept in the history.
The safety net's tensor check stays on; its output check is off, since the metric decides.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import onnx

from ..analysis import SENSITIVITIES, SensitivityBase, local_ranking, output_ranking
from ..config import QuantConfig
from ..errors import AmctError, Cancelled, ConfigError
from ..ir import ModelLike
from ..ptq import Observation, Prepared, QuantResult, build, collect_stats, needs_channel_moments, prepare, rebuild
from .strategy import STRATEGIES, AutoCalibrationStrategyBase, RecoveringSearch

__all__ = ["auto_calibrate", "search", "Trial", "AutoCalibration", "AutoCalibrationError", "loss_within",
           "DEFAULT_SENSITIVITY"]

log = logging.getLogger("amct_nb")

#: The default sensitivity: the model outputs' SQNR with only the layer quantized (measured against AMCT's
#: layer-local cosine and a leave-one-out variant on EfficientNet-Lite0: benchmarks/AUTO.md).
DEFAULT_SENSITIVITY = "output"


class AutoCalibrationError(AmctError):
    """The search could not finish (no config met the target, or the evaluator failed);
    ``history`` holds the configs tried so far."""

    def __init__(self, message: str, history: list | None = None, layers: list | None = None):
        super().__init__(message)
        self.history = list(history or [])
        self.layers = list(layers or [])


@dataclass
class Trial:
    """One evaluated config: the layers rolled back to float, the metric, and the verdict."""

    index: int
    float_layers: list[str]
    metric: float
    passed: bool
    loss: float
    seconds: float = 0.0
    evaluated: bool = True  # False for the all-float config, whose metric is the original's

    def as_dict(self, layers: list[str]) -> dict:
        """AMCT's history entry: ``roll_back_config`` {layer: quantized?} and ``metric_eval`` [passed, loss]."""
        return {"roll_back_config": {n: n not in self.float_layers for n in layers},
                "metric_eval": [self.passed, self.loss], "metric": self.metric}


@dataclass
class AutoCalibration:
    """The outcome: the final result (None when nothing could stay int8), the history and the ranking."""

    original_metric: float
    trials: list[Trial]
    ranking: list[tuple[str, float]]
    layers: list[str]
    strategy: str
    sensitivity: str
    result: QuantResult | None
    config: QuantConfig
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def evaluations(self) -> int:
        """Calls of the evaluation function, the original model's included."""
        return sum(t.evaluated for t in self.trials) + 1

    @property
    def final(self) -> Trial | None:
        passing = [t for t in self.trials if t.passed]
        if self.result is None or not passing:
            return None
        fl = set(self.float_layers)
        return next((t for t in passing if set(t.float_layers) == fl), passing[-1])

    @property
    def float_layers(self) -> list[str]:
        """Layers the search rolled back to float in the final config."""
        return [n for n in self.layers if not self.config.for_layer(n).quant_enable]

    def history_json(self) -> str:
        """AMCT's ``accuracy_based_auto_calibration_record.json``: one JSON object per tried config."""
        return "".join(json.dumps(t.as_dict(self.layers), indent=4) + "\n" for t in self.trials)

    def ranking_json(self) -> str:
        """AMCT's ranking file: ``[[layer, similarity], ...]``, most sensitive first."""
        return json.dumps([[n, float(s)] for n, s in self.ranking], indent=4) + "\n"

    def save(self, outdir, prefix: str | None = None, compact: bool = False) -> dict:
        """The final result's AMCT files (see QuantResult.save), plus the search's own:
        ``amct_log/accuracy_based_auto_calibration_record.json``, ``..._final_config.json`` and
        ``..._ranking_information.json``."""
        from ..ir import atomic_write_text
        if self.result is None:
            raise AutoCalibrationError("no config kept any layer int8 within the target, so there is no model to "
                                       "save: loosen the target", self.trials)
        paths = self.result.save(outdir, prefix, compact=compact)
        out = paths["deploy"].parent
        extra = {"history": out / "amct_log" / "accuracy_based_auto_calibration_record.json",
                 "final_config": out / "accuracy_based_auto_calibration_final_config.json",
                 "ranking": out / "accuracy_based_auto_calibration_ranking_information.json"}
        atomic_write_text(extra["history"], self.history_json())
        atomic_write_text(extra["final_config"], self.config.to_json(self.result.prepared.layers))
        atomic_write_text(extra["ranking"], self.ranking_json())
        return {**paths, **extra}


def loss_within(max_loss: float) -> Callable[[float, float], tuple[bool, float]]:
    """``metric_eval`` for "higher is better" metrics: passes when ``original - new <= max_loss``."""
    if not (isinstance(max_loss, (int, float)) and math.isfinite(max_loss) and max_loss >= 0):
        raise ConfigError(f"max_loss {max_loss!r} must be a number >= 0 (e.g. 0.005 for half a point of top-1)")

    def metric_eval(original: float, new: float) -> tuple[bool, float]:
        loss = float(original) - float(new)
        return loss <= max_loss, loss

    return metric_eval


def _number(x, what: str) -> float:
    try:
        v = float(x)
    except (TypeError, ValueError):
        raise AutoCalibrationError(f"{what} returned {type(x).__name__} {x!r}, not a number: return one scalar metric "
                                   "(e.g. top-1 accuracy)") from None
    if not math.isfinite(v):
        raise AutoCalibrationError(f"{what} returned {v}: return a finite number")
    return v


def _verdict(metric_eval, original: float, new: float) -> tuple[bool, float]:
    try:
        r = metric_eval(original, new)
        passed, loss = r
        return bool(passed), float(loss)
    except AutoCalibrationError:
        raise
    except Exception as e:
        raise AutoCalibrationError(f"metric_eval({original!r}, {new!r}) failed ({type(e).__name__}: {e}): it must "
                                   "return (passed: bool, loss: float)") from e


def _strategy(strategy) -> AutoCalibrationStrategyBase:
    if strategy is None:
        return RecoveringSearch()
    if isinstance(strategy, str):
        if strategy not in STRATEGIES:
            raise ConfigError(f"strategy {strategy!r} is unknown: use one of {', '.join(STRATEGIES)} or an "
                              "AutoCalibrationStrategyBase subclass instance")
        return STRATEGIES[strategy]()
    for m in ("initialize", "update_quant_config"):
        if not callable(getattr(strategy, m, None)):
            raise ConfigError(f"the strategy {type(strategy).__name__} has no {m}(): subclass "
                              "AutoCalibrationStrategyBase")
    return strategy


def _rank(prepared: Prepared, result: QuantResult, obs: Observation, sensitivity) -> tuple[list, str]:
    plan, samples = result.plan, obs.samples
    if not samples:
        raise AutoCalibrationError("no calibration samples were kept to rank the layers: calibrate with "
                                   "amct_nb.collect_stats (or InferenceSession) first")
    if sensitivity is None or sensitivity == DEFAULT_SENSITIVITY:
        return output_ranking(prepared.model, plan, samples, "alone"), "output"
    if sensitivity == "output_left_out":
        return output_ranking(prepared.model, plan, samples, "left_out"), "output (left out)"
    if isinstance(sensitivity, str):
        if sensitivity not in SENSITIVITIES:
            raise ConfigError(f"sensitivity {sensitivity!r} is unknown: use {DEFAULT_SENSITIVITY!r}, "
                              f"'output_left_out', {', '.join(SENSITIVITIES)} or a SensitivityBase subclass instance")
        sensitivity = SENSITIVITIES[sensitivity]()
    if not callable(getattr(sensitivity, "compare", None)):
        raise ConfigError(f"the sensitivity {type(sensitivity).__name__} has no compare(): subclass SensitivityBase")
    name = getattr(sensitivity, "name", type(sensitivity).__name__)
    return local_ranking(prepared.model, plan, samples, sensitivity), f"{name} (layer-local)"


def search(prepared: Prepared, obs: Observation, evaluate: Callable[[QuantResult | None], float],
           metric_eval: Callable[[float, float], tuple[bool, float]], config: QuantConfig | None = None, *,
           strategy=None, sensitivity: str | SensitivityBase | None = None, progress: bool = True,
           on_trial: Callable[[Trial], None] | None = None) -> AutoCalibration:
    """The search on a prepared model and its statistics. ``evaluate(result)`` scores a QuantResult
    (``None``: the float model); ``metric_eval(original, new) -> (passed, loss)``."""
    t0 = time.perf_counter()
    strat = _strategy(strategy)
    base = (config or QuantConfig()).copy().validate([l.name for l in prepared.layers])
    base.min_output_sqnr_db = None  # the metric decides, not the output SQNR
    original = _number(_run(evaluate, None, "evaluate() on the original model", []), "evaluate() on the original model")
    ok, _ = _verdict(metric_eval, original, original)
    if not ok:
        raise AutoCalibrationError(f"metric_eval({original}, {original}) says the original model fails its own target: "
                                   "metric_eval must pass when nothing changed (check its comparison)")
    trials: list[Trial] = []
    layers: list[str] = []
    bar = _bar(progress)
    try:
        first = build(prepared, base, obs)
        layers = list(first.plan.layers)  # the search rolls back what the plain build quantizes

        def trial(res: QuantResult, float_layers: list[str]) -> Trial:
            t1 = time.perf_counter()
            m = _number(_run(evaluate, res, f"evaluate() on config {len(trials) + 1}", trials), "evaluate()")
            passed, loss = _verdict(metric_eval, original, m)
            t = Trial(len(trials) + 1, float_layers, m, passed, loss, time.perf_counter() - t1)
            trials.append(t)
            log.info("auto calibration: config %d, %d float layer(s): metric %.6g, loss %.6g, %s", t.index,
                     len(float_layers), m, loss, "passed" if passed else "failed")
            if bar is not None:
                bar.update(1)
                bar.set_postfix(float_layers=len(float_layers), loss=f"{loss:.4g}")
            if on_trial is not None:
                on_trial(t)
            return t

        last = trial(first, [])
        ranking, sens_name = ([], "none") if last.passed else _rank(prepared, first, obs, sensitivity)
        strat.initialize({n: s for n, s in ranking} if ranking else {n: 0.0 for n in layers})
        results = {(): first}
        while True:
            upd = strat.update_quant_config((last.passed, last.loss))
            fl = tuple(sorted((n for n, q in upd["roll_back_config"].items() if not q), key=layers.index))
            if upd.get("stop_flag"):
                break
            cfg = base.copy().set(list(fl), quant_enable=False) if fl else base.copy()
            if len(fl) >= len(layers):  # everything rolled back: the float model, known without evaluating
                last = Trial(len(trials) + 1, list(fl), original, True, 0.0, evaluated=False)
                trials.append(last)
                continue
            seen = next((t for t in trials if tuple(t.float_layers) == fl), None)
            if seen is not None:  # asked again: the verdict is known, no second evaluation
                last = seen
                continue
            res = rebuild(first, cfg)[0]  # turning layers off `first`: no re-observation
            results[fl] = res
            last = trial(res, list(fl))
    except KeyboardInterrupt:
        err = Cancelled(f"auto calibration interrupted after {len(trials)} evaluation(s); nothing was written")
        err.history, err.layers = trials, layers
        raise err from None
    except AutoCalibrationError as e:
        e.history, e.layers = e.history or trials, e.layers or layers
        raise
    finally:
        if bar is not None:
            bar.close()
    final_cfg = base.copy().set(list(fl), quant_enable=False) if fl else base.copy()
    done = AutoCalibration(original, trials, ranking, layers, strat.name if hasattr(strat, "name") else
                           type(strat).__name__, sens_name, None, final_cfg, time.perf_counter() - t0)
    if len(fl) >= len(layers):
        raise AutoCalibrationError(
            f"no config met the target: even rolling back {max((len(t.float_layers) for t in trials), default=0)} "
            f"of {len(layers)} layers to float lost "
            f"{min((t.loss for t in trials if t.float_layers), default=math.nan):.6g}: loosen the target "
            "(a larger max_loss) or improve calibration", trials, layers)
    res = results.get(fl)
    if res is None:  # a custom strategy stopped on a config it never had evaluated
        res = rebuild(first, final_cfg)[0]
        trial(res, list(fl))
    done.result = res
    return done


def _run(evaluate, arg, what: str, history: list):
    try:
        return evaluate(arg)
    except (KeyboardInterrupt, Cancelled, AutoCalibrationError):
        raise
    except Exception as e:
        raise AutoCalibrationError(f"{what} raised {type(e).__name__}: {e}; the {len(history)} config(s) evaluated "
                                   "before are in this error's history, nothing was written", history) from e


def _bar(progress: bool):
    if not progress:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm(desc="auto calibration", unit="eval", leave=False)


def auto_calibrate(model: ModelLike | Prepared, calibration_data, evaluate: Callable[[onnx.ModelProto], float], *,
                   max_loss: float | None = None, metric_eval=None, config: QuantConfig | None = None,
                   strategy=None, sensitivity=None, evaluate_on: str = "deploy", progress: bool = True,
                   on_trial=None) -> AutoCalibration:
    """The most int8 layers that keep ``evaluate`` within ``max_loss`` of the float model.

    ``evaluate(model_proto) -> float`` scores a model (higher is better) on the user's own data; it
    gets the float model first, then the ``evaluate_on`` model (``"deploy"``: the int8 QDQ model
    ONNX Runtime runs, or ``"fake_quant"``) of each config tried. ``max_loss`` (e.g. 0.005 for half
    a point of top-1) or a custom ``metric_eval(original, new) -> (passed, loss)``. ``strategy``:
    None (the default, :class:`~amct_nb.auto.strategy.RecoveringSearch`), ``"BinarySearch"``
    (AMCT's) or an instance; ``sensitivity``: None (at the outputs), ``"CosineSimilarity"`` (AMCT's,
    layer-local) or an instance. Returns the final result with the search history."""
    if (max_loss is None) == (metric_eval is None):
        raise ConfigError("give the accuracy target as max_loss=... (original - new) or as metric_eval=, one of them")
    me = metric_eval or loss_within(max_loss)
    if evaluate_on not in ("deploy", "fake_quant"):
        raise ConfigError(f"evaluate_on {evaluate_on!r}: use 'deploy' or 'fake_quant'")
    if not callable(evaluate):
        raise ConfigError("evaluate must be a function model -> metric (a float, higher is better)")
    cfg = (config or QuantConfig()).copy()
    prepared = model if isinstance(model, Prepared) else prepare(model, cfg)
    obs = collect_stats(prepared, calibration_data, progress=progress,
                        channel_moments=needs_channel_moments(cfg, prepared.layers))

    def score(res: QuantResult | None) -> float:
        if res is None:
            return evaluate(prepared.original)
        return evaluate(res.deploy_model if evaluate_on == "deploy" else res.fake_quant_model)

    return search(prepared, obs, score, me, cfg, strategy=strategy, sensitivity=sensitivity, progress=progress,
                  on_trial=on_trial)


def top1_evaluator(x: np.ndarray, labels: np.ndarray, batch: int = 64) -> Callable[[onnx.ModelProto], float]:
    """``evaluate`` for classifiers: top-1 accuracy of a single-input model on ``x`` with ``labels``."""
    from ..ir import make_session

    x = np.asarray(x)
    labels = np.asarray(labels)

    def evaluate(model: onnx.ModelProto) -> float:
        s = make_session(model)
        name = s.get_inputs()[0].name
        pred = np.concatenate([s.run(None, {name: x[i:i + batch]})[0].argmax(-1) for i in range(0, len(x), batch)])
        return float((pred == labels).mean())

    return evaluate
