"""Bit-exact int8 decoder block (multi-head self-attention + GELU MLP) and its float64 reference.

Structure (no layer norm: the spec has none; pre-/post-LN would need a VXM rsqrt scheme)::

    x8       = narrow_lanes(x, x8 pairs)  # int32 residual stream -> int8 copy (per-lane
                                          # REQUANT: SmoothQuant factors, folded into W)
    q, k, v = linear(x8, Wq/Wk/Wv)       # MXM int8 x int8 -> int32, +bias, requantize -> int8
    s   = attention_scores(q, k)         # per head, 1/sqrt(d_head) folded in -> int16
    p   = softmax_int(s, causal mask)    # exp-table Gather, int32 row sum, reciprocal -> int8
    c   = attention_context(p, v)        # P V -> requantize -> int8
    a   = linear_acc(c, Wo)              # int32 accumulator only (never int8)
    T1  = residual_add(x, a)             # x + requantized a: int32 (the residual stream)
    h   = narrow_lanes(T1, h8 pairs)     # int8 copy for W1 (per-lane REQUANT, smoothed)
    u   = linear(h, W1)                  # -> int8
    g   = gelu_table_lookup(u)           # 256-entry int8 -> int8 Gather
    m   = linear_acc(g, W2)              # int32 accumulator only
    y   = residual_add(T1, m)            # int32 output (stays wide)

The residual stream is int32 from input to output, at one scale ``stream_scale / 2**16``
(``x``, ``T1`` and ``y``; ``stream_scale`` is the largest int8 step calibration gives any
of them, so the stream has 2**16 levels below it and 2**8 x headroom above): real layers
carry outlier channels 10-100x the typical element, which an int8 residual rounds the
other channels away with.  Only the matrix
inputs are int8: each is a per-lane requantisation of the wide stream whose per-channel
factors (SmoothQuant, alpha 0.5, calibrated) are folded into the weight columns, so an
outlier channel costs its own lane's resolution, not every lane's.

Only machine primitives are used at run time: MXM int8 x int8 -> int32 products, VXM int
add/sub/mul/min/max/shift/clz/select/requantize, MEM ``Gather`` (256-entry, 1-byte tables)
and SXM rotates for the cross-lane reductions; ``STEP_PRIMITIVES`` lists them per step.
Everything is computed in int64, checked against the int32 range (``OverflowError`` naming
the step, tensor and index otherwise), then cast.  Requantisation saturates by definition.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from golden import tables
from golden.quant import (
    INT32_MAX,
    INT32_MIN,
    dequantize_per_channel,
    quantize_multiplier,
    quantize_per_channel_symmetric,
    quantize_per_tensor,
    requantize,
)

PROB_ONE = 127  # probabilities are int8 0..127 at scale 1/127 (1.0 is representable)
SCORE_MIN, SCORE_MAX = -(2**15), 2**15 - 1  # scores are int16 (two byte planes)
SCORE_MASKED = SCORE_MIN  # value selected into masked score lanes before the row max
DEFAULT_SCORE_SCALE = 1.0 / 40.0  # logits per score LSB; exp table reaches 0 at d = 250
RESIDUAL_FRAC_BITS = 16  # fractional bits of the residual stream below its int8 step
RECIP_SHIFT_T = 21  # requantize shift: t = a*y0 in Q29
RECIP_SHIFT_Y = 23  # requantize shift: y1 = y0*u in Q29
PARAM_KEYS = ("wq", "bq", "wk", "bk", "wv", "bv", "wo", "bo", "w1", "b1", "w2", "b2")

# Machine primitives used by each step (for the ISA / compiler engineers).
STEP_PRIMITIVES: Mapping[str, tuple[str, ...]] = {
    "linear": ("MXM int8xint8->int32 matvec", "VXM add int32 (bias)",
               "VXM requantize (per-lane multiplier/shift) -> int8"),
    "linear_acc": ("MXM int8xint8->int32 matvec", "VXM add int32 (bias)"),
    "attention_scores": ("MXM int8xint8->int32 (K_h installed as weights)",
                         "VXM requantize (scalar multiplier/shift) saturating to int16"),
    "softmax_int": ("VXM select (causal mask: masked lanes := -32768)",
                    "SXM rotate + VXM max, ceil(log2(seq)) steps (row max)",
                    "VXM sub int32 (max - score)", "VXM min (clamp to 255)",
                    "MEM Gather (exp table, 1 byte, zero-extended by a zero upper byte plane)",
                    "VXM select (masked lanes := 0)",
                    "SXM rotate + VXM add int32, ceil(log2(seq)) steps (row sum)",
                    "reciprocal_int", "VXM mul int32 by immediate 127",
                    "VXM requantize (per-lane multiplier=y1, shift=n-30) -> int8 0..127"),
    "reciprocal_int": ("VXM clz", "VXM sub immediate", "VXM shift left by per-lane amount",
                       "VXM shift right immediate", "VXM sub immediate (table index)",
                       "MEM Gather (reciprocal seed table, 1 byte)", "VXM add immediate 256",
                       "VXM requantize (per-lane multiplier=a, shift 21, int32 range)",
                       "VXM sub from immediate 2**30",
                       "VXM requantize (per-lane multiplier=u, shift 23, int32 range)"),
    "attention_context": ("MXM int8xint8->int32 (V_h installed as weights, P streamed)",
                          "VXM requantize (scalar) -> int8"),
    "narrow_lanes": ("VXM requantize (per-lane multiplier/shift, reading 4 byte planes) "
                     "saturating to int8",),
    "residual_add": ("VXM requantize (per-lane pairs, saturating to int32)",
                     "VXM add int32"),
    "gelu_table_lookup": ("MEM Gather (GELU table, index = int8 byte)",),
}


# ----------------------------------------------------------------------------- helpers
def _check_int32(step: str, name: str, value: np.ndarray) -> np.ndarray:
    """Raise ``OverflowError`` if any element of int64 ``value`` leaves int32, else cast."""
    value = np.asarray(value, dtype=np.int64)
    bad = (value < INT32_MIN) | (value > INT32_MAX)
    if bad.any():
        idx = [int(i) for i in np.argwhere(bad)[0]]
        raise OverflowError(
            f"{step}: int32 {name} out of range at {idx} (value {int(value[tuple(idx)])})"
        )
    return value.astype(np.int32)


def _require_int(name: str, arr: Any, dtype: type, shape: tuple[int, ...] | None = None) -> None:
    if not isinstance(arr, np.ndarray):
        raise TypeError(f"{name}: expected a numpy array of dtype {np.dtype(dtype)}, "
                        f"got {type(arr).__name__}")
    if arr.dtype != np.dtype(dtype):
        extra = ""
        want = np.dtype(dtype)
        if np.issubdtype(arr.dtype, np.integer) and np.issubdtype(want, np.integer) and arr.size:
            info = np.iinfo(want)
            lo, hi = int(arr.min()), int(arr.max())
            fits = info.min <= lo and hi <= info.max
            extra = (f" (values in [{lo}, {hi}], "
                     f"{'within' if fits else 'outside'} the {want} range "
                     f"[{info.min}, {info.max}]"
                     f"{'; convert with .astype(np.' + str(want) + ')' if fits else ''})")
        elif np.issubdtype(arr.dtype, np.floating) and np.issubdtype(want, np.integer):
            extra = " (quantize float inputs first, e.g. with QuantBlock.quantize_input)"
        raise TypeError(f"{name}: expected dtype {want}, got {arr.dtype}{extra}")
    if shape is not None and arr.shape != shape:
        raise ValueError(f"{name}: expected shape {shape}, got {arr.shape}")


def _require_float(name: str, arr: Any, shape: tuple[int, ...]) -> np.ndarray:
    a = np.asarray(arr)
    if not (np.issubdtype(a.dtype, np.floating)):
        raise TypeError(f"{name}: expected a floating-point array, got dtype {a.dtype}")
    if a.shape != shape:
        raise ValueError(f"{name}: expected shape {shape}, got {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name}: contains NaN or infinity")
    return a.astype(np.float64)


def _check_seed(seed: Any) -> None:
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed: expected an int >= 0, got {seed!r}")


def _frozen(a: np.ndarray) -> np.ndarray:
    a = np.array(a, copy=True)
    a.flags.writeable = False
    return a


def _mult(real: float, what: str) -> tuple[int, int]:
    try:
        return quantize_multiplier(real)
    except ValueError as exc:
        raise ValueError(f"{what}: cannot represent rescale factor {real!r}: {exc}") from exc


# ----------------------------------------------------------------------------- parameters
@dataclass(frozen=True, eq=False)
class QLinear:
    """One quantised ``nn.Linear``: ``y = requantize(x @ weight.T + bias, multiplier, shift)``.

    ``weight`` int8 ``(out, in)`` symmetric per output channel in [-127, 127], ``bias`` int32
    at scale ``in_scale * weight_scale[c]``, ``multiplier``/``shift`` int32 ``(out,)`` for
    the real factor ``in_scale * weight_scale[c] / out_scale``.  For ``wo`` and ``w2`` the
    output is not an int8 tensor: ``out_scale`` is the residual stream's LSB
    (``QuantBlock.stream_lsb``) and :func:`residual_add` requantises the accumulator with
    these pairs saturating to int32.
    """

    weight: np.ndarray
    bias: np.ndarray
    multiplier: np.ndarray
    shift: np.ndarray
    weight_scale: np.ndarray
    in_scale: float
    out_scale: float

    @classmethod
    def build(cls, w: np.ndarray, b: np.ndarray, in_scale: float, out_scale: float,
              name: str) -> QLinear:
        w_q, w_scale = quantize_per_channel_symmetric(w, axis=0)
        bias_scale = in_scale * w_scale
        b64 = np.rint(np.asarray(b, dtype=np.float64) / bias_scale)
        if np.any(np.abs(b64) > INT32_MAX):
            raise OverflowError(f"{name}: int32 bias out of range")
        pairs = [_mult(in_scale * ws / out_scale, f"{name} requantize") for ws in w_scale]
        return cls(
            weight=_frozen(w_q),
            bias=_frozen(b64.astype(np.int32)),
            multiplier=_frozen(np.array([p[0] for p in pairs], dtype=np.int32)),
            shift=_frozen(np.array([p[1] for p in pairs], dtype=np.int32)),
            weight_scale=_frozen(w_scale),
            in_scale=float(in_scale),
            out_scale=float(out_scale),
        )

    def float_weight(self) -> np.ndarray:
        return dequantize_per_channel(self.weight, self.weight_scale, axis=0)

    def float_bias(self) -> np.ndarray:
        return self.bias.astype(np.float64) * self.in_scale * self.weight_scale


# ----------------------------------------------------------------------------- integer steps
def linear_acc(x_q: np.ndarray, layer: QLinear, step: str = "linear") -> np.ndarray:
    """int8 ``(seq, in)`` -> ``acc = x_q @ W.T + bias``, int32 ``(seq, out)``.

    MXM int8 x int8 products accumulated in int32; bias added by a VXM int32 add.
    """
    acc = x_q.astype(np.int64) @ layer.weight.astype(np.int64).T
    _check_int32(step, "accumulator", acc)
    return _check_int32(step, "accumulator+bias", acc + layer.bias.astype(np.int64))


def linear(x_q: np.ndarray, layer: QLinear, step: str = "linear") -> tuple[np.ndarray, np.ndarray]:
    """int8 ``(seq, in)`` -> ``(acc int32 (seq, out), y int8 (seq, out))``.

    :func:`linear_acc` then ``y = requantize(acc, multiplier[c], shift[c])`` (VXM
    requantize with per-lane multiplier/shift vectors).
    """
    acc = linear_acc(x_q, layer, step)
    return acc, requantize(acc, layer.multiplier, layer.shift)


def attention_scores(q_q: np.ndarray, k_q: np.ndarray, n_heads: int, multiplier: int,
                     shift: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-head ``Q_h K_h^T`` -> ``(acc int32 (H, S, S), scores int16 (H, S, S))``.

    MXM int8 x int8 -> int32 (K_h installed as weights, Q rows streamed); VXM ``requantize``
    with the scalar pair for ``s_q * s_k / (sqrt(d_head) * s_score)`` saturating to int16.
    """
    seq, d_model = q_q.shape
    dh = d_model // n_heads
    qh = q_q.astype(np.int64).reshape(seq, n_heads, dh).transpose(1, 0, 2)
    kh = k_q.astype(np.int64).reshape(seq, n_heads, dh).transpose(1, 0, 2)
    acc = _check_int32("attention_scores", "accumulator", qh @ kh.transpose(0, 2, 1))
    scores = requantize(acc, multiplier, shift, qmin=SCORE_MIN, qmax=SCORE_MAX)
    return acc, scores.astype(np.int16)


