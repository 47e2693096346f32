"""Tests of amct_nb.data: datasets, preprocessing presets, batching into feeds."""

from __future__ import annotations

import csv
import gzip
import struct
import warnings
from pathlib import Path

import numpy as np
import pytest

PIL = pytest.importorskip("PIL")
from PIL import Image  # noqa: E402

from amct_nb.data import (  # noqa: E402
    PRESETS,
    ArrayDataset,
    Cifar10Binary,
    IDXDataset,
    ImageFolder,
    NpyDataset,
    NpzDataset,
    NpzFolder,
    Preprocess,
    Sample,
    iter_batches,
    labels_of,
    open_data,
    preset,
)
from amct_nb.errors import DataError  # noqa: E402

IMAGENET_DEV = Path(__file__).resolve().parents[2] / "shared" / "data" / "imagenet-dev"


def _rgb(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def _save(path: Path, arr: np.ndarray, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, **kw)
    return path


def _idx(path: Path, arr: np.ndarray, gz=False) -> Path:
    codes = {np.dtype("uint8"): 0x08, np.dtype(">i4"): 0x0C}
    header = bytes([0, 0, codes[arr.dtype], arr.ndim]) + struct.pack(">" + "I" * arr.ndim, *arr.shape)
    data = header + arr.tobytes()
    path.write_bytes(gzip.compress(data, mtime=0) if gz else data)
    return path


# ---- Preprocess ------------------------------------------------------------------------------


def test_preprocess_normalizes_by_hand():
    px = _rgb(4, 5)
    pre = Preprocess(scale=1 / 255, mean=(0.5, 0.4, 0.3), std=(0.2, 0.3, 0.4))
    out = pre(Image.fromarray(px))
    assert out.shape == (3, 4, 5) and out.dtype == np.float32
    want = (px.astype(np.float64) / 255 - np.array([0.5, 0.4, 0.3])) / np.array([0.2, 0.3, 0.4])
    np.testing.assert_allclose(out, want.transpose(2, 0, 1), rtol=0, atol=1e-5)
    # numpy arrays take the same path without Pillow conversions
    np.testing.assert_array_equal(pre(px), out)
    # a single hand-computed value: pixel (row 1, col 2), green channel
    assert out[1, 1, 2] == pytest.approx((px[1, 2, 1] / 255 - 0.4) / 0.3, abs=1e-5)


def test_preprocess_layout_bgr_and_grey():
    px = _rgb(4, 5, seed=1)
    nchw = Preprocess()(px)
    nhwc = Preprocess(layout="NHWC")(px)
    bgr = Preprocess(channel_order="BGR")(px)
    assert nhwc.shape == (4, 5, 3)
    np.testing.assert_array_equal(nhwc.transpose(2, 0, 1), nchw)
    np.testing.assert_array_equal(bgr[0], nchw[2])
    np.testing.assert_array_equal(bgr[2], nchw[0])
    grey = Preprocess(channel_order="L")(Image.fromarray(px))
    assert grey.shape == (1, 4, 5)
    np.testing.assert_array_equal(grey[0], np.asarray(Image.fromarray(px).convert("L"), dtype=np.float32))


def test_preprocess_resize_shorter_rounding_and_exact():
    img = Image.fromarray(_rgb(200, 301))  # w=301, h=200
    out = Preprocess(size=256)(img)
    assert out.shape == (3, 256, 385)  # round(301 * 256 / 200) = round(385.28)
    tall = Image.fromarray(_rgb(301, 200))
    assert Preprocess(size=256)(tall).shape == (3, 385, 256)
    # the resize is Pillow's bilinear resize, exactly
    want = np.asarray(img.resize((385, 256), Image.Resampling.BILINEAR), dtype=np.float32).transpose(2, 0, 1)
    np.testing.assert_array_equal(out, want)
    assert Preprocess(size=(10, 20), resize_mode="exact")(img).shape == (3, 10, 20)
    # already the right size: left untouched
    same = Image.fromarray(_rgb(256, 300))
    np.testing.assert_array_equal(Preprocess(size=256)(same), Preprocess()(same))


def test_preprocess_center_crop_matches_hand_slice():
    px = _rgb(4, 7)
    out = Preprocess(crop=2)(px)
    # top = round((4 - 2) / 2) = 1, left = round((7 - 2) / 2) = round(2.5) = 2
    np.testing.assert_array_equal(out, px[1:3, 2:4].astype(np.float32).transpose(2, 0, 1))
    out = Preprocess(crop=(2, 3), layout="NHWC")(px)
    np.testing.assert_array_equal(out, px[1:3, 2:5].astype(np.float32))
    with pytest.raises(DataError, match="smaller than the crop"):
        Preprocess(crop=8)(px)


def test_presets_exact_values():
    assert set(PRESETS) == {"imagenet", "efficientnet-lite", "cifar10", "fashion-mnist"}
    img = np.full((256, 300, 3), 127, dtype=np.uint8)
    img[0, 0] = 255
    out = preset("efficientnet-lite")(img)
    assert out.shape == (3, 224, 224) and out.dtype == np.float32
    assert np.all(out == 0.0)  # (127 - 127) / 128
    img[100, 150] = 255  # inside the crop: top 16, left round(76 / 2) = 38
    assert preset("efficientnet-lite")(img)[0, 84, 112] == 1.0  # (255 - 127) / 128
    inet = preset("imagenet")(Image.fromarray(img))
    assert inet.shape == (3, 224, 224)
    assert inet[2, 0, 0] == pytest.approx((127 / 255 - 0.406) / 0.225, abs=1e-5)
    fm = preset("fashion-mnist")(np.full((28, 28), 51, dtype=np.uint8))
    assert fm.shape == (1, 28, 28)
    assert fm[0, 5, 5] == pytest.approx((51 / 255 - 0.2860) / 0.3530, abs=1e-5)
    c10 = preset("cifar10")(np.full((32, 32, 3), 255, dtype=np.uint8))
    assert c10.shape == (3, 32, 32)
    assert c10[1, 0, 0] == pytest.approx((1 - 0.4822) / 0.2435, abs=1e-5)


def test_preset_copy_overrides_and_errors():
    p = preset("imagenet", layout="NHWC")
    assert p.layout == "NHWC" and PRESETS["imagenet"].layout == "NCHW"
    assert preset("EfficientNet_Lite").mean == 127.0
    with pytest.raises(DataError, match="imagenet"):
        preset("resnet")
    with pytest.raises(DataError, match="layout"):
        Preprocess(layout="CHW")
    with pytest.raises(DataError, match="one value per channel"):
        Preprocess(mean=(0.1, 0.2))
    with pytest.raises(DataError, match="std"):
        Preprocess(std=0)


# ---- ImageFolder -----------------------------------------------------------------------------


@pytest.fixture
def class_folder(tmp_path):
    root = tmp_path / "imgs"
    _save(root / "cat" / "a.png", _rgb(10, 12, 1))
    _save(root / "cat" / "b.jpg", _rgb(10, 12, 2), quality=95)
    _save(root / "dog" / "c.png", _rgb(10, 12, 3))
    return root


def test_image_folder_class_subfolders(class_folder):
    ds = ImageFolder(class_folder, Preprocess(crop=8))
    assert len(ds) == 3
    assert ds.classes == ["cat", "dog"]
    assert [p.name for p in ds.files] == ["a.png", "b.jpg", "c.png"]
    np.testing.assert_array_equal(labels_of(ds), [0, 0, 1])
    samples = list(ds)
    assert [s.label for s in samples] == [0, 0, 1]
    assert all(list(s) == [None] and s[None].shape == (3, 8, 8) and s[None].dtype == np.float32 for s in samples)
    # PNG is lossless: exact pixels (crop top 1, left 2)
    want = _rgb(10, 12, 1)[1:9, 2:10].astype(np.float32).transpose(2, 0, 1)
    np.testing.assert_array_equal(samples[0][None], want)
    assert samples[2].source.endswith("c.png")


def test_image_folder_batches_and_limit(class_folder):
    ds = ImageFolder(class_folder, Preprocess(crop=8))
    feeds = list(iter_batches(ds, ["input"], 2, with_labels=True))
    assert [f["input"].shape for f, _ in feeds] == [(2, 3, 8, 8), (1, 3, 8, 8)]
    assert [lab.tolist() for _, lab in feeds] == [[0, 0], [1]]
    assert len(ImageFolder(class_folder, Preprocess(crop=8), limit=2)) == 2
    rest = ImageFolder(class_folder, Preprocess(crop=8), offset=2)
    assert [p.name for p in rest.files] == ["c.png"] and rest.labels.tolist() == [1]
    ungrouped = ImageFolder(class_folder, Preprocess(crop=8), labels=None)
    assert len(ungrouped) == 3 and labels_of(ungrouped) is None and next(iter(ungrouped)).label is None


def _write_csv(path: Path, header, rows):
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)


