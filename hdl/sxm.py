"""The SXM slice: lane shifts, rotates, broadcast, permutations and row reductions.

Hardware (VL = ``cfg.vector_length``, S = ``cfg.superlanes``; one SXM per hemisphere):

* Operand fetch, per superlane tile: the four byte-streams ``in..in+3`` of the
  instruction's direction, rearranged lane-major (lane ``l`` = 32 bits, byte plane ``p``
  in bits ``8p+7:8p``) so that a lane move moves all planes of the lane together.  The
  ``type`` field only sets how many planes are *written* (1, 2 or 4).  Each unit's inputs
  are held at zero unless it has an instruction (operand isolation).
* `SxmLocalUnit`, per tile (SHS, ROTS): a 16-lane crossbar (one 16:1 lane mux and a
  zero-fill gate per output lane) and two pipeline registers.
* `SxmGlobalUnit` (SHV, ROTV, DIST, PERM, PMAP, TPUT, TGET): a deskew line (tile ``k``'s
  block delayed ``S - 1 - k`` cycles), one VL-lane crossbar (one VL:1 lane mux and a
  zero-fill gate per output lane; the source lane comes from ``n`` or from a permutation
  map), the 4 x VL permutation-map registers (identity after power-up, kept across runs
  like the model's) and an output skew line.  With ``cfg.sxm_transpose_rows`` = R > 0 also
  the transposer: R row registers of VL bytes (zero after power-up, kept across runs),
  one written whole per TPUT; TGET reads byte ``col`` of every row (one variable
  part-select per row) into lane ``r`` of its result.  Without it (R = 0) none of this
  hardware exists.
* `SxmReduceUnit` (RMAX, RMIN, RSUM): per tile a 16-lane tree of max/min/wrapping-add
  nodes on values sign-extended (u8: zero-extended) to 32 bits, and a chain that carries
  the partial result north one tile per cycle; the 32-bit scalar is broadcast and written
  as ``otype`` (its low 1, 2 or 4 bytes: wrapping).
* `SxmTileOutput`, per tile: merges the three units' writes per stream and flags a
  collision.

Timing (``t`` = issue cycle in superlane-0 time; tile ``k`` reads its part of the
operands in ``t + k`` and writes its part of a result in ``t + L + k``):

* SHS/ROTS (L = 2): tile ``k`` permutes in ``t + k``, two registers, writes ``t + k + 2``.
* SHV/ROTV/DIST/PERM (L = 2S): the whole vector is present in ``t + S - 1`` (tile
  ``S - 1`` combinationally, the others from the deskew line); the crossbar result is
  registered and tile ``k``'s block written ``S + 1 + k`` cycles later (``t + 2S + k``).
  PERM reads its map in ``t + S - 1``.
* PMAP (L = 1): the map is taken from the same deskewed vector (planes 0 and 1) in
  ``t + S - 1`` and written at the end of ``t + S``, so a PERM issued in ``t + 2`` (which
  reads in ``t + S + 1``) sees it and one issued in ``t + 1`` does not: every map access
  is shifted by the same ``S - 1`` cycles, which keeps the model's order.
* TPUT (L = 1) and TGET (L = 2S): the same for the transposer.  TPUT takes plane 0 of the
  deskewed vector in ``t + S - 1`` and writes its row at the end of ``t + S``; TGET reads
  its column in ``t + S - 1`` and its result takes the crossbar's place in the output
  register and skew line (tile ``k`` writes in ``t + 2S + k``, one byte plane).
* RMAX/RMIN/RSUM (L = 2S + 1): tile ``k`` reduces its 16 lanes and combines the chain
  value from tile ``k - 1`` in ``t + k``; the result leaves tile ``S - 1`` at the end of
  ``t + S - 1`` and is written by tile ``k`` in ``t + 2S + 1 + k``.

The units have different latencies, so two instructions may be due in one cycle: one
(direction, stream) written by two units in one cycle raises ``STREAM_COLLISION`` (checked
in tile 0, whose writes every other tile repeats later).  Other errors:
``ILLEGAL_INSTRUCTION`` (combinational, issue cycle) for a word the ISA rejects (any
TPUT/TGET without a transposer) or a REPEAT-strided ``n``/``map``/``row``/``col`` out of
range; ``VALUE_RANGE`` when a PMAP entry is not a lane index (< VL), in the cycle the tile
holding it reads it.
"""

