"""Read a GGUF model file: metadata, tensors, and our own dequantisers.

The container is parsed by the ``gguf`` package (``GGUFReader``); the block formats are
decoded here, independently of ``gguf.quants`` (the tests compare both, and against blocks
packed by hand).  Every block type is small integers ``v`` with a scale ``d`` and an
optional offset per *group* of values, ``x = d v (+ o)``:

* ``Q8_0``: blocks of 32 -- f16 ``d``, 32 x int8 ``v``.
* ``Q4_0``: blocks of 32 -- f16 ``d``, 16 bytes: ``v[j] = lo_nibble[j] - 8`` for ``j < 16``,
  ``v[16 + j] = hi_nibble[j] - 8``.
* ``Q4_1``: blocks of 32 -- f16 ``d``, f16 ``m``, 16 bytes: ``x = d nibble + m`` (same order).
* ``Q5_0`` / ``Q5_1``: as ``Q4_0`` / ``Q4_1`` with a fifth bit per value (bit ``j`` of a
  32-bit ``qh``): ``v = nibble + 16 bit - 16``, or ``x = d (nibble + 16 bit) + m``.
* ``Q4_K`` / ``Q5_K``: super-blocks of 256 -- f16 ``d``, f16 ``dmin``, 12 bytes of eight
  6-bit scales and mins, (``Q5_K``: 32 bytes of fifth bits,) 128 bytes of nibbles; eight
  groups of 32 with ``x = d sc v - dmin m`` (``v`` = 0..15 or 0..31).
* ``Q6_K``: super-blocks of 256 -- 128 bytes of low nibbles, 64 of high 2-bit pairs, sixteen
  int8 scales, f16 ``d``; sixteen groups of 16 with ``x = d sc (v - 32)``.
* ``F32``, ``F16``, ``BF16``: plain.

GGUF lists dimensions fastest first (``ne0`` = row length), so a tensor of GGUF shape
``[n_in, n_out]`` is the numpy array ``[n_out, n_in]`` (``y = W x`` with ``W[out, in]``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

#: block types: (bytes per block, values per block)
BLOCK_TYPES = {"Q8_0": (34, 32), "Q4_0": (18, 32), "Q4_1": (20, 32), "Q5_0": (22, 32),
               "Q5_1": (24, 32), "Q4_K": (144, 256), "Q5_K": (176, 256), "Q6_K": (210, 256)}

__all__ = ["BLOCK_TYPES", "GGUFFile", "decode_blocks", "dequantize"]


def _f16(raw: np.ndarray, col: int) -> np.ndarray:
    return raw[:, col:col + 2].copy().view(np.float16)[:, 0].astype(np.float64)


def _nibbles(qs: np.ndarray) -> np.ndarray:
    """16 bytes per row -> 32 values: the low nibbles, then the high ones."""
    return np.concatenate([qs & 0x0F, qs >> 4], axis=-1).astype(np.int64)


def _bits32(qh: np.ndarray) -> np.ndarray:
    """4 bytes per row (a little-endian uint32) -> its 32 bits, bit j in column j."""
    word = qh.copy().view("<u4")[:, 0].astype(np.int64)
    return (word[:, None] >> np.arange(32)) & 1


def _k_scales(s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The eight 6-bit scales and mins of a Q4_K/Q5_K super-block (12 bytes per row)."""
    s = s.astype(np.int64)
    lo = [(s[:, j] & 63, s[:, j + 4] & 63) for j in range(4)]
    hi = [((s[:, j + 4] & 0xF) | ((s[:, j - 4] >> 6) << 4),
           (s[:, j + 4] >> 4) | ((s[:, j] >> 6) << 4)) for j in range(4, 8)]
    sc = np.stack([a for a, _ in lo + hi], axis=1)
    mn = np.stack([b for _, b in lo + hi], axis=1)
    return sc, mn


