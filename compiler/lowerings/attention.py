"""Grouped-query attention of one query row over a KV cache in SRAM, in the LLM's integer
numerics: `golden.attention.attention_int` for a decode step, on the machine.

The cache (``C`` positions, ``C <= VL``; the KV row of ``n_kv * d`` lanes over one or more
lane tiles, ``d | VL``, so every head lies in one tile) holds each key and value as its two
signed int8 digits (`golden.planes.signed_digits`: rows ``kh, kl, vh, vl``) and, per KV
head, the key and value exponents as vectors over the key lanes (``ek``, ``ev``).  The
query's position ``p`` arrives as a u8 vector; keys ``j > p`` are masked.  Per query head
``h`` (KV head ``h // g``):

1. ``q_h`` masked to its lanes, moved onto its KV head's lanes (SXM ``SHV``), split into
   its two int8 digits (VXM);
2. the scores ``round(q.k / 2**sq)`` from four MVMs (K digits installed as weights once for
   every head: ``kh`` then ``kl``), combined exactly on the VXM
   (`golden.planes.digit_matmul`); lanes = keys;
3. softmax over the visible keys: key exponents aligned to their max (``RMAX``), the row
   max subtracted, ``log2(e)`` multiply and the two-table ``2**-u`` (as SiLU's), masked,
   ``RSUM``, the integer reciprocal; the exps aligned to the values' max exponent in Q14
   and split into digits;
4. ``E V`` from four MVMs (``vh``, ``vl`` installed transposed), combined, rounded by
   ``2**8``; moved back onto the query head's lanes, narrowed to 24 bits, times the
   reciprocal, rounded by ``2**31``;
5. the heads aligned to the largest head exponent and narrowed to one int16 row.
"""

from __future__ import annotations

import math

import numpy as np

from golden.activation import LOG2E_Q, U_MAX
from golden.attention import V_SHIFT

from .. import tiling as T
from ..alloc import ZEROS, FirstOf, Tensor
from ..builder import ProgramBuilder, copy_avoiding
from ..errors import CompileError
from ..ir import Bundle
from ..routes import planes_in, planes_out
from .activation import (
    Q15,
    activation_tables,
    exp2_neg_regs,
    log2_q16_regs,
    log2_shift_regs,
)
from .allreduce import allreduce_reg
from .norm import _load_e, _store_e, narrow_row
from .recip import reciprocal_regs


