"""Integer exp, sigmoid, SiLU and the SiLU-gated MLP product (SwiGLU), with float references.

``exp2_neg`` is the one exponential of the LLM path (softmax and sigmoid both use it):

* the argument arrives as ``u >= 0`` in Q16 log2 units (``exp(-x) = 2**-(x*log2 e)``);
  :func:`log2_q16` produces it from a row-scaled integer with one multiply by the 25-bit
  constant ``round(log2(e) * 2**24)`` and one rounding shift;
* ``u = 16.16``: integer part ``z``, fraction split in two bytes ``f_hi, f_lo``;
* two 256-entry tables (MEM ``Gather``, 16-bit entries = two byte planes each):
  ``HI[i] = round(2**15 * 2**(-i/256))``, ``LO[i] = round(2**15 * 2**(-i/65536))``;
* ``exp = ((HI[f_hi] * LO[f_lo] + 2**14) >> 15) >> z`` (rounding) -- Q15, error < 2 LSB.

SiLU(x) = x * sigmoid(x); ``sigmoid(|x|) = 1 / (1 + exp(-|x|))`` via the VXM reciprocal
(:func:`golden.block.reciprocal_int`: clz, 256-entry seed Gather, one Newton step), and
``sigmoid(-|x|) = 1 - sigmoid(|x|)``.  All element-wise: VXM lanes + two Gathers.
"""

from __future__ import annotations

import math

import numpy as np

from golden.block import reciprocal_int
from golden.planes import bitlen, narrow, shift_round
from golden.quant import requantize
from golden.tables import reciprocal_seed_table

Q15 = 1 << 15
LOG2E_BITS = 24
LOG2E_Q = round(math.log2(math.e) * 2**LOG2E_BITS)  # 25-bit VXM constant
U_MAX = (31 << 16) | 0xFFFF  # exp2(-32) is below one Q15 LSB: clamp there
EXP2_HI = np.array([round(Q15 * 2.0 ** (-i / 256)) for i in range(256)], dtype=np.int64)
EXP2_LO = np.array([round(Q15 * 2.0 ** (-i / 65536)) for i in range(256)], dtype=np.int64)
RECIP_SEED = reciprocal_seed_table()

__all__ = ["exp2_neg", "log2_q16", "sigmoid_q15", "silu_float", "silu_int", "swiglu_float",
           "swiglu_int"]


def log2_q16(d, e, scale: float = 1.0) -> np.ndarray:
    """``u = round(d * 2**e * scale * log2(e) * 2**16)`` for ``d >= 0`` (int64), saturated at
    U_MAX.  ``scale`` in (0, 1] is folded into the 25-bit constant (offline).

    ``d`` is first shifted right (floor) while it has more than 37 bits and the total shift
    allows it, so ``d * const`` stays in int64; a left shift saturates (``u >= 2**24``).
    """
    d = np.asarray(d, dtype=np.int64)
    if d.size and d.min() < 0:
        raise ValueError("log2_q16: argument must be >= 0")
    if not 0 < scale <= 1:
        raise ValueError(f"log2_q16: scale must be in (0, 1], got {scale}")
    const = LOG2E_Q if scale == 1.0 else round(math.log2(math.e) * scale * 2**LOG2E_BITS)
    k = np.broadcast_to(LOG2E_BITS - 16 - np.asarray(e, dtype=np.int64), d.shape)
    pre = np.clip(np.minimum(k, bitlen(d) - 37), 0, None)
    dp = d >> pre
    kk = k - pre
    sat = (kk < 0) & (dp > 0) | (bitlen(dp) > 38)
    u = shift_round(np.where(sat, 0, dp) * const, np.maximum(kk, 0))
    return np.where(sat, U_MAX, np.minimum(u, U_MAX))


def exp2_neg(u) -> np.ndarray:
    """``round(2**15 * 2**(-u / 2**16))`` for Q16 ``u`` in ``[0, U_MAX]`` (two Gathers)."""
    u = np.asarray(u, dtype=np.int64)
    if u.size and (u.min() < 0 or u.max() > U_MAX):
        raise ValueError(f"exp2_neg: u must be in [0, {U_MAX}]")
    z = u >> 16
    f_hi = (u >> 8) & 0xFF
    f_lo = u & 0xFF
    m = (EXP2_HI[f_hi] * EXP2_LO[f_lo] + (1 << 14)) >> 15
    return shift_round(m, z)


def sigmoid_q15(x, e) -> np.ndarray:
    """Q15 ``sigmoid(x * 2**e)`` in ``[0, 2**15]`` (int64)."""
    x = np.asarray(x, dtype=np.int64)
    t = exp2_neg(log2_q16(np.abs(x), e))  # exp(-|x|), Q15 in [0, 2**15]
    den = Q15 + t  # (1 + exp(-|x|)) in Q15, in [2**15, 2**16]
    r = reciprocal_int(den, RECIP_SEED)
    pos = requantize(np.full(den.shape, 1 << 30, dtype=np.int64), r.y1, r.shift,
                     qmin=0, qmax=Q15).astype(np.int64)  # 2**30 / den = sigmoid(|x|) Q15
    return np.where(x >= 0, pos, Q15 - pos)


def silu_int(x, e) -> tuple[np.ndarray, np.ndarray]:
    """SiLU of int16 ``x * 2**e``: ``x * sigmoid`` (int32 product), narrowed to int16."""
    x = np.asarray(x, dtype=np.int64)
    return narrow(x * sigmoid_q15(x, e), np.asarray(e) - 15, 16)


def swiglu_int(g, eg, u, eu, bits: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """The gated MLP product ``silu(g) * u`` of two int16 row-scaled tensors -> ``bits``."""
    s, es = silu_int(g, eg)
    return narrow(s * np.asarray(u, dtype=np.int64), es + np.asarray(eu), bits)


def silu_float(x) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / (1.0 + np.exp(-x))


def swiglu_float(g, u) -> np.ndarray:
    return silu_float(g) * np.asarray(u, dtype=np.float64)
