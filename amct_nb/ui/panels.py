"""The Workbench's panels, one per step; each works alone and has a static HTML form.

Every panel is an ipywidgets ``VBox`` over a shared :class:`~amct_nb.ui.session.Session` and
redraws on the session's events. Its ``static_html()`` is also put into the display data as
``text/html``, so a notebook saved with outputs reads well where widgets do not run (nbconvert
HTML, GitHub); live front ends show the widget. Long work (calibration, rebuilds, comparisons)
runs in a thread so the notebook stays usable; errors show in the panel's status line.
"""

from __future__ import annotations

import html
import logging
import threading
import traceback

import ipywidgets as widgets

from amct_nb.config import ACT_ALGOS
from amct_nb.errors import AmctError, Cancelled
from amct_nb.ptq import nuq_refusal

from . import figures, netron_view, tables
from .layer_table import EDITABLE_FIELDS, LayerTable, weight_changes
from .save_box import SaveBox
from .session import Session

__all__ = ["Panel", "ModelPanel", "CalibratePanel", "HistogramPanel", "SettingsPanel", "ComparePanel",
           "STATIC_FALLBACK"]

log = logging.getLogger("amct_nb.ui")

#: Put each panel's static HTML next to the widget in its display data (for nbconvert/GitHub).
STATIC_FALLBACK = True


def as_session(model, **kwargs) -> Session:
    return model if isinstance(model, Session) else Session(model, **kwargs)


