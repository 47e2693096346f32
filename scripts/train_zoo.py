#!/usr/bin/env python3
"""Build the embedded Fashion-MNIST sample models of amct-nb (the "zoo").

Trains two small classifiers on the 60,000 Fashion-MNIST training images,
exports them to ONNX (opset 17, real BatchNormalization nodes kept), checks the
ONNX files against torch with onnxruntime, scores them on the full 10,000-image
test set, and writes everything into ``amct_nb/zoo/data/``:

* ``fmnist_resnet.onnx``       small ResNet (conv-BN-ReLU stem, basic blocks)
* ``fmnist_mobilenetv2.onnx``  MobileNetV2-style (inverted residual blocks)
* ``fmnist_test_samples.npz``  500 test images (first 50 of each class)
* ``fmnist_calib_samples.npz`` 200 train images (first 20 of each class),
                               for calibration only
* ``fmnist_classes.json``      the 10 class names
* ``MANIFEST.json``            hashes, sizes, accuracies, preprocessing

Run:  python scripts/train_zoo.py [--data-dir DIR] [--out-dir DIR]

Needs torch==2.13.0 (CPU), onnx, onnxruntime, numpy, and the IDX files
(Debian: ``apt-get install -y dataset-fashion-mnist``).
Deterministic: fixed seeds, deterministic algorithms, 2 CPU threads.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import sys
import time
import warnings
import zipfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DATA_DIR = Path("/usr/share/datasets/fashion-mnist")
DEFAULT_OUT_DIR = REPO / "amct_nb" / "zoo" / "data"

CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]
MEAN = 0.2860
STD = 0.3530
SCALE = 1.0 / 255.0
OPSET = 17
IR_VERSION = 8  # onnxruntime 1.31 refuses the IR 14 that onnx 1.23 writes by default
SEED = 20240601
THREADS = 2

N_TEST_PER_CLASS = 50
N_CALIB_PER_CLASS = 20


# --------------------------------------------------------------------------- data
def _open_maybe_gz(path: Path):
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def _find(data_dir: Path, stem: str) -> Path:
    """Standard IDX file names, gzipped or not (also the 't10k-images.idx3-ubyte' spelling)."""
    candidates = [stem, stem.replace("-idx", ".idx")]
    for c in candidates:
        for name in (c + ".gz", c):
            p = data_dir / name
            if p.is_file():
                return p
    raise FileNotFoundError(
        f"{stem}[.gz] not found in {data_dir}; install it with "
        "'apt-get install -y dataset-fashion-mnist' or pass --data-dir"
    )


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (big-endian header: 0, 0, dtype code, ndim, then ndim uint32 dims)."""
    with _open_maybe_gz(path) as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"{path}: not an IDX file")
    dtypes = {
        0x08: ">u1",
        0x09: ">i1",
        0x0B: ">i2",
        0x0C: ">i4",
        0x0D: ">f4",
        0x0E: ">f8",
    }
    code, ndim = raw[2], raw[3]
    if code not in dtypes:
        raise ValueError(f"{path}: unknown IDX dtype code {code:#x}")
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    dt = np.dtype(dtypes[code])
    count = int(np.prod(dims)) if dims else 1
    data = np.frombuffer(raw, dtype=dt, count=count, offset=4 + 4 * ndim)
    if len(raw) != 4 + 4 * ndim + count * dt.itemsize:
        raise ValueError(f"{path}: size does not match header {dims}")
    return data.reshape(dims).astype(dt.newbyteorder("="))


