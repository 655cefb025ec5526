"""Element-wise ops on row tensors: the residual add and 256-entry table lookups.

* `add_rows` -- ``Y = A + rq(B)``: the residual add at any width.  One VXM instruction per
  vector: ``B``'s planes come in on one port and are requantised with per-lane pairs (the
  first ALU stage; skipped when no pairs are given), ``A``'s planes on the other and are
  added (the second stage), the sum goes out saturated to ``Y``'s type.  Where a vector of
  ``A`` and one of ``B`` share a MEM slice (two READs of one slice cannot feed one VXM
  instruction in the same cycle) ``rq(B)`` goes to a register first: two instructions.
* `lookup_rows` -- ``Y = table[uint8(X)]``: an activation (GELU, SiLU, exp) of an int8
  tensor as one MEM ``GATHER`` per vector: the index vector is read from one MEM slice and
  streams to the slice holding the table (256 consecutive addresses, entry k in every lane
  of address base + k), whose looked-up bytes stream on to ``Y``'s slice.

Timing: one VXM issue (`add_rows`) or one GATHER issue on the table's slice
(`lookup_rows`) per vector; both are stream-to-stream, so a vector's result is written a
fixed number of cycles after its operands are read (the bundle's offsets).
"""

from __future__ import annotations

import numpy as np

from arch.isa import SIGNED_TYPE

from .. import tiling as T
from ..builder import ProgramBuilder
from ..ir import Bundle
from ..routes import planes_in, planes_out


def add_rows(pb: ProgramBuilder, name: str, a, b, dst, rows: int, width: int,
             multiplier: np.ndarray | None = None, shift: np.ndarray | None = None) -> None:
    """``dst[(i, t)] = a[(i, t)] + REQUANT(b[(i, t)], pairs of tile t)`` (int32 arithmetic,
    saturated to ``dst``'s type); without ``multiplier``/``shift``: ``a + b``."""
    vl = pb.vl
    otyp = SIGNED_TYPE[dst.planes]
    for t in range(T.ntiles(width, vl)):
        tr = None
        if multiplier is not None:
            tr = pb.regs.triple()
            pb.reg_const(tr, T.tile_vec(multiplier, t, vl), f"m_{name}[{t}]")
            pb.reg_const(tr + 1, T.tile_vec(shift, t, vl), f"sh_{name}[{t}]")
        for i in range(rows):
            same = {sl for sl, _ in a[(i, t)]} & {sl for sl, _ in b[(i, t)]}
            if same:  # both operands in one slice: B (requantised) to a register first
                r = pb.regs.single()
                bd = Bundle(f"{name} row {i} tile {t} (b)", name)
                v = (pb.O.vxm(bd, "i32", ("r", r), "PASS", "s") if tr is None else
                     pb.O.vxm(bd, "i32", ("r", r), "REQUANT", "s", ("r", tr)))
                planes_in(pb.O, bd, b[(i, t)], v, "a")
                pb.emit(bd)
                bd = Bundle(f"{name} row {i} tile {t}", name)
                v = pb.O.vxm(bd, "i32", "s", "ADD", "s", ("r", r), otype=otyp, sat=True)
                planes_in(pb.O, bd, a[(i, t)], v, "a")
                planes_out(pb.O, bd, v, "d", dst[(i, t)])
                pb.emit(bd)
                pb.regs.release(r)
                continue
            bd = Bundle(f"{name} row {i} tile {t}", name)
            if tr is None:
                v = pb.O.vxm(bd, "i32", "s", "ADD", "s", "s", otype=otyp, sat=True)
                planes_in(pb.O, bd, a[(i, t)], v, "a")
                planes_in(pb.O, bd, b[(i, t)], v, "b")
            else:
                v = pb.O.vxm(bd, "i32", "s", "REQUANT", "s", ("r", tr), "ADD", "s",
                             otype=otyp, sat=True)
                planes_in(pb.O, bd, b[(i, t)], v, "a")
                planes_in(pb.O, bd, a[(i, t)], v, "c")
            planes_out(pb.O, bd, v, "d", dst[(i, t)])
            pb.emit(bd)
        if tr is not None:
            pb.regs.release_triple(tr)


