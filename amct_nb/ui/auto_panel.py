"""The auto calibration panel: run the accuracy-driven search, watch each config, keep the result.

Shows the sensitivity ranking as a bar chart, each tried config as a table row (float layers,
metric, passed), the metric against the number of float layers, and puts the final config in the
session, so the layer table (the settings panel) shows it and the compare panel scores it.
"""

from __future__ import annotations

import html

import ipywidgets as widgets

from . import figures, tables
from .panels import Panel, as_session

__all__ = ["AutoCalibrationPanel"]


class AutoCalibrationPanel(Panel):
    """Target, strategy and ranking; Run (in a thread); the search as it goes and its result.

    ``evaluate(model_proto) -> float`` scores a model (default: top-1 on the session's labelled
    evaluation data)."""

    heading = "6. Auto calibration"

    def __init__(self, model, evaluate=None, **kwargs):
        s = as_session(model, **kwargs)
        self.evaluate = evaluate
        self.max_loss = widgets.BoundedFloatText(value=0.5, min=0.0, max=100.0, step=0.1,
                                                 description="max loss (pt)", layout=widgets.Layout(width="220px"))
        self.strategy = widgets.Dropdown(options=[("Recovering (default)", None),
                                                  ("BinarySearch (AMCT)", "BinarySearch")],
                                         description="search", layout=widgets.Layout(width="260px"))
        self.sensitivity = widgets.Dropdown(options=[("at the outputs (default)", None),
                                                     ("layer cosine (AMCT)", "CosineSimilarity")],
                                            description="ranking", layout=widgets.Layout(width="280px"))
        self.run_button = widgets.Button(description="Search", button_style="primary", icon="search")
        self.trials = widgets.HTML("")
        self.chart = widgets.Image(format="png", layout=widgets.Layout(max_width="900px"))
        self.chart.add_class("amct-auto-chart")
        self._png = b""
        self._live: list = []
        super().__init__(s, [widgets.HBox([self.max_loss, self.strategy, self.sensitivity, self.run_button]),
                             self.trials, self.chart])
        self.run_button.on_click(self.guarded(lambda _: self.run(wait=False)))
        s.on("auto_trial", lambda _s, t: self._on_trial(t))
        s.on("auto", lambda *_: self.guarded(self.draw)())
        self.draw()

    def _on_trial(self, t) -> None:
        self._live.append(t)
        self.say(f"config {t.index}: {len(t.float_layers)} float layer(s), metric {t.metric:.4f}, "
                 f"{'passed' if t.passed else 'failed'}", "busy")

    def run(self, wait: bool = True):
        """Search now (``wait``) or in a thread, as the button does."""
        def work():
            self._live = []
            return self.session.auto_calibrate(self.max_loss.value / 100.0, self.evaluate,
                                               strategy=self.strategy.value, sensitivity=self.sensitivity.value)

        def done(outcome):
            self.say(f"kept {len(outcome.layers) - len(outcome.float_layers)} of {len(outcome.layers)} layers int8 in "
                     f"{outcome.evaluations} evaluations ({self.session.timings['auto']:.1f} s); the layer table shows "
                     "the final config", "ok")

        if wait:
            outcome = work()
            done(outcome)
            return outcome
        return self.background(work, busy="searching...", done=done)

    def draw(self) -> None:
        a = self.session.auto
        if a is None:
            self.trials.value = "<p style='font-size:12px'>not searched yet: set the target and click Search</p>"
            return
        self.trials.value = tables.trials_html(a)
        self._png = figures.png(figures.auto_figure(a))
        self.chart.value = self._png

    def static_html(self) -> str:
        a = self.session.auto
        if a is None:
            return "<p>not searched yet</p>"
        return tables.trials_html(a) + f"<img src='{figures.png_data_uri(self._png)}'/>" + (
            f"<p>final config: {html.escape(', '.join(a.float_layers) or 'every layer int8')} float</p>")
