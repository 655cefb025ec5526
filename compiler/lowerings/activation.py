"""SiLU and the SiLU-gated product (SwiGLU) of int16 rows: `golden.activation` on the
machine, lane by lane on VXM registers with MEM Gathers for the tables.

Per row (exponent ``e``) and lane tile of ``g``:

1. ``u = min(round(|g| log2(e) 2**(24 - 16 - e)... ), U_MAX)`` = `log2_q16`: ``ABS``, one
   multiply by the 25-bit constant with a rounding shift by ``max(8 - e, 0)`` (saturating),
   ``MIN``;
2. ``exp(-|g|) = 2**-u`` = `exp2_neg`: ``HI[(u >> 8) & 255]`` (two Gathers, its two bytes,
   ``256 hi + lo``) and ``LO[u & 255]`` (one Gather, minus 2**15 as int8),
   ``round(HI LO / 2**15)`` and a rounding shift by ``u >> 16``;
3. ``sigmoid(|g|) = 2**30 / (2**15 + exp)``: the integer reciprocal
   (`compiler.lowerings.recip.reciprocal_regs`, per lane) and ``REQUANT`` of ``2**30``,
   clamped to ``2**15``; mirrored (``2**15 - .``) where ``g < 0`` (``LT``, ``SEL``);
4. ``g * sigmoid`` (int32), narrowed to int16 per row (exponent ``e - 15``);
5. SwiGLU: ``silu(g) * up`` (int32), narrowed to ``dst``'s width (exponent ``e_s + e_up``).
About 25 VXM instructions and 4 Gathers per lane tile, one dependent chain; the tiles'
chains are dealt over the VXM groups as they come (`ProgramBuilder.vxm_soonest`), each
group with its own constants.
"""

from __future__ import annotations

import numpy as np

from golden.activation import EXP2_HI, EXP2_LO, LOG2E_BITS, LOG2E_Q, U_MAX
from golden.tables import reciprocal_seed_table

from .. import tiling as T
from ..alloc import ZEROS
from ..builder import ProgramBuilder
from ..errors import CompileError
from ..ir import Bundle
from ..routes import planes_in, planes_out
from .norm import _load_e, _store_e, narrow_row
from .recip import reciprocal_regs

Q15 = 1 << 15


def activation_tables(pb: ProgramBuilder) -> dict[str, tuple[str, int]]:
    """The four Gather tables (256 consecutive addresses each, on four different slices;
    made once per program, allocate them before SRAM fills up): HI's low and high byte,
    LO - 2**15 (int8), the reciprocal seed."""
    have = pb.mem.tensors.get("table.exp2_hi.0")
    if have is None:
        hi = EXP2_HI.astype(np.int64)  # 2**14 .. 2**15: two unsigned bytes
        tabs = {"exp2_hi.0": hi & 0xFF, "exp2_hi.1": hi >> 8,
                "exp2_lo": (EXP2_LO - Q15) & 0xFF, "recip": reciprocal_seed_table()}
        used: list[str] = []
        # the MEM slices nearest the VXM first: a Gather's index goes out from the VXM and
        # the entry comes back, so the table's distance is paid twice on every lookup
        near = [s for pair in zip(pb.mem.side["W"], pb.mem.side["E"], strict=True) for s in pair]
        for name, vals in tabs.items():
            vecs = dict(enumerate(T.table_vectors(vals, pb.vl)))
            fits = [s for s in near if s not in used and pb.mem.clean_of(s) >= len(vecs)]
            t = pb.const(f"table.{name}", vecs, 1, slices=fits[:1] or None, exclude=used)
            if len(t.ranges) != 1:
                raise CompileError(f"no 256 consecutive free addresses for the {name} table "
                                   f"(got {t.ranges}): allocate the tables first",
                                   "sram", True)
            used.append(t.ranges[0][0])
    return {k: pb.mem.tensors[f"table.{k}"].loc(0)
            for k in ("exp2_hi.0", "exp2_hi.1", "exp2_lo", "recip")}


def _gather(pb: ProgramBuilder, name: str, ru: int, op1: str, imm, table, typ: str,
            dst: int, op2: str, c) -> None:
    """``dst = op2(T[index], c)`` with ``index = op1(ru, imm)`` wrapped to u8, ``T`` one
    byte table read as ``typ`` (a Gather between two VXM instructions)."""
    O = pb.O
    b = Bundle(name, "act")
    v = (O.vxm(b, "i32", "s", op1, ("r", ru), imm, otype="u8") if imm is not None else
         O.vxm(b, "i32", "s", op1, ("r", ru), otype="u8"))
    g = O.gather(b, *table)
    b.connect(v, "d", g, "idx")
    y = (O.vxm(b, typ, ("r", dst), op2, "s", c, otype="i32") if op2 != "PASS" else
         O.vxm(b, typ, ("r", dst), "PASS", "s", otype="i32"))
    b.connect(g, "out", y, "a")
    pb.emit(b)


