"""Rotary position embedding: int16 cos/sin tables per position, and the float reference.

Convention: GGUF ``llama`` files store Q and K rows so that rotary pairs are *adjacent*
elements ``(x[2i], x[2i+1])`` of each head (llama.cpp ``LLAMA_ROPE_TYPE_NORM``; the HF
converter permutes the rows from HF's half-split layout), angle ``pos * base**(-2i/d)``.

Machine: the tables are SRAM rows of int16 ``round(2**14 cos)``, ``round(2**14 sin)`` for
each position (two byte planes each), read by position; the pair swap is an SXM permute;
``x' = x_e c - x_o s``, ``y' = x_e s + x_o c`` are int16 x int16 VXM products summed in int32
(|.| <= 2**30), then narrowed to int16 per row and head.
"""

from __future__ import annotations

import numpy as np

from golden.planes import narrow

ROPE_FRAC = 14

__all__ = ["ROPE_FRAC", "rope_angles", "rope_float", "rope_int", "rope_tables"]


def rope_angles(positions, head_dim: int, base: float) -> np.ndarray:
    """``[len(positions), head_dim/2]`` angles ``pos * base**(-2i/head_dim)`` (float64)."""
    if head_dim % 2:
        raise ValueError(f"rope: head_dim must be even, got {head_dim}")
    inv = base ** (-np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)
    return np.asarray(positions, dtype=np.float64)[:, None] * inv[None, :]


def rope_tables(positions, head_dim: int, base: float) -> tuple[np.ndarray, np.ndarray]:
    """int16 ``(cos, sin)`` tables in Q14 for the given positions."""
    a = rope_angles(positions, head_dim, base)
    return (np.rint(np.cos(a) * 2**ROPE_FRAC).astype(np.int64),
            np.rint(np.sin(a) * 2**ROPE_FRAC).astype(np.int64))


def _rotate(x, c, s):
    xe, xo = x[..., 0::2], x[..., 1::2]
    out = np.empty(np.broadcast_shapes(x.shape), dtype=np.result_type(x, c))
    out[..., 0::2] = xe * c - xo * s
    out[..., 1::2] = xe * s + xo * c
    return out


def rope_float(x, positions, base: float) -> np.ndarray:
    """Rotate ``x`` ``[T, H, d]`` by its positions ``[T]`` (float64, adjacent pairs)."""
    x = np.asarray(x, dtype=np.float64)
    a = rope_angles(positions, x.shape[-1], base)[:, None, :]
    return _rotate(x, np.cos(a), np.sin(a))


def rope_int(x, e, positions, base: float, bits: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Rotate int16 ``x * 2**e`` (``[T, H, d]``, ``e`` ``[T, H, 1]`` or broadcastable):
    int16 result and exponent per (row, head)."""
    x = np.asarray(x, dtype=np.int64)
    c, s = rope_tables(positions, x.shape[-1], base)
    y = _rotate(x, c[:, None, :], s[:, None, :])
    return narrow(y, np.asarray(e, dtype=np.int64) - ROPE_FRAC, bits)
