"""Activation statistics in one streaming ONNX Runtime pass over the calibration data.

The tensors to observe become extra graph outputs of a copy of the model; each batch's
outputs are folded into :class:`~amct_nb.stats.TensorStats` and dropped, so memory depends on
the batch size and the number of tensors, never on the number of calibration samples.
"""

from __future__ import annotations

import math
import threading
from typing import Callable, Iterable

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper, numpy_helper

from .errors import Cancelled, DataError, ModelError
from .feeds import InputSpec, check_feed, input_specs, rebatch
from .model import fit_ir_version, is_large, tensor_elem_types, without_large_data
from .stats import TensorStats

__all__ = ["observe", "float_tensors", "make_session", "with_outputs", "DEFAULT_BATCH_BYTES", "CalibrationStats"]


class CalibrationStats(dict):
    """``{tensor name: TensorStats}`` plus ``feeds``: the first few calibration feeds (a handful
    of samples), kept for the safety net's error measurements."""

    feeds: list = []

#: Budget for the observed tensors of one batch; sets how many samples go into one ORT run.
DEFAULT_BATCH_BYTES = 96 * 2**20


def make_session(model: onnx.ModelProto, *, threads: int | None = None, optimize: bool = True,
                 options: ort.SessionOptions | None = None) -> ort.InferenceSession:
    """An ONNX Runtime CPU session for a ModelProto (errors become ModelError)."""
    so = options or ort.SessionOptions()
    if threads:
        so.intra_op_num_threads = threads
    so.log_severity_level = 3
    if not optimize:
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    try:
        if not is_large(model):
            m = onnx.ModelProto()
            m.CopyFrom(model)
            fit_ir_version(m)
            return ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
        # over 2 GB: the graph goes in without its big weights, which ONNX Runtime takes straight
        # from numpy (no copy of the model on disk, no second serialization)
        m = without_large_data(model)
        fit_ir_version(m)
        big = {t.name for t in m.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL}
        names, arrays = [], []
        for t in model.graph.initializer:
            if t.name in big:
                names.append(t.name)
                arrays.append(np.require(numpy_helper.to_array(t), requirements="C"))  # keeps 0-d shapes
        values = [ort.OrtValue.ortvalue_from_numpy(a) for a in arrays]  # views: the arrays must outlive them
        so.add_external_initializers(names, values)
        so.add_session_config_entry("session.disable_prepacking", "1")  # no second copy of the weights
        sess = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
        sess._amct_nb_weights = (arrays, values)  # the session reads them: keep them alive with it
        return sess
    except Exception as e:
        msg = str(e).strip().splitlines()[-1] if str(e).strip() else repr(e)
        raise ModelError(
            f"ONNX Runtime cannot load the model: {msg}. Check that the model runs in onnxruntime "
            f"{ort.__version__} (python -c \"import onnxruntime as o; o.InferenceSession('model.onnx')\")"
        ) from e


def float_tensors(model: onnx.ModelProto) -> list[str]:
    """Names of the float32 activation tensors of the main graph, in graph order."""
    types = tensor_elem_types(model)
    inits = {t.name for t in model.graph.initializer}
    names = [i.name for i in model.graph.input if i.name not in inits]
    for n in model.graph.node:
        names.extend(o for o in n.output if o)
    f32 = onnx.TensorProto.FLOAT
    return [n for n in names if types.get(n, f32) == f32 and n not in inits and types.get(n) is not None]


def with_outputs(model: onnx.ModelProto, names: list[str]) -> onnx.ModelProto:
    """A copy of the model that also outputs ``names`` (float32 tensors)."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    have = {o.name for o in m.graph.output}
    types = tensor_elem_types(m)
    for n in names:
        if n not in have:
            m.graph.output.append(helper.make_tensor_value_info(n, types.get(n, onnx.TensorProto.FLOAT), None))
            have.add(n)
    return m


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
) -> CalibrationStats:
    """Run ``data`` through ``model`` once and collect statistics of ``tensors``.

    ``data`` yields feeds (dict or array, each a complete model input). For models with a
    dynamic batch axis, consecutive feeds are concatenated into runs of about ``batch_bytes`` of
    observed activations. ``cancel`` (a threading.Event) stops the pass between batches with
    :class:`Cancelled`. Raises DataError for feeds that do not fit the model or when ``data``
    is empty.
    """
    specs = input_specs(model)
    tensors = list(dict.fromkeys(tensors))
    sess = make_session(with_outputs(model, tensors), threads=threads)
    out_names = [o.name for o in sess.get_outputs()]
    pick = [out_names.index(t) for t in tensors]
    stats = CalibrationStats((t, TensorStats(t)) for t in tensors)
    stats.feeds = []
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
                stats.feeds.append({k: (v[:take] if v.ndim and v.shape[0] == n and take < n else v).copy()
                                    for k, v in feed.items()})
                kept += take
            for t, i in zip(tensors, pick):
                stats[t].update(outs[i], samples=n)
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
    return stats
