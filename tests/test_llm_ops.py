"""Integer LLM operations (golden/planes, norm, rope, activation, attention, vocab,
gguf_file) against float64 references and exact integer arithmetic.  Seeded, fast."""

from __future__ import annotations

import math
import struct
from fractions import Fraction

import numpy as np
import pytest

from golden.activation import (
    U_MAX,
    exp2_neg,
    log2_q16,
    sigmoid_q15,
    silu_float,
    silu_int,
    swiglu_float,
    swiglu_int,
)
from golden.attention import KVCache, attention_float, attention_int
from golden.gguf_file import decode_blocks, dequantize
from golden.norm import (
    NormWeights,
    layernorm_float,
    layernorm_int,
    rmsnorm_float,
    rmsnorm_int,
    rsqrt_int,
)
from golden.planes import (
    RowWeight,
    add_aligned,
    linear_int,
    linear_int_blocks,
    matmul_planes,
    narrow,
)
from golden.rope import rope_float, rope_int
from golden.vocab import argmax_int, embed_int

SEED = 1234


@pytest.fixture
def rng():
    print(f"seed {SEED}")
    return np.random.default_rng(SEED)


def to_rows(x, frac=24, bits=32):
    """float rows -> (int, exponent) with ``bits`` bits per row."""
    q = np.rint(np.asarray(x) * 2.0**frac).astype(np.int64)
    return narrow(q, np.full(q.shape[:-1] + (1,), -frac), bits)


def val(q, e):
    return np.asarray(q, np.float64) * np.exp2(np.asarray(e, np.float64))


# ---- planes ------------------------------------------------------------------------------
def test_narrow_fits_and_rounds_half_up(rng):
    q = rng.integers(-(2**40), 2**40, size=(50, 33))
    q[3] = 0
    q[4, :] = 5  # already narrow: unchanged
    e = rng.integers(-30, 10, size=(50, 1))
    out, eo = narrow(q, e, 16)
    assert out.min() >= -(2**15) and out.max() <= 2**15 - 1
    for r in range(50):
        k = int(eo[r, 0] - e[r, 0])
        for j in range(33):
            exact = Fraction(int(q[r, j]), 2**k)
            want = math.floor(exact + Fraction(1, 2))
            assert int(out[r, j]) == max(-(2**15), min(2**15 - 1, want))
    assert np.array_equal(out[4], q[4]) and eo[4, 0] == e[4, 0]


def test_add_aligned_exact_when_it_fits(rng):
    a = rng.integers(-(2**20), 2**20, size=(8, 16))
    b = rng.integers(-(2**20), 2**20, size=(8, 16))
    s, es = add_aligned(a, np.full((8, 1), -3), b, np.full((8, 1), -5), 32)
    np.testing.assert_array_equal(val(s, es), val(a, -3) + val(b, -5))
    big = rng.integers(-(2**30), 2**30, size=(4, 16))
    s, es = add_aligned(big, np.zeros((4, 1)), big, np.zeros((4, 1)), 32)
    assert np.abs(s).max() < 2**31
    assert np.max(np.abs(val(s, es) - 2.0 * big)) <= 2.0 ** es.max()


def test_matmul_planes_is_exact(rng):
    x = rng.integers(-(2**15), 2**15, size=(5, 300))
    w = rng.integers(-127, 128, size=(300, 7))
    want = np.array([[sum(int(x[i, k]) * int(w[k, j]) for k in range(300)) for j in range(7)]
                     for i in range(5)])
    np.testing.assert_array_equal(matmul_planes(x, w), want)


