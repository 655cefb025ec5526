"""The VXM slice: the vector unit in the centre of the chip.

Per lane and instruction ``VXM.type d[:otype][:sat] = OP2(OP1(a, b), c)`` (docs/isa.md,
"VXM operation"; exact semantics golden/machine.py ``_vxm``/``_alu``/``_requant``): two
chained 64-bit ALU stages per lane (`hdl.vxm_alu.build_alu`; its docstring gives the
datapath widths: a 32x32 multiplier in stage 1, 64x32 in stage 2), operands from the E/W
streams (``type``-wide, sign- or zero-extended), the 16 int32 registers of the lane, the
immediate or the lane index; the result reduced to ``otype`` (wrap, or clamp with
``:sat``) goes onto ``otype``-wide streams or into a register.  One instruction per
cycle, latency 3.  (The ISA chains exactly two ops; the chain length is not a config
parameter.)

Structure: the slice is S = ``cfg.superlanes`` tiles (`VxmTile`) of 16 lanes.  The ICU's
word is checked and decoded once, in superlane 0 in the issue cycle ``t``, into a
compact control word (the REPEAT offset already added to ``imm``) that a `SkewChain`
carries north: tile ``k`` receives it in cycle ``t + k``.  Each tile then runs the
same 4-cycle pipeline ``k`` cycles late (all cycles below are superlane-0 cycles + k):

==========  =================================================================
cycle t     operand select: stream byte planes from ``e_in``/``w_in`` (type-wide,
            sign/zero extension), register file read (7 ports: a, b, c and the
            REQUANT windows rK+1, rK+2 of b and of c), immediate, lane index;
            REQUANT parameter range checks.                     -> register
cycle t+1   stage-1 ALU ``r1 = OP1(a, b[, c])``; VALUE_RANGE fault raised.
                                                                -> register
cycle t+2   stage-2 ALU ``r2 = OP2(r1, c)``.                     -> register
cycle t+3   reduce ``r2`` to ``otype`` (clamp if ``:sat`` or OP2 = REQUANT, wrap);
            drive ``e_we``/``e_out`` (or ``w_``) of the ``otype``-wide destination,
            or write the register file at the clock edge ending t+3 (so an
            instruction issued at t+4 reads the new value, one at t+3 the old).
==========  =================================================================

The register file of a tile is one `Memory` of 16 words x (16 lanes x 32 bits): every
lane writes the same register index, so one write port and 7 asynchronous read ports
serve all lanes.  Pipeline registers per lane: 172 bits into stage 1 (a, b, c; REQUANT
``31 - shift`` and zero point of both stages), 134 into stage 2 (r1 64, c, stage-2
REQUANT parameters), 64 into the output stage (r2).  Ops are decoded once per tile
(one-hot) and the stream operand byte planes are selected once per tile (case muxes);
what each lane does on its own (operand extension, the pipeline registers, both ALU
stages, the output reduction) is one `hdl.vxm_lane.VxmLane` per lane.

Faults (``error``/``error_code``, registered, so raised one cycle after detection):

* ILLEGAL_INSTRUCTION in cycle ``t + 1``: an opcode that is neither an ICU nor a VXM
  opcode, a VXM word the model's ``isa.validate`` would refuse (bad selector, operand
  given/missing for the ops' arity, SEL misuse, REQUANT without a register or with
  ``K > 13``, ``imm`` set but unused, streams beyond ``NS``), or ``imm`` out of its
  15-bit range after the REPEAT offset.  The instruction is dropped.
* VALUE_RANGE in cycle ``t + k + 1`` (tile ``k``): a REQUANT whose multiplier is outside
  [0, 2**31 - 1], shift outside [-31, 30] or zero point outside the ``otype`` range in
  some lane (golden.quant.requantize's ValueError).  The instruction still completes.

STREAM_COLLISION cannot happen: every VXM instruction has the same latency and at most
one issues per cycle, so no two write in the same cycle.
"""

from amaranth import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from arch import isa
from arch.config import TspConfig

