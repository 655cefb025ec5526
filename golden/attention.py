"""Grouped-query attention over a KV cache, integer and float64.

Shapes: queries ``[T, Hq, d]`` at absolute positions ``pos`` (``[T]``); the cache holds
keys/values ``[S, Hkv, d]`` for positions ``0..S-1``; query head ``h`` reads KV head
``h // (Hq // Hkv)``; a query at position ``p`` sees keys ``0..p`` (causal).  Prefill
(``T`` rows at once) and decode (one row) give bit-identical integer results, because
every integer step of a row depends only on that row and the keys it sees.

Integer path (q, k, v int16 with one exponent per row and head):

1. Scores: ``acc = round(q . k / 2**sq)`` (MXM, K installed as weights, 15-bit x 15-bit =
   2 x 2 int8 byte-plane passes, combined exactly), real value ``acc * 2**(e_q + e_k + sq
   - log2 sqrt d)`` (d a power of 4 keeps the 1/sqrt(d) a shift; otherwise it is folded
   into the exp's constant).
2. Keys carry different exponents: each score is shifted to the row's largest visible key
   exponent (VXM shift), masked lanes selected out, the row max subtracted.
3. ``exp`` of the (non-positive) difference: :func:`golden.activation.exp2_neg` (Q15).
4. Values carry different exponents: each exp is shifted by its key's exponent deficit
   against the row's largest value exponent, and by one more bit (Q14: int8 planes)
   (VXM shift), then ``E V`` on the MXM, rounded by ``2**8`` (the exps are the
   un-normalised probabilities of the row max).
5. Normalise after ``E V`` (as flash attention does): the row sum (int32) gets one
   reciprocal (:func:`golden.block.reciprocal_int`), applied to the ``d`` context lanes
   (narrowed to 24 bits, times the Q29 reciprocal, rounded by ``2**31``).  Normalising
   the probabilities first would round each to Q15 of 1 -- a small probability would lose
   ``log2(sum)`` bits.
6. The heads' contexts are aligned and narrowed to one int16 row for W_o.
"""

from __future__ import annotations

import math

import numpy as np

from golden.activation import exp2_neg, log2_q16
from golden.block import reciprocal_int
from golden.planes import EXACT_F64, narrow, shift_round
from golden.tables import reciprocal_seed_table

RECIP_SEED = reciprocal_seed_table()

__all__ = ["KVCache", "attention_float", "attention_int"]


class KVCache:
    """Keys and values of the positions seen so far, per layer (int or float)."""

    def __init__(self, n_layers: int):
        self.k: list = [None] * n_layers
        self.v: list = [None] * n_layers
        self.ek: list = [None] * n_layers
        self.ev: list = [None] * n_layers

    @property
    def length(self) -> int:
        return 0 if self.k[0] is None else int(self.k[0].shape[0])

    def append(self, layer: int, k, v, ek=None, ev=None):
        """Add ``[T, Hkv, d]`` keys/values (and exponents ``[T, Hkv, 1]``); return all."""
        def cat(old, new):
            return new if old is None else np.concatenate([old, new], axis=0)
        self.k[layer] = cat(self.k[layer], k)
        self.v[layer] = cat(self.v[layer], v)
        if ek is not None:
            self.ek[layer] = cat(self.ek[layer], np.asarray(ek, dtype=np.int64))
            self.ev[layer] = cat(self.ev[layer], np.asarray(ev, dtype=np.int64))
        return self.k[layer], self.v[layer], self.ek[layer], self.ev[layer]


def _group(hq: int, hkv: int) -> int:
    if hkv < 1 or hq % hkv:
        raise ValueError(f"attention: {hq} query heads is not a multiple of {hkv} KV heads")
    return hq // hkv


def _visible(pos, s: int) -> np.ndarray:
    return np.arange(s)[None, :] <= np.asarray(pos)[:, None]  # [T, S]


def attention_float(q, k, v, pos) -> np.ndarray:
    """Causal GQA in float64: ``[T, Hq, d]`` context."""
    q, k, v = (np.asarray(a, dtype=np.float64) for a in (q, k, v))
    g = _group(q.shape[1], k.shape[1])
    kk = np.repeat(k, g, axis=1).transpose(1, 2, 0)  # [H, d, S]
    vv = np.repeat(v, g, axis=1).transpose(1, 0, 2)  # [H, S, d]
    s = np.einsum("thd,hds->hts", q, kk) / math.sqrt(q.shape[-1])
    s = np.where(_visible(pos, k.shape[0])[None], s, -np.inf)
    p = np.exp(s - s.max(axis=-1, keepdims=True))
    p /= p.sum(axis=-1, keepdims=True)
    return np.einsum("hts,hsd->thd", p, vv)


def _exact_bmm(a, b):
    """Exact integer batched matmul (float64 BLAS, bound-checked)."""
    bound = a.shape[-1] * (int(np.abs(a).max()) if a.size else 0) * (
        int(np.abs(b).max()) if b.size else 0)
    if bound >= EXACT_F64:
        raise OverflowError("attention: matmul accumulator not exact in float64")
    return np.rint(np.matmul(a.astype(np.float64), b.astype(np.float64))).astype(np.int64)


