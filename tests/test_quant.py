"""golden.quant: quantize_multiplier and requantize against exact rational arithmetic."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from golden.quant import (
    INT32_MAX,
    INT32_MIN,
    dequantize,
    dequantize_per_channel,
    multiplier_to_real,
    quantize_multiplier,
    quantize_per_channel_symmetric,
    quantize_per_tensor,
    requantize,
    symmetric_scale,
)

WIDE = {"qmin": INT32_MIN, "qmax": INT32_MAX}


# ----------------------------------------------------------------------------- references
def rq_fraction(acc: int, m: int, shift: int, zp: int = 0, qmin: int = -128,
                qmax: int = 127) -> int:
    """Exact single rounding: floor(acc * m * 2**(shift-31) + 1/2) + zp, saturated."""
    x = Fraction(acc * m) * Fraction(2) ** (shift - 31)
    return min(max(math.floor(x + Fraction(1, 2)) + zp, qmin), qmax)


def rq_pyint(acc: list[int], m: list[int], shift: list[int]) -> list[int]:
    """Exact with unbounded Python ints: floor((2*a*m + 2**(31-s)) / 2**(32-s))."""
    return [(2 * a * b + (1 << (31 - s))) >> (32 - s)
            for a, b, s in zip(acc, m, shift, strict=True)]


def rq_sign_magnitude(acc: np.ndarray, m: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """Independent vectorised exact formulation (no signed 64-bit multiply, no >> on negatives).

    P = |acc| * m < 2**62 exactly in uint64; k = 31 - shift; q = P >> k, r = P mod 2**k.
    acc >= 0: floor(P/2**k + 1/2) = q + (r >= 2**(k-1)).
    acc <  0: floor(-P/2**k + 1/2) = -(q + (r > 2**(k-1))).
    """
    neg = acc < 0
    mag = np.abs(acc.astype(np.int64)).astype(np.uint64)
    p = mag * m.astype(np.uint64)
    k = (31 - shift).astype(np.uint64)
    q = p >> k
    r = p & ((np.uint64(1) << k) - np.uint64(1))
    half = np.uint64(1) << (k - np.uint64(1))
    up = np.where(neg, r > half, r >= half)
    val = (q + up.astype(np.uint64)).astype(np.int64)
    return np.where(neg, -val, val)


# ----------------------------------------------------------------------------- quantize_multiplier
def qm_fraction(real: float) -> tuple[int, int]:
    """Exact reference for quantize_multiplier (round half away from zero on the mantissa)."""
    q, e = math.frexp(real)
    m = math.floor(Fraction(q) * 2**31 + Fraction(1, 2))
    if m == 2**31:
        m, e = 2**30, e + 1
    return (0, 0) if e < -31 else (m, e)


def test_quantize_multiplier_edges():
    assert quantize_multiplier(0.0) == (0, 0)
    assert quantize_multiplier(0.5) == (2**30, 0)
    assert quantize_multiplier(1.0) == (2**30, 1)
    assert quantize_multiplier(0.75) == (3 * 2**29, 0)
    # carry case: mantissa rounds up to 2**31 -> 2**30 and shift + 1
    assert quantize_multiplier(1.0 - 2.0**-40) == (2**30, 1)
    assert quantize_multiplier(0.5 * (1 - 2.0**-33)) == (2**30, 0)
    # largest representable without carry
    assert quantize_multiplier(2.0**30 * (1 - 2.0**-30)) == (2**31 - 2, 30)
    # smallest: shift -31; below flushes to zero like TFLite
    assert quantize_multiplier(2.0**-32) == (2**30, -31)
    assert quantize_multiplier(2.0**-32 * (1 - 2.0**-40)) == (2**30, -31)  # carry into range
    assert quantize_multiplier(2.0**-33) == (0, 0)
    assert quantize_multiplier(1e-300) == (0, 0)


@pytest.mark.parametrize("bad", [-1.0, -1e-30, float("nan"), float("inf"), -float("inf")])
def test_quantize_multiplier_rejects(bad):
    with pytest.raises(ValueError, match="quantize_multiplier"):
        quantize_multiplier(bad)


@pytest.mark.parametrize("big", [2.0**30, 2.0**30 * (1 - 2.0**-40), 1e10])
def test_quantize_multiplier_too_large(big):
    with pytest.raises(ValueError, match="too large"):
        quantize_multiplier(big)


@settings(max_examples=500, deadline=None)
@given(st.floats(min_value=2.0**-32, max_value=2.0**30, exclude_max=True))
def test_quantize_multiplier_round_trip(real):
    try:
        m, s = quantize_multiplier(real)
    except ValueError:
        assert real > 2.0**30 * (1 - 2.0**-32), real  # only the carry into 2**30 may raise
        return
    assert (m, s) == qm_fraction(real)
    assert 2**30 <= m <= 2**31 - 1 and -31 <= s <= 30
    rel = abs(Fraction(m) * Fraction(2) ** (s - 31) - Fraction(real)) / Fraction(real)
    assert rel <= Fraction(1, 2**31) < Fraction(1, 2**30), (real, m, s)
    assert math.isclose(multiplier_to_real(m, s), real, rel_tol=2.0**-30)


def test_quantize_multiplier_random_seeded():
    seed = 1234
    rng = np.random.default_rng(seed)
    reals = np.exp2(rng.uniform(-31.9, 29.9, 20000))
    for r in reals.tolist():
        m, s = quantize_multiplier(r)
        assert (m, s) == qm_fraction(r), f"seed={seed} real={r!r}"
        assert abs(m * 2.0 ** (s - 31) - r) <= r * 2.0**-31, f"seed={seed} real={r!r}"


# ----------------------------------------------------------------------------- requantize edges
EDGE_ACC = [INT32_MIN, INT32_MIN + 1, -(2**30), -12345, -3, -1, 0, 1, 3, 12345, 2**30,
            INT32_MAX - 1, INT32_MAX]
EDGE_M = [0, 1, 2, 2**29, 2**30, 2**30 + 1, 1518500250, 2**31 - 2, 2**31 - 1]
EDGE_S = [-31, -30, -17, -1, 0, 1, 2, 15, 29, 30]


def test_requantize_edges_vs_fraction():
    grid = np.array(np.meshgrid(EDGE_ACC, EDGE_M, EDGE_S, indexing="ij")).reshape(3, -1)
    acc, m, s = grid
    out32 = requantize(acc, m, s, **WIDE)
    out8 = requantize(acc, m, s)
    out_zp = requantize(acc, m, s, zero_point=-5, qmin=-100, qmax=90)
    for i in range(acc.size):
        a, mm, ss = int(acc[i]), int(m[i]), int(s[i])
        assert out32[i] == rq_fraction(a, mm, ss, 0, INT32_MIN, INT32_MAX), (a, mm, ss)
        assert out8[i] == rq_fraction(a, mm, ss), (a, mm, ss)
        assert out_zp[i] == rq_fraction(a, mm, ss, -5, -100, 90), (a, mm, ss)


def test_requantize_ties_round_half_up():
    # m = 2**30, shift 0 -> x = acc / 2: ties at odd acc round towards +inf
    acc = np.array([-5, -3, -1, 1, 3, 5])
    assert requantize(acc, 2**30, 0).tolist() == [-2, -1, 0, 1, 2, 3]
    # shift = 30, m = 2**30 -> x = acc * 2**29 (no rounding)
    assert requantize(np.array([1, -1]), 2**30, 30, **WIDE).tolist() == [2**29, -(2**29)]
    # shift = -31, m = 2**30 -> x = acc / 2**32; tie at +-2**31 is unreachable, check +-1/2
    assert requantize(np.array([INT32_MIN, INT32_MAX]), 2**30, -31).tolist() == [0, 0]
    assert requantize(np.array([INT32_MIN]), 2**31 - 1, -31).tolist() == [-1]


def test_requantize_int32_min_corner():
    # largest-magnitude product: -2**31 * (2**31 - 1) = -2**62 + 2**31 must not overflow int64
    a = np.array([INT32_MIN])
    assert requantize(a, 2**31 - 1, 30, **WIDE).tolist() == [INT32_MIN]
    assert requantize(a, 2**31 - 1, 30).tolist() == [-128]
    assert requantize(np.array([INT32_MAX]), 2**31 - 1, 30, **WIDE).tolist() == [INT32_MAX]
    assert requantize(a, 2**31 - 1, 0, **WIDE).tolist() == [rq_fraction(
        INT32_MIN, 2**31 - 1, 0, 0, INT32_MIN, INT32_MAX)]
    assert requantize(a, 0, 30).tolist() == [0]


def test_requantize_dtype_and_per_channel():
    acc = np.arange(-600, 600, 7, dtype=np.int32)[:168].reshape(14, 12)
    m = np.array([2**30 + 17 * i for i in range(12)])
    s = np.arange(-6, 6)
    out = requantize(acc, m, s)
    assert out.dtype == np.int8 and out.shape == acc.shape
    for c in range(12):
        assert np.array_equal(out[:, c], requantize(acc[:, c], int(m[c]), int(s[c])))
    assert requantize(acc, 2**30, 0, qmin=-32768, qmax=32767).dtype == np.int32
    assert requantize(acc, 2**30, 0, qmin=0, qmax=127).dtype == np.int8
    assert requantize(np.int32(7), 2**30, 0).shape == ()


@pytest.mark.parametrize(
    ("kwargs", "exc", "msg"),
    [
        ({"acc": [2**31], "multiplier": 2**30, "shift": 0}, ValueError, "acc out of range"),
        ({"acc": [INT32_MIN - 1], "multiplier": 2**30, "shift": 0}, ValueError, "acc"),
        ({"acc": [1], "multiplier": 2**31, "shift": 0}, ValueError, r"multiplier .*2147483647"),
        ({"acc": [1], "multiplier": -1, "shift": 0}, ValueError, "multiplier"),
        ({"acc": [1], "multiplier": 2**30, "shift": 31}, ValueError, r"shift .*\[-31, 30\]"),
        ({"acc": [1], "multiplier": 2**30, "shift": -32}, ValueError, "shift"),
        ({"acc": [1.5], "multiplier": 2**30, "shift": 0}, TypeError, "acc must have an integer"),
        ({"acc": [1], "multiplier": 0.5, "shift": 0}, TypeError, "multiplier"),
        ({"acc": [1], "multiplier": 1, "shift": 0, "qmin": 5, "qmax": 4}, ValueError, "qmin"),
        ({"acc": [1], "multiplier": 1, "shift": 0, "zero_point": 200}, ValueError,
         "zero_point"),
        ({"acc": np.zeros((2, 3), np.int32), "multiplier": np.ones(4, np.int64), "shift": 0},
         ValueError, "broadcast"),
    ],
)
def test_requantize_rejects(kwargs, exc, msg):
    with pytest.raises(exc, match=msg):
        requantize(**kwargs)


# ----------------------------------------------------------------------------- random cases
def random_cases(seed: int, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mix of full-range, moderate-result and exact-tie cases (all within the legal ranges)."""
    rng = np.random.default_rng(seed)
    k = n // 4
    # full range acc, multiplier, shift (many saturate at int32 for large shifts)
    a1 = rng.integers(INT32_MIN, INT32_MAX, k, endpoint=True)
    m1 = rng.integers(0, 2**31 - 1, k, endpoint=True)
    s1 = rng.integers(-31, 30, k, endpoint=True)
    # normalised multipliers, shifts in the useful range, results of moderate size
    a2 = rng.integers(-(2**20), 2**20, k)
    m2 = rng.integers(2**30, 2**31 - 1, k, endpoint=True)
    s2 = rng.integers(-24, 4, k, endpoint=True)
    # exact ties: m = 2**p, acc = (2t+1) * 2**q with q + p + s - 31 = -1
    p = rng.integers(0, 30, 4 * k, endpoint=True)
    s3 = rng.integers(-31, 30, 4 * k, endpoint=True)
    q = 30 - p - s3
    ok = (q >= 0) & (q <= 29)
    p, s3, q = p[ok][:k], s3[ok][:k], q[ok][:k]
    t = rng.integers(-(2**62), 2**62, q.size) >> (33 + q)
    a3 = (2 * t + 1) << q
    m3 = np.int64(1) << p
    # uniform everything, small shifts (rounding in every bit position)
    r = n - 3 * k - (k - q.size)
    a4 = rng.integers(INT32_MIN, INT32_MAX, r, endpoint=True)
    m4 = rng.integers(0, 2**31 - 1, r, endpoint=True)
    s4 = rng.integers(-31, -20, r, endpoint=True)
    cat = np.concatenate
    return cat([a1, a2, a3, a4]), cat([m1, m2, m3, m4]), cat([s1, s2, s3, s4])


