"""Static matplotlib figures of the panels (no pyplot: no global state, safe in threads).

Each function takes a :class:`~amct_nb.ui.session.Session` (or a Comparison) and returns a
``matplotlib.figure.Figure``; :func:`png` turns one into PNG bytes for an image widget or an
HTML ``<img>``.
"""

from __future__ import annotations

import base64
import io

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullLocator

__all__ = ["histogram_figure", "error_figure", "auto_figure", "png", "png_data_uri", "image_png", "ALGO_COLORS",
           "CHOSEN_COLOR"]

#: Line colour of each range algorithm in the histogram (the tables show the same key).
ALGO_COLORS = {"mse": "#d62728", "minmax": "#7f7f7f", "percentile": "#2ca02c", "entropy": "#9467bd"}
CHOSEN_COLOR = "#ff7f0e"


def _light(ax, log_y: bool = False) -> None:
    """Few ticks and no mathtext labels: most of a small figure's drawing time is tick text."""
    ax.xaxis.set_major_locator(MaxNLocator(6))
    ax.xaxis.set_minor_locator(NullLocator())
    if log_y:
        ax.yaxis.set_major_locator(LogLocator(numticks=5))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.0e}"))
    else:
        ax.yaxis.set_major_locator(MaxNLocator(5))
    ax.yaxis.set_minor_locator(NullLocator())
    ax.tick_params(labelsize=7)


def png(fig: Figure, dpi: int = 72) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def png_data_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode()


def image_png(img: np.ndarray, scale: int = 1) -> bytes:
    """A small image (H, W) or (H, W, 3) in [0, 1] as PNG bytes (nearest-neighbour upscaled)."""
    from matplotlib.image import imsave

    a = np.clip(np.asarray(img, np.float32), 0.0, 1.0)
    if scale > 1:
        a = np.repeat(np.repeat(a, scale, axis=0), scale, axis=1)
    buf = io.BytesIO()
    imsave(buf, a, cmap="gray", vmin=0.0, vmax=1.0, format="png")
    return buf.getvalue()


def histogram_figure(session, name: str, max_bars: int = 256) -> Figure:
    """Left: the layer's input histogram (log scale), the chosen clip range and each algorithm's
    range. Right: per-output-channel weight ranges with the int8 grid limit."""
    l = session.layer(name)
    st = session.stats[l.activation]
    # fixed margins: constrained layout costs over a second per figure on a slow CPU
    fig = Figure(figsize=(9.0, 3.0))
    ax, axw = fig.subplots(1, 2, width_ratios=[3, 2])
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.16, top=0.84, wspace=0.18)
    h = st.histogram().trimmed().coarsen(max_bars)
    e = h.edges
    c = np.maximum(h.counts, 0)
    ax.fill_between(e, np.append(c, c[-1]), 0.8, step="post", color="#1f77b4", alpha=0.75, lw=0)
    ax.set_yscale("log")
    ax.set_ylim(bottom=0.8)
    errors = session.range_errors(name)
    algo = session.config.for_layer(name, l.op_type).act_algo
    for a, r in errors.items():
        for v in {r["lo"], r["hi"]} - {0.0}:
            ax.axvline(v, color=ALGO_COLORS.get(a, "k"), lw=0.9, ls=":")
    chosen = session.chosen_range(name)
    clipped = errors.get(algo, {}).get("clipped", 0.0)
    if chosen is not None:
        lo, hi = chosen
        ax.axvspan(max(lo, e[0]), min(hi, e[-1]), color=CHOSEN_COLOR, alpha=0.12)
        ax.axvline(lo, color=CHOSEN_COLOR, lw=1.5)
        ax.axvline(hi, color=CHOSEN_COLOR, lw=1.5)
    ax.set_title(f"{name[-60:]}\ninput range chosen by {algo} (orange): {100 * clipped:.3f}% clipped", fontsize=9)
    ax.set_xlabel("activation value (count, log scale)", fontsize=8)
    _light(ax, log_y=True)
    wr = session.weight_ranges(name)
    if wr is not None:
        # one filled band and two step lines: thousands of channels draw as fast as ten
        # (fill_between and plot: stairs() patches cost a second for 1000+ channels)
        n = len(wr["min"])
        ch = np.arange(n)
        axw.fill_between(ch, wr["min"], wr["max"], step="mid", color="#1f77b4", alpha=0.8, lw=0)
        if wr["grid"] is not None:
            axw.plot(ch, wr["grid"], color="#d62728", lw=0.8, drawstyle="steps-mid")
            axw.plot(ch, -wr["grid"], color="#d62728", lw=0.8, drawstyle="steps-mid")
        axw.set_xlim(-0.5, n - 0.5)
        axw.set_title(f"weight min..max per output channel ({n})\nred: int8 grid limit", fontsize=9)
        axw.set_xlabel("output channel", fontsize=8)
        _light(axw)
    else:
        axw.set_axis_off()
    return fig


