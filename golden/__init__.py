"""Bit-exact numpy golden models for the TSP (no simulator imports).

* :mod:`golden.quant` -- quantisation and the VXM ``requantize`` single-rounding op.
* :mod:`golden.tables` -- the 256-entry Gather tables (exp, reciprocal seed, GELU).
* :mod:`golden.block` -- a quantised int8 attention + MLP decoder block and its float64
  reference (``make_block``, ``quantize_block``, ``QuantBlock``).

Numerics are documented in ``docs/numerics.md``; ``python -m golden`` reports the error.
"""

from golden.quant import quantize_multiplier, requantize

__all__ = ["quantize_multiplier", "requantize"]
