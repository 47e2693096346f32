import numpy as np
import pytest

from amct_nb.quant import compute_qparams, fake_quantize
from amct_nb.quant.ranges import ALGORITHMS, RangeSpec, compute_range, expected_mse, range_errors
from amct_nb.quant.stats import TensorStats


def test_stats_exact_minmax_counts_and_nonfinite():
    s = TensorStats("t")
    s.update(np.array([1.0, -2.0, np.nan, np.inf, -np.inf, 3.0], np.float32))
    s.update(np.array([[0.5, 7.0]], np.float32))
    assert (s.min, s.max) == (-2.0, 7.0)
    assert (s.nan, s.posinf, s.neginf) == (1, 1, 1)
    assert s.count == 5
    assert s.histogram().counts.sum() == 5


def test_histogram_growth_is_exact():
    rng = np.random.default_rng(0)
    a = rng.normal(0, 1, 10000).astype(np.float32)
    b = rng.normal(0, 50, 10000).astype(np.float32)  # forces the bins to widen
    s = TensorStats("t", max_samples=1 << 20)
    s.update(a)
    s.update(b)
    h = s.histogram()
    assert h.counts.sum() == 20000
    both = np.concatenate([a, b]).astype(np.float64)
    expect, _ = np.histogram(both, bins=h.edges)
    np.testing.assert_array_equal(h.counts, expect)


def test_merge_equals_single_pass():
    """Merging two runs gives the histogram of one run over all the data, bin for bin."""
    rng = np.random.default_rng(1)
    parts = [rng.normal(0, 1 + i, 5000).astype(np.float32) for i in range(3)]
    one = TensorStats("t", max_samples=1 << 20)
    for p in parts:
        one.update(p)
    a, b = TensorStats("t", max_samples=1 << 20), TensorStats("t", max_samples=1 << 20)
    a.update(parts[0])
    b.update(parts[1])
    b.update(parts[2])
    a.merge(b)
    assert (a.min, a.max, a.count) == (one.min, one.max, one.count)
    ha, ho = a.histogram(), one.histogram()
    assert ha.exp == ho.exp  # the histogram's resolution depends on the final min/max only
    ha, ho = ha.trimmed(), ho.trimmed()
    assert ha.k0 == ho.k0 and np.array_equal(ha.counts, ho.counts) and ho.counts.sum() == 15000
    assert not np.array_equal(ha.counts, TensorStats_from(parts[0]).histogram().coarsen(len(ha.counts)).counts)


def TensorStats_from(x):
    s = TensorStats("t", max_samples=1 << 20)
    s.update(x)
    return s


def test_abs_histogram():
    s = TensorStats("t", max_samples=1 << 20)
    x = np.array([-3.0, -1.0, 1.0, 2.5], np.float32)
    s.update(x)
    h = s.histogram().abs()
    assert h.counts.sum() == 4 and h.edges[0] >= 0


def test_memory_does_not_grow_with_samples():
    """Calibration streams: the memory a pass holds at its peak and keeps afterwards is the same for
    200 and for 2000 samples (runs of 64 samples either way; a pass that kept activations would
    need ten times more)."""
    import tracemalloc

    import models

    import amct_nb as an

    p = an.prepare(models.conv_bn_relu())

    def pass_over(n):
        def feeds():
            r = np.random.default_rng(0)
            for _ in range(n):
                yield r.standard_normal((1, 4, 16, 16), dtype=np.float32)

        an.collect_stats(p, feeds(), progress=False)  # warm-up: sessions, caches, imports
        tracemalloc.start()
        obs = an.collect_stats(p, feeds(), progress=False)
        kept, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert obs["x"].count == n * 4 * 16 * 16
        return kept, peak

    kept_few, peak_few = pass_over(200)
    kept_many, peak_many = pass_over(2000)
    assert peak_many < 1.1 * peak_few and kept_many < 1.1 * kept_few, (peak_few, peak_many, kept_few, kept_many)


def test_expected_mse_matches_empirical():
    rng = np.random.default_rng(3)
    x = np.concatenate([rng.normal(0, 1, 400000), rng.exponential(2, 100000)]).astype(np.float32)
    s = TensorStats("t", max_samples=1 << 21)
    s.update(x)
    h = s.histogram().coarsen(1024)
    for lo, hi in [(-4.0, 10.0), (-2.0, 3.0), (-1.0, 1.0)]:
        sc, z = compute_qparams(lo, hi)
        want = float(((fake_quantize(x, sc, z, 0, 255) - x) ** 2).mean())
        got = float(expected_mse(h, np.array([sc], np.float64), np.array([z]), 0, 255)[0]) / h.counts.sum()
        assert got == pytest.approx(want, rel=0.03)


@pytest.mark.parametrize("n", [200_000, 4_000_000])
def test_range_algorithms_on_outlier_distribution(n):
    rng = np.random.default_rng(4)
    x = np.concatenate([rng.normal(0, 1, n), [60.0]]).astype(np.float32)
    s = TensorStats("t")
    for part in np.array_split(x, 8):
        s.update(part)
    assert s.histogram().counts.sum() == pytest.approx(x.size, rel=0.01)
    mm = compute_range(s, RangeSpec("minmax"))
    assert mm == (pytest.approx(float(x.min())), 60.0)
    errs = range_errors(s, RangeSpec())
    assert errs["percentile"]["hi"] < 10  # percentile always clips a lone outlier
    # MSE keeps the outlier while clipping it costs more than the coarser grid (1 in 2e5),
    # and clips it once it is rare enough (1 in 4e6); it has the lowest error either way
    assert (errs["mse"]["hi"] > 30) == (n == 200_000)
    assert errs["mse"]["mse"] <= min(e["mse"] for e in errs.values()) * 1.001


def test_range_nonnegative_keeps_zero():
    s = TensorStats("t")
    s.update(np.random.default_rng(5).exponential(1, 100000).astype(np.float32))
    for a in ALGORITHMS:
        lo, hi = compute_range(s, RangeSpec(a))
        assert lo == 0.0 and 0 < hi <= s.max


def test_empty_stats_range():
    s = TensorStats("t")
    s.update(np.array([np.nan], np.float32))
    assert compute_range(s, RangeSpec("mse")) == (0.0, 0.0)


def test_entropy_not_fooled_by_relu_zero_spike():
    rng = np.random.default_rng(6)
    x = np.clip(rng.normal(0.5, 1.2, 400000), 0, 6).astype(np.float32)  # ~35% exact zeros, like ReLU6
    s = TensorStats("t")
    s.update(x)
    lo, hi = compute_range(s, RangeSpec("entropy"))
    assert lo == 0.0 and 2.5 < hi <= 6.0
