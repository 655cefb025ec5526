"""The instruction set: one definition read by the assembler, the machine model, the RTL
decoders and ``docs/isa.md``.

Every slice has one instruction queue of fixed 64-bit words.  The opcode is bits [5:0] of
every word; opcodes 1..5 are the ICU instructions shared by every queue, 8..63 are the
slice kind's own opcode space, 0 is illegal (an all-zero word never executes).  Operand
fields follow the opcode from bit 6 upwards; bits outside an instruction's fields must be 0.

The bit layouts do not depend on the config (fields are sized for the largest legal
config); the legal *range* of a field does (``Field.bounds(cfg)``), and so do some
latencies (``InstrDef.latency(cfg)``, of the form ``base + k * superlanes``).

Timing (superlane-0 time, see docs/architecture.md): an instruction issued in cycle ``t``
reads its stream operands from the stream registers at its own position in cycle ``t``
and makes its last effect (stream write, SRAM write, state write) in cycle ``t + L``.

This module is pure Python; nothing here imports amaranth.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property

from .config import TspConfig

WORD_BITS = 64
WORD_MASK = (1 << WORD_BITS) - 1
OPCODE_OFFSET = 0
OPCODE_BITS = 6

#: instruction kinds: the shared ICU set plus one per slice kind
KINDS = ("ICU", "MEM", "VXM", "MXM", "SXM", "C2C")
SLICE_KINDS = ("MEM", "VXM", "MXM", "SXM", "C2C")

#: MXM int32 accumulator slots (vectors) per MXM, indexed by the MVM ``acc`` field
MXM_ACC_SLOTS = 32
#: VXM per-lane int32 registers r0..r15
VXM_REGS = 16
#: SXM permutation maps per SXM slice
SXM_MAPS = 4
#: a NOTIFY issued in cycle t releases every waiting queue: its next instruction issues at
#: t + SYNC_RELEASE_DELAY (the notifying queue's next instruction too)
SYNC_RELEASE_DELAY = 2

#: data types of VXM/SXM operands: code -> (name, bytes, signed)
TYPES = ("i8", "i16", "i32", "u8")
TYPE_BYTES = {"i8": 1, "i16": 2, "i32": 4, "u8": 1}
TYPE_SIGNED = {"i8": True, "i16": True, "i32": True, "u8": False}
#: the signed element type of each width in bytes (a tensor of k byte planes)
SIGNED_TYPE = {TYPE_BYTES[t]: t for t in TYPES if TYPE_SIGNED[t]}
DIRS = ("E", "W")


class IsaError(ValueError):
    """An instruction word or field value that the ISA does not allow."""


# ----------------------------------------------------------------------------- latency
@dataclass(frozen=True)
class Latency:
    """``base + per_superlane * cfg.superlanes + per_beat * cfg.c2c_beats`` cycles from
    issue to the last effect (B = ``c2c_beats``: the beats of a vector on a C2C link)."""

    base: int
    per_superlane: int = 0
    per_beat: int = 0

    def __call__(self, cfg: TspConfig) -> int:
        beats = cfg.c2c_beats if self.per_beat else 0
        return self.base + self.per_superlane * cfg.superlanes + self.per_beat * beats

    def formula(self) -> str:
        terms = [f"{'' if k == 1 else k}{v}" for k, v in
                 ((self.per_beat, "B"), (self.per_superlane, "S")) if k]
        if not terms:
            return str(self.base)
        s = " + ".join(terms)
        if self.base == 0:
            return s
        return f"{s} {'+' if self.base > 0 else '-'} {abs(self.base)}"


# ----------------------------------------------------------------------------- fields
#: value ranges per field domain; callables take the config
def _config_bounds(cfg: TspConfig) -> tuple:
    """``cfg``'s entry of `_BOUNDS` (made on first use)."""
    hit = _BOUNDS.get(id(cfg))
    if hit is None or hit[0] is not cfg:  # (an id is reused only after its config died)
        if len(_BOUNDS) >= 64:
            _BOUNDS.clear()
        hit = _BOUNDS[id(cfg)] = (cfg, _domain_table(cfg), {})
    return hit


def _domain_bounds(domain: str, cfg: TspConfig) -> tuple[int, int]:
    return _config_bounds(cfg)[1][domain]


#: id(config) -> (config, `_domain_table`, mnemonic -> ((field, lo, hi), ...) as
#: `check_ranges` compares them): every field of every emitted word is checked
_BOUNDS: dict[int, tuple[TspConfig, dict[str, tuple[int, int]],
                         dict[str, tuple[tuple[str, int, int], ...]]]] = {}


def _domain_table(cfg: TspConfig) -> dict[str, tuple[int, int]]:
    vl = cfg.vector_length
    return {
        "stream": (0, cfg.streams_per_direction - 1),
        "dir": (0, 1),
        "flag": (0, 1),
        # READ's write part (w=): all zero on configs without mem_read_write
        "rw": (0, cfg.mem_read_write),
        "rw_addr": (0, (cfg.mem_addresses - 1) * cfg.mem_read_write),
        "rw_stream": (0, (cfg.streams_per_direction - 1) * cfg.mem_read_write),
        "rw_dir": (0, cfg.mem_read_write),
        "addr": (0, cfg.mem_addresses - 1),
        "row": (0, vl - 1),
        "acc": (0, MXM_ACC_SLOTS - 1),
        "ld": (0, 2),
        # rows beyond the first of a multi-row weight load (`TspConfig.mxm_load_rows`)
        "ldx": (0, cfg.mxm_load_rows - 1),
        "type": (0, len(TYPES) - 1),
        "nop": (1, 2**32 - 1),
        "rep_n": (0, 2**16 - 1),
        "rep_d": (1, 2**16 - 1),
        "stride": (-(2**11), 2**11 - 1),
        "shift_local": (-(cfg.lanes_per_superlane - 1), cfg.lanes_per_superlane - 1),
        "shift_vector": (-(vl - 1), vl - 1),
        "lane": (0, vl - 1),
        "map": (0, SXM_MAPS - 1),
        # the SXM transposer (TPUT/TGET): empty ranges on configs without one
        "trow": (0, cfg.sxm_transpose_rows - 1),
        "tcol": (0, vl - 1 if cfg.sxm_transpose_rows else -1),
        "trows": (1, cfg.sxm_transpose_rows),
        "vop": (0, len(VXM_OPS) - 1),
        "sel": (0, 127),
        "imm": (-(2**14), 2**14 - 1),
        "link": (0, cfg.c2c_links - 1),
    }


