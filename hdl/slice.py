"""What every functional slice plugs into: the issue port, the tile stream ports,
the error report, and decode helpers built from the one ISA definition.

The ICU of a slice issues at most one instruction per cycle, in superlane-0
time, on the slice's `issue` port: the 64-bit word plus the REPEAT offsets to
add to its A-stride and B-stride fields (`off_a`, `off_b`: ``k * stride``).  The
slice decodes it, reads its stream operands from ``tiles[0]`` in the issue
cycle, and carries the decoded control north through a `SkewChain`, so tile
``k`` acts ``k`` cycles later.  A slice reports a run-time fault (an address out
of range, a bank conflict, a stream collision) on ``error`` with a code from
`ErrorCode` in the cycle it detects it; the chip latches the first one and
stops the machine.

``busy`` is the slice's in-flight state, from its own pipeline registers: high
in every cycle after an issue in which a valid bit of any of its tiles (skew
chain, pipeline stages, pending SRAM writes, results on their way out) holds
work of an instruction, up to superlane S-1.  It depends on registers only.
The chip is done when every queue has halted and no slice is busy; a slice's
busy cycles are its issue cycles and the cycles it is busy.  (`arch.timing`
says how long that is per instruction; no RTL reads it.)
"""

from __future__ import annotations

import enum

from amaranth import Array, Cat, Const, Mux, Signal, Value, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from arch import isa
from arch.config import TspConfig

from .tile import TileStreamsSignature

#: width of the REPEAT offsets (|k * stride| <= 65535 * 2048 < 2**27)
OFFSET_BITS = 32
#: lanes per superlane tile the slice RTL is written for
LANES = 16


def check_slice_config(component: str, cfg, *, min_streams: int = 1, why: str = "") -> None:
    """The checks every slice component makes before ``super().__init__``: a TspConfig,
    16 lanes per superlane and at least `min_streams` streams per direction (`why`)."""
    if not isinstance(cfg, TspConfig):
        raise ValueError(f"{component}: cfg must be a TspConfig, got {type(cfg).__name__}")
    if cfg.lanes_per_superlane != LANES:
        raise ValueError(f"{component}: lanes_per_superlane must be {LANES}, "
                         f"got {cfg.lanes_per_superlane}")
    if cfg.streams_per_direction < min_streams:
        raise ValueError(f"{component}: streams_per_direction must be >= {min_streams}"
                         f"{f' ({why})' if why else ''}, got {cfg.streams_per_direction}")


def check_vector_length(component: str, vl) -> None:
    """A vector length a component is built for: a positive multiple of the 16 lanes of a
    superlane (ValueError naming the component)."""
    if isinstance(vl, bool) or not isinstance(vl, int) or vl < LANES or vl % LANES:
        raise ValueError(f"{component}: vl must be a positive multiple of {LANES} (lanes "
                         f"per superlane), got {vl!r}")


def replica_count(component: str, param: str, value: int | None, hi: int,
                  why: str = "") -> int:
    """How many of ``hi`` identical replicas (lanes, MAC rows) to build: ``value``, or all
    when None; a ValueError naming the component, parameter and range otherwise."""
    if value is None:
        return hi
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= hi:
        raise ValueError(f"{component} {param} must be in 1..{hi}"
                         f"{f' ({why})' if why else ''}, got {value!r}")
    return value


def stream_select(tile, index_bits: int, s, d):
    """Stream ``s`` of direction ``d`` (0 E, 1 W) of ``tile``: one (2 x 2**index_bits)-way
    mux, complete (streams beyond the config read as zero)."""
    n = 1 << index_bits
    e = [tile.e_in[i] for i in range(len(tile.e_in))]
    w = [tile.w_in[i] for i in range(len(tile.w_in))]
    zero = [Const(0, len(e[0]))] * (n - len(e))
    return Array(e + zero + w + zero)[Cat(s[:index_bits], d)]


def stream_case(m, tile, index_bits: int, s, d, *, en, name: str, shape=None):
    """`stream_select` into a new signal (of ``shape``, default the stream's width) as
    one case mux assigned only with ``en``: 0 otherwise, so the simulator skips it in
    cycles without an instruction (where `stream_select` is evaluated every cycle)."""
    sig = Signal(shape if shape is not None else len(tile.e_in[0]), name=name)
    with m.If(en), m.Switch(Cat(s[:index_bits], d)):
        for j in range(len(tile.e_in)):
            with m.Case(j):
                m.d.comb += sig.eq(tile.e_in[j])
            with m.Case(j + (1 << index_bits)):
                m.d.comb += sig.eq(tile.w_in[j])
    return sig


