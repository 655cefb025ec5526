"""Integer quantisation primitives shared by the golden models.

These are the exact integer semantics the VXM implements:

* :func:`quantize_multiplier` splits a positive real rescale factor offline into an
  int32 ``multiplier`` in ``[2**30, 2**31 - 1]`` (or 0) and a ``shift`` in ``[-31, 30]`` such
  that ``real ~= multiplier * 2**(shift - 31)`` (TFLite ``QuantizeMultiplier``).
* :func:`requantize` is the run-time single-rounding rescale
  ``((acc * multiplier) + (1 << (30 - shift))) >> (31 - shift)`` in 64-bit arithmetic
  (``>>`` is an arithmetic shift, i.e. floor), i.e. exactly
  ``floor(acc * multiplier * 2**(shift - 31) + 1/2)`` (round half up), then ``+ zero_point``
  and saturation to ``[qmin, qmax]``.

Accepted ranges (checked; a ``ValueError`` names the argument otherwise):

* ``acc``: integer dtype, every element in ``[-2**31, 2**31 - 1]`` (int32).
* ``multiplier``: integer, every element in ``[0, 2**31 - 1]``.
* ``shift``: integer, every element in ``[-31, 30]``.
* ``qmin <= qmax``, both within int32; ``zero_point`` within ``[qmin, qmax]``.

With these ranges ``|acc * multiplier| <= 2**62`` and the rounding term is at most ``2**61``,
so the 64-bit computation never overflows.  The result dtype is ``int8`` when
``[qmin, qmax]`` lies within ``[-128, 127]`` and ``int32`` otherwise (wider ranges are used
for int16/int32 intermediates).

Weights are quantised symmetrically to ``[-127, 127]`` (per tensor or per output channel);
activations are int8 per tensor, symmetric (zero point 0) throughout this project.
Float -> int rounding in the offline helpers is round-half-to-even (``np.rint``); it only
happens offline or at the model boundary, never inside the integer pipeline.
"""

from __future__ import annotations

import math

import numpy as np

INT32_MIN = -(2**31)
INT32_MAX = 2**31 - 1
MULTIPLIER_MAX = 2**31 - 1
SHIFT_MIN = -31
SHIFT_MAX = 30

__all__ = [
    "INT32_MAX",
    "INT32_MIN",
    "MULTIPLIER_MAX",
    "SHIFT_MAX",
    "SHIFT_MIN",
    "dequantize",
    "dequantize_per_channel",
    "multiplier_to_real",
    "quantize_multiplier",
    "quantize_per_channel_symmetric",
    "quantize_per_tensor",
    "requantize",
    "symmetric_scale",
]


def quantize_multiplier(real: float) -> tuple[int, int]:
    """Split ``real >= 0`` into ``(multiplier, shift)`` with ``real ~= m * 2**(shift - 31)``.

    TFLite semantics: ``q, e = frexp(real)`` (``q`` in ``[0.5, 1)``), ``m = round(q * 2**31)``
    (half away from zero); if rounding carries to ``2**31`` then ``m = 2**30`` and ``e += 1``.
    ``shift = e``.  ``real == 0`` gives ``(0, 0)``; values so small that ``shift < -31``
    (``real < 2**-32`` after rounding) flush to ``(0, 0)`` as TFLite does.  The relative
    error of the representation is at most ``2**-31``.

    Raises ``ValueError`` for negative, NaN or infinite ``real`` and for ``real`` so large
    that ``shift > 30`` (``real >= 2**30`` after rounding).
    """
    try:
        r = float(real)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"quantize_multiplier: real must be a number, got {real!r}") from exc
    if not math.isfinite(r):
        raise ValueError(f"quantize_multiplier: real must be finite, got {r!r}")
    if r < 0:
        raise ValueError(f"quantize_multiplier: real must be >= 0, got {r!r}")
    if r == 0.0:
        return 0, 0
    q, shift = math.frexp(r)
    # q * 2**31 is exact in float64 (power-of-two scaling); adding 0.5 is exact since the
    # value is < 2**31 with at most 53 significant bits.  floor(x + 0.5) = half away from 0.
    m = math.floor(q * (1 << 31) + 0.5)
    if m == (1 << 31):
        m //= 2
        shift += 1
    if shift < SHIFT_MIN:
        return 0, 0
    if shift > SHIFT_MAX:
        raise ValueError(
            f"quantize_multiplier: real={r!r} too large: needs shift {shift} > {SHIFT_MAX} "
            f"(real must be < 2**30)"
        )
    return int(m), int(shift)


