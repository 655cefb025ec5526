"""One lane's VXM ALU stage: ``r = OP(x, y[, z])`` over 64-bit two's complement.

`build_alu` adds the (combinational) logic of one stage to a module and assigns the
result to a target signal in a given domain; the VXM (`hdl/vxm.py`) builds one per lane
for stage 1 (``x`` = operand a, 32 bits) and one for stage 2 (``x`` = the stage-1
result, 64 bits), each writing straight into its pipeline register.  `VxmAlu` wraps one
stage as a combinational component (unit tests, synthesis experiments).  Semantics are
exactly golden/machine.py ``_alu`` / ``_requant`` (docs/isa.md, "VXM operation").

Widths (what the ISA really needs, rather than 64 x 64 everywhere):

* Every operand ``y``/``z`` is at most a 32-bit value sign-extended (a stream value of
  ``type``, a 32-bit register, the 15-bit immediate, the lane index), so ``y`` is
  ``signed(32)``; stage 1's ``x`` (operand a) is ``signed(32)`` too.
* One multiplier per stage, shared by MUL and REQUANT: stage 1 is a 32 x 32 -> 64
  signed multiplier (the exact product of two int32 values; REQUANT's ``acc * m`` with
  ``m`` in [0, 2**31 - 1] is such a product); stage 2 is a 64 x 32 multiplier of which
  only the low 64 bits are kept (MUL wraps modulo 2**64; for REQUANT ``x`` is first
  wrapped to int32, so the 64-bit product is exact).
* One 64-bit right shifter with a rounding adder in front, shared by SHR (the
  zero-extended low ``w`` bits of ``x``), SRA, SRAR (``(x + 2**(n-1)) >> n``, the add
  wrapping in 64 bits exactly like the model's int64) and REQUANT, which *is*
  ``SRAR(acc * m, 31 - shift)``: ``(p + (1 << (30 - s))) >> (31 - s)``.  The rounding add
  never overflows for REQUANT (``|p| <= 2**62``, term ``<= 2**61``).
* One 64-bit left shifter (SHL), one signed ``x < y`` and one ``x == y`` comparator
  (MIN, MAX and the six compares), a 32-bit leading-zero priority encoder (CLZ of the
  zero-extended low ``w`` bits, minus ``32 - w``), one 33-bit clamp unit (SAT8, SAT16
  and REQUANT's saturation to ``[qmin, qmax]``).
* Stage 2 leaves REQUANT's clamp out (``clamp_requant=False``): the VXM forces ``:sat``
  (a clamp to the same ``otype`` range) in its output stage instead, which is the same
  function.

The operation is selected by a one-hot ``op`` (bit ``code`` of `arch.isa.VXM_OPS`),
decoded once per tile rather than per lane.
"""

from amaranth import Const, Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from arch import isa

#: op name -> bit of the one-hot ``op`` input (= the ISA op code)
OP_BIT = {op.name: op.code for op in isa.VXM_OPS}
N_OPS = len(isa.VXM_OPS)

#: type name -> its code (the ``type``/``otype`` field value)
TYPE_CODE = {t: i for i, t in enumerate(isa.TYPES)}

#: (min, max) of each type code (i8, i16, i32, u8)
TYPE_RANGE = tuple(
    (-(1 << (8 * isa.TYPE_BYTES[t] - 1)), (1 << (8 * isa.TYPE_BYTES[t] - 1)) - 1)
    if isa.TYPE_SIGNED[t] else (0, (1 << (8 * isa.TYPE_BYTES[t])) - 1)
    for t in isa.TYPES
)


def onehot_pattern(code: int) -> str:
    """A `Case` pattern matching bit ``code`` of an N_OPS-bit one-hot value."""
    return "".join("1" if i == code else "-" for i in reversed(range(N_OPS)))


def leading_zeros(m: Module, value, name: str):
    """A signal: the leading zeros of the unsigned ``value`` (its width if 0), as a
    priority match (one ``casez`` in Verilog)."""
    width = len(value)
    out = Signal(range(width + 1), name=name)
    with m.Switch(value):
        for i in range(width):
            with m.Case("0" * i + "1" + "-" * (width - 1 - i)):
                m.d.comb += out.eq(i)
        with m.Default():
            m.d.comb += out.eq(width)
    return out