def load_fmnist(data_dir: Path):
    xtr = read_idx(_find(data_dir, "train-images-idx3-ubyte"))
    ytr = read_idx(_find(data_dir, "train-labels-idx1-ubyte")).astype(np.int64)
    xte = read_idx(_find(data_dir, "t10k-images-idx3-ubyte"))
    yte = read_idx(_find(data_dir, "t10k-labels-idx1-ubyte")).astype(np.int64)
    assert xtr.shape == (60000, 28, 28) and ytr.shape == (60000,), (
        xtr.shape,
        ytr.shape,
    )
    assert xte.shape == (10000, 28, 28) and yte.shape == (10000,), (
        xte.shape,
        yte.shape,
    )
    assert xtr.dtype == np.uint8 and xte.dtype == np.uint8
    return xtr, ytr, xte, yte


def preprocess(images_u8: np.ndarray) -> np.ndarray:
    """uint8 [N,28,28] -> float32 [N,1,28,28]: pixel/255, then (x - mean) / std."""
    x = images_u8.astype(np.float32) * np.float32(SCALE)
    x = (x - np.float32(MEAN)) / np.float32(STD)
    return x[:, None, :, :].astype(np.float32)


def first_per_class(labels: np.ndarray, per_class: int) -> np.ndarray:
    """Indices of the first `per_class` images of each class (in data-set order), sorted."""
    idx = [np.flatnonzero(labels == c)[:per_class] for c in range(10)]
    return np.sort(np.concatenate(idx)).astype(np.int64)


