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
from ..builder import ProgramBuilder, copy_avoiding
from ..errors import CompileError
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


def position_tables(pb: ProgramBuilder, name: str, cos: np.ndarray, sin: np.ndarray,
                    n_heads: int, avoid=()) -> dict:
    """Gather tables of every position's C and S vectors for a decode step whose position
    arrives at run time: per lane tile and C/S, the low and the high byte, each ``P``
    consecutive addresses of one slice (address ``base + p`` holds position ``p``'s bytes
    in every lane).  ``cos``/``sin``: ``[P, d_head / 2]`` for positions ``0..P-1``."""
    vl = pb.vl
    C, S = _pair_tables(np.asarray(cos, np.int64), np.asarray(sin, np.int64), n_heads)
    nt = T.ntiles(C.shape[1], vl)
    mems = [s for s in pb.mem.side["W"] + pb.mem.side["E"] if s not in avoid]
    out, k = {}, 0
    for t in range(nt):
        for which, M in (("C", C), ("S", S)):
            vals = np.stack([T.tile_vec(M[p], t, vl) for p in range(M.shape[0])])
            for byte, part in (("lo", vals & 0xFF), ("hi", (vals >> 8) & 0xFF)):
                tab = pb.const(f"{name}.{which}{t}.{byte}", {p: part[p].astype(np.uint8)
                                                            for p in range(len(part))}, 1,
                               slices=[mems[k % len(mems)]])
                if len(tab.ranges) != 1:
                    raise CompileError(f"{name}: no {len(part)} consecutive addresses for a "
                                       "RoPE position table", "sram", True)
                out[(t, which, byte)] = tab.loc(0)
                k += 1
    return out


def _gather_pos(pb: ProgramBuilder, name: str, pos: dict, tables: dict, t: int, which: str,
                reg: int, rtmp: int) -> None:
    """``reg`` = position p's int16 ``which`` (C or S) vector of tile ``t``: the low byte
    Gather into ``rtmp``, the high byte's (signed) ``<< 8`` added (index: the position
    vector, read from a slice other than the table's)."""
    O = pb.O
    for byte, typ, dst in (("lo", "u8", rtmp), ("hi", "i8", reg)):
        s, base = tables[(t, which, byte)]
        b = Bundle(f"{name} {which}{t} {byte}", name)
        rd = O.read(b, *copy_avoiding(pos, s))
        g = O.gather(b, s, base)
        b.connect(rd, "out", g, "idx")
        v = (O.vxm(b, typ, ("r", dst), "PASS", "s", otype="i32") if byte == "lo" else
             O.vxm(b, typ, ("r", dst), "SHL", "s", 8, "ADD", ("r", rtmp), otype="i32"))
        b.connect(g, "out", v, "a")
        pb.emit(b)


def rope_rows(pb: ProgramBuilder, name: str, x, e_x, dst, e_dst, rows: int, n_heads: int,
              d_head: int, cos: np.ndarray | None, sin: np.ndarray | None, bits: int = 16,
              pos: dict | None = None, tables: dict | None = None) -> None:
    """``dst, e_dst = rope_int(x, e_x)`` for ``rows`` rows at the positions whose int16 Q14
    tables are ``cos``/``sin`` (``[rows, d_head / 2]``, `golden.rope.rope_tables`), or for
    one row at the run-time position: ``pos`` (slice -> loc of the u8 position vector) and
    ``tables`` (`position_tables`).  ``x``, ``dst``: int16 tensors keyed ``(row, tile)``;
    ``e_x``, ``e_dst``: int16 exponent vectors keyed ``(row, tile)``."""
    vl, O, regs = pb.vl, pb.O, pb.regs
    width = n_heads * d_head
    nt = T.ntiles(width, vl)
    side = pb.mem.side_of(x)
    other = "E" if side == "W" else "W"
    sxm = _sxm_near(pb, x[(0, 0)])
    dynamic = tables is not None
    if not dynamic:
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
    rc, rs_, rtmp = (regs.single() for _ in range(3)) if dynamic else (None, None, None)
    for i in range(rows):
        nm = f"{name} row {i}"
        for t in range(nt):  # y = x C + swap(x) S
            if dynamic:
                _gather_pos(pb, f"{nm} tile {t}", pos, tables, t, "C", rc, rtmp)
                _gather_pos(pb, f"{nm} tile {t}", pos, tables, t, "S", rs_, rtmp)
            b = Bundle(f"{nm} x C tile {t}", name)
            if dynamic:
                v = O.vxm(b, "i16", ("r", r1), "MUL", "s", ("r", rc), otype="i32")
            else:
                v = O.vxm(b, "i16", ("r", r1), "MUL", "s", "s", otype="i32")
                planes_in(O, b, tab[(i, t, 0)], v, "b")
            planes_in(O, b, x[(i, t)], v, "a")
            pb.emit(b)
            b = Bundle(f"{nm} y tile {t}", name)
            pe = O.perm(b, sxm, SWAP_MAP, "i16")
            planes_in(O, b, x[(i, t)], pe, "in")
            if dynamic:
                v = O.vxm(b, "i16", "s", "MUL", "s", ("r", rs_), "ADD", ("r", r1),
                          otype="i32")
            else:
                v = O.vxm(b, "i16", "s", "MUL", "s", "s", "ADD", ("r", r1), otype="i32")
                planes_in(O, b, tab[(i, t, 1)], v, "b")
            b.connect(pe, "out", v, "a")
            planes_out(O, b, v, "d", y[(i, t)])
            pb.emit(b)
    regs.release(r1, *([rc, rs_, rtmp] if dynamic else []))
    narrow_groups(pb, f"{name}.narrow", y, e_x, dst, e_dst, rows, n_heads, d_head,
                  e_add=-ROPE_FRAC, bits=bits)
    pb.release(y)