def type_bounds(m: Module, otype, name: str):
    """(min, max) of the type code ``otype`` as two ``signed(33)`` signals."""
    lo = Signal(signed(33), name=f"{name}_lo")
    hi = Signal(signed(33), name=f"{name}_hi")
    with m.Switch(otype):
        for code, (tlo, thi) in enumerate(TYPE_RANGE):
            with m.Case(code):
                m.d.comb += [lo.eq(tlo), hi.eq(thi)]
    return lo, hi


def clamp(value, lo, hi):
    """``value`` clamped to ``[lo, hi]``, bounds within ``signed(33)`` (a 33-bit
    expression; ``value`` should be a signal)."""
    return Mux(value < lo, lo, Mux(value > hi, hi, value[:33].as_signed()))


def build_alu(m: Module, domain: str, out, *, op, x, y, z=None, w8, w16, qlo=None,
              qhi=None, rq_n, rq_zp, name: str):
    """Add one ALU stage to ``m``: ``m.d[domain] += out.eq(OP(x, y[, z]))``.

    ``op`` one-hot op; ``x`` ``signed(32)`` or ``signed(64)``; ``y``, ``z`` (SEL's third
    operand; None: no SEL) ``signed(32)``; ``w8``/``w16``: ``type`` is 8/16 bits wide
    (else 32; SHR and CLZ); ``qlo``/``qhi``: the ``otype`` range for REQUANT's clamp
    (None: no clamp, see the module docstring); ``rq_n`` = ``31 - shift`` (6 bits) and
    ``rq_zp`` the lane's REQUANT shift and zero point (the multiplier is ``y``).

    Internal signals sit at most three deep (products, then shift, then clamp), which
    keeps both the netlist and Amaranth's simulator (one pass per level) cheap.
    """
    x_width = len(x)
    if x_width not in (32, 64):
        raise ValueError(f"build_alu: x must be 32 or 64 bits wide, got {x_width}")

    def op_is(opname):
        return op[OP_BIT[opname]]

    def sig(shape, suffix):
        return Signal(shape, name=f"{name}_{suffix}")

    is_rq = op_is("REQUANT")
    n_y = y[:6]  # shift count: y & 63

    # multiplier (MUL, REQUANT): stage 1 32x32 -> 64 exact, stage 2 64x32 -> low 64
    # Each shared unit computes only for the ops that use it (0 otherwise): the
    # simulator then skips it in the lanes' other cycles; the result is the same.
    prod = sig(signed(64), "prod")
    with m.If(op_is("MUL") | is_rq):
        if x_width == 64:
            mx = Mux(is_rq, x[:32].as_signed(), x)  # REQUANT: wrap32(x)
            m.d.comb += prod.eq((mx * y)[:64])
        else:
            m.d.comb += prod.eq(x * y)

    # the low w bits of x, zero-extended (SHR, CLZ)
    xw = sig(32, "xw")
    is_clz = op_is("CLZ")
    with m.If(op_is("SHR") | is_clz):
        m.d.comb += xw.eq(Mux(w8, x[:8], Mux(w16, x[:16], x[:32])))
    with m.If(is_clz):
        nlz = leading_zeros(m, xw, f"{name}_nlz")
    # the comparator, only for the ops that read it (0 otherwise: as unconditional
    # expressions, Verilator computed both in every cycle, in front of the case)
    lt, eq = sig(1, "lt"), sig(1, "eq")
    with m.If(op_is("MIN") | op_is("MAX") | op_is("LT") | op_is("LE") | op_is("GT")
              | op_is("GE")):
        m.d.comb += lt.eq(x < y)
    with m.If(op_is("EQ") | op_is("NE") | op_is("LE") | op_is("GT")):
        m.d.comb += eq.eq(x == y)

    # shared right shifter with rounding: SHR, SRA, SRAR, REQUANT
    amt = Mux(is_rq, rq_n, n_y)
    src = Mux(is_rq, prod, Mux(op_is("SHR"), xw, x))
    # half = 2**(amt-1) when rounding (2**63 >> (64 - amt); a shift by 64 gives 0)
    half = Const(1 << 63, 64) >> Mux(op_is("SRAR") | is_rq, (64 - amt).as_unsigned(), 64)
    shifted = sig(signed(64), "shifted")
    # the add wraps in 64 bits like the model's int64; the shift is arithmetic (SHR's
    # source is >= 0)
    with m.If(op_is("SHR") | op_is("SRA") | op_is("SRAR") | is_rq):
        m.d.comb += shifted.eq((src + half)[:64].as_signed() >> amt)

    # one clamp unit: SAT8, SAT16 and (stage 1) REQUANT = SRAR(acc * m, 31 - s) + zp
    sat8 = op_is("SAT8")
    if qlo is not None:
        c_in = Mux(is_rq, (shifted + rq_zp)[:64].as_signed(), x)  # (c_val's 64 bits)
        c_lo = Mux(sat8, -128, Mux(op_is("SAT16"), -32768, qlo))
        c_hi = Mux(sat8, 127, Mux(op_is("SAT16"), 32767, qhi))
    else:
        c_in = x
        c_lo = Mux(sat8, -128, -32768)
        c_hi = Mux(sat8, 127, 32767)
    c_val = sig(signed(64), "clamp_in")
    clamped = sig(signed(33), "clamped")
    with m.If(sat8 | op_is("SAT16") | (is_rq if qlo is not None else 0)):
        m.d.comb += [c_val.eq(c_in), clamped.eq(clamp(c_val, c_lo, c_hi))]

    neg = x[-1]
    # the operands sign-extended to the result's 64 bits once, in signals: an operation
    # on the narrower operands is extended in its case arm, and since the extension reads
    # the value twice (its sign bit and its bits) Verilator computed every such value in
    # every cycle, in front of the case
    x64, y64 = sig(signed(64), "x64"), sig(signed(64), "y64")
    m.d.comb += [x64.eq(x), y64.eq(y)]
    results = {
        "PASS": x64,
        "ADD": (x64 + y64)[:64],
        "SUB": (x64 - y64)[:64],
        "MUL": prod,
        ("MIN", "MAX"): Mux(lt ^ op_is("MAX"), x64, y64),
        "AND": x64 & y64,
        "OR": x64 | y64,
        "XOR": x64 ^ y64,
        "SHL": (x64 << n_y)[:64],
        ("SHR", "SRA", "SRAR"): shifted,
        "EQ": eq,
        "NE": ~eq,
        "LT": lt,
        "LE": lt | eq,
        "GT": ~(lt | eq),
        "GE": ~lt,
        "RELU": Mux(neg, 0, x64),
        # 64-bit result: |INT64_MIN| wraps as in numpy.  (The 65-bit negation cut to 64
        # bits here, not by the assignment: a wider operand of the mux is built by Verilator
        # in every cycle, in front of the case that selects it.)
        "ABS": Mux(neg, (-x64)[:64], x64),
        ("SAT8", "SAT16"): clamped,
        "CLZ": nlz - Mux(w8, 24, Mux(w16, 16, 0)),
        "REQUANT": clamped if qlo is not None else shifted + rq_zp,
    }
    if z is not None:
        results["SEL"] = Mux(x != 0, y, z)
    with m.Switch(op):
        for names, value in results.items():
            names = (names,) if isinstance(names, str) else names
            with m.Case(*(onehot_pattern(OP_BIT[n]) for n in names)):
                m.d[domain] += out.eq(value)
        with m.Default():
            m.d[domain] += out.eq(0)