@dataclass(frozen=True)
class Field:
    """One operand field: bits [offset + width - 1 : offset] of the word."""

    name: str
    offset: int
    width: int
    signed: bool = False
    domain: str = "uint"
    #: REPEAT advances this field by k * stride_a ("A") or k * stride_b ("B")
    stride: str = ""
    doc: str = ""

    @property
    def hi(self) -> int:
        return self.offset + self.width - 1

    @property
    def mask(self) -> int:
        return ((1 << self.width) - 1) << self.offset

    def bounds(self, cfg: TspConfig) -> tuple[int, int]:
        """Legal values of this field under ``cfg`` (inclusive)."""
        if self.domain == "uint":
            return 0, (1 << self.width) - 1
        return _domain_bounds(self.domain, cfg)

    def encode(self, value: int) -> int:
        if self.signed:
            lo, hi = -(1 << (self.width - 1)), (1 << (self.width - 1)) - 1
        else:
            lo, hi = 0, (1 << self.width) - 1
        if not lo <= value <= hi:
            raise IsaError(f"field {self.name}={value} does not fit {self.width} bits")
        return (value & ((1 << self.width) - 1)) << self.offset

    def decode(self, word: int) -> int:
        v = (word >> self.offset) & ((1 << self.width) - 1)
        if self.signed and v >> (self.width - 1):
            v -= 1 << self.width
        return v


# ----------------------------------------------------------------------------- operand syntax
@dataclass(frozen=True)
class Operand:
    """How one assembler operand maps onto fields.

    kinds: ``int`` (positional integer -> field), ``stream`` (positional ``sN.E``/``sN.W``
    -> fields ``<name>_s``, ``<name>_d``), ``stream_t`` (as ``stream`` plus an optional
    ``:type`` suffix -> field ``otype``), ``flag`` (keyword, present -> field = 1),
    ``emit`` (keyword ``emit=sN.D`` -> ``emit``, ``out_s``, ``out_d``), ``load`` (keyword
    ``lw=ROW@sN.D`` / ``lwt=COL@sN.D`` -> ``ld``, ``row``, ``w_s``, ``w_d``), ``store``
    (keyword ``w=ADDR@sN.D`` -> ``wr``, ``waddr``, ``in_s``, ``in_d``), ``rows`` (keyword
    ``rows=N`` -> ``extra`` = N - 1: a multi-row weight load; omitted for 1), ``vxm`` (the
    VXM expression syntax, see docs/isa.md).
    """

    kind: str
    name: str
    #: positional operand that may be omitted (value 0); only trailing ones
    optional: bool = False


@dataclass(frozen=True)
class InstrDef:
    kind: str
    mnemonic: str
    opcode: int
    fields: tuple[Field, ...]
    latency: Latency | None  # None: ICU instruction (no functional pipeline)
    operands: tuple[Operand, ...]
    summary: str
    #: mnemonic suffix ``.i8|.i16|.i32|.u8`` sets field ``type`` (default ``type_default``)
    type_suffix: bool = False
    type_default: int = 0

    def field(self, name: str) -> Field:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(f"{self.mnemonic} has no field {name!r}")

    @cached_property  # (the compiler asks for it for every word it merges)
    def field_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)

    @cached_property
    def field_set(self) -> frozenset[str]:
        return frozenset(self.field_names)

    def layout(self) -> list[tuple[str, int, int, bool]]:
        """Ordered (name, bit offset, width, signed), the opcode first (for StructLayouts)."""
        return [("opcode", OPCODE_OFFSET, OPCODE_BITS, False)] + [
            (f.name, f.offset, f.width, f.signed) for f in self.fields
        ]

    @property
    def reserved_mask(self) -> int:
        used = ((1 << OPCODE_BITS) - 1) << OPCODE_OFFSET
        for f in self.fields:
            used |= f.mask
        return WORD_MASK & ~used

    @property
    def is_icu(self) -> bool:
        return self.kind == "ICU"


def F(name, offset, width, domain="uint", signed=False, stride="", doc=""):  # noqa: N802
    return Field(name, offset, width, signed, domain, stride, doc)


def _stream_fields(prefix: str, s_off: int, doc: str) -> tuple[Field, Field]:
    return (
        F(f"{prefix}_s", s_off, 5, "stream", doc=f"{doc} stream index"),
        F(f"{prefix}_d", s_off + 5, 1, "dir", doc=f"{doc} direction (0 = E, 1 = W)"),
    )


# ----------------------------------------------------------------------------- VXM ALU ops
@dataclass(frozen=True)
class VxmOp:
    name: str
    code: int
    arity: int  # operands incl. the first: 1 unary, 2 binary, 3 ternary (SEL, stage 1 only)
    summary: str


