"""Integer RMSNorm and LayerNorm (I-BERT style) with their float64 references.

RMSNorm of a row-scaled int32 row ``h * 2**e`` (the wide residual stream), machine steps:

1. ``k = max(0, bitlen(max|h|) - 15)`` (row max + ``clz``), ``x = sat16(h >> k)`` (VXM).
2. Sum of squares: ``ss = sum((x*x + 2**(SQ-1)) >> SQ)``, ``SQ = ceil(log2 n)``, so ``ss`` stays
   in int32 (VXM multiply, shift; SXM rotate + VXM add reduction).
3. ``ss += eps`` in the same units: an offline constant ``A * 2**B`` (``A`` a 14-bit
   mantissa, a VXM immediate) shifted by the row's exponent, saturating at ``2**30``.
4. ``r = rsqrt(ss)`` by :func:`rsqrt_int`: ``clz`` normalisation to an even exponent, a
   192-entry seed Gather, two Newton steps ``y <- y (3 - a y^2) / 2`` in Q29 (VXM
   multiply and rounding shift in one instruction; ``y^2`` saturates to int32).
   Relative error < 2**-26.
5. ``z = round(x * G[c] * r / 2**31)`` (int16 x int16 -> int32, then x Q29 and a
   rounding shift inside one VXM instruction: |z| < 2**30), narrowed to int16 per row.
   ``G`` is ``gamma * sqrt(n / 2**SQ)`` quantised to 16 bits with one power-of-two scale
   (offline); the row exponent ``e + k`` cancels, as it must for a norm.

Every intermediate that leaves a VXM instruction fits int32 (the machine's widest stream
and register value); `compiler.lowerings.norm` is the machine program, bit for bit.

LayerNorm adds the integer row mean (subtracted before squaring) and the int32 bias.
"""

from __future__ import annotations

import math

import numpy as np

from golden.planes import bitlen, narrow, shift_round

RSQRT_FRAC = 29  # y in Q29
EPS_FRAC = 60  # eps offline constant in Q60
BETA_FRAC = 24  # LayerNorm beta offline constant in Q24
RSQRT_SEED = np.array(
    [min(511, round(256.0 / math.sqrt((64 + i + 0.5) / 256.0))) - 256 for i in range(192)],
    dtype=np.int64)  # seed for a in [0.25, 1): index (A >> 23) - 64, y0 = (256 + T) / 256

__all__ = ["RSQRT_SEED", "NormWeights", "layernorm_float", "layernorm_int", "rmsnorm_float",
           "rmsnorm_int", "rsqrt_int"]


def rsqrt_int(v) -> tuple[np.ndarray, np.ndarray]:
    """``1/sqrt(v) ~= y * 2**-p`` for ``v`` in ``[1, 2**30)``: returns ``(y Q29, p)`` (int64)."""
    v = np.asarray(v, dtype=np.int64)
    if v.size and (v.min() < 1 or v.max() > 2**30 - 1):
        raise ValueError(f"rsqrt_int: v must be in [1, 2**30 - 1], got [{v.min()}, {v.max()}]")
    b = bitlen(v)  # v in [2**(b-1), 2**b)
    b2 = b + (b & 1)  # even: v = a * 2**b2, a in [0.25, 1)
    a = v << (31 - b2)  # Q31 a in [2**29, 2**31)
    y = 256 + RSQRT_SEED[(a >> 23) - 64]  # Q8
    y = y << (RSQRT_FRAC - 8)
    three = 3 << RSQRT_FRAC
    for _ in range(2):
        # Q29; saturates to int32 (only y = 2**30 exactly, a = 1/4, would reach 2**31)
        y2 = np.minimum((y * y + (1 << (RSQRT_FRAC - 1))) >> RSQRT_FRAC, 2**31 - 1)
        t = (a * y2 + (1 << 30)) >> 31  # a*y^2, Q29
        y = (y * (three - t) + (1 << RSQRT_FRAC)) >> (RSQRT_FRAC + 1)
    return y, RSQRT_FRAC + b2 // 2