def log2_shift_regs(pb: ProgramBuilder, name: str, rk: int, re_: int) -> None:
    """`golden.activation.log2_q16`'s shift for exponent ``re_``: ``rk = min(max(24 - 16 -
    e, 0), 62)``."""
    pb.vx_bundle(f"{name} k", "i32", ("r", rk), "SUB", ("r", ZEROS[0]), ("r", re_), "ADD",
                 LOG2E_BITS - 16)
    pb.vx_bundle(f"{name} k >= 0", "i32", ("r", rk), "MAX", ("r", rk), 0)
    pb.vx_bundle(f"{name} k <= 62", "i32", ("r", rk), "MIN", ("r", rk), 62)


def log2_q16_regs(pb: ProgramBuilder, name: str, rd: int, rc: int, rk: int,
                  rumax: int) -> None:
    """``rd = log2_q16(rd)`` in place: ``min(round(d log2(e) 2**24 / 2**k), U_MAX)`` (the
    64-bit product saturated to int32 first) with ``rc`` the constant, ``rk`` the shift."""
    pb.vx_bundle(f"{name} d log2 e", "i32", ("r", rd), "MUL", ("r", rd), ("r", rc), "SRAR",
                 ("r", rk), sat=True)
    pb.vx_bundle(f"{name} u", "i32", ("r", rd), "MIN", ("r", rd), ("r", rumax))


def exp2_neg_regs(pb: ProgramBuilder, name: str, tabs: dict, ru: int, rh: int, rl: int,
                  rz: int, r15: int) -> None:
    """``rh = golden.activation.exp2_neg(ru)``: ``HI[(u >> 8) & 255]`` from its two bytes
    (two Gathers, ``256 hi + lo``), ``LO[u & 255]`` (one Gather of ``LO - 2**15`` as int8,
    ``+ 2**15``), ``round(HI LO / 2**15)``, a rounding shift by ``u >> 16`` (``rl``, ``rz``:
    scratch; ``r15`` holds ``2**15``)."""
    O = pb.O
    _gather(pb, f"{name} HI low byte", ru, "SRA", 8, tabs["exp2_hi.0"], "u8", rl, "PASS",
            None)
    b = Bundle(f"{name} HI", "act")
    v = O.vxm(b, "i32", "s", "SRA", ("r", ru), 8, otype="u8")
    g = O.gather(b, *tabs["exp2_hi.1"])
    b.connect(v, "d", g, "idx")
    y_ = O.vxm(b, "u8", ("r", rh), "SHL", "s", 8, "ADD", ("r", rl), otype="i32")
    b.connect(g, "out", y_, "a")
    pb.emit(b)
    _gather(pb, f"{name} LO", ru, "PASS", None, tabs["exp2_lo"], "i8", rl, "ADD", ("r", r15))
    pb.vx_bundle(f"{name} HI LO", "i32", ("r", rh), "MUL", ("r", rh), ("r", rl), "SRAR", 15)
    pb.vx_bundle(f"{name} z", "i32", ("r", rz), "SRA", ("r", ru), 16)
    pb.vx_bundle(f"{name} exp", "i32", ("r", rh), "SRAR", ("r", rh), ("r", rz))