V_SHIFT = 8  # E V is rounded by 2**8 (exact from the MXM's byte-plane partials)
MAX_KEYS = 2 ** (31 - 28 + V_SHIFT)  # keys E V can sum in int32 (15-bit v, Q14 exps)


def attention_int(q, eq, k, ek, v, ev, pos, bits: int = 16, in_bits: int = 15
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Integer causal GQA: ``in_bits``-bit ``q [T,Hq,d]``, cache ``k, v [S,Hkv,d]`` with
    exponents ``[.., H, 1]``; returns the context as one ``bits``-bit row per query
    ``[T, Hq*d]`` and its exponent ``[T, 1]``.

    Every value the machine stores fits int32: ``q . k`` is rounded by ``2**sq`` with
    ``sq = ceil(log2 d) + 2 (in_bits - 1) - 30`` (exact from the MXM's four byte-plane
    partials, ``in_bits <= 15`` so each plane is int8), the exps enter ``E V`` in Q14 and
    ``E V`` is rounded by ``2**V_SHIFT``, the normalised context by ``2**31``."""
    q = np.asarray(q, dtype=np.int64)
    t, hq, d = q.shape
    s = k.shape[0]
    lim = 2 ** (in_bits - 1)
    for name, a in (("q", q), ("k", k), ("v", v)):
        a = np.asarray(a)
        if a.size and (a.min() < -lim or a.max() > lim - 1):
            raise ValueError(f"attention_int: {name} outside {in_bits} bits")
    if s > MAX_KEYS:
        raise ValueError(f"attention_int: {s} keys exceed the {MAX_KEYS} whose E V sum "
                         "fits int32")
    g = _group(hq, k.shape[1])
    vis = _visible(pos, s)[None]  # [1, T, S]
    kk = np.repeat(k, g, axis=1).transpose(1, 2, 0)  # [H, d, S]
    ekk = np.repeat(ek[..., 0], g, axis=1).T[:, None, :]  # [H, 1, S]
    sq = max(0, math.ceil(math.log2(d)) + 2 * (in_bits - 1) - 30)
    acc = shift_round(_exact_bmm(q.transpose(1, 0, 2), kk), sq)  # [H, T, S], |.| < 2**30
    # 1/sqrt(d): a shift when d is a power of 4, else fold into the exp constant
    half_log = math.log2(d) / 2
    sh = int(half_log) if half_log == int(half_log) else 0
    emax = np.max(np.where(vis, ekk, np.iinfo(np.int64).min // 2), axis=-1, keepdims=True)
    z = shift_round(acc, emax - ekk)  # aligned to the row's largest key exponent
    z = np.where(vis, z, np.iinfo(np.int64).min // 4)
    diff = np.max(z, axis=-1, keepdims=True) - z  # >= 0
    e_row = eq.transpose(1, 0, 2) + emax + sq - sh  # [H, T, 1]
    # non power-of-4 head dim: 1/sqrt(d) folded into the exp's log2(e) constant
    fold = 1.0 if sh or d == 1 else 1.0 / math.sqrt(d)
    ex = np.where(vis, exp2_neg(log2_q16(np.where(vis, diff, 0), e_row, fold)), 0)
    total = np.sum(ex, axis=-1, keepdims=True)  # in [2**15, S * 2**15] (max lane = 2**15)
    # values: align each key's exp to the row's largest value exponent
    evv = np.repeat(ev[..., 0], g, axis=1).T[:, None, :]  # [H, 1, S]
    vmax = np.max(np.where(vis, evv, np.iinfo(np.int64).min // 2), axis=-1, keepdims=True)
    pe = np.where(vis, shift_round(ex, vmax - evv + 1), 0)  # Q14: <= 2**14 (int8 planes)
    vv = np.repeat(v, g, axis=1).transpose(1, 0, 2)  # [H, S, d]
    # sum_s exp_s v_s at 2**vmax (the exps' Q14 against the sum's Q15: + 1), by 2**8
    acc = shift_round(_exact_bmm(pe, vv), V_SHIFT)
    # normalise after P V: one reciprocal of the row sum per row, applied to d lanes
    acc, ea = narrow(acc, vmax + 1 + V_SHIFT, 24)
    r = reciprocal_int(total, RECIP_SEED)  # x / total ~= x * y1 * 2**(shift - 31)
    ctx = shift_round(acc * r.y1.astype(np.int64), 31)  # |.| < 2**23 * 2**30 / 2**31
    ectx = ea + r.shift.astype(np.int64)  # [H, T, 1]
    # heads -> one row: align to the row's largest head exponent, narrow to int16
    top = np.max(ectx, axis=0, keepdims=True)
    ctx = shift_round(ctx, top - ectx).transpose(1, 0, 2).reshape(t, hq * d)
    return narrow(ctx, top[0], bits)