def test_random_cases_generator_is_legal():
    a, m, s = random_cases(7, 4000)
    assert a.size == 4000
    assert a.min() >= INT32_MIN and a.max() <= INT32_MAX
    assert m.min() >= 0 and m.max() <= 2**31 - 1 and s.min() >= -31 and s.max() <= 30


@pytest.mark.parametrize("seed", [20240601])
def test_requantize_million_exact(seed):
    """>= 10**6 random cases: zero mismatches vs two independent exact formulations."""
    n = 1_000_000
    acc, m, s = random_cases(seed, n)
    out = requantize(acc, m, s, **WIDE).astype(np.int64)
    ref_vec = np.clip(rq_sign_magnitude(acc, m, s), INT32_MIN, INT32_MAX)
    bad = np.flatnonzero(out != ref_vec)
    assert bad.size == 0, f"seed={seed}: {bad.size} mismatches (sign-magnitude), first {bad[:5]}"
    ref_py = np.clip(np.array(rq_pyint(acc.tolist(), m.tolist(), s.tolist()), dtype=object),
                     INT32_MIN, INT32_MAX).astype(np.int64)
    bad = np.flatnonzero(out != ref_py)
    assert bad.size == 0, f"seed={seed}: {bad.size} mismatches (python int), first {bad[:5]}"
    # the int8 saturating path over the same cases
    out8 = requantize(acc, m, s)
    assert np.array_equal(out8, np.clip(ref_py, -128, 127)), f"seed={seed}"
    # at least ~1/4 of the cases are exact ties
    unclamped = (np.abs(ref_py) < 2**31 - 1)
    assert unclamped.mean() > 0.5, f"seed={seed}"


