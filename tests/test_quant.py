import numpy as np
import pytest

from amct_nb.quant import (
    PAIR_LIMIT,
    bias_min_scale,
    compute_qparams,
    fake_quantize,
    pair_guard,
    pair_safe_quantize,
    qrange,
    quantize_bias,
    quantize_weight,
)


def test_qrange():
    assert qrange(8, False) == (0, 255)
    assert qrange(8, True) == (-128, 127)
    assert qrange(8, True, narrow=True) == (-127, 127)


def test_qparams_asymmetric_covers_range_and_zero_exact():
    s, z = compute_qparams(-1.0, 3.0)
    assert s == pytest.approx(4.0 / 255, rel=1e-6)
    assert z == 64  # round(0 - (-1)/s) = 63.75 -> 64
    x = np.array([0.0], np.float32)
    assert fake_quantize(x, s, z, 0, 255)[0] == 0.0


def test_qparams_relu_range_has_zero_point_zero():
    s, z = compute_qparams(0.0, 6.0)
    assert z == 0 and s == pytest.approx(6 / 255)


def test_qparams_symmetric():
    s, z = compute_qparams(-2.0, 1.0, symmetric=True, signed=True)
    assert z == 0 and s == pytest.approx(2.0 / 127)
    s, z = compute_qparams(-2.0, 1.0, symmetric=True, signed=False)
    assert z == 128


@pytest.mark.parametrize("lo,hi", [(0.0, 0.0), (np.nan, 1.0), (-np.inf, np.inf), (5.0, 5.0)])
def test_qparams_degenerate_is_finite_positive(lo, hi):
    s, z = compute_qparams(lo, hi)
    assert np.isfinite(s) and s > 0 and 0 <= z <= 255


def test_fake_quantize_matches_formula():
    x = np.linspace(-2, 5, 1001).astype(np.float32)
    s, z = compute_qparams(-1.0, 4.0)
    y = fake_quantize(x, s, z, 0, 255)
    q = np.clip(np.round(x / s) + z, 0, 255)
    np.testing.assert_array_equal(y, ((q - z) * s).astype(np.float32))
    inside = (x > -0.9) & (x < 3.9)
    assert np.abs(y - x)[inside].max() <= s / 2 + 1e-7


def test_quantize_weight_per_channel_error_bound():
    rng = np.random.default_rng(0)
    w = rng.normal(0, 1, (8, 4, 3, 3)).astype(np.float32) * np.arange(1, 9).reshape(8, 1, 1, 1)
    q, s = quantize_weight(w, 0)
    assert q.dtype == np.int8 and s.shape == (8,)
    assert np.abs(q).max() == 127 and q.min() >= -127
    err = np.abs(q * s.reshape(8, 1, 1, 1) - w)
    assert (err <= s.reshape(8, 1, 1, 1) / 2 + 1e-6).all()
    q2, s2 = quantize_weight(w, None)
    assert s2.shape == () and np.abs(q2 * s2 - w).max() <= s2 / 2 + 1e-6


def test_quantize_weight_zero_channel_and_min_scale():
    w = np.zeros((2, 3), np.float32)
    w[1] = [1.0, -2.0, 0.5]
    q, s = quantize_weight(w, 0, min_scale=np.array([0.0, 0.1]))
    assert s[0] == 1.0 and (q[0] == 0).all()
    assert s[1] == pytest.approx(0.1)  # floored above 2/127


def test_bias_int32_and_overflow_scale():
    b = np.array([0.5, -1e6], np.float32)
    sw = np.array([0.01, 1e-9], np.float32)
    q, bs, fits = quantize_bias(b, 0.02, sw)
    assert not fits
    ms = bias_min_scale(b, 0.02, True)
    q, bs, fits = quantize_bias(b, 0.02, np.maximum(sw, ms))
    assert fits and q.dtype == np.int32
    assert q[0] == round(0.5 / (0.02 * 0.01))


def test_pair_guard_enforces_limit_and_minimal_change():
    rng = np.random.default_rng(1)
    real = rng.normal(0, 40, (16, 64)).clip(-127, 127)
    q = np.round(real).astype(np.int32)
    fixed, n = pair_guard(q, real)
    a, b = fixed[:, 0::2], fixed[:, 1::2]
    same = np.sign(a) == np.sign(b)
    assert (np.abs(a + b)[same] <= PAIR_LIMIT).all()
    bad = ((q[:, 0::2] > 0) & (q[:, 1::2] > 0) & (q[:, 0::2] + q[:, 1::2] > 128)) | (
        (q[:, 0::2] < 0) & (q[:, 1::2] < 0) & (q[:, 0::2] + q[:, 1::2] < -128))
    assert n == int(bad.sum()) > 0
    # untouched pairs are unchanged
    assert (fixed[:, 0::2][~bad] == q[:, 0::2][~bad]).all()
    assert np.abs(fixed).max() <= 127


def test_pair_safe_quantize_beats_plain_fixing():
    rng = np.random.default_rng(2)
    rows = rng.normal(0, 1, (32, 96))
    rows[:, :2] = 3.5  # a same-signed pair at the maximum in every row
    scale = np.abs(rows).max(1) / 127
    q, s, _ = pair_safe_quantize(rows, scale)
    a, b = q[:, 0::2], q[:, 1::2]
    assert (np.abs(a + b)[np.sign(a) == np.sign(b)] <= 128).all()
    err_safe = ((q * s[:, None] - rows) ** 2).sum()
    q0 = np.clip(np.round(rows / scale[:, None]), -127, 127)
    fixed, _ = pair_guard(q0.astype(np.int32), rows / scale[:, None])
    err_fix = ((fixed * scale[:, None] - rows) ** 2).sum()
    assert err_safe <= err_fix
    # never coarser than 7-bit: scales at most 2x the plain ones (+ rounding)
    assert (s <= 2 * scale * 1.001 + 1e-12).all()