VXM_OPS: tuple[VxmOp, ...] = (
    VxmOp("PASS", 0, 1, "x"),
    VxmOp("ADD", 1, 2, "x + y"),
    VxmOp("SUB", 2, 2, "x - y"),
    VxmOp("MUL", 3, 2, "x * y (exact 64-bit product)"),
    VxmOp("MIN", 4, 2, "min(x, y)"),
    VxmOp("MAX", 5, 2, "max(x, y)"),
    VxmOp("AND", 6, 2, "x & y"),
    VxmOp("OR", 7, 2, "x | y"),
    VxmOp("XOR", 8, 2, "x ^ y"),
    VxmOp("SHL", 9, 2, "x << (y & 63)"),
    VxmOp("SHR", 10, 2, "logical: (x mod 2**w) >> (y & 63), w = type width in bits"),
    VxmOp("SRA", 11, 2, "arithmetic: x >> (y & 63) (floor)"),
    VxmOp("SRAR", 12, 2, "rounding arithmetic: (x + 2**(n-1)) >> n, n = y & 63 (x if n = 0)"),
    VxmOp("EQ", 13, 2, "1 if x == y else 0"),
    VxmOp("NE", 14, 2, "1 if x != y else 0"),
    VxmOp("LT", 15, 2, "1 if x < y else 0 (signed)"),
    VxmOp("LE", 16, 2, "1 if x <= y else 0"),
    VxmOp("GT", 17, 2, "1 if x > y else 0"),
    VxmOp("GE", 18, 2, "1 if x >= y else 0"),
    VxmOp("RELU", 19, 1, "max(x, 0)"),
    VxmOp("ABS", 20, 1, "|x|"),
    VxmOp("SAT8", 21, 1, "clamp(x, -128, 127)"),
    VxmOp("SAT16", 22, 1, "clamp(x, -32768, 32767)"),
    VxmOp("CLZ", 23, 1, "leading zeros of (x mod 2**w) in w bits (w if x = 0)"),
    VxmOp(
        "REQUANT", 24, 2,
        "golden.quant.requantize(wrap32(x), multiplier=rK, shift=rK+1, zero_point=rK+2, "
        "qmin/qmax = range of the out type); y must be a register rK, K <= 13",
    ),
    VxmOp("SEL", 25, 3, "x != 0 ? y : z (stage 1 only; consumes operand c, op2 must be unary)"),
)
VXM_OP_BY_NAME = {op.name: op for op in VXM_OPS}
VXM_OP_BY_CODE = {op.code: op for op in VXM_OPS}

#: VXM operand selector (7 bits): where an ALU operand comes from / the result goes to
SEL_E = 0  # 0..31: stream sN.E
SEL_W = 32  # 32..63: stream sN.W
SEL_REG = 64  # 64..64+VXM_REGS-1: register rN
SEL_IMM = 96  # the instruction's imm field (sign-extended)
SEL_LANE = 97  # the lane index 0..VL-1 (iota)
SEL_NONE = 127  # operand unused


def sel_stream(s: int, d: int | str) -> int:
    d = DIRS.index(d) if isinstance(d, str) else d
    return (SEL_W if d else SEL_E) + s


def sel_reg(r: int) -> int:
    return SEL_REG + r


def sel_kind(sel: int) -> str:
    """'stream', 'reg', 'imm', 'lane', 'none' or 'bad'."""
    if sel < 64:
        return "stream"
    if SEL_REG <= sel < SEL_REG + VXM_REGS:
        return "reg"
    return {SEL_IMM: "imm", SEL_LANE: "lane", SEL_NONE: "none"}.get(sel, "bad")


def sel_stream_of(sel: int) -> tuple[int, int]:
    """(stream index, direction) of a stream selector."""
    return sel & 31, sel >> 5


# ----------------------------------------------------------------------------- definitions
_ICU = (
    InstrDef("ICU", "NOP", 1, (F("n", 6, 32, "nop", doc="cycles until the next issue"),), None,
             (Operand("int", "n"),),
             "Issue nothing: the next instruction of this queue issues n cycles after the NOP "
             "(NOP 1 = one idle slot).  n >= 1."),
    InstrDef("ICU", "REPEAT", 2, (
        F("n", 6, 16, "rep_n", doc="extra repetitions"),
        F("d", 22, 16, "rep_d", doc="cycles between repetitions"),
        F("stride_a", 38, 12, "stride", signed=True, doc="added to A-stride fields per step"),
        F("stride_b", 50, 12, "stride", signed=True, doc="added to B-stride fields per step"),
    ), None, (Operand("int", "n"), Operand("int", "d"), Operand("int", "stride_a", True),
              Operand("int", "stride_b", True)),
             "Repeat the previous instruction (issued at t0) n more times: repetition k "
             "(1..n) issues at t0 + k*d with every A-stride field advanced by k*stride_a and "
             "every B-stride field by k*stride_b.  The next instruction issues at t0 + n*d + "
             "1.  REPEAT takes no issue slot; it must follow a slice (non-ICU) instruction."),
    InstrDef("ICU", "SYNC", 3, (), None, (),
             "Park this queue until a NOTIFY issued (by any queue) in a cycle >= this SYNC's "
             f"cycle; the next instruction issues at t_notify + {SYNC_RELEASE_DELAY}."),
    InstrDef("ICU", "NOTIFY", 4, (), None, (),
             "Release every parked queue (SYNC issued in a cycle <= this one).  Released "
             f"queues and this queue issue their next instruction at t + {SYNC_RELEASE_DELAY}."),
    InstrDef("ICU", "HALT", 5, (), None, (),
             "Stop this queue.  The program ends when every queue has halted and every "
             "in-flight effect has happened."),
)

