"""Op lowerings: one module per op kind, each a function over a
`compiler.builder.ProgramBuilder` that appends the op's bundles (see docs/compiler.md)."""

from .activation import activation_tables, silu_rows, swiglu_rows
from .attention import attention_decode_row
from .elementwise import add_rows, argmax_rows, lookup_rows, relu_rows
from .linear import linear_rows
from .matmul import matmul_rows
from .norm import add_aligned_rows, narrow_groups, narrow_rows, rmsnorm_rows, rsqrt_seed_table
from .requant import requantize_rows
from .rope import rope_rows

__all__ = ["activation_tables", "add_aligned_rows", "add_rows", "argmax_rows",
           "attention_decode_row", "linear_rows", "lookup_rows", "matmul_rows",
           "narrow_groups", "narrow_rows", "relu_rows", "requantize_rows", "rmsnorm_rows",
           "rope_rows", "rsqrt_seed_table", "silu_rows", "swiglu_rows"]
