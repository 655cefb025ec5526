"""Tiling of the block's tensors to the vector length, and the constant vectors.

Layouts (VL = vector length, lanes beyond a tensor's width are 0):

* activations in *row layout*: vector ``(i, t)`` = row ``i`` (token), lanes
  ``t*VL .. t*VL+VL-1`` of the feature dimension;
* weights ``W (out, in)``: tile ``(n, k)`` = the rows ``n*VL..`` (output channels) of
  columns ``k*VL..``; each row is one vector, loaded by ``LW row`` into the MXM so that
  ``MVM`` computes ``W_tile . x_tile``; partial products over the ``k`` tiles accumulate in
  an MXM accumulator slot;
* attention in *transposed layout*: per head, vector ``j`` (one key) holds the scores /
  exponentials / probabilities of every query ``i`` in lane ``i`` (needs seq_len <= VL).
"""

from __future__ import annotations

import numpy as np


def ntiles(n: int, vl: int) -> int:
    return -(-n // vl)


def pad(v, vl: int, dtype=np.int64) -> np.ndarray:
    out = np.zeros(vl, dtype)
    v = np.asarray(v)
    out[: len(v)] = v
    return out


def tile_vec(v, t: int, vl: int) -> np.ndarray:
    """Lanes t*VL.. of a 1-D vector, zero padded to VL (int64)."""
    return pad(np.asarray(v, np.int64)[t * vl:(t + 1) * vl], vl)


def weight_rows(w: np.ndarray, n: int, k: int, vl: int) -> list[np.ndarray]:
    """The rows (output channels) of weight tile (n, k) as int8 vectors."""
    rows = w[n * vl:(n + 1) * vl, k * vl:(k + 1) * vl]
    return [pad(r, vl, np.int8) for r in rows]


def head_lanes(h: int, t: int, dh: int, vl: int) -> range:
    """Lanes of tile t that belong to head h (possibly empty)."""
    lo = max(h * dh, t * vl)
    hi = min((h + 1) * dh, (t + 1) * vl)
    return range(lo - t * vl, hi - t * vl) if hi > lo else range(0)


def head_tiles(h: int, dh: int, vl: int) -> list[int]:
    return list(range(h * dh // vl, ((h + 1) * dh - 1) // vl + 1))


def tile_heads(t: int, n_heads: int, dh: int, vl: int) -> list[int]:
    return [h for h in range(n_heads) if len(head_lanes(h, t, dh, vl))]


def bytes_of(values, nbytes: int) -> np.ndarray:
    """int vector (VL,) -> (nbytes, VL) uint8 little-endian planes (two's complement)."""
    v = np.ascontiguousarray(np.asarray(values, dtype="<i8"))
    return np.ascontiguousarray(v.view(np.uint8).reshape(-1, 8)[:, :nbytes].T)


def from_bytes(planes, signed: bool = True) -> np.ndarray:
    p = np.asarray(planes, dtype=np.uint8)
    n = p.shape[0]
    v = np.zeros(p.shape[1:], dtype=np.int64)
    for k in range(n):
        v |= p[k].astype(np.int64) << (8 * k)
    if signed:
        half = 1 << (8 * n - 1)
        v = ((v + half) & ((1 << (8 * n)) - 1)) - half
    return v


def table_vectors(table: np.ndarray, vl: int) -> np.ndarray:
    """A 256-entry byte table as 256 vectors (entry k in every lane of vector k)."""
    t = np.asarray(table).astype(np.int64).astype(np.uint8)
    return np.repeat(t[:, None], vl, axis=1)