# MEM: addr [18:6], first stream [24:19], second stream [30:25]
_MEM_ADDR = F("addr", 6, 13, "addr", stride="A", doc="SRAM address (bank = addr // mem_depth)")
_MEM = (
    InstrDef("MEM", "READ", 8, (
        _MEM_ADDR, *_stream_fields("out", 19, "result"),
        F("wr", 25, 1, "rw", doc="1: also a write (configs with mem_read_write)"),
        F("waddr", 26, 13, "rw_addr", stride="B", doc="write address (with wr)"),
        F("in_s", 39, 5, "rw_stream", doc="write data stream index (with wr)"),
        F("in_d", 44, 1, "rw_dir", doc="write data direction (0 = E, 1 = W; with wr)"),
    ), Latency(1), (Operand("int", "addr"), Operand("stream", "out"), Operand("store", "w")),
        "Read the vector at addr (SRAM read in cycle t) and write it onto stream out in "
        "cycle t+1.  With w=ADDR@sN.D (configs with mem_read_write = 1) the same word is "
        "also a WRITE sN.D, ADDR: the vector on stream in at issue, written to waddr in "
        "cycle t+1 (a read and a write per cycle, like MVM's lw=)."),
    InstrDef("MEM", "WRITE", 9, (_MEM_ADDR, *_stream_fields("in", 19, "data")),
             Latency(1), (Operand("stream", "in"), Operand("int", "addr")),
             "Take the vector on stream in at issue (cycle t) and write it to addr in cycle "
             "t+1 (so a READ issued at t+1 may read the other bank in that cycle)."),
    InstrDef("MEM", "GATHER", 10, (
        F("addr", 6, 13, "addr", stride="A", doc="table base address"),
        *_stream_fields("idx", 19, "index"), *_stream_fields("out", 25, "result")),
        Latency(1), (Operand("int", "addr"), Operand("stream", "idx"), Operand("stream", "out")),
        "Per-lane table lookup: lane l reads the byte of lane l at address addr + idx[l] "
        "(idx unsigned, from stream idx at issue; SRAM read in cycle t); result onto stream "
        "out in cycle t+1."),
    InstrDef("MEM", "SCATTER", 11, (
        F("addr", 6, 13, "addr", stride="A", doc="base address"),
        *_stream_fields("idx", 19, "offset"), *_stream_fields("in", 25, "data")),
        Latency(1), (Operand("int", "addr"), Operand("stream", "idx"), Operand("stream", "in")),
        "Per-lane store: lane l writes in[l] into lane l of address addr + idx[l] (idx "
        "unsigned); operands taken at issue, SRAM write in cycle t+1."),
)

# VXM: one opcode; ALU ops are fields
_VXM = (
    InstrDef("VXM", "VXM", 8, (
        F("type", 6, 2, "type", doc="operand type (i8, i16, i32, u8)"),
        F("otype", 8, 2, "type", doc="result type"),
        F("sat", 10, 1, "flag", doc="1: saturate the result to otype, 0: wrap"),
        F("op1", 11, 5, "vop", doc="stage-1 ALU op on (a, b)"),
        F("op2", 16, 5, "vop", doc="stage-2 ALU op on (stage-1 result, c)"),
        F("a", 21, 7, "sel", doc="operand a selector"),
        F("b", 28, 7, "sel", doc="operand b selector"),
        F("c", 35, 7, "sel", doc="operand c selector"),
        F("d", 42, 7, "sel", doc="destination selector (stream or register)"),
        F("imm", 49, 15, "imm", signed=True, stride="A", doc="immediate (shared by a, b, c)"),
    ), Latency(3), (Operand("vxm", "expr"),),
        "d = op2(op1(a, b), c): per-lane ALU chain, one instruction per cycle, pipelined.  "
        "Stream and register operands are read at issue; the result is written (stream or "
        "register) in cycle t+3.", type_suffix=True),
)

# MXM: row [14:6], weight stream [20:15], ld [22:21], x stream [28:23], acc [34:29],
# accum [35], emit [36], out stream [42:37], extra load rows [46:43]
_MXM_ROW = F("row", 6, 9, "row", stride="A", doc="shadow-buffer row (LW) or column (LWT)")
_MXM_W = _stream_fields("w", 15, "weight")
_MXM_X = F("extra", 43, 4, "ldx", doc="rows (columns) loaded beyond the first: rows "
           "row..row+extra from streams w..w+extra, in one aligned group of mxm_load_rows")
_MXM = (
    InstrDef("MXM", "LW", 8, (_MXM_ROW, *_MXM_W, _MXM_X), Latency(1),
             (Operand("int", "row"), Operand("stream", "w"), Operand("rows", "rows")),
             "Shadow weights row `row` <- int8 vector on stream w (taken at issue, written in "
             "cycle t+1): W'[row, :] = w.  With rows=n (configs with mxm_load_rows >= n): "
             "W'[row + j, :] = stream w + j for j < n, in one cycle; the n rows lie in one "
             "aligned group of mxm_load_rows rows."),
    InstrDef("MXM", "LWT", 9, (_MXM_ROW, *_MXM_W, _MXM_X), Latency(-1, 2),
             (Operand("int", "row"), Operand("stream", "w"), Operand("rows", "rows")),
             "Transposed load: shadow column `row` <- stream w: W'[:, row] = w (crosses "
             "superlanes: written in cycle t+2S-1).  rows=n: columns row..row+n-1 from "
             "streams w..w+n-1, as LW."),
    InstrDef("MXM", "IW", 10, (), Latency(0), (),
             "Install weights: swap shadow and active buffers at the end of cycle t (MVMs "
             "issued from t+1 use the new weights).  Refused while a load to the shadow is in "
             "flight (writes after cycle t)."),
    InstrDef("MXM", "MVM", 11, (
        F("row", 6, 9, "row", stride="B", doc="load row/column (with ld)"),
        *_MXM_W,
        F("ld", 21, 2, "ld", doc="0 none, 1 LW row, 2 LWT column in the same cycle"),
        *_stream_fields("x", 23, "activation"),
        F("acc", 29, 6, "acc", stride="A", doc="accumulator slot"),
        F("accum", 35, 1, "flag", doc="1: add to the slot, 0: overwrite it"),
        F("emit", 36, 1, "flag", doc="1: also write the int32 result onto out..out+3"),
        *_stream_fields("out", 37, "result"),
        _MXM_X,
    ), Latency(2, 2), (Operand("stream", "x"), Operand("int", "acc"),
                       Operand("flag", "accum"), Operand("emit", "emit"),
                       Operand("load", "lw"), Operand("rows", "rows")),
        "r = W.x (int8 x int8 -> int32 per output lane, active weights at issue) "
        "[+ acc[slot] if accumulate]; acc[slot] = r and, with emit, r goes onto streams "
        "out..out+3 (little-endian byte planes) in cycle t+2S+2.  With lw=/lwt= the same "
        "instruction also loads the shadow buffer like LW/LWT (double buffering at full "
        "rate)."),
)