class NormWeights:
    """Offline part of an integer norm over rows of width ``n``: gamma (and beta)."""

    def __init__(self, gamma, eps: float, beta=None):
        g = np.asarray(gamma, dtype=np.float64)
        if g.ndim != 1 or not np.all(np.isfinite(g)):
            raise ValueError(f"NormWeights: gamma must be a finite 1-D vector, got {g.shape}")
        if not (math.isfinite(eps) and eps >= 0):
            raise ValueError(f"NormWeights: eps must be finite and >= 0, got {eps}")
        self.n = g.shape[0]
        self.sq = max(0, math.ceil(math.log2(self.n)))
        gs = g * math.sqrt(self.n / 2.0**self.sq)
        top = float(np.max(np.abs(gs))) or 1.0
        self.fg = math.floor(math.log2(32767.0 / top))  # G = gs * 2**fg, |G| <= 32767
        self.g = np.rint(gs * 2.0**self.fg).astype(np.int64)
        # eps in Q60 as A * 2**B, A < 2**14 (one VXM immediate, shifted at run time)
        e60 = eps * self.n / 2.0**self.sq * 2.0**EPS_FRAC
        self.eps_b = max(0, math.floor(math.log2(e60)) - 13) if e60 >= 1 else 0
        self.eps_a = round(e60 / 2.0**self.eps_b)
        if self.eps_a >= 2**14:
            self.eps_a, self.eps_b = self.eps_a >> 1, self.eps_b + 1
        self.eps_q = self.eps_a << self.eps_b
        # beta as int32 at 2**-BETA_FRAC, shifted to the row's exponent at run time
        self.beta = None if beta is None else np.rint(
            np.asarray(beta, dtype=np.float64) * 2.0**BETA_FRAC).astype(np.int64)


def _sum_squares(x, nw: NormWeights, e) -> np.ndarray:
    half = (1 << nw.sq) >> 1  # round each square half up (unbiased), then sum
    ss = np.sum((x * x + half) >> nw.sq, axis=-1, keepdims=True)
    # eps in units of 2**(sq + 2e): Q60 constant shifted by the row exponent
    k = np.broadcast_to(EPS_FRAC + 2 * np.asarray(e, dtype=np.int64), ss.shape)
    # k < 0: eps shifted left, saturated at 2**30 (ss + eps then saturates too)
    q = np.full(ss.shape, nw.eps_q, np.int64)
    left = np.where(bitlen(q) - k > 30, 2**30, q << np.clip(-k, 0, 62))
    eps = np.where(k < 0, left, shift_round(q, np.maximum(k, 0))) if nw.eps_q else 0
    ss = np.minimum(ss + eps, 2**30 - 1)
    return np.maximum(ss, 1)


def rmsnorm_int(h, e, nw: NormWeights, bits: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """RMSNorm of ``h * 2**e`` (rows of width ``nw.n``): ``bits``-bit output, row exponent."""
    h = np.asarray(h, dtype=np.int64)
    if h.shape[-1] != nw.n:
        raise ValueError(f"rmsnorm_int: row width {h.shape[-1]} != gamma width {nw.n}")
    x, ex = narrow(h, e, 16)
    y, p = rsqrt_int(_sum_squares(x, nw, ex))
    # x * G: |.| <= 2**30 (int32); times y (Q29, <= 2**30) and >> 31: |z| <= 2**29
    z = shift_round((x * nw.g) * y, 31)
    return narrow(z, 31 - (nw.fg + p), bits)


def layernorm_int(h, e, nw: NormWeights) -> tuple[np.ndarray, np.ndarray]:
    """LayerNorm of ``h * 2**e``: integer mean subtracted, then as RMSNorm, plus beta."""
    h = np.asarray(h, dtype=np.int64)
    x, ex = narrow(h, e, 15)  # 15 bits so x - mean stays within 16
    n = x.shape[-1]
    mean = np.floor_divide(np.sum(x, axis=-1, keepdims=True) + n // 2, n)
    y, ey = rmsnorm_int(x - mean, ex, nw)
    if nw.beta is None:
        return y, ey
    b = shift_round(nw.beta, BETA_FRAC + ey)  # beta * 2**-BETA_FRAC in units of 2**ey
    return narrow(y + b, ey, 16)


def rmsnorm_float(h, gamma, eps: float) -> np.ndarray:
    h = np.asarray(h, dtype=np.float64)
    return h / np.sqrt(np.mean(h * h, axis=-1, keepdims=True) + eps) * gamma


def layernorm_float(h, gamma, eps: float, beta=None) -> np.ndarray:
    h = np.asarray(h, dtype=np.float64)
    c = h - np.mean(h, axis=-1, keepdims=True)
    y = rmsnorm_float(c, gamma, eps)
    return y if beta is None else y + beta
