"""Row-scaled integer tensors: the wide/narrow formats of the LLM golden model.

Every activation of :mod:`golden.llm`'s integer path is an integer array ``q`` with one
power-of-two exponent per row: ``value = q * 2**e`` (``e`` broadcast over the last axis).
The exponent is chosen at run time from the row's maximum, so no activation needs an
offline calibration scale, and an outlier channel only costs its own row's resolution.

Machine view of each helper:

* :func:`narrow` -- row max (SXM rotate + VXM ``max``, log2(n) steps), ``clz`` of it, one
  rounding arithmetic shift per lane (VXM).  A 16-bit result is two byte planes: a matrix
  input of 16 bits is two MXM passes over the same installed weights (low plane unsigned,
  high plane signed), shifted by 8 and added as int32 -- exact, see :func:`matmul_planes`.
* :func:`add_aligned` -- the residual add: both operands shifted to a common exponent
  (VXM shift), added, kept at 31 bits (int32 residual stream, never int8).
* :func:`matmul_exact` -- MXM int8 x int16 -> exact integer accumulators (computed here
  with float64 BLAS on integer-valued arrays, exact because every partial sum is checked
  to stay below 2**53).

Rounding at run time is round half up (``floor(x + 1/2)``), as in ``golden.quant``.
"""

from __future__ import annotations

import numpy as np

EXACT_F64 = 2**53  # float64 BLAS is exact on integers while |partial sums| < 2**53
_POW2 = 2 ** np.arange(63, dtype=np.int64)

__all__ = ["EXACT_F64", "add_aligned", "bitlen", "matmul_exact", "matmul_planes",
           "narrow", "shift_round", "split_planes"]


def bitlen(x) -> np.ndarray:
    """Number of bits of ``|x|`` (``0 -> 0``), i.e. ``32 - clz32(|x|)`` on the VXM; int64."""
    a = np.abs(np.asarray(x, dtype=np.int64))
    return np.searchsorted(_POW2, a, side="right").astype(np.int64)


def shift_round(q, k) -> np.ndarray:
    """``q * 2**-k`` rounded half up for ``k > 0``; ``q << -k`` for ``k <= 0`` (int64).

    Raises ``OverflowError`` if a left shift would leave int64.
    """
    q = np.asarray(q, dtype=np.int64)
    k = np.asarray(k, dtype=np.int64)
    kr = np.clip(k, 0, 62)
    right = (q + np.where(kr > 0, np.left_shift(np.int64(1), np.maximum(kr - 1, 0)), 0)) >> kr
    kl = np.clip(-k, 0, 62)
    if np.any(k < 0):
        if np.any(bitlen(np.where(k < 0, q, 0)) + kl > 62):
            raise OverflowError("shift_round: left shift leaves int64")
    left = q << kl
    return np.where(k > 0, right, left)


