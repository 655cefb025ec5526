"""Token embedding (row gather), the tied LM head and the vocabulary argmax.

* Embedding: the table is int8 per vocabulary row with an exact row scale
  (:class:`golden.planes.RowWeight`); a lookup is a MEM read of the token's row (the
  address is the token id), widened to the int32 residual (``q * r + o`` per block, VXM
  multiply-add).
* LM head (tied): the same int8 table installed as MXM weights, the final-norm output
  (int16, two byte planes) streamed through: wide logits ``acc * r`` per vocabulary row.
* Argmax: VXM compare/select per lane over vocabulary tiles, then an SXM rotate + compare
  reduction across lanes; ties go to the lowest index (as ``numpy.argmax``).
"""

from __future__ import annotations

import numpy as np

from golden.planes import R_BITS, RowWeight, linear_int

__all__ = ["argmax_int", "embed_float", "embed_int", "lm_head_float", "lm_head_int"]


def _check_ids(ids, vocab: int) -> np.ndarray:
    ids = np.asarray(ids, dtype=np.int64)
    if ids.ndim != 1:
        raise ValueError(f"token ids must be a 1-D sequence, got shape {ids.shape}")
    bad = np.flatnonzero((ids < 0) | (ids >= vocab))
    if bad.size:
        raise ValueError(f"token id {int(ids[bad[0]])} at position {int(bad[0])} is outside "
                         f"the vocabulary [0, {vocab})")
    return ids


def embed_int(ids, table: RowWeight) -> tuple[np.ndarray, np.ndarray]:
    """Rows of the int8 table, widened: ``q * r`` (int32) at exponent ``f - R_BITS``."""
    ids = _check_ids(ids, table.shape[0])
    h = table.w_int[ids]
    return h, np.full((len(ids), 1), table.f - R_BITS, dtype=np.int64)


def lm_head_int(x, ex, table: RowWeight, bits: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """int32 logits ``[T, vocab]`` and their row exponent (``x`` of ``bits`` bits)."""
    return linear_int(x, ex, table, bits)


def argmax_int(logits) -> np.ndarray:
    """Index of the largest integer logit per row (lowest index on ties)."""
    return np.argmax(np.asarray(logits, dtype=np.int64), axis=-1)


def embed_float(ids, table) -> np.ndarray:
    ids = _check_ids(ids, np.asarray(table).shape[0])
    return np.asarray(table, dtype=np.float64)[ids]


def lm_head_float(x, table) -> np.ndarray:
    return np.asarray(x, dtype=np.float64) @ np.asarray(table, dtype=np.float64).T