def error_figure(comparison, n: int = 20) -> Figure:
    """Per-layer SQNR (bars) and cosine similarity (dots), worst first."""
    worst = comparison.worst(n)
    height = 0.22 * max(len(worst), 3) + 1.2
    fig = Figure(figsize=(9.0, height))
    ax = fig.subplots()
    fig.subplots_adjust(left=0.34, right=0.97, bottom=0.5 / height, top=1 - 0.75 / height)
    if not worst:
        ax.text(0.5, 0.5, "no quantized layer", ha="center", va="center")
        ax.set_axis_off()
        return fig
    y = np.arange(len(worst))
    ax.barh(y, [l.sqnr_db for l in worst], color="#1f77b4")
    ax.set_yticks(y, [l.name[-48:] for l in worst], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("SQNR of the layer output (dB, higher is better)", fontsize=8)
    ax.xaxis.set_major_locator(MaxNLocator(6))
    ax.tick_params(axis="x", labelsize=7)
    ax2 = ax.twiny()
    ax2.xaxis.set_major_locator(MaxNLocator(5))
    ax2.plot([l.cosine for l in worst], y, "o", color="#d62728", ms=3)
    ax2.set_xlabel("cosine similarity (red dots)", fontsize=8, color="#d62728")
    ax2.tick_params(axis="x", labelsize=7, colors="#d62728")
    ax.set_title(f"worst {len(worst)} layers over {comparison.error_samples} samples", fontsize=9)
    return fig


def auto_figure(outcome, n: int = 20) -> Figure:
    """Left: the sensitivity ranking (the ``n`` most sensitive layers, most sensitive on top).
    Right: the metric of each tried config against its number of float layers (green: passed)."""
    fig = Figure(figsize=(9.0, 3.4))
    ax, ax2 = fig.subplots(1, 2, width_ratios=[3, 2])
    fig.subplots_adjust(left=0.28, right=0.98, bottom=0.16, top=0.86, wspace=0.35)
    top = outcome.ranking[:n]
    if top:
        y = np.arange(len(top))
        ax.barh(y, [s for _, s in top], color="#1f77b4")
        ax.set_yticks(y, [name[-36:] for name, _ in top], fontsize=6)
        ax.invert_yaxis()
        ax.set_title(f"sensitivity ({outcome.sensitivity}), lower is more sensitive", fontsize=8)
        ax.tick_params(axis="x", labelsize=7)
    else:
        ax.text(0.5, 0.5, "no ranking needed:\neverything int8 met the target", ha="center", va="center", fontsize=8)
        ax.set_axis_off()
    done = [t for t in outcome.trials if t.evaluated]
    colors = ["#2ca02c" if t.passed else "#d62728" for t in done]
    ax2.scatter([len(t.float_layers) for t in done], [t.metric for t in done], c=colors, s=18, zorder=3)
    ax2.axhline(outcome.original_metric, color="#7f7f7f", lw=0.8, ls="--")
    ax2.set_xlabel("float layers", fontsize=8)
    ax2.set_ylabel("metric", fontsize=8)
    ax2.set_title(f"{len(done)} configs tried (dashed: float model)", fontsize=8)
    _light(ax2)
    return fig
