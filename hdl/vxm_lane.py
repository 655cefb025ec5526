"""One lane of a VXM tile: operand extension, the two chained ALU stages and the output
reduction, with the lane's pipeline registers (`hdl.vxm` gives the 4-cycle pipeline).

The tile (`hdl.vxm.VxmTile`) keeps what its 16 lanes share: the decoded control word and
its pipeline, the stream byte planes of each operand, the register file and the output
stream multiplexers.  Everything a lane does on its own is this component, so a tile is
16 instances of one module: the generated Verilog and the simulator's C++ hold one lane
instead of sixteen (`sim/stamp.py`), and a tile costs what it did in gates.

Per lane, in the tile's cycles (``t`` = the cycle the control word arrives):

* ``t``: operand ``k`` of ``a``/``b``/``c`` is the lane's ``type``-wide stream value
  (``raw_k``, sign- or zero-extended), its register (``reg_k``), the lane index or the
  immediate; loaded into the stage-1 registers with ``go``.  A REQUANT's shift and zero
  point (registers ``rK+1``, ``rK+2`` of b for OP1, of c for OP2) load only for a REQUANT.
  ``fault`` (combinational): those parameters out of range (the tile registers it).
* ``t+1``: stage 1 ``r1 = OP1(a, b[, c])`` (with ``s1.valid``).
* ``t+2``: stage 2 ``r2 = OP2(r1, c)`` (with ``s2.valid``).
* ``t+3``: ``res`` = ``r2`` reduced to 32 bits (clamped to ``[qlo3, qhi3]`` with
  ``sat3``), 0 without ``out_valid``; ``wdata`` = ``res`` reduced to ``otype3`` and
  extended to 32 bits (the register file's write data).

``alu=False`` (the cost flow's lanes left out, `hdl.vxm.VxmSlice` ``alu_lanes``): the
operand registers and the fault check without the two ALU stages; ``res`` is 0.
"""

from amaranth import Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from arch import isa

from .vxm_alu import N_OPS, TYPE_CODE, build_alu, clamp

_IMM_BITS = isa.instr_def("VXM", "VXM").field("imm").width


def decode_layout() -> data.StructLayout:
    """The control word's fields decoded once per tile for the lanes' operand select:
    the ``type`` one-hot, OP1/OP2 = REQUANT, and per operand a/b/c (bit 0/1/2) whether
    it is a stream, a register or the lane index (else the immediate)."""
    return data.StructLayout({
        "i8": 1, "i16": 1, "i32": 1, "u8": 1, "rq1": 1, "rq2": 1,
        "stream": 3, "reg": 3, "lane": 3,
    })


def stage_layout() -> data.StructLayout:
    """One ALU stage's control: valid, the one-hot op, ``type`` 8/16 bits wide, and the
    ``otype`` range (REQUANT's clamp in stage 1; the output clamp)."""
    return data.StructLayout({
        "valid": 1, "op": N_OPS, "w8": 1, "w16": 1, "qlo": signed(33), "qhi": signed(33),
    })