def stream_span(valid, base, n, ns: int):
    """The ``ns``-bit write-enable mask of a result of ``n`` byte planes (an int or a
    Value) written onto streams ``base`` .. ``base + n - 1`` (streams past the last
    dropped), 0 unless ``valid``.  Two shifts of one vector: a comparison per stream costs
    the simulator ``ns`` of them in every cycle (`stream_write_enables`)."""
    ones = (Const((1 << n) - 1, max(n, 1)) if isinstance(n, int)
            else ((Const(1, 1) << n) - 1).as_unsigned())
    span = ones << base
    return Mux(valid, span[:ns] if len(span) > ns else span, 0)


def stream_write_enables(m, tile, mask, west) -> None:
    """``tile``'s write enables: ``mask`` (`stream_span`) eastward, or westward where
    ``west``."""
    m.d.comb += [tile.e_we.eq(Mux(west, 0, mask)), tile.w_we.eq(Mux(west, mask, 0))]


#: the widest register a gated data chain is built of (`delay_chain`)
WORD = 64


def delay_chain(m, value, cycles, name, reset_less=False, enables=None, words=False):
    """``value`` through ``cycles`` registers: the list of every stage ([0] = value).

    ``enables[n]`` (optional): stage ``n + 1`` loads only in a cycle with it set -- the
    valid bit of the instruction whose data stage ``n`` holds then, so that a data chain
    moves only with work in it (nothing reads a stage without its valid control word).
    ``words``: the first stage (gated, loaded from a wide expression) is built of registers
    of at most `WORD` bits: Verilator computes a wider value in temporaries in front of
    the ``if`` that gates it, so in every cycle; in words, only with the enable."""
    stages = [value]
    for n in range(cycles):
        if enables is None or n > 0 or not words:
            r = Signal(value.shape(), name=f"{name}_d{n + 1}", reset_less=reset_less)
            if enables is None:
                m.d.sync += r.eq(stages[-1])
            else:
                with m.If(enables[n]):
                    m.d.sync += r.eq(stages[-1])
        else:
            prev, regs = Value.cast(stages[-1]), []
            for k, lo in enumerate(range(0, len(prev), WORD)):
                w = Signal(min(WORD, len(prev) - lo), reset_less=reset_less,
                           name=f"{name}_d{n + 1}_w{k}")
                with m.If(enables[n]):
                    m.d.sync += w.eq(prev[lo:lo + WORD])
                regs.append(w)
            r = Cat(*regs)
        stages.append(r)
    return stages


class ErrorCode(enum.IntEnum):
    """Fault codes the host reads in the status registers (0 = none)."""

    NONE = 0
    ILLEGAL_INSTRUCTION = 1  # unknown opcode, reserved bits set, a field out of range
    # (non-address fields also after REPEAT strides), or IW during a weight load
    REPEAT_MISPLACED = 2  # REPEAT not directly after a slice instruction
    IMEM_OVERRUN = 3  # the queue ran past the end of its instruction memory
    ADDRESS_RANGE = 4  # a MEM address (after REPEAT strides) outside the slice
    BANK_CONFLICT = 5  # a MEM read and write in one cycle in the same bank
    STREAM_COLLISION = 6  # one slice writing one stream twice in one cycle
    VALUE_RANGE = 7  # a run-time value out of its range (e.g. a REQUANT shift)
    LINK_BUSY = 8  # a C2C SEND while the link still sends the previous vector
    LINK_EMPTY = 9  # a C2C RECV with nothing arrived
    LINK_OVERFLOW = 10  # a message arrives at a full C2C receive buffer
    LINK_TYPE = 11  # a C2C RECV of another type than the message it takes


ERROR_CODE_BITS = 4


def issue_layout() -> data.StructLayout:
    return data.StructLayout({
        "valid": 1,
        "word": isa.WORD_BITS,
        "off_a": signed(OFFSET_BITS),
        "off_b": signed(OFFSET_BITS),
    })


class SliceSignature(wiring.Signature):
    """A slice column seen from the slice: issue in, stream ports and error out."""

    def __init__(self, cfg: TspConfig):
        self.cfg = cfg
        super().__init__({
            "issue": In(issue_layout()),
            "tiles": Out(TileStreamsSignature(cfg)).array(cfg.superlanes),
            "error": Out(1),
            "error_code": Out(ERROR_CODE_BITS),
            "busy": Out(1),
        })

    def __eq__(self, other):
        return isinstance(other, SliceSignature) and self.cfg.params() == other.cfg.params()

    def __hash__(self):
        return hash(("SliceSignature", tuple(sorted(self.cfg.params().items()))))


def merge_tiles(m, column, tiles, skew) -> None:
    """A slice column's ``busy`` (its skew chain's or any tile's in-flight state) and its
    fault: the first tile (in superlane order) that reports one names it."""
    m.d.comb += column.busy.eq(Cat(skew.busy, *(t.busy for t in tiles)).any())
    for tile in reversed(tiles):
        with m.If(tile.error):
            m.d.comb += [column.error.eq(1), column.error_code.eq(tile.error_code)]