def _groups(kind: str, blk: np.ndarray):
    """``(v [blocks, values], d [blocks, groups], o or None, group)``: ``x = d v + o`` per
    group of ``group`` consecutive values."""
    if kind == "Q8_0":
        return blk[:, 2:].view(np.int8).astype(np.int64), _f16(blk, 0)[:, None], None, 32
    if kind == "Q4_0":
        return _nibbles(blk[:, 2:]) - 8, _f16(blk, 0)[:, None], None, 32
    if kind == "Q4_1":
        return _nibbles(blk[:, 4:]), _f16(blk, 0)[:, None], _f16(blk, 2)[:, None], 32
    if kind == "Q5_0":
        return (_nibbles(blk[:, 6:]) + 16 * _bits32(blk[:, 2:6]) - 16, _f16(blk, 0)[:, None],
                None, 32)
    if kind == "Q5_1":
        return (_nibbles(blk[:, 8:]) + 16 * _bits32(blk[:, 4:8]), _f16(blk, 0)[:, None],
                _f16(blk, 2)[:, None], 32)
    if kind in ("Q4_K", "Q5_K"):
        d, dmin = _f16(blk, 0)[:, None], _f16(blk, 2)[:, None]
        sc, mn = _k_scales(blk[:, 4:16])
        qs = blk[:, 16:144] if kind == "Q4_K" else blk[:, 48:176]
        v = _k_nibbles(qs)
        if kind == "Q5_K":
            qh = blk[:, 16:48].astype(np.int64)  # group g: bit g of byte l, for its value l
            v = v + 16 * np.concatenate([(qh >> g) & 1 for g in range(8)], axis=1)
        return v, d * sc, -dmin * mn, 32
    if kind == "Q6_K":
        ql, qh = blk[:, :128].astype(np.int64), blk[:, 128:192].astype(np.int64)
        sc = blk[:, 192:208].view(np.int8).astype(np.int64)
        parts = []
        for h in range(2):
            lo, hb = ql[:, 64 * h:64 * h + 64], qh[:, 32 * h:32 * h + 32]
            parts += [(lo[:, :32] & 0xF) | ((hb & 3) << 4),
                      (lo[:, 32:] & 0xF) | (((hb >> 2) & 3) << 4),
                      (lo[:, :32] >> 4) | (((hb >> 4) & 3) << 4),
                      (lo[:, 32:] >> 4) | (((hb >> 6) & 3) << 4)]
        return np.concatenate(parts, axis=1) - 32, _f16(blk, 208)[:, None] * sc, None, 16
    raise AssertionError(kind)


def _k_nibbles(qs: np.ndarray) -> np.ndarray:
    """Q4_K/Q5_K's 128 bytes of nibbles -> 256 values: per 32 bytes, the low nibbles (one
    group of 32), then the high ones (the next group)."""
    return np.concatenate([np.concatenate([qs[:, 32 * c:32 * c + 32] & 0xF,
                                           qs[:, 32 * c:32 * c + 32] >> 4], axis=1)
                           for c in range(4)], axis=1).astype(np.int64)


def _decoded(kind: str, raw: np.ndarray, n: int, name: str):
    if kind not in BLOCK_TYPES:
        raise ValueError(f"GGUF tensor {name!r}: type {kind} is not supported "
                         f"(supported: F32, F16, BF16, {', '.join(BLOCK_TYPES)})")
    size, per = BLOCK_TYPES[kind]
    b = np.ascontiguousarray(raw, dtype=np.uint8).reshape(-1)
    if n % per or b.size != n // per * size:
        raise ValueError(f"GGUF tensor {name!r}: {b.size} bytes do not hold {n} {kind} "
                         f"values ({size} bytes per block of {per})")
    return _groups(kind, b.reshape(-1, size))


