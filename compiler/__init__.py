"""Static scheduling compiler: a graph of ops (`compiler.graph`; the quantised attention +
MLP block is one, `compiler.block`) onto the TSP.

``compile_block(block, cfg) -> CompiledBlock`` (see docs/compiler.md)::

    from golden.block import make_block
    from compiler import compile_block
    blk = make_block(0, 16, 32, 2, 64)
    cb = compile_block(blk, "small")
    y_q, run, inter = cb.run_on_model(blk.quantize_input(blk.example_input()))
    assert run.cycles == cb.cycles
"""

from .compiled import Bounds, CompiledBlock, compile_block
from .errors import CompileError
from .lowerings.block_attention import check_seq_len

__all__ = ["Bounds", "CompileError", "CompiledBlock", "check_seq_len", "compile_block"]
