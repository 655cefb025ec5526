"""The LLM's matrix product with block-scaled int8 weights: `golden.planes.linear_int`.

``y = x W^T`` for int16 rows ``x`` (one exponent per row) and a `RowWeight` ``W`` (int8
``q``, an integer scale ``r`` per output channel and block of ``group`` inputs, optional
block offsets ``o``: the GGUF Q4_1/Q8_0 blocks, exactly), int32 out, on the machine:

1. Per row and block ``b``: the input's two int8 planes restricted to the block's lanes
   (VXM: the low plane ``(x & 255) - 128`` -- ``x ^ 128`` wrapped to int8 -- into a
   register once per lane tile, then per block ``x >> 8`` and the low plane times the
   block's 0/1 lane mask, written as int8), and with offsets the block sum ``S_b`` (VXM
   mask, SXM ``RSUM``).
2. Per output tile: each K tile's ``q`` installed once; per row, block and plane one MVM
   (emit) whose int32 partial goes straight into ``SRAR(MUL(P, r_b), s - 8p)`` (VXM, into
   a register) and one ``ADD`` into the row's accumulator register, which starts at the
   offline plane bias (`RowWeight.plane_bias`); offsets ``SRAR(MUL(S_b, o_b), s)`` alike.
3. The accumulator to SRAM (int32) and the exponent ``e + f - 23 + s``.

Rows go in groups of `ROW_GROUP` (one accumulator register each); the weights are
installed once per group.  Needs ``group`` to divide VL (a block inside one lane tile).
"""

from __future__ import annotations

import numpy as np

from golden.planes import R_BITS, RowWeight

from .. import tiling as T
from ..builder import ProgramBuilder
from ..errors import CompileError
from ..ir import Bundle
from ..routes import planes_in, planes_out

ROW_GROUP = 4