from .slice import (
    ErrorCode,
    SliceSignature,
    check_slice_config,
    opcode_of,
    replica_count,
    stream_span,
    stream_write_enables,
    view,
)
from .tile import SkewChain, TileStreamsSignature
from .vxm_alu import N_OPS, OP_BIT, TYPE_CODE, type_bounds
from .vxm_lane import VxmLane, decode_layout, stage_layout

_IMM = isa.instr_def("VXM", "VXM").field("imm")
_IMM_LO, _IMM_HI = -(1 << (_IMM.width - 1)), (1 << (_IMM.width - 1)) - 1
_OPS = {op.name: op for op in isa.VXM_OPS}


def control_layout() -> data.StructLayout:
    """The decoded instruction carried north to the tiles (`SkewChain`)."""
    return data.StructLayout({
        "valid": 1,
        "type": 2,
        "otype": 2,
        "sat": 1,
        "op1": 5,
        "op2": 5,
        "a": 7,
        "b": 7,
        "c": 7,
        "d": 7,
        "imm": signed(_IMM.width),  # REPEAT offset included
    })


def _sel_kinds(sel):
    """(is stream, is register, is imm, is lane, is none, is bad) of a 7-bit selector."""
    stream = sel < isa.SEL_REG
    reg = (sel >= isa.SEL_REG) & (sel < isa.SEL_REG + isa.VXM_REGS)
    imm = sel == isa.SEL_IMM
    lane = sel == isa.SEL_LANE
    none = sel == isa.SEL_NONE
    bad = ~(stream | reg | imm | lane | none)
    return stream, reg, imm, lane, none, bad


def _type_bytes(code):
    """Byte count of a type code expression (i8/u8: 1, i16: 2, i32: 4)."""
    return Mux(code == TYPE_CODE["i32"], 4, Mux(code == TYPE_CODE["i16"], 2, 1))


def _arity_is(code, arities):
    """``code`` names an op whose arity is in ``arities``."""
    cond = Const(0)
    for op in isa.VXM_OPS:
        if op.arity in arities:
            cond = cond | (code == op.code)
    return cond


def vxm_word_legal(v, cfg: TspConfig):
    """The checks of ``isa.validate`` for a VXM word (a `view` of it), as an expression.

    Field ranges: only ``op1``/``op2`` have a range narrower than their width."""
    ns = cfg.streams_per_direction
    n_ops = len(isa.VXM_OPS)
    ok = (v.op1 < n_ops) & (v.op2 < n_ops)
    kinds = {k: _sel_kinds(getattr(v, k)) for k in "abcd"}
    for k in "abcd":
        ok &= ~kinds[k][5]
    op1_ternary = _arity_is(v.op1, (3,))
    op2_binary = _arity_is(v.op2, (2,))
    ok &= ~_arity_is(v.op2, (3,))  # SEL is stage 1 only
    ok &= ~op1_ternary | _arity_is(v.op2, (1,))  # SEL consumes c: op2 unary
    need = {
        "a": Const(1),
        "b": _arity_is(v.op1, (2, 3)),
        "c": op1_ternary | op2_binary,
    }
    for k, needed in need.items():
        none = kinds[k][4]
        ok &= Mux(needed, ~none, none)
    ok &= kinds["d"][0] | kinds["d"][1]
    rq = _OPS["REQUANT"].code
    for opf, k in (("op1", "b"), ("op2", "c")):
        is_rq = getattr(v, opf) == rq
        sel = getattr(v, k)
        ok &= ~is_rq | (kinds[k][1] & (sel - isa.SEL_REG + 2 < isa.VXM_REGS))
    any_imm = kinds["a"][2] | kinds["b"][2] | kinds["c"][2]
    ok &= (v.imm == 0) | any_imm
    w = _type_bytes(v.type)
    for k in "abc":
        ok &= ~kinds[k][0] | ((getattr(v, k) & 31) + w <= ns)
    ok &= ~kinds["d"][0] | ((v.d & 31) + _type_bytes(v.otype) <= ns)
    return ok


