"""Generic task checks of test outputs against fp32 ones (top-1, detection F1, OCR strings, cosine) and their
result dict."""
from __future__ import annotations

import numpy as np

from .decode import _box_iou


def _result(metric: str, value: float, passed: bool, detail: str) -> dict:
    return {"metric": metric, "value": float(value), "passed": bool(passed), "detail": detail}


def _match_f1(ref_boxes, ref_cls, test_boxes, test_cls, iou_thr=0.5):
    """Greedy same-class matching; returns (f1, matched ious)."""
    if len(ref_boxes) == 0 and len(test_boxes) == 0:
        return 1.0, []
    if len(ref_boxes) == 0 or len(test_boxes) == 0:
        return 0.0, []
    iou = _box_iou(ref_boxes, test_boxes)
    iou[ref_cls[:, None] != test_cls[None, :]] = 0
    used, ious = set(), []
    for i in range(len(ref_boxes)):
        order = np.argsort(-iou[i], kind="stable")
        for j in order:
            if iou[i, j] < iou_thr:
                break
            if j not in used:
                used.add(int(j))
                ious.append(float(iou[i, j]))
                break
    tp = len(ious)
    return 2 * tp / (len(ref_boxes) + len(test_boxes)), ious


def _detection_check(ref_dets, test_dets, pass_f1=0.9) -> dict:
    f1s, ious, nref, ntest = [], [], 0, 0
    for (rb, rc, _rs), (tb, tc, _ts) in zip(ref_dets, test_dets):
        f1, m = _match_f1(rb, rc, tb, tc)
        f1s.append(f1)
        ious += m
        nref += len(rb)
        ntest += len(tb)
    mf1 = float(np.mean(f1s))
    return _result("detection F1 (same class, IoU>=0.5)", mf1, mf1 >= pass_f1 and nref > 0,
                   f"{nref} ref boxes, {ntest} test boxes over {len(f1s)} images; "
                   f"mean IoU of matches {np.mean(ious) if ious else 0:.3f}; worst image F1 {min(f1s):.2f}")


def _top1_check(ref, test, out_index=0, pass_agree=0.95, labels=None) -> dict:
    r = np.array([np.asarray(o[out_index]).reshape(-1).argmax() for o in ref])
    t = np.array([np.asarray(o[out_index]).reshape(-1).argmax() for o in test])
    agree = float(np.mean(r == t))
    dp = float(np.mean([np.abs(np.asarray(a[out_index]) - np.asarray(b[out_index])).max() for a, b in zip(ref, test)]))
    classes = np.unique(r)
    names = [labels[i] if labels is not None and i < len(labels) else str(i) for i in classes[:12]]
    return _result("top-1 agreement", agree, agree >= pass_agree,
                   f"{int((r == t).sum())}/{len(r)} agree; ref classes seen: {names}; mean max|dprob| {dp:.3f}")


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    a = a.reshape(-1).astype(np.float64)
    b = b.reshape(-1).astype(np.float64)
    return float(a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-12))


def _ocr_strings_check(ref_seqs, test_seqs, chars=None, pass_frac=0.9, what="decoded strings equal"):
    eq = [a == b for a, b in zip(ref_seqs, test_seqs)]
    frac = float(np.mean(eq))

    def s(seq):
        if chars is None:
            return ",".join(map(str, seq))
        return "".join(chars[k] if 0 <= k < len(chars) else "?" for k in seq)
    bad = [(s(a), s(b)) for a, b in zip(ref_seqs, test_seqs) if a != b][:3]
    # character error rate of test against ref
    errs = tot = 0
    for a, b in zip(ref_seqs, test_seqs):
        errs += _edit(a, b)
        tot += max(len(a), 1)
    return _result(what, frac, frac >= pass_frac,
                   f"{sum(eq)}/{len(eq)} equal, CER {errs / max(tot, 1):.3f}; e.g. ref: {[s(a) for a in ref_seqs[:3]]}"
                   + (f"; mismatches (ref -> test): {bad}" if bad else ""))


def _edit(a, b) -> int:
    d = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        prev, d[0] = d[0], i
        for j, y in enumerate(b, 1):
            prev, d[j] = d[j], min(d[j] + 1, d[j - 1] + 1, prev + (x != y))
    return d[len(b)]
