"""Amaranth (0.5) RTL of the Tensor Streaming Processor.

One file per piece of hardware: `stream.py` is the stream-register fabric,
`tile.py` the superlane tile plumbing (stream ports, instruction skew chain);
slices (MEM, VXM, MXM, SXM), the ICU and the chip top plug into them.
"""