def block_planes(pb: ProgramBuilder, name: str, x, rows: int, n_in: int, group: int,
                 sums: bool, side: str):
    """Step 1 of `linear_rows` for an int16 input ``x``: per row and block of ``group``
    inputs its two int8 planes masked to the block's lanes, in ``side``'s SRAM (keyed
    ``(row, block, plane)``), and with ``sums`` the block sums (int32, ``(row, block)``).
    Products that share an input (q, k, v; gate, up) share these: ``(planes, sums)``."""
    vl, O, regs = pb.vl, pb.O, pb.regs
    kt, bpt, nb = T.ntiles(n_in, vl), vl // group, n_in // group
    xside = "W" if x[(0, 0)][0][0] in pb.mem.side["W"] else "E"
    other = "E" if xside == "W" else "W"  # the masks: read with x in one instruction
    lanes = np.arange(vl)
    mask = pb.const(f"{name}.mask", {(j,): T.bytes_of(
        (lanes // group == j).astype(np.int64), 2) for j in range(bpt)}, 2, other)
    xp = pb.mem.tensor(f"{name}.planes", [(i, b, p) for i in range(rows) for b in range(nb)
                                          for p in range(2)], 1, side)
    st = (pb.mem.tensor(f"{name}.sums", [(i, b) for i in range(rows) for b in range(nb)], 4,
                        other) if sums else None)
    rlo = regs.single()
    for i in range(rows):
        for k in range(kt):
            nm = f"{name} row {i} tile {k}"
            b_ = Bundle(f"{nm} low plane", name)
            # (x & 255) - 128 is the low byte of x ^ 128 read as int8 (wrapped)
            v = O.vxm(b_, "i16", ("r", rlo), "XOR", "s", 128, otype="i8")
            planes_in(O, b_, x[(i, k)], v, "a")
            pb.emit(b_)
            for j in range(min(bpt, nb - k * bpt)):
                b = k * bpt + j
                bd = Bundle(f"{nm} block {b} planes", name)
                hi = O.vxm(bd, "i16", "s", "SRA", "s", 8, "MUL", "s", otype="i8")
                planes_in(O, bd, x[(i, k)], hi, "a")
                planes_in(O, bd, mask[(j,)], hi, "c")
                planes_out(O, bd, hi, "d", xp[(i, b, 1)])
                pb.emit(bd)
                bd = Bundle(f"{nm} block {b} low", name)
                lo = O.vxm(bd, "i16", "s", "MUL", ("r", rlo), "s", otype="i8")
                planes_in(O, bd, mask[(j,)], lo, "b")
                planes_out(O, bd, lo, "d", xp[(i, b, 0)])
                pb.emit(bd)
                if st is not None:
                    bd = Bundle(f"{nm} block {b} sum", name)
                    v = O.vxm(bd, "i16", "s", "MUL", "s", "s", otype="i16")
                    planes_in(O, bd, x[(i, k)], v, "a")
                    planes_in(O, bd, mask[(j,)], v, "b")
                    sx = O.reduce(bd, "SXM_W" if other == "W" else "SXM_E", "RSUM", "i16",
                                  "i32")
                    bd.connect(v, "d", sx, "in")
                    planes_out(O, bd, sx, "out", st[(i, b)])
                    pb.emit(bd)
    regs.release(rlo)
    return xp, st


def linear_rows(pb: ProgramBuilder, name: str, x, e_x, w: RowWeight, dst, e_dst,
                rows: int, mxm: str | list[str] | None = None, planes=None) -> None:
    """``dst, e_dst = linear_int(x, e_x, w, bits=16)``: ``x`` int16 and ``dst`` int32
    tensors keyed ``(row, tile)``, exponents likewise (per row: read from tile 0).
    ``mxm``: one MXM or several (the output tiles go to them in turn; default every MXM
    of the config).  ``planes``: `block_planes` of ``x`` made for an earlier product with
    the same block size (else made here)."""
    vl, O, regs = pb.vl, pb.O, pb.regs
    n_out, n_in = w.shape
    g = w.group
    if vl % g:
        raise CompileError(f"{name}: weight blocks of {g} inputs do not divide the vector "
                           f"length {vl} (a block must lie in one lane tile)", "shape", True)
    if x.planes != 2:
        raise CompileError(f"{name}: the input must be int16 (2 planes), got {x.planes}",
                           "shape", True)
    s = w.shift(16)
    kt, nt, bpt, nb = T.ntiles(n_in, vl), T.ntiles(n_out, vl), vl // g, n_in // g
    mxms = ([mxm] if isinstance(mxm, str) else list(mxm) if mxm else
            [sl.name for sl in pb.cfg.slices_of("MXM")])
    side = pb.cfg.slice(mxms[0]).hemisphere
    wq = pb.weights(f"{name}.q", w.q, side)
    # 1. the masked planes (and block sums) of every row
    own = planes is None
    xp, sums = (block_planes(pb, name, x, rows, n_in, g, w.o is not None, side) if own
                else planes)
    if w.o is not None and sums is None:
        raise CompileError(f"{name}: the shared input planes have no block sums, which the "
                           "weight's block offsets need", "shape", True)
    # 2. per output tile and group of rows: accumulate every block and plane
    bias = w.plane_bias(16)
    rt, rr, ro, rbias = (regs.single() for _ in range(4))
    for n in range(nt):
        mxm = mxms[n % len(mxms)]  # an MXM in the other hemisphere reads q across the VXM
        pb.reg_const(rbias, T.tile_vec(bias, n, vl), f"{name} plane bias[{n}]")
        for g0 in range(0, rows, ROW_GROUP):
            grp = list(range(g0, min(rows, g0 + ROW_GROUP)))
            acc = {i: regs.single() for i in grp}
            first = dict.fromkeys(grp, True)

            def add(i, nm, acc=acc, first=first):
                src = ("r", rbias) if first[i] else ("r", acc[i])
                pb.vx_bundle(f"{nm} + acc", "i32", ("r", acc[i]), "ADD", ("r", rt), src)
                first[i] = False

            for k in range(kt):
                ins = pb.install(mxm, (f"{name}.q", n, k),
                                 [(r, wq.loc(n, k, r)) for r in range(pb.rows_of_tile(n_out, n))])
                for j in range(min(bpt, nb - k * bpt)):
                    b = k * bpt + j
                    pb.reg_const(rr, T.tile_vec(w.r[:, b], n, vl), f"{name} r[{n},{b}]")
                    if w.o is not None:
                        pb.reg_const(ro, T.tile_vec(w.o[:, b], n, vl), f"{name} o[{n},{b}]")
                    for i in grp:
                        nm = f"{name}[{n}] row {i} block {b}"
                        for p in (1, 0):
                            bd = Bundle(f"{nm} plane {p}", name)
                            rd = O.read(bd, *xp.loc(i, b, p))
                            mv = O.mvm(bd, mxm, pb.slots[mxm].scratch(), False, True, ins)
                            bd.connect(rd, "out", mv, "x")
                            v = O.vxm(bd, "i32", ("r", rt), "MUL", "s", ("r", rr), "SRAR",
                                      s - 8 * p)
                            bd.connect(mv, "out", v, "a")
                            pb.emit(bd)
                            add(i, nm)
                        if w.o is not None:
                            bd = Bundle(f"{nm} offset", name)
                            v = O.vxm(bd, "i32", ("r", rt), "MUL", "s", ("r", ro), "SRAR", s)
                            planes_in(O, bd, sums[(i, b)], v, "a")
                            pb.emit(bd)
                            add(i, nm)
            for i in grp:  # 3. out: the sum and its exponent
                bd = Bundle(f"{name}[{n}] row {i} out", name)
                v = O.vxm(bd, "i32", "s", "PASS", ("r", acc[i]))
                planes_out(O, bd, v, "d", dst[(i, n)])
                pb.emit(bd)
                bd = Bundle(f"{name}[{n}] row {i} exponent", name)
                v = O.vxm(bd, "i16", "s", "ADD", "s", w.f - R_BITS + s)
                planes_in(O, bd, e_x[(i, 0)], v, "a")
                planes_out(O, bd, v, "d", e_dst[(i, n)])
                pb.emit(bd)
            regs.release(*acc.values())
    regs.release(rt, rr, ro, rbias)
    pb.release(wq, *([xp] + ([sums] if sums is not None else []) if own else []))