class VxmAlu(wiring.Component):
    """One ALU stage as a combinational component (see `build_alu`).

    Ports: ``op`` (one-hot), ``w8``, ``w16``, ``x`` (``signed(x_width)``), ``y``, ``z``
    (with ``ternary``), ``qlo``/``qhi`` (with ``clamp_requant``), ``rq_n``, ``rq_zp`` in;
    ``r`` (``signed(64)``) out.
    """

    def __init__(self, x_width: int, *, ternary: bool, clamp_requant: bool):
        if x_width not in (32, 64):
            raise ValueError(f"VxmAlu x_width must be 32 or 64, got {x_width!r}")
        self.x_width = x_width
        self.ternary = bool(ternary)
        self.clamp_requant = bool(clamp_requant)
        members = {
            "op": In(N_OPS),
            "w8": In(1),
            "w16": In(1),
            "x": In(signed(x_width)),
            "y": In(signed(32)),
            "rq_n": In(6),
            "rq_zp": In(signed(32)),
            "r": Out(signed(64)),
        }
        if self.ternary:
            members["z"] = In(signed(32))
        if self.clamp_requant:
            members["qlo"] = In(signed(33))
            members["qhi"] = In(signed(33))
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        build_alu(
            m, "comb", self.r, op=self.op, x=self.x, y=self.y,
            z=self.z if self.ternary else None, w8=self.w8, w16=self.w16,
            qlo=self.qlo if self.clamp_requant else None,
            qhi=self.qhi if self.clamp_requant else None,
            rq_n=self.rq_n, rq_zp=self.rq_zp, name="alu",
        )
        return m