@pytest.mark.parametrize("group", [None, 32])
def test_row_weight_bounds_and_linear(rng, group):
    w = rng.normal(0, 0.05, size=(24, 96))
    w[5] *= 40  # an outlier row
    rw = RowWeight(w, group=group)
    assert np.abs(rw.q.astype(int)).max() <= 127
    g = 96 if group is None else group
    scale = np.repeat(rw.r, g, axis=1) * 2.0 ** (rw.f - 23)
    assert np.all(np.abs(rw.dequantize() - w) <= scale / 2 + 1e-18)
    x = rng.integers(-(2**15), 2**15, size=(6, 96))
    x[0] = np.where(rw.q[5] >= 0, 2**15 - 1, -(2**15))  # the largest sum this row can get
    acc, e = linear_int(x, np.full((6, 1), -10), rw)
    acc2, e2 = linear_int_blocks(x, np.full((6, 1), -10), rw)
    np.testing.assert_array_equal(acc, acc2)
    np.testing.assert_array_equal(e, e2)
    assert np.abs(acc).max() < 2**31  # int32, by the choice of the shift
    s = rw.shift(16)
    np.testing.assert_array_equal(e, -10 + rw.f - 23 + s)
    ref = (x.astype(object) @ rw.w_int.T.astype(object))  # exact Python ints
    # one rounding (<= 1/2 unit of 2**s) per block and plane, and per block for the low
    # plane's +128 (the offline plane bias)
    terms = 3 * (96 // g)
    err = np.abs(acc.astype(object) * 2**s - ref).max()
    assert err <= terms * 2**s // 2, (err, terms, s)
    assert np.abs(acc).max() >= 2**28  # and the shift is not wastefully large


def test_from_blocks_q4_1_is_exact(rng):
    n = rng.integers(0, 16, size=(8, 64))
    d = rng.uniform(0.01, 0.05, size=(8, 2)).astype(np.float16).astype(np.float64)
    m = -8 * d + rng.normal(0, 0.01, size=(8, 2)).astype(np.float16).astype(np.float64)
    wf = n * np.repeat(d, 32, 1) + np.repeat(m, 32, 1)
    rw = RowWeight.from_blocks(n - 8, d, m + 8 * d)
    np.testing.assert_allclose(rw.dequantize(), wf, rtol=0, atol=1e-15)
    x = rng.integers(-(2**15), 2**15, size=(3, 64))
    np.testing.assert_array_equal(linear_int(x, np.zeros((3, 1)), rw)[0],
                                  linear_int_blocks(x, np.zeros((3, 1)), rw)[0])


# ---- norm --------------------------------------------------------------------------------
def test_rsqrt_int_precision(rng):
    v = np.concatenate([rng.integers(1, 2**30, 20000), [1, 2, 3, 4, 2**29, 2**30 - 1]])
    y, p = rsqrt_int(v)
    rel = np.abs(y * np.exp2(-p.astype(float)) * np.sqrt(v.astype(float)) - 1)
    assert rel.max() < 2**-26
    with pytest.raises(ValueError, match="rsqrt_int: v must be"):
        rsqrt_int(np.array([0]))


def test_rmsnorm_and_layernorm_vs_float(rng):
    h = rng.normal(size=(16, 96))
    h[:, 7] *= 60  # outlier channel
    h[3] *= 1e-3  # a small row
    g = rng.normal(1, 0.3, 96)
    hq, eh = to_rows(h)
    y, ey = rmsnorm_int(hq, eh, NormWeights(g, 1e-5))
    ref = rmsnorm_float(val(hq, eh), g, 1e-5)
    assert np.abs(y).max() <= 2**15 - 1
    assert np.max(np.abs(val(y, ey) - ref) / np.exp2(ey)) <= 2.0  # within 2 output LSB
    beta = rng.normal(size=96)
    y, ey = layernorm_int(hq, eh, NormWeights(g, 1e-5, beta=beta))
    ref = layernorm_float(val(hq, eh), g, 1e-5, beta)
    assert np.max(np.abs(val(y, ey) - ref) / np.exp2(ey)) <= 5.0


# ---- activation --------------------------------------------------------------------------
def test_exp2_and_sigmoid_tables(rng):
    u = np.concatenate([np.arange(0, 70000), rng.integers(0, U_MAX + 1, 50000), [U_MAX]])
    assert np.abs(exp2_neg(u) - 2**15 * np.exp2(-u / 65536.0)).max() <= 2.0
    x = rng.normal(0, 4, size=(4, 2000))
    xq, ex = to_rows(x, bits=16)
    s = sigmoid_q15(xq, ex) / 2**15
    assert np.abs(s - 1 / (1 + np.exp(-val(xq, ex)))).max() <= 2 * 2**-15
    d = rng.integers(0, 2**45, 1000)
    u = log2_q16(d, np.full(1000, -30))
    np.testing.assert_allclose(u, np.minimum(np.rint(d * 2.0**-30 * math.log2(math.e) * 65536),
                                             U_MAX), atol=1.0)


def test_silu_swiglu_vs_float(rng):
    g = rng.normal(0, 3, size=(8, 256))
    u = rng.normal(0, 1, size=(8, 256))
    gq, eg = to_rows(g, bits=16)
    uq, eu = to_rows(u, bits=16)
    s, es = silu_int(gq, eg)
    assert np.max(np.abs(val(s, es) - silu_float(val(gq, eg))) / np.exp2(es)) <= 3.0
    m, em = swiglu_int(gq, eg, uq, eu)
    ref = swiglu_float(val(gq, eg), val(uq, eu))
    assert np.max(np.abs(val(m, em) - ref) / np.exp2(em)) <= 4.0


# ---- rope --------------------------------------------------------------------------------
def test_rope_float_matches_complex_rotation(rng):
    x = rng.normal(size=(5, 3, 16))
    pos = np.array([0, 1, 7, 100, 4000])
    z = x[..., 0::2] + 1j * x[..., 1::2]
    theta = pos[:, None, None] * 500.0 ** (-np.arange(8) * 2 / 16)[None, None, :]
    want = z * np.exp(1j * theta)
    got = rope_float(x, pos, 500.0)
    np.testing.assert_allclose(got[..., 0::2], want.real, atol=1e-12)
    np.testing.assert_allclose(got[..., 1::2], want.imag, atol=1e-12)
    np.testing.assert_allclose(got[0], x[0])  # position 0: identity


def test_rope_int_vs_float(rng):
    x = rng.normal(size=(6, 4, 64))
    pos = np.arange(6) * 37
    xq, ex = narrow(np.rint(x * 2**20).astype(np.int64), np.full((6, 4, 1), -20), 16)
    y, ey = rope_int(xq, ex, pos, 100000.0)
    ref = rope_float(val(xq, ex), pos, 100000.0)
    assert np.max(np.abs(val(y, ey) - ref) / np.exp2(ey)) <= 2.5


# ---- attention ---------------------------------------------------------------------------
def _heads(x, bits=15):
    return narrow(np.rint(x * 2**20).astype(np.int64), np.full(x.shape[:2] + (1,), -20), bits)


def test_gqa_float_matches_naive_loops(rng):
    q, k, v = rng.normal(size=(5, 6, 8)), rng.normal(size=(5, 2, 8)), rng.normal(size=(5, 2, 8))
    got = attention_float(q, k, v, np.arange(5))
    for t in range(5):
        for h in range(6):
            s = np.array([q[t, h] @ k[j, h // 3] for j in range(t + 1)]) / math.sqrt(8)
            p = np.exp(s - s.max())
            p /= p.sum()
            np.testing.assert_allclose(got[t, h], p @ v[: t + 1, h // 3], atol=1e-12)


@pytest.mark.parametrize("d", [64, 32])
def test_gqa_int_vs_float_and_decode_bit_exact(rng, d):
    T, hq, hkv = 24, 6, 2
    q, k, v = (rng.normal(0, 2, size=(T, h, d)) for h in (hq, hkv, hkv))
    k[0] *= 8  # an attention sink with a large key
    (qq, eq), (kq, ek), (vq, ev) = _heads(q), _heads(k), _heads(v)
    pos = np.arange(T)
    c, ec = attention_int(qq, eq, kq, ek, vq, ev, pos)
    ref = attention_float(val(qq, eq), val(kq, ek), val(vq, ev), pos).reshape(T, hq * d)
    got = val(c, ec)
    cos = np.sum(got * ref, 1) / np.linalg.norm(got, axis=1) / np.linalg.norm(ref, axis=1)
    assert cos.min() > 0.99999
    # decode one row at a time through a KV cache: bit-identical
    cache = KVCache(1)
    rows = []
    for t in range(T):
        kk, vv, ekk, evv = cache.append(0, kq[t:t + 1], vq[t:t + 1], ek[t:t + 1], ev[t:t + 1])
        rows.append(attention_int(qq[t:t + 1], eq[t:t + 1], kk, ekk, vv, evv, pos[t:t + 1]))
    np.testing.assert_array_equal(np.concatenate([r[0] for r in rows]), c)
    np.testing.assert_array_equal(np.concatenate([r[1] for r in rows]), ec)


def test_gqa_rejects_bad_head_counts(rng):
    with pytest.raises(ValueError, match="not a multiple of"):
        attention_float(np.zeros((1, 5, 4)), np.zeros((1, 2, 4)), np.zeros((1, 2, 4)), [0])


# ---- vocabulary --------------------------------------------------------------------------
def test_embedding_gather_and_argmax(rng):
    table = RowWeight(rng.normal(size=(50, 32)))
    h, e = embed_int([3, 0, 49], table)
    np.testing.assert_allclose(val(h, e), table.dequantize()[[3, 0, 49]], rtol=0, atol=0)
    with pytest.raises(ValueError, match="token id 50 at position 1"):
        embed_int([3, 50], table)
    assert list(argmax_int(np.array([[1, 5, 5, 2], [-3, -1, -2, -1]]))) == [1, 1]


# ---- GGUF block formats ------------------------------------------------------------------
def _f16(x):
    return struct.pack("<e", x)


def test_gguf_blocks_packed_by_hand():
    q8 = _f16(0.5) + bytes(np.arange(-16, 16, dtype=np.int8).tobytes())
    np.testing.assert_array_equal(dequantize("Q8_0", np.frombuffer(q8, np.uint8), (1, 32)),
                                  [np.arange(-16, 16) * 0.5])
    nib = np.arange(32) % 16  # element j<16 in low nibbles, j>=16 in high nibbles
    qs = bytes(int(nib[j]) | (int(nib[j + 16]) << 4) for j in range(16))
    np.testing.assert_array_equal(
        dequantize("Q4_1", np.frombuffer(_f16(0.25) + _f16(-1.0) + qs, np.uint8), (1, 32)),
        [nib * 0.25 - 1.0])
    np.testing.assert_array_equal(
        dequantize("Q4_0", np.frombuffer(_f16(2.0) + qs, np.uint8), (1, 32)), [(nib - 8) * 2.0])
    with pytest.raises(ValueError, match="type Q2_K is not supported"):
        dequantize("Q2_K", np.zeros(10, np.uint8), (1, 32), "x")
    with pytest.raises(ValueError, match="bytes do not hold 256 Q6_K values"):
        dequantize("Q6_K", np.zeros(209, np.uint8), (1, 256), "x")
    with pytest.raises(ValueError, match="bytes do not hold"):
        dequantize("Q8_0", np.zeros(33, np.uint8), (1, 32), "x")


@pytest.mark.parametrize("kind", ["Q8_0", "Q4_0", "Q4_1"])
def test_gguf_dequantize_matches_gguf_package(rng, kind):
    gguf = pytest.importorskip("gguf", reason="the gguf package (dev extra) is not installed")
    qt = getattr(gguf.GGMLQuantizationType, kind)
    w = rng.normal(size=(12, 96)).astype(np.float32)
    raw = gguf.quants.quantize(w, qt)
    ours = dequantize(kind, raw, (12, 96))
    np.testing.assert_array_equal(ours, gguf.quants.dequantize(raw, qt).astype(np.float64))
    qv, d, off = decode_blocks(kind, raw, (12, 96))
    rebuilt = qv * np.repeat(d, 32, 1) + (0 if off is None else np.repeat(off, 32, 1))
    np.testing.assert_allclose(rebuilt, ours, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(RowWeight.from_blocks(qv, d, off).dequantize(), ours)


#: where the f16 scale fields of a block sit (the rest of a random block is any bytes)
_F16_FIELDS = {"Q5_0": [0], "Q5_1": [0, 2], "Q4_K": [0, 2], "Q5_K": [0, 2], "Q6_K": [208]}


@pytest.mark.parametrize("kind", sorted(_F16_FIELDS))
def test_gguf_block_types_match_gguf_package(kind, base_seed):
    """Q5_0/Q5_1 and the K-quants (Q4_K, Q5_K, Q6_K: the usual types of llama.cpp's
    Q4_K_M / Q5_K_M files) decoded here against ``gguf.quants`` on random blocks (finite
    f16 scales), and their int8 block form (`decode_blocks`: groups of 32, 16 for Q6_K)
    rebuilding the same values exactly."""
    gguf = pytest.importorskip("gguf", reason="the gguf package (dev extra) is not installed")
    seed = base_seed + sorted(_F16_FIELDS).index(kind)
    rng = np.random.default_rng(seed)
    qt = getattr(gguf.GGMLQuantizationType, kind)
    per, size = gguf.GGML_QUANT_SIZES[qt]
    rows, n = 6, 512
    raw = rng.integers(0, 256, (rows * n // per, size), dtype=np.uint8)
    for col in _F16_FIELDS[kind]:
        f16 = rng.uniform(-0.05, 0.05, raw.shape[0]).astype(np.float16)
        raw[:, col:col + 2] = f16.view(np.uint8).reshape(-1, 2)
    raw = raw.reshape(-1)
    ours = dequantize(kind, raw, (rows, n))
    ref = gguf.quants.dequantize(raw, qt).astype(np.float64).reshape(rows, n)
    # ours is exact (float64); gguf's is float32 (``d sc v - dmin m`` rounds there)
    np.testing.assert_allclose(ours, ref, rtol=0, atol=np.abs(ref).max() * 2.0**-22,
                               err_msg=f"seed {seed}")
    qv, d, off = decode_blocks(kind, raw, (rows, n))
    g = n // d.shape[1]
    assert g == (16 if kind == "Q6_K" else 32)
    assert qv.min() >= {"Q6_K": -32}.get(kind, -16) and qv.max() <= 31
    rebuilt = qv * np.repeat(d, g, 1) + (0 if off is None else np.repeat(off, g, 1))
    np.testing.assert_array_equal(rebuilt, ours, err_msg=f"seed {seed}")
    w = RowWeight.from_blocks(qv, d, off, group=g)
    # exact on the grid of the largest scale; a small one rounded to 2**-23 of it
    tol = np.abs(d).max() * 2.0**-22 * (np.abs(qv).max() + 1 + (0 if off is None else 32))
    np.testing.assert_allclose(w.dequantize(), ours, rtol=0, atol=tol)


def test_attention_products_from_int8_digits(rng):
    """The machine's way to the attention products of `attention_int` (int32 values only):
    15-bit q, k and Q14 exps split into two int8 digits, four MXM partials, combined
    exactly; equal to the rounded exact products (sq = 4 for d = 64, V_SHIFT = 8)."""
    from golden.attention import V_SHIFT
    from golden.planes import digit_matmul, shift_round, signed_digits

    q = rng.integers(-(2**14), 2**14, (5, 64))
    k = rng.integers(-(2**14), 2**14, (64, 300))
    q[0], k[:, 0] = 2**14 - 1, -(2**14)  # the extremes
    assert np.array_equal(digit_matmul(q, k, 4), shift_round(q @ k, 4))
    assert np.abs(digit_matmul(q, k, 4)).max() < 2**30
    pe = rng.integers(0, 2**14 + 1, (5, 300))
    pe[:, 0] = 2**14  # the row max's exp
    v = rng.integers(-(2**14), 2**14, (300, 64))
    assert np.array_equal(digit_matmul(pe, v, V_SHIFT), shift_round(pe @ v, V_SHIFT))
    hi, lo = signed_digits(np.arange(-(2**14), 2**14))
    assert hi.min() >= -64 and hi.max() <= 64 and lo.min() >= -128 and lo.max() <= 127
    with pytest.raises(ValueError, match="leaves int8"):
        digit_matmul(np.array([[2**15 - 1]]), np.array([[1]]), 0)
