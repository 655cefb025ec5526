"""256-entry lookup tables for the quantised decoder block (MEM ``Gather`` contents).

Every table is indexed by one unsigned byte per lane (0..255) and yields one byte per lane,
so each lookup is exactly one ``Gather``.

* :func:`exp_table` -- ``E[d] = round(255 * exp(-d * step))`` (uint8); ``d`` is the clamped
  difference ``min(row_max - score, 255)`` in units of the score scale ``step``.
* :func:`reciprocal_seed_table` -- 8-bit seed for ``1/a``, ``a`` in ``[0.5, 1)``:
  ``y0 = (256 + T[i]) / 256`` for ``a`` in ``[0.5 + i/512, 0.5 + (i+1)/512)`` (uint8).
* :func:`gelu_table` -- int8 -> int8 GELU; index is the raw byte of the int8 input
  (``uint8(q)``, i.e. ``q mod 256``), entry is ``clamp(rint(gelu(q*s_in)/s_out))``.
"""

from __future__ import annotations

import math

import numpy as np

EXP_ONE = 255  # exp table value at d = 0 (the fixed-point "one" of the exp values)


def exp_table(step: float) -> np.ndarray:
    """``E[d] = round_half_up(255 * exp(-d * step))`` for ``d = 0..255``, uint8.

    ``step`` (the score scale, in logits per score LSB) must be large enough that ``E[255]``
    is 0, so that clamping larger differences to 255 loses nothing:
    ``step > ln(510) / 255 ~= 0.02446``.
    """
    step = float(step)
    if not (math.isfinite(step) and step > 0):
        raise ValueError(f"exp_table: step must be finite and > 0, got {step!r}")
    d = np.arange(256, dtype=np.float64)
    table = np.floor(EXP_ONE * np.exp(-d * step) + 0.5)
    if table[255] != 0:
        raise ValueError(
            f"exp_table: step={step!r} too small: E[255]={int(table[255])} != 0, so clamping "
            f"the difference to 255 would not be exact (need step > ln(510)/255 ~= 0.02446)"
        )
    return table.astype(np.uint8)


def reciprocal_seed_table() -> np.ndarray:
    """Seed table for the reciprocal of ``a`` in ``[0.5, 1)`` (Q31 ``a`` in ``[2**30, 2**31)``).

    Entry ``i`` covers ``a`` in ``[lo, hi) = [0.5 + i/512, 0.5 + (i+1)/512)`` (``i`` = bits
    29..22 of the Q31 value).  ``y0 = (256 + T[i]) / 256`` is the 9-bit value minimising
    ``max |1 - a*y0|`` over the interval (max relative seed error < 2**-8, so one Newton
    step leaves < 2**-16).  Returned as uint8.
    """
    i = np.arange(256, dtype=np.float64)
    lo = 0.5 + i / 512.0
    hi = 0.5 + (i + 1) / 512.0
    best = np.empty(256, dtype=np.int64)
    ideal = 2.0 / (lo + hi) * 256.0
    for k in range(256):
        cands = np.array([math.floor(ideal[k]), math.ceil(ideal[k])], dtype=np.float64)
        cands = np.clip(cands, 256, 511)
        err = np.maximum(np.abs(1 - lo[k] * cands / 256), np.abs(1 - hi[k] * cands / 256))
        best[k] = int(cands[int(np.argmin(err))])
    return (best - 256).astype(np.uint8)


def gelu_float(x) -> np.ndarray:
    """Exact (erf-based) GELU in float64: ``0.5 * x * (1 + erf(x / sqrt(2)))``."""
    xf = np.asarray(x, dtype=np.float64)
    erf = np.frompyfunc(math.erf, 1, 1)
    return 0.5 * xf * (1.0 + erf(xf / math.sqrt(2.0)).astype(np.float64))


def gelu_table(in_scale: float, out_scale: float) -> np.ndarray:
    """int8 GELU table indexed by the input's byte.

    ``G[uint8(q)] = clamp(rint(gelu(q * s_in) / s_out), -128, 127)`` for int8 ``q``.
    """
    q = np.arange(256, dtype=np.int64).astype(np.uint8).view(np.int8).astype(np.float64)
    g = gelu_float(q * float(in_scale)) / float(out_scale)
    return np.clip(np.rint(g), -128, 127).astype(np.int8)