@pytest.mark.parametrize("seed", [1, 2])
def test_requantize_fraction_random(seed):
    """~2e4 random cases against exact Fraction arithmetic (with zero point, int8 and int32)."""
    acc, m, s = random_cases(seed, 10_000)
    out32 = requantize(acc, m, s, **WIDE)
    zp = 3
    out8 = requantize(acc, m, s, zero_point=zp)
    for i in range(acc.size):
        a, mm, ss = int(acc[i]), int(m[i]), int(s[i])
        assert out32[i] == rq_fraction(a, mm, ss, 0, INT32_MIN, INT32_MAX), \
            f"seed={seed} acc={a} m={mm} shift={ss}"
        assert out8[i] == rq_fraction(a, mm, ss, zp), f"seed={seed} acc={a} m={mm} shift={ss}"


@settings(max_examples=400, deadline=None)
@given(
    st.integers(INT32_MIN, INT32_MAX),
    st.integers(0, 2**31 - 1),
    st.integers(-31, 30),
    st.integers(-128, 127),
)
def test_requantize_hypothesis(acc, m, shift, zp):
    assert int(requantize(np.array([acc]), m, shift, **WIDE)[0]) == rq_fraction(
        acc, m, shift, 0, INT32_MIN, INT32_MAX)
    assert int(requantize(np.array([acc]), m, shift, zero_point=zp)[0]) == rq_fraction(
        acc, m, shift, zp)


