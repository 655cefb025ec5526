"""Decode steps of the block: one token per run, the KV cache in MEM SRAM across runs.

``compile_decode(block, cfg, max_context=C)`` compiles *one* program that every decode
step runs.  Per step the host writes the token's residual row ``x_p`` (int32, 4 byte
planes) and its position ``p`` (a u8 vector, ``p`` in every lane), starts the chip and
reads ``y_p``; the weights, tables and the cache stay in SRAM between steps.

What the program does (row layout: one vector per row, lanes = features; inside attention
lanes = key positions ``j < C``):

1. ``x8``, then ``q`` (per head, masked to the head's lanes), ``k``, ``v`` (per head) as
   in the prefill block (`compiler.lower.Lowering`, one row).
2. **Append**: ``SCATTER`` writes ``k_p`` (each lane tile) and ``v_p`` (each head and tile)
   at ``cache + p``: the address is the per-lane index read from the position vector, so
   the program is the same for every position.
3. **Position mask** (once per step, two VXM registers from ``p`` and the lane index):
   ``min(score, 32767 | -32768)`` and ``max(d, 0 | 255)`` for ``j <= p | j > p``.
4. **Scores**: ``K`` installed as MXM weights (row ``j`` = cached ``k_j``, loaded from the
   cache), one MVM per head with ``q_h``: lane ``j`` = ``q_h . k_j``; REQUANT to int16,
   masked.
5. **Softmax** per head: ``RMAX`` (SXM) -> ``d = max(M - s, mask):u8:sat`` -> exp Gather
   -> ``RSUM`` (SXM) -> the reciprocal (`Lowering.reciprocal`) -> ``p_j`` int8.
6. **Context**: ``V_h^T`` installed (LWT column ``j`` = cached ``v_j`` of head h), one MVM
   with ``p_h``; the heads of a lane tile accumulate in one slot; REQUANT -> ``ctx``.
7. Wo + residual, W1 + GELU, W2 + residual as in the prefill block -> ``y_p``.

The choice: attention over a *fixed* maximum context ``C`` with a position mask, so every
step runs the same program in the same number of cycles (predicted exactly, measured per
step).  The price is the masked keys: each step loads and multiplies all ``C`` cache rows,
however short the context so far (``C - p - 1`` wasted rows per head and step; see
docs/compiler.md).  Integer semantics are the block's (`golden.block`): decode step ``p``
equals row ``p`` of the causal block on the whole sequence, bit for bit, because every
integer step of a row depends only on that row and the keys it sees.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from arch.config import TspConfig, get_config, preset_hint
from arch.program import Program
from golden.block import QuantBlock
from golden.machine import Machine, RunResult

from . import tiling as T
from .alloc import ZEROS
from .builder import copy_avoiding
from .compiled import CompiledBlock, _bounds, _check_weights_fit, _schedule
from .errors import CompileError, imem_error
from .ir import Bundle
from .lower import PLANS, Lowering, side
from .routes import planes_in, planes_out

#: the largest context: the position is a u8 SCATTER index and keys are lanes
MAX_CONTEXT = 256


class DecodeLowering(Lowering):
    """One decode step of ``block`` over a KV cache of ``max_context`` positions."""

    def __init__(self, block: QuantBlock, cfg: TspConfig, max_context: int,
                 spread: bool = True, **kw):
        super().__init__(block, cfg, keep=True, **kw)
        self.spread = spread
        self.C = max_context
        self.S = 1  # one row per step
        self.row_sums_on_mxm = False  # row sums by RSUM: no E - 128 table

    def group_of(self, mxm: str) -> list[str]:
        """Every MXM, ``mxm`` first: one row per step makes each matrix product a stream
        of weight rows, so its output tiles go to all MXMs in turn (both hemispheres);
        without ``spread`` to those of its hemisphere, as in the prefill block."""
        if not self.spread:
            return super().group_of(mxm)
        return [mxm] + [s.name for s in self.cfg.slices_of("MXM") if s.name != mxm]

    def run(self) -> None:
        blk = self.blk
        check_decode(blk, self.cfg, self.C)
        for z in ZEROS:
            self.set_imm(z, 0, "zero")
        self.setup_data()
        self.setup_cache()
        self.narrow_x()
        self.projections()
        self.append()
        self.position_masks()
        self.attend()
        self.mlp()
        self.mem.check()

    # ------------------------------------------------------------------ cache
    def setup_cache(self) -> None:
        blk, p = self.blk, self.plan
        # the position vector, one copy per MEM slice (an append reads it beside its data)
        self.pos = self.position_vectors()
        self.inputs_pos = list(self.pos.values())
        # each cache in one slice; the step's k and v rows go elsewhere (a SCATTER takes
        # its data from another slice)
        sk = self.mem.slices(side(p["scores"]), 1, const=True)[0]
        self.cache_k = {t: self.kv_rows(f"cache.k[{t}]", self.C, sk) for t in range(self.Dt)}
        sv = self.mem.slices(side(p["ctx"]), 1, exclude=[sk], const=True)[0]
        self.cache_v = {(h, t): self.kv_rows(f"cache.v[{h},{t}]", self.C, sv)
                        for h in range(blk.n_heads) for t in T.head_tiles(h, self.dh, self.vl)}
        self.kv_exclude = [sk, sv]

    def append(self) -> None:
        """k_p and v_p of every head into the cache at ``base + p`` (SCATTER, index = the
        position vector)."""
        O = self.O
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
            self.emit(b)

    # ------------------------------------------------------------------ attention
    def position_masks(self) -> None:
        """rmask = 32767 (key j <= p) | -32768 (j > p), rdm = 0 | 255, from the position
        vector and the lane index."""
        O, regs = self.O, self.regs
        self.rmask, self.rdm = regs.single(), regs.single()
        rt = self.rmask
        b = Bundle("visible = (lane <= p) << 16", "mask")
        v = O.vxm(b, "u8", ("r", rt), "LE", "lane", "s", "SHL", 16, otype="i32")
        b.connect(O.read(b, *self.inputs_pos[0]), "out", v, "b")
        self.emit(b)
        self.vx_bundle("score mask", "i32", ("r", self.rmask), "ADD", ("r", rt), -16384,
                       "ADD", -16384, otype="i16", sat=True)
        b = Bundle("exp mask = (lane > p) * 255", "mask")
        v = O.vxm(b, "u8", ("r", self.rdm), "GT", "lane", "s", "MUL", 255, otype="i32")
        b.connect(O.read(b, *self.inputs_pos[0]), "out", v, "b")
        self.emit(b)

    def attend(self) -> None:
        blk, vl, O, regs = self.blk, self.vl, self.O, self.regs
        p = self.plan
        H, C, dh = blk.n_heads, self.C, self.dh
        mxs, mxc = p["scores"], p["ctx"]
        sd = side(mxs)
        sxm = "SXM_W" if sd == "W" else "SXM_E"
        tsc = regs.triple()
        self.reg_const(tsc, np.full(vl, blk.score_multiplier), "m_score")
        self.set_imm(tsc + 1, blk.score_shift, "sh_score")
        # -- scores: K tile t installed once, one MVM per head of the tile
        sc = {h: self.mem.tensor(f"scores[{h}]", [(0,)], 2, sd) for h in range(H)}
        hslots: dict[int, int] = {}
        for t in range(self.Dt):
            ins = self.install(mxs, ("K", t), [(j, self.cache_k[t][0].loc(j))
                                               for j in range(C)])
            for h in T.tile_heads(t, H, dh, vl):
                tiles = T.head_tiles(h, dh, vl)
                first, last = t == tiles[0], t == tiles[-1]
                if first and not last:
                    hslots[h] = self.slots[mxs].take(1)[0]
                slot = hslots.get(h, None)
                b = Bundle(f"scores head {h} tile {t}", "score")
                rd = O.read(b, *self.qh.loc(h, 0, t))
                mv = O.mvm(b, mxs, slot if slot is not None else self.slots[mxs].scratch(),
                           not first, last, ins)
                b.connect(rd, "out", mv, "x")
                if last:
                    v = O.vxm(b, "i32", "s", "REQUANT", "s", ("r", tsc), "MIN",
                              ("r", self.rmask), otype="i16")
                    b.connect(mv, "out", v, "a")
                    planes_out(O, b, v, "d", sc[h][(0,)])
                    if h in hslots:
                        self.slots[mxs].give([hslots.pop(h)])
                self.emit(b)
        regs.release_triple(tsc)
        # -- softmax per head: RMAX, exp, RSUM, reciprocal
        gE = self.t_exp.loc(0)
        rs, rn, ry0 = regs.single(), regs.single(), regs.single()
        rr = regs.triple()
        tctx = regs.triple()
        self.set_imm(tctx + 1, blk.ctx_shift, "sh_ctx")
        self._tctx_has = None
        self.ctx = self.mem.tensor("ctx", [(0, t) for t in range(self.Dt)], 1, side(p["wo"]))
        ctx_slots: dict[int, int] = {}
        lanes = np.arange(vl)
        e = {}
        for h in range(H):
            e[h] = self.mem.tensor(f"exp[{h}]", [(0,)], 1, exclude=[gE[0]])
            b = Bundle(f"max + exp head {h}", "exp")
            mx = O.reduce(b, sxm, "RMAX", "i16")
            planes_in(O, b, sc[h][(0,)], mx, "in")
            v = O.vxm(b, "i16", "s", "SUB", "s", "s", "MAX", ("r", self.rdm), otype="u8",
                      sat=True)
            b.connect(mx, "out", v, "a")
            planes_in(O, b, sc[h][(0,)], v, "b")
            g = O.gather(b, *gE)
            b.connect(v, "d", g, "idx")
            wr = O.write(b, *e[h].loc(0))
            b.connect(g, "out", wr, "in")
            self.emit(b)
            b = Bundle(f"row sum head {h}", "sum")
            rd = O.read(b, *e[h].loc(0))
            su = O.reduce(b, sxm, "RSUM", "u8", "i32")
            b.connect(rd, "out", su, "in")
            v = O.vxm(b, "i32", ("r", rs), "PASS", "s")
            b.connect(su, "out", v, "a")
            self.emit(b)
            self.reciprocal(rs, rn, ry0, rr)
            # -- context: V_h^T installed per tile of the head; p_h straight into the MVM
            for t in T.head_tiles(h, dh, vl):
                ths = T.tile_heads(t, H, dh, vl)
                first, last = h == ths[0], h == ths[-1]
                if first and not last:
                    ctx_slots[t] = self.slots[mxc].take(1)[0]
                ins = self.install(mxc, ("VT", h, t), [
                    (j, self.cache_v[(h, t)][0].loc(j)) for j in range(C)], transposed=True)
                if last:
                    mvec = np.where(lanes < blk.d_model - t * vl, blk.ctx_multiplier, 0)
                    if self._tctx_has != mvec.tobytes():
                        self.reg_const(tctx, mvec, f"m_ctx[{t}]")
                        self._tctx_has = mvec.tobytes()
                b = Bundle(f"probs + ctx head {h} tile {t}", "ctx")
                rd = O.read(b, *e[h].loc(0))
                pv = O.vxm(b, "u8", "s", "MUL", "s", 127, "REQUANT", ("r", rr), otype="i8")
                b.connect(rd, "out", pv, "a")
                slot = ctx_slots.get(t)
                mv = O.mvm(b, mxc, slot if slot is not None else self.slots[mxc].scratch(),
                           not first, last, ins)
                b.connect(pv, "d", mv, "x")
                self.ctx_out(b, mv, last, tctx, 0, t)
                self.emit(b)
                if last and t in ctx_slots:
                    self.slots[mxc].give([ctx_slots.pop(t)])
        regs.release_triple(rr)
        regs.release_triple(tctx)
        regs.release(rs, rn, ry0, self.rmask, self.rdm)
        self.keep_as("ctx", "rows", self.ctx, blk.d_model, self.ctx)


def check_context(cfg: TspConfig, max_context: int) -> None:
    """Refuse a maximum context no decode program on ``cfg`` holds (cheap: callers run it
    before building and calibrating a block)."""
    vl = cfg.vector_length
    if not isinstance(max_context, int) or not 1 <= max_context <= min(vl, MAX_CONTEXT):
        need = -(-int(max_context) // cfg.lanes_per_superlane) if isinstance(
            max_context, int) and max_context > 0 else 1
        hint = preset_hint("superlanes", need) if isinstance(max_context, int) and \
            vl < max_context <= MAX_CONTEXT else f"the largest is {MAX_CONTEXT}"
        raise CompileError(f"max_context={max_context!r} must be in 1..{min(vl, MAX_CONTEXT)} "
                           f"on config {cfg.name!r} (keys are lanes: VL = {vl}; the position "
                           f"is a u8 index); {hint}", "shape", True)
    if cfg.mem_slices_per_hemisphere < 2:
        raise CompileError("decode needs at least 2 MEM slices per hemisphere (int16 "
                           f"scores) but config {cfg.name!r} has "
                           f"{cfg.mem_slices_per_hemisphere}; "
                           f"{preset_hint('mem_slices_per_hemisphere', 2)}", "shape", True)


def check_decode(block: QuantBlock, cfg: TspConfig, max_context: int) -> None:
    """Refuse what one decode program cannot do, naming the limit."""
    check_context(cfg, max_context)
    if not block.causal:
        raise CompileError("decode steps need a causal block (each token sees the keys up "
                           "to its own position); this block is non-causal", "shape", True)
    if block.n_heads < 1 or block.d_model % block.n_heads:
        raise CompileError(f"d_head: d_model={block.d_model} is not a multiple of "
                           f"n_heads={block.n_heads}", "shape", True)
    if max_context > block.seq_len:
        raise CompileError(f"max_context={max_context} exceeds the block's calibrated "
                           f"seq_len={block.seq_len}", "shape", True)


@dataclass
class CompiledDecode(CompiledBlock):
    """One decode-step program (see the module docstring) and its host interface."""

    max_context: int = 0
    pos_locs: list = field(default_factory=list)  # (slice, addr) of every copy of p
    caches: dict = field(default_factory=dict)  # name -> (slice, base) of C vectors

    @property
    def shape_label(self) -> str:
        b = self.block
        return (f"one decode step, context {self.max_context}, d_model {b.d_model}, heads "
                f"{b.n_heads}, d_ff {b.d_ff}")

    def decode_bounds(self) -> dict:
        """Lower bounds on one step's cycles, and the ratio of the cycles to the largest.

        * ``weight_stream``: every weight byte of the block and the whole KV cache (K and
          V, ``C x d_model`` each) enters an MXM once, one VL-byte row per cycle per MXM
          (LW/LWT): ``ceil(bytes / VL) / MXMs``;
        * ``mac``: the step's multiply-accumulates (its matmul MVMs are VL x VL each) at
          ``VL^2`` per MXM and cycle;
        * ``vxm``: VXM instructions, one per cycle (one VXM queue);
        * ``path``: the longest dependency chain of the program.
        """
        b, vl = self.block, self.cfg.vector_length
        n_mxm = len(self.cfg.slices_of("MXM"))
        wbytes = sum(int(lin.weight.size) for lin in b.linears().values())
        kv = 2 * self.max_context * b.d_model
        rows = -(-(wbytes + kv) // vl)  # VL-byte weight rows
        bounds = {"weight_stream": -(-rows // n_mxm),
                  "mac": -(-self.useful_mvms // n_mxm),
                  "vxm": self.bounds.vxm, "path": self.bounds.path}
        top = max(bounds, key=bounds.get)
        return {"bounds": bounds, "binding": top, "weight_bytes": wbytes, "kv_bytes": kv,
                "ratio": round(self.cycles / bounds[top], 3)}

    def sram_image(self, x_q=None) -> dict[str, dict[int, np.ndarray]]:
        """What the host writes once, before the first step: weights, tables, constants,
        the zeroed cache (and, with ``x_q``, the first step's input)."""
        img: dict[str, dict[int, np.ndarray]] = {}
        for (s, a), v in self.init.items():
            img.setdefault(s, {})[a] = v.copy()
        if x_q is not None:
            for (s, a), v in self.step_writes(x_q, 0):
                img[s][a] = v
        return img

    def step_writes(self, x_row: np.ndarray, pos: int) -> list[tuple[tuple[str, int], np.ndarray]]:
        """The host writes of one step: the int32 row ``x_row`` (d_model,) and ``pos``."""
        b, vl = self.block, self.cfg.vector_length
        if not isinstance(x_row, np.ndarray) or x_row.dtype != np.int32 or \
                x_row.shape != (b.d_model,):
            got = (f"{x_row.dtype} array of shape {x_row.shape}"
                   if isinstance(x_row, np.ndarray) else type(x_row).__name__)
            raise ValueError(f"x_row: expected an int32 array of shape ({b.d_model},) (one "
                             f"row of the residual stream), got {got}")
        if isinstance(pos, bool) or not isinstance(pos, int | np.integer) or \
                not 0 <= pos < self.max_context:
            raise ValueError(f"pos={pos!r}: the position must be an int in "
                             f"0..{self.max_context - 1} (max_context {self.max_context})")
        out = []
        for (_i, t), copies in self.inputs.items():
            planes = T.bytes_of(T.tile_vec(x_row, t, vl), 4)
            for locs in copies:
                out += list(zip(locs, planes, strict=True))
        out += [(loc, np.full(vl, pos, np.uint8)) for loc in self.pos_locs]
        return out

    def read_output(self, read_vec) -> np.ndarray:
        """y_p (d_model,) int32 of the step just run."""
        return self._read("y", read_vec)[0]

    def read_cache(self, read_vec, name: str) -> np.ndarray:
        """One cache tensor (``k[t]`` or ``v[h,t]``): (C, VL) int8."""
        s, base = self.caches[name]
        return np.stack([np.asarray(read_vec(s, base + j), np.uint8).view(np.int8)
                         for j in range(self.max_context)])

    def run_on_model(self, x_q: np.ndarray, max_cycles: int | None = None,
                     machine: Machine | None = None
                     ) -> tuple[np.ndarray, list[RunResult], Machine]:
        """Decode the rows of ``x_q`` (T <= max_context, d_model) one step each, at
        positions 0..T-1, on golden.machine.Machine (image loaded once, the cache kept
        between steps): ``(y (T, d_model) int32, one RunResult per step, the machine)``.
        ``machine``: go on with one that already ran (a new sequence over the old cache,
        whose stale positions the mask must hide); else a fresh one, loaded."""
        x_q = np.asarray(x_q)
        if x_q.ndim != 2 or x_q.shape[0] > self.max_context:
            raise ValueError(f"x_q: expected (T <= {self.max_context}, "
                             f"{self.block.d_model}) rows, got shape {x_q.shape}")
        m = machine
        if m is None:
            m = Machine(self.cfg)
            for s, per in self.sram_image().items():
                for a, v in per.items():
                    m.write_mem(s, a, v)
            m.load_program(self.program)
        ys, runs = [], []
        for p in range(x_q.shape[0]):
            for (s, a), v in self.step_writes(x_q[p], p):
                m.write_mem(s, a, v)
            runs.append(m.run(max_cycles=max_cycles or 4 * self.cycles + 1000))
            ys.append(self.read_output(m.read_mem))
        return np.stack(ys).astype(np.int32), runs, m


def compile_decode(block: QuantBlock, cfg: TspConfig | str, max_context: int | None = None,
                   *, plans=None, orders=("priority", "cycle", "program"),
                   effort: str = "best") -> CompiledDecode:
    """Compile one decode step of the causal ``block`` over a KV cache of ``max_context``
    positions (default: the block's ``seq_len``).  Variants: the MXM ``plans`` x output
    tiles spread over every MXM or over the planned hemisphere's x the scheduling
    ``orders``, weight rows loaded flexibly, then in rigid blocks if the instruction
    memory is short; the fastest that fits is kept."""
    t0 = time.time()
    cfg = get_config(cfg)
    if not isinstance(block, QuantBlock):
        raise TypeError(f"block: expected a golden.block.QuantBlock, got {type(block).__name__}")
    C = block.seq_len if max_context is None else max_context
    check_decode(block, cfg, C)
    _check_weights_fit(block, cfg)
    plans = list(plans or PLANS)
    tried, errors, best = [], [], None
    variants = [(pi, spread) for spread in (True, False) for pi in range(len(plans))]
    for rigid in (False, True):
        for pi, spread in variants:
            try:
                low = DecodeLowering(block, cfg, C, plan=plans[pi], rigid_loads=rigid,
                                     spread=spread)
                low.run()
            except CompileError as exc:
                if exc.final:
                    raise
                errors.append(exc)
                continue
            for order in orders:
                em = _schedule(cfg, low, order)
                words = {k: q.nwords for k, q in em.queues.items()}
                fits = cfg.imem_fits(words)
                rec = {"plan": pi, "spread": spread, "rigid_loads": rigid, "order": order,
                       "cycles": em.cycles,
                       "max_words": max(words.values()), "fits": fits, "words": words}
                tried.append(rec)
                if fits and (best is None or em.cycles < best[2]["cycles"]):
                    best = (low, order, rec)
                if fits and effort == "fast":
                    break
            if best is not None and effort == "fast":
                break
        if best is not None:
            break
    if best is None:
        if not tried:
            raise errors[0]
        raise imem_error("the decode step", cfg, min(tried, key=lambda r: r["max_words"])["words"])
    low, order, rec = best
    em = _schedule(cfg, low, order, full=True)
    assert em.cycles == rec["cycles"]
    prog = Program.from_instrs(cfg, {k: q.words for k, q in em.queues.items()})
    return CompiledDecode(
        cfg=cfg, block=block, program=prog, emitted=em, bundles=low.bundles, init=low.init,
        inputs=low.inputs, kept=low.valid_intermediates(),
        bounds=_bounds(cfg, low.bundles, em),
        variant={"plan": rec["plan"], "spread": rec["spread"],
                 "rigid_loads": rec["rigid_loads"], "order": order,
                 "max_context": C},
        sram_used=low.mem.used, sram_peak=low.mem.peak, compile_seconds=time.time() - t0,
        tried=[{k: v for k, v in r.items() if k != "words"} for r in tried],
        max_context=C, pos_locs=low.inputs_pos,
        caches={**{f"k[{t}]": loc for t, (_, loc) in low.cache_k.items()},
                **{f"v[{h},{t}]": loc for (h, t), (_, loc) in low.cache_v.items()}})
