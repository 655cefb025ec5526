"""Row-scaled integers on the machine: `narrow_rows` and `rmsnorm_rows`.

A row-scaled tensor (`golden.planes`) is an integer row ``q`` with one power-of-two
exponent ``e`` per row (or per row and head): value ``q * 2**e``.  On the machine the
exponents are lane vectors beside the data, keyed ``(row, tile)`` like it: each lane holds
the exponent of its own group (here the row, so every lane and tile of a row holds the same
value; per head in `compiler.lowerings.rope`).  Int16 in SRAM, a VXM register while an op
works on a row: exponent arithmetic is ordinary lane arithmetic.

* `narrow_rows` -- `golden.planes.narrow`: per row, the largest ``|q|`` over every lane
  tile (VXM ``ABS`` -> SXM ``RMAX`` -> VXM ``MAX`` across tiles), ``k = max(0, 33 - bits -
  clz(max))`` (VXM ``CLZ``), then one rounding shift per vector saturated to ``bits``
  (``SRAR`` with the register ``k``) and ``e + k``.
* `rmsnorm_rows` -- `golden.norm.rmsnorm_int`, step by step (see its docstring): narrow
  to int16; sum of squares (VXM ``MUL`` + ``SRAR``, SXM ``RSUM``, VXM ``ADD`` across
  tiles); ``+ eps`` shifted by the row exponent (``SHL``/``SRAR`` of the 14-bit mantissa,
  saturating); the integer reciprocal square root (``CLZ``, a 192-entry seed ``GATHER``,
  two Newton steps, each a multiply and rounding shift in one VXM instruction); ``x * G``
  into a register, times ``y`` with a rounding shift by 31; narrow again.

Timing: per row a dependent chain of register ops (every VXM register read waits 4
cycles for its write, the SXM reductions take ``2S + 1``); rows are lowered one after
the other and overlap where the scheduler finds room.
"""

from __future__ import annotations

import numpy as np

from golden.norm import EPS_FRAC, RSQRT_FRAC, RSQRT_SEED, NormWeights

from .. import tiling as T
from ..alloc import ZEROS
from ..builder import ProgramBuilder
from ..errors import CompileError
from ..ir import Bundle
from ..routes import planes_in, planes_out
from .allreduce import allreduce_reg

TYPES = {1: "i8", 2: "i16", 4: "i32"}


def _sxm_near(pb: ProgramBuilder, locs) -> str:
    return "SXM_" + pb.mem.side_of(locs[0][0])


def row_reduce(pb: ProgramBuilder, name: str, vectors: list, reg: int, red: str,
               first_op: str | None, typ: str = "i32", combine: str = "MAX") -> None:
    """``reg = combine_t RED(first_op(v_t))`` over the vectors (tuples of plane locs) of
    one row: per vector one bundle MEM -> VXM (``first_op``, e.g. ``ABS``) -> SXM
    ``RMAX``/``RSUM`` -> VXM (into ``reg``, ``combine``d with it after the first)."""
    O = pb.O
    for t, locs in enumerate(vectors):
        b = Bundle(f"{name} {red.lower()} tile {t}", name)
        sx = O.reduce(b, _sxm_near(pb, locs), red, "i32")
        if first_op is not None:
            v = O.vxm(b, typ, "s", first_op, "s", otype="i32")
            planes_in(O, b, locs, v, "a")
            b.connect(v, "d", sx, "in")
        else:
            planes_in(O, b, locs, sx, "in")
        if t == 0:
            w = O.vxm(b, "i32", ("r", reg), "PASS", "s")
        else:
            w = O.vxm(b, "i32", ("r", reg), combine, "s", ("r", reg))
        b.connect(sx, "out", w, "a")
        pb.emit(b)


