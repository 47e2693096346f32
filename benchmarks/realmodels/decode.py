"""Output decoders: box IoU and NMS, DB text boxes, PicoDet/YOLOX/YOLOv8 detections, CTC greedy decoding."""
from __future__ import annotations

import math

import numpy as np


def _box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix of xyxy boxes a[N,4], b[M,4]."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)), np.float32)
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    aa = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    bb = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / np.maximum(aa[:, None] + bb[None, :] - inter, 1e-9)


def _nms(boxes: np.ndarray, scores: np.ndarray, thr: float) -> list[int]:
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size:
        i = order[0]
        keep.append(int(i))
        if order.size == 1:
            break
        iou = _box_iou(boxes[i:i + 1], boxes[order[1:]])[0]
        order = order[1:][iou <= thr]
    return keep


def _label(mask: np.ndarray):
    try:
        from scipy import ndimage
    except ImportError:  # pragma: no cover
        return None
    lab, k = ndimage.label(mask)
    return [s for s in ndimage.find_objects(lab)], lab, k


def _db_boxes(prob: np.ndarray, thr=0.3, box_thr=0.5, min_side=3):
    """DB post-processing, simplified: connected components of prob>thr whose
    mean prob >= box_thr; axis-aligned boxes."""
    mask = prob > thr
    lab = _label(mask)
    if lab is None:
        return None
    slices, labels, _ = lab
    boxes = []
    for k, s in enumerate(slices, start=1):
        if s is None:
            continue
        ys, xs = s
        if ys.stop - ys.start < min_side or xs.stop - xs.start < min_side:
            continue
        region = labels[s] == k
        if prob[s][region].mean() < box_thr:
            continue
        boxes.append([xs.start, ys.start, xs.stop, ys.stop])
    return np.array(boxes, np.float32).reshape(-1, 4)


def _picodet_decode(outs, size=(800, 608), strides=(8, 16, 32, 64), score_thr=0.4, nms_thr=0.5):
    """rapid_layout's PicoDet post-processing (GFL: sigmoid scores, DFL distances)."""
    scores_l, reg_l = outs[:4], outs[4:]
    boxes, scores = [], []
    for stride, reg, sc in zip(strides, reg_l, scores_l):
        reg, sc = np.asarray(reg)[0].astype(np.float64), np.asarray(sc)[0]
        fh, fw = math.ceil(size[0] / stride), math.ceil(size[1] / stride)
        ww, hh = np.meshgrid(np.arange(fw), np.arange(fh))
        cy, cx = (hh.reshape(-1) + 0.5) * stride, (ww.reshape(-1) + 0.5) * stride
        bins = reg.shape[-1] // 4
        r = reg.reshape(-1, bins)
        r = np.exp(r - r.max(1, keepdims=True))
        r /= r.sum(1, keepdims=True)
        dist = (r @ np.arange(bins)).reshape(-1, 4) * stride
        boxes.append(np.stack([cx - dist[:, 0], cy - dist[:, 1], cx + dist[:, 2], cy + dist[:, 3]], 1))
        scores.append(sc)
    boxes, scores = np.concatenate(boxes), np.concatenate(scores)
    ob, oc, os_ = [], [], []
    for c in range(scores.shape[1]):
        keep = scores[:, c] > score_thr
        if not keep.any():
            continue
        b, s = boxes[keep], scores[keep, c]
        k = _nms(b, s, nms_thr)[:100]
        ob.append(b[k])
        oc.append(np.full(len(k), c))
        os_.append(s[k])
    if not ob:
        return np.zeros((0, 4)), np.zeros(0, int), np.zeros(0)
    return np.concatenate(ob), np.concatenate(oc), np.concatenate(os_)


def _yolox_decode(out: np.ndarray, size=416, score_thr=0.1, nms_thr=0.45):
    p = out[0].astype(np.float32).copy()
    grids, strides = [], []
    for s in (8, 16, 32):
        hs = ws = size // s
        xv, yv = np.meshgrid(np.arange(ws), np.arange(hs))
        grids.append(np.stack((xv, yv), 2).reshape(-1, 2))
        strides.append(np.full((hs * ws, 1), s))
    g, st = np.concatenate(grids), np.concatenate(strides)
    xy = (p[:, :2] + g) * st
    wh = np.exp(np.clip(p[:, 2:4], -20, 20)) * st
    scores = p[:, 4:5] * p[:, 5:]
    cls = scores.argmax(1)
    sc = scores[np.arange(len(cls)), cls]
    boxes = np.concatenate([xy - wh / 2, xy + wh / 2], 1)
    keep = sc > score_thr
    boxes, sc, cls = boxes[keep], sc[keep], cls[keep]
    k = _nms(boxes, sc, nms_thr)
    return boxes[k], cls[k], sc[k]


def _yolov8_decode(out: np.ndarray, score_thr=0.1, nms_thr=0.45):
    p = out[0].T.astype(np.float32)  # [N, 4 + C]
    scores = p[:, 4:]
    cls = scores.argmax(1)
    sc = scores[np.arange(len(cls)), cls]
    keep = sc >= score_thr
    p, cls, sc = p[keep], cls[keep], sc[keep]
    boxes = np.concatenate([p[:, :2] - p[:, 2:4] / 2, p[:, :2] + p[:, 2:4] / 2], 1)
    # class-aware NMS (offset trick)
    k = _nms(boxes + cls[:, None] * 4096.0, sc, nms_thr)
    return boxes[k], cls[k], sc[k]


def _ctc_greedy(probs: np.ndarray, blank: int = 0) -> list[int]:
    idx = probs.argmax(-1)
    out, prev = [], -1
    for k in idx:
        k = int(k)
        if k != prev and k != blank:
            out.append(k)
        prev = k
    return out


def _slanet_decode(structure_probs: np.ndarray, loc: np.ndarray, eos: int, cell_ids: set[int]):
    """PaddleOCR's TableLabelDecode as rapid_table 0.1.3 runs it: argmax tokens up to ``eos`` (the
    last class), skipping 'sos' (0) and 'eos'; returns (token ids, [k, 4] boxes in 0..1 of the cell
    tokens ``cell_ids``)."""
    idx = np.asarray(structure_probs)[0].argmax(-1)
    toks, cells = [], []
    for i, k in enumerate(idx):
        k = int(k)
        if i > 0 and k == eos:
            break
        if k in (0, eos):
            continue
        toks.append(k)
        if k in cell_ids:
            cells.append(i)
    boxes = np.asarray(loc, np.float32)[0, cells].reshape(-1, 4) if cells else np.zeros((0, 4), np.float32)
    return toks, boxes
