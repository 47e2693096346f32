"""Original vs quantized on evaluation data: top-k, agreement and per-layer error.

Both the prepared float model and the fake-quant model run in ONNX Runtime with every layer's
output exposed as an extra graph output (:func:`amct_nb.ir.with_outputs`); the fake-quant
model keeps each layer's output name for the real-valued result, so the two line up by name.
Per layer, over the first ``error_samples`` samples::

    SQNR   = 10 * log10( sum(x^2) / sum((x - y)^2) )    (x: float output, y: quantized output)
    cosine = mean over samples of <x_i, y_i> / (|x_i| |y_i|)

Predictions (top-k, agreement) come from the deploy model, the int8 model ONNX Runtime runs.
Errors accumulate through the network; ``sqnr_drop`` (the SQNR of the layer's input, when that
is another layer's output, minus the layer's SQNR) points at the layer that adds the most. The
float side is computed once per Comparer (its layer outputs kept up to ``cache_bytes``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from ..errors import DataError
from ..ir import make_session, with_outputs
from .metrics import error_sums, softmax, topk_accuracy

__all__ = ["LayerError", "Comparison", "Comparer", "SQNR_CAP_DB"]

#: SQNR shown for identical outputs (no error at all).
SQNR_CAP_DB = 99.0


@dataclass
class LayerError:
    name: str
    op_type: str
    quantized: bool
    sqnr_db: float
    cosine: float
    sqnr_drop: float = float("nan")  # SQNR of the input minus SQNR of the output (dB), when the input is a layer output


@dataclass
class Comparison:
    """What the compare panel shows; probabilities are softmax of the logits."""

    logits_fp: np.ndarray
    logits_q: np.ndarray
    labels: np.ndarray | None
    layers: list[LayerError] = field(default_factory=list)
    error_samples: int = 0
    seconds: float = 0.0

    @property
    def n(self) -> int:
        return len(self.logits_fp)

    @property
    def agreement(self) -> float:
        return float((self.logits_fp.argmax(1) == self.logits_q.argmax(1)).mean())

    def accuracy(self, which: str, k: int) -> float | None:
        if self.labels is None:
            return None
        return topk_accuracy(self.logits_fp if which == "fp" else self.logits_q, self.labels, k)

    def metrics(self) -> dict:
        out = {"samples": self.n, "agreement": self.agreement}
        for which in ("fp", "q"):
            for k in (1, 5):
                out[f"top{k}_{which}"] = self.accuracy(which, k)
        return out

    def worst(self, n: int | None = None, quantized_only: bool = True) -> list[LayerError]:
        """Layers ordered worst first (lowest SQNR, then lowest cosine)."""
        ls = [l for l in self.layers if l.quantized or not quantized_only]
        ls = sorted(ls, key=lambda l: (l.sqnr_db, l.cosine))
        return ls if n is None else ls[:n]

    def topk(self, i: int, k: int = 3) -> tuple[list[tuple[int, float]], list[tuple[int, float]]]:
        """(class, probability) of the top-k of sample ``i``, float and quantized."""
        out = []
        for z in (self.logits_fp[i], self.logits_q[i]):
            p = softmax(z[None])[0]
            idx = np.argsort(-p)[:k]
            out.append([(int(c), float(p[c])) for c in idx])
        return out[0], out[1]


def _sqnr(sig: float, err: float) -> float:
    if err <= 0:
        return SQNR_CAP_DB
    if sig <= 0:
        return -SQNR_CAP_DB
    return float(min(SQNR_CAP_DB, 10.0 * np.log10(sig / err)))


class Comparer:
    """Runs comparisons of quantized results against one prepared float model on fixed data."""

    def __init__(self, prepared, x: np.ndarray, labels=None, *, error_samples: int = 16, batch: int = 16):
        inits = {t.name for t in prepared.model.graph.initializer}
        if len([i for i in prepared.model.graph.input if i.name not in inits]) != 1:
            raise DataError(
                "the comparison needs a single-input model: compare multi-input models with your own evaluator"
            )
        if len(x) == 0:
            raise DataError("no evaluation samples: pass eval_data=(x, labels) with at least one sample")
        self.prepared = prepared
        self.x = np.asarray(x, np.float32)
        self.labels = None if labels is None else np.asarray(labels)
        self.error_samples = int(min(error_samples, len(self.x)))
        self.batch = batch
        self.layers = [l for l in prepared.layers]
        self.outputs = list(dict.fromkeys(l.output for l in self.layers))
        self._fp_logits = None
        self._fp_cache = None  # per-batch float layer outputs when they fit the memory budget
        self.cache_bytes = 512 * 2**20

    def _run(self, model, with_layers: bool):
        names = self.outputs if with_layers else []
        m = with_outputs(model, names) if names else model
        sess = make_session(m)
        in_name = sess.get_inputs()[0].name
        out_names = [o.name for o in sess.get_outputs()]
        n_model_out = len(model.graph.output)
        return sess, in_name, out_names, n_model_out

    def _batches(self, n):
        for i in range(0, n, self.batch):
            yield i, min(n, i + self.batch)

    def _float_side(self):
        """Float logits of every sample and float layer tensors of the error samples (cached)."""
        if self._fp_logits is not None and self._fp_cache is not None:
            return self._fp_logits, self._fp_cache
        sess, inp, outs, nmo = self._run(self.prepared.model, True)
        logits, cache, size = [], [], 0
        for a, b in self._batches(self.error_samples):
            r = sess.run(None, {inp: self.x[a:b]})
            logits.append(r[0])
            d = {n: v for n, v in zip(outs[nmo:], r[nmo:])}
            size += sum(v.nbytes for v in d.values())
            cache.append(d if size <= self.cache_bytes else None)
        if self.error_samples < len(self.x):
            plain = make_session(self.prepared.model)
            pin = plain.get_inputs()[0].name
            for a, b in self._rest():
                logits.append(plain.run(None, {pin: self.x[a:b]})[0])
            del plain
        self._fp_logits = np.concatenate(logits).astype(np.float32)
        self._fp_cache = cache
        return self._fp_logits, self._fp_cache

    def _rest(self):
        for i in range(self.error_samples, len(self.x), self.batch):
            yield i, min(len(self.x), i + self.batch)

    def run(self, result) -> Comparison:
        """Compare ``result`` (a QuantResult of the same prepared model) with the float model.

        Predictions come from the deploy model (the int8 model ONNX Runtime runs), per-layer
        errors from the fake-quant model (it keeps every layer's real-valued output).
        """
        t0 = time.perf_counter()
        fp_logits, cache = self._float_side()
        dsess = make_session(result.deploy_model)
        din = dsess.get_inputs()[0].name
        q_logits = [dsess.run(None, {din: self.x[a:a + 32]})[0] for a in range(0, len(self.x), 32)]
        qsess, qin, qouts, nmo = self._run(result.fake_quant_model, True)
        fsess = None
        names = qouts[nmo:]
        acc = {n: np.zeros(4) for n in names}  # signal^2, error^2, cosine sum, samples
        for bi, (a, b) in enumerate(self._batches(self.error_samples)):
            r = qsess.run(None, {qin: self.x[a:b]})
            ref = cache[bi] if bi < len(cache) else None
            if ref is None:
                if fsess is None:
                    fsess = self._run(self.prepared.model, True)
                fs, fin, fouts, fnmo = fsess
                fr = fs.run(None, {fin: self.x[a:b]})
                ref = {n: v for n, v in zip(fouts[fnmo:], fr[fnmo:])}
            for n, y in zip(names, r[nmo:]):
                x = ref.get(n)
                if x is None or x.shape != y.shape:
                    continue
                acc[n] += error_sums(x.reshape(len(x), -1), y.reshape(len(y), -1))
        tensor_sqnr = {n: _sqnr(v[0], v[1]) for n, v in acc.items() if v[3]}
        quantized = set(result.plan.layers)
        errs = []
        for l in self.layers:
            v = acc.get(l.output)
            if v is None or not v[3]:
                continue
            sq = tensor_sqnr[l.output]
            before = tensor_sqnr.get(l.activation)  # known when the input is another layer's output
            drop = float("nan") if before is None else round(before - sq, 6)
            errs.append(LayerError(l.name, l.op_type, l.name in quantized, sq, float(v[2] / v[3]), drop))
        return Comparison(fp_logits, np.concatenate(q_logits).astype(np.float32), self.labels, errs,
                          self.error_samples, time.perf_counter() - t0)
