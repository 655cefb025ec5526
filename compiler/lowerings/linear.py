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

from dataclasses import dataclass

import numpy as np

from golden.planes import R_BITS, RowWeight

from .. import tiling as T
from ..builder import ProgramBuilder
from ..errors import CompileError
from ..ir import Bundle
from ..routes import planes_in, planes_out

ROW_GROUP = 4
STRIPE = 44  # weight rows dealt over every MEM slice of their side (`ProgramBuilder.weights`)
MIN_TEMPS = 4  # registers the block-plane terms rotate through (more if free)


def block_planes(pb: ProgramBuilder, name: str, x, rows: int, n_in: int, group: int,
                 sums: bool, side: str):
    """Step 1 of `linear_rows` for an int16 input ``x``: per row and block of ``group``
    inputs its two int8 planes masked to the block's lanes, in ``side``'s SRAM (keyed
    ``(row, block, plane)``), and with ``sums`` the block sums (int32, ``(row, block)``).
    Products that share an input (q, k, v; gate, up) share these: ``(planes, sums)``."""
    vl, O, regs = pb.vl, pb.O, pb.regs
    kt, bpt, nb = T.ntiles(n_in, vl), vl // group, n_in // group
    xside = pb.mem.side_of(x)
    other = "E" if xside == "W" else "W"  # the masks: read with x in one instruction
    lanes = np.arange(vl)
    mask = pb.const(f"{name}.mask", {(j,): T.bytes_of(
        (lanes // group == j).astype(np.int64), 2) for j in range(bpt)}, 2, other)
    xp = pb.mem.tensor(f"{name}.planes", [(i, b, p) for i in range(rows) for b in range(nb)
                                          for p in range(2)], 1, side)
    st = (pb.mem.tensor(f"{name}.sums", [(i, b) for i in range(rows) for b in range(nb)], 4,
                        other) if sums else None)
    # the sums' SXM: on their side, unless they are stored in the relay layout (fewer
    # than 4 MEM slices there), whose planes 2, 3 pass that SXM on the way back
    relay = st is not None and len({s_ for s_, _ in st[(0, 0)]}) < 4
    reducer = {"W": "SXM_W", "E": "SXM_E"}[xside if relay else other]
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
                    sx = O.reduce(bd, reducer, "RSUM", "i16", "i32")
                    bd.connect(v, "d", sx, "in")
                    planes_out(O, bd, sx, "out", st[(i, b)])
                    pb.emit(bd)
    regs.release(rlo)
    return xp, st


@dataclass(frozen=True)
class Unit:
    """Output tile ``n``'s K tiles ``k0 .. k1-1`` on one MXM."""

    n: int
    k0: int
    k1: int
    mxm: str


def plan_waves(nt: int, kt: int, mxms: list[str], width: int, budget: int
               ) -> list[list[Unit]]:
    """Output tiles in waves of ``width`` (one MXM each, whole K).  A last wave with fewer
    tiles than MXMs has its ``tiles x kt`` K tiles dealt evenly over the ``width`` MXMs in
    contiguous runs (a tile cut between two MXMs is two units whose sums are added at the
    end), so that no MXM idles through the longest tile -- if its units fit ``budget``
    accumulators, else each tile's K is cut into equal parts, one per MXM."""
    waves = []
    for n0 in range(0, nt, width):
        tiles = list(range(n0, min(nt, n0 + width)))
        if len(tiles) == width or kt == 1 or width == 1:
            waves.append([Unit(n, 0, kt, mxms[n % len(mxms)]) for n in tiles])
            continue
        total = len(tiles) * kt
        deal = min(width, total)  # fewer K tiles than MXMs: one each, on the first ones
        cuts = [round(total * j / deal) for j in range(deal + 1)]
        units = []
        for j in range(deal):
            lo, hi = cuts[j], cuts[j + 1]
            while lo < hi:
                a, k0 = divmod(lo, kt)
                k1 = min(kt, k0 + hi - lo)
                units.append(Unit(tiles[a], k0, k1, mxms[j % len(mxms)]))
                lo += k1 - k0
        if len(units) > budget:
            f = min(width // len(tiles), kt)
            ks = [round(kt * j / f) for j in range(f + 1)]
            units = [Unit(n, ks[j], ks[j + 1], mxms[(a * f + j) % len(mxms)])
                     for a, n in enumerate(tiles) for j in range(f)]
        waves.append(units)
    return waves


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
    if mxm:
        mxms = [mxm] if isinstance(mxm, str) else list(mxm)
    else:  # every MXM, the least loaded first (weight tiles so far; balanced over products)
        mxms = sorted((sl.name for sl in pb.cfg.slices_of("MXM")),
                      key=lambda m: pb.mxm_load.get(m, 0))
    rows_per = min(rows, ROW_GROUP)
    budget = (len(regs.free) - MIN_TEMPS) // rows_per  # accumulators a wave may hold
    width = max(1, min(len(mxms), budget))
    waves = plan_waves(nt, kt, mxms, width, budget)
    for u in (u for wave in waves for u in wave):
        pb.mxm_load[u.mxm] = pb.mxm_load.get(u.mxm, 0) + u.k1 - u.k0
    mxm_of = {(u.n, k): u.mxm for wave in waves for u in wave for k in range(u.k0, u.k1)}
    hemi = {m: pb.cfg.slice(m).hemisphere for m in mxms}
    other = {"W": "E", "E": "W"}
    # each weight tile beside the MXM that takes it
    wq = pb.weights(f"{name}.q", w.q, lambda n, k: hemi[mxm_of[(n, k)]], stripe=STRIPE)
    # 1. the masked planes (and block sums) of every row
    own = planes is None
    xp, sums = (block_planes(pb, name, x, rows, n_in, g, w.o is not None,
                             hemi[mxms[0]]) if own else planes)
    if w.o is not None and sums is None:
        raise CompileError(f"{name}: the shared input planes have no block sums, which the "
                           "weight's block offsets need", "shape", True)
    # the int32 scale, offset and plane-bias vectors, streamed into the VXM from across
    # the MXM that makes the partial (the offsets across from the block sums, which one
    # instruction reads with them)
    bias = w.plane_bias(16)
    sside = None if sums is None else pb.mem.side_of(sums)
    consts = {"b": {(n,): (T.tile_vec(bias, n, vl), other[hemi[mxm_of[(n, 0)]]])
                    for n in range(nt)},
              "r": {(n, b): (T.tile_vec(w.r[:, b], n, vl),
                             other[hemi[mxm_of[(n, b // bpt)]]])
                    for n in range(nt) for b in range(nb)}}
    if w.o is not None:
        consts["o"] = {(n, b): (T.tile_vec(w.o[:, b], n, vl), other[sside])
                       for n in range(nt) for b in range(nb)}
    cv = {}
    for nm, vecs in consts.items():  # one allocation per output tile and side (no long runs)
        parts: dict[tuple[int, str], dict] = {}
        for k, (v, sd) in vecs.items():
            parts.setdefault((k[0], sd), {})[k] = T.bytes_of(v, 4)
        cv[nm] = {}
        for (n, sd), part in sorted(parts.items()):
            t = pb.const(f"{name}.{nm}[{n}].{sd}", part, 4, sd)
            cv[nm].update({k: t[k] for k in part})

    # 2. per wave (one unit per MXM) and group of rows: every block and plane
    n_units = max(len(wave) for wave in waves) * rows_per
    temps = [regs.single() for _ in range(max(MIN_TEMPS, len(regs.free) - n_units))]
    tnext = [0]

    def temp() -> int:
        tnext[0] += 1
        return temps[tnext[0] % len(temps)]

    def add3(bd, d, ts, c):
        """``d = ts[0] (+ ts[1]) (+ c)``: one VXM instruction (``c`` None, a register or a
        stream port)."""
        if len(ts) == 2:
            return O.vxm(bd, "i32", d, "ADD", ("r", ts[0]), ("r", ts[1]),
                         *(("ADD", c) if c is not None else ()))
        return O.vxm(bd, "i32", d, *(("ADD", ("r", ts[0]), c) if c is not None else
                                     ("PASS", ("r", ts[0]))))

    for wave in waves:
        for g0 in range(0, rows, rows_per):
            grp = list(range(g0, min(rows, g0 + rows_per)))
            acc = {(u, i): regs.single() for u in wave for i in grp}
            started = dict.fromkeys(acc, False)
            alone = {u.n: sum(v.n == u.n for v in wave) == 1 for u in wave}

            def combine(u, i, ts, out=False, acc=acc, started=started):
                """ADD one or two term registers to the unit's accumulator (at first, in the
                tile's first unit, to the plane bias read from SRAM); a tile's last term
                straight to ``dst``."""
                bd = Bundle(f"{name}[{u.n}] row {i} " + ("out" if out else "+ acc"), name)
                first = not started[(u, i)]
                c = "s" if first and u.k0 == 0 else None if first else ("r", acc[(u, i)])
                v = add3(bd, "s" if out else ("r", acc[(u, i)]), ts, c)
                if c == "s":
                    planes_in(O, bd, cv["b"][(u.n,)], v, "c" if len(ts) == 2 else "b")
                if out:
                    planes_out(O, bd, v, "d", dst[(i, u.n)])
                pb.emit(bd)
                started[(u, i)] = True

            def product(bd, mxm, ins, x_loc, t, p, r_loc):
                """MVM of one masked input plane; its partial times the block scale, rounded
                by ``2**(s - 8p)``, into register ``t``."""
                rd = O.read(bd, *x_loc)
                mv = O.mvm(bd, mxm, pb.slots[mxm].scratch(), False, True, ins)
                bd.connect(rd, "out", mv, "x")
                v = O.vxm(bd, "i32", ("r", t), "MUL", "s", "s", "SRAR", s - 8 * p)
                bd.connect(mv, "out", v, "a")
                planes_in(O, bd, r_loc, v, "b")

            # per MXM its units' K tiles in order; the MXMs in turn, one K tile each
            seq = {}
            for u in wave:
                seq.setdefault(u.mxm, []).extend((u, k) for k in range(u.k0, u.k1))
            for step in range(max(len(q) for q in seq.values())):
                for u, k in (q[step] for q in seq.values() if step < len(q)):
                    ins = pb.install(u.mxm, (f"{name}.q", u.n, k),
                                     [(r, wq.loc(u.n, k, r))
                                      for r in range(pb.rows_of_tile(n_out, u.n))])
                    blocks = range(k * bpt, min(nb, (k + 1) * bpt))
                    for i in grp:
                        # the (tile, row, K tile) terms -- planes of each block, then the
                        # offsets -- are added in pairs as they come
                        todo = [(b, p) for b in blocks for p in (1, 0)]
                        if w.o is not None:
                            todo += [(b, "o") for b in blocks]
                        held = []
                        for j, (b, p) in enumerate(todo):
                            nm = f"{name}[{u.n}] row {i} block {b}"
                            t = temp()
                            if p == "o":
                                bd = Bundle(f"{nm} offset", name)
                                v = O.vxm(bd, "i32", ("r", t), "MUL", "s", "s", "SRAR", s)
                                planes_in(O, bd, sums[(i, b)], v, "a")
                                planes_in(O, bd, cv["o"][(u.n, b)], v, "b")
                            else:
                                bd = Bundle(f"{nm} plane {p}", name)
                                product(bd, u.mxm, ins, xp.loc(i, b, p), t, p,
                                        cv["r"][(u.n, b)])
                            pb.emit(bd)
                            held.append(t)
                            last = j == len(todo) - 1
                            if len(held) == 2 or last:
                                combine(u, i, held, last and k == u.k1 - 1 and alone[u.n])
                                held = []
            # a tile split over several MXMs: its units' sums added, the last to dst
            for n in dict.fromkeys(u.n for u in wave if not alone[u.n]):
                for i in grp:
                    regs_n = [acc[(u, i)] for u in wave if u.n == n]
                    while regs_n:
                        out = len(regs_n) <= 3
                        bd = Bundle(f"{name}[{n}] row {i} " + ("out" if out else "parts"),
                                    name)
                        d = "s" if out else ("r", regs_n[0])
                        c = ("r", regs_n[2]) if len(regs_n) > 2 else None
                        v = add3(bd, d, regs_n[:2], c)
                        if out:
                            planes_out(O, bd, v, "d", dst[(i, n)])
                        pb.emit(bd)
                        regs_n = [] if out else [regs_n[0]] + regs_n[3:]
            for n, i in ((n, i) for n in dict.fromkeys(u.n for u in wave) for i in grp):
                bd = Bundle(f"{name}[{n}] row {i} exponent", name)  # 3. the exponent
                v = O.vxm(bd, "i16", "s", "ADD", "s", w.f - R_BITS + s)
                planes_in(O, bd, e_x[(i, 0)], v, "a")
                planes_out(O, bd, v, "d", e_dst[(i, n)])
                pb.emit(bd)
            regs.release(*acc.values())
    regs.release(*temps)
    pb.release(wq, *([xp] + ([sums] if sums is not None else []) if own else []))
