"""Bit-exact numpy golden models for the TSP (no simulator imports).

* :mod:`golden.quant` -- quantisation and the VXM ``requantize`` single-rounding op.
* :mod:`golden.tables` -- the 256-entry Gather tables (exp, reciprocal seed, GELU).
* :mod:`golden.block` -- a quantised int8 attention + MLP decoder block and its float64
  reference (``make_block``, ``quantize_block``, ``QuantBlock``).
* LLM path (llama/SmolLM2): :mod:`golden.planes` (row-scaled ints, byte-plane matmul,
  exact GGUF-block weights), :mod:`golden.norm`, :mod:`golden.rope`,
  :mod:`golden.activation`, :mod:`golden.attention`, :mod:`golden.vocab`,
  :mod:`golden.gguf_file`, :mod:`golden.tokenizer`, :mod:`golden.llm` (model, CLI),
  :mod:`golden.llm_accuracy` (benchmark).

Numerics are documented in ``docs/numerics.md``; ``python -m golden`` reports the error.
"""

from golden.quant import quantize_multiplier, requantize

__all__ = ["quantize_multiplier", "requantize"]