def test_image_folder_labels_csv(tmp_path):
    for k, name in enumerate(["a.png", "b.png", "c.png"]):
        _save(tmp_path / name, _rgb(6, 6, k))
    _write_csv(tmp_path / "labels.csv", ["file", "synset", "class_index"],
               [["b.png", "x", 7], ["a.png", "y", 3], ["c.png", "z", 5]])
    ds = ImageFolder(tmp_path, Preprocess())
    assert ds.labels_mode == "csv"
    assert [p.name for p in ds.files] == ["a.png", "b.png", "c.png"]
    np.testing.assert_array_equal(labels_of(ds), [3, 7, 5])
    assert [s.label for s in ds] == [3, 7, 5]
    unsorted = ImageFolder(tmp_path, Preprocess(), sort=False)
    assert [p.name for p in unsorted.files] == ["b.png", "a.png", "c.png"]
    _write_csv(tmp_path / "labels.csv", ["file", "label"], [["a.png", 1], ["b.png", 2]])
    with pytest.warns(UserWarning, match="c.png"):
        ds = ImageFolder(tmp_path, Preprocess(), labels="csv")
    assert ds.labels.tolist() == [1, 2]


def test_image_folder_csv_errors(tmp_path):
    _save(tmp_path / "a.png", _rgb(6, 6))
    _write_csv(tmp_path / "labels.csv", ["file", "class_index"], [["a.png", 1], ["x.jpg", 2]])
    with pytest.raises(DataError,
                       match=r"labels.csv line 3 names 'x.jpg' which is not in .*fix the file or remove the line"):
        ImageFolder(tmp_path, Preprocess())
    _write_csv(tmp_path / "labels.csv", ["name", "klass"], [["a.png", 1]])
    with pytest.raises(DataError, match="needs a 'file' column"):
        ImageFolder(tmp_path, Preprocess())
    _write_csv(tmp_path / "labels.csv", ["file", "class_index"], [["a.png", "cat"]])
    with pytest.raises(DataError, match="line 2.*not an integer"):
        ImageFolder(tmp_path, Preprocess())


