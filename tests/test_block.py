"""golden.block: the int8 decoder block, its integer steps and its float64 reference."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest

from golden import tables
from golden.__main__ import main as cli_main
from golden.block import (
    PROB_ONE,
    STEP_PRIMITIVES,
    QLinear,
    attention_scores,
    causal_mask,
    clz32,
    error_metrics,
    gelu_table_lookup,
    linear,
    make_block,
    quantize_block,
    random_float_params,
    reciprocal_int,
    residual_add,
    softmax_int,
)

SMALL = (16, 32, 2, 64)
BIG = (64, 128, 4, 512)


@pytest.fixture(scope="module")
def small_block():
    return make_block(0, *SMALL)


# ----------------------------------------------------------------------------- accuracy
def check_accuracy(seed: int, shape: tuple[int, int, int, int], causal: bool = True) -> dict:
    block = make_block(seed, *shape, causal=causal)
    m = error_metrics(block, block.example_input())
    msg = f"seed={seed} shape={shape} causal={causal} metrics={m}"
    assert m["cosine_vs_float"] >= 0.999, msg
    assert m["frac_within_1lsb"] >= 0.95, msg
    return m


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_accuracy_small(seed):
    check_accuracy(seed, SMALL)


@pytest.mark.parametrize("seed", [0, 7])
def test_accuracy_small_non_causal(seed):
    check_accuracy(seed, SMALL, causal=False)


def _outlier_inputs(rng, n: int, seq: int, d: int) -> np.ndarray:
    """Residual-stream-like inputs: two persistent outlier channels (25x, 12x) and one
    massive activation on the first token (150), as real transformer layers carry."""
    x = rng.standard_normal((n, seq, d))
    x[..., 3] *= 25.0
    x[..., 11] *= -12.0
    x[:, 0, 7] = 150.0
    return x


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_accuracy_outlier_channels(seed):
    """Outliers: the int32 residual stream carries them exactly and the smoothed int8
    copies keep the other channels' resolution (an int8 residual stream with per-tensor
    copies reaches cosine 0.9971-0.9973 on these inputs; this one 0.9998)."""
    print(f"seed={seed}")
    rng = np.random.default_rng([seed, 5])
    d, f, seq = 32, 64, 16
    p = random_float_params(seed, d, f)
    for w in ("wq", "wk", "wv"):  # the projections see the outliers damped (as a norm would)
        p[w][:, [3, 11]] /= 10.0
        p[w][:, 7] /= 50.0
    b = quantize_block(p, _outlier_inputs(rng, 16, seq, d), 2, True)
    m = error_metrics(b, _outlier_inputs(rng, 1, seq, d)[0])
    assert m["cosine_vs_float"] >= 0.9995, f"seed={seed} {m}"
    # the outlier channels get the largest smoothing factors
    assert set(np.argsort(b.x_smooth)[-3:]) == {3, 7, 11}, b.x_smooth


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1])
def test_accuracy_big(seed):
    check_accuracy(seed, BIG)


# ----------------------------------------------------------------------------- API / structure
def test_block_api(small_block):
    b = small_block
    assert (b.seq_len, b.d_model, b.n_heads, b.d_ff, b.d_head, b.causal) == (16, 32, 2, 64, 16,
                                                                           True)
    x = b.example_input()
    assert x.shape == (16, 32) and x.dtype == np.float64
    assert np.array_equal(x, b.example_input(0))
    x_q = b.quantize_input(x)
    # the residual stream is int32 at stream_scale / 2**16, in and out
    assert x_q.dtype == np.int32 and x_q.shape == (16, 32)
    assert b.stream_scale == max(b.x_scale, b.h_scale, b.out_scale)
    assert np.array_equal(x_q, np.clip(np.rint(x / (b.stream_scale / 65536)), -2**31, 2**31 - 1))
    y_q = b.forward_int(x_q)
    assert y_q.dtype == np.int32 and y_q.shape == (16, 32)
    y = b.dequantize_output(y_q)
    assert y.dtype == np.float64 and np.array_equal(y, y_q * (b.stream_scale / 65536))
    assert b.forward_float(x).shape == (16, 32)
    for lin in b.linears().values():
        assert lin.weight.dtype == np.int8 and lin.bias.dtype == np.int32
        assert lin.multiplier.dtype == np.int32 and lin.shift.dtype == np.int32
        assert lin.weight.min() >= -127
        assert np.all((lin.shift >= -31) & (lin.shift <= 30))
    assert b.w1.weight.shape == (64, 32) and b.w2.weight.shape == (32, 64)
    assert b.exp_table.dtype == np.uint8 and b.exp_table.shape == (256,)
    assert b.recip_table.dtype == np.uint8 and b.gelu_table.dtype == np.int8
    with pytest.raises(dataclasses.FrozenInstanceError):
        b.seq_len = 3  # type: ignore[misc]
    with pytest.raises(ValueError):
        b.wq.weight[0, 0] = 1
    arrs = b.parameter_arrays()
    assert {"wq.weight", "w2.multiplier", "exp_table", "gelu_table", "recip_table",
            "score.multiplier", "x8.multiplier", "h8.shift", "x_smooth", "h_smooth",
            "scale.out", "scale.stream"} <= set(arrs)
    assert set(STEP_PRIMITIVES) >= {"linear", "attention_scores", "softmax_int",
                                    "reciprocal_int", "attention_context", "residual_add",
                                    "gelu_table_lookup"}


def test_deterministic():
    a, b = make_block(3, *SMALL), make_block(3, *SMALL)
    for k, v in a.parameter_arrays().items():
        assert np.array_equal(v, b.parameter_arrays()[k]), k
    x = a.example_input()
    assert np.array_equal(a.forward_int(a.quantize_input(x)), b.forward_int(b.quantize_input(x)))
    assert not np.array_equal(make_block(4, *SMALL).wq.weight, a.wq.weight)


def test_trace_intermediates(small_block):
    b = small_block
    x_q = b.quantize_input(b.example_input())
    t = b.forward_int(x_q, return_intermediates=True)
    assert np.array_equal(t["y"], b.forward_int(x_q))
    S, D, H, F = SMALL
    expect = {
        "x": (np.int32, (S, D)), "x8": (np.int8, (S, D)),
        "q_acc": (np.int32, (S, D)), "q": (np.int8, (S, D)), "v": (np.int8, (S, D)),
        "scores_acc": (np.int32, (H, S, S)), "scores": (np.int16, (H, S, S)),
        "row_max": (np.int16, (H, S)), "exp_index": (np.uint8, (H, S, S)),
        "exp": (np.int32, (H, S, S)), "row_sum": (np.int32, (H, S)),
        "recip_y1": (np.int32, (H, S)), "recip_shift": (np.int32, (H, S)),
        "probs": (np.int8, (H, S, S)), "ctx_acc": (np.int32, (S, D)), "ctx": (np.int8, (S, D)),
        "attn_acc": (np.int32, (S, D)), "h_sum": (np.int32, (S, D)), "h": (np.int8, (S, D)),
        "ff1_acc": (np.int32, (S, F)), "ff1": (np.int8, (S, F)), "gelu": (np.int8, (S, F)),
        "h_aligned_attn": (np.int32, (S, D)), "y_aligned_ff2": (np.int32, (S, D)),
        "ff2_acc": (np.int32, (S, D)), "y": (np.int32, (S, D)),
    }
    for k, (dt, shp) in expect.items():
        assert t[k].dtype == dt and t[k].shape == shp, (k, t[k].dtype, t[k].shape)
    # the integer steps recompose exactly
    assert np.array_equal(t["q"], linear(t["x8"], b.wq)[1])
    assert np.array_equal(t["h_sum"], x_q.astype(np.int64) + t["h_aligned_attn"])
    assert np.array_equal(t["y"], t["h_sum"].astype(np.int64) + t["y_aligned_ff2"])
    assert np.array_equal(t["gelu"], b.gelu_table[t["ff1"].view(np.uint8)])
    assert np.all(t["probs"][:, causal_mask(S)] == 0)
    assert np.all(t["probs"] >= 0)


def test_causal_is_exact(small_block):
    """Changing the last token cannot change any earlier output row (bit-exact)."""
    b = small_block
    x = b.example_input()
    y0 = b.forward_int(b.quantize_input(x))
    x2 = x.copy()
    x2[-1] = np.random.default_rng(11).standard_normal(b.d_model) * 3
    y1 = b.forward_int(b.quantize_input(x2))
    assert np.array_equal(y0[:-1], y1[:-1])
    assert not np.array_equal(y0[-1], y1[-1])


def test_intermediates_track_float(small_block):
    """Every intermediate dequantises close to the same float intermediate (the int8
    copies of the residual stream carry their per-channel smoothing factors)."""
    b = small_block
    x = b.example_input()
    t = b.forward_int(b.quantize_input(x), return_intermediates=True)
    f = b.forward_float(x, return_intermediates=True)
    lsb = b.stream_scale / 2**16
    for name, fname, scale in (
            ("x8", "x", b.x8_scale * b.x_smooth), ("q", "q", b.q_scale),
            ("k", "k", b.k_scale), ("v", "v", b.v_scale), ("ctx", "ctx", b.ctx_scale),
            ("h_sum", "h", lsb), ("h", "h", b.h8_scale * b.h_smooth),
            ("ff1", "ff1", b.ff1_scale), ("gelu", "gelu", b.gelu_scale), ("y", "y", lsb)):
        rel = np.linalg.norm(t[name] * scale - f[fname]) / np.linalg.norm(f[fname])
        assert rel < 0.06, (name, rel)
    p_err = np.abs(t["probs"] / PROB_ONE - f["probs"]).max()
    assert p_err < 0.03, p_err


def test_quantize_block_from_float_params():
    seed = 21
    p = random_float_params(seed, 24, 40)
    cal = np.random.default_rng(seed).standard_normal((4, 8, 24))
    b = quantize_block(p, cal, n_heads=3, causal=False)
    assert (b.seq_len, b.d_model, b.n_heads, b.d_ff, b.causal) == (8, 24, 3, 40, False)
    b1 = quantize_block(p, cal[0], n_heads=3)
    assert b1.seq_len == 8 and b1.causal
    x = np.random.default_rng(seed + 1).standard_normal((8, 24))
    m = error_metrics(b, x)
    assert m["cosine_vs_float"] > 0.998, f"seed={seed} {m}"
    # dequantised weights (smoothing divided back out) are within half a step of the float
    # weights; the smoothing factors have geometric mean 1
    step = b.wq.weight_scale[:, None] / b.x_smooth[None, :]
    assert np.all(np.abs(b.float_params()["wq"] - p["wq"]) <= step / 2 + 1e-12)
    assert abs(np.mean(np.log(b.x_smooth))) < 1e-9 and abs(np.mean(np.log(b.h_smooth))) < 1e-9


# ----------------------------------------------------------------------------- softmax / reciprocal
def test_clz32():
    vals = [0, 1, 2, 3, 255, 256, 2**30, 2**31 - 1, -1, -(2**31)]
    assert clz32(np.array(vals)).tolist() == [32 - (v & 0xFFFFFFFF).bit_length() for v in vals]


def test_reciprocal_int_accuracy():
    seed = 8
    rng = np.random.default_rng(seed)
    s = np.concatenate([np.arange(1, 1 << 18), rng.integers(1 << 18, 2**31 - 1, 200_000),
                        [2**31 - 1, 2**30, 2**30 - 1, 2**30 + 1]])
    r = reciprocal_int(s, tables.reciprocal_seed_table())
    assert r.y1.min() > 0 and r.y1.max() <= 2**30 + 1
    assert r.shift.min() >= -29 and r.shift.max() <= 1
    assert r.index.min() >= 0 and r.index.max() <= 255
    # y1 is 1/a in Q29 and s = a * 2**(32 - n), so 1/s ~= y1 * 2**(n - 61)
    rel = np.abs(r.y1.astype(np.float64) * np.exp2(r.clz.astype(np.float64) - 61) * s - 1)
    assert rel.max() < 2.0**-16, f"seed={seed} max rel err 2**{math.log2(rel.max()):.2f}"
    with pytest.raises(ValueError, match="reciprocal_int"):
        reciprocal_int(np.array([0]), tables.reciprocal_seed_table())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_softmax_int_exact_rounding(seed):
    """p = round_half_up(127 e / S) up to the reciprocal error; rows sum to 127 +- nnz/2."""
    rng = np.random.default_rng(seed)
    S = 48
    scores = rng.integers(-400, 400, (3, S, S)).astype(np.int16)
    scores[0, 5] = -32768  # saturated scores still work
    mask = causal_mask(S)
    sm = softmax_int(scores, mask, tables.exp_table(1 / 40), tables.reciprocal_seed_table())
    e = sm.exp.astype(np.int64)
    tot = sm.row_sum.astype(np.int64)[..., None]
    assert np.all(e[:, mask] == 0) and np.all(sm.probs[:, mask] == 0)
    assert np.all(sm.row_sum >= 255) and np.all(sm.exp.max(axis=-1) == 255)
    exact = PROB_ONE * e / tot
    p = sm.probs.astype(np.int64)
    assert np.all(np.abs(p - exact) <= 0.5 + PROB_ONE * 2.0**-16), f"seed={seed}"
    ref = (2 * PROB_ONE * e + tot) // (2 * tot)  # exact round-half-up of 127 e / S
    near_tie = np.abs(exact - np.floor(exact) - 0.5) < PROB_ONE * 2.0**-16
    assert np.all((p == ref) | near_tie), f"seed={seed}"
    nnz = np.count_nonzero(e, axis=-1)
    dev = np.abs(p.sum(axis=-1) - PROB_ONE)
    assert np.all(dev <= np.ceil(nnz / 2)), f"seed={seed}"
    assert dev.mean() < 3, f"seed={seed} mean |sum - 127| = {dev.mean()}"


def test_softmax_rows_in_block(small_block):
    t = small_block.forward_int(small_block.quantize_input(small_block.example_input()), True)
    sums = t["probs"].astype(np.int64).sum(axis=-1)
    nnz = np.count_nonzero(t["exp"], axis=-1)
    assert np.all(np.abs(sums - PROB_ONE) <= np.ceil(nnz / 2))
    assert np.all(t["probs"][:, 0, 0] == PROB_ONE)  # first query sees only itself


def test_tables():
    e = tables.exp_table(1 / 40)
    assert e[0] == 255 and e[255] == 0 and np.all(np.diff(e.astype(int)) <= 0)
    with pytest.raises(ValueError, match="too small"):
        tables.exp_table(0.02)
    g = tables.gelu_table(0.05, 0.04)
    q = np.arange(-128, 128, dtype=np.int8)
    assert np.array_equal(gelu_table_lookup(q, g),
                          np.clip(np.rint(tables.gelu_float(q * 0.05) / 0.04), -128, 127))
    t = tables.reciprocal_seed_table()
    i = np.arange(256)
    y0 = (256 + t.astype(float)) / 256
    err = np.maximum(np.abs(1 - (0.5 + i / 512) * y0), np.abs(1 - (0.5 + (i + 1) / 512) * y0))
    assert err.max() < 2.0**-8


# ----------------------------------------------------------------------------- overflow and errors
def test_overflow_linear():
    lin = QLinear.build(np.ones((2, 4)), np.zeros(2), 1.0, 1.0, "t")
    lin = dataclasses.replace(lin, bias=np.array([0, 2**31 - 100], dtype=np.int32))
    x = np.full((3, 4), 127, dtype=np.int8)
    with pytest.raises(OverflowError, match=r"linear\[t\]: int32 accumulator\+bias out of "
                                            r"range at \[0, 1\]"):
        linear(x, lin, step="linear[t]")


def test_overflow_attention_scores():
    n = 140_000  # 128 * 128 * 140000 > 2**31
    q = np.full((2, n), -128, dtype=np.int8)
    with pytest.raises(OverflowError, match=r"attention_scores: int32 accumulator out of range "
                                            r"at \[0, 0, 0\]"):
        attention_scores(q, q, 1, 2**30, 0)


def test_overflow_residual():
    a = np.full((2, 3), 2**30, dtype=np.int32)
    with pytest.raises(OverflowError, match=r"residual_add: int32 sum out of range at \[0, 0\]"):
        residual_add(a, a, 2**30, 1)  # 2**30 + rq(2**30, x1)


def test_bad_inputs(small_block):
    b = small_block
    x = b.example_input()
    with pytest.raises(TypeError, match=r"x_q: expected dtype int32, got float64"):
        b.forward_int(x)
    with pytest.raises(TypeError, match=r"x_q: expected dtype int32, got int8"):
        b.forward_int(np.zeros((16, 32), np.int8))
    with pytest.raises(TypeError, match=r"x_q: expected a numpy array"):
        b.forward_int([[0] * 32] * 16)
    with pytest.raises(ValueError, match=r"x_q: expected shape \(16, 32\), got \(8, 32\)"):
        b.forward_int(np.zeros((8, 32), np.int32))
    with pytest.raises(ValueError, match=r"x_float: expected shape \(16, 32\), got \(16, 31\)"):
        b.quantize_input(x[:, :31])
    with pytest.raises(TypeError, match=r"x_float: expected a floating-point array, got dtype "
                                        r"int8"):
        b.forward_float(np.zeros((16, 32), np.int8))
    with pytest.raises(ValueError, match="NaN"):
        b.quantize_input(np.full((16, 32), np.nan))
    with pytest.raises(ValueError, match=r"y_q: expected shape"):
        b.dequantize_output(np.zeros((16, 33), np.int32))
    with pytest.raises(ValueError, match=r"n_heads: d_model=30 is not divisible by n_heads=4"):
        make_block(0, 16, 30, 4, 64)
    with pytest.raises(ValueError, match="seq_len"):
        make_block(0, 0, 32, 2, 64)
    p = random_float_params(0, 32, 64)
    cal = np.zeros((16, 32))
    with pytest.raises(ValueError, match=r"missing keys \['bo'\]"):
        quantize_block({k: v for k, v in p.items() if k != "bo"}, cal, 2)
    with pytest.raises(ValueError, match=r"float_params\['w2'\]: expected shape \(32, 64\), "
                                        r"got \(64, 32\)"):
        quantize_block({**p, "w2": p["w2"].T}, cal, 2)
    with pytest.raises(ValueError, match=r"calibration_inputs: expected shape"):
        quantize_block(p, np.zeros((16, 31)), 2)


# ----------------------------------------------------------------------------- CLI
def test_cli_json_and_save(tmp_path, capsys):
    out = tmp_path / "v.npz"
    rc = cli_main(["--seq", "8", "--d-model", "16", "--heads", "2", "--d-ff", "32", "--seed",
                   "5", "--json", "--save", str(out)])
    assert rc == 0
    rec = json.loads(capsys.readouterr().out)
    assert {"cosine_vs_float", "max_abs_err_lsb", "frac_within_1lsb", "seed", "seq_len",
            "d_model", "n_heads", "d_ff", "causal"} <= set(rec)
    assert rec["seed"] == 5 and rec["causal"] is True
    z = np.load(out)
    assert {"input.q", "wq.weight", "exp_table", "int.probs", "int.y", "output.q",
            "output.float_ref"} <= set(z.files)
    b = make_block(5, 8, 16, 2, 32)
    assert np.array_equal(z["output.q"], b.forward_int(z["input.q"]))
    assert np.array_equal(z["int.probs"], b.forward_int(z["input.q"], True)["probs"])
    # a name without .npz: the file gets it, and the message names that file
    assert cli_main(["--seq", "8", "--d-model", "16", "--heads", "2", "--d-ff", "32",
                     "--save", str(tmp_path / "w")]) == 0
    assert f"saved vectors to {tmp_path / 'w.npz'}" in capsys.readouterr().out
    assert (tmp_path / "w.npz").is_file()
    assert cli_main(["--seq", "8", "--d-model", "16", "--heads", "2", "--d-ff", "32",
                     "--save", str(tmp_path / "none" / "w")]) == 2
    assert f"error: --save {tmp_path / 'none' / 'w'}: no directory" in capsys.readouterr().err


def test_cli_text_and_errors(capsys):
    assert cli_main(["--seeds", "0-1", "--no-causal"]) == 0
    text = capsys.readouterr().out
    assert "non-causal" in text and "min cosine" in text
    assert cli_main(["--d-model", "30", "--heads", "4"]) == 2
    assert "not divisible" in capsys.readouterr().err


def test_quantize_block_silent_calibration():
    """All-zero calibration inputs (nothing to measure) still give a working block: the
    input's scales fall back to 1.0 as for any all-zero intermediate, its smoothing
    factors to 1 (h is the biases alone and is calibrated as usual)."""
    b = quantize_block(random_float_params(0, 32, 64), np.zeros((16, 32)), 2)
    assert b.x_scale == b.x8_scale == 1.0 and np.all(b.x_smooth == 1.0)
    y = b.forward_int(b.quantize_input(np.zeros((16, 32))))
    assert y.dtype == np.int32 and y.shape == (16, 32)
