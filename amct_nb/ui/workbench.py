"""Workbench: the six panels over one session, top to bottom in the order of the work."""

from __future__ import annotations

import html

from .auto_panel import AutoCalibrationPanel
from .panels import CalibratePanel, ComparePanel, HistogramPanel, ModelPanel, Panel, SettingsPanel, as_session

__all__ = ["Workbench"]


class Workbench(Panel):
    """Load a model, calibrate, look at histograms, pick per-layer settings, compare.

    ``Workbench("fmnist-resnet")`` uses the zoo's data; for your own model pass
    ``calibration_data`` (array, dict of arrays, iterable of feeds or a path, as for
    :func:`amct_nb.collect_stats`), ``eval_data=(x, labels)`` and ``classes``. ``images``: what
    to show next to predictions (default: the rescaled inputs). A :class:`Session` is accepted
    in place of the model. Clicking a layer's name in the table shows its histogram.
    ``evaluate(model_proto) -> float``: the metric of the auto calibration panel (default: top-1
    on ``eval_data``).
    """

    heading = "amct-nb workbench"

    def __init__(self, model, calibration_data=None, eval_data=None, classes=None, images=None, config=None,
                 error_samples: int = 16, evaluate=None):
        s = as_session(model, calibration_data=calibration_data, eval_data=eval_data, classes=classes, images=images,
                       config=config, error_samples=error_samples)
        self.model_panel = ModelPanel(s)
        self.calibrate_panel = CalibratePanel(s)
        self.histogram_panel = HistogramPanel(s)
        self.settings_panel = SettingsPanel(s)
        self.compare_panel = ComparePanel(s)
        self.auto_panel = AutoCalibrationPanel(s, evaluate=evaluate)
        self.panels = [self.model_panel, self.calibrate_panel, self.histogram_panel, self.settings_panel,
                       self.compare_panel, self.auto_panel]
        super().__init__(s, self.panels)
        self.header.value = f"<h2 class='amct-panel-title'>amct-nb workbench: {html.escape(s.prepared.name)}</h2>"
        self.settings_panel.table.observe(self.guarded(self._follow), names="active")
        s.on("result", lambda *_: s.warm_range_errors())

    def _follow(self, change) -> None:
        name = change["new"]
        if name in {l.name for l in self.session.quantizable}:
            self.histogram_panel.select(name)

    # shortcuts for notebooks and scripts
    @property
    def config(self):
        return self.session.config

    @property
    def result(self):
        return self.session.result

    @property
    def comparison(self):
        return self.session.comparison

    def calibrate(self, wait: bool = True):
        """Calibrate (in the foreground by default; ``wait=False``: in a thread, like the button)."""
        if wait:
            self.calibrate_panel.run()
            return self.session.result
        return self.calibrate_panel.start()

    def compare(self, wait: bool = True):
        return self.compare_panel.compare(wait=wait)

    def skip(self, name: str, wait: bool = True):
        return self.compare_panel.skip(name, wait=wait)

    def auto_calibrate(self, max_loss: float = 0.005, wait: bool = True, **kwargs):
        """Accuracy-based auto calibration (see :meth:`Session.auto_calibrate`); the layer table then
        shows the final config."""
        if wait:
            return self.session.auto_calibrate(max_loss, self.auto_panel.evaluate, **kwargs)
        return self.auto_panel.run(wait=False)

    def static_html(self) -> str:
        return "".join(f"<h3>{html.escape(p.heading)}</h3>{p.static_html()}" for p in self.panels)
