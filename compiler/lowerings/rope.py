"""Rotary position embedding of int16 rows of heads: `golden.rope.rope_int` on the machine.

A row holds ``n_heads`` heads of ``d_head`` lanes (the GGUF llama layout: rotary pairs are
adjacent lanes ``2j, 2j + 1`` of a head); its exponent is a lane vector with each head's
exponent in the head's lanes (``(row, tile)`` keyed, int16), so the op narrows per head.

Per row and lane tile (``C``/``S`` the position's int16 Q14 tables laid out on the lanes:
``C = cos`` on both lanes of a pair, ``S = -sin`` on the even lane and ``+sin`` on the odd):

1. ``r = x * C`` (VXM, int16 x int16 -> int32 register);
2. the pair swap ``x'[l] = x[l ^ 1]`` (SXM ``PERM`` with a map loaded once by ``PMAP``)
   straight into ``y = x' * S + r`` (VXM; |y| < 2**30), written as int32;
3. `compiler.lowerings.norm.narrow_groups` per head, exponent ``e - 14 + k_h``.
"""

from __future__ import annotations

import numpy as np

from golden.rope import ROPE_FRAC

from .. import tiling as T
from ..builder import ProgramBuilder
from ..ir import Bundle
from ..routes import planes_in, planes_out
from .norm import _sxm_near, narrow_groups

SWAP_MAP = 0  # the SXM permutation map index this lowering loads


def _pair_tables(cos: np.ndarray, sin: np.ndarray, n_heads: int) -> tuple[np.ndarray, ...]:
    """Per row: (C, S) over the row's lanes (heads concatenated)."""
    c = np.repeat(cos, 2, axis=-1)  # [rows, d]
    s = np.repeat(sin, 2, axis=-1)
    s[..., 0::2] *= -1
    return np.tile(c, (1, n_heads)), np.tile(s, (1, n_heads))


def rope_rows(pb: ProgramBuilder, name: str, x, e_x, dst, e_dst, rows: int, n_heads: int,
              d_head: int, cos: np.ndarray, sin: np.ndarray, bits: int = 16) -> None:
    """``dst, e_dst = rope_int(x, e_x)`` for ``rows`` rows at the positions whose int16 Q14
    tables are ``cos``/``sin`` (``[rows, d_head / 2]``, `golden.rope.rope_tables`).  ``x``,
    ``dst``: int16 tensors keyed ``(row, tile)``; ``e_x``, ``e_dst``: int16 exponent
    vectors keyed ``(row, tile)``."""
    vl, O, regs = pb.vl, pb.O, pb.regs
    width = n_heads * d_head
    nt = T.ntiles(width, vl)
    side = "W" if x[(0, 0)][0][0] in pb.mem.side["W"] else "E"
    other = "E" if side == "W" else "W"
    sxm = _sxm_near(pb, x[(0, 0)])
    C, S = _pair_tables(np.asarray(cos, np.int64), np.asarray(sin, np.int64), n_heads)
    tab = pb.const(f"{name}.cs", {(i, t, k): T.bytes_of(T.tile_vec(v[i], t, vl), 2)
                                  for i in range(rows) for t in range(nt)
                                  for k, v in ((0, C), (1, S))}, 2, other)
    swap = pb.const(f"{name}.swap", {(0,): T.bytes_of(np.arange(vl) ^ 1, 2)}, 2, side)
    b = Bundle(f"{name} swap map", name)
    pm = O.pmap(b, sxm, SWAP_MAP)
    planes_in(O, b, swap[(0,)], pm, "in")
    pb.emit(b)
    y = pb.mem.tensor(f"{name}.y", [(i, t) for i in range(rows) for t in range(nt)], 4, side)
    r1 = regs.single()
    for i in range(rows):
        nm = f"{name} row {i}"
        for t in range(nt):  # y = x C + swap(x) S
            b = Bundle(f"{nm} x C tile {t}", name)
            v = O.vxm(b, "i16", ("r", r1), "MUL", "s", "s", otype="i32")
            planes_in(O, b, x[(i, t)], v, "a")
            planes_in(O, b, tab[(i, t, 0)], v, "b")
            pb.emit(b)
            b = Bundle(f"{nm} y tile {t}", name)
            pe = O.perm(b, sxm, SWAP_MAP, "i16")
            planes_in(O, b, x[(i, t)], pe, "in")
            v = O.vxm(b, "i16", "s", "MUL", "s", "s", "ADD", ("r", r1), otype="i32")
            b.connect(pe, "out", v, "a")
            planes_in(O, b, tab[(i, t, 1)], v, "b")
            planes_out(O, b, v, "d", y[(i, t)])
            pb.emit(b)
    regs.release(r1)
    narrow_groups(pb, f"{name}.narrow", y, e_x, dst, e_dst, rows, n_heads, d_head,
                  e_add=-ROPE_FRAC, bits=bits)
    pb.release(y)