def test_image_folder_skips_corrupt_jpeg(tmp_path):
    _save(tmp_path / "a.jpg", _rgb(16, 16, 1))
    good = _save(tmp_path / "c.jpg", _rgb(16, 16, 3))
    (tmp_path / "b.jpg").write_bytes(good.read_bytes()[:300])  # truncated JPEG
    (tmp_path / "d.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    ds = ImageFolder(tmp_path, Preprocess(crop=4), labels=None)
    assert len(ds) == 4
    with pytest.warns(UserWarning) as record:
        samples = list(ds)
    assert [Path(s.source).name for s in samples] == ["a.jpg", "c.jpg"]
    messages = [str(w.message) for w in record]
    assert any("b.jpg" in m for m in messages) and any("d.jpg" in m for m in messages)
    assert [p.name for p in ds.skipped] == ["b.jpg", "d.jpg"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # known-bad files are skipped silently the second time
        assert len(list(ds)) == 2
    strict = ImageFolder(tmp_path, Preprocess(crop=4), labels=None, on_error="raise")
    with pytest.raises(DataError, match=r"b\.jpg"):
        list(strict)
    with pytest.raises(DataError, match=r"d\.jpg"):
        strict[3]


def test_image_folder_labels_of_drops_skipped(tmp_path):
    _save(tmp_path / "a" / "1.png", _rgb(5, 5))
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "2.png").write_bytes(b"garbage")
    _save(tmp_path / "c" / "3.png", _rgb(5, 5))
    ds = ImageFolder(tmp_path, Preprocess())
    assert labels_of(ds).tolist() == [0, 1, 2]
    with pytest.warns(UserWarning, match="2.png"):
        got = list(iter_batches(ds, ["x"], 4, with_labels=True))
    assert got[0][0]["x"].shape == (2, 3, 5, 5) and got[0][1].tolist() == [0, 2]
    assert labels_of(ds).tolist() == [0, 2]


def test_image_folder_errors(tmp_path):
    with pytest.raises(DataError, match="no images found"):
        ImageFolder(tmp_path, Preprocess())
    with pytest.raises(DataError, match="does not exist"):
        ImageFolder(tmp_path / "nope", Preprocess())
    _save(tmp_path / "a.png", _rgb(5, 5))
    with pytest.raises(DataError, match="preset"):
        ImageFolder(tmp_path, None)
    with pytest.raises(DataError, match="on_error"):
        ImageFolder(tmp_path, Preprocess(), on_error="ignore")


# ---- IDX -------------------------------------------------------------------------------------


@pytest.fixture
def idx_pair(tmp_path):
    images = np.arange(5 * 4 * 3, dtype=np.uint8).reshape(5, 4, 3)
    labels = np.array([3, 1, 4, 1, 5], dtype=np.uint8)
    return (images, labels, _idx(tmp_path / "t10k-images-idx3-ubyte", images),
            _idx(tmp_path / "t10k-labels-idx1-ubyte", labels))


def test_idx_raw_and_gz(idx_pair, tmp_path):
    images, labels, ipath, lpath = idx_pair
    ds = IDXDataset(ipath, lpath)
    assert len(ds) == 5 and isinstance(ds.images, np.memmap)
    s = ds[2]
    assert s[None].shape == (4, 3) and s[None].dtype == np.uint8 and s.label == 4
    np.testing.assert_array_equal(s[None], images[2])
    np.testing.assert_array_equal(labels_of(ds), [3, 1, 4, 1, 5])
    gz = IDXDataset(_idx(tmp_path / "i.gz", images, gz=True), _idx(tmp_path / "l.gz", labels, gz=True))
    np.testing.assert_array_equal(np.stack([s[None] for s in gz]), images)
    np.testing.assert_array_equal(gz.labels, labels)
    fm = IDXDataset(ipath, lpath, preprocess="fashion-mnist")[1][None]
    assert fm.shape == (1, 4, 3) and fm.dtype == np.float32
    assert fm[0, 3, 2] == pytest.approx((images[1, 3, 2] / 255 - 0.2860) / 0.3530, abs=1e-5)
    wide = _idx(tmp_path / "wide-ubyte", np.arange(6, dtype=">i4").reshape(2, 3, 1))
    assert IDXDataset(wide)[1][None].tolist() == [[3], [4], [5]]


def test_idx_truncated_and_mismatched(idx_pair, tmp_path):
    images, labels, ipath, lpath = idx_pair
    cut = tmp_path / "cut-ubyte"
    cut.write_bytes(ipath.read_bytes()[:-5])
    expected = 16 + 60
    with pytest.raises(DataError, match=rf"cut-ubyte is truncated.*{expected} bytes.*has {expected - 5} bytes"):
        IDXDataset(cut)
    cutgz = tmp_path / "cut.gz"
    cutgz.write_bytes(gzip.compress(ipath.read_bytes()[:-5]))
    with pytest.raises(DataError, match=r"cut\.gz is truncated"):
        IDXDataset(cutgz)
    brokengz = tmp_path / "broken.gz"
    brokengz.write_bytes(gzip.compress(ipath.read_bytes())[:-12])
    with pytest.raises(DataError, match=r"broken\.gz is truncated or not a valid gzip"):
        IDXDataset(brokengz)
    few = _idx(tmp_path / "few-labels", labels[:4])
    with pytest.raises(DataError, match="5 images but .*few-labels holds 4 labels"):
        IDXDataset(ipath, few)
    bad = tmp_path / "bad-ubyte"
    bad.write_bytes(b"\x12\x34\x56\x78" + bytes(10))
    with pytest.raises(DataError, match="not an IDX file"):
        IDXDataset(bad)
    with pytest.raises(DataError, match="labels file"):
        IDXDataset(lpath)


# ---- CIFAR-10 binary -------------------------------------------------------------------------


def _cifar_records(labels):
    rng = np.random.default_rng(7)
    pixels = rng.integers(0, 256, size=(len(labels), 3072), dtype=np.uint8)
    return np.concatenate([np.array(labels, np.uint8)[:, None], pixels], axis=1), pixels


def test_cifar10_binary(tmp_path):
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    records, pixels = _cifar_records([3, 0, 9])
    (folder / "test_batch.bin").write_bytes(records.tobytes())
    ds = Cifar10Binary(tmp_path)
    assert len(ds) == 3
    np.testing.assert_array_equal(labels_of(ds), [3, 0, 9])
    s = ds[1]
    assert s.label == 0 and s[None].shape == (3, 32, 32) and s[None].dtype == np.uint8
    np.testing.assert_array_equal(s[None], pixels[1].reshape(3, 32, 32))
    pre = Cifar10Binary(folder / "test_batch.bin", preprocess="cifar10")[2][None]
    assert pre.shape == (3, 32, 32) and pre.dtype == np.float32
    # channel 2 (blue) plane starts at byte 2048; pixel (row 5, col 7)
    raw = pixels[2][2048 + 5 * 32 + 7]
    assert pre[2, 5, 7] == pytest.approx((raw / 255 - 0.4465) / 0.2616, abs=1e-5)
    assert isinstance(open_data(tmp_path), Cifar10Binary)
    with pytest.raises(DataError, match="data_batch_1.bin"):
        Cifar10Binary(tmp_path, split="train")


def test_cifar10_truncated_and_bad_label(tmp_path):
    records, _ = _cifar_records([3, 0, 9])
    cut = tmp_path / "test_batch.bin"
    cut.write_bytes(records.tobytes()[:-10])
    with pytest.raises(DataError, match=r"test_batch\.bin is truncated.*9209 bytes.*not a multiple of 3073.*6146"):
        Cifar10Binary(cut)
    records[1, 0] = 42
    bad = tmp_path / "bad.bin"
    bad.write_bytes(records.tobytes())
    with pytest.raises(DataError, match="record 1 has label 42"):
        Cifar10Binary(bad)


# ---- numpy files -----------------------------------------------------------------------------


def test_npy_dataset_and_batches(tmp_path):
    arr = np.arange(36, dtype=np.float32).reshape(6, 2, 3)
    np.save(tmp_path / "x.npy", arr)
    ds = NpyDataset(tmp_path / "x.npy")
    assert len(ds) == 6 and isinstance(ds.array, np.memmap) and labels_of(ds) is None
    np.testing.assert_array_equal(ds[5][None], arr[5])
    feeds = list(iter_batches(ds, ["x"], 4))
    assert [f["x"].shape for f in feeds] == [(4, 2, 3), (2, 2, 3)]
    assert feeds[1]["x"].dtype == np.float32
    np.testing.assert_array_equal(np.concatenate([f["x"] for f in feeds]), arr)
    # an input without a batch axis: each sample is a feed as it is
    one = list(iter_batches(ds, ["x"], 4, has_batch_axis=False))
    assert len(one) == 6 and one[0]["x"].shape == (2, 3)
    with pytest.raises(DataError, match="2 inputs"):
        list(iter_batches(ds, ["a", "b"], 2))


def test_npz_dataset(tmp_path):
    a = np.arange(15, dtype=np.float32).reshape(5, 3)
    b = np.arange(10, dtype=np.int64).reshape(5, 2)
    np.savez(tmp_path / "s.npz", a=a, b=b, y=np.array([1, 2, 3, 4, 5]))
    ds = NpzDataset(tmp_path / "s.npz", labels_key="y")
    assert len(ds) == 5 and set(ds.arrays) == {"a", "b"}
    assert isinstance(ds.arrays["a"], np.memmap)
    np.testing.assert_array_equal(labels_of(ds), [1, 2, 3, 4, 5])
    feeds = list(iter_batches(ds, ["a", "b"], 2, with_labels=True))
    assert [(f["a"].shape, f["b"].shape) for f, _ in feeds] == [((2, 3), (2, 2))] * 2 + [((1, 3), (1, 2))]
    assert feeds[2][1].tolist() == [5]
    np.testing.assert_array_equal(feeds[1][0]["b"], b[2:4])
    np.savez_compressed(tmp_path / "c.npz", a=a, b=b)
    np.testing.assert_array_equal(NpzDataset(tmp_path / "c.npz")[4]["a"], a[4])
    np.savez(tmp_path / "single.npz", a)
    assert list(NpzDataset(tmp_path / "single.npz")[0]) == [None]
    with pytest.raises(DataError, match="'b' which are not model inputs \\(a, c\\) and lacks 'c'"):
        list(iter_batches(ds, ["a", "c"], 2))
    with pytest.raises(DataError, match="lacks model input"):
        list(iter_batches(ds, ["a", "b", "c"], 2))


def test_npz_mismatched_first_dims(tmp_path):
    np.savez(tmp_path / "m.npz", a=np.zeros((5, 3)), b=np.zeros((4, 3)))
    with pytest.raises(DataError, match=r"m\.npz.*different first dimensions.*'a': \[5, 3\].*'b': \[4, 3\]"):
        NpzDataset(tmp_path / "m.npz")


def test_npz_folder_feeds_unchanged(tmp_path):
    np.savez(tmp_path / "01.npz", x=np.ones((2, 3), np.float32), y=np.zeros((2,), np.int64))
    np.savez(tmp_path / "00.npz", x=np.ones((1, 5), np.float32), y=np.zeros((1,), np.int64))
    ds = open_data(tmp_path)
    assert isinstance(ds, NpzFolder) and len(ds) == 2
    feeds = list(iter_batches(ds, ["x", "y"], 8))
    assert [f["x"].shape for f in feeds] == [(1, 5), (2, 3)]  # sorted by name, nothing stacked
    assert type(feeds[0]) is dict
    lab = NpzFolder(tmp_path, labels_key="y")
    assert labels_of(lab).tolist() == [0, 0, 0]
    assert list(next(iter(lab))) == ["x"]


def test_iterables_of_feeds_pass_through():
    a = np.ones((2, 3), np.float32)
    feed = {"x": np.zeros((4, 3), np.float32)}
    got = list(iter_batches([a, feed], ["x"], 16))
    assert got[0]["x"] is a and got[1] is feed
    gen = list(iter_batches((f for f in [feed]), ["x"], 1))
    assert gen[0] is feed
    with pytest.raises(DataError, match="single array but the model has 2 inputs"):
        list(iter_batches([a], ["x", "y"], 1))
    ds = ArrayDataset(np.zeros((3, 2)), labels=[4, 5, 6])
    assert [f["x"].shape for f in iter_batches(ds, "x", 2)] == [(2, 2), (1, 2)]
    assert ArrayDataset({"x": np.zeros((3, 2))})[0].label is None


def test_iter_batches_errors():
    ds = ArrayDataset({None: np.zeros((3, 2))})
    with pytest.raises(DataError, match="batch_size"):
        iter_batches(ds, ["x"], 0)
    with pytest.raises(DataError, match="has_batch_axis names 'z'"):
        iter_batches(ds, ["x"], 2, has_batch_axis={"z": False})
    mixed = [Sample({None: np.zeros((3, 4))}, source="s0.png"), Sample({None: np.zeros((3, 5))}, source="s1.png")]
    with pytest.raises(DataError, match=r"sample 1 \(s1.png\) has input 'x' of shape \[3, 5\]"):
        list(iter_batches(ArrayLike(mixed), ["x"], 2))
    with pytest.raises(DataError, match="no samples"):
        list(iter_batches([], ["x"], 1))


class ArrayLike(ArrayDataset):
    """A dataset yielding given samples (for shape-mismatch tests)."""

    def __init__(self, samples):
        self.samples = samples

    def __len__(self):
        return len(self.samples)

    def _sample(self, i):
        return self.samples[i]


# ---- open_data -------------------------------------------------------------------------------


def test_open_data_dispatch(tmp_path, idx_pair, class_folder):
    _, _, ipath, _ = idx_pair
    np.save(tmp_path / "x.npy", np.zeros((2, 3)))
    np.savez(tmp_path / "x.npz", a=np.zeros((2, 3)))
    assert isinstance(open_data(tmp_path / "x.npy"), NpyDataset)
    assert isinstance(open_data(str(tmp_path / "x.npz")), NpzDataset)
    idx = open_data(ipath)
    assert isinstance(idx, IDXDataset) and idx.labels.tolist() == [3, 1, 4, 1, 5]  # labels found beside it
    assert isinstance(open_data(class_folder, preprocess="imagenet"), ImageFolder)
    assert isinstance(open_data(np.zeros((4, 2))), ArrayDataset)
    feeds = [{"x": np.zeros((1, 2))}]
    assert open_data(feeds) is feeds
    ds = ArrayDataset(np.zeros((1, 2)))
    assert open_data(ds) is ds


def test_open_data_errors(tmp_path, class_folder):
    with pytest.raises(DataError, match=r"data path .*missing.npy does not exist"):
        open_data(tmp_path / "missing.npy")
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(DataError, match=r"notes\.txt: unknown data file type '\.txt'.*\.npy") as e:
        open_data(tmp_path / "notes.txt")
    assert "IDX" in str(e.value) and "CIFAR-10" in str(e.value)
    with pytest.raises(DataError, match="need a preprocess"):
        open_data(class_folder)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="holds no data"):
        open_data(empty)
    np.save(tmp_path / "x.npy", np.zeros((2, 3)))
    with pytest.raises(DataError, match="preprocess applies to images only"):
        open_data(tmp_path / "x.npy", preprocess="imagenet")
    with pytest.raises(DataError, match="cannot use a int"):
        open_data(3)