def save_npz_deterministic(path: Path, **arrays) -> None:
    """Same file layout as np.savez_compressed (deflated zip of .npy members), but with a
    fixed timestamp in the zip headers so that the bytes (and sha256) are reproducible."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for key, val in arrays.items():
            info = zipfile.ZipInfo(key + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.asanyarray(val), allow_pickle=False)
            zf.writestr(info, buf.getvalue(), compresslevel=9)


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# --------------------------------------------------------------------------- models
def build_models():
    from torch import nn

    class BasicBlock(nn.Module):
        """ResNet basic block: 3x3 conv-BN-ReLU, 3x3 conv-BN, + shortcut, ReLU."""

        def __init__(self, cin: int, cout: int, stride: int = 1):
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.relu1 = nn.ReLU(inplace=True)
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.relu2 = nn.ReLU(inplace=True)
            if stride != 1 or cin != cout:
                self.downsample = nn.Sequential(
                    nn.Conv2d(cin, cout, 1, stride, 0, bias=False), nn.BatchNorm2d(cout)
                )
            else:
                self.downsample = None

        def forward(self, x):
            identity = x if self.downsample is None else self.downsample(x)
            out = self.relu1(self.bn1(self.conv1(x)))
            out = self.bn2(self.conv2(out))
            return self.relu2(out + identity)

    class FmnistResNet(nn.Module):
        """Small ResNet for 1x28x28: conv-BN-ReLU stem (16 @28x28), basic blocks
        32 @14x14 (stride 2), 64 @7x7 (stride 2), 64 @7x7, global average pool, Linear."""

        # (out channels, stride) of each basic block: layer1, layer2, layer3
        CFG = ((32, 2), (64, 2), (64, 1))

        def __init__(self, stem: int = 16, num_classes: int = 10):
            super().__init__()
            self.stem = nn.Sequential(
                nn.Conv2d(1, stem, 3, 1, 1, bias=False),
                nn.BatchNorm2d(stem),
                nn.ReLU(inplace=True),
            )
            cin = stem
            for i, (cout, stride) in enumerate(self.CFG):
                setattr(self, f"layer{i + 1}", BasicBlock(cin, cout, stride))
                cin = cout
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.flatten = nn.Flatten(1)
            self.fc = nn.Linear(cin, num_classes)

        def forward(self, x):
            x = self.stem(x)
            x = self.layer3(self.layer2(self.layer1(x)))
            return self.fc(self.flatten(self.pool(x)))

    class InvertedResidual(nn.Module):
        """MobileNetV2 block: 1x1 expand conv-BN-ReLU6, 3x3 depthwise conv-BN-ReLU6,
        1x1 project conv-BN (linear bottleneck), residual add when shapes match."""

        def __init__(self, cin: int, cout: int, stride: int, expand: int):
            super().__init__()
            hidden = cin * expand
            self.use_res = stride == 1 and cin == cout
            self.expand = nn.Sequential(
                nn.Conv2d(cin, hidden, 1, 1, 0, bias=False),
                nn.BatchNorm2d(hidden),
                nn.ReLU6(inplace=True),
            )
            self.depthwise = nn.Sequential(
                nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False),
                nn.BatchNorm2d(hidden),
                nn.ReLU6(inplace=True),
            )
            self.project = nn.Sequential(
                nn.Conv2d(hidden, cout, 1, 1, 0, bias=False), nn.BatchNorm2d(cout)
            )

        def forward(self, x):
            out = self.project(self.depthwise(self.expand(x)))
            return x + out if self.use_res else out

    class FmnistMobileNetV2(nn.Module):
        """MobileNetV2-style network for 1x28x28: conv-BN-ReLU6 stem (stride 2 -> 14x14),
        7 inverted residual blocks (24 @14x14, 32 @7x7, 64 @7x7), 1x1 conv-BN-ReLU6 head,
        global average pool, Linear."""

        # (expand ratio t, out channels c, repeats n, first stride s), as in the MobileNetV2 paper
        CFG = ((4, 24, 2, 1), (4, 32, 3, 2), (4, 64, 2, 1))

        def __init__(self, stem: int = 16, last: int = 192, num_classes: int = 10):
            super().__init__()
            self.stem = nn.Sequential(
                nn.Conv2d(1, stem, 3, 2, 1, bias=False),
                nn.BatchNorm2d(stem),
                nn.ReLU6(inplace=True),
            )
            blocks = []
            cin = stem
            for t, c, n, s in self.CFG:
                for j in range(n):
                    blocks.append(InvertedResidual(cin, c, s if j == 0 else 1, t))
                    cin = c
            self.features = nn.Sequential(*blocks)
            self.head = nn.Sequential(
                nn.Conv2d(cin, last, 1, 1, 0, bias=False),
                nn.BatchNorm2d(last),
                nn.ReLU6(inplace=True),
            )
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.flatten = nn.Flatten(1)
            self.dropout = nn.Dropout(0.1)
            self.fc = nn.Linear(last, num_classes)

        def forward(self, x):
            x = self.head(self.features(self.stem(x)))
            return self.fc(self.dropout(self.flatten(self.pool(x))))

    def init_weights(model):
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)
        # zero-init the last BN of each residual branch (helps short training runs)
        for m in model.modules():
            if isinstance(m, BasicBlock):
                nn.init.zeros_(m.bn2.weight)
            elif isinstance(m, InvertedResidual) and m.use_res:
                nn.init.zeros_(m.project[1].weight)
        return model

    return FmnistResNet, FmnistMobileNetV2, init_weights


# Training recipes (epochs, batch, peak LR, weight decay) per model.
SPECS = {
    "fmnist_resnet": {
        "arch": "resnet",
        "epochs": 10,
        "batch": 128,
        "lr": 0.2,
        "wd": 5e-4,
    },
    "fmnist_mobilenetv2": {
        "arch": "mobilenetv2",
        "epochs": 6,
        "batch": 128,
        "lr": 0.2,
        "wd": 5e-5,
    },
}


# --------------------------------------------------------------------------- training
def setup_torch():
    # libgomp (torch's OpenMP) spins ~300k iterations at every barrier by default; when the 2
    # cores are shared with other processes that makes a 2-thread run up to 10x slower. A short
    # spin costs little on an idle machine. Must be set before torch is imported.
    os.environ.setdefault("GOMP_SPINCOUNT", "1000")
    import torch

    torch.set_num_threads(THREADS)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
    torch.use_deterministic_algorithms(True)
    # Deterministic mode also fills every new tensor with NaN (a debugging aid that does not
    # change results); it costs ~25% of the training time here, so switch that part off.
    torch.utils.deterministic.fill_uninitialized_memory = False
    torch.backends.cudnn.benchmark = False
    return torch


def augment(torch, xb, gen):
    """Random crop (pad 2 with black pixels) + horizontal flip.
    xb: float [B,1,28,28] normalized. Deterministic given `gen`."""
    b = xb.shape[0]
    pad = 2
    bg = (0.0 - MEAN) / STD  # a black pixel after normalization
    xp = torch.nn.functional.pad(xb, (pad, pad, pad, pad), value=bg)
    oy = torch.randint(0, 2 * pad + 1, (b,), generator=gen)
    ox = torch.randint(0, 2 * pad + 1, (b,), generator=gen)
    ar = torch.arange(28)
    iy = (oy[:, None] + ar[None, :])[:, :, None]  # [B,28,1]
    ix = (ox[:, None] + ar[None, :])[:, None, :]  # [B,1,28]
    out = xp[torch.arange(b)[:, None, None], 0, iy, ix].unsqueeze(1)
    flip = torch.rand(b, generator=gen) < 0.5
    out = torch.where(flip[:, None, None, None], out.flip(-1), out)
    return out.contiguous()


def evaluate_torch(torch, model, x, y, batch=1000):
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(x), batch):
            logits = model(x[i : i + batch])
            correct += int((logits.argmax(1) == y[i : i + batch]).sum())
    return correct / len(x)


def train(torch, name, model, xtr, ytr, xte, yte, spec, log):
    epochs, batch, lr, wd = spec["epochs"], spec["batch"], spec["lr"], spec["wd"]
    model.to(memory_format=torch.channels_last)  # faster oneDNN kernels on CPU
    gen = torch.Generator().manual_seed(SEED + 1)
    # no weight decay on BN parameters and biases
    decay, no_decay = [], []
    for p in model.parameters():
        (no_decay if p.ndim <= 1 else decay).append(p)
    opt = torch.optim.SGD(
        [
            {"params": decay, "weight_decay": wd},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=lr,
        momentum=0.9,
        nesterov=True,
    )
    steps_per_epoch = len(xtr) // batch  # drop the last partial batch
    total = epochs * steps_per_epoch
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt,
        max_lr=lr,
        total_steps=total,
        pct_start=0.15,
        div_factor=20.0,
        final_div_factor=200.0,
        anneal_strategy="cos",
    )
    lossf = torch.nn.CrossEntropyLoss(label_smoothing=0.05)
    t0, c0 = time.perf_counter(), time.process_time()
    for ep in range(epochs):
        model.train()
        perm = torch.randperm(len(xtr), generator=gen)
        tl, tc, tn = 0.0, 0, 0
        te = time.perf_counter()
        for s in range(steps_per_epoch):
            idx = perm[s * batch : (s + 1) * batch]
            xb = augment(torch, xtr[idx], gen).contiguous(
                memory_format=torch.channels_last
            )
            yb = ytr[idx]
            out = model(xb)
            loss = lossf(out, yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            tl += loss.item() * len(idx)
            tc += int((out.argmax(1) == yb).sum())
            tn += len(idx)
        acc = evaluate_torch(torch, model, xte, yte)
        log(
            f"[{name}] epoch {ep + 1}/{epochs}  loss {tl / tn:.4f}  train-acc {tc / tn:.4f}  "
            f"test-acc {acc:.4f}  ({time.perf_counter() - te:.1f}s)"
        )
    train_s = time.perf_counter() - t0
    cpu_s = time.process_time() - c0
    model.to(memory_format=torch.contiguous_format)
    model.eval()
    return train_s, cpu_s


# --------------------------------------------------------------------------- ONNX
def export_onnx(torch, model, path: Path):
    import onnx

    model.eval()
    dummy = torch.zeros(2, 1, 28, 28)
    # TorchScript exporter, opset 17, no constant folding: BatchNormalization stays a real node.
    # keep_initializers_as_inputs=True skips the exporter's "deduplicate initializers" pass,
    # which would otherwise merge parameters that happen to hold equal values (e.g. the two
    # BN biases that meet in a residual Add get identical gradients and stay equal) and add
    # Identity nodes; every node then keeps its own, readably named parameters. The
    # initializers are taken out of the graph inputs again below.
    with warnings.catch_warnings():
        # the TorchScript exporter is used on purpose (it keeps BN); silence its deprecation note
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        torch.onnx.export(
            model,
            (dummy,),
            str(path),
            dynamo=False,
            opset_version=OPSET,
            do_constant_folding=False,
            input_names=["input"],
            output_names=["logits"],
            dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}},
            export_params=True,
            keep_initializers_as_inputs=True,
        )
    m = onnx.load(str(path))
    g = m.graph
    inits = {t.name for t in g.initializer}
    keep_inputs = [i for i in g.input if i.name not in inits]
    del g.input[:]
    g.input.extend(keep_inputs)
    assert [i.name for i in g.input] == ["input"], [i.name for i in g.input]
    removed = remove_identities(m)
    constants_to_initializers(m)  # e.g. the min/max inputs of Clip (ReLU6)
    inits = {t.name for t in g.initializer}
    uses = {}
    for n in g.node:
        for name in n.input:
            if name in inits:
                uses[name] = uses.get(name, 0) + 1
    shared = sorted(k for k, v in uses.items() if v > 1)
    assert not shared, f"initializers shared between nodes: {shared}"
    unused = sorted(inits - set(uses))
    assert not unused, f"unused initializers: {unused}"
    m.ir_version = IR_VERSION
    m.producer_name = "amct-nb scripts/train_zoo.py"
    m.producer_version = f"torch {torch.__version__}"
    m.doc_string = ""
    onnx.checker.check_model(m, full_check=True)
    onnx.save(m, str(path))
    return m, removed


def constants_to_initializers(m) -> int:
    """Replace Constant nodes (tensor `value`) by initializers of the same name."""
    from onnx import numpy_helper

    g = m.graph
    moved = 0
    for node in list(g.node):
        if node.op_type != "Constant":
            continue
        attrs = {a.name: a for a in node.attribute}
        if set(attrs) != {"value"}:
            continue
        t = numpy_helper.from_array(
            numpy_helper.to_array(attrs["value"].t), node.output[0]
        )
        g.initializer.append(t)
        g.node.remove(node)
        moved += 1
    return moved


def remove_identities(m) -> int:
    """Drop Identity nodes: consumers read the Identity's input directly. An Identity that
    feeds a graph output is kept unless its producer's output can be renamed."""
    g = m.graph
    graph_outputs = {o.name for o in g.output}
    removed = 0
    for node in list(g.node):
        if node.op_type != "Identity":
            continue
        src, dst = node.input[0], node.output[0]
        if dst in graph_outputs:
            producers = [n for n in g.node if src in n.output]
            other_users = [n for n in g.node if n is not node and src in n.input]
            if len(producers) != 1 or other_users or src in graph_outputs:
                continue
            p = producers[0]
            p.output[list(p.output).index(src)] = dst
        else:
            for n in g.node:
                for i, name in enumerate(n.input):
                    if name == dst:
                        n.input[i] = src
        g.node.remove(node)
        removed += 1
    # value_info entries for names that no longer exist are harmless but tidy them up
    live = {o for n in g.node for o in n.output}
    keep = [vi for vi in g.value_info if vi.name in live]
    del g.value_info[:]
    g.value_info.extend(keep)
    return removed