class RecipTrace(NamedTuple):
    """Intermediates of :func:`reciprocal_int` (all int32, same shape as the input)."""

    clz: np.ndarray  # n = clz32(s), 1..31
    norm: np.ndarray  # a = s << (n - 1), Q31 in [2**30, 2**31)
    index: np.ndarray  # (a >> 22) - 256, 0..255
    y0: np.ndarray  # 256 + T[index], Q8 seed in [256, 511]
    t: np.ndarray  # a * y0 in Q29
    u: np.ndarray  # 2 - a*y0 in Q29
    y1: np.ndarray  # y0 * (2 - a*y0) ~ 1/a in Q29, in (2**29, 2**30]
    shift: np.ndarray  # n - 30: requantize(v, y1, n - 30) ~= v / s


def clz32(x: np.ndarray) -> np.ndarray:
    """Count leading zeros of the 32-bit pattern of ``x`` (VXM ``clz``); ``clz32(0) = 32``."""
    v = np.asarray(x, dtype=np.int64) & 0xFFFFFFFF
    n = np.zeros(v.shape, dtype=np.int64)
    for b in (16, 8, 4, 2, 1):
        small = v < (1 << (32 - b))
        n += np.where(small, b, 0)
        v = np.where(small, v << b, v)
    return (n + (v == 0)).astype(np.int32)