def relu_rows(pb: ProgramBuilder, name: str, src, dst, rows: int, width: int) -> None:
    """``dst[(i, t)] = RELU(src[(i, t)])`` (``max(x, 0)``): one VXM instruction per
    vector, the source's planes in, the result's out (int8, int16 or int32, one type)."""
    typ = SIGNED_TYPE[src.planes]
    for i in range(rows):
        for t in range(T.ntiles(width, pb.vl)):
            bd = Bundle(f"{name} row {i} tile {t}", name)
            v = pb.O.vxm(bd, typ, "s", "RELU", "s", otype=typ)
            planes_in(pb.O, bd, src[(i, t)], v, "a")
            planes_out(pb.O, bd, v, "d", dst[(i, t)])
            pb.emit(bd)


def lookup_rows(pb: ProgramBuilder, name: str, src, table: tuple[str, int], dst, keys
                ) -> None:
    """``dst[key] = table[uint8(src[key])]`` for every key: one GATHER per vector.
    ``table``: (slice, base address) of a 256-address table (`tiling.table_vectors`), on a
    slice that holds neither ``src`` nor ``dst`` (the index streams to it, the bytes on)."""
    for t in (src, dst):
        if table[0] in {sl for sl, _, _ in t.ranges}:
            raise ValueError(f"{name}: the table's slice {table[0]} also holds {t.name}")
    for key in keys:
        bd = Bundle(f"{name} {key}", name)
        rd = pb.O.read(bd, *src[key][0])
        ga = pb.O.gather(bd, *table)
        bd.connect(rd, "out", ga, "idx")
        wr = pb.O.write(bd, *dst[key][0])
        bd.connect(ga, "out", wr, "in")
        pb.emit(bd)