class Panel(widgets.VBox):
    """Base: a header, the panel's widgets, a status line; errors go to the status line."""

    heading = ""

    def __init__(self, session: Session, children, **kwargs):
        self.session = session
        self.header = widgets.HTML(f"<h3 class='amct-panel-title'>{html.escape(self.heading)}</h3>")
        self.status = widgets.HTML("")
        self._thread: threading.Thread | None = None
        super().__init__([self.header, *children, self.status], **kwargs)
        self.add_class("amct-panel")

    # -- static form --------------------------------------------------------------------
    def static_html(self) -> str:
        return ""

    def _repr_mimebundle_(self, **kwargs):
        data = super()._repr_mimebundle_(**kwargs)
        if STATIC_FALLBACK and isinstance(data, dict):
            try:
                data["text/html"] = (f"<div class='amct-static'><h3>{html.escape(self.heading)}</h3>"
                                     f"{self.static_html()}</div>")
            except Exception as e:  # a static form must never hide the widget
                data["text/html"] = f"<p>{html.escape(self.heading)}: {html.escape(str(e))}</p>"
        return data

    # -- status and errors ----------------------------------------------------------------
    def say(self, text: str, kind: str = "info") -> None:
        color = {"info": "#333", "ok": "#1a7f37", "error": "#b42318", "busy": "#9a6700"}[kind]
        self.status.value = (f"<div class='amct-status amct-status-{kind}' style='color:{color};font-size:12px'>"
                             f"{html.escape(text)}</div>")

    def _fail(self, e: BaseException) -> None:
        if isinstance(e, AmctError):
            self.say(str(e), "error")
        else:
            log.error("%s", traceback.format_exc())
            self.say(f"{type(e).__name__}: {e}", "error")

    def guarded(self, fn):
        """Wrap a widget callback so that an exception shows in the status line."""

        def run(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except Exception as e:
                self._fail(e)

        return run

    def background(self, fn, *, busy: str, done=None) -> threading.Thread | None:
        """Run ``fn()`` in a thread (one at a time per panel); ``done(result)`` afterwards."""
        if self.busy:
            self.say("still working on the last request", "busy")
            return None
        self.say(busy, "busy")

        def target():
            try:
                r = fn()
                if done is not None:
                    done(r)
            except Cancelled as e:
                self.say(str(e), "info")
            except Exception as e:
                self._fail(e)

        self._thread = threading.Thread(target=target, daemon=True, name=f"amct-nb {type(self).__name__}")
        self._thread.start()
        return self._thread

    @property
    def busy(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def wait(self, timeout: float | None = None) -> None:
        """Wait for the panel's background work to finish."""
        if self._thread is not None:
            self._thread.join(timeout)


# ---------------------------------------------------------------------------------------
class ModelPanel(Panel):
    """Inputs, outputs, opset, parameters, the quantizable layers, and the graph in netron."""

    heading = "1. Model"

    def __init__(self, model, **kwargs):
        s = as_session(model, **kwargs)
        self.summary = widgets.HTML(tables.model_summary_html(s))
        self.layers = widgets.HTML(tables.layers_html(s))
        self.which = widgets.Dropdown(
            options=[("original", "original"), ("prepared (BatchNorm folded)", "prepared"),
                     ("fake-quant", "fake_quant"), ("deploy (int8 QDQ)", "deploy")],
            value="original", description="graph", layout=widgets.Layout(width="320px"))
        self.show_button = widgets.Button(description="Show in netron", icon="sitemap")
        self.graph = widgets.HTML("")
        super().__init__(s, [self.summary, widgets.HBox([self.which, self.show_button]), self.graph, self.layers])
        self.show_button.on_click(self.guarded(lambda _: self.show_graph(self.which.value)))
        for ev in ("config", "result", "compare"):
            s.on(ev, lambda *_: self.refresh())

    def refresh(self) -> None:
        self.layers.value = tables.layers_html(self.session)

    def show_graph(self, which: str = "original", height: int = 600) -> str:
        """Serve one of the models with netron and show it; returns the IFrame's URL ('' without netron)."""
        if not netron_view.available():
            self.graph.value = netron_view.fallback_html(self.session.prepared.source)
            return ""
        addr = netron_view.serve(self.session.prepared.source if which == "original" and self.session.prepared.source
                                 else self.session.model_file(which), which)
        src = netron_view.url(addr)
        self.graph.value = netron_view.iframe_html(src, height)
        self.say(f"netron serves the {which} model on {addr[0]}:{addr[1]}", "ok")
        return src

    def static_html(self) -> str:
        return tables.model_summary_html(self.session) + tables.layers_html(self.session)


# ---------------------------------------------------------------------------------------
class CalibratePanel(Panel):
    """One button: observe the calibration data once (cancellable), then build the models; save AMCT's files."""

    heading = "2. Calibrate"

    def __init__(self, model, **kwargs):
        s = as_session(model, **kwargs)
        n = _count(s.calibration_data)
        self.info = widgets.HTML(f"<span style='font-size:12px'>{n if n is not None else 'streamed'} "
                                 "calibration samples; statistics are collected once, settings can change "
                                 "afterwards without re-running</span>")
        self.run_button = widgets.Button(description="Calibrate", button_style="primary", icon="play")
        self.cancel_button = widgets.Button(description="Cancel", icon="stop", disabled=True)
        self.progress = widgets.IntProgress(value=0, min=0, max=max(n or 1, 1), description="samples",
                                            layout=widgets.Layout(width="420px"))
        self._cancel = threading.Event()
        self.save_box = SaveBox(s)  # AMCT's files from the current result (enabled once there is one)
        super().__init__(s, [self.info, widgets.HBox([self.run_button, self.cancel_button]), self.progress,
                             self.save_box])
        self.run_button.on_click(self.guarded(lambda _: self.start()))
        self.cancel_button.on_click(lambda _: self.cancel())
        if s.result is not None:
            self._done(None)

    def _on_batch(self, seen: int, total: int) -> None:
        if total and self.progress.max != total:
            self.progress.max = total
        self.progress.value = min(seen, self.progress.max)

    def _work(self):
        self._cancel.clear()
        self.run_button.disabled, self.cancel_button.disabled = True, False
        try:
            self.session.calibrate(cancel=self._cancel, on_batch=self._on_batch)
        finally:
            self.run_button.disabled, self.cancel_button.disabled = False, True

    def _done(self, _):
        t = self.session.timings
        r = self.session.result
        self.say(f"calibrated: observing {t.get('observe', 0):.1f} s, building {t.get('build', 0):.1f} s; "
                 f"{len(r.quantized_layers)} layers quantized, {len(r.float_layers)} left float", "ok")

    def start(self) -> threading.Thread | None:
        """Calibrate in a thread (the notebook stays usable); :meth:`wait` blocks until done."""
        return self.background(self._work, busy="calibrating...", done=self._done)

    def run(self) -> None:
        """Calibrate now, in the foreground (for scripts and top-to-bottom notebooks)."""
        self.say("calibrating...", "busy")
        self._work()
        self._done(None)

    def cancel(self) -> None:
        self._cancel.set()
        self.say("cancelling after the current batch...", "busy")

    def static_html(self) -> str:
        if self.session.result is None:
            return "<p>not calibrated yet</p>"
        r = self.session.result
        return (f"<p>calibrated on {_count(self.session.calibration_data)} samples; {len(r.quantized_layers)} layers "
                f"quantized, {len(r.float_layers)} left float</p>")


def _count(data):
    try:
        return len(data)
    except TypeError:
        return None


# ---------------------------------------------------------------------------------------
class HistogramPanel(Panel):
    """A layer's input histogram with each range algorithm's range and error, and its weights."""

    heading = "3. Activation histograms"

    def __init__(self, model, **kwargs):
        s = as_session(model, **kwargs)
        names = [l.name for l in s.quantizable]
        self.layer = widgets.Dropdown(options=names, value=names[0] if names else None, description="layer",
                                      layout=widgets.Layout(width="520px"))
        self.image = widgets.Image(format="png", layout=widgets.Layout(max_width="900px"))
        self.image.add_class("amct-histogram")
        self.errors = widgets.HTML("")
        self._png_key = None
        super().__init__(s, [self.layer, self.image, self.errors])
        self.layer.observe(self.guarded(lambda ch: self.draw()), names="value")
        s.on("result", lambda *_: self.guarded(self.draw)())
        s.on("stats", lambda *_: self.guarded(self.draw)())
        self.draw()

    def select(self, name: str) -> None:
        """Show layer ``name`` (what a click on a row of the layer table does)."""
        self.layer.value = name

    def _png(self, name: str) -> bytes:
        key = (name, id(self.session.result), id(self.session.stats), self.session.config.for_layer(name))
        if self._png_key != key:
            self._png_bytes = figures.png(figures.histogram_figure(self.session, name))
            self._png_key = key
        return self._png_bytes

    def draw(self) -> None:
        name = self.layer.value
        if self.session.stats is None or name is None:
            self.errors.value = "<p style='font-size:12px'>no statistics yet: calibrate first</p>"
            return
        self.image.value = self._png(name)
        self.errors.value = _legend() + tables.range_errors_html(self.session, name)

    def static_html(self) -> str:
        name = self.layer.value
        if self.session.stats is None or name is None:
            return "<p>no statistics yet: calibrate first</p>"
        return (f"<img src='{figures.png_data_uri(self._png(name))}'/>" + _legend()
                + tables.range_errors_html(self.session, name))


def _legend() -> str:
    items = [f"<span style='color:{c}'>&#9632;</span> {a}" for a, c in figures.ALGO_COLORS.items()]
    items.append(f"<span style='color:{figures.CHOSEN_COLOR}'>&#9632;</span> chosen range")
    return "<div style='font-size:11px'>lines: " + " &nbsp; ".join(items) + "</div>"


# ---------------------------------------------------------------------------------------
class SettingsPanel(Panel):
    """The layer table: quantize or skip, range algorithm, weight granularity; bulk edits;
    config.json import and export."""

    heading = "4. Per-layer settings"

    def __init__(self, model, **kwargs):
        s = as_session(model, **kwargs)
        self.table = LayerTable(rows=self.rows(s))
        ops = sorted({l.op_type for l in s.layers})
        self.op_filter = widgets.Dropdown(options=[("all op types", "")] + [(o, o) for o in ops], description="show",
                                          layout=widgets.Layout(width="220px"))
        self.bulk_quant = widgets.Dropdown(options=[("(keep)", None), ("quantize", True), ("skip", False)],
                                           description="quantize", layout=widgets.Layout(width="200px"))
        self.bulk_algo = widgets.Dropdown(options=[("(keep)", None)] + [(a, a) for a in ACT_ALGOS], description="range",
                                          layout=widgets.Layout(width="200px"))
        self.bulk_gran = widgets.Dropdown(options=[("(keep)", None), ("per-channel", True), ("per-tensor", False)],
                                          description="weights", layout=widgets.Layout(width="220px"))
        self.apply_button = widgets.Button(description="Apply to selected / shown", icon="check")
        self.rebuild_button = widgets.Button(description="Rebuild models", button_style="primary", icon="refresh")
        self.path = widgets.Text(value="config.json", description="config", layout=widgets.Layout(width="320px"))
        self.export_button = widgets.Button(description="Export", icon="download")
        self.import_button = widgets.Button(description="Import", icon="upload")
        self.upload = widgets.FileUpload(accept=".json", multiple=False, description="Upload")
        super().__init__(s, [
            widgets.HBox([self.op_filter, self.bulk_quant, self.bulk_algo, self.bulk_gran, self.apply_button]),
            self.table,
            widgets.HBox([self.rebuild_button, self.path, self.export_button, self.import_button, self.upload]),
        ])
        self.table.observe(self.guarded(self._on_changes), names="changes")
        self.op_filter.observe(lambda ch: setattr(self.table, "filter", ch["new"]), names="value")
        self.apply_button.on_click(self.guarded(lambda _: self.apply_bulk()))
        self.rebuild_button.on_click(self.guarded(lambda _: self.rebuild(wait=False)))
        self.export_button.on_click(self.guarded(lambda _: self.export(self.path.value)))
        self.import_button.on_click(self.guarded(lambda _: self.import_(self.path.value)))
        self.upload.observe(self.guarded(self._on_upload), names="value")
        for ev in ("config", "stats", "result", "compare", "errors"):
            s.on(ev, lambda *_: self.refresh())

    @staticmethod
    def rows(s: Session) -> list[dict]:
        errs = {e.name: e for e in s.comparison.layers} if s.comparison is not None else {}
        out = []
        for i, l in enumerate(s.layers):
            lc = s.config.for_layer(l.name, l.op_type)
            e = errs.get(l.name)
            share = s.clipped_share(l.name)
            clipped = None if share is None else round(100 * share, 4)
            out.append({
                "index": i, "name": l.name, "op_type": l.op_type, "weight_shape": "x".join(map(str, l.weight_shape)),
                "channels": int(l.out_channels or 0), "quantizable": l.quantizable, "reason": str(l.reason or ""),
                "quant_enable": bool(lc.quant_enable and l.quantizable), "act_algo": lc.act_algo,
                "channel_wise": bool(lc.channel_wise), "setting": s.planned(l.name),
                "nuq_steps": int(lc.num_steps) if lc.nuq else 0, "nuq_ok": l.quantizable and nuq_refusal(l) is None,
                "hist": s.sparkline(l.name) if l.quantizable else [],
                "clipped": clipped,
                "sqnr": None if e is None else round(e.sqnr_db, 2), "cosine": None if e is None else round(e.cosine, 5),
            })
        return out

    def refresh(self) -> None:
        self.table.rows = self.rows(self.session)

    def _on_changes(self, change) -> None:
        edits = change["new"] or []
        by_field: dict = {}
        for e in edits:
            field = e.get("field")
            if field not in EDITABLE_FIELDS:
                raise AmctError(f"the table sent an edit of '{field}', which cannot be edited: "
                                f"use {', '.join(EDITABLE_FIELDS)}")
            value = EDITABLE_FIELDS[field](e.get("value"))
            by_field.setdefault((field, value), []).append(e["name"])
        quantizable = {l.name for l in self.session.quantizable}
        for (field, value), names in by_field.items():
            names = [n for n in names if n in quantizable]
            if names:
                self.session.set_layers(names, **weight_changes(field, value))
        if edits:
            self.say(f"{len(edits)} layer setting(s) changed: rebuild to see the effect", "info")

    def apply_bulk(self, names: list[str] | None = None) -> list[str]:
        """Apply the bulk dropdowns to ``names`` (default: the selected rows, else every shown row)."""
        changes = {}
        if self.bulk_quant.value is not None:
            changes["quant_enable"] = self.bulk_quant.value
        if self.bulk_algo.value is not None:
            changes["act_algo"] = self.bulk_algo.value
        if self.bulk_gran.value is not None:
            changes["channel_wise"] = self.bulk_gran.value
        quantizable = {l.name for l in self.session.quantizable}
        names = [n for n in (names if names is not None else self.table.targets()) if n in quantizable]
        if not changes or not names:
            self.say("nothing to apply: pick a setting in the dropdowns and rows in the table", "info")
            return []
        self.session.set_layers(names, **changes)
        self.say(f"{', '.join(f'{k}={v}' for k, v in changes.items())} set on {len(names)} layer(s): "
                 "rebuild to see the effect", "ok")
        return names

    def rebuild(self, wait: bool = True):
        def done(r):
            self.say(f"rebuilt in {self.session.timings['build']:.1f} s: {len(r.quantized_layers)} layers quantized, "
                     f"{len(r.float_layers)} float", "ok")

        if wait:
            r = self.session.build()
            done(r)
            return r
        return self.background(self.session.build, busy="rebuilding (no re-observation)...", done=done)

    def export(self, path) -> None:
        p = self.session.export_config(path)
        self.say(f"wrote {p}", "ok")

    def import_(self, source) -> None:
        self.session.import_config(source)
        self.say(f"settings read from {source if isinstance(source, str) and len(source) < 200 else 'the upload'}: "
                 "rebuild to apply", "ok")

    def _on_upload(self, change) -> None:
        files = change["new"]
        if not files:
            return
        f = files[0] if isinstance(files, (list, tuple)) else next(iter(files.values()))
        content = f["content"] if isinstance(f, dict) else f.content
        self.import_(bytes(content))

    def static_html(self) -> str:
        return tables.layers_html(self.session)


# ---------------------------------------------------------------------------------------
class ComparePanel(Panel):
    """Original vs quantized: sample grid with top-k, top-1/top-5/agreement, per-layer error;
    one click skips a layer, rebuilds from the same statistics and re-scores."""

    heading = "5. Compare original and quantized"

    def __init__(self, model, n_images: int = 8, n_worst: int = 6, **kwargs):
        s = as_session(model, **kwargs)
        self.n_images, self.n_worst = n_images, n_worst
        self.run_button = widgets.Button(description="Compare", button_style="primary", icon="balance-scale")
        self.metrics = widgets.HTML("")
        self.grid = widgets.HTML("")
        self.chart = widgets.Image(format="png", layout=widgets.Layout(max_width="900px"))
        self.chart.add_class("amct-error-chart")
        self.skip_label = widgets.HTML("<span style='font-size:12px'>skip a layer and re-score:</span>")
        self.skip_buttons = widgets.HBox([], layout=widgets.Layout(flex_flow="row wrap"))
        self._chart_png = b""
        super().__init__(s, [self.run_button, self.metrics, self.grid, self.chart, self.skip_label, self.skip_buttons])
        self.run_button.on_click(self.guarded(lambda _: self.compare(wait=False)))
        s.on("compare", lambda *_: self.guarded(self.draw)())
        s.on("result", lambda *_: self._stale())
        self.draw()

    def _stale(self) -> None:
        if self.session.comparison is not None and not self.busy:
            self.say("the models changed: compare again", "info")

    def compare(self, wait: bool = True):
        def done(c):
            self.say(f"compared in {self.session.timings['compare']:.1f} s", "ok")

        if wait:
            c = self.session.compare()
            done(c)
            return c
        return self.background(self.session.compare, busy="running both models...", done=done)

    def skip(self, name: str, wait: bool = True):
        """Skip ``name``, rebuild (no re-observation) and re-score."""
        def done(c):
            self.say(f"skipped {name}: rebuilt and re-scored in {self.session.timings['skip_and_rescore']:.1f} s", "ok")

        if wait:
            c = self.session.skip_and_rescore(name)
            done(c)
            return c
        return self.background(lambda: self.session.skip_and_rescore(name), busy=f"skipping {name}...", done=done)

    def draw(self) -> None:
        c = self.session.comparison
        if c is None:
            self.metrics.value = "<p style='font-size:12px'>not compared yet: click Compare</p>"
            return
        self.metrics.value = tables.metrics_html(c)
        self.grid.value = tables.grid_html(self.session, c, self.n_images)
        self._chart_png = figures.png(figures.error_figure(c))
        self.chart.value = self._chart_png
        buttons = []
        for e in c.worst(self.n_worst):
            b = widgets.Button(description=f"{e.name[-28:]} ({e.sqnr_db:.1f} dB)", tooltip=f"skip {e.name}",
                               layout=widgets.Layout(width="auto"))
            b.add_class("amct-skip")
            b.on_click(self.guarded(lambda _, n=e.name: self.skip(n, wait=False)))
            buttons.append(b)
        self.skip_buttons.children = buttons

    def static_html(self) -> str:
        c = self.session.comparison
        if c is None:
            return "<p>not compared yet</p>"
        return (tables.metrics_html(c) + tables.grid_html(self.session, c, self.n_images)
                + f"<img src='{figures.png_data_uri(self._chart_png)}'/>")