def multiplier_to_real(multiplier: int, shift: int) -> float:
    """The real value ``multiplier * 2**(shift - 31)`` represented by a pair."""
    return math.ldexp(float(multiplier), int(shift) - 31)


def _as_int_array(name: str, value, lo: int, hi: int) -> np.ndarray:
    """Validate an integer array-like, return it as int64, or raise naming ``name``."""
    arr = np.asarray(value)
    if arr.dtype == object:
        try:
            arr = arr.astype(np.int64)
        except (OverflowError, TypeError, ValueError) as exc:
            raise ValueError(
                f"requantize: {name} must be integers in [{lo}, {hi}]: {exc}"
            ) from exc
    if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"requantize: {name} must have an integer dtype, got {arr.dtype}")
    if arr.dtype == np.uint64 and arr.size and int(arr.max()) > hi:
        raise ValueError(
            f"requantize: {name} out of range: allowed [{lo}, {hi}], got max {int(arr.max())}"
        )
    arr = arr.astype(np.int64)
    if arr.size:
        amin, amax = int(arr.min()), int(arr.max())
        if amin < lo or amax > hi:
            bad = np.argwhere((arr < lo) | (arr > hi))[0]
            raise ValueError(
                f"requantize: {name} out of range: allowed [{lo}, {hi}], "
                f"got {int(arr[tuple(bad)])} at {list(map(int, bad))} (min {amin}, max {amax})"
            )
    return arr


def requantize(
    acc,
    multiplier,
    shift,
    zero_point: int = 0,
    qmin: int = -128,
    qmax: int = 127,
) -> np.ndarray:
    """Single-rounding requantisation, bit-exact with the VXM ``requantize`` op.

    ``out = clamp(((acc * m) + (1 << (30 - shift))) >> (31 - shift) + zero_point, qmin, qmax)``
    computed in int64 with an arithmetic (floor) shift; this equals
    ``floor(acc * m * 2**(shift - 31) + 1/2)`` exactly.  ``multiplier`` and ``shift`` are
    scalars or per-channel arrays broadcast against ``acc`` (per-channel = last axis).

    Returns ``int8`` if ``[qmin, qmax]`` fits in int8, else ``int32``.  See the module
    docstring for the accepted ranges; violations raise ``ValueError`` (``TypeError`` for
    non-integer dtypes).
    """
    a = _as_int_array("acc", acc, INT32_MIN, INT32_MAX)
    m = _as_int_array("multiplier", multiplier, 0, MULTIPLIER_MAX)
    s = _as_int_array("shift", shift, SHIFT_MIN, SHIFT_MAX)
    for name, v in (("zero_point", zero_point), ("qmin", qmin), ("qmax", qmax)):
        if not isinstance(v, int | np.integer) or isinstance(v, bool):
            raise TypeError(f"requantize: {name} must be an int, got {type(v).__name__}")
        if not INT32_MIN <= int(v) <= INT32_MAX:
            raise ValueError(f"requantize: {name} must be within int32, got {int(v)}")
    qmin, qmax, zero_point = int(qmin), int(qmax), int(zero_point)
    if qmin > qmax:
        raise ValueError(f"requantize: need qmin <= qmax, got qmin={qmin}, qmax={qmax}")
    if not qmin <= zero_point <= qmax:
        raise ValueError(
            f"requantize: zero_point must be in [qmin, qmax] = [{qmin}, {qmax}], got {zero_point}"
        )
    try:
        np.broadcast_shapes(a.shape, m.shape, s.shape)
    except ValueError as exc:
        raise ValueError(
            f"requantize: cannot broadcast acc {a.shape}, multiplier {m.shape}, "
            f"shift {s.shape} (per-channel arrays broadcast over the last axis)"
        ) from exc
    rounding = np.left_shift(np.int64(1), (30 - s))
    out = (a * m + rounding) >> (31 - s)
    out = np.clip(out + zero_point, qmin, qmax)
    dtype = np.int8 if (qmin >= -128 and qmax <= 127) else np.int32
    return out.astype(dtype)