# ---- real images -----------------------------------------------------------------------------


def test_imagenet_dev_first_three_with_efficientnet_lite():
    if not IMAGENET_DEV.is_dir():
        pytest.skip(f"shared ImageNet dev images not found at {IMAGENET_DEV}")
    with open(IMAGENET_DEV / "labels.csv", newline="") as fh:
        rows = sorted(csv.DictReader(fh), key=lambda r: r["file"])[:3]
    ds = ImageFolder(IMAGENET_DEV, preset("efficientnet-lite"), labels="csv", limit=3)
    assert [p.name for p in ds.files] == [r["file"] for r in rows]
    samples = list(ds)
    assert [s[None].shape for s in samples] == [(3, 224, 224)] * 3
    assert all(s[None].dtype == np.float32 for s in samples)
    assert [s.label for s in samples] == [int(r["class_index"]) for r in rows]
    np.testing.assert_array_equal(labels_of(ds), [int(r["class_index"]) for r in rows])
    # hand computation for the first image: shorter side 256, center crop 224, (x - 127) / 128
    with Image.open(IMAGENET_DEV / rows[0]["file"]) as im:
        im = im.convert("RGB")
        w, h = im.size
        if min(w, h) != 256:
            im = im.resize((round(w * 256 / min(w, h)) if w > h else 256, 256 if w > h else round(h * 256 / w)),
                           Image.Resampling.BILINEAR)
        px = np.asarray(im, dtype=np.float64)
    top, left = round((px.shape[0] - 224) / 2), round((px.shape[1] - 224) / 2)
    want = (px[top : top + 224, left : left + 224] - 127) / 128
    np.testing.assert_allclose(samples[0][None], want.transpose(2, 0, 1), rtol=0, atol=1e-6)
    feed = next(iter_batches(ds, ["input"], 3))
    assert feed["input"].shape == (3, 3, 224, 224)