from __future__ import annotations

from amaranth import Array, Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from arch import isa
from arch.config import TspConfig

from .slice import (
    LANES,
    ErrorCode,
    SliceSignature,
    check_slice_config,
    delay_chain,
    legal_checks,
    opcode_of,
    stream_select,
    stream_span,
    strided,
    view,
)
from .tile import SkewChain

__all__ = ["SxmGlobalUnit", "SxmLocalUnit", "SxmReduceUnit", "SxmSlice", "SxmTileOutput"]

KIND = "SXM"
OPC = isa.OPCODES[KIND]
BLOCK = 32 * LANES  # one tile's lanes, lane-major, 4 byte planes each
# reduction ops
R_MAX, R_MIN, R_SUM = 0, 1, 2
# global ops
G_SHV, G_ROTV, G_DIST, G_PERM = 0, 1, 2, 3


def _nbytes(type_code):
    """Byte-streams of a type code (i8 1, i16 2, i32 4, u8 1) as a 3-bit value."""
    return Array([Const(isa.type_bytes(t), 3) for t in range(len(isa.TYPES))])[type_code]


def _any_valid(stages, *fields):
    """High while any register of a `delay_chain` (``stages[1:]``) holds a word with
    one of ``fields`` set: work in flight."""
    bits = [getattr(s, f) for s in stages[1:] for f in fields]
    return Cat(*bits).any() if bits else Const(0)


def _pick(options, index):
    """``options[index]`` as a complete mux (padded with zeros to 2**len(index) inputs)."""
    n = 1 << len(index)
    opts = list(options)[:n]
    opts += [Const(0, len(opts[0]))] * (n - len(opts))
    return Array(opts)[index]