def reciprocal_int(s: np.ndarray, seed_table: np.ndarray) -> RecipTrace:
    """Integer reciprocal of ``s`` in ``[1, 2**31)``: ``v / s ~= requantize(v, y1, shift)``.

    1. ``n = clz(s)``; ``a = s << (n-1)`` (Q31 mantissa in [0.5, 1)); ``s = a_f * 2**(32-n)``.
    2. ``i = (a >> 22) - 256``; ``y0 = 256 + T[i]`` (Gather; 9-bit seed, rel. error < 2**-8).
    3. One Newton step with rounding multiplies (VXM requantize with per-lane multiplier,
       saturating range int32): ``t = rq(y0, a, 21)`` (= a*y0, Q29), ``u = 2**30 - t``
       (= 2 - a*y0), ``y1 = rq(y0, u, 23)`` (= y0*(2 - a*y0) ~ 1/a_f, Q29).
       Relative error of ``y1`` < 2**-16.
    4. ``shift = n - 30`` in [-29, 1], so ``requantize(v, y1, n - 30)`` ~= ``v / s``.
    """
    s64 = np.asarray(s, dtype=np.int64)
    if s64.size and (s64.min() < 1 or s64.max() > INT32_MAX):
        raise ValueError(f"reciprocal_int: s must be in [1, 2**31 - 1], got min {s64.min()}, "
                         f"max {s64.max()}")
    n = clz32(s64).astype(np.int64)
    a = s64 << (n - 1)
    index = (a >> 22) - 256
    y0 = 256 + seed_table[index].astype(np.int64)
    wide = {"qmin": INT32_MIN, "qmax": INT32_MAX}
    t = requantize(y0, a, RECIP_SHIFT_T, **wide).astype(np.int64)
    u = _check_int32("reciprocal_int", "u", (1 << 30) - t).astype(np.int64)
    if u.size and u.min() < 0:
        raise OverflowError("reciprocal_int: Newton term u negative (bad seed table)")
    y1 = requantize(y0, u, RECIP_SHIFT_Y, **wide)
    i32 = np.int32
    return RecipTrace(n.astype(i32), a.astype(i32), index.astype(i32), y0.astype(i32),
                      t.astype(i32), u.astype(i32), y1.astype(i32), (n - 30).astype(i32))


class SoftmaxTrace(NamedTuple):
    """Intermediates of :func:`softmax_int` (shapes ``(H, S, S)`` or ``(H, S)``)."""

    masked_scores: np.ndarray  # int16, masked lanes = -32768
    row_max: np.ndarray  # int16 (H, S)
    exp_index: np.ndarray  # uint8, min(max - score, 255)
    exp: np.ndarray  # int32 0..255, masked lanes 0
    row_sum: np.ndarray  # int32 (H, S), in [255, 255*S]
    recip: RecipTrace  # of row_sum
    probs: np.ndarray  # int8 0..127 at scale 1/127


def causal_mask(seq_len: int) -> np.ndarray:
    """Boolean ``(S, S)``: True where key index > query index (masked)."""
    return np.triu(np.ones((seq_len, seq_len), dtype=bool), k=1)