# ----------------------------------------------------------------------------- decoding
def opcode_of(word) -> object:
    return word[isa.OPCODE_OFFSET:isa.OPCODE_OFFSET + isa.OPCODE_BITS]


def instr_layout(kind: str, mnemonic: str) -> data.StructLayout:
    """The `lib.data` layout of one instruction's word, from `arch.isa.layout`.

    Reserved bits are covered by padding so the layout spans all 64 bits.
    """
    fields = {}
    for name, offset, width, is_signed in isa.layout(kind, mnemonic):
        fields[name] = (offset, signed(width) if is_signed else unsigned(width))
    members = {}
    pos = 0
    for name, (offset, shape) in sorted(fields.items(), key=lambda kv: kv[1][0]):
        if offset > pos:
            members[f"_pad{pos}"] = unsigned(offset - pos)
        members[name] = shape
        pos = offset + shape.width
    if pos < isa.WORD_BITS:
        members[f"_pad{pos}"] = unsigned(isa.WORD_BITS - pos)
    return data.StructLayout(members)


def view(word, kind: str, mnemonic: str) -> data.View:
    """View a 64-bit word value as `mnemonic`'s fields."""
    return data.View(instr_layout(kind, mnemonic), word)


def is_opcode(word, kind: str, mnemonic: str):
    return opcode_of(word) == isa.OPCODES[kind][mnemonic]


def strided(word, kind: str, mnemonic: str, name: str, off_a, off_b, extra_bits: int = 2):
    """Field `name` of `word` plus its REPEAT offset (A or B), widened so that an
    out-of-range result is visible to a range check rather than wrapped."""
    d = isa.instr_def(kind, mnemonic)
    f = d.field(name)
    v = view(word, kind, mnemonic)
    raw = getattr(v, name)
    if f.stride == "A":
        return raw + off_a
    if f.stride == "B":
        return raw + off_b
    return raw


#: field domains of optional hardware that are reserved bits on configs without it
#: (`TspConfig.mxm_load_rows` = 1: the ``extra`` field of the weight loads)
_RESERVED_WHEN_ABSENT = ("ldx",)


def legal_checks(word, kind: str, cfg: TspConfig, *, strided_fields: bool = True):
    """A signal-valued expression: `word` is a legal `kind` instruction under `cfg`
    as far as the hardware checks it (known opcode, reserved bits clear, every
    field within its range; with ``strided_fields=False`` the REPEAT-strided fields
    are left to a check after their offset is added).  The machine model checks
    more (operand combinations); see docs/verification.md."""
    ok_any = Const(0)
    for opcode, cond in _legal_terms(word, kind, cfg, strided_fields=strided_fields):
        ok_any = ok_any | ((opcode_of(word) == opcode) & cond)
    return ok_any


def legal_signal(m, word, kind: str, cfg: TspConfig, *, strided_fields: bool = True,
                 name: str = "legal"):
    """`legal_checks` as a signal of ``m``, decoded by opcode: only the checks of the
    word's own opcode are evaluated (a case on the opcode, not an OR over every kind of
    instruction)."""
    ok = Signal(name=name)
    with m.Switch(opcode_of(word)):
        for opcode, cond in _legal_terms(word, kind, cfg, strided_fields=strided_fields):
            with m.Case(opcode):
                m.d.comb += ok.eq(cond)
    return ok


def _legal_terms(word, kind: str, cfg: TspConfig, *, strided_fields: bool):
    """[(opcode, its check but the opcode compare)] for every instruction of ``kind``."""
    terms = []
    for mn, d in isa.DEFS[kind].items():
        # a field of optional hardware the config does not have (range 0..0) is checked as
        # the reserved bits it was before the field existed: the same hardware as then
        absent = [f for f in d.fields
                  if f.domain in _RESERVED_WHEN_ABSENT and f.bounds(cfg) == (0, 0)]
        reserved = d.reserved_mask | sum(f.mask for f in absent)
        cond = (word & Const(reserved, 64)) == 0
        v = view(word, kind, mn)
        for f in d.fields:
            if (f.stride and not strided_fields) or f in absent:
                continue
            lo, hi = f.bounds(cfg)
            flo, fhi = ((-(1 << (f.width - 1)), (1 << (f.width - 1)) - 1) if f.signed
                        else (0, (1 << f.width) - 1))
            val = getattr(v, f.name)
            if lo > flo:
                cond = cond & (val >= lo)
            if hi < fhi:
                cond = cond & (val <= hi)
        terms.append((d.opcode, cond))
    return terms


__all__ = [
    "ERROR_CODE_BITS", "ErrorCode", "OFFSET_BITS", "SliceSignature", "instr_layout",
    "is_opcode", "issue_layout", "legal_checks", "legal_signal", "merge_tiles", "opcode_of",
    "replica_count", "strided", "view",
]