def symmetric_scale(max_abs, qmax: int = 127) -> np.ndarray | float:
    """Scale mapping ``max_abs`` to ``qmax``; zero (all-zero tensor/channel) maps to 1.0."""
    ma = np.asarray(max_abs, dtype=np.float64)
    if not np.all(np.isfinite(ma)) or np.any(ma < 0):
        raise ValueError(f"symmetric_scale: max_abs must be finite and >= 0, got {max_abs!r}")
    s = np.where(ma > 0, ma / qmax, 1.0)
    return float(s) if s.ndim == 0 else s


def quantize_per_tensor(
    x, scale: float, zero_point: int = 0, qmin: int = -128, qmax: int = 127
) -> np.ndarray:
    """``clamp(rint(x / scale) + zero_point, qmin, qmax)`` as int8 (int32 if wider)."""
    scale = float(scale)
    if not (math.isfinite(scale) and scale > 0):
        raise ValueError(f"quantize_per_tensor: scale must be finite and > 0, got {scale!r}")
    xf = np.asarray(x, dtype=np.float64)
    if not np.all(np.isfinite(xf)):
        raise ValueError("quantize_per_tensor: x contains NaN or infinity")
    q = np.clip(np.rint(xf / scale) + zero_point, qmin, qmax)
    dtype = np.int8 if (qmin >= -128 and qmax <= 127) else np.int32
    return q.astype(dtype)


def quantize_per_channel_symmetric(
    w, axis: int = 0, qmax: int = 127
) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric per-channel weights: returns ``(w_q int8 in [-qmax, qmax], scales float64)``.

    ``scales[c] = max|w[c]| / qmax`` along ``axis`` (the output channel; axis 0 for a PyTorch
    ``(out_features, in_features)`` weight).  An all-zero channel gets scale 1.0.
    """
    wf = np.asarray(w, dtype=np.float64)
    if wf.ndim < 1:
        raise ValueError("quantize_per_channel_symmetric: w must have at least 1 dimension")
    if not np.all(np.isfinite(wf)):
        raise ValueError("quantize_per_channel_symmetric: w contains NaN or infinity")
    axis = axis % wf.ndim
    other = tuple(i for i in range(wf.ndim) if i != axis)
    max_abs = np.max(np.abs(wf), axis=other) if other else np.abs(wf)
    scales = np.asarray(symmetric_scale(max_abs, qmax), dtype=np.float64).reshape(-1)
    shape = [1] * wf.ndim
    shape[axis] = -1
    q = np.clip(np.rint(wf / scales.reshape(shape)), -qmax, qmax).astype(np.int8)
    return q, scales


def dequantize(q, scale: float, zero_point: int = 0) -> np.ndarray:
    """Per-tensor ``(q - zero_point) * scale`` as float64."""
    return (np.asarray(q, dtype=np.float64) - zero_point) * float(scale)


def dequantize_per_channel(q, scales, axis: int = 0) -> np.ndarray:
    """Per-channel symmetric ``q * scales[c]`` along ``axis``, float64."""
    qf = np.asarray(q, dtype=np.float64)
    shape = [1] * qf.ndim
    shape[axis % qf.ndim] = -1
    return qf * np.asarray(scales, dtype=np.float64).reshape(shape)
