"""The quantised block's attention over S query rows (the prefill): causal or not, heads
in groups, in the *transposed* layout (vector j = key j, lane i = query i).

1. **scores**: the rows of ``Q^(h)`` of every head of a group installed once as MXM
   weights (row ``g*S + i`` = query i of the group's g-th head), ``MVM k_j`` gives the
   scores of key j for every query of the group; ``REQUANT`` -> int16 (``MIN`` with the
   causal mask first).  Even and odd keys' scores live in two disjoint slice pairs.
2. **softmax** per group: the row max as VXM ``MAX`` chains over the keys; ``d =
   MAX(SUB(M, s_j), dmask):u8:sat``; two Gathers per key (the exp table E and E - 128),
   the second straight into the sums MXM (LWT column j) so that one MVM with a ones vector
   gives every row sum; the integer reciprocal (`reciprocal_regs`) once per group on all
   queries; ``p_j = REQUANT(MUL(e_j, 127), (y1, n - 30, 0))`` straight into the
   transposing MXM as row j of ``P^T``.  The head groups are independent chains: with
   several VXM groups each head group's requantisations and softmax run on the VXM group
   free soonest when its scores are lowered, with registers of its own there.
3. **context**: MVMs with unit vectors transpose ``P`` back to rows, which multiply
   ``V_h^T`` (LWT columns of the per-head ``v``, or LW rows of ``V^T`` made by unit-vector
   MVMs) accumulating every head of a lane tile in one slot per row; ``REQUANT`` -> int8.
   When the transposing and the context MXM differ, the transposed row goes from one to the
   other on the stream (no SRAM round trip).

This is `golden.block.attention_scores`, `softmax_int` and `attention_context` on the
machine, bit for bit.  The MXMs of each role come from the node's placement
(``mxm_scores``, ``mxm_sums``, ``mxm_trans``, ``mxm_ctx``).

Timing per group of G heads: S score MVMs per lane tile the group spans, S/2 MAX ops,
S exp bundles (two Gathers each), one row-sum MVM, the reciprocal's ~40-cycle chain, S
probability loads, then G*S transposes and G*S context MVMs per lane tile.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from arch.config import TspConfig, preset_hint
from arch.isa import MXM_ACC_SLOTS
from golden.block import PROB_ONE

from .. import tiling as T
from ..alloc import Tensor
from ..builder import ProgramBuilder, copy_avoiding
from ..deps import Install
from ..errors import CompileError
from ..ir import Bundle
from ..routes import planes_in, planes_out
from .recip import reciprocal_regs


def check_seq_len(cfg: TspConfig, seq_len: int) -> None:
    """Refuse a sequence length the block cannot be compiled for on ``cfg`` (CompileError
    naming the limit and a preset that meets it): cheap, so callers run it before
    building and calibrating a block whose attention alone may not fit in memory."""
    if seq_len > MXM_ACC_SLOTS:
        raise CompileError(f"seq_len={seq_len} exceeds the {MXM_ACC_SLOTS} MXM accumulator "
                           f"slots (one per token row): no config runs it; use seq_len <= "
                           f"{MXM_ACC_SLOTS}", "shape", True)
    vl = cfg.vector_length
    if seq_len > vl:
        need = -(-seq_len // cfg.lanes_per_superlane)
        raise CompileError(f"seq_len={seq_len} exceeds the vector length {vl} of config "
                           f"{cfg.name!r} (attention uses one lane per query); "
                           f"{preset_hint('superlanes', need)}", "shape", True)
    need_two_mem_slices(cfg, "the compiled block")


def need_two_mem_slices(cfg: TspConfig, what: str) -> None:
    """The block's int16 scores need two MEM slices per hemisphere (a value's byte planes
    reach the VXM together, one READ per slice)."""
    if cfg.mem_slices_per_hemisphere < 2:
        raise CompileError(f"{what} needs at least 2 MEM slices per hemisphere but config "
                           f"{cfg.name!r} has mem_slices_per_hemisphere="
                           f"{cfg.mem_slices_per_hemisphere}; "
                           f"{preset_hint('mem_slices_per_hemisphere', 2)}", "shape", True)


def side(mxm: str, pb: ProgramBuilder) -> str:
    return pb.cfg.slice(mxm).hemisphere


def other(sd: str) -> str:
    return "E" if sd == "W" else "W"


@dataclass(frozen=True)
class SoftmaxAttention:
    """What the attention node carries: shapes, integer parameters, tables, placement."""

    seq_len: int
    d_model: int
    n_heads: int
    causal: bool
    score_multiplier: int
    score_shift: int
    ctx_multiplier: int
    ctx_shift: int
    exp_table: np.ndarray
    recip_table: np.ndarray
    mxm_scores: str
    mxm_sums: str
    mxm_trans: str
    mxm_ctx: str
    group: int | None = None  # heads per group (None: as many as fit VL)
    max_chains: int = 2  # MAX chains of the row max

    @property
    def d_head(self) -> int:
        return self.d_model // self.n_heads


def prefill_tables(pb: ProgramBuilder, a: SoftmaxAttention, exp_minus_128: bool = True
                   ) -> dict:
    """Before anything else is allocated: the exp and (for the prefill's row sums by MVM)
    exp - 128 tables next to each other on the sums MXM's side, the reciprocal seed table
    on the other side (their slices noted in ``pb.table_slices``)."""
    vl = pb.vl
    sum_side = side(a.mxm_sums, pb)
    ex = pb.mem.slices(sum_side, 2)
    t_exp = pb.const("table.exp", dict(enumerate(T.table_vectors(a.exp_table, vl))), 1,
                     slices=[ex[0]])
    t_expm = None  # E - 128 feeds the MXM row sums of the prefill (a decode step: RSUM)
    if exp_minus_128:
        t_expm = pb.const("table.exp-128", dict(enumerate(
            T.table_vectors(a.exp_table.astype(np.int64) - 128, vl))), 1, slices=[ex[1]])
    rs = pb.mem.slices(other(sum_side), 1)
    t_recip = pb.const("table.recip", dict(enumerate(T.table_vectors(a.recip_table, vl))), 1,
                       slices=[rs[0]])
    pb.table_slices += [ex[0], rs[0]] + ([ex[1]] if exp_minus_128 else [])
    return {"exp": t_exp, "expm": t_expm, "recip": t_recip}


def score_slices(pb: ProgramBuilder) -> list[list[str]]:
    """Two disjoint slice pairs, chosen after the inputs are placed: the scores of even and
    of odd keys (the row max reads one of each per op; a key's exp mask lives in the other
    parity's pair)."""
    sc = [pb.mem.slices(None, 2)]
    sc.append(pb.mem.slices(None, 2, exclude=sc[0]))
    return sc


class PrefillAttention:
    """One lowering of the attention node (module docstring): ``run()`` appends its
    bundles.  ``q``: per-head tensor keyed ``(h, i, t)``; ``k``: rows ``(i, t)``; ``v``:
    per head like ``q``, or rows (then ``V^T`` is made by unit-vector MVMs); ``out``: the
    int8 context rows ``(i, t)``."""

    def __init__(self, pb: ProgramBuilder, a: SoftmaxAttention, tables: dict, q: Tensor,
                 k: Tensor, v: Tensor, out: Tensor, release=lambda *ts: None):
        self.pb, self.blk = pb, a
        self.S, self.dh = a.seq_len, a.d_head
        self.Dt = T.ntiles(a.d_model, pb.vl)
        self.plan = {"scores": a.mxm_scores, "sums": a.mxm_sums, "trans": a.mxm_trans,
                     "ctx": a.mxm_ctx}
        self.group, self.max_chains = a.group, a.max_chains
        self.t_exp, self.t_expm, self.t_recip = tables["exp"], tables["expm"], tables["recip"]
        self.sc_slices = tables.get("score_slices")
        self.sum_side = side(a.mxm_sums, pb)
        self.qh, self.k, self.ctx = q, k, out
        self.v_transpose = len(next(iter(v.locs))) == 2  # v as rows: V^T by MVMs
        self.v = self.vh = v
        self.release_inputs = release  # gives back q and k (v) when nothing else reads them
        self._units: dict[str, Tensor] = {}
        #: rows of the SXM transposers (P^T by TPUT/TGET when they hold S rows)
        self.tp_rows = pb.cfg.sxm_transpose_rows

    def run(self) -> None:
        self.attention()

    def side(self, mxm: str) -> str:
        return side(mxm, self.pb)

    def unit_loc(self, sd: str, c: int) -> tuple[str, int]:
        """Unit vector c (int8 1 in lane c) on side sd."""
        pb = self.pb
        key = f"units.{sd}"
        if key not in self._units:
            vl = pb.vl
            self._units[key] = pb.const(key, {i: np.eye(vl, dtype=np.uint8)[i]
                                                for i in range(vl)}, 1, sd)
        return self._units[key].loc(c)

    def transpose_v(self) -> None:
        """Rows of V^T (feature l of every key) by MVMs with unit vectors on the context
        MXM, which installs the v rows as weights; V_h^T is then loaded by LW rows."""
        pb = self.pb
        blk, S, vl, O = self.blk, self.S, pb.vl, pb.O
        mxc = self.plan["ctx"]
        width = [min(vl, blk.d_model - t * vl) for t in range(self.Dt)]
        self.vT = pb.mem.tensor("vT", [(t, l) for t in range(self.Dt) for l in range(width[t])],
                                  1, self.side(mxc))
        for t in range(self.Dt):
            if self.tp_rows >= S:  # by the transposer: v rows in, V^T rows (lanes) out
                sxm = f"SXM_{self.side(mxc)}"
                for j in range(S):
                    b = Bundle(f"V tile {t} row {j} -> transposer", "vtrans")
                    rd = O.read(b, *self.v.loc(j, t))
                    tp = O.tput(b, sxm, j)
                    b.connect(rd, "out", tp, "in")
                    pb.emit(b)
                for lane in range(width[t]):
                    b = Bundle(f"V^T tile {t} lane {lane}", "vtrans")
                    tg = O.tget(b, sxm, lane, S)
                    wr = O.write(b, *self.vT.loc(t, lane))
                    b.connect(tg, "out", wr, "in")
                    pb.emit(b)
                continue
            ins = pb.install(mxc, ("VR", t), [(j, self.v.loc(j, t)) for j in range(S)])
            for lane in range(width[t]):
                b = Bundle(f"V^T tile {t} lane {lane}", "vtrans")
                rd = O.read(b, *self.unit_loc(self.side(mxc), lane))
                mv = O.mvm(b, mxc, pb.slots[mxc].scratch(), False, True, ins,
                           purpose="transpose")
                b.connect(rd, "out", mv, "x")
                w_ = b.wire(4)
                b.drive(w_, 0, mv, "out")
                wr = O.write(b, *self.vT.loc(t, lane))
                b.tap(w_, 0, wr, "in")
                pb.emit(b)
        self.release_inputs(self.v)

    def attention(self) -> None:
        """Heads in groups of G = VL // S: lane g*S + i of a vector is query i of the g-th
        head of the group, so one MVM per key gives the scores of every head of the group
        and the softmax runs once per group."""
        pb = self.pb
        blk, S, H, vl, O = self.blk, self.S, self.blk.n_heads, pb.vl, pb.O
        p = self.plan
        G = max(1, min(H, vl // S, self.group or H))
        groups = [list(range(g, min(H, g + G))) for g in range(0, H, G)]
        self.groups = groups
        lanes = np.arange(vl)
        if blk.causal:  # query of lane c is c % S (lanes beyond the group: unmasked)
            qi = np.where(lanes < G * S, lanes % S, vl)
            mk = {j: T.bytes_of(np.where(qi < j, -32768, 32767), 4) for j in range(S)}
            self.mask = pb.const("mask.score", mk, 4)
            dm = {j: T.bytes_of(np.where(qi < j, 255, 0), 2) for j in range(S)}
            self.dmask = {}
            for par in (0, 1):
                t = pb.const(f"mask.exp.{'odd' if par else 'even'}",
                               {(j,): dm[j] for j in range(par, S, 2)}, 2,
                               slices=self.sc_slices[1 - par])
                self.dmask.update(t.locs)
        units = {c: T.pad(np.eye(vl, dtype=np.int64)[c], vl).astype(np.uint8)
                 for c in range(G * S)}
        self.units = (pb.const("units", units, 1, self.side(p["trans"]))
                      if self.tp_rows < S else None)  # (unit vectors: MVM transposes)
        ones = T.pad(np.ones(S, np.int64), vl).astype(np.uint8)
        self.ones = pb.const("ones", {(0,): ones}, 1, self.sum_side)
        chains = min(self.max_chains, 2)
        #: per VXM group: its registers (tsc, tctx, rn, ry0, rr, rms), set up the first time
        #: a head group's chain goes there
        res: dict[str, tuple] = {}

        def setup(g: str) -> tuple:
            if g not in res:
                with pb.use_vxm(g):
                    r = pb.regs
                    tsc = r.triple()
                    pb.reg_const(tsc, np.full(vl, blk.score_multiplier), "m_score")
                    pb.set_imm(tsc + 1, blk.score_shift, "sh_score")
                    tctx = r.triple()
                    pb.set_imm(tctx + 1, blk.ctx_shift, "sh_ctx")
                    rn, ry0 = r.single(), r.single()
                    rr = r.triple()
                    rms = [[r.single() for _ in range(chains)] for _ in range(2)]
                res[g] = (tsc, tctx, rn, ry0, rr, rms)
            return res[g]
        self._tctx_has = {}
        setup(O.vxm_slice)
        #: head group -> the VXM group its scores' requantisation and softmax run on: the
        #: groups are independent chains, so each goes to the VXM group free soonest
        vg: dict[int, str] = {}
        self.scores, self.exps, self.probs = {}, {}, {}
        self.score_tensors: list[Tensor] = []
        ctx_slots: dict[int, list[int]] = {}
        # -- scores of every group first: rows g*S + i of Q^(h) installed, MVM k_j
        for gi, hs in enumerate(groups):
            vg[gi] = g = O.vxm_slice if gi == 0 else pb.vxm_soonest()
            with pb.use_vxm(g):
                self.group_scores(gi, hs, setup(g)[0])
        self.release_inputs(self.qh, self.k)
        for g, (tsc, *_rest) in res.items():
            with pb.use_vxm(g):
                pb.regs.release_triple(tsc)
        if self.v_transpose:
            self.transpose_v()
        for gi, hs in enumerate(groups):
            with pb.use_vxm(vg[gi]):
                self.group_softmax(gi, hs, setup(vg[gi]), ctx_slots)
        if self.v_transpose:
            pb.release(self.vT)
        else:
            self.release_inputs(self.vh)
        for g, (_tsc, tctx, rn, ry0, rr, rms) in res.items():
            with pb.use_vxm(g):
                pb.regs.release_triple(tctx)
                pb.regs.release_triple(rr)
                pb.regs.release(rn, ry0, *rms[0], *rms[1])

        def per_head(tensors):
            out = {}
            for gi, hs in enumerate(groups):
                for hi, h in enumerate(hs):
                    src = tensors[gi]
                    out[h] = {j: (src[j] if isinstance(src, dict) else src.locs[(j,)],
                                  hi * S) for j in range(S)}
            return out
        pb.keep_as("scores_masked" if blk.causal else "scores", "attn",
                     per_head(self.scores), 2, *self.score_tensors)
        pb.keep_as("exp", "attn", per_head(self.exps), 1, *self.exps.values())
        if pb.keep:
            pb.keep_as("probs", "attn", per_head(self.probs), 1, *self.probs.values())

    def group_scores(self, gi: int, hs: list[int], tsc: int) -> None:
        """Head group gi's scores: its queries installed per lane tile, one MVM per key,
        requantised (and masked) to int16 on the VXM group being lowered onto (``tsc``: its
        score multiplier and shift)."""
        pb = self.pb
        blk, S, vl, O = self.blk, self.S, pb.vl, pb.O
        mxs = self.plan["scores"]
        tiles = sorted({t for h in hs for t in T.head_tiles(h, self.dh, vl)})
        ev = pb.mem.tensor(f"scores[{gi}].even", range(0, S, 2), 2,
                             slices=self.sc_slices[0])
        od = pb.mem.tensor(f"scores[{gi}].odd", range(1, S, 2), 2,
                             slices=self.sc_slices[1])
        sc_of = {j: (ev if j % 2 == 0 else od)[(j,)] for j in range(S)}
        self.score_tensors += [ev, od]
        self.scores[gi] = sc_of
        sslots = pb.slots[mxs].take(S) if len(tiles) > 1 else None
        for ti, t in enumerate(tiles):
            rows = []
            for hi, h in enumerate(hs):
                has = t in T.head_tiles(h, self.dh, vl)
                for i in range(S):
                    rows.append((hi * S + i, self.qh.loc(h, i, t) if has
                                 else pb.zero_loc(self.side(mxs))))
            ins = pb.install(mxs, ("Q", gi, t), rows)
            last = ti == len(tiles) - 1
            for j in range(S):
                b = Bundle(f"scores group {gi} key {j} tile {t}", "score")
                rd = O.read(b, *self.k.loc(j, t))
                slot = sslots[j] if sslots else pb.slots[mxs].scratch()
                mv = O.mvm(b, mxs, slot, ti > 0, last, ins)
                b.connect(rd, "out", mv, "x")
                if last:
                    if blk.causal:  # masked lanes: min(score, -32768) = -32768
                        v = O.vxm(b, "i32", "s", "REQUANT", "s", ("r", tsc), "MIN", "s",
                                  otype="i16")
                        planes_in(O, b, self.mask[(j,)], v, "c")
                    else:
                        v = O.vxm(b, "i32", "s", "REQUANT", "s", ("r", tsc), otype="i16")
                    b.connect(mv, "out", v, "a")
                    planes_out(O, b, v, "d", sc_of[j])
                pb.emit(b)
        if sslots:
            pb.slots[mxs].give(sslots)

    def group_softmax(self, gi: int, hs: list[int], regset: tuple, ctx_slots: dict) -> None:
        """Head group gi's softmax and context on the VXM group being lowered onto (its
        registers ``regset``, `attention`'s ``setup``): row max, exponentials and row sums,
        the reciprocal, the probabilities into the transposer (or the transposing MXM),
        the context rows."""
        pb = self.pb
        blk, S, vl, O = self.blk, self.S, pb.vl, pb.O
        p = self.plan
        mxt, mxc = p["trans"], p["ctx"]
        _tsc, tctx, rn, ry0, rr, rms = regset
        gE, gE2 = self.t_exp.loc(0)[0], self.t_expm.loc(0)[0]
        rm = rms[gi % 2]
        sc_of = self.scores[gi]
        sts = self.score_tensors[2 * gi:2 * gi + 2]
        # -- row max over the keys (MAX chains, two keys per op)
        self.row_max(rm, sc_of)
        # -- exponentials: d = min(M - s, 255) (255 where masked) -> E[d], E[d] - 128
        ins_e = Install(p["sums"], ("Esum", gi))
        e = pb.mem.tensor(f"exp[{gi}]", range(S), 1, exclude=[gE])
        self.exps[gi] = e
        for j in range(S):
            b = Bundle(f"exp group {gi} key {j}", "exp")
            if blk.causal:
                v = O.vxm(b, "i16", "s", "SUB", ("r", rm[0]), "s", "MAX", "s", otype="u8",
                          sat=True)
                planes_in(O, b, self.dmask[(j,)], v, "c")
            else:
                v = O.vxm(b, "i16", "s", "SUB", ("r", rm[0]), "s", otype="u8", sat=True)
            planes_in(O, b, sc_of[j], v, "b")
            g1 = O.gather(b, gE, self.t_exp.loc(0)[1])
            g2 = O.gather(b, gE2, self.t_expm.loc(0)[1])
            idx = b.wire(1)
            b.drive(idx, 0, v, "d")
            b.tap(idx, 0, g1, "idx")
            b.tap(idx, 0, g2, "idx")
            wr = O.write(b, *e.loc(j))
            b.connect(g1, "out", wr, "in")
            ld = O.load(b, p["sums"], j, ins_e, transposed=True)
            pb.note_load(p["sums"], j, None, True)
            b.connect(g2, "out", ld, "w")
            pb.emit(b)
        for st in sts:
            pb.release(st)
        pb.activate(p["sums"], ins_e)
        # -- row sums (one MVM with the ones vector) and the reciprocal
        rs = rm[0]
        b = Bundle(f"rowsum group {gi}", "sum")
        rd = O.read(b, *self.ones.loc(0))
        mv = O.mvm(b, p["sums"], pb.slots[p["sums"]].scratch(), False, True, ins_e,
                   purpose="row-sum")
        b.connect(rd, "out", mv, "x")
        v = O.vxm(b, "i32", ("r", rs), "ADD", "s", 128 * S)
        b.connect(mv, "out", v, "a")
        pb.emit(b)
        self.reciprocal(rs, rn, ry0, rr)
        if self.tp_rows >= S:  # the SXM transposer: no transposing MVMs
            self.probs_to_transposer(gi, hs, e, rr, ctx_slots, tctx)
            return
        # -- probabilities p_j -> row j of P^T in the transposing MXM (+ SRAM copy)
        ins_t = Install(mxt, ("PT", gi))

        def into_mxm(b, j, w_, ins_t=ins_t):
            ld = O.load(b, mxt, j, ins_t)
            pb.note_load(mxt, j, None, False)
            b.tap(w_, 0, ld, "w")
        self.emit_probs(gi, e, rr, self.side(mxt), into_mxm)
        zrow = pb.zero_loc(self.side(mxt))
        mode, have = pb.buf[mxt][1]
        pb.load_block(f"P^T group {gi} zero rows", mxt, ins_t,
                        [(j, zrow) for j in range(S, vl)
                         if mode != "row" or have.get(j) != zrow])
        pb.release(e)
        pb.activate(mxt, ins_t)
        # -- per head: transpose (MVM with unit vector g*S + i -> row i of P_h), then
        #    P_h rows x V_h^T (LWT columns); all heads of a tile accumulate
        if mxt != mxc:
            def by_mvm(b, hi, i, mv, ins_t=ins_t):
                mt = self.transpose_mvm(b, hi, i, ins_t)
                w_ = b.wire(4)
                b.drive(w_, 0, mt, "out")
                b.tap(w_, 0, mv, "x")
            self.transpose_ctx_direct(hs, by_mvm, ctx_slots, tctx)
            return
        prows = {}
        for hi, h in enumerate(hs):
            prow = prows[h] = pb.mem.tensor(f"prows[{h}]", range(S), 1, self.side(mxc))
            for i in range(S):
                b = Bundle(f"transpose head {h} row {i}", "trans")
                mv = self.transpose_mvm(b, hi, i, ins_t)
                w_ = b.wire(4)
                b.drive(w_, 0, mv, "out")
                wr = O.write(b, *prow.loc(i))
                b.tap(w_, 0, wr, "in")
                pb.emit(b)
        for h in hs:
            for t, first, last, slot_of, ins in self.ctx_heads(h, ctx_slots, tctx):
                for i in range(S):
                    b = Bundle(f"ctx head {h} tile {t} row {i}", "ctx")
                    rd = O.read(b, *prows[h].loc(i))
                    mv = O.mvm(b, mxc, slot_of(i), not first, last, ins)
                    b.connect(rd, "out", mv, "x")
                    self.ctx_out(b, mv, last, tctx, i, t)
                    pb.emit(b)
                if last and t in ctx_slots:
                    pb.slots[mxc].give(ctx_slots.pop(t))
            pb.release(prows[h])

    def ctx_heads(self, h: int, ctx_slots: dict, tctx: int):
        """Per tile of head h: install V_h^T (LWT column j = v_j^(h)), yield (tile, first,
        last head of the tile, slot of row i, install); loads the ctx multiplier."""
        pb = self.pb
        blk, S, vl = self.blk, self.S, pb.vl
        mxc = self.plan["ctx"]
        for t in T.head_tiles(h, self.dh, vl):
            ths = T.tile_heads(t, blk.n_heads, self.dh, vl)
            first, last = h == ths[0], h == ths[-1]
            if first and not last:
                ctx_slots[t] = pb.slots[mxc].take(S)
            if self.v_transpose:
                mine = set(T.head_lanes(h, t, self.dh, vl))
                zrow = pb.zero_loc(self.side(mxc))
                ins = pb.install(mxc, ("VT", h, t), [
                    (lane, self.vT.loc(t, lane) if lane in mine else zrow)
                    for lane in range(min(vl, blk.d_model - t * vl))])
            else:
                ins = pb.install(mxc, ("VT", h, t), [(j, self.vh.loc(h, j, t))
                                                       for j in range(S)], transposed=True)
            if last:
                self.ctx_multiplier(tctx, t)
            slots = ctx_slots.get(t)

            def slot_of(i, slots=slots):
                return slots[i] if slots else pb.slots[mxc].scratch()
            yield t, first, last, slot_of, ins

    def ctx_multiplier(self, tctx: int, t: int) -> None:
        """Lane tile t's context multiplier into ``tctx`` of the VXM group being lowered
        onto, unless that group's ``tctx`` holds it already (`_tctx_has`, per group)."""
        blk, vl = self.blk, self.pb.vl
        mvec = np.where(np.arange(vl) < blk.d_model - t * vl, blk.ctx_multiplier, 0)
        g = self.pb.O.vxm_slice
        if self._tctx_has.get(g) != mvec.tobytes():
            self.pb.reg_const(tctx, mvec, f"m_ctx[{t}]")
            self._tctx_has[g] = mvec.tobytes()

    def ctx_out(self, b: Bundle, mv, last: bool, tctx: int, i: int, t: int) -> None:
        pb = self.pb
        if last:
            v = pb.O.vxm(b, "i32", "s", "REQUANT", "s", ("r", tctx), otype="i8")
            b.connect(mv, "out", v, "a")
            wr = pb.O.write(b, *self.ctx.loc(i, t))
            b.connect(v, "d", wr, "in")

    def transpose_ctx_direct(self, hs, row_onto, ctx_slots, tctx) -> None:
        """Row i of P_h made in the bundle of its context MVM and fed to it on the stream
        directly: ``row_onto(b, hi, i, mvm)`` connects it (a transposing MVM on the other
        MXM, of whose int32 row only the low byte plane is read, or a transposer TGET)."""
        pb = self.pb
        O, S = pb.O, self.S
        mxc = self.plan["ctx"]
        for hi, h in enumerate(hs):
            for t, first, last, slot_of, ins in self.ctx_heads(h, ctx_slots, tctx):
                for i in range(S):
                    b = Bundle(f"transpose+ctx head {h} tile {t} row {i}", "transctx")
                    mv = O.mvm(b, mxc, slot_of(i), not first, last, ins)
                    row_onto(b, hi, i, mv)
                    self.ctx_out(b, mv, last, tctx, i, t)
                    pb.emit(b)
                if last and t in ctx_slots:
                    pb.slots[mxc].give(ctx_slots.pop(t))

    def emit_probs(self, gi: int, e: Tensor, rr: int, sd: str, into) -> None:
        """One bundle per key j: ``p_j = REQUANT(MUL(e_j, 127), rr)`` (int8), which
        ``into(b, j, wire)`` sends where it goes (row j of ``P^T``); with ``keep`` also a
        copy in SRAM on side ``sd`` (the destination's side: one wire, one direction)."""
        pb = self.pb
        O = pb.O
        pr = None
        if pb.keep:
            pr = pb.mem.tensor(f"probs[{gi}]", range(self.S), 1, sd)
            self.probs[gi] = pr
        for j in range(self.S):
            b = Bundle(f"probs group {gi} key {j}", "prob")
            rd = O.read(b, *e.loc(j))
            v = O.vxm(b, "u8", "s", "MUL", "s", PROB_ONE, "REQUANT", ("r", rr), otype="i8")
            b.connect(rd, "out", v, "a")
            w_ = b.wire(1)
            b.drive(w_, 0, v, "d")
            into(b, j, w_)
            if pr is not None:
                wr = O.write(b, *pr.loc(j))
                b.tap(w_, 0, wr, "in")
            pb.emit(b)

    def transposer(self, gi: int) -> str:
        """The SXM whose transposer holds group gi's P^T: the context MXM's side for even
        groups, the other side for odd ones (a group's rows are written while the previous
        group's are still read)."""
        sd = self.side(self.plan["ctx"])
        return f"SXM_{sd if gi % 2 == 0 else other(sd)}"

    def probs_to_transposer(self, gi, hs, e, rr, ctx_slots, tctx) -> None:
        """p_j = REQUANT(MUL(e_j, 127)) into transposer row j (+ SRAM copy with ``keep``);
        then per head and query i a TGET of column g*S + i (the S keys: row i of P_h)
        straight into the context MVM."""
        pb = self.pb
        O, S = pb.O, self.S
        sxm = self.transposer(gi)

        def into_transposer(b, j, w_):
            tp = O.tput(b, sxm, j)
            b.tap(w_, 0, tp, "in")
        self.emit_probs(gi, e, rr, pb.cfg.slice(sxm).hemisphere, into_transposer)
        pb.release(e)

        def by_tget(b, hi, i, mv):
            tg = O.tget(b, sxm, hi * S + i, S)
            b.connect(tg, "out", mv, "x")
        self.transpose_ctx_direct(hs, by_tget, ctx_slots, tctx)

    def transpose_mvm(self, b: Bundle, hi: int, i: int, ins_t):
        """Into ``b``: the MVM of unit vector ``hi*S + i`` on the transposing MXM (P^T
        installed), which emits row ``i`` of ``P`` of the group's ``hi``-th head."""
        pb = self.pb
        mxt = self.plan["trans"]
        rd = pb.O.read(b, *self.units.loc(hi * self.S + i))
        mv = pb.O.mvm(b, mxt, pb.slots[mxt].scratch(), False, True, ins_t,
                      purpose="transpose")
        b.connect(rd, "out", mv, "x")
        return mv

    def row_max(self, rm: list[int], sc_of) -> None:
        """M = max_j s_j over the (masked) scores: MAX chains of two keys per op, one chain
        per register in rm, combined at the end."""
        pb = self.pb
        S, O = self.S, pb.O
        nch = len(rm)
        groups = [list(range(j, min(j + 2, S))) for j in range(0, S, 2)]
        started = [False] * nch
        for g, js in enumerate(groups):
            c = g % nch
            r = ("r", rm[c])
            b = Bundle(f"max keys {js}", "max")
            if len(js) == 2:
                if started[c]:
                    v = O.vxm(b, "i16", r, "MAX", "s", "s", "MAX", r)
                else:
                    v = O.vxm(b, "i16", r, "MAX", "s", "s")
                planes_in(O, b, sc_of[js[0]], v, "a")
                planes_in(O, b, sc_of[js[1]], v, "b")
            else:
                if started[c]:
                    v = O.vxm(b, "i16", r, "MAX", "s", r)
                else:
                    v = O.vxm(b, "i16", r, "PASS", "s")
                planes_in(O, b, sc_of[js[0]], v, "a")
            started[c] = True
            pb.emit(b)
        for c in range(1, nch):
            if started[c]:
                pb.vx_bundle("max combine", "i16", ("r", rm[0]), "MAX", ("r", rm[0]),
                               ("r", rm[c]))

    def reciprocal(self, rs: int, rn: int, ry0: int, rr: int) -> None:
        """(y1, n - 30, 0) in the triple rr for the row sums in rs (`reciprocal_regs`)."""
        reciprocal_regs(self.pb, self.t_recip.loc(0), rs, rn, ry0, rr)


@dataclass(frozen=True)
class KvCache:
    """Where a decode step's state lives: the position vector (one copy per MEM slice,
    written by the host each step), the key cache per lane tile and the value cache per
    head and tile (``C`` consecutive vectors of one slice each, ``(tensor, (slice,
    base))``), and the two slices holding them (the step's k and v go elsewhere)."""

    pos: dict
    k: dict
    v: dict
    slices: tuple[str, str]


def kv_cache(pb: ProgramBuilder, a: SoftmaxAttention, C: int) -> KvCache:
    """Allocate the position vectors and the caches: keys on a slice of the scores MXM's
    side, values on one of the context MXM's (each cache in one slice: a SCATTER takes its
    data from another slice)."""
    pos = pb.position_vectors()
    sk = pb.mem.slices(side(a.mxm_scores, pb), 1, const=True)[0]
    ck = {t: pb.kv_rows(f"cache.k[{t}]", C, sk) for t in range(T.ntiles(a.d_model, pb.vl))}
    sv = pb.mem.slices(side(a.mxm_ctx, pb), 1, exclude=[sk], const=True)[0]
    cv = {(h, t): pb.kv_rows(f"cache.v[{h},{t}]", C, sv)
          for h in range(a.n_heads) for t in T.head_tiles(h, a.d_head, pb.vl)}
    return KvCache(pos, ck, cv, (sk, sv))


class CachedAttention(PrefillAttention):
    """One decode step's attention over the KV cache (``C`` positions, lanes = keys):
    append ``k_p`` and ``v_p`` at ``base + p`` (``SCATTER`` indexed by the position
    vector, so the program is the same at every position); the position masks (keys ``j
    > p`` hidden) in two registers; per head the scores from ``K`` installed once per lane
    tile, ``RMAX`` (SXM), the exp Gather, ``RSUM``, the reciprocal, and ``p_h`` straight
    into the MVM against ``V_h^T``.  ``a.seq_len`` is the one query row."""

    def __init__(self, pb: ProgramBuilder, a: SoftmaxAttention, tables: dict, cache: KvCache,
                 q: Tensor, k: Tensor, v: Tensor, out: Tensor):
        super().__init__(pb, a, tables, q, k, v, out)
        self.C = len(next(iter(cache.k.values()))[0].locs)
        self.pos, self.cache_k, self.cache_v = cache.pos, cache.k, cache.v
        self.inputs_pos = list(self.pos.values())

    def run(self) -> None:
        self.append()
        self.position_masks()
        self.attend()

    def append(self) -> None:
        """k_p and v_p of every head into the cache at ``base + p`` (SCATTER, index = the
        position vector)."""
        pb = self.pb
        O = pb.O
        todo = [(f"k tile {t}", self.k.loc(0, t), self.cache_k[t][1]) for t in range(self.Dt)]
        todo += [(f"v head {h} tile {t}", self.vh.loc(h, 0, t), self.cache_v[(h, t)][1])
                 for (h, t) in self.cache_v]
        for what, src, (s, base) in todo:
            b = Bundle(f"append {what}", "append")
            # a copy of p on a third slice (the data's READ may fall in the same cycle;
            # a slice cannot send to itself)
            rp = O.read(b, *copy_avoiding(self.pos, s, src[0]))
            rd = O.read(b, *src)
            sc = O.scatter(b, s, base, self.C)
            b.connect(rp, "out", sc, "idx")
            b.connect(rd, "out", sc, "in")
            pb.emit(b)

    # ------------------------------------------------------------------ attention
    def position_masks(self) -> None:
        """rmask = 32767 (key j <= p) | -32768 (j > p), rdm = 0 | 255, from the position
        vector and the lane index."""
        pb = self.pb
        O, regs = pb.O, pb.regs
        self.rmask, self.rdm = regs.single(), regs.single()
        rt = self.rmask
        b = Bundle("visible = (lane <= p) << 16", "mask")
        v = O.vxm(b, "u8", ("r", rt), "LE", "lane", "s", "SHL", 16, otype="i32")
        b.connect(O.read(b, *self.inputs_pos[0]), "out", v, "b")
        pb.emit(b)
        pb.vx_bundle("score mask", "i32", ("r", self.rmask), "ADD", ("r", rt), -16384,
                       "ADD", -16384, otype="i16", sat=True)
        self.exp_mask(self.rdm)

    def exp_mask(self, r: int) -> int:
        """Register r (of the VXM group being lowered onto) = 255 in the lanes of keys past
        the position, else 0 (the exponentials' mask); returns r."""
        pb = self.pb
        b = Bundle("exp mask = (lane > p) * 255", "mask")
        v = pb.O.vxm(b, "u8", ("r", r), "GT", "lane", "s", "MUL", 255, otype="i32")
        b.connect(pb.O.read(b, *self.inputs_pos[0]), "out", v, "b")
        pb.emit(b)
        return r

    def attend(self) -> None:
        pb = self.pb
        blk, vl, O, regs = self.blk, pb.vl, pb.O, pb.regs
        p = self.plan
        H, C, dh = blk.n_heads, self.C, self.dh
        mxs = p["scores"]
        sd = self.side(mxs)
        sxm = "SXM_W" if sd == "W" else "SXM_E"
        tsc = regs.triple()
        pb.reg_const(tsc, np.full(vl, blk.score_multiplier), "m_score")
        pb.set_imm(tsc + 1, blk.score_shift, "sh_score")
        # -- scores: K tile t installed once, one MVM per head of the tile
        sc = {h: pb.mem.tensor(f"scores[{h}]", [(0,)], 2, sd) for h in range(H)}
        hslots: dict[int, int] = {}
        for t in range(self.Dt):
            ins = pb.install(mxs, ("K", t), [(j, self.cache_k[t][0].loc(j))
                                               for j in range(C)])
            for h in T.tile_heads(t, H, dh, vl):
                tiles = T.head_tiles(h, dh, vl)
                first, last = t == tiles[0], t == tiles[-1]
                if first and not last:
                    hslots[h] = pb.slots[mxs].take(1)[0]
                slot = hslots.get(h, None)
                b = Bundle(f"scores head {h} tile {t}", "score")
                rd = O.read(b, *self.qh.loc(h, 0, t))
                mv = O.mvm(b, mxs, slot if slot is not None else pb.slots[mxs].scratch(),
                           not first, last, ins)
                b.connect(rd, "out", mv, "x")
                if last:
                    v = O.vxm(b, "i32", "s", "REQUANT", "s", ("r", tsc), "MIN",
                              ("r", self.rmask), otype="i16")
                    b.connect(mv, "out", v, "a")
                    planes_out(O, b, v, "d", sc[h][(0,)])
                    if h in hslots:
                        pb.slots[mxs].give([hslots.pop(h)])
                pb.emit(b)
        regs.release_triple(tsc)
        # -- softmax per head: RMAX, exp, RSUM, reciprocal; the heads are independent
        #    chains, each on the VXM group free soonest with registers of its own there
        gE = self.t_exp.loc(0)
        main = O.vxm_slice
        res: dict[str, tuple] = {}

        def setup(g: str) -> tuple:
            """Group g's registers: (rdm, rs, rn, ry0, rr, tctx); the exp mask made again
            in a group other than the node's."""
            if g not in res:
                with pb.use_vxm(g):
                    r = pb.regs
                    rdm = self.rdm if g == main else self.exp_mask(r.single())
                    rs, rn, ry0 = r.single(), r.single(), r.single()
                    rr = r.triple()
                    tctx = r.triple()
                    pb.set_imm(tctx + 1, blk.ctx_shift, "sh_ctx")
                res[g] = (rdm, rs, rn, ry0, rr, tctx)
            return res[g]
        setup(main)
        self._tctx_has = {}
        ctx_slots: dict[int, int] = {}
        e = {}
        for h in range(H):
            g = main if h == 0 else pb.vxm_soonest()
            with pb.use_vxm(g):
                rdm, rs, rn, ry0, rr, tctx = setup(g)
                e[h] = pb.mem.tensor(f"exp[{h}]", [(0,)], 1, exclude=[gE[0]])
                b = Bundle(f"max + exp head {h}", "exp")
                mx = O.reduce(b, sxm, "RMAX", "i16")
                planes_in(O, b, sc[h][(0,)], mx, "in")
                v = O.vxm(b, "i16", "s", "SUB", "s", "s", "MAX", ("r", rdm), otype="u8",
                          sat=True)
                b.connect(mx, "out", v, "a")
                planes_in(O, b, sc[h][(0,)], v, "b")
                g_ = O.gather(b, *gE)
                b.connect(v, "d", g_, "idx")
                wr = O.write(b, *e[h].loc(0))
                b.connect(g_, "out", wr, "in")
                pb.emit(b)
                b = Bundle(f"row sum head {h}", "sum")
                rd = O.read(b, *e[h].loc(0))
                su = O.reduce(b, sxm, "RSUM", "u8", "i32")
                b.connect(rd, "out", su, "in")
                v = O.vxm(b, "i32", ("r", rs), "PASS", "s")
                b.connect(su, "out", v, "a")
                pb.emit(b)
                self.reciprocal(rs, rn, ry0, rr)
                self.head_context(h, e[h], rr, tctx, ctx_slots)
        for g, (rdm, rs, rn, ry0, rr, tctx) in res.items():
            with pb.use_vxm(g):
                pb.regs.release_triple(rr)
                pb.regs.release_triple(tctx)
                pb.regs.release(rs, rn, ry0, *([self.rmask] if g == main else []), rdm)

    def head_context(self, h: int, e: Tensor, rr: int, tctx: int, ctx_slots: dict) -> None:
        """Head h's context: V_h^T installed per tile of the head, ``p_h = REQUANT(MUL(e,
        127), rr)`` straight into the MVM; the tile's last head requantises (``tctx``)."""
        pb = self.pb
        blk, vl, O = self.blk, pb.vl, pb.O
        H, C, dh = blk.n_heads, self.C, self.dh
        mxc = self.plan["ctx"]
        for t in T.head_tiles(h, dh, vl):
            ths = T.tile_heads(t, H, dh, vl)
            first, last = h == ths[0], h == ths[-1]
            if first and not last:
                ctx_slots[t] = pb.slots[mxc].take(1)[0]
            ins = pb.install(mxc, ("VT", h, t), [
                (j, self.cache_v[(h, t)][0].loc(j)) for j in range(C)], transposed=True)
            if last:
                self.ctx_multiplier(tctx, t)
            b = Bundle(f"probs + ctx head {h} tile {t}", "ctx")
            rd = O.read(b, *e.loc(0))
            pv = O.vxm(b, "u8", "s", "MUL", "s", 127, "REQUANT", ("r", rr), otype="i8")
            b.connect(rd, "out", pv, "a")
            slot = ctx_slots.get(t)
            mv = O.mvm(b, mxc, slot if slot is not None else pb.slots[mxc].scratch(),
                       not first, last, ins)
            b.connect(pv, "d", mv, "x")
            self.ctx_out(b, mv, last, tctx, 0, t)
            pb.emit(b)
            if last and t in ctx_slots:
                pb.slots[mxc].give([ctx_slots.pop(t)])
