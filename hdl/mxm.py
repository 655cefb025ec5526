"""The MXM slice: a vector-length-square int8 matrix unit with int32 accumulators.

Hardware (VL = ``cfg.vector_length``, S = ``cfg.superlanes``):

* `MxmWeights`: two VL x VL int8 weight buffers (registers; one signal of VL bytes per
  row and buffer).  A buffer-select bit ``act`` names the active one; IW flips it (no
  copy).  ``W[i, j]`` is the weight of output lane ``i`` and input lane ``j``.
* `MxmMacArray`: VL x VL signed 8 x 8 multipliers and, per output lane, stage 1 of the
  adder tree: the 16 products of each input superlane (16-bit) summed to 20 bits,
  registered (VL x S partials: the narrowest place to cut the tree).  Stage 2 (in the
  slice) sums the S partials (``+ log2 S`` bits: for VL = 64 the sum of 64 products
  -128 x -128 = 2**20 needs 22 signed bits; every tree level widens by one bit, so nothing
  overflows) and adds the accumulator slot, wrapping to int32.
* 32 accumulator slots of VL int32 in a `lib.memory.Memory` (one 32*VL-bit row per slot,
  a synchronous read port transparent for the write port).

Timing (``t`` = issue cycle in superlane-0 time, ``D = 2S + 1``):

* Every instruction enters the *core* (weights, MACs, accumulators) exactly ``D`` cycles
  after issue, in issue order.  Superlane ``k`` of its stream operands (``x``, and the
  weight vector ``w`` of a load) is taken from ``tiles[k]`` in cycle ``t + k`` (the
  operand select travels north in a `SkewChain`) and delayed ``D - k`` cycles, so the
  whole vector is present in ``t + D``; the decoded control is delayed ``D`` cycles.  The
  lines hold zero unless an instruction reads the operand, so the MAC array only toggles
  for MVMs.  Spending the latency budget on 8-bit operand lines in front of the
  multipliers, rather than on 32-bit results behind them, is the cheapest place for the
  registers, and it lets the weights be read at the same shifted time as they are
  written: because every instruction is shifted by the same ``D``, the core sees the
  model's issue-order semantics (a load writes the shadow buffer ``~act`` at the end of
  ``t + D``, IW flips ``act`` at the end of ``t + D``, an MVM reads ``act``'s weights in
  ``t + D``).  The model's rule that IW waits for loads in flight (``t + 1`` for LW,
  ``t + 2S - 1`` for LWT) is checked at issue with a down-counter.
* MVM: ``t + D`` products and stage 1 (registered, accumulator row address presented),
  ``t + D + 1 = t + 2S + 2 = t + L``: stage 2, ``+ acc`` and the int32 wrap; the result
  is written back to the slot at the end of that cycle (the next MVM's read is
  transparent to it) and superlane 0 of it is driven onto streams out..out+3 in that
  cycle; superlane ``k`` of the result is delayed ``k`` more cycles (written in
  ``t + L + k``).

Multi-row weight loads (``K = cfg.mxm_load_rows`` > 1; K = 1 builds exactly the hardware
without them): ``LW``/``LWT``/``MVM lw=|lwt=`` with ``extra`` write rows (columns)
``row..row+extra`` of the shadow buffer from streams ``w..w+extra`` in one instruction, the
rows inside one aligned group of K (``row // K == (row + extra) // K``).  There are K weight
operand lines instead of one, each the skewed and delayed VL-byte line above (taken in
``t + k``, whole in ``t + D``): line ``j`` carries stream ``w + j - row % K`` for ``row % K
<= j <= row % K + extra`` and zero otherwise (operand isolation; the skew chain carries a
K-bit line mask and line 0's stream).  Shadow row ``i`` is written (end of ``t + D``, as a
one-row load) from line ``i % K`` when ``i // K == row // K`` and its line is in the mask:
no data multiplexer per row, only the per-line stream select.  LWT: column ``c`` of every
row ``i`` takes byte ``i`` of line ``c % K`` -- the K lines' byte ``i`` repeated VL / K
times, merged under the column mask as for one column (O(1) wide operations per row).  The
core control word carries the line mask; the issue checks add the group rule (after the
REPEAT offset, on the strided row), ``w + extra <= NS - 1`` and ``extra = 0`` for an MVM
without a load.  The IW hazard counter is unchanged (same landing cycles).

Extra port: ``mvm`` is high in the issue cycle of every MVM (the chip counts
matrix-vector-product cycles from it).  Errors (``error``/``error_code``, combinational
in the issue cycle): ``ILLEGAL_INSTRUCTION`` for a word the ISA rejects or a REPEAT-
strided ``row``/``acc`` out of range, and ``ILLEGAL_INSTRUCTION`` for an IW issued while
a weight load is still in flight (the model refuses it).  All MVM results have the same
latency, so the MXM can never write one stream twice in one cycle.
"""