def argmax_rows(pb: ProgramBuilder, name: str, src, dst, rows: int, width: int,
                chips: int = 1, offset: int = 0, valid: int | None = None,
                valid_min: int | None = None) -> None:
    """``dst[(i,)] = argmax(src row i)`` (`golden.vocab.argmax_int`: the lowest index of
    the largest value), an int32 vector with the index in every lane.  In three stages over
    the lane tiles, so that the tiles' SXM round trips overlap: every tile's max (SXM
    ``RMAX``; lanes past the row masked to the int32 minimum by ``SEL``) into SRAM; every
    tile's lowest lane holding it (``EQ``; ``SEL(., lane, 2**31 - 1)``; SXM ``RMIN``) into
    SRAM; then a running (max, index) over the tiles in order that moves only on a
    strictly larger max (``GT``, ``SEL``, ``MAX``), so ties keep the lower index.
    ``src``: int32 rows keyed ``(row, tile)``; ``dst``: int32 keyed ``(row,)``.

    Split over ``chips`` (tensor parallel, the vocabulary in parts): this chip's part
    starts at index ``offset`` and holds ``valid <= width`` entries (the rest padding);
    every tile past the ``valid_min`` entries of the chip with the fewest masks its lanes
    past ``valid`` (the same tiles on every chip: one SPMD schedule).  The chips agree
    on the largest value (`allreduce_reg` ``MAX``, int32), then on the lowest index
    holding it (``MIN``; ``2**31 - 1`` from a chip without it)."""
    from .allreduce import allreduce_reg
    from .norm import _sxm_near

    vl, O, regs = pb.vl, pb.O, pb.regs
    nt = T.ntiles(width, vl)
    valid = width if valid is None else valid
    valid_min = valid if valid_min is None else valid_min
    if not 0 < valid_min <= valid <= width:
        raise ValueError(f"{name}: {valid} valid entries of {width} (the fewest on any "
                         f"chip {valid_min})")
    masked_from = valid_min // vl  # the first tile with a lane past some chip's entries
    side = pb.mem.side_of(src)
    keys = [(i, t) for i in range(rows) for t in range(nt)]
    # on src's side: the far SXM's results reach it without passing that SXM again
    tmax = pb.mem.tensor(f"{name}.max", keys, 4, side)
    tidx = pb.mem.tensor(f"{name}.lane", keys, 4, side)
    rm, ri, rti, rtm, rc, rbase, rbig, rmin = (regs.single() for _ in range(8))
    pb.reg_const(rbig, np.full(vl, 2**31 - 1), "no index")
    pb.reg_const(rmin, np.full(vl, -(2**31)), "int32 minimum")
    rvalid = {}  # masked tile -> a register: lane < the tile's valid entries
    for t in range(masked_from, nt):
        rvalid[t] = regs.single()
        pb.vx_bundle(f"{name} tile {t} valid lanes", "i32", ("r", rvalid[t]), "LT", "lane",
                     min(max(valid - t * vl, 0), vl))
    for i in range(rows):
        nm = f"{name} row {i}"
        # per tile the far SXM: an int32 in the relay layout passes the near one on its way
        far = {t: "SXM_E" if _sxm_near(pb, src[(i, t)]) == "SXM_W" else "SXM_W"
               for t in range(nt)}
        for t in range(nt):
            b = Bundle(f"{nm} tile {t} max", name)
            red = O.reduce(b, far[t], "RMAX", "i32")
            if t in rvalid:
                v = O.vxm(b, "i32", "s", "SEL", ("r", rvalid[t]), "s", "PASS", ("r", rmin))
                planes_in(O, b, src[(i, t)], v, "b")
                b.connect(v, "d", red, "in")
            else:
                planes_in(O, b, src[(i, t)], red, "in")
            planes_out(O, b, red, "out", tmax[(i, t)])
            pb.emit(b)
        for t in range(nt):
            b = Bundle(f"{nm} tile {t} its max", name)
            v = O.vxm(b, "i32", ("r", rtm), "PASS", "s")
            planes_in(O, b, tmax[(i, t)], v, "a")
            pb.emit(b)
            b = Bundle(f"{nm} tile {t} at max", name)
            v = O.vxm(b, "i32", ("r", rc), "EQ", "s", ("r", rtm))
            planes_in(O, b, src[(i, t)], v, "a")
            pb.emit(b)
            b = Bundle(f"{nm} tile {t} lowest lane", name)
            v = O.vxm(b, "i32", "s", "SEL", ("r", rc), "lane", "PASS", ("r", rbig))
            red = O.reduce(b, far[t], "RMIN", "i32")
            b.connect(v, "d", red, "in")
            planes_out(O, b, red, "out", tidx[(i, t)])
            pb.emit(b)
        pb.reg_const(rbase, np.full(vl, offset), f"{nm} first index")
        for t in range(nt):
            tn = f"{nm} tile {t}"
            b = Bundle(f"{tn} index", name)
            v = O.vxm(b, "i32", ("r", rti), "ADD", "s", ("r", rbase))
            planes_in(O, b, tidx[(i, t)], v, "a")
            pb.emit(b)
            if t == 0:
                b = Bundle(f"{tn} running max", name)
                v = O.vxm(b, "i32", ("r", rm), "PASS", "s")
                planes_in(O, b, tmax[(i, t)], v, "a")
                pb.emit(b)
                pb.vx_bundle(f"{tn} running index", "i32", ("r", ri), "PASS", ("r", rti))
            else:
                b = Bundle(f"{tn} larger", name)
                v = O.vxm(b, "i32", ("r", rc), "GT", "s", ("r", rm))
                planes_in(O, b, tmax[(i, t)], v, "a")
                pb.emit(b)
                pb.vx_bundle(f"{tn} running index", "i32", ("r", ri), "SEL", ("r", rc),
                             ("r", rti), "PASS", ("r", ri))
                b = Bundle(f"{tn} running max", name)
                v = O.vxm(b, "i32", ("r", rm), "MAX", "s", ("r", rm))
                planes_in(O, b, tmax[(i, t)], v, "a")
                pb.emit(b)
            if t < nt - 1:
                pb.vx_bundle(f"{tn} next index", "i32", ("r", rbase), "ADD", ("r", rbase), vl)
        if chips > 1:
            pb.vx_bundle(f"{nm} this chip's max", "i32", ("r", rtm), "PASS", ("r", rm))
            allreduce_reg(pb, f"{nm} max", rtm, chips, "i32", "MAX")
            pb.vx_bundle(f"{nm} holds the max", "i32", ("r", rc), "EQ", ("r", rm), ("r", rtm))
            pb.vx_bundle(f"{nm} its index", "i32", ("r", ri), "SEL", ("r", rc), ("r", ri),
                         "PASS", ("r", rbig))
            allreduce_reg(pb, f"{nm} index", ri, chips, "i32", "MIN")
        b = Bundle(f"{nm} out", name)
        v = O.vxm(b, "i32", "s", "PASS", ("r", ri))
        planes_out(O, b, v, "d", dst[(i,)])
        pb.emit(b)
    regs.release(rm, ri, rti, rtm, rc, rbase, rbig, rmin, *rvalid.values())
    pb.release(tmax, tidx)