# SXM: in [11:6], out [17:12], type [19:18], otype [21:20], n (TPUT row, TGET col) [31:22],
# map [33:32], TGET rows [43:34]
_SXM_IN = _stream_fields("in", 6, "input")
_SXM_OUT = _stream_fields("out", 12, "output")
_SXM_TYPE = F("type", 18, 2, "type", doc="element type (sets the number of byte-streams)")
_SXM_OTYPE = F("otype", 20, 2, "type", doc="result type (reductions)")
_SXM_MAP = F("map", 32, 2, "map", stride="A", doc="permutation map index")


def _sxm_move(mn, opcode, domain, lat, summary, nname="lanes to move (+: towards higher lanes)"):
    return InstrDef("SXM", mn, opcode, (
        *_SXM_IN, *_SXM_OUT, _SXM_TYPE,
        F("n", 22, 10, domain, signed=True, stride="A", doc=nname),
    ), lat, (Operand("int", "n"), Operand("stream", "in"), Operand("stream", "out")),
        summary, type_suffix=True)


_SXM_CROSS = Latency(0, 2)  # data crosses superlanes: 2(S-1) + 2
_SXM_RED = Latency(1, 2)  # reductions: 2(S-1) + 3
_SXM = (
    _sxm_move("SHS", 8, "shift_local", Latency(2),
              "Shift within each superlane (16 lanes) by n: out[16g+i] = in[16g+i-n] "
              "(0 outside the superlane)."),
    _sxm_move("ROTS", 9, "shift_local", Latency(2),
              "Rotate within each superlane: out[16g+i] = in[16g + (i-n) mod 16]."),
    _sxm_move("SHV", 10, "shift_vector", _SXM_CROSS,
              "Shift across the whole vector: out[i] = in[i-n] (0 outside 0..VL-1)."),
    _sxm_move("ROTV", 11, "shift_vector", _SXM_CROSS,
              "Rotate the whole vector: out[i] = in[(i-n) mod VL]."),
    _sxm_move("DIST", 12, "lane", _SXM_CROSS,
              "Distribute (broadcast) lane n to every lane: out[i] = in[n].", "source lane"),
    InstrDef("SXM", "PMAP", 13, (*_SXM_IN, _SXM_MAP), Latency(1),
             (Operand("int", "map"), Operand("stream", "in")),
             "Load permutation map `map` from streams in, in+1 (uint16 per lane, "
             "little-endian; every entry < VL), written in cycle t+1.  Maps reset to identity."),
    InstrDef("SXM", "PERM", 14, (*_SXM_IN, *_SXM_OUT, _SXM_TYPE, _SXM_MAP), _SXM_CROSS,
             (Operand("int", "map"), Operand("stream", "in"), Operand("stream", "out")),
             "Permute: out[i] = in[map[i]].", type_suffix=True),
    InstrDef("SXM", "TPUT", 18, (*_SXM_IN, F("row", 22, 10, "trow", stride="A",
                                              doc="transposer row (0..R-1)")), Latency(1),
             (Operand("int", "row"), Operand("stream", "in")),
             "Transposer row `row` <- the int8 vector on stream in (taken at issue, written "
             "in cycle t+1; configs with sxm_transpose_rows = R > 0): T[row, :] = in.  A "
             "TGET issued from t+2 sees it."),
    InstrDef("SXM", "TGET", 19, (*_SXM_OUT,
                                 F("col", 22, 10, "tcol", stride="A",
                                   doc="transposer column (a lane, 0..VL-1)"),
                                 F("rows", 34, 10, "trows", doc="rows read (1..R)")),
             _SXM_CROSS, (Operand("int", "col"), Operand("int", "rows"),
                          Operand("stream", "out")),
             "Transposer column `col` of its first `rows` rows onto stream out: out[r] = "
             "T[r, col] for r < rows, 0 beyond (int8; crosses superlanes like ROTV).  R "
             "TPUTs and VL TGETs transpose an R x VL int8 tile."),
    *(
        InstrDef("SXM", mn, op, (*_SXM_IN, *_SXM_OUT, _SXM_TYPE, _SXM_OTYPE), _SXM_RED,
                 (Operand("stream", "in"), Operand("stream_t", "out")),
                 f"Row {what} over all VL lanes of the type-`type` vector on in.., broadcast to "
                 "every lane of out.. as `otype` (wrapping).", type_suffix=True)
        for mn, op, what in (("RMAX", 15, "max"), ("RMIN", 16, "min"), ("RSUM", 17, "sum"))
    ),
)