def softmax_int(scores: np.ndarray, mask: np.ndarray | None, exp_table: np.ndarray,
                seed_table: np.ndarray) -> SoftmaxTrace:
    """Integer softmax over the last axis: int16 scores -> int8 probabilities at 1/127.

    masked lanes := -32768 (select) -> row max (rotate+max) -> ``d = min(max - s, 255)`` ->
    ``e = E[d]`` (Gather, uint8 zero-extended; masked lanes := 0 so they are excluded exactly)
    -> ``S = sum e`` (rotate+add, int32) -> :func:`reciprocal_int` ->
    ``p = requantize(127 * e, y1, n - 30)`` = ``round_half_up(127 e / S)`` (up to the 2**-16
    reciprocal error) in [0, 127].
    """
    s = scores.astype(np.int64)
    if mask is not None:
        s = np.where(mask, SCORE_MASKED, s)
    row_max = s.max(axis=-1)
    d = _check_int32("softmax_int", "max - score", row_max[..., None] - s).astype(np.int64)
    index = np.minimum(d, 255)
    e = exp_table[index].astype(np.int64)
    if mask is not None:
        e = np.where(mask, 0, e)
    row_sum = _check_int32("softmax_int", "row sum", e.sum(axis=-1))
    if row_sum.size and row_sum.min() < 1:
        raise ValueError("softmax_int: a row has every key masked")
    rec = reciprocal_int(row_sum, seed_table)
    num = _check_int32("softmax_int", "127 * exp", PROB_ONE * e)
    probs = requantize(num, rec.y1[..., None], rec.shift[..., None], qmin=0, qmax=PROB_ONE)
    return SoftmaxTrace(s.astype(np.int16), row_max.astype(np.int16), index.astype(np.uint8),
                        e.astype(np.int32), row_sum, rec, probs.astype(np.int8))


def attention_context(probs: np.ndarray, v_q: np.ndarray, multiplier: int,
                      shift: int) -> tuple[np.ndarray, np.ndarray]:
    """``P_h V_h`` per head, heads concatenated -> ``(acc int32 (S, D), ctx int8 (S, D))``.

    MXM int8 (P, 0..127) x int8 (V) -> int32; VXM ``requantize`` with the scalar pair for
    ``(s_v / 127) / s_ctx``.
    """
    n_heads, seq, _ = probs.shape
    dh = v_q.shape[1] // n_heads
    vh = v_q.astype(np.int64).reshape(seq, n_heads, dh).transpose(1, 0, 2)
    acc = probs.astype(np.int64) @ vh  # (H, S, dh)
    acc = _check_int32("attention_context", "accumulator", acc.transpose(1, 0, 2))
    acc = acc.reshape(seq, n_heads * dh)
    return acc, requantize(acc, multiplier, shift)


class ResidualTrace(NamedTuple):
    aligned: np.ndarray  # int32: the accumulator at the stream's scale
    sum: np.ndarray  # int32: the residual stream after the add


def residual_add(stream: np.ndarray, acc: np.ndarray, multiplier, shift,
                 step: str = "residual_add") -> ResidualTrace:
    """The residual add: ``stream + rq(acc, multiplier, shift)``, kept in int32.

    ``stream`` is int32 at the stream scale; ``A = rq(acc)`` is a VXM requantize (per-lane
    pairs, saturating to int32) of a matrix accumulator to that scale; ``T = stream + A``
    (VXM int32 add, checked: ``OverflowError`` naming the step otherwise).
    """
    aa = requantize(acc, multiplier, shift, qmin=INT32_MIN, qmax=INT32_MAX)
    t = _check_int32(step, "sum", np.asarray(stream, np.int64) + aa.astype(np.int64))
    return ResidualTrace(aa, t)


