"""Read a GGUF model file: metadata, tensors, and our own dequantisers.

The container is parsed by the ``gguf`` package (``GGUFReader``); the block formats are
decoded here, independently of ``gguf.quants`` (the tests compare both, and against blocks
packed by hand):

* ``Q8_0``: blocks of 32 -- f16 ``d``, 32 x int8 ``q``: ``x = d q``.
* ``Q4_0``: blocks of 32 -- f16 ``d``, 16 bytes: ``x[j] = d (lo_nibble[j] - 8)`` for
  ``j < 16``, ``x[16 + j] = d (hi_nibble[j] - 8)``.
* ``Q4_1``: blocks of 32 -- f16 ``d``, f16 ``m``, 16 bytes: ``x = d nibble + m`` (same order).
* ``F32``, ``F16``, ``BF16``: plain.

GGUF lists dimensions fastest first (``ne0`` = row length), so a tensor of GGUF shape
``[n_in, n_out]`` is the numpy array ``[n_out, n_in]`` (``y = W x`` with ``W[out, in]``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

BLOCK = 32

__all__ = ["GGUFFile", "decode_blocks", "dequantize"]


def _f16(raw: np.ndarray, col: int) -> np.ndarray:
    return raw[:, col:col + 2].copy().view(np.float16)[:, 0].astype(np.float64)


def _nibbles(qs: np.ndarray) -> np.ndarray:
    return np.concatenate([qs & 0x0F, qs >> 4], axis=-1).astype(np.float64)


def dequantize(kind: str, raw: np.ndarray, shape: tuple[int, ...], name: str = "?") -> np.ndarray:
    """Decode a tensor's raw bytes (``kind`` = GGML type name) to float64 of ``shape``."""
    n = int(np.prod(shape))
    if kind in ("F32", "F16"):
        return np.asarray(raw).astype(np.float64).reshape(shape)
    if kind == "BF16":
        u = np.asarray(raw).view(np.uint16).astype(np.uint32) << 16
        return u.view(np.float32).astype(np.float64).reshape(shape)
    sizes = {"Q8_0": 34, "Q4_0": 18, "Q4_1": 20}
    if kind not in sizes:
        raise ValueError(f"GGUF tensor {name!r}: type {kind} is not supported "
                         f"(supported: F32, F16, BF16, {', '.join(sizes)})")
    b = np.ascontiguousarray(raw, dtype=np.uint8).reshape(-1)
    if n % BLOCK or b.size != n // BLOCK * sizes[kind]:
        raise ValueError(f"GGUF tensor {name!r}: {b.size} bytes do not hold {n} {kind} "
                         f"values ({sizes[kind]} bytes per block of {BLOCK})")
    blk = b.reshape(-1, sizes[kind])
    d = _f16(blk, 0)[:, None]
    if kind == "Q8_0":
        x = blk[:, 2:].view(np.int8).astype(np.float64) * d
    elif kind == "Q4_0":
        x = (_nibbles(blk[:, 2:]) - 8.0) * d
    else:
        x = _nibbles(blk[:, 4:]) * d + _f16(blk, 2)[:, None]
    return x.reshape(shape)


def decode_blocks(kind: str, raw: np.ndarray, shape: tuple[int, int], name: str = "?"):
    """A block-quantised matrix as ``(q int8 [rows, n], d [rows, n/32], offset or None)``
    with ``x = q * d + offset`` exactly (Q4: ``q = nibble - 8``, Q4_1 offset ``m + 8 d``)."""
    sizes = {"Q8_0": 34, "Q4_0": 18, "Q4_1": 20}
    if kind not in sizes:
        raise ValueError(f"GGUF tensor {name!r}: type {kind} has no int8 block form "
                         f"(block types: {', '.join(sizes)})")
    rows, n = shape
    blk = np.ascontiguousarray(raw, dtype=np.uint8).reshape(-1, sizes[kind])
    if blk.shape[0] * BLOCK != rows * n:
        raise ValueError(f"GGUF tensor {name!r}: {blk.shape[0]} blocks for shape {shape}")
    d = _f16(blk, 0)
    if kind == "Q8_0":
        q, off = blk[:, 2:].view(np.int8), None
    elif kind == "Q4_0":
        q, off = _nibbles(blk[:, 2:]).astype(np.int8) - 8, None
    else:
        q, off = _nibbles(blk[:, 4:]).astype(np.int8) - 8, _f16(blk, 2) + 8.0 * d
    nb = n // BLOCK
    return (q.reshape(rows, n).astype(np.int8), d.reshape(rows, nb),
            None if off is None else off.reshape(rows, nb))


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