class VxmLane(wiring.Component):
    """One lane's datapath (see the module docstring for ports and timing)."""

    def __init__(self, *, alu: bool = True):
        self.alu = bool(alu)
        super().__init__({
            "go": In(1),
            "dec": In(decode_layout()),
            "raw_a": In(32), "raw_b": In(32), "raw_c": In(32),
            "reg_a": In(32), "reg_b": In(32), "reg_c": In(32),
            "reg_b1": In(32), "reg_b2": In(32), "reg_c1": In(32), "reg_c2": In(32),
            "lane": In(16),
            "imm": In(signed(_IMM_BITS)),
            "qlo0": In(signed(33)), "qhi0": In(signed(33)),
            "s1": In(stage_layout()),
            "s2": In(stage_layout()),
            "out_valid": In(1),
            "sat3": In(1),
            "otype3": In(2),
            "qlo3": In(signed(33)), "qhi3": In(signed(33)),
            "res": Out(32),
            "wdata": Out(32),
            "fault": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        dec = self.dec

        # ---------------------------------------------------------------- cycle t
        r = {k: Signal(signed(32), name=f"{k}1", reset_less=True) for k in "abc"}
        n1 = Signal(6, name="n1", reset_less=True)
        zp1 = Signal(signed(32), name="zp1", reset_less=True)
        n2_1 = Signal(6, name="n2_1", reset_less=True)
        zp2_1 = Signal(signed(32), name="zp2_1", reset_less=True)
        for j, k in enumerate("abc"):
            raw = getattr(self, f"raw_{k}")
            ext = Mux(dec.i32, raw.as_signed(),
                      Mux(dec.i16, raw[:16].as_signed(),
                          Mux(dec.u8, raw[:8], raw[:8].as_signed())))
            with m.If(self.go):  # clock enable: a stage loads only for an instruction
                m.d.sync += r[k].eq(
                    Mux(dec.stream[j], ext,
                        Mux(dec.reg[j], getattr(self, f"reg_{k}").as_signed(),
                            Mux(dec.lane[j], self.lane, self.imm))))
        b1, b2, c1, c2 = self.reg_b1, self.reg_b2, self.reg_c1, self.reg_c2
        # REQUANT's parameters load only for a REQUANT (no other op reads them)
        with m.If(self.go & dec.rq1):
            m.d.sync += [n1.eq(31 - b1[:6]), zp1.eq(b2)]
        with m.If(self.go & dec.rq2):
            m.d.sync += [n2_1.eq(31 - c1[:6]), zp2_1.eq(c2)]

        def bad_params(mult, shift, zp):
            mult, shift, zp = mult.as_signed(), shift.as_signed(), zp.as_signed()
            return ((mult < 0) | (shift < -31) | (shift > 30) | (zp < self.qlo0)
                    | (zp > self.qhi0))

        m.d.comb += self.fault.eq((dec.rq1 & bad_params(self.reg_b, b1, b2))
                                  | (dec.rq2 & bad_params(self.reg_c, c1, c2)))
        if not self.alu:
            return m

        # ---------------------------------------------------------------- cycle t+1
        s1 = self.s1
        r1 = Signal(signed(64), name="r1", reset_less=True)
        c_2 = Signal(signed(32), name="c2", reset_less=True)
        n2_2 = Signal(6, name="n2_2", reset_less=True)
        zp2_2 = Signal(signed(32), name="zp2_2", reset_less=True)
        with m.If(s1.valid):
            build_alu(m, "sync", r1, op=s1.op, x=r["a"], y=r["b"], z=r["c"], w8=s1.w8,
                      w16=s1.w16, qlo=s1.qlo, qhi=s1.qhi, rq_n=n1, rq_zp=zp1, name="alu1")
            m.d.sync += [c_2.eq(r["c"]), n2_2.eq(n2_1), zp2_2.eq(zp2_1)]

        # ---------------------------------------------------------------- cycle t+2
        s2 = self.s2
        r2 = Signal(signed(64), name="r2", reset_less=True)
        with m.If(s2.valid):
            build_alu(m, "sync", r2, op=s2.op, x=r1, y=c_2, w8=s2.w8, w16=s2.w16,
                      rq_n=n2_2, rq_zp=zp2_2, name="alu2")

        # ---------------------------------------------------------------- cycle t+3
        v = self.res
        with m.If(self.out_valid):  # 0 without an instruction (nothing reads it then)
            m.d.comb += v.eq(Mux(self.sat3, clamp(r2, self.qlo3, self.qhi3), r2))
        ot = self.otype3
        m.d.comb += self.wdata.eq(
            Mux(ot == TYPE_CODE["i32"], v,
                Mux(ot == TYPE_CODE["i16"], v[:16].as_signed(),
                    Mux(ot == TYPE_CODE["u8"], v[:8], v[:8].as_signed())))[:32])
        return m


__all__ = ["VxmLane", "decode_layout", "stage_layout"]