def test_requantize_real_rescale():
    """Real factor via quantize_multiplier: error <= 1/2 LSB + the multiplier's 2**-31."""
    seed = 99
    rng = np.random.default_rng(seed)
    for real in np.exp2(rng.uniform(-20, 4, 50)).tolist():
        m, s = quantize_multiplier(real)
        acc = rng.integers(-(2**20), 2**20, 1000)
        out = requantize(acc, m, s, **WIDE)
        assert np.all(np.abs(out - acc * real) <= 0.5 + np.abs(acc) * real * 2.0**-31 + 1e-9), \
            f"seed={seed} real={real}"


# ----------------------------------------------------------------------------- quant helpers
def test_per_channel_symmetric():
    seed = 5
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((8, 20))
    w[3] = 0.0
    q, sc = quantize_per_channel_symmetric(w, axis=0)
    assert q.dtype == np.int8 and q.shape == w.shape and sc.shape == (8,)
    assert q.min() >= -127 and q.max() <= 127
    assert sc[3] == 1.0 and not q[3].any()
    assert np.all(np.abs(q).max(axis=1)[np.arange(8) != 3] == 127)
    err = np.abs(dequantize_per_channel(q, sc, axis=0) - w)
    assert np.all(err <= sc[:, None] / 2 + 1e-12), f"seed={seed}"
    q1, sc1 = quantize_per_channel_symmetric(w.T, axis=1)
    assert np.array_equal(q1, q.T) and np.array_equal(sc1, sc)


def test_per_tensor():
    x = np.array([-2.0, -0.01, 0.0, 0.015, 1.0, 5.0])
    s = symmetric_scale(2.0)
    q = quantize_per_tensor(x, s)
    assert q.dtype == np.int8
    assert q.tolist() == [-127, -1, 0, 1, 64, 127]  # rint(63.5) = 64 (half even), 5.0 saturates
    assert np.allclose(dequantize(q, s), q * s)
    assert symmetric_scale(0.0) == 1.0
    with pytest.raises(ValueError, match="scale"):
        quantize_per_tensor(x, 0.0)
    with pytest.raises(ValueError, match="NaN"):
        quantize_per_tensor(np.array([np.nan]), 1.0)