def _lanes(block):
    return [block[32 * l:32 * l + 32] for l in range(len(block) // 32)]


def out_layout(cfg: TspConfig) -> data.StructLayout:
    """What a unit writes: byte planes 0..nb-1 onto streams out_s.. in direction out_d."""
    return data.StructLayout({
        "valid": 1,
        "out_s": cfg.stream_index_bits,
        "out_d": 1,
        "nb": 3,
    })


def global_layout(cfg: TspConfig) -> data.StructLayout:
    fields = {
        "valid": 1,  # SHV / ROTV / DIST / PERM / TGET
        "op": 2,
        "n": signed(11),
        "map": 2,
        "pmap": 1,
        "out": out_layout(cfg),
    }
    R = cfg.sxm_transpose_rows
    if R:  # the transposer's fields only where there is one (else the same hardware)
        fields.update({
            "tput": 1,
            "tget": 1,
            "trow": max(1, (R - 1).bit_length()),  # TPUT row
            "tcol": max(1, (cfg.vector_length - 1).bit_length()),  # TGET col
            "trows": R.bit_length(),  # TGET rows
        })
    return data.StructLayout(fields)


# ============================================================================ units
class SxmLocalUnit(wiring.Component):
    """SHS/ROTS for one tile: ``o_blk`` (two cycles after ``blk``) = ``blk`` moved by
    ``n`` lanes within the 16 (rotated if ``rot``, else zero-filled)."""

    def __init__(self, cfg: TspConfig):
        check_slice_config("SxmLocalUnit", cfg)
        self.cfg = cfg
        super().__init__({
            "blk": In(BLOCK), "rot": In(1), "n": In(signed(5)), "ctl": In(out_layout(cfg)),
            "o_blk": Out(BLOCK), "o_ctl": Out(out_layout(cfg)), "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        sel = Array(_lanes(self.blk))
        res = []
        for l in range(LANES):
            j = Const(l, 6) - self.n  # signed; j mod 16 is the source lane
            inside = (j >= 0) & (j < LANES)
            res.append(Mux(self.rot | inside, sel[j[:4]], 0))
        ctls = delay_chain(m, self.ctl, 2, "loc_ctl")
        data = delay_chain(m, Cat(*res), 2, "loc", reset_less=True,
                           enables=[c.valid for c in ctls[:2]], words=True)
        m.d.comb += [
            self.o_blk.eq(data[-1]),
            self.o_ctl.eq(ctls[-1]),
            self.busy.eq(_any_valid(ctls, "valid")),
        ]
        return m


class SxmGlobalUnit(wiring.Component):
    """SHV/ROTV/DIST/PERM, the permutation maps and, with ``cfg.sxm_transpose_rows``,
    the transposer's TPUT/TGET (see the module docstring).

    ``blocks[k]`` is tile ``k``'s operand in ``t + k``, ``ctl`` the instruction in ``t``;
    ``o_blk[k]``/``o_ctl[k]`` what tile ``k`` writes in ``t + 2S + k``.
    """

    def __init__(self, cfg: TspConfig):
        check_slice_config("SxmGlobalUnit", cfg)
        self.cfg = cfg
        S = cfg.superlanes
        super().__init__({
            "blocks": In(BLOCK).array(S), "ctl": In(global_layout(cfg)),
            "o_blk": Out(BLOCK).array(S), "o_ctl": Out(out_layout(cfg)).array(S),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        S, VL = cfg.superlanes, cfg.vector_length
        mbits = max(1, (VL - 1).bit_length())
        R = cfg.sxm_transpose_rows
        g_stages = delay_chain(m, self.ctl, S - 1, "ctl")
        g = g_stages[-1]  # in t + S - 1
        # an instruction that reads the deskewed vector: a move (valid, which TGET also
        # sets), PMAP, TPUT
        uses = [c.valid | c.pmap | (c.tput if R else 0) for c in g_stages]
        vec = []  # all VL lanes in t + S - 1; tile k's block moves only with such an
        for k in range(S):  # instruction (its stage n + 1 loads in t + k + n)
            vec += _lanes(delay_chain(m, self.blocks[k], S - 1 - k, f"deskew{k}", True,
                                      enables=uses[k:S - 1], words=True)[-1])

        maps = [[Signal(mbits, init=i, name=f"map{q}_{i}", reset_less=True) for i in range(VL)]
                for q in range(isa.SXM_MAPS)]
        res = []
        for i in range(VL):
            j = Signal(signed(12), name=f"j{i}")
            m.d.comb += j.eq(i - g.n)
            src = Signal(mbits, name=f"src{i}")  # source lane
            zero = Signal(name=f"zero{i}")  # SHV: source outside the vector
            r = Signal(32, name=f"res{i}")
            with m.If(g.valid):  # (0 otherwise: the simulator skips the lane's mux)
                m.d.comb += zero.eq((g.op == G_SHV) & ((j < 0) | (j >= VL)))
                with m.Switch(g.op):
                    with m.Case(G_SHV):
                        m.d.comb += src.eq(j)
                    with m.Case(G_ROTV):
                        m.d.comb += src.eq(Mux(j < 0, j + VL, Mux(j >= VL, j - VL, j)))
                    with m.Case(G_DIST):
                        m.d.comb += src.eq(g.n)
                    with m.Case(G_PERM):
                        m.d.comb += src.eq(Array(maps[q][i]
                                                 for q in range(isa.SXM_MAPS))[g.map])
                m.d.comb += r.eq(Mux(zero, 0, _pick(vec, src)))
            res.append(r)
        # the result register, one per lane (a register wider than 64 bits loaded under
        # an `if` is computed by Verilator in front of it, so in every cycle: `delay_chain`)
        outs = [Signal(32, name=f"res_q{i}", reset_less=True) for i in range(VL)]
        out = Cat(*outs)
        octl = Signal(out_layout(cfg), name="res_ctl")
        if R:
            tp_valid, tcol = self._transposer(m, g, vec)
            with m.If(g.valid):  # read downstream only with its valid control word
                m.d.sync += [o.eq(Mux(g.tget, tcol[32 * i:32 * i + 32], r))
                             for i, (o, r) in enumerate(zip(outs, res, strict=True))]
        else:
            with m.If(g.valid):
                m.d.sync += [o.eq(r) for o, r in zip(outs, res, strict=True)]
        m.d.sync += octl.eq(g.out)
        # `out` is present in t + S; tile k writes in t + 2S + k: S + k more registers
        ctls = delay_chain(m, octl, 2 * S - 1, "out_ctl")
        for k in range(S):
            blk = out[BLOCK * k:BLOCK * (k + 1)]
            m.d.comb += [
                self.o_blk[k].eq(delay_chain(m, blk, S + k, f"out{k}", True,
                                             enables=[c.valid for c in ctls[:S + k]])[-1]),
                self.o_ctl[k].eq(ctls[S + k]),
            ]

        # PMAP: planes 0, 1 of the deskewed vector, written at the end of t + S
        pm_valid = Signal(name="pmap_valid")
        pm_map = Signal(2, name="pmap_map")
        pm_data = delay_chain(m, Cat(*(lane[:mbits] for lane in vec)), 1, "pmap_data",
                              True, enables=[g.pmap], words=True)[-1]  # only with a PMAP
        m.d.sync += [
            pm_valid.eq(g.pmap),
            pm_map.eq(g.map),
        ]
        for q in range(isa.SXM_MAPS):
            with m.If(pm_valid & (pm_map == q)):
                m.d.sync += [maps[q][i].eq(pm_data[mbits * i:mbits * (i + 1)])
                             for i in range(VL)]
        busy = (_any_valid(g_stages, "valid", "pmap") | octl.valid
                | _any_valid(ctls, "valid") | pm_valid)
        if R:
            busy = busy | _any_valid(g_stages, "tput") | tp_valid
        m.d.comb += self.busy.eq(busy)
        return m

    def _transposer(self, m, g, vec):
        """The R x VL int8 buffer: R registers of VL bytes (reset_less, 0 at power-up,
        kept across runs).  TPUT writes row ``g.trow`` with plane 0 of the deskewed
        vector at the end of t + S (like PMAP's map); TGET reads byte ``g.tcol`` of each
        row (a variable part-select) in t + S - 1.  Returns (a TPUT write pending, the
        TGET result as a lane-major VL x 32-bit vector: plane 0 only)."""
        cfg = self.cfg
        R, VL = cfg.sxm_transpose_rows, cfg.vector_length
        rows = [Signal(8 * VL, name=f"trow{r}", reset_less=True) for r in range(R)]
        tp_valid = Signal(name="tput_valid")
        tp_row = Signal(len(g.trow), name="tput_row")
        tp_data = delay_chain(m, Cat(*(lane[:8] for lane in vec)), 1, "tput_data",
                              True, enables=[g.tput], words=True)[-1]  # only with a TPUT
        m.d.sync += [
            tp_valid.eq(g.tput),
            tp_row.eq(g.trow),
        ]
        for r in range(R):
            with m.If(tp_valid & (tp_row == r)):
                m.d.sync += rows[r].eq(tp_data)
        col = []  # lane r: T[r][col] for r < rows, else 0
        for r in range(R):
            b = Signal(8, name=f"tcol{r}")
            m.d.comb += b.eq(Mux(r < g.trows, rows[r].word_select(g.tcol, 8), 0))
            col.append(Cat(b, Const(0, 24)))
        if VL > R:
            col.append(Const(0, 32 * (VL - R)))
        return tp_valid, Cat(*col)


class SxmReduceUnit(wiring.Component):
    """RMAX/RMIN/RSUM: ``blocks[k]``, ``op[k]``, ``type[k]`` are tile ``k``'s operand and
    instruction in ``t + k``, ``ctl`` the output control in ``t``; ``o_val[k]`` (the
    32-bit result) and ``o_ctl[k]`` are what tile ``k`` writes in ``t + 2S + 1 + k``."""

    def __init__(self, cfg: TspConfig):
        check_slice_config("SxmReduceUnit", cfg)
        self.cfg = cfg
        S = cfg.superlanes
        super().__init__({
            "blocks": In(BLOCK).array(S), "op": In(2).array(S), "type": In(2).array(S),
            "ctl": In(out_layout(cfg)),
            "o_val": Out(32).array(S), "o_ctl": Out(out_layout(cfg)).array(S),
            "busy": Out(1),
        })

    @staticmethod
    def _tree(m, vals, op, name):
        level = 0
        while len(vals) > 1:
            nxt = []
            for a, b in zip(vals[0::2], vals[1::2], strict=False):
                r = Signal(signed(32), name=f"{name}_n{level}_{len(nxt)}")
                m.d.comb += r.eq(Mux(op == R_SUM, (a + b)[:32],
                                     Mux((op == R_MAX) == (a > b), a, b)))
                nxt.append(r)
            if len(vals) % 2:
                nxt.append(vals[-1])
            vals = nxt
            level += 1
        return vals[0]

    def elaborate(self, platform):
        m = Module()
        S = self.cfg.superlanes
        chain = None
        for k in range(S):
            vals = []
            for l, lane in enumerate(_lanes(self.blocks[k])):
                x = Signal(signed(32), name=f"v{k}_{l}")
                with m.Switch(self.type[k]):
                    with m.Case(0):  # i8
                        m.d.comb += x.eq(lane[:8].as_signed())
                    with m.Case(1):  # i16
                        m.d.comb += x.eq(lane[:16].as_signed())
                    with m.Case(2):  # i32
                        m.d.comb += x.eq(lane.as_signed())
                    with m.Case(3):  # u8
                        m.d.comb += x.eq(lane[:8])
                vals.append(x)
            if chain is not None:
                vals.append(chain)
            nxt = Signal(signed(32), name=f"chain{k}", reset_less=True)
            m.d.sync += nxt.eq(self._tree(m, vals, self.op[k], f"t{k}"))
            chain = nxt
        # the result is present in t + S; tile k writes in t + 2S + 1 + k
        vals = delay_chain(m, chain, 2 * S, "res", reset_less=True)
        ctls = delay_chain(m, self.ctl, 3 * S, "ctl")
        for k in range(S):
            m.d.comb += [self.o_val[k].eq(vals[S + 1 + k]), self.o_ctl[k].eq(ctls[2 * S + 1 + k])]
        m.d.comb += self.busy.eq(_any_valid(ctls, "valid"))
        return m


class SxmTileOutput(wiring.Component):
    """One tile's stream writes: the local, global and reduction units' results merged
    per (direction, stream); ``collision`` if two of them write one in this cycle."""

    def __init__(self, cfg: TspConfig):
        check_slice_config("SxmTileOutput", cfg)
        self.cfg = cfg
        lay = out_layout(cfg)
        super().__init__({
            "loc_ctl": In(lay), "loc_blk": In(BLOCK),
            "glob_ctl": In(lay), "glob_blk": In(BLOCK),
            "red_ctl": In(lay), "red_val": In(32),
            "e_we": Out(cfg.streams_per_direction), "w_we": Out(cfg.streams_per_direction),
            "e_out": Out(cfg.superlane_bits).array(cfg.streams_per_direction),
            "w_out": Out(cfg.superlane_bits).array(cfg.streams_per_direction),
            "collision": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        NS = self.cfg.streams_per_direction

        def block_planes(block):
            return [Cat(*(lane[8 * p:8 * p + 8] for lane in _lanes(block))) for p in range(4)]

        sources = [
            (self.loc_ctl, block_planes(self.loc_blk)),
            (self.glob_ctl, block_planes(self.glob_blk)),
            (self.red_ctl, [self.red_val[8 * p:8 * p + 8].replicate(LANES) for p in range(4)]),
        ]
        hits, rots = [], []
        for u, (ctl, planes) in enumerate(sources):
            rot = []  # rot[q] = plane (q - out_s) mod 4: stream s carries rot[s % 4]
            for q in range(4):
                r = Signal(len(planes[0]), name=f"u{u}_rot{q}")
                with m.If(ctl.valid):  # (0 otherwise: the simulator skips it)
                    m.d.comb += r.eq(Array(planes)[(q - ctl.out_s)[:2]])
                rot.append(r)
            rots.append(rot)
            he, hw = Signal(NS, name=f"u{u}_e"), Signal(NS, name=f"u{u}_w")
            span = stream_span(ctl.valid, ctl.out_s, ctl.nb, NS)
            m.d.comb += [he.eq(Mux(ctl.out_d, 0, span)), hw.eq(Mux(ctl.out_d, span, 0))]
            hits.append((he, hw))
        coll = Const(0)
        for a in range(len(sources)):
            for b in range(a + 1, len(sources)):
                for d in range(2):
                    coll = coll | (hits[a][d] & hits[b][d]).any()
        m.d.comb += self.collision.eq(coll)
        any_valid = self.loc_ctl.valid | self.glob_ctl.valid | self.red_ctl.valid
        for d, (we, out) in enumerate(((self.e_we, self.e_out), (self.w_we, self.w_out))):
            m.d.comb += we.eq(hits[0][d] | hits[1][d] | hits[2][d])
            with m.If(any_valid):  # the data matter only where a write enable is high
                for s in range(NS):
                    val = rots[2][s % 4]
                    for u in (1, 0):
                        val = Mux(hits[u][d][s], rots[u][s % 4], val)
                    m.d.comb += out[s].eq(val)
        return m


# ============================================================================ the slice
class SxmSlice(wiring.Component):
    """One SXM slice column (see the module docstring for structure and timing)."""

    def __init__(self, cfg: TspConfig):
        check_slice_config("SxmSlice", cfg, min_streams=4, why="int32 moves")
        self.cfg = cfg
        super().__init__(SliceSignature(cfg))

    def _tile_layout(self):
        """Control that travels north with the instruction (one tile per cycle)."""
        return data.StructLayout({
            "valid": 1,
            "in_s": 5,
            "in_d": 1,
            "loc": 1,  # SHS / ROTS
            "rot": 1,  # ROTS
            "n": signed(5),
            "glob": 1,  # SHV / ROTV / DIST / PERM / PMAP
            "red": 1,  # RMAX / RMIN / RSUM
            "red_op": 2,
            "type": 2,
            "pmap": 1,
            "out": out_layout(self.cfg),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        S, VL, NS = cfg.superlanes, cfg.vector_length, cfg.streams_per_direction
        assert isa.latency("SHS", cfg) == 2 and isa.latency("SHV", cfg) == 2 * S
        assert isa.latency("RSUM", cfg) == 2 * S + 1 and isa.latency("PMAP", cfg) == 1

        # ---------------------------------------------------------- decode (issue cycle)
        word, valid = self.issue.word, self.issue.valid
        op = opcode_of(word)

        def is_op(*names):
            return valid & Cat(*(op == OPC[n] for n in names)).any()

        is_loc = is_op("SHS", "ROTS")
        is_glob = is_op("SHV", "ROTV", "DIST", "PERM")
        is_red = is_op("RMAX", "RMIN", "RSUM")
        is_pmap = is_op("PMAP")
        R = cfg.sxm_transpose_rows
        is_tput = is_op("TPUT") if R else None  # (no transposer: illegal words)
        is_tget = is_op("TGET") if R else None
        v = view(word, KIND, "RSUM")  # in, out, type, otype: same bits in every SXM op
        n = Signal(signed(34))
        mp = Signal(signed(34))
        off_a, off_b = self.issue.off_a, self.issue.off_b
        m.d.comb += [
            n.eq(strided(word, KIND, "SHS", "n", off_a, off_b)),
            mp.eq(strided(word, KIND, "PERM", "map", off_a, off_b)),
        ]
        if R:
            tpos = Signal(signed(34))  # TPUT row / TGET col (the same bits, stride A)
            m.d.comb += tpos.eq(strided(word, KIND, "TPUT", "row", off_a, off_b))
        nb = Signal(3)
        ob = Signal(3)
        m.d.comb += [nb.eq(_nbytes(v.type)), ob.eq(Mux(is_red, _nbytes(v.otype), nb))]

        def within(x, lo, hi):
            return (x >= lo) & (x <= hi)

        moves = is_loc | is_glob | is_red
        wrong = (
            ~legal_checks(word, KIND, cfg)
            | (is_loc & ~within(n, -(LANES - 1), LANES - 1))
            | (is_op("SHV", "ROTV") & ~within(n, -(VL - 1), VL - 1))
            | (is_op("DIST") & ~within(n, 0, VL - 1))
            | (is_op("PMAP", "PERM") & ~within(mp, 0, isa.SXM_MAPS - 1))
            | (is_pmap & (v.in_s > NS - 2))
            | (moves & (v.in_s + nb > NS))
            | (moves & (v.out_s + ob > NS))
        )
        t_in = moves | is_pmap  # the tiles fetch operand planes
        g_in = is_glob | is_pmap  # ... for the global unit
        g_any = g_in  # the global unit has an instruction
        writes = moves  # a result is written
        if R:  # one int8 plane in (TPUT) or out (TGET): the stream fields' domains suffice
            wrong = (wrong | (is_tput & ~within(tpos, 0, R - 1))
                     | (is_tget & ~within(tpos, 0, VL - 1)))
            t_in, g_in = t_in | is_tput, g_in | is_tput
            g_any, writes = g_in | is_tget, writes | is_tget
        bad = Signal()
        m.d.comb += bad.eq(valid & wrong)
        ok = ~bad

        out0 = Signal(out_layout(cfg))
        m.d.comb += [
            out0.valid.eq(ok & writes),
            out0.out_s.eq(v.out_s),
            out0.out_d.eq(v.out_d),
            out0.nb.eq(ob),
        ]
        m.submodules.skew = skew = SkewChain(self._tile_layout(), S)
        ti = skew.i
        m.d.comb += [
            ti.valid.eq(ok & t_in),
            ti.in_s.eq(v.in_s),
            ti.in_d.eq(v.in_d),
            ti.loc.eq(is_loc),
            ti.rot.eq(is_op("ROTS")),
            ti.n.eq(n[:5]),
            ti.glob.eq(g_in),
            ti.red.eq(is_red),
            ti.red_op.eq(Mux(is_op("RMAX"), R_MAX, Mux(is_op("RMIN"), R_MIN, R_SUM))),
            ti.type.eq(v.type),
            ti.pmap.eq(is_pmap),
            ti.out.eq(out0),
        ]

        m.submodules.glob = glob = SxmGlobalUnit(cfg)
        m.submodules.red = red = SxmReduceUnit(cfg)
        g_op = Mux(is_op("SHV"), G_SHV, Mux(is_op("ROTV"), G_ROTV,
                                              Mux(is_op("DIST"), G_DIST, G_PERM)))
        with m.If(ok & g_any):  # operand isolation: zero unless used
            m.d.comb += [
                glob.ctl.valid.eq(is_glob if not R else is_glob | is_tget),
                glob.ctl.op.eq(g_op),
                glob.ctl.n.eq(n[:11]),
                glob.ctl.map.eq(mp[:2]),
                glob.ctl.pmap.eq(is_pmap),
                glob.ctl.out.eq(out0),
            ]
            if R:
                tv = view(word, KIND, "TGET")
                m.d.comb += [
                    glob.ctl.tput.eq(is_tput),
                    glob.ctl.tget.eq(is_tget),
                    glob.ctl.trow.eq(tpos),
                    glob.ctl.tcol.eq(tpos),
                    glob.ctl.trows.eq(tv.rows),
                ]
        with m.If(ok & is_red):
            m.d.comb += red.ctl.eq(out0)

        # ---------------------------------------------------------- per tile (t + k)
        pmap_bad = []
        collision = Signal()
        busy = [skew.busy, glob.busy, red.busy]
        for k in range(S):
            tile, c = self.tiles[k], skew.o[k]
            sb = cfg.stream_index_bits
            planes = []
            for p in range(4):
                sig = Signal(cfg.superlane_bits, name=f"in{k}_p{p}")
                with m.If(c.valid):  # operand isolation: zero unless an instruction reads
                    m.d.comb += sig.eq(stream_select(tile, sb, (c.in_s + p)[:sb], c.in_d))
                planes.append(sig)
            blk = Cat(*(Cat(*(planes[p][8 * l:8 * l + 8] for p in range(4)))
                        for l in range(LANES)))

            # PMAP entries must be lane indices
            bad_k = Signal(name=f"pmap_bad{k}")
            m.d.comb += bad_k.eq(c.valid & c.pmap & Cat(*(
                Cat(planes[0][8 * l:8 * l + 8], planes[1][8 * l:8 * l + 8]) >= VL
                for l in range(LANES))).any())
            pmap_bad.append(bad_k)

            loc = m.submodules[f"loc{k}"] = SxmLocalUnit(cfg)
            busy.append(loc.busy)
            with m.If(c.valid & c.loc):
                m.d.comb += [loc.blk.eq(blk), loc.rot.eq(c.rot), loc.n.eq(c.n),
                             loc.ctl.eq(c.out)]
            with m.If(c.valid & c.glob):
                m.d.comb += glob.blocks[k].eq(blk)
            with m.If(c.valid & c.red):
                m.d.comb += [red.blocks[k].eq(blk), red.op[k].eq(c.red_op),
                             red.type[k].eq(c.type)]

            o = m.submodules[f"out{k}"] = SxmTileOutput(cfg)
            m.d.comb += [
                o.loc_ctl.eq(loc.o_ctl), o.loc_blk.eq(loc.o_blk),
                o.glob_ctl.eq(glob.o_ctl[k]), o.glob_blk.eq(glob.o_blk[k]),
                o.red_ctl.eq(red.o_ctl[k]), o.red_val.eq(red.o_val[k]),
                tile.e_we.eq(o.e_we), tile.w_we.eq(o.w_we),
            ]
            for s in range(NS):
                m.d.comb += [tile.e_out[s].eq(o.e_out[s]), tile.w_out[s].eq(o.w_out[s])]
            if k == 0:
                m.d.comb += collision.eq(o.collision)

        m.d.comb += self.busy.eq(Cat(*busy).any())
        with m.If(bad):
            m.d.comb += [self.error.eq(1), self.error_code.eq(ErrorCode.ILLEGAL_INSTRUCTION)]
        with m.Elif(collision):
            m.d.comb += [self.error.eq(1), self.error_code.eq(ErrorCode.STREAM_COLLISION)]
        with m.Elif(Cat(*pmap_bad).any()):
            m.d.comb += [self.error.eq(1), self.error_code.eq(ErrorCode.VALUE_RANGE)]
        return m