def attention_decode_row(pb: ProgramBuilder, name: str, q, e_q, cache: dict, pos_loc,
                         ctx, e_ctx, n_heads: int, n_kv: int, d: int, C: int,
                         mxm: str | None = None, chips: int = 1) -> None:
    """``ctx, e_ctx = attention_int(q, e_q, cache..., pos=[p], bits=16, in_bits=15)`` for
    one query row (keyed ``(0, tile)``, per-head lane exponents ``e_q``); ``cache``:
    tensors ``kh, kl, vh, vl`` keyed ``(j, KV tile)`` and ``ek, ev`` keyed ``(kv head,)``;
    ``pos_loc``: (slice, addr) of the u8 position vector.  The K and V digits of each KV
    tile are installed once and serve every query head whose KV head lies in it; ``mxm``:
    the MXM of every install (default: KV tile ``t`` on the config's ``t``-th MXM, in
    turn, so the tiles' installs and products run side by side).  ``chips > 1``: this
    chip's heads are one part of the row's, split by KV head over the C2C ring's chips:
    the largest head exponent and the row's narrowing shift are the whole row's
    (`allreduce_reg`)."""
    vl, O, regs = pb.vl, pb.O, pb.regs
    g = n_heads // n_kv
    if n_heads % n_kv or vl % d or C > vl:
        raise CompileError(f"{name}: needs d | VL, C <= VL and n_kv | n_heads "
                           f"(got {n_kv} x {d}, VL {vl}, C {C}, {n_heads} heads)", "shape",
                           True)
    half = math.log2(d) / 2
    if half != int(half):
        raise CompileError(f"{name}: head size {d} is not a power of 4", "shape", True)
    sq = max(0, math.ceil(math.log2(d)) + 28 - 30)
    sh = int(half)
    # each KV tile's K and V digits on their own MXM (in turn over every MXM)
    mxms = [mxm] if mxm else [sl.name for sl in pb.cfg.slices_of("MXM")]
    tabs = activation_tables(pb)
    qside = pb.mem.side_of(q)
    oside = "E" if qside == "W" else "W"
    lanes = np.arange(vl)
    qmask = pb.const(f"{name}.qmask", {(h,): T.bytes_of(
        ((lanes >= h * d % vl) & (lanes < h * d % vl + d)).astype(np.int64), 2)
        for h in range(n_heads)}, 2, oside)
    keys = [(h, p) for h in range(n_heads) for p in (0, 1)]
    qd = pb.mem.tensor(f"{name}.qd", keys, 1)
    pd = pb.mem.tensor(f"{name}.pd", keys, 1)
    acc = pb.mem.tensor(f"{name}.acc", [(h,) for h in range(n_heads)], 4)
    av = pb.mem.tensor(f"{name}.av", [(h,) for h in range(n_heads)], 4)
    yv = pb.mem.tensor(f"{name}.y1", [(h,) for h in range(n_heads)], 4, qside)
    sv = pb.mem.tensor(f"{name}.shift", [(h,) for h in range(n_heads)], 2)
    eav = pb.mem.tensor(f"{name}.ea", [(h,) for h in range(n_heads)], 2)
    w24 = pb.mem.tensor(f"{name}.w", [(h,) for h in range(n_heads)], 4, oside)
    ch = pb.mem.tensor(f"{name}.ch", [(h,) for h in range(n_heads)], 4)
    ech = pb.mem.tensor(f"{name}.ech", [(h,) for h in range(n_heads)], 2)
    sxm = "SXM_W" if qside == "W" else "SXM_E"

    def consts() -> tuple:
        """A VXM group's constants: the reciprocal's triple, log2(e), U_MAX, 2**15, the
        int32 minimum and the visible-key mask."""
        regs = pb.regs
        rr = regs.triple()
        rc, rumax, r15, rmin, rvis = (regs.single() for _ in range(5))
        pb.reg_const(rc, np.full(vl, LOG2E_Q), "log2(e) Q24")
        pb.reg_const(rumax, np.full(vl, U_MAX), "U_MAX")
        pb.reg_const(r15, np.full(vl, Q15), "2**15")
        pb.reg_const(rmin, np.full(vl, -(2**31)), "int32 minimum")
        b = Bundle(f"{name} visible = lane <= p", name)
        v = O.vxm(b, "u8", ("r", rvis), "LE", "lane", "s", otype="i32")
        b.connect(O.read(b, *pos_loc), "out", v, "b")
        pb.emit(b)
        return rr, rc, rumax, r15, rmin, rvis

    # the heads' register chains are dealt over the VXM groups (each its own constants)
    pool = pb.pool(consts)
    rr, rc, rumax, r15, rmin, rvis = pool.of(pool.main)
    # per KV head (not per query head: off the heads' chains) the largest visible key
    # and value exponents, kept in SRAM
    emax = {nm: pb.mem.tensor(f"{name}.{nm}max", [(hk,) for hk in range(n_kv)], 2)
            for nm in ("ek", "ev")}
    for nm, hk in ((nm, hk) for nm in ("ek", "ev") for hk in range(n_kv)):
        bd = Bundle(f"{name} kv head {hk} {nm} max", name)
        v = O.vxm(bd, "i16", "s", "SEL", ("r", rvis), "s", "PASS", ("r", rmin), sat=True)
        planes_in(O, bd, cache[nm][(hk,)], v, "b")
        red = O.reduce(bd, sxm, "RMAX", "i16")
        bd.connect(v, "d", red, "in")
        planes_out(O, bd, red, "out", emax[nm][(hk,)])
        pb.emit(bd)

    def kv_of(h: int) -> tuple[int, int]:
        """(tile, first lane) of query head h's KV head in the KV row."""
        return (h // g) * d // vl, (h // g) * d % vl

    def digits(src_reg: int, out_tensor, key, rlo: int) -> None:
        """``src = 256 hi + lo``: lo (int8 wrap) and hi into ``out_tensor[key + (p,)]``."""
        pb.vx_bundle(f"{name} {key} lo", "i32", ("r", rlo), "PASS", ("r", src_reg), otype="i8")
        bd = Bundle(f"{name} {key} lo out", name)
        v = O.vxm(bd, "i32", "s", "PASS", ("r", rlo), otype="i8")
        planes_out(O, bd, v, "d", out_tensor[key + (0,)])
        pb.emit(bd)
        bd = Bundle(f"{name} {key} hi out", name)
        v = O.vxm(bd, "i32", "s", "SUB", ("r", src_reg), ("r", rlo), "SRA", 8, otype="i8")
        planes_out(O, bd, v, "d", out_tensor[key + (1,)])
        pb.emit(bd)

    # 1. q_h on its KV head's lanes, as two int8 digits
    rx, rlo = regs.single(), regs.single()
    for h in range(n_heads):
        tq, oq, ok = h * d // vl, h * d % vl, kv_of(h)[1]
        bd = Bundle(f"{name} q head {h}", name)
        m = O.vxm(bd, "i16", "s" if ok != oq else ("r", rx), "MUL", "s", "s", otype="i32")
        planes_in(O, bd, q[(0, tq)], m, "a")
        planes_in(O, bd, qmask[(h,)], m, "b")
        if ok != oq:
            mv = O.move(bd, sxm, "SHV", "i32", ok - oq)
            bd.connect(m, "d", mv, "in")
            w = O.vxm(bd, "i32", ("r", rx), "PASS", "s")
            bd.connect(mv, "out", w, "a")
        pb.emit(bd)
        digits(rx, qd, (h,), rlo)
    regs.release(rlo)

    # 2. scores: K digits installed as weights (per KV tile), four MVMs per head, combined
    def products(wname, rows_of, x_of, transposed, combine) -> None:
        tiles = sorted({kv_of(h)[0] for h in range(n_heads)})
        for pw, wt, tk in ((pw, wt, tk) for pw, wt in enumerate("hl") for tk in tiles):
            mxm = mxms[tk % len(mxms)]
            ins = pb.install(mxm, (name, wname, wt, tk),
                             [(j, rows_of(wt, j, tk)) for j in range(C)],
                             transposed=transposed)
            for h in (h for h in range(n_heads) if kv_of(h)[0] == tk):
                for px in (1, 0):
                    bd = Bundle(f"{name} {wname}{wt} head {h} digit {px}", name)
                    rd = O.read(bd, *x_of(h, px))
                    mvm = O.mvm(bd, mxm, pb.slots[mxm].scratch(), False, True, ins)
                    bd.connect(rd, "out", mvm, "x")
                    combine(bd, mvm, h, 1 - pw, px)
                    pb.emit(bd)

    def digit_combine(shift: int, dst):
        """The four digit partials of head h into ``dst[(h,)]``: ``hh 2**(16-s)``, ``(hl +
        lh) 2**(8-s)``, ``round(ll / 2**s)`` (`golden.planes.digit_matmul`), accumulated
        in SRAM in the order the MVMs come (hh first, ll last)."""
        def combine(bd, mvm, h, wh, xh):  # wh, xh: 1 for the high digit
            first, last = wh == 1 and xh == 1, wh == 0 and xh == 0
            if last:
                v = O.vxm(bd, "i32", "s", "SRAR", "s", shift, "ADD", "s")
            else:
                k = 8 * (wh + xh) - shift
                v = (O.vxm(bd, "i32", "s", "SHL", "s", k) if first else
                     O.vxm(bd, "i32", "s", "SHL", "s", k, "ADD", "s"))
            bd.connect(mvm, "out", v, "a")
            if not first:
                planes_in(O, bd, dst[(h,)], v, "c")
            planes_out(O, bd, v, "d", dst[(h,)])
        return combine

    products("K", lambda wt, j, t: cache[f"k{wt}"].loc(j, t), lambda h, px: qd.loc(h, px), False,
             digit_combine(sq, acc))
    regs.release(rx)
    # 3. softmax over the visible keys, stage by stage over the heads: what crosses to
    #    the SXM (the row max, e_q's DIST, the row sum) is issued for every head in turn
    #    with the results in SRAM, so the heads' round trips overlap; the register chains
    #    between them (log2, exp, reciprocal) run head by head
    heads = [(h,) for h in range(n_heads)]
    # (the two read together by one instruction on opposite sides)
    zs = pb.mem.tensor(f"{name}.z", heads, 4, oside)  # scores aligned to the keys' max exponent
    mx = pb.mem.tensor(f"{name}.max", heads, 4, qside)  # their visible max, on every lane
    dq = pb.mem.tensor(f"{name}.eq", heads, 2)  # the head's query exponent, on every lane
    ex = pb.mem.tensor(f"{name}.exp", heads, 4)  # 2**-u, masked
    sm = pb.mem.tensor(f"{name}.sum", heads, 4)  # their sum, on every lane
    exps_done = []  # rsh is given back once the exps are made

    def scratch() -> tuple:
        """A group's scratch registers rsh, rz, rm, rh, rl, taken the first time a head's
        chain goes to it and kept to the end of step 3."""
        regs = tuple(pb.regs.single() for _ in range(5))
        if exps_done:
            pb.regs.release(regs[0])
        return regs

    for h in range(n_heads):
        hk, nm = h // g, f"{name} head {h}"
        with pool.chain():
            rsh, re_ = pool.each("scratch", scratch)[:2]  # re_: the keys' max exponent
            _load_e(pb, f"{nm} emax", emax["ek"][(hk,)], re_)
            bd = Bundle(f"{nm} emax - ek", name)
            v = O.vxm(bd, "i16", ("r", rsh), "SUB", ("r", re_), "s", otype="i32")
            planes_in(O, bd, cache["ek"][(hk,)], v, "b")
            pb.emit(bd)
            bd = Bundle(f"{nm} aligned scores", name)
            v = O.vxm(bd, "i32", "s", "SRAR", "s", ("r", rsh))
            planes_in(O, bd, acc[(h,)], v, "a")
            planes_out(O, bd, v, "d", zs[(h,)])
            pb.emit(bd)
    for h in range(n_heads):
        bd = Bundle(f"{name} head {h} row max", name)
        v = O.vxm(bd, "i32", "s", "SEL", ("r", rvis), "s", "PASS", ("r", rmin))
        planes_in(O, bd, zs[(h,)], v, "b")
        red = O.reduce(bd, sxm, "RMAX", "i32")
        bd.connect(v, "d", red, "in")
        planes_out(O, bd, red, "out", mx[(h,)])
        pb.emit(bd)
    for h in range(n_heads):
        tq, oq = h * d // vl, h * d % vl
        bd = Bundle(f"{name} head {h} e_q on every lane", name)
        dist = O.move(bd, sxm, "DIST", "i16", oq)
        planes_in(O, bd, e_q[(0, tq)], dist, "in")
        planes_out(O, bd, dist, "out", dq[(h,)])
        pb.emit(bd)
    for h in range(n_heads):
        hk, nm = h // g, f"{name} head {h}"
        with pool.chain() as (_grp, (_, rc_, rumax_, r15_, _, rvis_)):
            rsh, rz, rm, rh, rl = pool.each("scratch", scratch)
            re_ = rz
            bd = Bundle(f"{nm} diff", name)
            v = O.vxm(bd, "i32", ("r", rm), "SUB", "s", "s")
            planes_in(O, bd, mx[(h,)], v, "a")
            planes_in(O, bd, zs[(h,)], v, "b")
            pb.emit(bd)
            # e_row = e_q(head) + emax + sq - sh; k = min(max(8 - e_row, 0), 62)
            _load_e(pb, f"{nm} emax", emax["ek"][(hk,)], re_)
            bd = Bundle(f"{nm} e_row", name)
            v = O.vxm(bd, "i16", ("r", rsh), "ADD", "s", ("r", re_), "ADD", sq - sh,
                      otype="i32")
            planes_in(O, bd, dq[(h,)], v, "a")
            pb.emit(bd)
            log2_shift_regs(pb, nm, rsh, rsh)
            log2_q16_regs(pb, nm, rm, rc_, rsh, rumax_)
            exp2_neg_regs(pb, nm, tabs, rm, rh, rl, rz, r15_)
            bd = Bundle(f"{nm} exp masked", name)
            v = O.vxm(bd, "i32", "s", "SEL", ("r", rvis_), ("r", rh), "PASS", ("r", ZEROS[0]))
            planes_out(O, bd, v, "d", ex[(h,)])
            pb.emit(bd)
    for grp, regs_ in pool.made_for("scratch").items():
        with pb.use_vxm(grp):
            pb.regs.release(regs_[0])
    exps_done.append(True)
    for h in range(n_heads):
        bd = Bundle(f"{name} head {h} sum", name)
        red = O.reduce(bd, sxm, "RSUM", "i32")
        planes_in(O, bd, ex[(h,)], red, "in")
        planes_out(O, bd, red, "out", sm[(h,)])
        pb.emit(bd)
    for h in range(n_heads):
        hk, nm = h // g, f"{name} head {h}"
        with pool.chain() as (_grp, (rr_, *_)):
            _, rz, rm, rh, rl = pool.each("scratch", scratch)
            (rlo,) = pool.each("rlo", lambda: (pb.regs.single(),))
            # the reciprocal of the row sum (kept in SRAM for step 4)
            bd = Bundle(f"{nm} sum in", name)
            v = O.vxm(bd, "i32", ("r", rl), "PASS", "s")
            planes_in(O, bd, sm[(h,)], v, "a")
            pb.emit(bd)
            reciprocal_regs(pb, tabs["recip"], rl, rz, rm, rr_)
            for reg, t_ in ((rr_, yv), (rr_ + 1, sv)):
                bd = Bundle(f"{nm} keep {t_.name}", name)
                v = O.vxm(bd, "i32", "s", "PASS", ("r", reg),
                          otype="i32" if t_ is yv else "i16")
                planes_out(O, bd, v, "d", t_[(h,)])
                pb.emit(bd)
            # exps aligned to the values' max exponent, Q14, as digits
            _load_e(pb, f"{nm} vmax", emax["ev"][(hk,)], rz)
            bd = Bundle(f"{nm} ea", name)
            v = O.vxm(bd, "i32", "s", "ADD", ("r", rz), 1 + V_SHIFT, otype="i16")
            planes_out(O, bd, v, "d", eav[(h,)])
            pb.emit(bd)
            bd = Bundle(f"{nm} vmax - ev + 1", name)
            v = O.vxm(bd, "i16", ("r", rm), "SUB", ("r", rz), "s", "ADD", 1, otype="i32")
            planes_in(O, bd, cache["ev"][(hk,)], v, "b")
            pb.emit(bd)
            bd = Bundle(f"{nm} pe", name)
            v = O.vxm(bd, "i32", ("r", rh), "SRAR", "s", ("r", rm))
            planes_in(O, bd, ex[(h,)], v, "a")
            pb.emit(bd)
            digits(rh, pd, (h,), rlo)
    rlos = pool.made_for("rlo")  # (given back with the scratch: rh, rl, rz, rm, rlo)
    pool.release_each("scratch", lambda r: pb.regs.release(r[3], r[4], r[1], r[2],
                                                           *rlos.get(pb.O.vxm_slice, ())))
    pb.release(zs, mx, dq, ex, sm)

    # 4. E V: V digits installed transposed, four MVMs per head, combined, rounded by 2**8
    products("V", lambda wt, j, t: cache[f"v{wt}"].loc(j, t), lambda h, px: pd.loc(h, px), True,
             digit_combine(V_SHIFT, av))
    # back on the query head's lanes, narrowed to 24 bits, normalised
    def step4() -> tuple:
        """A group's rlim (2**23 - 1), rmk, rea."""
        regs = tuple(pb.regs.single() for _ in range(3))
        pb.reg_const(regs[0], np.full(vl, 2**23 - 1), "2**23 - 1")
        return regs

    with pool.chain(pool.main):  # the main group's rea carries the row's exponent on
        rea = pool.each("step4", step4)[2]
    for h in range(n_heads):
        tq, oq, ok = h * d // vl, h * d % vl, kv_of(h)[1]
        nm = f"{name} head {h}"
        with pool.chain():
            rlim, rmk, rea_h = pool.each("step4", step4)
            bd = Bundle(f"{nm} mask", name)
            v = O.vxm(bd, "i16", ("r", rmk), "PASS", "s", otype="i32")
            planes_in(O, bd, qmask[(h,)], v, "a")
            pb.emit(bd)
            bd = Bundle(f"{nm} context on its lanes", name)
            if ok != oq:
                mv = O.move(bd, "SXM_E" if sxm == "SXM_W" else "SXM_W", "SHV", "i32",
                            oq - ok)
                planes_in(O, bd, av[(h,)], mv, "in")
                v = O.vxm(bd, "i32", "s", "MUL", "s", ("r", rmk))
                bd.connect(mv, "out", v, "a")
            else:
                v = O.vxm(bd, "i32", "s", "MUL", "s", ("r", rmk))
                planes_in(O, bd, av[(h,)], v, "a")
            planes_out(O, bd, v, "d", ch[(h,)])
            pb.emit(bd)
            _load_e(pb, nm, eav[(h,)], rea_h)
            narrow_row(pb, f"{nm} ctx24", [ch[(h,)]], [w24[(h,)]], rea_h, 24, rlim)
            bd = Bundle(f"{nm} normalised", name)
            v = O.vxm(bd, "i32", "s", "MUL", "s", "s", "SRAR", 31)
            planes_in(O, bd, w24[(h,)], v, "a")
            planes_in(O, bd, yv[(h,)], v, "b")
            planes_out(O, bd, v, "d", ch[(h,)])
            pb.emit(bd)
            bd = Bundle(f"{nm} exponent", name)
            v = O.vxm(bd, "i16", "s", "ADD", "s", ("r", rea_h), otype="i16")
            planes_in(O, bd, sv[(h,)], v, "a")
            planes_out(O, bd, v, "d", ech[(h,)])
            pb.emit(bd)
    pool.release_each("step4", lambda r: pb.regs.release(
        *r[:2], *(() if pb.O.vxm_slice == pool.main else r[2:])))
    # 5. heads -> one row at the largest head exponent, narrowed to int16
    rtop, rs, rrow = rea, regs.single(), regs.single()
    _load_e(pb, f"{name} top", ech[(0,)], rtop)
    for h in range(1, n_heads):
        bd = Bundle(f"{name} top head {h}", name)
        v = O.vxm(bd, "i16", ("r", rtop), "MAX", "s", ("r", rtop), otype="i32")
        planes_in(O, bd, ech[(h,)], v, "a")
        pb.emit(bd)
    allreduce_reg(pb, f"{name} top", rtop, chips, "i16")
    nt = T.ntiles(n_heads * d, vl)
    row = pb.mem.tensor(f"{name}.row", [(t,) for t in range(nt)], 4)
    for t in range(nt):
        heads = [h for h in range(n_heads) if h * d // vl == t]
        for n, h in enumerate(heads):
            bd = Bundle(f"{name} tile {t} head {h} shift", name)
            v = O.vxm(bd, "i16", ("r", rs), "SUB", ("r", rtop), "s", otype="i32")
            planes_in(O, bd, ech[(h,)], v, "b")
            pb.emit(bd)
            bd = Bundle(f"{name} tile {t} head {h} aligned", name)
            v = (O.vxm(bd, "i32", ("r", rrow), "SRAR", "s", ("r", rs)) if n == 0 else
                 O.vxm(bd, "i32", ("r", rrow), "SRAR", "s", ("r", rs), "ADD", ("r", rrow)))
            planes_in(O, bd, ch[(h,)], v, "a")
            pb.emit(bd)
        bd = Bundle(f"{name} tile {t} row", name)
        v = O.vxm(bd, "i32", "s", "PASS", ("r", rrow))
        planes_out(O, bd, v, "d", row[(t,)])
        pb.emit(bd)
    narrow_row(pb, f"{name} ctx", [row[(t,)] for t in range(nt)],
               [ctx[(0, t)] for t in range(nt)], rtop, 16, chips=chips)
    _store_e(pb, name, rtop, e_ctx, 0, nt)
    regs.release(rtop, rs, rrow, rc, rumax, r15, rmin, rvis)
    regs.release_triple(rr)
    def release(c: tuple) -> None:  # the other groups' constants
        pb.regs.release(*c[1:])
        pb.regs.release_triple(c[0])

    pool.release(release, skip=(pool.main,))
    pb.release(qd, pd, acc, av, yv, sv, eav, w24, ch, ech, row, *emax.values())


def kv_cache_int(pb: ProgramBuilder, tag: str, C: int, n_kv: int, d: int
                 ) -> tuple[dict, dict]:
    """One layer's KV cache in SRAM, zero at load, rewritten by the program: key/value
    digit rows ``kh, kl, vh, vl`` (``C`` per KV lane tile, one slice and bank each, keyed
    ``(j, tile)``) and per KV head the key and value exponents over the keys (``ek``,
    ``ev``: a vector over keys and a scratch vector after it).  ``(cache, locs)``: the
    tensors `attention_decode_row` reads, and where `append_kv` writes."""
    vl = pb.vl
    kvt = T.ntiles(n_kv * d, vl)
    cache, locs = {}, {}
    for nm in ("kh", "kl", "vh", "vl"):
        view = cache[nm] = Tensor(f"{tag}cache.{nm}", 1, "")
        for t in range(kvt):
            rows, locs[(nm, t)] = pb.kv_rows(f"{tag}cache.{nm}[{t}]", C, final=True)
            view.locs.update({(j, t): rows[(j,)] for j in range(C)})
    for nm in ("ek", "ev"):  # per KV head: [vector over keys, scratch] per plane
        t = pb.const(f"{tag}cache.{nm}", {(h, k): np.zeros((2, vl), np.uint8)
                                         for h in range(n_kv) for k in (0, 1)}, 2)
        pb.volatile.update(loc for locs_ in t.locs.values() for loc in locs_)
        cache[nm] = FirstOf(t)  # the vector over keys (the scratch after it)
        locs[nm] = t
    return cache, locs


def append_kv(pb: ProgramBuilder, name: str, row, e, nm: str, locs: dict, C: int,
              n_kv: int, d: int) -> None:
    """``nm`` (k or v, int16 keyed ``(0, tile)``, per-head lane exponents ``e``): its two
    int8 digits SCATTERed to ``cache + p`` (the index: the position vector), each KV head's
    exponent broadcast (SXM ``DIST``) and SCATTERed into lane ``p`` of its
    exponent-over-keys vector (index 0 in lane ``p``, 1 -- the scratch vector --
    elsewhere)."""
    O, regs, vl = pb.O, pb.regs, pb.vl
    pos = pb.position_vectors()
    rx, rlo = regs.single(), regs.single()
    for t in range(T.ntiles(n_kv * d, vl)):
        b = Bundle(f"{name} row tile {t}", "append")
        v = O.vxm(b, "i16", ("r", rx), "PASS", "s", otype="i32")
        planes_in(O, b, row[(0, t)], v, "a")
        pb.emit(b)
        pb.vx_bundle(f"{name} lo tile {t}", "i32", ("r", rlo), "PASS", ("r", rx), otype="i8")
        for dig, sub in (("l", False), ("h", True)):
            s, base = locs[(nm + dig, t)]
            b = Bundle(f"{name}{dig} tile {t}", "append")
            if sub:
                v = O.vxm(b, "i32", "s", "SUB", ("r", rx), ("r", rlo), "SRA", 8, otype="i8")
            else:
                v = O.vxm(b, "i32", "s", "PASS", ("r", rlo), otype="i8")
            sc = O.scatter(b, s, base, C)
            b.connect(v, "d", sc, "in")
            b.connect(O.read(b, *copy_avoiding(pos, s)), "out", sc, "idx")
            pb.emit(b)
    regs.release(rx, rlo)
    # exponents: idx = 0 in lane p, 1 elsewhere (the scratch vector after it)
    rid = regs.single()
    b = Bundle(f"{name} exponent index", "append")
    v = O.vxm(b, "u8", ("r", rid), "NE", "lane", "s", otype="i32")
    b.connect(O.read(b, *next(iter(pos.values()))), "out", v, "b")
    pb.emit(b)
    et = locs["e" + nm]
    for hk in range(n_kv):
        for plane in (0, 1):
            s, base = et[(hk, 0)][plane]
            b = Bundle(f"{name} exponent head {hk} plane {plane}", "append")
            dist = O.move(b, "SXM_W", "DIST", "i16", hk * d % vl)
            planes_in(O, b, e[(0, hk * d // vl)], dist, "in")
            sc = O.scatter(b, s, base, 2)
            w = b.wire(2)
            b.drive(w, 0, dist, "out")
            b.tap(w, plane, sc, "in")
            iv = O.vxm(b, "i32", "s", "PASS", ("r", rid), otype="u8")
            b.connect(iv, "d", sc, "idx")
            pb.emit(b)
    regs.release(rid)
