"""Activation statistics in one streaming ONNX Runtime pass over the calibration data.

The tensors to observe become extra graph outputs of a copy of the model; each batch's
outputs are folded into :class:`~amct_nb.quant.stats.TensorStats` and dropped, so memory depends
on the batch size and the number of tensors, never on the number of calibration samples. The
first few samples are kept (:attr:`Observation.samples`) for the safety net's measurements.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field

import onnx

from ..data import as_feeds, check_feed, rebatch
from ..errors import Cancelled, DataError
from ..ir import ObservingSession, float_tensors, input_specs
from ..quant import TensorStats
from .points import quant_points
from .prepared import Prepared

__all__ = ["Observation", "observe", "collect_stats", "DEFAULT_BATCH_BYTES"]

#: Budget for the observed tensors of one batch; sets how many samples go into one ORT run.
DEFAULT_BATCH_BYTES = 96 * 2**20


@dataclass
class Observation(Mapping):
    """What one pass over the calibration data saw: ``{tensor name: TensorStats}`` (this object is
    that mapping) and ``samples``, the first few calibration feeds (a handful of samples) on which
    the safety net measures errors."""

    stats: dict[str, TensorStats]
    samples: list[dict] = field(default_factory=list)

    def __getitem__(self, name: str) -> TensorStats:
        return self.stats[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.stats)

    def __len__(self) -> int:
        return len(self.stats)

    @classmethod
    def of(cls, stats) -> Observation:
        """``stats`` as an Observation: itself, or a plain mapping of statistics (no samples)."""
        if isinstance(stats, Observation):
            return stats
        return cls(dict(stats or {}), [])


def _bytes_per_sample(model: onnx.ModelProto, names: list[str]) -> float | None:
    shapes = {}
    for vi in list(model.graph.value_info) + list(model.graph.input) + list(model.graph.output):
        dims = vi.type.tensor_type.shape.dim
        shapes[vi.name] = [d.dim_value if d.HasField("dim_value") else None for d in dims]
    total = 0
    for n in names:
        s = shapes.get(n)
        if s is None or any(d is None for d in s[1:]):
            return None
        total += 4 * math.prod(s[1:]) if len(s) > 1 else 4
    return float(total)


def observe(
    model: onnx.ModelProto,
    data: Iterable,
    tensors: list[str],
    *,
    batch_bytes: int = DEFAULT_BATCH_BYTES,
    max_batch: int = 64,
    progress: bool = True,
    total: int | None = None,
    cancel: threading.Event | None = None,
    on_batch: Callable[[int, int], None] | None = None,
    threads: int | None = None,
    keep_samples: int = 8,
    channel_tensors: set[str] | frozenset = frozenset(),
) -> Observation:
    """Run ``data`` through ``model`` once and collect statistics of ``tensors``.

    ``data`` yields feeds (dict or array, each a complete model input). For models with a
    dynamic batch axis, consecutive feeds are concatenated into runs of about ``batch_bytes`` of
    observed activations. ``cancel`` (a threading.Event) stops the pass between batches with
    :class:`Cancelled`. Raises DataError for feeds that do not fit the model or when ``data``
    is empty. ``channel_tensors`` also get per-channel moments (layer inputs).
    """
    specs = input_specs(model)
    tensors = list(dict.fromkeys(tensors))
    sess = ObservingSession(model, tensors, threads=threads)
    out_names = [o.name for o in sess.get_outputs()]
    pick = [out_names.index(t) for t in tensors]
    obs = Observation({t: TensorStats(t, channels=t in channel_tensors) for t in tensors})
    kept = 0
    bps = _bytes_per_sample(model, tensors)
    target = max(1, min(max_batch, int(batch_bytes // bps))) if bps else 1

    def checked():
        for i, feed in enumerate(data):
            if cancel is not None and cancel.is_set():
                raise Cancelled("calibration cancelled by the user; nothing was written")
            yield check_feed(feed, specs, i)

    bar = None
    if progress:
        try:
            from tqdm.auto import tqdm

            bar = tqdm(total=total, desc="calibrating", unit="sample", leave=False)
        except ImportError:
            bar = None
    seen = 0
    try:
        for feed in rebatch(checked(), specs, target):
            try:
                outs = sess.run(None, feed)
            except Exception as e:
                msg = str(e).strip().splitlines()[-1] if str(e).strip() else repr(e)
                raise DataError(
                    f"ONNX Runtime failed on calibration batch {seen}: {msg}: check that the data has the "
                    f"shapes and types the model expects ({'; '.join(s.describe() for s in specs)})"
                ) from e
            n = next(iter(feed.values())).shape[0] if specs and specs[0].batch_dynamic else 1
            if kept < keep_samples:
                take = min(n, keep_samples - kept)
                obs.samples.append({k: (v[:take] if v.ndim and v.shape[0] == n and take < n else v).copy()
                                    for k, v in feed.items()})
                kept += take
            for t, i in zip(tensors, pick):
                if outs[i].size:  # empty: a tensor of an If branch that did not run, or of a Loop that ran 0 times
                    obs.stats[t].update(outs[i], samples=n)
            del outs
            seen += n
            if bar is not None:
                bar.update(n)
            if on_batch is not None:
                on_batch(seen, total or 0)
            if cancel is not None and cancel.is_set():
                raise Cancelled("calibration cancelled by the user; nothing was written")
    finally:
        if bar is not None:
            bar.close()
    if seen == 0:
        raise DataError("no calibration data: the data source yielded no samples: pass at least one sample")
    return obs


def _total(data) -> int | None:
    try:
        return len(data)
    except TypeError:
        return None


def collect_stats(
    prepared: Prepared,
    data,
    *,
    tensors: list[str] | None = None,
    all_tensors: bool = False,
    progress: bool = True,
    cancel: threading.Event | None = None,
    batch_bytes: int = DEFAULT_BATCH_BYTES,
    on_batch: Callable[[int, int], None] | None = None,
    channel_moments: bool = False,
) -> Observation:
    """One streaming pass: statistics of every tensor any config could quantize (or of all
    float tensors with ``all_tensors``), so settings can change later without re-running.

    ``data``: an iterable of feeds (array or dict per feed), an array whose first axis is samples,
    or anything :func:`amct_nb.data.open_data` opens (a path: .npy, .npz, image folder...).
    ``channel_moments``: also per-channel means and energies of the layers' inputs, which
    non-uniform weights use (a third more time on a CNN)."""
    if tensors is None:
        can = [l for l in prepared.layers if l.quantizable]
        tensors = float_tensors(prepared.model) if all_tensors else quant_points(prepared.model, can, True)
    specs = input_specs(prepared.model)
    feeds = as_feeds(data, specs)
    inputs = {l.activation for l in prepared.layers if l.quantizable} if channel_moments else set()
    return observe(prepared.model, feeds, tensors, progress=progress, total=_total(data), cancel=cancel,
                   batch_bytes=batch_bytes, on_batch=on_batch, channel_tensors=inputs)
