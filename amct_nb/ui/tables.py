"""HTML forms of the panels: model summary, layer table, range errors, metrics, sample grid.

Plain HTML strings (escaped), so they render in JupyterLab, nbconvert's HTML and on GitHub.
"""

from __future__ import annotations

import html

import numpy as np
import onnx

from .figures import image_png, png_data_uri

__all__ = ["trials_html", "model_summary_html", "layers_html", "range_errors_html", "metrics_html", "grid_html",
           "param_count"]

_TABLE = 'style="border-collapse:collapse;font-size:12px"'
_TD = 'style="border:1px solid #ddd;padding:2px 6px;text-align:left"'


def _e(x) -> str:
    return html.escape(str(x))


def _table(headers, rows, cls: str = "") -> str:
    head = "".join(f"<th {_TD}>{_e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td {_TD}>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f'<table class="{cls}" {_TABLE}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _shape(vi) -> str:
    dims = vi.type.tensor_type.shape.dim
    return "[" + ", ".join(d.dim_param or str(d.dim_value) if (d.dim_param or d.HasField("dim_value")) else "?"
                           for d in dims) + "]"


def param_count(model: onnx.ModelProto) -> int:
    n = 0
    for t in model.graph.initializer:
        n += int(np.prod(t.dims)) if len(t.dims) else 1
    return n


def model_summary_html(session) -> str:
    p = session.prepared
    m = p.original
    inits = {t.name for t in m.graph.initializer}
    ins = [f"{_e(i.name)} {_shape(i)} {_e(onnx.TensorProto.DataType.Name(i.type.tensor_type.elem_type).lower())}"
           for i in m.graph.input if i.name not in inits]
    outs = [f"{_e(o.name)} {_shape(o)}" for o in m.graph.output]
    opset = ", ".join(f"{o.domain or 'ai.onnx'} {o.version}" for o in m.opset_import)
    rows = [
        ("model", _e(p.name)),
        ("inputs", "<br>".join(ins)),
        ("outputs", "<br>".join(outs)),
        ("opset", _e(opset) + (f" (prepared: {p.model.opset_import[0].version})" if p.model.opset_import else "")),
        ("parameters", f"{param_count(m):,}"),
        ("nodes", f"{len(m.graph.node)} (prepared: {len(p.model.graph.node)})"),
        ("quantizable layers", f"{len(session.quantizable)} of {len(session.layers)} Conv/Gemm/MatMul/ConvTranspose"),
        ("preparation", "<br>".join(_e(n) for n in p.notes[:8])
         + (f"<br>... {len(p.notes) - 8} more" if len(p.notes) > 8 else "")),
    ]
    return _table(("", ""), rows, "amct-model-summary")


def layers_html(session, limit: int | None = None) -> str:
    """The layer table: op type, weight shape, channels, planned setting (and error if compared)."""
    errs = {}
    if session.comparison is not None:
        errs = {e.name: e for e in session.comparison.layers}
    rows = []
    for i, l in enumerate(session.layers):
        if limit is not None and i >= limit:
            break
        e = errs.get(l.name)
        rows.append((i, _e(l.name), _e(l.op_type), _e(list(l.weight_shape)),
                     "" if l.out_channels is None else str(l.out_channels),
                     _e(session.planned(l.name)),
                     f"{e.sqnr_db:.1f}" if e else "", f"{e.cosine:.4f}" if e else ""))
    more = (f"<p>... {len(session.layers) - limit} more layers</p>"
            if limit is not None and len(session.layers) > limit else "")
    return _table(("#", "layer", "op", "weight shape", "channels", "setting", "SQNR dB", "cosine"), rows,
                  "amct-layers") + more


def range_errors_html(session, name: str) -> str:
    errors = session.range_errors(name)
    l = session.layer(name)
    chosen = session.config.for_layer(name, l.op_type).act_algo
    best = min(errors, key=lambda a: errors[a]["mse"])
    rows = []
    for a, r in errors.items():
        mark = " (chosen)" if a == chosen else ""
        mark += " (lowest error)" if a == best else ""
        rows.append((_e(a + mark), f"{r['lo']:.4g}", f"{r['hi']:.4g}", f"{100 * r['clipped']:.4f}%", f"{r['mse']:.3e}"))
    st = session.stats[l.activation]
    head = (f"<p style='font-size:12px'>input tensor {_e(l.activation)}: min {st.min:.4g}, max {st.max:.4g}, "
            f"{st.count:,} values observed</p>")
    return head + _table(("algorithm", "lo", "hi", "clipped", "expected MSE"), rows, "amct-range-errors")


def metrics_html(comparison) -> str:
    m = comparison.metrics()

    def f(v):
        return "n/a" if v is None else f"{v:.4f}"

    rows = [("float", f(m["top1_fp"]), f(m["top5_fp"]), ""),
            ("int8 (fake-quant)", f(m["top1_q"]), f(m["top5_q"]), f(m["agreement"]))]
    return (f"<p style='font-size:12px'>{m['samples']} samples</p>"
            + _table(("model", "top-1", "top-5", "top-1 agreement"), rows, "amct-metrics"))


def grid_html(session, comparison, n: int = 8, k: int = 3) -> str:
    """Sample images with both models' top-k labels and probabilities."""
    n = min(n, comparison.n)
    imgs = session.images(n)
    names = session.classes

    def label(c):
        return _e(names[c]) if names and c < len(names) else str(c)

    cells = []
    for i in range(n):
        img = imgs[i]
        scale = max(1, 84 // max(img.shape[0], 1))
        uri = png_data_uri(image_png(img, scale))
        fp, q = comparison.topk(i, k)
        truth = ""
        if comparison.labels is not None:
            truth = f"<div>true: {label(int(comparison.labels[i]))}</div>"
        same = fp[0][0] == q[0][0]
        style = "" if same else "background:#fde0dc;"
        lines = (["<b>float</b>"] + [f"{label(c)} {p:.3f}" for c, p in fp]
                 + ["<b>int8</b>"] + [f"{label(c)} {p:.3f}" for c, p in q])
        cells.append(
            f'<div class="amct-grid-cell" style="{style}display:inline-block;vertical-align:top;width:160px;'
            f'margin:3px;padding:3px;border:1px solid #ddd;font-size:11px">'
            f'<img src="{uri}" style="max-width:150px;image-rendering:pixelated"/>{truth}'
            + "<br>".join(lines) + "</div>"
        )
    return '<div class="amct-compare-grid">' + "".join(cells) + "</div>"


def trials_html(outcome) -> str:
    """One row per tried config: float layers, metric, loss, passed (the final one marked)."""
    final = outcome.final
    rows = []
    for t in outcome.trials:
        names = ", ".join(_e(n) for n in t.float_layers[:6]) + (f" ... (+{len(t.float_layers) - 6})"
                                                                if len(t.float_layers) > 6 else "")
        mark = " (final)" if final is not None and t is final else ""
        rows.append((f"{t.index}{mark}", len(t.float_layers), names or "none", f"{t.metric:.4f}", f"{t.loss:.4g}",
                     "yes" if t.passed else "no"))
    head = (f"<p style='font-size:12px'>original metric {outcome.original_metric:.4f}; {outcome.evaluations} "
            f"evaluations; strategy {_e(outcome.strategy)}; {len(outcome.float_layers)} of {len(outcome.layers)} "
            f"layers rolled back</p>")
    return head + _table(("config", "float layers", "which", "metric", "loss", "passed"), rows, "amct-trials")