def dequantize(kind: str, raw: np.ndarray, shape: tuple[int, ...], name: str = "?") -> np.ndarray:
    """Decode a tensor's raw bytes (``kind`` = GGML type name) to float64 of ``shape``."""
    if kind in ("F32", "F16"):
        return np.asarray(raw).astype(np.float64).reshape(shape)
    if kind == "BF16":
        u = np.asarray(raw).view(np.uint16).astype(np.uint32) << 16
        return u.view(np.float32).astype(np.float64).reshape(shape)
    v, d, o, g = _decoded(kind, raw, int(np.prod(shape)), name)
    x = v.astype(np.float64) * np.repeat(d, g, axis=1)
    if o is not None:
        x = x + np.repeat(o, g, axis=1)
    return x.reshape(shape)


def decode_blocks(kind: str, raw: np.ndarray, shape: tuple[int, int], name: str = "?"):
    """A block-quantised matrix as ``(q int8 [rows, n], d [rows, n/g], offset or None)``
    with ``x = q * d + offset`` exactly per group of ``g`` = n / d.shape[1] values (32; 16
    for ``Q6_K``).  Unsigned values are centred (``q = v - 8``, ``- 16``; the offset takes
    ``8 d``, ``16 d``); a scale keeps its sign (``Q4_0``'s ``d`` and ``Q6_K``'s int8 scales
    may be negative)."""
    if kind not in BLOCK_TYPES:
        raise ValueError(f"GGUF tensor {name!r}: type {kind} has no int8 block form "
                         f"(block types: {', '.join(BLOCK_TYPES)})")
    rows, n = shape
    v, d, o, g = _decoded(kind, raw, rows * n, name)
    if o is not None:  # centre the unsigned values of Q4_1, Q5_1, Q4_K, Q5_K
        c = 8 if kind in ("Q4_1", "Q4_K") else 16
        v, o = v - c, o + c * d
    nb = n // g
    return (v.reshape(rows, n).astype(np.int8), d.reshape(rows, nb),
            None if o is None else o.reshape(rows, nb))


class GGUFFile:
    """Metadata (``.meta``) and tensors (``.tensor(name)``, float64) of a GGUF file."""

    def __init__(self, path):
        try:
            import gguf
        except ImportError as exc:  # pragma: no cover - environment
            raise ImportError("reading GGUF needs the 'gguf' package: pip install -e .[models]"
                              ) from exc
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"GGUF file not found: {self.path}")
        try:
            r = gguf.GGUFReader(str(self.path))
        except Exception as exc:
            raise ValueError(f"{self.path}: not a readable GGUF file: {exc}") from exc
        self.meta = {}
        for key, field in r.fields.items():
            try:
                self.meta[key] = field.contents()
            except Exception:  # pragma: no cover - exotic field types
                continue
        self._tensors = {t.name: t for t in r.tensors}

    def __contains__(self, name: str) -> bool:
        return name in self._tensors

    def names(self) -> list[str]:
        return list(self._tensors)

    def kind(self, name: str) -> str:
        return self._tensor(name).tensor_type.name

    def _tensor(self, name: str):
        if name not in self._tensors:
            raise ValueError(f"{self.path}: no tensor {name!r}")
        return self._tensors[name]

    def shape(self, name: str) -> tuple[int, ...]:
        """numpy shape (slowest dimension first)."""
        return tuple(int(x) for x in reversed(self._tensor(name).shape))

    def tensor(self, name: str) -> np.ndarray:
        t = self._tensor(name)
        return dequantize(t.tensor_type.name, t.data, self.shape(name), f"{self.path}:{name}")

    def blocks(self, name: str):
        """``decode_blocks`` of a 2-D block-quantised tensor (None for float tensors)."""
        t = self._tensor(name)
        if t.tensor_type.name in ("F32", "F16", "BF16"):
            return None
        return decode_blocks(t.tensor_type.name, t.data, self.shape(name), f"{self.path}:{name}")

    def require(self, key: str):
        if key not in self.meta:
            raise ValueError(f"{self.path}: metadata key {key!r} missing")
        return self.meta[key]
