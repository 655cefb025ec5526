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

__all__ = ["EXACT_F64", "add_aligned", "bitlen", "digit_matmul", "matmul_exact",
           "matmul_planes", "narrow", "shift_round", "signed_digits", "split_planes",
           "R_BITS", "RowWeight", "linear_int", "linear_int_blocks"]


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


R_BITS = 23  # weight scales are r * 2**(f - R_BITS), integer r in [1, 2**R_BITS]


class RowWeight:
    """int8 weights ``[out, in]`` with exact scales per output row, or per row and block.

    ``w[c, j] = (q[c, j] * r[c, b] + o[c, b]) * 2**(f - R_BITS)`` with ``b = j // group``:
    ``q`` int8, ``r`` an integer block scale (a per-lane VXM multiplier), ``o`` an optional
    integer block offset, ``f`` one exponent per tensor.

    * From float weights (:meth:`__init__`): symmetric, ``o = 0``; the scale is rounded *up*
      to the grid before the weights are rounded, so ``|q| <= 127`` and the run-time scale is
      exactly the one the int8 values were rounded against.  ``group=None``: one scale per
      output channel (the classic per-channel int8).
    * From GGUF blocks (:meth:`from_blocks`): the file's own block structure, exact --
      ``Q8_0``: ``q``, ``r = d``; ``Q4_0``: ``q = n - 8``, ``r = d``; ``Q4_1``: ``q = n - 8``,
      ``r = d``, ``o = m + 8 d``.  (fp16 ``d``, ``m`` land exactly on the grid when within
      2**12 of the tensor's largest ``d``; smaller ones are rounded to 2**-24 of it.)

    MXM view (:func:`linear_int_blocks` is the literal computation): per installed weight
    tile, one pass per input block and byte plane, int32 accumulators ``acc[c, b]``; VXM:
    ``sum_b acc[c, b] * r[c, b]`` plus ``sum_b o[c, b] * S_b`` with ``S_b`` the block sums of
    the input (one pass of a 0/1 block matrix), added wide.
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
        wg = w.reshape(n_out, n_in // group, group)
        s = np.max(np.abs(wg), axis=-1) / 127.0
        top = float(np.max(s)) if s.size else 0.0
        f = int(np.ceil(np.log2(top))) if top > 0 else 0
        unit = 2.0 ** (f - R_BITS)
        r = np.maximum(np.ceil(s / unit), 1).astype(np.int64)
        q = np.clip(np.rint(wg / (r * unit)[..., None]), -127, 127).astype(np.int8)
        self._set(q.reshape(n_out, n_in), r, None, f, group)

    @classmethod
    def from_blocks(cls, q, d, offset=None, group: int = 32) -> RowWeight:
        """Exact representation of block-quantised weights ``w = q * d[b] (+ offset[b])``."""
        q = np.asarray(q)
        d = np.asarray(d, dtype=np.float64)
        n_out, n_in = q.shape
        if n_in % group or d.shape != (n_out, n_in // group):
            raise ValueError(f"RowWeight.from_blocks: scales {d.shape} do not match weights "
                             f"{q.shape} in blocks of {group}")
        if q.min(initial=0) < -128 or q.max(initial=0) > 127:
            raise ValueError("RowWeight.from_blocks: block values outside int8")
        top = float(np.max(np.abs(d))) if d.size else 0.0
        f = int(np.ceil(np.log2(top))) if top > 0 else 0
        unit = 2.0 ** (f - R_BITS)
        r = np.rint(d / unit).astype(np.int64)
        o = None if offset is None else np.rint(np.asarray(offset, np.float64) / unit).astype(
            np.int64)
        self = cls.__new__(cls)
        self._set(q.astype(np.int8), r, o, f, group)
        return self

    def _set(self, q, r, o, f, group):
        self.q, self.r, self.o, self.f, self.group = q, r, o, int(f), int(group)
        w = q.astype(np.int64) * np.repeat(r, group, axis=1)
        if o is not None:
            w = w + np.repeat(o, group, axis=1)
        if w.size and np.abs(w).max() >= 2**31:
            raise OverflowError("RowWeight: scaled weight leaves 31 bits")
        self.w_int = w  # the exact integer weight at 2**(f - R_BITS)
        self.w_max = int(np.abs(w).max()) if w.size else 0
        self.w_t = np.ascontiguousarray(w.T.astype(np.float64))
        self._shift: dict[int, int] = {}
        self._whole: RowWeight | None = None  # a shard's tensor: its f and shift

    def shard(self, rows: slice = slice(None), cols: slice = slice(None),
              pad_rows: int | None = None) -> RowWeight:
        """Output rows ``rows`` and input columns ``cols`` (whole blocks) as a tensor of their
        own with this one's exponent ``f``, block scales and per-tensor :meth:`shift`: one
        chip's part of a tensor-parallel product.  A row part's `linear_int` is those rows
        of the whole one's; column parts' int32 sums (same input columns) add up to the
        whole one's exactly: every block term is rounded on its own, and `plane_bias` is a
        sum of per-block terms.  ``pad_rows``: zero rows appended up to that many (every
        chip's part of the same shape when the rows do not split evenly)."""
        n_out, n_in = self.shape
        r0, r1, _ = rows.indices(n_out)
        c0, c1, _ = cols.indices(n_in)
        if rows.step not in (None, 1) or cols.step not in (None, 1) or r1 <= r0 or c1 <= c0:
            raise ValueError(f"RowWeight.shard: rows {r0}:{r1} and columns {c0}:{c1} must be "
                             f"non-empty contiguous ranges of {n_out} x {n_in}")
        if c0 % self.group or c1 % self.group:
            raise ValueError(f"RowWeight.shard: columns {c0}:{c1} do not fall on blocks of "
                             f"{self.group}")
        b = slice(c0 // self.group, c1 // self.group)
        pad = (0, 0 if pad_rows is None else pad_rows - (r1 - r0))  # zero rows after
        if pad[1] < 0:
            raise ValueError(f"RowWeight.shard: {r1 - r0} rows do not pad to {pad_rows}")
        out = RowWeight.__new__(RowWeight)
        out._set(np.pad(self.q[r0:r1, c0:c1], (pad, (0, 0))),
                 np.pad(self.r[r0:r1, b], (pad, (0, 0))),
                 None if self.o is None else np.pad(self.o[r0:r1, b], (pad, (0, 0))),
                 self.f, self.group)
        out._whole = self._whole or self
        return out

    @property
    def shape(self) -> tuple[int, int]:
        return self.q.shape

    def shift(self, bits: int = 16) -> int:
        """The per-tensor shift ``s`` of :func:`linear_int` for ``bits``-bit inputs: the
        smallest ``s >= 8 * (planes - 1)`` with ``max_c bound_c / 2**s <= 2**30``, where
        ``bound_c = sum_b r[c, b] sum_(j in b) |q[c, j]| * (128 * 2**(8 (P-1)) + sum of
        the low planes' 255 * 2**(8p)) + sum_b |o[c, b]| * group * 2**(bits - 1)``
        (so the int32 sum, rounding included, never overflows)."""
        if self._whole is not None:
            return self._whole.shift(bits)
        if bits not in self._shift:
            n = -(-bits // 8)
            qa = np.abs(self.q.astype(np.int64)).reshape(self.shape[0], -1, self.group).sum(-1)
            bound = (self.r * qa).sum(axis=1).astype(object) * sum(
                128 * 2 ** (8 * p) for p in range(n))
            if self.o is not None:
                bound = bound + np.abs(self.o).sum(axis=1).astype(object) * (
                    self.group * 2 ** (bits - 1))
            bound = bound + np.abs(self._plane_bias_raw(n)).astype(object)
            top = int(max(bound, default=0))
            self._shift[bits] = max(8 * (n - 1), top.bit_length() - 30)
        return self._shift[bits]

    def _plane_bias_raw(self, n: int) -> np.ndarray:
        """``128 sum_b sum_(p < n-1) Qsum[c, b] r[c, b] 2**(8p)`` exactly (int64)."""
        qs = self.q.astype(np.int64).reshape(self.shape[0], -1, self.group).sum(-1)
        return (qs * self.r).sum(axis=1) * 128 * sum(2 ** (8 * p) for p in range(n - 1))

    def plane_bias(self, bits: int = 16) -> np.ndarray:
        """Per output channel: the low planes' ``+128`` (:func:`_planes`) through the
        weights, ``sum_b sum_(p < top) round(128 Qsum[c, b] r[c, b] / 2**(s - 8p))``, with
        ``Qsum`` the block sums of ``q`` (an offline constant, int32)."""
        n, s = -(-bits // 8), self.shift(bits)
        qs = self.q.astype(np.int64).reshape(self.shape[0], -1, self.group).sum(-1)
        return sum(shift_round(128 * qs * self.r, s - 8 * p).sum(axis=1)
                   for p in range(n - 1)) if n > 1 else np.zeros(self.shape[0], np.int64)

    def dequantize(self) -> np.ndarray:
        """The float weights this tensor represents exactly."""
        return self.w_int * 2.0 ** (self.f - R_BITS)


def _planes(x, bits: int) -> list[np.ndarray]:
    """The MXM's signed byte planes of ``bits``-bit ``x``, low first: the low planes are
    ``byte - 128`` (so every plane is int8), the top plane the signed top byte;
    ``x = sum_p plane_p 2**(8p) + 128 sum_(p < top) 2**(8p)``."""
    n = -(-bits // 8)
    if x.size and (x.min() < -(2 ** (bits - 1)) or x.max() > 2 ** (bits - 1) - 1):
        raise ValueError(f"linear_int: input outside {bits} bits")
    return [(x >> (8 * p)) if p == n - 1 else ((x >> (8 * p)) & 0xFF) - 128
            for p in range(n)]


def _round_shift(v: np.ndarray, k: int) -> np.ndarray:
    """:func:`shift_round` by one scalar ``k >= 0`` (the fast path of `linear_int`)."""
    return (v + (1 << (k - 1))) >> k if k > 0 else v


def linear_int(x, ex, w: RowWeight, bits: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """``x * 2**ex`` (``bits``-bit integers, one exponent per row) times ``w.T``, the way
    the machine computes it: an int32 result and its exponent.

    Per block ``b`` of ``w.group`` inputs and signed byte plane ``p`` of ``x`` (the int8
    values the MXM multiplies, :func:`_planes`): the exact MXM partial ``P =
    plane_p[b] . q[:, b]`` (int32), times the block scale ``r[:, b]`` with a rounding shift
    by ``s - 8p`` (one VXM instruction, 64-bit inside); the block offset ``o[:, b]`` times
    the block sum ``S_b`` of ``x``, rounded by ``2**s``; the low planes' ``+128`` as one
    per-channel constant (``w.plane_bias(bits)``, offline); all summed in int32.
    ``s = w.shift(bits)`` (per tensor) is the smallest that keeps the sum inside int32 for
    every input of ``bits`` bits.  Result ``acc * 2**(ex + f - R_BITS + s)``.
    """
    x = np.asarray(x, dtype=np.int64)
    n_out, n_in = w.shape
    if x.shape[-1] != n_in:
        raise ValueError(f"linear_int: input width {x.shape[-1]} != weight input width {n_in}")
    s = w.shift(bits)
    lead = x.shape[:-1]
    nb, g = n_in // w.group, w.group
    xb = x.reshape(-1, nb, g)  # [rows, blocks, group]
    qb = w.q.astype(np.float64).reshape(n_out, nb, g).transpose(1, 2, 0)  # [b, g, out]
    acc = np.zeros((xb.shape[0], n_out), np.int64)
    for p, plane in enumerate(_planes(xb, bits)):
        # exact: |partial| <= group * 255 * 128 < 2**53
        part = np.rint(np.matmul(plane.transpose(1, 0, 2).astype(np.float64), qb)
                       ).astype(np.int64)  # [b, rows, out]
        acc += _round_shift(part * w.r.T[:, None, :], s - 8 * p).sum(axis=0)
    if w.o is not None:
        sums = xb.sum(axis=-1)  # [rows, b]
        acc += _round_shift(sums.T[:, :, None] * w.o.T[:, None, :], s).sum(axis=0)
    acc += w.plane_bias(bits)
    return acc.reshape(lead + (n_out,)), np.asarray(ex, dtype=np.int64) + (w.f - R_BITS + s)


def linear_int_blocks(x, ex, w: RowWeight, bits: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """The literal machine computation of :func:`linear_int` (slow; for tests): per block
    and plane an int32 MXM partial (checked), per term one multiply-and-shift, an int32
    running sum (checked)."""
    x = np.asarray(x, dtype=np.int64)
    n_out, n_in = w.shape
    s = w.shift(bits)
    acc = np.zeros(x.shape[:-1] + (n_out,), dtype=np.int64)
    planes = _planes(x, bits)
    for b in range(n_in // w.group):
        sl = slice(b * w.group, (b + 1) * w.group)
        qb = w.q[:, sl].astype(np.int64).T
        for p, plane in enumerate(planes):
            part = matmul_exact(plane[..., sl], qb)
            if part.size and (part.min() < -(2**31) or part.max() > 2**31 - 1):
                raise OverflowError("linear_int_blocks: int32 MXM partial overflow")
            acc += shift_round(part * w.r[:, b], s - 8 * p)
        if w.o is not None:
            acc += shift_round(np.sum(x[..., sl], axis=-1, keepdims=True) * w.o[:, b], s)
        if acc.size and (acc.min() < -(2**31) or acc.max() > 2**31 - 1):
            raise OverflowError("linear_int_blocks: int32 sum overflow")
    acc += w.plane_bias(bits)
    return acc, np.asarray(ex, dtype=np.int64) + (w.f - R_BITS + s)


def signed_digits(x) -> tuple[np.ndarray, np.ndarray]:
    """``x = 256 hi + lo`` with ``lo`` in ``[-128, 127]``: both int8 for ``|x| <= 2**14``
    (15-bit values: ``hi`` in ``[-64, 64]``), the MXM's two passes of a 15-bit operand."""
    x = np.asarray(x, dtype=np.int64)
    lo = ((x + 128) & 0xFF) - 128
    return (x - lo) >> 8, lo


def digit_matmul(a, b, shift: int) -> np.ndarray:
    """``round(a @ b / 2**shift)`` the way the machine gets it: from the four int8 digit
    products (:func:`signed_digits` of both operands, each an int32 MXM accumulator,
    checked) combined exactly as ``hh 2**(16-s) + (hl + lh) 2**(8-s) + round(ll / 2**s)``
    (``s <= 8``).  Equal to ``shift_round(a @ b, shift)`` (tested)."""
    if not 0 <= shift <= 8:
        raise ValueError(f"digit_matmul: shift {shift} outside 0..8")
    (ah, al), (bh, bl) = signed_digits(a), signed_digits(b)
    for name, d in (("a", ah), ("b", bh)):
        if d.size and (d.min() < -128 or d.max() > 127):
            raise ValueError(f"digit_matmul: {name}'s high digit leaves int8 (|x| > 2**14)")
    part = {}
    for k, (x, y) in {"hh": (ah, bh), "hl": (ah, bl), "lh": (al, bh), "ll": (al, bl)}.items():
        part[k] = matmul_exact(x, y)
        if part[k].size and (part[k].min() < -(2**31) or part[k].max() > 2**31 - 1):
            raise OverflowError(f"digit_matmul: the {k} partial leaves int32")
    return ((part["hh"] << (16 - shift)) + ((part["hl"] + part["lh"]) << (8 - shift))
            + shift_round(part["ll"], shift))