def silu_rows(pb: ProgramBuilder, name: str, x, e_x, dst, e_dst, rows: int,
              width: int, chips: int = 1) -> None:
    """``dst, e_dst = golden.activation.silu_int(x, e_x)``: int16 rows keyed ``(row,
    tile)``, exponents per row likewise (read from tile 0); ``chips``: rows split over that
    many chips (the narrow's shift is the whole row's, `narrow_row`)."""
    vl, O = pb.vl, pb.O
    nt = T.ntiles(width, vl)
    tabs = activation_tables(pb)
    side = pb.mem.side_of(x)
    y = pb.mem.tensor(f"{name}.y", [(i, t) for i in range(rows) for t in range(nt)], 4, side)

    def consts() -> tuple:
        """A group's constants, and its row exponent and log2 shift registers."""
        regs = pb.regs
        rr = regs.triple()  # first: ten singles leave no whole triple free
        rc, rumax, r15, r30 = (regs.single() for _ in range(4))
        pb.reg_const(rc, np.full(vl, LOG2E_Q), "log2(e) Q24")
        pb.reg_const(rumax, np.full(vl, U_MAX), "U_MAX")
        pb.reg_const(r15, np.full(vl, Q15), "2**15")
        pb.reg_const(r30, np.full(vl, 1 << 30), "2**30")
        return rr, rc, rumax, r15, r30, regs.single(), regs.single()

    # the lane tiles' chains dealt over the VXM groups as they come (`VxmPool`); the main
    # group keeps the row's exponent and does the narrow
    pool = pb.pool(consts)
    main = pool.main
    for i in range(rows):
        nm = f"{name} row {i}"

        def chain_regs(i=i, nm=nm) -> tuple:
            """A group's chain registers (freed for the narrow), the row's shift loaded."""
            re_, rk = pool.of(pb.O.vxm_slice)[5:]
            regs = tuple(pb.regs.single() for _ in range(4))
            _load_e(pb, nm, e_x[(i, 0)], re_)
            log2_shift_regs(pb, nm, rk, re_)
            return regs

        with pool.chain(main):
            pool.each(("row", i), chain_regs)
        for t in range(nt):
            tn = f"{nm} tile {t}"
            with pool.chain() as (_g, (rr, rc, rumax, r15, r30, re_, rk)):
                ru, rz, rh, rl = pool.each(("row", i), chain_regs)
                b = Bundle(f"{tn} |x|", "act")
                v = O.vxm(b, "i16", ("r", ru), "ABS", "s", otype="i32")
                planes_in(O, b, x[(i, t)], v, "a")
                pb.emit(b)
                log2_q16_regs(pb, tn, ru, rc, rk, rumax)
                exp2_neg_regs(pb, tn, tabs, ru, rh, rl, rz, r15)
                pb.vx_bundle(f"{tn} den", "i32", ("r", rh), "ADD", ("r", rh), ("r", r15))
                reciprocal_regs(pb, tabs["recip"], rh, rl, rz, rr)
                pb.vx_bundle(f"{tn} sigmoid |x|", "i32", ("r", ru), "REQUANT", ("r", r30),
                             ("r", rr), "MIN", ("r", r15))
                pb.vx_bundle(f"{tn} 1 - sigmoid", "i32", ("r", rl), "SUB", ("r", r15),
                             ("r", ru))
                b = Bundle(f"{tn} x < 0", "act")
                v = O.vxm(b, "i16", ("r", rz), "LT", "s", 0, otype="i32")
                planes_in(O, b, x[(i, t)], v, "a")
                pb.emit(b)
                pb.vx_bundle(f"{tn} sigmoid", "i32", ("r", rh), "SEL", ("r", rz), ("r", rl),
                             "PASS", ("r", ru))
                b = Bundle(f"{tn} x sigmoid", "act")
                v = O.vxm(b, "i16", "s", "MUL", "s", ("r", rh), otype="i32")
                planes_in(O, b, x[(i, t)], v, "a")
                planes_out(O, b, v, "d", y[(i, t)])
                pb.emit(b)
        pool.release_each(("row", i), lambda regs: pb.regs.release(*regs))
        re_ = pool.of(main)[5]
        pb.vx_bundle(f"{nm} e - 15", "i32", ("r", re_), "SUB", ("r", re_), 15)
        narrow_row(pb, f"{nm} silu", [y[(i, t)] for t in range(nt)],
                   [dst[(i, t)] for t in range(nt)], re_, 8 * dst.planes, chips=chips)
        _store_e(pb, nm, re_, e_dst, i, nt)

    def release(c: tuple) -> None:
        pb.regs.release(*c[1:])
        pb.regs.release_triple(c[0])

    pool.release(release)
    pb.release(y)


def swiglu_rows(pb: ProgramBuilder, name: str, gate, e_gate, up, e_up, dst, e_dst,
                rows: int, width: int, chips: int = 1) -> None:
    """``dst, e_dst = golden.activation.swiglu_int(gate, e_gate, up, e_up, bits)``:
    `silu_rows` of the gate, times ``up`` (VXM, int32), narrowed per row to ``dst``'s
    width; int16 inputs, tensors and per-row exponents keyed ``(row, tile)``; ``chips``:
    rows split over that many chips (both narrows take the whole row's shift)."""
    vl, O, regs = pb.vl, pb.O, pb.regs
    nt = T.ntiles(width, vl)
    keys = [(i, t) for i in range(rows) for t in range(nt)]
    side = pb.mem.side_of(up)
    other = "E" if side == "W" else "W"
    s = pb.mem.tensor(f"{name}.silu", keys, 2, other)
    es = pb.mem.tensor(f"{name}.e_silu", keys, 2)
    silu_rows(pb, f"{name}.silu", gate, e_gate, s, es, rows, width, chips)
    p = pb.mem.tensor(f"{name}.p", keys, 4, side)
    re_ = regs.single()
    for i in range(rows):
        nm = f"{name} row {i}"
        for t in range(nt):
            b = Bundle(f"{nm} silu x up tile {t}", "act")
            v = O.vxm(b, "i16", "s", "MUL", "s", "s", otype="i32")
            planes_in(O, b, s[(i, t)], v, "a")
            planes_in(O, b, up[(i, t)], v, "b")
            planes_out(O, b, v, "d", p[(i, t)])
            pb.emit(b)
        _load_e(pb, f"{nm} silu", es[(i, 0)], re_)
        b = Bundle(f"{nm} e_silu + e_up", "act")
        v = O.vxm(b, "i16", ("r", re_), "ADD", "s", ("r", re_), otype="i32")
        planes_in(O, b, e_up[(i, 0)], v, "a")
        pb.emit(b)
        narrow_row(pb, f"{nm} product", [p[(i, t)] for t in range(nt)],
                   [dst[(i, t)] for t in range(nt)], re_, 8 * dst.planes, chips=chips)
        _store_e(pb, nm, re_, e_dst, i, nt)
    regs.release(re_)
    pb.release(s, es, p)