def narrow_lanes(t: np.ndarray, multiplier: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """int32 ``(seq, d)`` -> its int8 copy: VXM requantize with per-lane pairs, saturating.

    The pairs carry the SmoothQuant factor of each channel (``QuantBlock.x_smooth`` /
    ``h_smooth``), which the consuming weights have folded into their columns.
    """
    return requantize(t, multiplier, shift)


def gelu_table_lookup(u_q: np.ndarray, table: np.ndarray) -> np.ndarray:
    """GELU as one Gather: ``table[uint8(u_q)]`` (index = the int8's byte), int8."""
    return table[u_q.view(np.uint8)]


# ----------------------------------------------------------------------------- float model
def gelu(x: np.ndarray) -> np.ndarray:
    """Exact erf GELU (float64)."""
    return tables.gelu_float(x)


def float_forward(x: np.ndarray, p: Mapping[str, np.ndarray], n_heads: int,
                  causal: bool) -> dict[str, np.ndarray]:
    """float64 block with weights ``p`` (PyTorch layout); returns every named intermediate.

    ``x`` is ``(S, D)`` or a batch ``(B, S, D)``; scores are the scaled logits.
    """
    x = np.asarray(x, dtype=np.float64)
    seq, d_model = x.shape[-2:]
    dh = d_model // n_heads
    out: dict[str, np.ndarray] = {"x": x}
    for n in ("q", "k", "v"):
        out[n] = x @ p["w" + n].T + p["b" + n]

    def heads(t: np.ndarray) -> np.ndarray:
        return np.swapaxes(t.reshape(*t.shape[:-1], n_heads, dh), -2, -3)

    scores = heads(out["q"]) @ np.swapaxes(heads(out["k"]), -1, -2) / math.sqrt(dh)
    out["scores"] = scores
    z = np.where(causal_mask(seq), -np.inf, scores) if causal else scores
    z = np.exp(z - z.max(axis=-1, keepdims=True))
    out["probs"] = z / z.sum(axis=-1, keepdims=True)
    ctx = out["probs"] @ heads(out["v"])
    out["ctx"] = np.swapaxes(ctx, -2, -3).reshape(*x.shape[:-1], d_model)
    out["attn"] = out["ctx"] @ p["wo"].T + p["bo"]
    out["h"] = x + out["attn"]
    out["ff1"] = out["h"] @ p["w1"].T + p["b1"]
    out["gelu"] = gelu(out["ff1"])
    out["ff2"] = out["gelu"] @ p["w2"].T + p["b2"]
    out["y"] = out["h"] + out["ff2"]
    return out


# ----------------------------------------------------------------------------- the block
@dataclass(frozen=True, eq=False)
class QuantBlock:
    """A quantised decoder block: parameters, scales, tables and the integer/float models.

    The input ``x``, the first residual sum ``T1`` and the output ``y`` are int32 at
    ``stream_scale / 2**16`` (the residual stream; ``stream_scale`` is the largest of
    ``x_scale``, ``h_scale`` and ``out_scale``, the int8 steps calibration gives them).
    The int8 copies feeding matrices are ``x8`` (Wq, Wk, Wv) at ``x8_scale * x_smooth[c]``
    and ``h`` (W1) at ``h8_scale * h_smooth[c]``.
    Scales (float, per tensor, zero points all 0): ``x_scale`` (input), ``q_scale``,
    ``k_scale``, ``v_scale``, ``score_scale`` (logits per int16 score LSB), ``prob_scale``
    (1/127), ``ctx_scale``, ``h_scale`` (first residual, int8 copy feeding W1), ``ff1_scale``
    (GELU input), ``gelu_scale``, ``out_scale``.  The Wo and W2 outputs are never int8: their
    accumulators are requantised straight into the residual sums (int32 at ``scale/2**16``).
    """

    seq_len: int
    d_model: int
    n_heads: int
    d_ff: int
    causal: bool
    wq: QLinear
    wk: QLinear
    wv: QLinear
    wo: QLinear
    w1: QLinear
    w2: QLinear
    score_multiplier: int
    score_shift: int
    ctx_multiplier: int
    ctx_shift: int
    x8_multiplier: np.ndarray  # int32 (d_model,): x (x_scale/2**16) -> x8 per lane
    x8_shift: np.ndarray
    h8_multiplier: np.ndarray  # int32 (d_model,): T1 (h_scale/2**16) -> h per lane
    h8_shift: np.ndarray
    x_smooth: np.ndarray  # float64 (d_model,): SmoothQuant factors folded into Wq/Wk/Wv
    h_smooth: np.ndarray  # float64 (d_model,): folded into W1
    exp_table: np.ndarray  # uint8 (256,)
    recip_table: np.ndarray  # uint8 (256,)
    gelu_table: np.ndarray  # int8 (256,), index uint8(q)
    x_scale: float
    q_scale: float
    k_scale: float
    v_scale: float
    score_scale: float
    ctx_scale: float
    h_scale: float
    x8_scale: float
    h8_scale: float
    ff1_scale: float
    gelu_scale: float
    out_scale: float
    stream_scale: float
    seed: int | None = None
    prob_scale: float = field(default=1.0 / PROB_ONE)
    residual_frac_bits: int = RESIDUAL_FRAC_BITS

    @property
    def stream_lsb(self) -> float:
        """The residual stream's LSB (input, first sum, output): ``stream_scale / 2**16``."""
        return self.stream_scale * 2.0 ** -self.residual_frac_bits

    @property
    def d_head(self) -> int:
        return self.d_model // self.n_heads

    @property
    def shape(self) -> tuple[int, int]:
        return (self.seq_len, self.d_model)

    def linears(self) -> dict[str, QLinear]:
        return {"wq": self.wq, "wk": self.wk, "wv": self.wv, "wo": self.wo,
                "w1": self.w1, "w2": self.w2}

    # ---- boundary conversions
    def quantize_input(self, x_float: np.ndarray) -> np.ndarray:
        """float ``(seq_len, d_model)`` -> int32 at ``stream_lsb`` (round half even,
        saturate): the residual stream entering the block."""
        x = _require_float("x_float", x_float, self.shape)
        return quantize_per_tensor(x, self.stream_lsb, 0, INT32_MIN, INT32_MAX)

    def dequantize_output(self, y_q: np.ndarray) -> np.ndarray:
        """int32 ``(seq_len, d_model)`` -> float64 ``y_q * stream_lsb``."""
        _require_int("y_q", y_q, np.int32, self.shape)
        return y_q.astype(np.float64) * self.stream_lsb

    def quantize_output_reference(self, y_float: np.ndarray) -> np.ndarray:
        """Float reference output quantised to the stream's LSB (int32)."""
        return quantize_per_tensor(_require_float("y_float", y_float, self.shape),
                                   self.stream_lsb, 0, INT32_MIN, INT32_MAX)

    # ---- integer model
    def forward_int(self, x_q: np.ndarray, return_intermediates: bool = False):
        """Bit-exact integer forward: int32 ``(seq_len, d_model)`` -> int32, both at
        ``stream_lsb`` (the residual stream).

        With ``return_intermediates=True`` returns the dict of :meth:`trace` instead.
        """
        t = self.trace(x_q)
        return t if return_intermediates else t["y"]

    def trace(self, x_q: np.ndarray) -> dict[str, np.ndarray]:
        """Integer forward returning every named intermediate (see docs/numerics.md)."""
        _require_int("x_q", x_q, np.int32, self.shape)
        t: dict[str, np.ndarray] = {"x": x_q}
        t["x8"] = narrow_lanes(x_q, self.x8_multiplier, self.x8_shift)
        for n in ("q", "k", "v"):
            t[n + "_acc"], t[n] = linear(t["x8"], getattr(self, "w" + n),
                                         step=f"linear[w{n}]")
        t["scores_acc"], t["scores"] = attention_scores(
            t["q"], t["k"], self.n_heads, self.score_multiplier, self.score_shift)
        mask = causal_mask(self.seq_len) if self.causal else None
        sm = softmax_int(t["scores"], mask, self.exp_table, self.recip_table)
        t["scores_masked"], t["row_max"] = sm.masked_scores, sm.row_max
        t["exp_index"], t["exp"], t["row_sum"] = sm.exp_index, sm.exp, sm.row_sum
        for k, v in sm.recip._asdict().items():
            t["recip_" + k] = v
        t["probs"] = sm.probs
        t["ctx_acc"], t["ctx"] = attention_context(t["probs"], t["v"], self.ctx_multiplier,
                                                   self.ctx_shift)
        t["attn_acc"] = linear_acc(t["ctx"], self.wo, step="linear[wo]")
        t["h_aligned_attn"], t["h_sum"] = residual_add(
            x_q, t["attn_acc"], self.wo.multiplier, self.wo.shift, step="residual_add[1]")
        t["h"] = narrow_lanes(t["h_sum"], self.h8_multiplier, self.h8_shift)
        t["ff1_acc"], t["ff1"] = linear(t["h"], self.w1, step="linear[w1]")
        t["gelu"] = gelu_table_lookup(t["ff1"], self.gelu_table)
        t["ff2_acc"] = linear_acc(t["gelu"], self.w2, step="linear[w2]")
        t["y_aligned_ff2"], t["y"] = residual_add(
            t["h_sum"], t["ff2_acc"], self.w2.multiplier, self.w2.shift, step="residual_add[2]")
        return t

    # ---- float reference
    def float_params(self) -> dict[str, np.ndarray]:
        """Dequantised float64 weights/biases (PyTorch layout) used by the reference (the
        smoothing factors divided back out of the weight columns)."""
        p = {}
        smooth = {"wq": self.x_smooth, "wk": self.x_smooth, "wv": self.x_smooth,
                  "w1": self.h_smooth}
        for n, lin in self.linears().items():
            p[n] = lin.float_weight() / smooth[n] if n in smooth else lin.float_weight()
            p["b" + n[1:]] = lin.float_bias()
        return p

    def forward_float(self, x_float: np.ndarray, return_intermediates: bool = False):
        """float64 reference of the same block (exact softmax, erf GELU, dequantised params)."""
        x = _require_float("x_float", x_float, self.shape)
        out = float_forward(x, self.float_params(), self.n_heads, self.causal)
        return out if return_intermediates else out["y"]

    # ---- data for compilers and testbenches
    def example_input(self, seed: int | None = None) -> np.ndarray:
        """Deterministic float input ``N(0, 1)`` of shape ``(seq_len, d_model)``.

        Uses ``np.random.default_rng([seed, 1])`` (``seed`` defaults to the block's seed);
        the calibration set of :func:`make_block` uses ``[seed, 2]`` so they never coincide.
        """
        seed = self.seed if seed is None else seed
        if seed is None:
            raise ValueError("example_input: block has no seed; pass seed=")
        _check_seed(seed)
        return np.random.default_rng([int(seed), 1]).standard_normal(self.shape)

    def parameter_arrays(self) -> dict[str, np.ndarray]:
        """Every parameter, multiplier/shift pair, scale and table as named numpy arrays."""
        arrs: dict[str, np.ndarray] = {}
        for n, lin in self.linears().items():
            for f in ("weight", "bias", "multiplier", "shift", "weight_scale"):
                arrs[f"{n}.{f}"] = np.asarray(getattr(lin, f))
        i32 = np.int32
        arrs["score.multiplier"] = np.array(self.score_multiplier, dtype=i32)
        arrs["score.shift"] = np.array(self.score_shift, dtype=i32)
        arrs["ctx.multiplier"] = np.array(self.ctx_multiplier, dtype=i32)
        arrs["ctx.shift"] = np.array(self.ctx_shift, dtype=i32)
        for n in ("x8", "h8"):
            for f in ("multiplier", "shift"):
                arrs[f"{n}.{f}"] = np.asarray(getattr(self, f"{n}_{f}"))
        arrs["x_smooth"] = self.x_smooth
        arrs["h_smooth"] = self.h_smooth
        arrs["residual_frac_bits"] = np.array(self.residual_frac_bits, dtype=i32)
        arrs["exp_table"] = self.exp_table
        arrs["recip_table"] = self.recip_table
        arrs["gelu_table"] = self.gelu_table
        for s in ("x", "x8", "q", "k", "v", "score", "prob", "ctx", "h", "h8", "ff1", "gelu",
                  "out", "stream"):
            arrs[f"scale.{s}"] = np.array(getattr(self, f"{s}_scale"), dtype=np.float64)
        arrs["shape"] = np.array([self.seq_len, self.d_model, self.n_heads, self.d_ff,
                                  int(self.causal)], dtype=i32)
        return arrs


# ----------------------------------------------------------------------------- construction
def _check_params(p: Mapping[str, Any], n_heads: int) -> tuple[int, int]:
    missing = [k for k in PARAM_KEYS if k not in p]
    if missing:
        raise ValueError(f"float_params: missing keys {missing} (expected {list(PARAM_KEYS)})")
    d_model = np.shape(p["wq"])[0]
    d_ff = np.shape(p["w1"])[0]
    if not isinstance(n_heads, int) or n_heads < 1:
        raise ValueError(f"n_heads: expected a positive int, got {n_heads!r}")
    if d_model % n_heads:
        raise ValueError(f"n_heads: d_model={d_model} is not divisible by n_heads={n_heads}")
    want = {"wq": (d_model, d_model), "wk": (d_model, d_model), "wv": (d_model, d_model),
            "wo": (d_model, d_model), "w1": (d_ff, d_model), "w2": (d_model, d_ff),
            "bq": (d_model,), "bk": (d_model,), "bv": (d_model,), "bo": (d_model,),
            "b1": (d_ff,), "b2": (d_model,)}
    for k, shp in want.items():
        if np.shape(p[k]) != shp:
            raise ValueError(f"float_params[{k!r}]: expected shape {shp}, got {np.shape(p[k])}")
    return d_model, d_ff


def quantize_block(float_params: Mapping[str, np.ndarray], calibration_inputs: np.ndarray,
                   n_heads: int, causal: bool = True, *, headroom: float = 1.1,
                   score_scale: float = DEFAULT_SCORE_SCALE,
                   seed: int | None = None) -> QuantBlock:
    """Quantise float weights (PyTorch ``(out, in)`` layout) into a :class:`QuantBlock`.

    Weights: symmetric per output channel.  Activation scales: ``headroom * max|t| / 127``
    of each intermediate ``t`` of the float model (dequantised weights, float biases) run on
    ``calibration_inputs`` (``(S, D)`` or ``(B, S, D)``).  Scores use the fixed
    ``score_scale`` (exp table step); probabilities use 1/127.
    """
    d_model, d_ff = _check_params(float_params, n_heads)
    cal = np.asarray(calibration_inputs, dtype=np.float64)
    if cal.ndim not in (2, 3) or cal.shape[-1] != d_model:
        raise ValueError(f"calibration_inputs: expected shape (seq_len, {d_model}) or "
                         f"(batch, seq_len, {d_model}), got {cal.shape}")
    seq_len = cal.shape[-2]
    p = {k: np.asarray(v, dtype=np.float64) for k, v in float_params.items() if k in PARAM_KEYS}
    # calibrate with the dequantised weights the reference will use
    pw = dict(p)
    for n in ("wq", "wk", "wv", "wo", "w1", "w2"):
        wq, ws = quantize_per_channel_symmetric(p[n], axis=0)
        pw[n] = dequantize_per_channel(wq, ws, axis=0)
    f = float_forward(cal, pw, n_heads, causal)

    def scale_of(t: np.ndarray) -> float:
        m = float(np.max(np.abs(t)))
        return headroom * m / 127.0 if m > 0 else 1.0

    def scale(name: str) -> float:
        return scale_of(f[name])

    s = {n: scale(n) for n in ("x", "q", "k", "v", "ctx", "h", "ff1", "gelu", "y")}
    fine = 2.0 ** -RESIDUAL_FRAC_BITS
    if float(np.max(np.abs(f["scores"]))) / score_scale > SCORE_MAX / 2:
        raise ValueError(f"score_scale={score_scale}: calibration scores would use more "
                         f"than half of the int16 range")
    # int8 copies of the residual stream: per-channel SmoothQuant factors folded into the
    # weight columns of the matrices they feed
    x_smooth = smooth_factors(f["x"], np.concatenate([pw["wq"], pw["wk"], pw["wv"]]))
    h_smooth = smooth_factors(f["h"], pw["w1"])
    s["x8"] = scale_of(f["x"] / x_smooth)
    s["h8"] = scale_of(f["h"] / h_smooth)
    s["stream"] = max(s["x"], s["h"], s["y"])
    lsb = s["stream"] * fine
    x8 = [_mult(lsb / (s["x8"] * c), "x8 requantize") for c in x_smooth]
    h8 = [_mult(lsb / (s["h8"] * c), "h8 requantize") for c in h_smooth]
    dh = d_model // n_heads
    sm, ss = _mult(s["q"] * s["k"] / (math.sqrt(dh) * score_scale), "attention_scores")
    cm, cs = _mult(s["v"] / PROB_ONE / s["ctx"], "attention_context")
    i32 = np.int32
    return QuantBlock(
        seq_len=seq_len, d_model=d_model, n_heads=n_heads, d_ff=d_ff, causal=bool(causal),
        wq=QLinear.build(p["wq"] * x_smooth, p["bq"], s["x8"], s["q"], "wq"),
        wk=QLinear.build(p["wk"] * x_smooth, p["bk"], s["x8"], s["k"], "wk"),
        wv=QLinear.build(p["wv"] * x_smooth, p["bv"], s["x8"], s["v"], "wv"),
        wo=QLinear.build(p["wo"], p["bo"], s["ctx"], lsb, "wo"),
        w1=QLinear.build(p["w1"] * h_smooth, p["b1"], s["h8"], s["ff1"], "w1"),
        w2=QLinear.build(p["w2"], p["b2"], s["gelu"], lsb, "w2"),
        score_multiplier=sm, score_shift=ss, ctx_multiplier=cm, ctx_shift=cs,
        x8_multiplier=_frozen(np.array([m for m, _ in x8], i32)),
        x8_shift=_frozen(np.array([k for _, k in x8], i32)),
        h8_multiplier=_frozen(np.array([m for m, _ in h8], i32)),
        h8_shift=_frozen(np.array([k for _, k in h8], i32)),
        x_smooth=_frozen(x_smooth), h_smooth=_frozen(h_smooth),
        exp_table=_frozen(tables.exp_table(score_scale)),
        recip_table=_frozen(tables.reciprocal_seed_table()),
        gelu_table=_frozen(tables.gelu_table(s["ff1"], s["gelu"])),
        x_scale=s["x"], q_scale=s["q"], k_scale=s["k"], v_scale=s["v"],
        score_scale=float(score_scale), ctx_scale=s["ctx"], h_scale=s["h"],
        x8_scale=s["x8"], h8_scale=s["h8"],
        ff1_scale=s["ff1"], gelu_scale=s["gelu"], out_scale=s["y"],
        stream_scale=s["stream"], seed=seed,
    )


#: SmoothQuant's migration strength: the activation's per-channel range is split evenly
#: (in log terms) between the activation and the weight columns
SMOOTH_ALPHA = 0.5


def smooth_factors(act: np.ndarray, weight: np.ndarray, alpha: float = SMOOTH_ALPHA
                   ) -> np.ndarray:
    """Per input channel ``c``: ``max|act[..., c]|**alpha / max|weight[:, c]|**(1-alpha)``
    (SmoothQuant, Xiao et al. 2023), normalised to geometric mean 1; a channel that is 0
    in the calibration data or in the weights gets 1.  Dividing the activation and
    multiplying the weight columns by it leaves the product unchanged and evens out the
    channels' ranges, so an outlier channel no longer sets every channel's int8 step."""
    a = np.max(np.abs(act.reshape(-1, act.shape[-1])), axis=0)
    w = np.max(np.abs(weight), axis=0)
    ok = (a > 0) & (w > 0)
    f = np.ones(a.shape)
    f[ok] = a[ok] ** alpha / w[ok] ** (1.0 - alpha)
    if ok.any():
        f[ok] /= np.exp(np.mean(np.log(f[ok])))
    return f


def random_float_params(seed: int, d_model: int, d_ff: int) -> dict[str, np.ndarray]:
    """Synthetic weights ``N(0, 1/fan_in)`` and biases ``N(0, 0.02**2)`` (PyTorch layout)."""
    rng = np.random.default_rng([int(seed), 0])
    shapes = {"q": (d_model, d_model), "k": (d_model, d_model), "v": (d_model, d_model),
              "o": (d_model, d_model), "1": (d_ff, d_model), "2": (d_model, d_ff)}
    p = {}
    for n, (fo, fi) in shapes.items():
        p["w" + n] = rng.standard_normal((fo, fi)) / math.sqrt(fi)
        p["b" + n] = 0.02 * rng.standard_normal(fo)
    return p


#: the largest float64 attention-score array (all calibration sequences and heads) that
#: `make_block` will allocate; past it a shape is refused before anything is computed
ATTENTION_BYTES_LIMIT = 4 << 30


def check_attention_memory(seq_len: int, n_heads: int, n_sequences: int = 1) -> None:
    """ValueError when the float64 attention scores (``n_sequences x n_heads x seq_len^2``)
    would exceed `ATTENTION_BYTES_LIMIT`, naming the largest seq_len that fits."""
    need = 8 * n_sequences * n_heads * seq_len * seq_len
    if need > ATTENTION_BYTES_LIMIT:
        most = int((ATTENTION_BYTES_LIMIT / (8 * n_sequences * n_heads)) ** 0.5)
        raise ValueError(
            f"seq_len={seq_len}: the float64 attention scores of {n_sequences} sequence(s) x "
            f"{n_heads} head(s) need {need / 2**30:,.1f} GiB, over the "
            f"{ATTENTION_BYTES_LIMIT >> 30} GiB limit; seq_len <= {most} fits")


def make_block(seed: int, seq_len: int, d_model: int, n_heads: int, d_ff: int,
               causal: bool = True, n_calibration: int = 32,
               headroom: float = 1.1) -> QuantBlock:
    """Deterministic synthetic block: :func:`random_float_params` + calibration on
    ``n_calibration`` random ``N(0, 1)`` sequences (``default_rng([seed, 2])``).
    Get a matching input with ``block.example_input()`` (``default_rng([seed, 1])``).
    """
    _check_seed(seed)
    for name, v in (("seq_len", seq_len), ("d_model", d_model), ("n_heads", n_heads),
                    ("d_ff", d_ff)):
        if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < 1:
            raise ValueError(f"{name}: expected a positive int, got {v!r}")
    if d_model % n_heads:
        raise ValueError(f"n_heads: d_model={d_model} is not divisible by n_heads={n_heads}")
    if not isinstance(causal, bool | np.bool_):
        raise ValueError(f"causal: expected True or False, got {causal!r}")
    if isinstance(n_calibration, bool) or not isinstance(n_calibration, int | np.integer) \
            or n_calibration < 1:
        raise ValueError(f"n_calibration: expected a positive int (random sequences to "
                         f"calibrate the scales on), got {n_calibration!r}")
    if isinstance(headroom, bool) or not isinstance(headroom, int | float) \
            or not np.isfinite(headroom) or headroom <= 0:
        raise ValueError(f"headroom: expected a positive number (the factor on the "
                         f"calibrated ranges), got {headroom!r}")
    check_attention_memory(seq_len, n_heads, n_calibration)
    params = random_float_params(seed, d_model, d_ff)
    cal = np.random.default_rng([int(seed), 2]).standard_normal((n_calibration, seq_len,
                                                                 d_model))
    return quantize_block(params, cal, n_heads, causal, headroom=headroom, seed=int(seed))


def error_metrics(block: QuantBlock, x_float: np.ndarray) -> dict[str, float]:
    """Compare the integer block (on ``quantize_input(x)``) with ``forward_float(x)``.

    ``cosine_vs_float``: cosine of the dequantised int32 output vs the float64 output;
    ``max_abs_err_lsb`` / ``frac_within_1lsb``: both outputs rounded to the int8 step
    ``out_scale`` that calibration gives the output (the int output itself is 2**16 times
    finer), then compared in those steps; ``rel_rms_err``: ||y_int - y_float|| / ||y_float||.
    """
    y_q = block.forward_int(block.quantize_input(x_float))
    y_f = block.forward_float(x_float)
    y_d = block.dequantize_output(y_q)
    err = np.abs(np.rint(y_d / block.out_scale) - np.rint(y_f / block.out_scale))
    cos = float(np.dot(y_d.ravel(), y_f.ravel())
                / (np.linalg.norm(y_d) * np.linalg.norm(y_f)))
    return {
        "cosine_vs_float": cos,
        "max_abs_err_lsb": int(err.max()),
        "frac_within_1lsb": float(np.mean(err <= 1)),
        "rel_rms_err": float(np.linalg.norm(y_d - y_f) / np.linalg.norm(y_f)),
    }