# C2C: link [7:6], stream [13:8], type [15:14]
_C2C_LINK = F("link", 6, 2, "link", doc="link of this end of the chip")
_C2C_TYPE = F("type", 14, 2, "type", doc="message type: its byte planes, one per stream")
_C2C = (
    InstrDef("C2C", "SEND", 8, (_C2C_LINK, *_stream_fields("in", 8, "data"), _C2C_TYPE),
             Latency(0, 0, 1), (Operand("int", "link"), Operand("stream", "in")),
             "Take the `type` value on streams in.. at issue (cycle t) and send it on link "
             "`link` as one message of w byte planes (w = type bytes): its w x B beats "
             "(B = 16 / c2c_bytes_per_cycle per plane) leave in cycles t+1..t+wB, and it "
             "is in the far end's receive buffer from cycle t + c2c_latency + wB.  The "
             "link is busy until t+wB: a SEND on it issued before then is refused.  "
             "Latency: wB (the formula shows w = 1).", type_suffix=True),
    InstrDef("C2C", "RECV", 9, (_C2C_LINK, *_stream_fields("out", 8, "result"), _C2C_TYPE),
             Latency(1), (Operand("int", "link"), Operand("stream", "out")),
             "Take the oldest message from link `link`'s receive buffer (cycle t) and write "
             "its planes onto streams out.. in cycle t+1.  Refused when no message has "
             "arrived by cycle t, or when the message's type is not `type`.",
             type_suffix=True),
)

ALL_DEFS: tuple[InstrDef, ...] = _ICU + _MEM + _VXM + _MXM + _SXM + _C2C
ICU_DEFS = {d.mnemonic: d for d in _ICU}
#: per slice kind: mnemonic -> definition (the ICU instructions included)
DEFS: dict[str, dict[str, InstrDef]] = {
    kind: {**ICU_DEFS, **{d.mnemonic: d for d in ALL_DEFS if d.kind == kind}}
    for kind in SLICE_KINDS
}
#: per slice kind: opcode -> definition
BY_OPCODE: dict[str, dict[int, InstrDef]] = {
    kind: {d.opcode: d for d in defs.values()} for kind, defs in DEFS.items()
}
#: per slice kind: mnemonic -> opcode value (for the RTL decoders)
OPCODES: dict[str, dict[str, int]] = {
    kind: {m: d.opcode for m, d in defs.items()} for kind, defs in DEFS.items()
}
DEF_BY_MNEMONIC: dict[str, InstrDef] = {d.mnemonic: d for d in ALL_DEFS}


def _self_check() -> None:
    for d in ALL_DEFS:
        used = ((1 << OPCODE_BITS) - 1) << OPCODE_OFFSET
        for f in d.fields:
            assert f.hi < WORD_BITS, (d.mnemonic, f.name)
            assert not used & f.mask, f"{d.mnemonic}: field {f.name} overlaps"
            used |= f.mask
        assert 0 < d.opcode < 1 << OPCODE_BITS
    for kind in SLICE_KINDS:
        assert len(BY_OPCODE[kind]) == len(DEFS[kind]), kind


_self_check()


def layout(kind: str, mnemonic: str) -> list[tuple[str, int, int, bool]]:
    """(field name, bit offset, width, signed) of an instruction, the opcode first."""
    return instr_def(kind, mnemonic).layout()


def instr_def(kind: str, mnemonic: str) -> InstrDef:
    try:
        return DEFS[kind][mnemonic.upper()]
    except KeyError:
        if kind not in DEFS:
            raise IsaError(f"unknown slice kind {kind!r}; kinds are {', '.join(DEFS)}") from None
        raise IsaError(
            f"{mnemonic!r} is not a {kind} instruction; {kind} instructions are "
            f"{', '.join(DEFS[kind])}"
        ) from None


def latency(mnemonic: str, cfg: TspConfig, fields: Mapping[str, int] | None = None) -> int:
    """Functional latency L of a slice instruction: last effect in cycle issue + L (a SEND's
    depends on its type: w x B for w byte planes; without ``fields``, w = 1)."""
    d = DEF_BY_MNEMONIC[mnemonic.upper()]
    if d.latency is None:
        raise IsaError(f"{mnemonic} is an ICU instruction and has no functional latency")
    if d.mnemonic == "SEND" and fields:
        return d.latency(cfg) * type_bytes(fields.get("type", 0))
    return d.latency(cfg)


# ----------------------------------------------------------------------------- instructions
def int_value(v) -> int | None:
    """``v`` as an int if it is one (numpy's too), else None: not a float, a bool or a
    numeric string, which ``int()`` would truncate or parse."""
    if isinstance(v, bool):
        return None
    try:
        return operator.index(v)
    except TypeError:
        return None