from __future__ import annotations

from amaranth import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from arch import isa
from arch.config import TspConfig

from .slice import (
    LANES,
    ErrorCode,
    SliceSignature,
    check_slice_config,
    check_vector_length,
    delay_chain,
    legal_checks,
    opcode_of,
    replica_count,
    stream_select,
    stream_span,
    stream_write_enables,
    strided,
    view,
)
from .tile import SkewChain

__all__ = ["MxmMacArray", "MxmMacBlock", "MxmSignature", "MxmSlice", "MxmWeights"]

KIND = "MXM"
OPC = isa.OPCODES[KIND]


def _tree(values):
    """Sum a list of signed values with a balanced tree (each level widens by one bit)."""
    vals = list(values)
    while len(vals) > 1:
        nxt = [a + b for a, b in zip(vals[0::2], vals[1::2], strict=False)]
        if len(vals) % 2:
            nxt.append(vals[-1])
        vals = nxt
    return vals[0]


class MxmWeights(wiring.Component):
    """The two VL x VL int8 weight buffers and the buffer-select bit ``act``.

    Strobes (acting at the end of the cycle): ``lw`` writes row ``row`` of the shadow
    buffer (``~act``) with ``w``; ``lwt`` writes column ``row`` of it (``W[i, row] =
    w[i]``); ``iw`` flips ``act``.  ``rows[i]`` is row ``i`` of the active buffer (VL
    bytes, byte ``j`` = ``W[i, j]``) in a cycle with ``read`` (an MVM: the MAC array reads
    them), 0 in others (so the simulator does not copy the buffer in every cycle).  The
    contents and ``act`` have no reset (the model's weights persist across runs).

    ``k`` > 1 (`TspConfig.mxm_load_rows`): ``w`` is ``k`` operand lines and ``lines`` a
    mask of them; a load writes the rows (columns) ``i`` of the aligned group ``row // k``
    whose line ``i % k`` is in ``lines``, row ``i`` from line ``i % k`` (LWT: byte ``i`` of
    line ``c % k`` into column ``c``): no data multiplexer per row.
    """

    def __init__(self, vl: int, k: int = 1):
        check_vector_length("MxmWeights", vl)
        if isinstance(k, bool) or not isinstance(k, int) or k < 1 or k & (k - 1) or vl % k:
            raise ValueError(f"MxmWeights k must be a power of two dividing vl = {vl} (the "
                             f"rows per load, cfg.mxm_load_rows), got {k!r}")
        self.vl = vl
        self.k = k
        rb = max(1, (vl - 1).bit_length())
        members = {"lw": In(1), "lwt": In(1), "iw": In(1), "read": In(1), "row": In(rb),
                   "w": In(8 * vl) if k == 1 else In(8 * vl).array(k),
                   "rows": Out(8 * vl).array(vl)}
        if k > 1:
            members["lines"] = In(k)
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        VL, K = self.vl, self.k
        act = Signal(name="act", reset_less=True)
        with m.If(self.iw):
            m.d.sync += act.eq(~act)
        bufs = [[Signal(VL * 8, name=f"w{b}_r{i}", reset_less=True) for i in range(VL)]
                for b in range(2)]
        row_hit = Signal(VL)
        # LWT writes byte `row` of every row: one mask of VL bytes, 0xFF at byte `row`
        # (decoded once), and per row (w_i everywhere & mask) | (row & ~mask): O(VL) wide
        # operations, not VL x VL byte multiplexers (the simulator's code scales so)
        byte_hit = Signal(VL)
        col_mask = Cat(*(byte_hit[j].replicate(8) for j in range(VL)))
        if K == 1:
            def line(i):
                return self.w

            def col_bytes(i):  # byte i of the line, in every column
                return self.w[8 * i:8 * i + 8].replicate(VL)
        else:
            # rows (columns) i of the group row // K whose line i % K is loaded; column c
            # takes byte i of line c % K: the K lines' byte i, repeated VL / K times
            lk = (K - 1).bit_length()

            def line(i):
                return self.w[self.line_of(i)]

            def col_bytes(i):
                return Cat(*(self.w[self.line_of(j)][8 * i:8 * i + 8]
                             for j in range(K))).replicate(VL // K)
        with m.If(self.lw | self.lwt):  # only in a load cycle (the simulator skips the rest)
            # the rows (columns) loaded, hit(i) for every i, decoded by one shift: the lines'
            # mask moved to the aligned group's first row (a comparison per row costs the
            # simulator VL of them in every cycle)
            lines, at = ((Const(1, 1), self.row) if K == 1 else
                         (self.lines, Cat(Const(0, lk), self.row[lk:])))
            hits = (lines << at)[:VL]
            m.d.comb += [row_hit.eq(Mux(self.lw, hits, 0)), byte_hit.eq(hits)]
            for b in range(2):
                shadow = Signal(name=f"shadow{b}")
                m.d.comb += shadow.eq(act != b)
                for i in range(VL):
                    row = bufs[b][i]
                    col = (col_bytes(i) & col_mask) | (row & ~col_mask)
                    with m.If(shadow & row_hit[i]):
                        m.d.sync += row.eq(line(i))
                    with m.Elif(shadow & self.lwt):
                        m.d.sync += row.eq(col)
        with m.If(self.read):
            for i in range(VL):
                m.d.comb += self.rows[i].eq(Mux(act, bufs[1][i], bufs[0][i]))
        return m

    def line_of(self, i: int) -> int:
        """The operand line row (column) ``i`` is written from (K > 1)."""
        return i % self.k


class MxmMacBlock(wiring.Component):
    """``rows`` (at most 16) output lanes x the 16 input lanes of one superlane: signed
    8 x 8 products and their 4-level adder tree, registered (``part[i]``, 20 bits, loads
    with ``en``).  `MxmMacArray` is a grid of these, so the simulator's C++ holds one
    block's code rather than VL x VL multipliers (`sim/stamp.py`)."""

    def __init__(self, rows: int):
        self.n_rows = replica_count("MxmMacBlock", "rows", rows, LANES)
        super().__init__({
            "en": In(1),
            "x": In(8 * LANES),
            "rows": In(8 * LANES).array(self.n_rows),
            "part": Out(signed(MxmMacArray.PART_BITS)).array(self.n_rows),
        })

    def elaborate(self, platform):
        m = Module()
        xs = [self.x[8 * j:8 * j + 8].as_signed() for j in range(LANES)]
        for i in range(self.n_rows):
            wrow = self.rows[i]
            prods = [wrow[8 * j:8 * j + 8].as_signed() * xs[j] for j in range(LANES)]
            p = Signal(signed(MxmMacArray.PART_BITS), name=f"p{i}", reset_less=True)
            with m.If(self.en):
                m.d.sync += p.eq(_tree(prods))
            m.d.comb += self.part[i].eq(p)
        return m


class MxmMacArray(wiring.Component):
    """VL x VL signed 8 x 8 multipliers and the first adder-tree stage, registered.

    ``part[i][g]`` (one cycle after ``x``/``rows``) = sum over the 16 input lanes ``j`` of
    superlane ``g`` of ``rows[i][j] * x[j]``: 16-bit signed products (-128 * -128 = 2**14
    is the largest), summed by a 4-level tree that widens one bit per level, 20 bits.
    The ``part`` registers load only in a cycle with ``en`` (an MVM); otherwise they hold.
    Built as a grid of `MxmMacBlock` (16 output lanes x one input superlane each).
    """

    PART_BITS = 8 + 8 + 4

    def __init__(self, vl: int, rows: int | None = None):
        check_vector_length("MxmMacArray", vl)
        rows = replica_count("MxmMacArray", "rows", rows, vl, "the vector length")
        self.vl = vl
        self.n_rows = rows
        self.groups = vl // LANES
        super().__init__({
            "en": In(1),
            "x": In(8 * vl),
            "rows": In(8 * vl).array(rows),
            "part": Out(signed(self.PART_BITS)).array(rows, self.groups),
        })

    def elaborate(self, platform):
        m = Module()
        for r0 in range(0, self.n_rows, LANES):
            n = min(LANES, self.n_rows - r0)
            for g in range(self.groups):
                blk = m.submodules[f"blk{r0 // LANES}_{g}"] = MxmMacBlock(n)
                cols = slice(8 * LANES * g, 8 * LANES * (g + 1))
                m.d.comb += [blk.en.eq(self.en), blk.x.eq(self.x[cols])]
                for i in range(n):
                    m.d.comb += [blk.rows[i].eq(self.rows[r0 + i][cols]),
                                 self.part[r0 + i][g].eq(blk.part[i])]
        return m


class MxmSignature(SliceSignature):
    """`SliceSignature` plus ``mvm: Out(1)`` (high in the issue cycle of every MVM)."""

    def __init__(self, cfg: TspConfig):
        self.cfg = cfg
        members = dict(SliceSignature(cfg).members)
        members["mvm"] = Out(1)
        wiring.Signature.__init__(self, members)

    def __eq__(self, other):
        return isinstance(other, MxmSignature) and self.cfg.params() == other.cfg.params()

    def __hash__(self):
        return hash(("MxmSignature", tuple(sorted(self.cfg.params().items()))))


class MxmSlice(wiring.Component):
    """One MXM slice column (see the module docstring for structure and timing).

    ``mac_rows`` (cost flow only; default all VL): build the MAC array's first
    ``mac_rows`` output rows; the others' partial sums are 0.  Every path of the slice is
    still there, only replicas are missing: what `sim/cost_pnr.py` places when the whole
    array does not fit the device."""

    def __init__(self, cfg: TspConfig, *, mac_rows: int | None = None):
        check_slice_config("MxmSlice", cfg, min_streams=4, why="int32 results")
        self.mac_rows = replica_count("MxmSlice", "mac_rows", mac_rows, cfg.vector_length,
                                      f"the vector length of config {cfg.name!r}")
        self.cfg = cfg
        super().__init__(MxmSignature(cfg))

    # ------------------------------------------------------------------ layouts
    def _core_layout(self):
        cfg = self.cfg
        return data.StructLayout({
            "valid": 1,  # any of the ops below
            "iw": 1,
            "lw": 1,
            "lwt": 1,
            "mvm": 1,
            "row": self._row_bits,
            "acc": 5,
            "accum": 1,
            "emit": 1,
            "out_s": cfg.stream_index_bits,
            "out_d": 1,
            # K > 1: the operand lines row % K .. row % K + extra a load writes from
            **({"lines": cfg.mxm_load_rows} if cfg.mxm_load_rows > 1 else {}),
        })

    @property
    def _row_bits(self):
        return max(1, (self.cfg.vector_length - 1).bit_length())

    # ------------------------------------------------------------------ elaborate
    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        S, VL, NS = cfg.superlanes, cfg.vector_length, cfg.streams_per_direction
        K = cfg.mxm_load_rows
        lk = (K - 1).bit_length()
        D = 2 * S + 1  # issue -> core
        L_lwt = isa.latency("LWT", cfg)
        assert isa.latency("MVM", cfg) == D + 1 and isa.latency("LW", cfg) == 1

        # ---------------------------------------------------------- decode (issue cycle)
        word, valid = self.issue.word, self.issue.valid
        off_a, off_b = self.issue.off_a, self.issue.off_b
        op = opcode_of(word)
        is_lw = valid & (op == OPC["LW"])
        is_lwt = valid & (op == OPC["LWT"])
        is_iw = valid & (op == OPC["IW"])
        is_mvm = valid & (op == OPC["MVM"])
        v_ld = view(word, KIND, "LW")  # LW and LWT share the layout
        v_mvm = view(word, KIND, "MVM")
        ld_row = Signal(signed(34))
        mvm_row = Signal(signed(34))
        acc = Signal(signed(34))
        m.d.comb += [
            ld_row.eq(strided(word, KIND, "LW", "row", off_a, off_b)),
            mvm_row.eq(strided(word, KIND, "MVM", "row", off_a, off_b)),
            acc.eq(strided(word, KIND, "MVM", "acc", off_a, off_b)),
        ]
        m.d.comb += self.mvm.eq(is_mvm)

        def in_range(v, hi):
            return (v >= 0) & (v <= hi)

        multi = []  # multi-row loads (K > 1): the rows' group (after the stride), streams
        if K > 1:
            extra = v_ld.extra
            any_ld = is_lw | is_lwt | (is_mvm & (v_mvm.ld != 0))
            ld_lo = Mux(is_mvm, mvm_row[:lk], ld_row[:lk])
            multi = [any_ld & (ld_lo + extra > K - 1),
                     any_ld & (v_ld.w_s + extra > NS - 1),
                     is_mvm & (v_mvm.ld == 0) & (extra != 0)]

        # the checks the model's validate() and REPEAT stride checks make
        bad = Signal()
        checks = (
            ~legal_checks(word, KIND, cfg)
            | ((is_lw | is_lwt) & ~in_range(ld_row, VL - 1))
            | (is_mvm & ~in_range(mvm_row, VL - 1))
            | (is_mvm & ~in_range(acc, isa.MXM_ACC_SLOTS - 1))
            | (is_mvm & (v_mvm.ld == 0) & ((v_mvm.row != 0) | (v_mvm.w_s != 0)
                                           | (v_mvm.w_d != 0)))
            | (is_mvm & ~v_mvm.emit & ((v_mvm.out_s != 0) | (v_mvm.out_d != 0)))
            | (is_mvm & v_mvm.emit & (v_mvm.out_s > NS - 4))
        )
        for chk in multi:
            checks = checks | chk
        m.d.comb += bad.eq(valid & checks)

        # IW hazard: cycles for which a load to the shadow buffer is still in flight
        cnt_bits = max(1, (L_lwt - 1).bit_length())
        load_cnt = Signal(cnt_bits)
        cnt_dec = Mux(load_cnt != 0, load_cnt - 1, 0)
        mvm_ld = is_mvm & (v_mvm.ld != 0)
        new_lw = is_lw | (mvm_ld & (v_mvm.ld == 1))
        new_lwt = is_lwt | (mvm_ld & (v_mvm.ld == 2))
        with m.If(new_lwt & (cnt_dec < L_lwt - 1)):
            m.d.sync += load_cnt.eq(L_lwt - 1)
        with m.Else():
            m.d.sync += load_cnt.eq(cnt_dec)
        iw_hazard = is_iw & (load_cnt != 0)

        with m.If(bad):
            m.d.comb += [self.error.eq(1), self.error_code.eq(ErrorCode.ILLEGAL_INSTRUCTION)]
        with m.Elif(iw_hazard):
            m.d.comb += [self.error.eq(1), self.error_code.eq(ErrorCode.ILLEGAL_INSTRUCTION)]
        ok = ~bad & ~iw_hazard

        rb = self._row_bits
        ctl0 = Signal(self._core_layout())
        m.d.comb += [
            ctl0.iw.eq(is_iw & ok),
            ctl0.lw.eq(new_lw & ok),
            ctl0.lwt.eq(new_lwt & ok),
            ctl0.mvm.eq(is_mvm & ok),
            ctl0.valid.eq((is_iw | new_lw | new_lwt | is_mvm) & ok),
            ctl0.row.eq(Mux(is_mvm, mvm_row[:rb], ld_row[:rb])),
            ctl0.acc.eq(acc[:5]),
            ctl0.accum.eq(v_mvm.accum),
            ctl0.emit.eq(is_mvm & v_mvm.emit),
            ctl0.out_s.eq(v_mvm.out_s),
            ctl0.out_d.eq(v_mvm.out_d),
        ]
        if K > 1:  # lines row % K .. row % K + extra (the group rule holds: checked above)
            lo = ctl0.row[:lk]

            def line_on(j):  # lo <= j <= lo + extra (without the comparisons that are constant)
                first = (lo == 0) if j == 0 else (lo <= j) if j < K - 1 else None
                last = (lo + v_ld.extra >= j) if j else None
                return first if last is None else last if first is None else first & last
            m.d.comb += ctl0.lines.eq(Cat(*(line_on(j) for j in range(K))))

        # ---------------------------------------------------------- operands (t + k)
        # (K > 1: w_en is a mask of the K weight lines and w_s the stream of line 0: line
        # j carries stream w_s + j - row % K)
        sel_layout = data.StructLayout({"x_en": 1, "x_s": 5, "x_d": 1,
                                        "w_en": K, "w_s": 5, "w_d": 1})
        m.submodules.opsel = opsel = SkewChain(sel_layout, S, valid_field=None)
        m.d.comb += [
            opsel.i.x_en.eq(ctl0.mvm),
            opsel.i.w_en.eq(ctl0.lw | ctl0.lwt if K == 1
                            else Mux(ctl0.lw | ctl0.lwt, ctl0.lines, 0)),
            opsel.i.x_s.eq(v_mvm.x_s), opsel.i.x_d.eq(v_mvm.x_d),
            opsel.i.w_s.eq(v_ld.w_s if K == 1 else v_ld.w_s - ctl0.row[:lk]),
            opsel.i.w_d.eq(v_ld.w_d),
        ]
        SB = cfg.superlane_bits
        x_blocks, w_blocks = [], [[] for _ in range(K)]
        for k in range(S):
            tile, sel = self.tiles[k], opsel.o[k]
            sb = cfg.stream_index_bits
            # operand isolation: the lines (and the MAC array) only change for real operands
            xk = Mux(sel.x_en, stream_select(tile, sb, sel.x_s, sel.x_d), 0)
            wk = Mux(sel.w_en, stream_select(tile, sb, sel.w_s, sel.w_d), 0) if K == 1 else \
                Mux(sel.w_en[0], stream_select(tile, sb, sel.w_s, sel.w_d), 0)
            lines = [("x", xk, x_blocks), ("w", wk, w_blocks[0])]
            lines += [(f"w{j}_", Mux(sel.w_en[j], stream_select(tile, sb,
                                                                 self.line_stream(sel, j),
                                                                 sel.w_d), 0), w_blocks[j])
                      for j in range(1, K)]
            # delay superlane k by D - k cycles: all superlanes line up in t + D
            for name, v, out in lines:
                for n in range(D - k):
                    r = Signal(SB, name=f"{name}{k}_d{n + 1}", reset_less=True)
                    m.d.sync += r.eq(v)
                    v = r
                out.append(v)
        x_vec = Cat(*x_blocks)  # VL int8 at t + D
        w_vecs = [Cat(*b) for b in w_blocks]  # weight line j (K > 1: one per line)

        # ---------------------------------------------------------- control delay (t + D)
        c = ctl0
        busy = []  # in-flight work: any valid control word after issue up to the last write
        for n in range(D):
            r = Signal(self._core_layout(), name=f"ctl_d{n + 1}")
            m.d.sync += r.eq(c)
            busy.append(r.valid)
            c = r
        core = c

        # ---------------------------------------------------------- weights, MACs (core)
        m.submodules.weights = wts = self.weights_class(VL, K)
        m.submodules.mac = mac = MxmMacArray(VL, rows=self.mac_rows)
        m.d.comb += [
            wts.lw.eq(core.valid & core.lw),
            wts.lwt.eq(core.valid & core.lwt),
            wts.iw.eq(core.valid & core.iw),
            wts.row.eq(core.row),
            *([wts.w.eq(w_vecs[0])] if K == 1 else
              [wts.lines.eq(core.lines), *(wts.w[j].eq(w_vecs[j]) for j in range(K))]),
            mac.en.eq(core.valid & core.mvm),
            wts.read.eq(core.valid & core.mvm),
            mac.x.eq(x_vec),
        ]
        for i in range(self.mac_rows):
            m.d.comb += mac.rows[i].eq(wts.rows[i])
        zero = [Const(0, signed(MxmMacArray.PART_BITS))] * mac.groups
        parts = [mac.part[i] if i < self.mac_rows else zero for i in range(VL)]

        m.submodules.acc = accmem = Memory(shape=unsigned(32 * VL), depth=isa.MXM_ACC_SLOTS,
                                           init=[])
        acc_wr = accmem.write_port()
        acc_rd = accmem.read_port(domain="sync", transparent_for=(acc_wr,))
        m.d.comb += acc_rd.addr.eq(core.acc)

        st2 = Signal(self._core_layout(), name="ctl_st2")
        m.d.sync += st2.eq(core)
        busy.append(st2.valid & st2.mvm)  # loads and IW are done in the core cycle

        # ---------------------------------------------------------- MVM stage 2 (t + L)
        res = []
        for i in range(VL):
            a = acc_rd.data[32 * i:32 * i + 32].as_signed()
            f = _tree(parts[i])
            r = Signal(32, name=f"r{i}")
            with m.If(st2.valid & st2.mvm):  # (0 otherwise: the simulator skips the sum)
                m.d.comb += r.eq(f + Mux(st2.accum, a, 0))
            res.append(r)
        m.d.comb += [
            acc_wr.addr.eq(st2.acc),
            acc_wr.data.eq(Cat(*res)),
            acc_wr.en.eq(st2.valid & st2.mvm),
        ]

        # ---------------------------------------------------------- emit (t + L + k)
        ctl_k = st2
        blocks = [Cat(*res[LANES * o:LANES * (o + 1)]) for o in range(S)]
        for o in range(S):
            if o:
                nctl = Signal(self._core_layout(), name=f"emit_ctl{o}")
                m.d.sync += nctl.eq(ctl_k)
                busy.append(self._emits(nctl))
                emits = self._emits(ctl_k)
                ctl_k = nctl
                # the later tiles' blocks move on only with an emitting MVM, in registers
                # of at most 64 bits (`delay_chain`: a wider one gated is computed in
                # every cycle by the simulator)
                blocks = blocks[:o] + [
                    delay_chain(m, v, 1, f"emit{o}_b{q}", True, enables=[emits],
                                words=True)[-1]
                    for q, v in zip(range(o, S), blocks[o:], strict=True)]
            self._drive_tile(m, o, ctl_k, blocks[o])
        m.d.comb += self.busy.eq(Cat(*busy).any())
        return m

    #: the weight buffers' class (tests plant bugs in a subclass)
    weights_class = MxmWeights

    @staticmethod
    def line_stream(sel, j: int):
        """The stream index of weight line ``j`` > 0 (K > 1): line 0's plus ``j``."""
        return sel.w_s + j

    @staticmethod
    def _emits(ctl):
        """High where ``ctl`` (a stage's control word) is an MVM that emits its sums."""
        return ctl.valid & ctl.mvm & ctl.emit

    def _drive_tile(self, m, o, ctl, block):
        """Tile ``o`` writes the int32 lanes of ``block`` as 4 byte planes onto
        out..out+3 (combinationally, in the cycle ``ctl`` says)."""
        NS = self.cfg.streams_per_direction
        tile = self.tiles[o]
        planes = [Cat(*(block[32 * l + 8 * b:32 * l + 8 * b + 8] for l in range(LANES)))
                  for b in range(4)]
        # rot[q] = plane (q - out_s) mod 4: stream s carries rot[s % 4]
        rot = []
        emits = self._emits(ctl)
        for q in range(4):
            r = Signal(len(planes[0]), name=f"emit{o}_rot{q}")
            with m.If(emits):  # (0 otherwise: read only with the write enables)
                m.d.comb += r.eq(Array(planes)[(q - ctl.out_s)[:2]])
            rot.append(r)
        stream_write_enables(m, tile, stream_span(emits, ctl.out_s, 4, NS), ctl.out_d)
        for s in range(NS):
            m.d.comb += [tile.e_out[s].eq(rot[s % 4]), tile.w_out[s].eq(rot[s % 4])]
