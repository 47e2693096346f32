"""AMCT's ``accuracy_based_auto_calibration`` and its evaluator base class, on amct-nb's search.

    class Evaluator(amct.AutoCalibrationEvaluatorBase):
        def calibration(self, model_file):           # run batch_num batches through the modified model
            sess = amct.InferenceSession(model_file)
            for x in batches: sess.run(None, {"input": x})
        def evaluate(self, model_file):              # one number, higher is better
            return top1(model_file)
        def metric_eval(self, original_metric, new_metric):
            return original_metric - new_metric <= 0.005, original_metric - new_metric

    amct.accuracy_based_auto_calibration("model.onnx", Evaluator(), "tmp/config.json", "tmp/record.txt",
                                         "results/model")

Differences from AMCT, all on the user's side: calibration runs once (the statistics of that one
pass serve every tried config; no activations are dumped to disk); the user's config file is never
rewritten (the final config goes beside it); when ``strategy`` / ``sensitivity`` are left out,
amct-nb's default search runs (``strategy="BinarySearch", sensitivity="CosineSimilarity"`` is AMCT's).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from ..auto import AutoCalibration, AutoCalibrationError, search
from ..config import QuantConfig
from ..errors import Cancelled, ConfigError
from ..ir import atomic_write_text, save_model_file
from ..ptq import Observation, fusion_info_of, prepare
from .session import capture_sessions

__all__ = ["AutoCalibrationEvaluatorBase", "accuracy_based_auto_calibration", "HISTORY_FILE", "FINAL_CONFIG_FILE",
           "RANKING_FILE"]

HISTORY_FILE = "accuracy_based_auto_calibration_record.json"
FINAL_CONFIG_FILE = "accuracy_based_auto_calibration_final_config.json"
RANKING_FILE = "accuracy_based_auto_calibration_ranking_information.json"


class AutoCalibrationEvaluatorBase:
    """AMCT's evaluator interface: subclass it and implement the three methods."""

    def calibration(self, model_file: str) -> None:
        """Run ``batch_num`` calibration batches through the modified model ``model_file`` with
        :class:`amct_nb.amct.InferenceSession`."""
        raise NotImplementedError("implement calibration(model_file): run calibration batches through "
                                  "amct_nb.amct.InferenceSession(model_file)")

    def evaluate(self, model_file: str) -> float:
        """The metric (higher is better) of the ONNX model at ``model_file``."""
        raise NotImplementedError("implement evaluate(model_file) -> float")

    def metric_eval(self, original_metric: float, new_metric: float) -> tuple[bool, float]:
        """(whether the loss is acceptable, the loss)."""
        raise NotImplementedError("implement metric_eval(original_metric, new_metric) -> (passed, loss)")


def _check_evaluator(ev) -> None:
    for m in ("calibration", "evaluate", "metric_eval"):
        fn = getattr(ev, m, None)
        base = getattr(AutoCalibrationEvaluatorBase, m)
        if not callable(fn) or getattr(fn, "__func__", None) is base:
            raise ConfigError(f"the model_evaluator ({type(ev).__name__}) has no {m}() of its own: subclass "
                              f"amct_nb.amct.AutoCalibrationEvaluatorBase and implement calibration, evaluate and "
                              "metric_eval")


def _observation(sessions) -> Observation:
    used = [s for s in sessions if s.batches]
    if not used:
        raise AutoCalibrationError(
            "model_evaluator.calibration(modified_model) ran no batch through amct_nb.amct.InferenceSession: open the "
            "modified model with amct_nb.amct.InferenceSession(model_file) (not ort.InferenceSession with AMCT_SO) and "
            "run the calibration batches through it")
    obs = used[0].observation()
    for s in used[1:]:  # several sessions: their statistics merge exactly
        for name, st in s.observation().stats.items():
            obs.stats[name].merge(st)
    return obs


def accuracy_based_auto_calibration(model_file, model_evaluator, config_file, record_file, save_dir, strategy=None,
                                    sensitivity=None) -> AutoCalibration:
    """AMCT's accuracy-based automatic calibration (see the module docstring).

    Writes ``<save_dir>_fake_quant_model.onnx``, ``<save_dir>_deploy_model.onnx``,
    ``<save_dir>_quant.json``, the record to ``record_file``, the final config beside
    ``config_file`` (``accuracy_based_auto_calibration_final_config.json``), the ranking beside the
    models (``..._ranking_information.json``) and the history to
    ``amct_log/accuracy_based_auto_calibration_record.json`` (in the current folder, as AMCT does;
    written even when the search fails). Returns the search's outcome."""
    _check_evaluator(model_evaluator)
    cfg = QuantConfig.load(config_file)
    prefix = Path(save_dir)
    history_file = Path("amct_log") / HISTORY_FILE
    work = Path(tempfile.mkdtemp(prefix="amct-nb-auto-"))  # the modified model and the models evaluated
    outcome = None
    try:
        from . import quantize_model  # (amct/__init__.py imports this module)

        modified = work / "modified_model.onnx"
        quantize_model(config_file, model_file, modified, work / "record.txt")
        with capture_sessions() as sessions:
            model_evaluator.calibration(str(modified))
        obs = _observation(sessions)
        prepared = prepare(model_file, cfg)
        count = [0]

        def score(res) -> float:
            if res is None:
                return model_evaluator.evaluate(str(model_file))
            count[0] += 1
            path = work / f"config{count[0]}_fake_quant_model.onnx"
            save_model_file(res.fake_quant_model, path)
            try:
                return model_evaluator.evaluate(str(path))
            finally:
                path.unlink(missing_ok=True)

        outcome = search(prepared, obs, score, model_evaluator.metric_eval, cfg, strategy=strategy,
                         sensitivity=sensitivity)
    except (AutoCalibrationError, Cancelled) as e:
        history = getattr(e, "history", None)
        if history:
            layers = getattr(e, "layers", None) or _layers(history)
            atomic_write_text(history_file, AutoCalibration(0.0, history, [], layers, "", "", None, cfg).history_json())
        raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    res = outcome.result
    atomic_write_text(history_file, outcome.history_json())
    save_model_file(res.fake_quant_model, Path(f"{prefix}_fake_quant_model.onnx"))
    save_model_file(res.deploy_model, Path(f"{prefix}_deploy_model.onnx"))
    atomic_write_text(Path(f"{prefix}_quant.json"), json.dumps(fusion_info_of(prepared), indent=2) + "\n")
    atomic_write_text(record_file, res.record.to_text())
    atomic_write_text(Path(config_file).parent / FINAL_CONFIG_FILE, outcome.config.to_json(prepared.layers))
    atomic_write_text(prefix.parent / RANKING_FILE, outcome.ranking_json())
    return outcome


def _layers(history) -> list[str]:
    seen: dict[str, None] = {}
    for t in history:
        seen.update(dict.fromkeys(t.float_layers))
    return list(seen)