def narrow(q, e, bits: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Re-express ``q * 2**e`` with ``bits``-bit signed integers, one exponent per row.

    ``k = max(0, bitlen(max|row|) - (bits - 1))``; ``q' = sat(shift_round(q, k))``;
    ``e' = e + k``.  The row max lands in ``[2**(bits-2), 2**(bits-1)]`` (saturated to
    ``2**(bits-1) - 1``) unless the row was already narrow enough (then it is unchanged).
    ``e`` broadcasts against ``q``'s leading axes with a trailing axis of 1.
    """
    q = np.asarray(q, dtype=np.int64)
    m = np.max(np.abs(q), axis=-1, keepdims=True) if q.shape[-1] else np.zeros(
        q.shape[:-1] + (1,), np.int64)
    k = np.maximum(bitlen(m) - (bits - 1), 0)
    lim = (1 << (bits - 1)) - 1
    out = np.clip(shift_round(q, k), -lim - 1, lim)
    return out, np.asarray(e, dtype=np.int64) + k


def add_aligned(a, ea, b, eb, bits: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """``a*2**ea + b*2**eb`` as a ``bits``-bit row-scaled tensor (the residual add).

    The output exponent is the smallest for which both shifted operands fit ``bits - 2``
    bits, so their sum fits ``bits - 1`` and nothing saturates; each operand is shifted
    (left exactly, right with rounding) to it, then added.
    """
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    ea = np.broadcast_to(np.asarray(ea, dtype=np.int64), a.shape[:-1] + (1,))
    eb = np.broadcast_to(np.asarray(eb, dtype=np.int64), b.shape[:-1] + (1,))
    la = bitlen(np.max(np.abs(a), axis=-1, keepdims=True)) + ea
    lb = bitlen(np.max(np.abs(b), axis=-1, keepdims=True)) + eb
    et = np.maximum(la, lb) - (bits - 2)
    # never finer than the finer operand needs (exact when it fits)
    et = np.maximum(et, np.minimum(ea, eb))
    return shift_round(a, et - ea) + shift_round(b, et - eb), et


def matmul_exact(x, w_t) -> np.ndarray:
    """Exact integer ``x @ w_t`` (``x`` ``[..., n]``, ``w_t`` ``[n, m]``) as int64.

    Uses float64 BLAS after checking ``n * max|x| * max|w| < 2**53`` (so every partial sum
    is an exactly representable integer); raises ``OverflowError`` otherwise.
    """
    x = np.asarray(x)
    w_t = np.asarray(w_t)
    n = x.shape[-1]
    mx = int(np.max(np.abs(x))) if x.size else 0
    mw = int(np.max(np.abs(w_t))) if w_t.size else 0
    if n * mx * mw >= EXACT_F64:
        raise OverflowError(f"matmul_exact: bound {n}*{mx}*{mw} >= 2**53 (not exact)")
    return np.rint(np.asarray(x, np.float64) @ np.asarray(w_t, np.float64)).astype(np.int64)


def split_planes(x16) -> tuple[np.ndarray, np.ndarray]:
    """int16 -> (high byte signed int8, low byte unsigned 0..255): ``x = 256*hi + lo``."""
    x = np.asarray(x16, dtype=np.int64)
    if x.size and (x.min() < -(2**15) or x.max() > 2**15 - 1):
        raise ValueError("split_planes: input outside int16")
    return (x >> 8).astype(np.int8), (x & 0xFF).astype(np.uint8)


def matmul_planes(x16, w8_t) -> np.ndarray:
    """The MXM's view of an int16 x int8 product: two byte-plane passes, int32 each.

    ``acc = (hi @ W) * 256 + (lo @ W)``; each pass is an int8/uint8 x int8 matrix product
    with an int32 accumulator (checked), the combine is a VXM shift and a wide add.
    Equal to ``matmul_exact(x16, w8_t)`` (tested).
    """
    hi, lo = split_planes(x16)
    a_hi = matmul_exact(hi, w8_t)
    a_lo = matmul_exact(lo, w8_t)
    for name, a in (("high", a_hi), ("low", a_lo)):
        if a.size and (a.min() < -(2**31) or a.max() > 2**31 - 1):
            raise OverflowError(f"matmul_planes: {name}-plane accumulator leaves int32")
    return a_hi * 256 + a_lo


R_BITS = 23  # weight row scales are R * 2**(F - R_BITS) with integer R in [1, 2**R_BITS]


class RowWeight:
    """int8 weights ``[out, in]`` with one exact scale per output row (or per row and group).

    ``w[c, j] ~= q[c, j] * r[c, j // group] * 2**(f - R_BITS)``: ``q`` int8 in [-127, 127],
    ``r`` integer in ``[1, 2**R_BITS]`` (a 24-bit per-lane multiplier on the VXM), ``f`` one
    exponent per tensor.  ``group = in`` is per output channel (one MXM pass per installed
    tile); a smaller ``group`` keeps one partial sum per input group (one MXM pass per
    group, inputs of the other groups masked) and scales each before the wide add.

    The row scale is rounded *up* to the representable grid before the weights are rounded,
    so ``|w / scale| <= 127`` and the scale used at run time is exactly the one the int8
    values were rounded against (no multiplier approximation error).
    """

    def __init__(self, w, group: int | None = None):
        w = np.asarray(w, dtype=np.float64)
        if w.ndim != 2:
            raise ValueError(f"RowWeight: weight must be 2-D [out, in], got shape {w.shape}")
        if not np.all(np.isfinite(w)):
            raise ValueError("RowWeight: weight contains NaN or infinity")
        n_out, n_in = w.shape
        group = n_in if group is None else int(group)
        if group < 1 or n_in % group:
            raise ValueError(f"RowWeight: group {group} must divide the input width {n_in}")
        self.group = group
        wg = w.reshape(n_out, n_in // group, group)
        s = np.max(np.abs(wg), axis=-1) / 127.0
        top = float(np.max(s)) if s.size else 0.0
        self.f = int(np.ceil(np.log2(top))) if top > 0 else 0
        unit = 2.0 ** (self.f - R_BITS)
        self.r = np.maximum(np.ceil(s / unit), 1).astype(np.int64)  # [out, n_groups]
        scale = self.r * unit
        self.q = np.clip(np.rint(wg / scale[..., None]), -127, 127).astype(np.int8).reshape(
            n_out, n_in)
        self.q_t = np.ascontiguousarray(self.q.T.astype(np.float64))  # for matmul_exact

    @property
    def shape(self) -> tuple[int, int]:
        return self.q.shape

    def dequantize(self) -> np.ndarray:
        """The float weights this int8 tensor represents exactly."""
        n_out, n_in = self.q.shape
        sc = (self.r * 2.0 ** (self.f - R_BITS))[..., None]
        return (self.q.reshape(n_out, -1, self.group) * sc).reshape(n_out, n_in)


def linear_int(x, ex, w: RowWeight) -> tuple[np.ndarray, np.ndarray]:
    """``x * 2**ex`` (int16, one exponent per row) times ``w.T``: wide int64, exponent.

    MXM: byte-plane passes per installed tile, exact int32 accumulators per plane (and per
    input group); VXM: multiply each accumulator by its row scale ``r`` (requantize with a
    per-lane multiplier) and add the groups wide.  Result ``acc * 2**(ex + f - R_BITS)``.
    """
    x = np.asarray(x, dtype=np.int64)
    n_out, n_in = w.shape
    if x.shape[-1] != n_in:
        raise ValueError(f"linear_int: input width {x.shape[-1]} != weight input width {n_in}")
    if w.group == n_in:
        acc = matmul_exact(x, w.q_t) * w.r[:, 0]
    else:
        ng = n_in // w.group
        xg = x.reshape(x.shape[:-1] + (ng, w.group)).astype(np.float64)
        qg = w.q.reshape(n_out, ng, w.group).astype(np.float64)
        mx = int(np.max(np.abs(x))) if x.size else 0
        if w.group * mx * 127 >= EXACT_F64:
            raise OverflowError("linear_int: group accumulator not exact")
        acc_g = np.rint(np.einsum("...gj,cgj->...cg", xg, qg, optimize=True)).astype(np.int64)
        acc = np.sum(acc_g * w.r, axis=-1)
    return acc, np.asarray(ex, dtype=np.int64) + (w.f - R_BITS)