def ort_session(path: Path):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = THREADS
    so.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def ort_predict(sess, x: np.ndarray, batch: int = 500) -> np.ndarray:
    outs = []
    for i in range(0, len(x), batch):
        outs.append(sess.run(["logits"], {"input": x[i : i + batch]})[0])
    return np.concatenate(outs)


# --------------------------------------------------------------------------- main
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--data-dir",
        type=Path,
        default=DEFAULT_DATA_DIR,
        help="folder with the standard Fashion-MNIST IDX files (gzipped or not)",
    )
    ap.add_argument("--out-dir", type=Path, default=DEFAULT_OUT_DIR)
    ap.add_argument("--models", nargs="*", default=list(SPECS), choices=list(SPECS))
    ap.add_argument(
        "--epochs", type=int, default=None, help="override the epochs (quick tests)"
    )
    args = ap.parse_args(argv)

    os.environ.setdefault("PYTHONHASHSEED", "0")
    torch = setup_torch()
    import onnx
    import onnxruntime as ort

    out = args.out_dir
    out.mkdir(parents=True, exist_ok=True)

    def log(msg):
        print(msg, flush=True)

    log(
        f"torch {torch.__version__}, onnx {onnx.__version__}, onnxruntime {ort.__version__}, "
        f"numpy {np.__version__}, threads {torch.get_num_threads()}"
    )
    xtr_u8, ytr_np, xte_u8, yte_np = load_fmnist(args.data_dir)
    log(f"data: train {xtr_u8.shape}, test {xte_u8.shape} from {args.data_dir}")

    # ---- sample files (test samples for evaluation demos, train samples for calibration)
    test_idx = first_per_class(yte_np, N_TEST_PER_CLASS)
    calib_idx = first_per_class(ytr_np, N_CALIB_PER_CLASS)
    test_npz = out / "fmnist_test_samples.npz"
    calib_npz = out / "fmnist_calib_samples.npz"
    save_npz_deterministic(
        test_npz, images=xte_u8[test_idx], labels=yte_np[test_idx], index=test_idx
    )
    save_npz_deterministic(
        calib_npz, images=xtr_u8[calib_idx], labels=ytr_np[calib_idx], index=calib_idx
    )
    classes_json = out / "fmnist_classes.json"
    classes_json.write_text(json.dumps(CLASSES, indent=2) + "\n")

    xtr = torch.from_numpy(preprocess(xtr_u8))
    ytr = torch.from_numpy(ytr_np)
    xte_np = preprocess(xte_u8)
    xte = torch.from_numpy(xte_np)
    yte = torch.from_numpy(yte_np)
    xs_np, ys_np = xte_np[test_idx], yte_np[test_idx]

    FmnistResNet, FmnistMobileNetV2, init_weights = build_models()
    manifest_path = out / "MANIFEST.json"
    manifest = {}
    if manifest_path.exists():
        try:
            manifest = json.loads(manifest_path.read_text())
        except ValueError:
            manifest = {}
    models_info = manifest.get("models", {})

    for name in args.models:
        spec = dict(SPECS[name])
        if args.epochs:
            spec["epochs"] = args.epochs
        torch.manual_seed(SEED)
        np.random.seed(SEED)
        model = FmnistResNet() if spec["arch"] == "resnet" else FmnistMobileNetV2()
        init_weights(model)
        n_params = sum(p.numel() for p in model.parameters())
        log(
            f"[{name}] {n_params} parameters ({n_params * 4 / 1e6:.3f} MB fp32), recipe {spec}"
        )
        train_s, cpu_s = train(torch, name, model, xtr, ytr, xte, yte, spec, log)
        torch_acc = evaluate_torch(torch, model, xte, yte)
        log(
            f"[{name}] trained in {train_s:.1f}s wall ({cpu_s:.1f}s CPU), torch test top-1 {torch_acc:.4f}"
        )

        path = out / f"{name}.onnx"
        m, removed = export_onnx(torch, model, path)
        n_bn = sum(1 for n in m.graph.node if n.op_type == "BatchNormalization")
        ops = {}
        for n in m.graph.node:
            ops[n.op_type] = ops.get(n.op_type, 0) + 1
        log(
            f"[{name}] exported {path.name}: {path.stat().st_size} bytes, {len(m.graph.node)} nodes "
            f"{ops}, removed {removed} Identity"
        )
        assert n_bn > 0, "BatchNormalization nodes were folded away"
        assert "Identity" not in ops

        sess = ort_session(path)
        with torch.no_grad():
            ref = model(xte[:1000]).numpy()
        got = ort_predict(sess, xte_np[:1000])
        diff = float(np.abs(ref - got).max())
        one = sess.run(["logits"], {"input": xte_np[:1]})[0]  # dynamic batch of 1
        diff = max(diff, float(np.abs(one - ref[:1]).max()))
        log(f"[{name}] max |onnx - torch| = {diff:.2e}")
        assert diff < 1e-4, diff

        logits = ort_predict(sess, xte_np)
        acc_full = float((logits.argmax(1) == yte_np).mean())
        acc_samples = float((ort_predict(sess, xs_np).argmax(1) == ys_np).mean())
        log(
            f"[{name}] onnxruntime top-1: full test set {acc_full:.4f}, 500 samples {acc_samples:.4f}"
        )

        models_info[name] = {
            "file": path.name,
            "sha256": sha256(path),
            "bytes": path.stat().st_size,
            "params": int(n_params),
            "architecture": model.__class__.__name__,
            "test_top1": round(acc_full, 4),
            "test_images": len(yte_np),
            "samples_top1": round(acc_samples, 4),
            "samples_images": len(ys_np),
            "batchnorm_nodes": n_bn,
            "nodes": len(m.graph.node),
            "op_counts": dict(sorted(ops.items())),
            "opset": OPSET,
            "ir_version": IR_VERSION,
            "max_abs_diff_vs_torch": float(f"{diff:.3g}"),
            "train_seconds": round(train_s, 1),
            "train_cpu_seconds": round(cpu_s, 1),
            "train_recipe": {k: v for k, v in spec.items() if k != "arch"}
            | {
                "optimizer": "SGD nesterov momentum 0.9, OneCycle cosine",
                "augmentation": "random shift crop (pad 2) + horizontal flip",
                "label_smoothing": 0.05,
                "seed": SEED,
                "threads": THREADS,
            },
            "input": {"name": "input", "shape": ["N", 1, 28, 28], "dtype": "float32"},
            "output": {"name": "logits", "shape": ["N", 10]},
            "preprocessing": {
                "scale": SCALE,
                "mean": MEAN,
                "std": STD,
                "formula": "(pixel * scale - mean) / std",
            },
        }

    manifest = {
        "dataset": "Fashion-MNIST",
        "classes_file": classes_json.name,
        "models": {k: models_info[k] for k in SPECS if k in models_info},
        "samples": {
            test_npz.name: {
                "sha256": sha256(test_npz),
                "bytes": test_npz.stat().st_size,
                "split": "test",
                "count": len(test_idx),
                "selection": f"first {N_TEST_PER_CLASS} of each class in test order, "
                "sorted by original index",
                "keys": ["images", "labels", "index"],
            },
            calib_npz.name: {
                "sha256": sha256(calib_npz),
                "bytes": calib_npz.stat().st_size,
                "split": "train",
                "count": len(calib_idx),
                "selection": f"first {N_CALIB_PER_CLASS} of each class in train order, "
                "sorted by original index (calibration only)",
                "keys": ["images", "labels", "index"],
            },
            classes_json.name: {"sha256": sha256(classes_json)},
        },
        "versions": {
            "torch": torch.__version__,
            "onnx": onnx.__version__,
            "onnxruntime": ort.__version__,
            "numpy": np.__version__,
        },
        "built_by": "python scripts/train_zoo.py",
    }
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    total = sum(p.stat().st_size for p in out.iterdir() if p.is_file())
    log(f"wrote {out} ({total} bytes total)")
    assert total < 3 * 1024 * 1024, total
    return 0


if __name__ == "__main__":
    sys.exit(main())