@dataclass(frozen=True)
class Instr:
    """A decoded instruction: mnemonic and every field value (absent fields are 0)."""

    mnemonic: str
    fields: Mapping[str, int]

    def __post_init__(self):
        d = DEF_BY_MNEMONIC.get(self.mnemonic) or DEF_BY_MNEMONIC.get(self.mnemonic.upper())
        if d is None:
            raise IsaError(f"unknown mnemonic {self.mnemonic!r}")
        object.__setattr__(self, "mnemonic", d.mnemonic)
        fields = self.fields
        if fields.keys() <= d.field_set:  # the common case: plain ints (the compiler's,
            vals = {}                       # the decoder's), checked without conversions
            for name in d.field_names:
                v = fields.get(name, 0)
                if type(v) is not int:
                    break
                vals[name] = v
            else:
                object.__setattr__(self, "fields", vals)
                return
        vals = {}
        unknown = set(self.fields) - d.field_set
        if unknown:
            raise IsaError(
                f"{d.mnemonic} has no field(s) {sorted(unknown)}; fields are "
                f"{', '.join(d.field_names) or '(none)'}"
            )
        for f in d.fields:
            v = self.fields.get(f.name, 0)
            if isinstance(v, str) and f.domain == "dir":
                if v.upper() not in DIRS:
                    raise IsaError(f"{d.mnemonic}.{f.name}: direction must be E or W, got {v!r}")
                v = DIRS.index(v.upper())
            elif isinstance(v, str) and f.domain == "type":
                if v not in TYPES:
                    raise IsaError(f"{d.mnemonic}.{f.name}: type must be one of {TYPES}")
                v = TYPES.index(v)
            elif isinstance(v, str) and f.domain == "vop":
                if v.upper() not in VXM_OP_BY_NAME:
                    raise IsaError(f"{d.mnemonic}.{f.name}: unknown VXM op {v!r}")
                v = VXM_OP_BY_NAME[v.upper()].code
            vals[f.name] = int_value(v)
            if vals[f.name] is None:
                raise IsaError(f"{d.mnemonic}.{f.name}: expected an int, got "
                               f"{type(v).__name__} {v!r}")
        object.__setattr__(self, "fields", vals)

    @classmethod
    def make(cls, mnemonic: str, **fields) -> Instr:
        return cls(mnemonic, fields)

    @property
    def definition(self) -> InstrDef:
        return DEF_BY_MNEMONIC[self.mnemonic]

    def __getitem__(self, name: str) -> int:
        return self.fields[name]

    def replace(self, **changes) -> Instr:
        return Instr(self.mnemonic, {**self.fields, **changes})

    def encode(self) -> int:
        d = self.definition
        word = d.opcode << OPCODE_OFFSET
        for f in d.fields:
            word |= f.encode(self.fields[f.name])
        return word


def encode(mnemonic: str, **fields) -> int:
    """The 64-bit word of ``mnemonic`` with ``fields`` (missing fields 0; "E"/"W" accepted)."""
    return Instr(mnemonic, fields).encode()


def decode(kind: str, word: int) -> Instr:
    """Decode a word of a ``kind`` queue; IsaError for an illegal opcode or reserved bits."""
    if not 0 <= word <= WORD_MASK:
        raise IsaError(f"instruction word {word:#x} is not a 64-bit value")
    opcode = (word >> OPCODE_OFFSET) & ((1 << OPCODE_BITS) - 1)
    d = BY_OPCODE[kind].get(opcode)
    if d is None:
        raise IsaError(f"illegal {kind} opcode {opcode} in word {word:#018x}")
    if word & d.reserved_mask:
        raise IsaError(
            f"{d.mnemonic} word {word:#018x} has reserved bits set ({word & d.reserved_mask:#x})"
        )
    return Instr(d.mnemonic, {f.name: f.decode(word) for f in d.fields})


# ----------------------------------------------------------------------------- validation
def type_bytes(code: int) -> int:
    return TYPE_BYTES[TYPES[code]]


def _check_streams(cfg: TspConfig, mn: str, name: str, s: int, n: int) -> None:
    if s + n > cfg.streams_per_direction:
        raise IsaError(
            f"{mn}: operand {name} uses streams s{s}..s{s + n - 1} but the config has only "
            f"s0..s{cfg.streams_per_direction - 1} per direction"
        )


def _ranges(d: InstrDef, cfg: TspConfig) -> tuple[tuple[str, int, int], ...]:
    """``(field, lo, hi)`` of every field of ``d`` under ``cfg`` (cached in `_BOUNDS`)."""
    per = _config_bounds(cfg)[2]
    r = per.get(d.mnemonic)
    if r is None:
        r = per[d.mnemonic] = tuple((f.name, *f.bounds(cfg)) for f in d.fields)
    return r


def check_ranges(instr: Instr, cfg: TspConfig, names=None) -> None:
    """Every field (or those in ``names``) within its legal range under ``cfg``."""
    d = instr.definition
    if names is None:
        vals = instr.fields
        if all(lo <= vals[n] <= hi for n, lo, hi in _ranges(d, cfg)):
            return
    for f in d.fields:
        if names is not None and f.name not in names:
            continue
        lo, hi = f.bounds(cfg)
        v = instr.fields[f.name]
        if not lo <= v <= hi:
            if f.name == "extra":  # the assembler's rows=n is extra = n - 1
                raise IsaError(f"{d.mnemonic}: rows={v + 1} out of range [{lo + 1}, {hi + 1}] "
                               f"(mxm_load_rows = {cfg.mxm_load_rows} on config {cfg.name!r})")
            raise IsaError(f"{d.mnemonic}: {f.name}={v} out of range [{lo}, {hi}]")


def check_load_rows(mn: str, row: int, extra: int, cfg: TspConfig) -> None:
    """A multi-row weight load's rows ``row..row+extra`` lie in one aligned group of
    ``cfg.mxm_load_rows`` (each shadow row has one operand line: row % mxm_load_rows)."""
    k = cfg.mxm_load_rows
    if row // k != (row + extra) // k:
        raise IsaError(f"{mn}: rows={extra + 1} from row {row} crosses a group of "
                       f"mxm_load_rows = {k} rows (rows {row}..{row + extra}; a multi-row "
                       f"load stays within rows {row // k * k}..{row // k * k + k - 1})")


#: instructions of optional hardware: mnemonic -> the config field that must be nonzero
NEEDS = {"TPUT": "sxm_transpose_rows", "TGET": "sxm_transpose_rows"}


def available(mnemonic: str, cfg: TspConfig) -> bool:
    """``mnemonic`` exists on ``cfg`` (its optional hardware, `NEEDS`, is there)."""
    need = NEEDS.get(mnemonic)
    return need is None or bool(getattr(cfg, need))