class VxmTile(wiring.Component):
    """The 16 lanes of one superlane: operand select, register file, two ALU stages and
    the output stage, acting on the control word ``ctl`` in the cycle it arrives.

    ``streams`` is the tile's fabric port; ``fault`` (registered) is a REQUANT parameter
    out of range for the instruction that arrived in the previous cycle.  ``superlane``
    is a tie-off (the slice drives it with the tile's constant superlane number): the
    lane-index operand of lane i is ``16 * superlane + i``, and every tile is the same
    hardware.  ``alu_lanes`` (cost flow only; default 16): only the first ``alu_lanes``
    lanes have their two ALU stages, the others' results are 0 (see `VxmSlice`).
    """

    def __init__(self, cfg: TspConfig, *, alu_lanes: int | None = None):
        check_slice_config("VxmTile", cfg)
        self.alu_lanes = replica_count("VxmTile", "alu_lanes", alu_lanes,
                                       cfg.lanes_per_superlane)
        self.cfg = cfg
        super().__init__({
            "superlane": In(range(max(2, cfg.superlanes))),
            "ctl": In(control_layout()),
            "streams": Out(TileStreamsSignature(cfg)),
            "fault": Out(1),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        ns = cfg.streams_per_direction
        lanes = cfg.lanes_per_superlane
        sb = cfg.superlane_bits
        c0 = self.ctl
        st = self.streams

        def lane_bits(word, i, width=32):
            return word[width * i: width * (i + 1)]

        # ---------------------------------------------------------------- cycle t
        # registers: 16 x (lanes x 32 bits); 7 asynchronous read ports
        m.submodules.regs = regs = Memory(shape=lanes * 32, depth=isa.VXM_REGS, init=[])
        rd = {}
        for name, sel, off in (("a", c0.a, 0), ("b", c0.b, 0), ("c", c0.c, 0),
                               ("b1", c0.b, 1), ("b2", c0.b, 2), ("c1", c0.c, 1),
                               ("c2", c0.c, 2)):
            port = regs.read_port(domain="comb")
            m.d.comb += port.addr.eq(sel[:4] + off)
            rd[name] = port.data

        # decoded once per tile
        dec = Signal(decode_layout(), name="dec0")
        m.d.comb += [
            dec.i8.eq(c0.type == TYPE_CODE["i8"]), dec.i16.eq(c0.type == TYPE_CODE["i16"]),
            dec.i32.eq(c0.type == TYPE_CODE["i32"]), dec.u8.eq(c0.type == TYPE_CODE["u8"]),
            dec.rq1.eq(c0.op1 == OP_BIT["REQUANT"]), dec.rq2.eq(c0.op2 == OP_BIT["REQUANT"]),
        ]
        for j, k in enumerate("abc"):
            sel = getattr(c0, k)
            m.d.comb += [dec.stream[j].eq(sel[6] == 0), dec.reg[j].eq(sel[5:7] == 0b10),
                         dec.lane[j].eq(sel[0])]
        qlo0, qhi0 = type_bounds(m, c0.otype, "q0")

        # stream byte planes of each operand: plane b = stream s+b of its direction
        streams = [st.e_in[s] for s in range(ns)] + [st.w_in[s] for s in range(ns)]
        planes = {}
        for k in "abc":
            sel = getattr(c0, k)
            base = Mux(sel[5], ns, 0) + sel[:5]
            planes[k] = []
            for b in range(4):
                plane = Signal(sb, name=f"{k}_plane{b}")
                # a case mux (cheap to elaborate, unlike a Part), selecting only for an
                # instruction: 0 otherwise, so the simulator skips it in idle cycles
                with m.If(c0.valid), m.Switch(base + b):
                    for j, stream in enumerate(streams):
                        with m.Case(j):
                            m.d.comb += plane.eq(stream)
                    with m.Default():  # past the last stream: an unused plane
                        m.d.comb += plane.eq(0)
                planes[k].append(plane)

        # control pipeline: the lanes' stage-1 and stage-2 controls, then the output's
        ctl_layout = data.StructLayout({
            "w8": 1, "w16": 1, "otype": 2, "sat": 1, "op1": N_OPS, "op2": N_OPS, "d": 7,
        })
        k1 = Signal(ctl_layout, name="ctl1", reset_less=True)
        k2 = Signal(ctl_layout, name="ctl2", reset_less=True)
        k3 = Signal(ctl_layout, name="ctl3", reset_less=True)
        v1, v2, v3 = Signal(name="valid1"), Signal(name="valid2"), Signal(name="valid3")
        m.d.sync += [
            k1.w8.eq(dec.i8 | dec.u8), k1.w16.eq(dec.i16), k1.otype.eq(c0.otype),
            k1.sat.eq(c0.sat), k1.op1.eq(Const(1, N_OPS) << c0.op1),
            k1.op2.eq(Const(1, N_OPS) << c0.op2), k1.d.eq(c0.d), v1.eq(c0.valid),
            k2.eq(k1), v2.eq(v1), k3.eq(k2), v3.eq(v2),
        ]
        m.d.comb += self.busy.eq(v1 | v2 | v3)
        qlo1, qhi1 = type_bounds(m, k1.otype, "q1")
        s1 = Signal(stage_layout(), name="stage1")
        s2 = Signal(stage_layout(), name="stage2")  # (no clamp in stage 2: qlo/qhi 0)
        m.d.comb += [
            s1.valid.eq(v1), s1.op.eq(k1.op1), s1.w8.eq(k1.w8), s1.w16.eq(k1.w16),
            s1.qlo.eq(qlo1), s1.qhi.eq(qhi1),
            s2.valid.eq(v2), s2.op.eq(k2.op2), s2.w8.eq(k2.w8), s2.w16.eq(k2.w16),
        ]
        qlo3, qhi3 = type_bounds(m, k3.otype, "q3")
        sat = Signal(name="sat3")  # :sat, or OP2 = REQUANT (its clamp, see vxm_alu)
        m.d.comb += sat.eq(k3.sat | k3.op2[OP_BIT["REQUANT"]])

        lane_fault, res, reg_words = [], [], []
        for i in range(lanes):
            ln = m.submodules[f"lane{i}"] = VxmLane(alu=i < self.alu_lanes)
            m.d.comb += [
                ln.go.eq(c0.valid), ln.dec.eq(dec), ln.imm.eq(c0.imm),
                ln.lane.eq(self.superlane * lanes + i),
                ln.qlo0.eq(qlo0), ln.qhi0.eq(qhi0),
                ln.s1.eq(s1), ln.s2.eq(s2),
                ln.out_valid.eq(v3), ln.sat3.eq(sat), ln.otype3.eq(k3.otype),
                ln.qlo3.eq(qlo3), ln.qhi3.eq(qhi3),
            ]
            for k in "abc":
                m.d.comb += [
                    getattr(ln, f"raw_{k}").eq(Cat(*(lane_bits(p, i, 8) for p in planes[k]))),
                    getattr(ln, f"reg_{k}").eq(lane_bits(rd[k], i)),
                ]
            for k in ("b1", "b2", "c1", "c2"):
                m.d.comb += getattr(ln, f"reg_{k}").eq(lane_bits(rd[k], i))
            lane_fault.append(ln.fault)
            res.append(ln.res)
            reg_words.append(ln.wdata)

        fault = Signal(name="fault_q")
        m.d.sync += fault.eq(c0.valid & Cat(*lane_fault).any())
        m.d.comb += self.fault.eq(fault)

        # ---------------------------------------------------------------- cycle t+3
        res_planes = [Cat(*(v[8 * b: 8 * b + 8] for v in res)) for b in range(4)]

        d_stream = k3.d[6] == 0
        d_west = k3.d[5]
        d_s = k3.d[:5]
        stream_write_enables(m, st, stream_span(v3 & d_stream, d_s, _type_bytes(k3.otype), ns),
                             d_west)
        for s in range(ns):
            with m.Switch((s - d_s)[:2]):
                for b in range(4):
                    with m.Case(b):
                        m.d.comb += [st.e_out[s].eq(res_planes[b]),
                                     st.w_out[s].eq(res_planes[b])]

        # register write at the edge ending cycle t+3 (the lanes' otype-reduced words)
        wp = regs.write_port()
        m.d.comb += [
            wp.addr.eq(k3.d[:4]),
            wp.data.eq(Cat(*reg_words)),
            wp.en.eq(v3 & ~d_stream),
        ]
        return m


class VxmSlice(wiring.Component):
    """The VXM column: `SliceSignature` (``issue``, ``tiles``, ``error``/``error_code``).

    See the module docstring for the pipeline and faults.  ``alu_lanes`` (cost flow only;
    default all 16): build the two ALU stages of only the first ``alu_lanes`` lanes of
    every tile (the others read 0).  The lanes are identical and independent, so every
    path of the slice is still there: what `sim/cost_pnr.py` places when all the lanes do
    not fit the device."""

    def __init__(self, cfg: TspConfig, *, alu_lanes: int | None = None):
        check_slice_config("VxmSlice", cfg)
        self.alu_lanes = replica_count("VxmSlice", "alu_lanes", alu_lanes,
                                       cfg.lanes_per_superlane)
        lat = isa.latency("VXM", cfg)
        if lat != 3:
            raise ValueError(f"VxmSlice implements a latency-3 pipeline; the ISA says {lat}")
        self.cfg = cfg
        super().__init__(SliceSignature(cfg))

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        iss = self.issue
        v = view(iss.word, "VXM", "VXM")
        opc = opcode_of(iss.word)

        vxm_op = opc == isa.OPCODES["VXM"]["VXM"]
        icu_op = Const(0)
        for d in isa.ICU_DEFS.values():
            icu_op = icu_op | (opc == d.opcode)
        imm = Signal(signed(isa.WORD_BITS), name="imm_strided")
        m.d.comb += imm.eq(v.imm + iss.off_a)
        imm_ok = (imm >= _IMM_LO) & (imm <= _IMM_HI)
        word_ok = vxm_word_legal(v, cfg)
        go = iss.valid & vxm_op & word_ok & imm_ok
        illegal = iss.valid & ~icu_op & ~(vxm_op & word_ok & imm_ok)

        ctl = Signal(control_layout(), name="ctl0")
        m.d.comb += [
            ctl.valid.eq(go), ctl.type.eq(v.type), ctl.otype.eq(v.otype), ctl.sat.eq(v.sat),
            ctl.op1.eq(v.op1), ctl.op2.eq(v.op2), ctl.a.eq(v.a), ctl.b.eq(v.b),
            ctl.c.eq(v.c), ctl.d.eq(v.d), ctl.imm.eq(imm),
        ]
        m.submodules.skew = skew = SkewChain(control_layout(), cfg.superlanes)
        m.d.comb += skew.i.eq(ctl)

        faults = []
        busy = [skew.busy]
        for k in range(cfg.superlanes):
            tile = m.submodules[f"tile{k}"] = VxmTile(cfg, alu_lanes=self.alu_lanes)
            m.d.comb += [tile.superlane.eq(k), tile.ctl.eq(skew.o[k])]
            wiring.connect(m, wiring.flipped(self.tiles[k]), tile.streams)
            faults.append(tile.fault)
            busy.append(tile.busy)
        m.d.comb += self.busy.eq(Cat(*busy).any())

        illegal_q = Signal(name="illegal_q")
        m.d.sync += illegal_q.eq(illegal)
        value_fault = Cat(*faults).any()
        m.d.comb += [
            self.error.eq(illegal_q | value_fault),
            self.error_code.eq(Mux(illegal_q, int(ErrorCode.ILLEGAL_INSTRUCTION),
                                   Mux(value_fault, int(ErrorCode.VALUE_RANGE), 0))),
        ]
        return m


__all__ = ["VxmSlice", "VxmTile", "control_layout", "vxm_word_legal"]