def _narrow_op(O, b: Bundle, rk: int, bits: int, lim_reg: int | None = None):
    """``sat(SRAR(y, rK))`` to ``bits``: the type's saturation for 8/16/32 bits, else (15
    bits: after the shift only ``2**(bits-1)`` itself can exceed the range, by rounding up)
    ``MIN(., 2**(bits-1) - 1)`` in an int16."""
    if bits in (8, 16, 32):
        return O.vxm(b, "i32", "s", "SRAR", "s", ("r", rk), otype=TYPES[bits // 8], sat=True)
    if bits > 16:  # 24: the clamp is a register (2**23 - 1 is no immediate)
        if lim_reg is None:
            raise CompileError(f"narrow to {bits} bits needs a register holding "
                               f"2**{bits - 1} - 1", "registers")
        return O.vxm(b, "i32", "s", "SRAR", "s", ("r", rk), "MIN", ("r", lim_reg))
    return O.vxm(b, "i32", "s", "SRAR", "s", ("r", rk), "MIN", 2 ** (bits - 1) - 1,
                 otype=TYPES[-(-bits // 8)])


def narrow_row(pb: ProgramBuilder, name: str, src: list, dst: list, e_reg: int,
               bits: int, lim_reg: int | None = None, chips: int = 1) -> None:
    """One row: ``dst_t = sat(SRAR(src_t, k))``, ``e_reg += k`` (see the module
    docstring); ``src``/``dst``: the row's vectors (plane locs), int32 / ``bits`` wide.
    ``chips > 1``: the row is split over the C2C ring's chips (tensor parallel) and ``k``
    is the largest of their shifts (`allreduce_reg`): the shift of the whole row's maximum."""
    regs, O = pb.regs, pb.O
    rm, rk = regs.single(), regs.single()
    row_reduce(pb, f"{name} max", src, rm, "RMAX", "ABS")
    pb.vx_bundle(f"{name} clz - {33 - bits}", "i32", ("r", rk), "CLZ", ("r", rm), None,
                 "SUB", 33 - bits)
    pb.vx_bundle(f"{name} k", "i32", ("r", rk), "SUB", ("r", ZEROS[0]), ("r", rk), "MAX", 0)
    allreduce_reg(pb, f"{name} k", rk, chips)
    for t, (s, d) in enumerate(zip(src, dst, strict=True)):
        b = Bundle(f"{name} shift tile {t}", name)
        v = _narrow_op(O, b, rk, bits, lim_reg)
        planes_in(O, b, s, v, "a")
        planes_out(O, b, v, "d", d)
        pb.emit(b)
    pb.vx_bundle(f"{name} e + k", "i32", ("r", e_reg), "ADD", ("r", e_reg), ("r", rk))
    regs.release(rm, rk)


def _load_e(pb: ProgramBuilder, name: str, locs, reg: int) -> None:
    b = Bundle(f"{name} exponent", name)
    v = pb.O.vxm(b, "i16", ("r", reg), "PASS", "s", otype="i32")
    planes_in(pb.O, b, locs, v, "a")
    pb.emit(b)


def _store_e(pb: ProgramBuilder, name: str, reg: int, e_dst, i: int, nt: int) -> None:
    """The row's exponent (register) into its vector of every tile."""
    for t in range(nt):
        b = Bundle(f"{name} exponent out tile {t}", name)
        v = pb.O.vxm(b, "i32", "s", "PASS", ("r", reg), otype="i16", sat=True)
        planes_out(pb.O, b, v, "d", e_dst[(i, t)])
        pb.emit(b)


def narrowed_row(pb: ProgramBuilder, nm: str, h, e_h, x, i: int, nt: int, bits: int
                 ) -> int:
    """Row ``i`` of ``h`` (``nt`` lane tiles, exponent ``e_h``) narrowed to ``bits`` into
    ``x``: a new register holding the narrowed row's exponent."""
    rex = pb.regs.single()
    _load_e(pb, nm, e_h[(i, 0)], rex)
    narrow_row(pb, f"{nm} x", [h[(i, t)] for t in range(nt)], [x[(i, t)] for t in range(nt)],
               rex, bits)
    return rex


def narrow_rows(pb: ProgramBuilder, name: str, src, e_src, dst, e_dst, rows: int,
                width: int, bits: int | None = None, chips: int = 1) -> None:
    """`golden.planes.narrow` of int32 rows to ``dst``'s width (``dst.planes`` bytes):
    ``src``/``dst`` and the exponents ``e_src``/``e_dst`` (int16, one per row: the value
    in every lane, read from tile 0) keyed ``(row, tile)``; ``chips``: rows split over
    that many chips (`narrow_row`)."""
    nt = T.ntiles(width, pb.vl)
    for i in range(rows):
        re = pb.regs.single()
        _load_e(pb, f"{name} row {i}", e_src[(i, 0)], re)
        narrow_row(pb, f"{name} row {i}", [src[(i, t)] for t in range(nt)],
                   [dst[(i, t)] for t in range(nt)], re, bits or 8 * dst.planes,
                   chips=chips)
        _store_e(pb, f"{name} row {i}", re, e_dst, i, nt)
        pb.regs.release(re)


def group_masks(pb: ProgramBuilder, name: str, n_groups: int, size: int, side: str):
    """int8 0/1 lane masks of group ``h`` (lanes ``h*size..``) in tile ``t``: keyed
    ``(h, t)`` for the tiles the group touches."""
    vl = pb.vl
    lanes = np.arange(vl)
    return pb.const(f"{name}.mask", {(h, t): T.bytes_of(
        ((lanes + t * vl) // size == h).astype(np.int64), 1)
        for h in range(n_groups) for t in T.head_tiles(h, size, vl)}, 1, side)


def narrow_groups(pb: ProgramBuilder, name: str, src, e_src, dst, e_dst, rows: int,
                  n_groups: int, size: int, e_add: int = 0, bits: int | None = None) -> None:
    """`golden.planes.narrow` per group of ``size`` lanes (per head): int32 ``src`` to
    ``dst`` (``dst.planes`` bytes), lane-vector exponents ``e_dst = e_src + e_add + k``
    with each group's ``k``; all keyed ``(row, tile)``.

    Per group: the largest ``|y|`` over its lanes (VXM ``ABS`` times the group's 0/1 lane
    mask, SXM ``RMAX``, across tiles ``MAX``), ``k = max(0, 33 - bits - clz)`` kept as an
    int8 vector; per tile the shift vector ``K = sum_h mask_h k_h`` (VXM), then
    ``sat(SRAR(y, K))`` and the exponent."""
    vl, O, regs = pb.vl, pb.O, pb.regs
    bits = bits or 8 * dst.planes
    nt = T.ntiles(n_groups * size, vl)
    side = pb.mem.side_of(src)
    other = "E" if side == "W" else "W"
    sxm = _sxm_near(pb, src[(0, 0)])
    mask = group_masks(pb, name, n_groups, size, side)
    kv = pb.mem.tensor(f"{name}.k", [(i, h) for i in range(rows) for h in range(n_groups)], 1,
                       other)
    rm, rk, rmask, rK = (regs.single() for _ in range(4))
    for i in range(rows):
        nm = f"{name} row {i}"
        for h in range(n_groups):
            for n, t in enumerate(T.head_tiles(h, size, vl)):
                b = Bundle(f"{nm} group {h} mask tile {t}", name)
                v = O.vxm(b, "i8", ("r", rmask), "PASS", "s", otype="i32")
                planes_in(O, b, mask[(h, t)], v, "a")
                pb.emit(b)
                b = Bundle(f"{nm} group {h} max tile {t}", name)
                v = O.vxm(b, "i32", "s", "ABS", "s", None, "MUL", ("r", rmask))
                planes_in(O, b, src[(i, t)], v, "a")
                sx = O.reduce(b, sxm, "RMAX", "i32")
                b.connect(v, "d", sx, "in")
                w = (O.vxm(b, "i32", ("r", rm), "PASS", "s") if n == 0 else
                     O.vxm(b, "i32", ("r", rm), "MAX", "s", ("r", rm)))
                b.connect(sx, "out", w, "a")
                pb.emit(b)
            pb.vx_bundle(f"{nm} group {h} clz", "i32", ("r", rk), "CLZ", ("r", rm), None,
                         "SUB", 33 - bits)
            b = Bundle(f"{nm} group {h} k", name)
            v = O.vxm(b, "i32", "s", "SUB", ("r", ZEROS[0]), ("r", rk), "MAX", 0, otype="i8")
            planes_out(O, b, v, "d", kv[(i, h)])
            pb.emit(b)
        for t in range(nt):
            for n, h in enumerate(T.tile_heads(t, n_groups, size, vl)):
                b = Bundle(f"{nm} shift tile {t} group {h}", name)
                v = (O.vxm(b, "i8", ("r", rK), "MUL", "s", "s", otype="i32") if n == 0 else
                     O.vxm(b, "i8", ("r", rK), "MUL", "s", "s", "ADD", ("r", rK), otype="i32"))
                planes_in(O, b, mask[(h, t)], v, "a")
                planes_in(O, b, kv[(i, h)], v, "b")
                pb.emit(b)
            b = Bundle(f"{nm} narrow tile {t}", name)
            v = _narrow_op(O, b, rK, bits)
            planes_in(O, b, src[(i, t)], v, "a")
            planes_out(O, b, v, "d", dst[(i, t)])
            pb.emit(b)
            b = Bundle(f"{nm} exponent tile {t}", name)
            v = (O.vxm(b, "i16", "s", "ADD", "s", ("r", rK), "ADD", e_add) if e_add else
                 O.vxm(b, "i16", "s", "ADD", "s", ("r", rK)))
            planes_in(O, b, e_src[(i, t)], v, "a")
            planes_out(O, b, v, "d", e_dst[(i, t)])
            pb.emit(b)
    regs.release(rm, rk, rmask, rK)
    pb.release(kv)


def add_aligned_rows(pb: ProgramBuilder, name: str, a, e_a, b_, e_b, dst, e_dst, rows: int,
                     width: int) -> None:
    """`golden.planes.add_aligned` (bits 32): int32 rows ``a * 2**ea + b * 2**eb`` at the
    smallest common exponent that keeps both within 30 bits (never finer than the finer
    operand): per operand the row's ``bitlen(max|.|) + e`` (``ABS``/``RMAX``/``CLZ``), the
    target exponent, then per tile each operand shifted (``SRAR(SHL(., left), right)``)
    into a register and the two added.  Exponents per row, keyed ``(row, tile)``."""
    O, regs = pb.O, pb.regs
    nt = T.ntiles(width, pb.vl)
    for i in range(rows):
        nm = f"{name} row {i}"
        re_ = {}
        for tag, src, e_src in (("a", a, e_a), ("b", b_, e_b)):
            rm, re = regs.single(), regs.single()
            _load_e(pb, f"{nm} {tag}", e_src[(i, 0)], re)
            row_reduce(pb, f"{nm} {tag} max", [src[(i, t)] for t in range(nt)], rm, "RMAX",
                       "ABS")
            # bitlen + e = 32 - clz + e
            pb.vx_bundle(f"{nm} {tag} -bitlen", "i32", ("r", rm), "CLZ", ("r", rm), None,
                         "SUB", 32)
            pb.vx_bundle(f"{nm} {tag} l", "i32", ("r", rm), "SUB", ("r", re), ("r", rm))
            re_[tag] = (rm, re)
        (la, ea), (lb, eb) = re_["a"], re_["b"]
        ret = regs.single()
        pb.vx_bundle(f"{nm} et", "i32", ("r", ret), "MAX", ("r", la), ("r", lb), "SUB", 30)
        pb.vx_bundle(f"{nm} min e", "i32", ("r", la), "MIN", ("r", ea), ("r", eb))
        pb.vx_bundle(f"{nm} et >= min e", "i32", ("r", ret), "MAX", ("r", ret), ("r", la))
        shifts = {}
        for tag, (rl, re) in re_.items():  # left = max(e - et, 0), right = min(et - e, 62)
            pb.vx_bundle(f"{nm} {tag} right", "i32", ("r", rl), "SUB", ("r", ret), ("r", re),
                         "MIN", 62)
            pb.vx_bundle(f"{nm} {tag} left", "i32", ("r", re), "SUB", ("r", ZEROS[0]),
                         ("r", rl), "MAX", 0)
            pb.vx_bundle(f"{nm} {tag} right >= 0", "i32", ("r", rl), "MAX", ("r", rl), 0)
            shifts[tag] = (re, rl)
        ra, rb = regs.single(), regs.single()
        for t in range(nt):
            for tag, src, r in (("a", a, ra), ("b", b_, rb)):
                left, right = shifts[tag]
                bd = Bundle(f"{nm} {tag} aligned tile {t}", name)
                v = O.vxm(bd, "i32", ("r", r), "SHL", "s", ("r", left), "SRAR", ("r", right))
                planes_in(O, bd, src[(i, t)], v, "a")
                pb.emit(bd)
            bd = Bundle(f"{nm} sum tile {t}", name)
            v = O.vxm(bd, "i32", "s", "ADD", ("r", ra), ("r", rb))
            planes_out(O, bd, v, "d", dst[(i, t)])
            pb.emit(bd)
        _store_e(pb, nm, ret, e_dst, i, nt)
        regs.release(ra, rb, ret, la, ea, lb, eb)


def rsqrt_seed_table(pb: ProgramBuilder, name: str = "rmsnorm"):
    """The rsqrt seed table (256 consecutive addresses of one slice: allocate it before
    SRAM fills up); made once per program."""
    key = "table.rsqrt_seed"
    t = pb.mem.tensors.get(key)
    if t is None:
        seed = np.zeros(256, np.int64)  # indexed by a >> 23 in 64..255 (a in Q31)
        seed[64:64 + len(RSQRT_SEED)] = RSQRT_SEED
        t = pb.const(key, dict(enumerate(T.table_vectors(seed, pb.vl))), 1)
        if len(t.ranges) != 1:
            raise CompileError(f"{name}: no 256 consecutive free addresses for the rsqrt "
                               f"seed table (got {t.ranges}): allocate it first "
                               "(rsqrt_seed_table)", "sram", True)
    return t


def rmsnorm_rows(pb: ProgramBuilder, name: str, h, e_h, dst, e_dst, rows: int,
                 nw: NormWeights) -> None:
    """`golden.norm.rmsnorm_int` of int32 rows ``h`` (exponents ``e_h``) to ``dst``
    (``dst.planes`` bytes, exponents ``e_dst``); tensors keyed as in `narrow_rows`."""
    vl, O, regs = pb.vl, pb.O, pb.regs
    nt = T.ntiles(nw.n, pb.vl)
    seed = rsqrt_seed_table(pb, name)
    side = pb.mem.side_of(h)
    x = pb.mem.tensor(f"{name}.x", [(i, t) for i in range(rows) for t in range(nt)], 2, side)
    z = pb.mem.tensor(f"{name}.z", [(i, t) for i in range(rows) for t in range(nt)], 4, side)
    # gamma on the other hemisphere: x and G are read in the same cycle
    g = pb.const(f"{name}.gamma", {(t,): T.bytes_of(T.tile_vec(nw.g, t, vl), 2)
                                   for t in range(nt)}, 2, "E" if side == "W" else "W")
    r_three, r_lim = regs.single(), regs.single()
    pb.reg_const(r_three, np.full(vl, 3 << RSQRT_FRAC), "3 in Q29")
    pb.reg_const(r_lim, np.full(vl, 2**30 - 1), "2**30 - 1")
    for i in range(rows):
        nm = f"{name} row {i}"
        rex = narrowed_row(pb, nm, h, e_h, x, i, nt, 16)  # 1. int16, ex = e + k
        # 2. sum of squares, each rounded to 2**-sq
        rss = regs.single()
        for t in range(nt):
            b = Bundle(f"{nm} squares tile {t}", name)
            sx = O.reduce(b, _sxm_near(pb, x[(i, t)]), "RSUM", "i32")
            v = O.vxm(b, "i16", "s", "MUL", "s", "s", "SRAR", nw.sq, otype="i32")
            planes_in(O, b, x[(i, t)], v, "a")
            b.tap(v.ports["a"][1], 0, v, "b")
            b.connect(v, "d", sx, "in")
            w = (O.vxm(b, "i32", ("r", rss), "PASS", "s") if t == 0 else
                 O.vxm(b, "i32", ("r", rss), "ADD", "s", ("r", rss)))
            b.connect(sx, "out", w, "a")
            pb.emit(b)
        # 3. + eps (A << B in Q60, shifted right by 60 + 2 ex - B, or left), saturated
        if nw.eps_q:
            rd, rr, rl = regs.single(), regs.single(), regs.single()
            pb.vx_bundle(f"{nm} eps shift", "i32", ("r", rd), "ADD", ("r", rex), ("r", rex),
                         "ADD", EPS_FRAC - nw.eps_b)
            pb.vx_bundle(f"{nm} eps right", "i32", ("r", rr), "MAX", ("r", rd), 0)
            pb.vx_bundle(f"{nm} eps right <= 31", "i32", ("r", rr), "MIN", ("r", rr), 31)
            pb.vx_bundle(f"{nm} eps -d", "i32", ("r", rl), "SUB", ("r", ZEROS[0]), ("r", rd),
                         "MAX", 0)
            pb.vx_bundle(f"{nm} eps left", "i32", ("r", rl), "MIN", ("r", rl), 31)
            pb.vx_bundle(f"{nm} eps", "i32", ("r", rd), "SHL", nw.eps_a, ("r", rl), "SRAR",
                         ("r", rr), sat=True)
            pb.vx_bundle(f"{nm} ss + eps", "i32", ("r", rss), "ADD", ("r", rss), ("r", rd),
                         "MIN", ("r", r_lim))
            regs.release(rd, rr, rl)
        regs.release(rex)
        pb.vx_bundle(f"{nm} ss >= 1", "i32", ("r", rss), "MAX", ("r", rss), 1)
        # 4. y = rsqrt(ss) in Q29, ss = a * 2**b2 (a in [1/4, 1), b2 even)
        r1, rp, rsh, ra, ry = (regs.single() for _ in range(5))
        pb.vx_bundle(f"{nm} -b", "i32", ("r", r1), "CLZ", ("r", rss), None, "SUB", 32)
        pb.vx_bundle(f"{nm} b & 1", "i32", ("r", rp), "AND", ("r", r1), 1)
        pb.vx_bundle(f"{nm} 31 - b2", "i32", ("r", rsh), "SUB", ("r", r1), ("r", rp), "ADD", 31)
        pb.vx_bundle(f"{nm} a", "i32", ("r", ra), "SHL", ("r", rss), ("r", rsh))
        regs.release(r1, rp, rss)
        b = Bundle(f"{nm} rsqrt seed", name)
        v = O.vxm(b, "i32", "s", "SRA", ("r", ra), 23, otype="u8")  # 64..255
        ga = O.gather(b, *seed.loc(0))
        b.connect(v, "d", ga, "idx")
        y = O.vxm(b, "u8", ("r", ry), "ADD", "s", 256, otype="i32")
        b.connect(ga, "out", y, "a")
        pb.emit(b)
        pb.vx_bundle(f"{nm} y0 Q29", "i32", ("r", ry), "SHL", ("r", ry), RSQRT_FRAC - 8)
        ry2, rt = regs.single(), regs.single()
        for k in range(2):
            pb.vx_bundle(f"{nm} newton {k} y^2", "i32", ("r", ry2), "MUL", ("r", ry),
                         ("r", ry), "SRAR", RSQRT_FRAC, sat=True)
            pb.vx_bundle(f"{nm} newton {k} a y^2", "i32", ("r", rt), "MUL", ("r", ra),
                         ("r", ry2), "SRAR", 31)
            pb.vx_bundle(f"{nm} newton {k} 3 - a y^2", "i32", ("r", rt), "SUB",
                         ("r", r_three), ("r", rt))
            pb.vx_bundle(f"{nm} newton {k} y", "i32", ("r", ry), "MUL", ("r", ry), ("r", rt),
                         "SRAR", RSQRT_FRAC + 1)
        regs.release(ry2, rt, ra)
        # exponent of z = x G y / 2**31: 31 - fg - (29 + b2 / 2) = (rsh + 1) / 2 - 14 - fg
        rez = regs.single()
        pb.vx_bundle(f"{nm} (rsh + 1) / 2", "i32", ("r", rez), "ADD", ("r", rsh), 1, "SRA", 1)
        pb.vx_bundle(f"{nm} e_z", "i32", ("r", rez), "ADD", ("r", rez), -14 - nw.fg)
        regs.release(rsh)
        # 5. z = round(x G y / 2**31), then narrowed
        rxg = regs.single()
        for t in range(nt):
            b = Bundle(f"{nm} x G tile {t}", name)
            v = O.vxm(b, "i16", ("r", rxg), "MUL", "s", "s", otype="i32")
            planes_in(O, b, x[(i, t)], v, "a")
            planes_in(O, b, g[(t,)], v, "b")
            pb.emit(b)
            b = Bundle(f"{nm} z tile {t}", name)
            v = O.vxm(b, "i32", "s", "MUL", ("r", rxg), ("r", ry), "SRAR", 31)
            planes_out(O, b, v, "d", z[(i, t)])
            pb.emit(b)
        regs.release(rxg, ry)
        narrow_row(pb, f"{nm} out", [z[(i, t)] for t in range(nt)],
                   [dst[(i, t)] for t in range(nt)], rez, 8 * dst.planes)
        _store_e(pb, nm, rez, e_dst, i, nt)
        regs.release(rez)
    regs.release(r_three, r_lim)
    pb.release(x, z)


def mean_magic(n: int, bound: int) -> tuple[int, int]:
    """``(M, k)`` with ``floor(s * M / 2**k) == floor(s / n)`` for every ``0 <= s <
    bound`` (``M = ceil(2**k / n)``, ``e = M n - 2**k``: exact when ``e (bound - 1) <
    2**k``, which ``2**k >= bound * n`` ensures); ``M`` fits an int32."""
    k = max(0, (bound * n - 1).bit_length())
    m = -(-(1 << k) // n)
    if (m * n - (1 << k)) * (bound - 1) >= 1 << k or m >= 2**31:
        raise CompileError(f"no exact reciprocal multiply for a mean over {n} lanes",
                           "shape", True)
    return m, k


def layernorm_rows(pb: ProgramBuilder, name: str, h, e_h, dst, e_dst, rows: int,
                   nw: NormWeights) -> None:
    """`golden.norm.layernorm_int` of int32 rows ``h`` (exponents ``e_h``) to int16
    ``dst`` (exponents ``e_dst``): per row narrow to 15 bits; the sum over the lane tiles
    (SXM ``RSUM``); the mean ``floor((s + n/2) / n)`` exactly, as a 64-bit multiply by
    ``ceil(2**k / n)`` and a floor shift by ``k`` of the sum offset to be non-negative;
    ``x - mean`` (lanes past the row kept 0: the last tile times a 0/1 lane mask) as int32;
    then `rmsnorm_rows` of it; then beta rounded to the row's exponent
    (``SRAR(beta, 24 + e)`` or ``SHL`` by ``-(24 + e)``), added, narrowed to 16 bits."""
    from golden.norm import BETA_FRAC

    vl, O, regs = pb.vl, pb.O, pb.regs
    n = nw.n
    nt = T.ntiles(n, vl)
    keys = [(i, t) for i in range(rows) for t in range(nt)]
    side = pb.mem.side_of(h)
    x = pb.mem.tensor(f"{name}.x15", keys, 2, side)
    xm = pb.mem.tensor(f"{name}.xm", keys, 4, side)
    exm = pb.mem.tensor(f"{name}.xm.e", keys, 2)
    big = 1 << 15  # |s| <= n * 2**14: s + n/2 + big n >= 0 and < n * 2**16
    m, k = mean_magic(n, n << 16)
    r_m, r_off, r_big = regs.single(), regs.single(), regs.single()
    pb.reg_const(r_m, np.full(vl, m), f"ceil(2**{k} / {n})")
    pb.reg_const(r_off, np.full(vl, n // 2 + big * n), f"{n} // 2 + {big} * {n}")
    pb.reg_const(r_big, np.full(vl, big), f"{big}")
    last = n - (nt - 1) * vl
    mask = None
    if last < vl:  # lanes past the row stay 0 after the subtraction
        mask = pb.const(f"{name}.mask", {(0,): T.bytes_of(np.arange(vl) < last, 2)}, 2,
                        "E" if side == "W" else "W")  # read in the same cycle as x
    for i in range(rows):
        nm = f"{name} row {i}"
        rex = narrowed_row(pb, nm, h, e_h, x, i, nt, 15)
        rs = regs.single()
        row_reduce(pb, f"{nm} sum", [x[(i, t)] for t in range(nt)], rs, "RSUM", "PASS",
                   "i16", "ADD")
        pb.vx_bundle(f"{nm} s + n/2 + {big} n", "i32", ("r", rs), "ADD", ("r", rs),
                     ("r", r_off))
        pb.vx_bundle(f"{nm} mean + {big}", "i32", ("r", rs), "MUL", ("r", rs), ("r", r_m),
                     "SRA", k)
        pb.vx_bundle(f"{nm} mean", "i32", ("r", rs), "SUB", ("r", rs), ("r", r_big))
        for t in range(nt):
            b = Bundle(f"{nm} x - mean tile {t}", name)
            if mask is not None and t == nt - 1:
                v = O.vxm(b, "i16", "s", "SUB", "s", ("r", rs), "MUL", "s", otype="i32")
                planes_in(O, b, mask[(0,)], v, "c")
            else:
                v = O.vxm(b, "i16", "s", "SUB", "s", ("r", rs), otype="i32")
            planes_in(O, b, x[(i, t)], v, "a")
            planes_out(O, b, v, "d", xm[(i, t)])
            pb.emit(b)
        _store_e(pb, nm, rex, exm, i, nt)
        regs.release(rex, rs)
    regs.release(r_m, r_off, r_big)
    if nw.beta is None:
        rmsnorm_rows(pb, name, xm, exm, dst, e_dst, rows, nw)
        pb.release(x, xm, exm)
        return
    y = pb.mem.tensor(f"{name}.y", keys, 2, side)
    ey = pb.mem.tensor(f"{name}.y.e", keys, 2)
    rmsnorm_rows(pb, name, xm, exm, y, ey, rows, nw)
    yb = pb.mem.tensor(f"{name}.yb", keys, 4, side)
    beta = pb.const(f"{name}.beta", {(t,): T.bytes_of(T.tile_vec(nw.beta, t, vl), 4)
                                     for t in range(nt)}, 4, "E" if side == "W" else "W")
    for i in range(rows):
        nm = f"{name} row {i} beta"
        re, rr, rl, rb = (regs.single() for _ in range(4))
        _load_e(pb, nm, ey[(i, 0)], re)
        pb.vx_bundle(f"{nm} right", "i32", ("r", rr), "ADD", ("r", re), BETA_FRAC, "MAX",
                     ("r", ZEROS[0]))
        pb.vx_bundle(f"{nm} left", "i32", ("r", rl), "SUB", ("r", ZEROS[0]), ("r", re),
                     "SUB", BETA_FRAC)
        pb.vx_bundle(f"{nm} left >= 0", "i32", ("r", rl), "MAX", ("r", rl), 0)
        for t in range(nt):
            b = Bundle(f"{nm} tile {t}", name)
            v = O.vxm(b, "i32", ("r", rb), "SRAR", "s", ("r", rr), "SHL", ("r", rl))
            planes_in(O, b, beta[(t,)], v, "a")
            pb.emit(b)
            b = Bundle(f"{nm} y + beta tile {t}", name)
            v = O.vxm(b, "i16", "s", "ADD", "s", ("r", rb), otype="i32")
            planes_in(O, b, y[(i, t)], v, "a")
            planes_out(O, b, v, "d", yb[(i, t)])
            pb.emit(b)
        narrow_row(pb, f"{nm} out", [yb[(i, t)] for t in range(nt)],
                   [dst[(i, t)] for t in range(nt)], re, 8 * dst.planes)
        _store_e(pb, nm, re, e_dst, i, nt)
        regs.release(re, rr, rl, rb)
    pb.release(x, xm, exm, y, ey, yb)