def validate(instr: Instr, kind: str, cfg: TspConfig) -> None:
    """Raise IsaError unless ``instr`` is a legal ``kind`` instruction under ``cfg``."""
    d = instr.definition
    if d.mnemonic not in DEFS[kind]:
        raise IsaError(f"{d.mnemonic} is a {d.kind} instruction, not a {kind} instruction")
    if d.mnemonic == "READ" and instr.fields.get("wr") and not cfg.mem_read_write:
        raise IsaError(f"READ ..., w=: a read and a write in one word needs a config with "
                       f"mem_read_write = 1 (config {cfg.name!r} has 0)")
    if not available(d.mnemonic, cfg):
        raise IsaError(f"{d.mnemonic}: the SXM transposer needs a config with "
                       f"{NEEDS[d.mnemonic]} > 0 (config {cfg.name!r} has 0)")
    check_ranges(instr, cfg)
    f = instr.fields
    mn = d.mnemonic
    if d.kind == "C2C":
        p = "in" if mn == "SEND" else "out"
        _check_streams(cfg, mn, p, f[f"{p}_s"], type_bytes(f["type"]))
    elif d.kind == "MEM":
        for p in ("out", "in", "idx"):
            if f"{p}_s" in f:
                _check_streams(cfg, mn, p, f[f"{p}_s"], 1)
        if mn == "READ" and not f["wr"] and (f["waddr"] or f["in_s"] or f["in_d"]):
            raise IsaError("READ: waddr/in fields must be 0 without a write (w=)")
    elif d.kind == "MXM":
        if mn == "MVM":
            if f["ld"] == 0 and (f["row"] or f["w_s"] or f["w_d"] or f["extra"]):
                raise IsaError("MVM: row/w/rows fields must be 0 without a load (ld = 0)")
            if not f["emit"] and (f["out_s"] or f["out_d"]):
                raise IsaError("MVM: out fields must be 0 without emit")
            if f["emit"]:
                _check_streams(cfg, mn, "emit", f["out_s"], 4)
        if "extra" in f:
            check_load_rows(mn, f["row"], f["extra"], cfg)
            _check_streams(cfg, mn, "w", f["w_s"], f["extra"] + 1)
    elif d.kind == "SXM":
        width = type_bytes(f["type"]) if "type" in f else 2
        if mn in ("TPUT", "TGET"):
            p = "in" if mn == "TPUT" else "out"
            _check_streams(cfg, mn, p, f[f"{p}_s"], 1)
        elif mn == "PMAP":
            _check_streams(cfg, mn, "in", f["in_s"], 2)
        else:
            _check_streams(cfg, mn, "in", f["in_s"], width)
            ow = type_bytes(f["otype"]) if "otype" in f else width
            _check_streams(cfg, mn, "out", f["out_s"], ow)
    elif d.kind == "VXM":
        _validate_vxm(f, cfg)


def _validate_vxm(f: Mapping[str, int], cfg: TspConfig) -> None:
    op1, op2 = VXM_OP_BY_CODE[f["op1"]], VXM_OP_BY_CODE[f["op2"]]
    kinds = {k: sel_kind(f[k]) for k in "abcd"}
    for k, kd in kinds.items():
        if kd == "bad":
            raise IsaError(f"VXM: operand {k} selector {f[k]} is not a stream, register "
                           f"r0..r{VXM_REGS - 1}, imm, lane or none")
    need = {"a": True, "b": op1.arity >= 2, "c": op1.arity == 3 or op2.arity >= 2}
    if op2.arity == 3:
        raise IsaError("VXM: SEL is a stage-1 op (op1) only")
    if op1.arity == 3 and op2.arity != 1:
        raise IsaError(f"VXM: SEL uses operand c, so op2 must be unary, got {op2.name}")
    for k, needed in need.items():
        if needed and kinds[k] == "none":
            raise IsaError(f"VXM: operand {k} missing")
        if not needed and kinds[k] != "none":
            raise IsaError(f"VXM: operand {k} given but unused")
    if kinds["d"] not in ("stream", "reg"):
        raise IsaError("VXM: destination d must be a stream or a register")
    if op1.name == "REQUANT" and kinds["b"] != "reg":
        raise IsaError("VXM: REQUANT's operand must be a register rK (multiplier, shift, zp)")
    if op2.name == "REQUANT" and kinds["c"] != "reg":
        raise IsaError("VXM: REQUANT's operand must be a register rK (multiplier, shift, zp)")
    for op, k in ((op1, "b"), (op2, "c")):
        if op.name == "REQUANT" and f[k] - SEL_REG + 2 >= VXM_REGS:
            raise IsaError(f"VXM: REQUANT uses rK..rK+2, so K <= {VXM_REGS - 3}")
    if f["imm"] and "imm" not in (kinds["a"], kinds["b"], kinds["c"]):
        raise IsaError("VXM: imm must be 0 when no operand is an immediate")
    w = type_bytes(f["type"])
    for k in "abc":
        if kinds[k] == "stream":
            _check_streams(cfg, "VXM", k, f[k] & 31, w)
    if kinds["d"] == "stream":
        _check_streams(cfg, "VXM", "d", f["d"] & 31, type_bytes(f["otype"]))


def stride_fields(d: InstrDef) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Names of the fields REPEAT advances by stride_a and by stride_b."""
    return (tuple(f.name for f in d.fields if f.stride == "A"),
            tuple(f.name for f in d.fields if f.stride == "B"))


def main(argv=None) -> int:
    """``python -m arch.isa --doc [--config NAME]``: print docs/isa.md."""
    from .isa_doc import main as doc_main

    return doc_main(argv)


if __name__ == "__main__":
    raise SystemExit(main())
