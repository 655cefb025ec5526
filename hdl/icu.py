"""Instruction control unit: one instruction queue per slice.

The ICU holds its slice's program in an instruction memory that the host
loads, and issues at most one instruction per cycle into superlane 0 of its
slice (the `issue` port of `hdl.slice.SliceSignature`), with the exact timing
of docs/isa.md:

- every queue issues its first instruction in cycle 0, the cycle after the
  host's start;
- ``NOP n``: the next instruction issues n cycles after the NOP;
- ``REPEAT n, d, sa, sb`` (looked ahead while the instruction before it
  issues): repetition k issues at ``t0 + k*d`` with offsets ``k*sa``/``k*sb``
  for the A-/B-stride fields, the next instruction at ``t0 + n*d + 1``;
- ``SYNC`` parks the queue; a ``NOTIFY`` (of any queue) in cycle t releases
  it, and the parked queues and the notifier issue again in cycle t + 2;
- ``HALT`` stops the queue.

The ICU also checks what it issues (a known opcode, reserved bits clear, every
field in range for the config, strided fields after their REPEAT offset),
refusing a bad word with an `ErrorCode` instead of issuing it, and counts the
slice instructions it issued.  It knows nothing of latencies: how long the
slice works on an instruction is the slice's own in-flight state
(`hdl.slice.SliceSignature` ``busy``).
"""

from __future__ import annotations

from amaranth import Module, Signal, signed
from amaranth.lib import enum, memory, wiring
from amaranth.lib.wiring import In, Out

from arch import isa
from arch.config import SlicePosition, TspConfig

from .slice import (
    ERROR_CODE_BITS,
    OFFSET_BITS,
    ErrorCode,
    check_slice_config,
    issue_layout,
    legal_signal,
    opcode_of,
    view,
)

COUNTER_BITS = 48


class State(enum.Enum, shape=2):
    IDLE = 0  # before start (and after reset)
    RUN = 1
    PARKED = 2  # SYNC issued, waiting for a NOTIFY
    HALTED = 3


def _static_legal(m, word, kind: str, cfg: TspConfig, name: str):
    """Known opcode, reserved bits clear, every non-strided field within its range
    (strided fields are checked after the REPEAT offset is added)."""
    return legal_signal(m, word, kind, cfg, strided_fields=False, name=name)


class InstructionControlUnit(wiring.Component):
    """The instruction queue of the slice at `position`.

    Ports: ``start`` (pulse: run from cycle 0 = next cycle), ``stop`` (halt now: a
    fault elsewhere), ``notify_in`` (some queue issues NOTIFY this cycle),
    ``notify_out``; the host's instruction-memory write port (``imem_*``);
    ``issue`` to the slice; ``halted`` (the queue issued HALT or was stopped, in an
    earlier cycle); ``error``/``error_code`` (a refused instruction, this cycle);
    ``issued_count``, the slice instructions issued (cleared by ``start``).
    """

    def __init__(self, cfg: TspConfig, position: SlicePosition):
        check_slice_config("InstructionControlUnit", cfg)
        if not isinstance(position, SlicePosition):
            raise ValueError(f"InstructionControlUnit: position must be a SlicePosition of "
                             f"cfg.slices, got {type(position).__name__} {position!r}")
        if position.kind not in isa.SLICE_KINDS:
            raise ValueError(f"ICU position kind must be one of {isa.SLICE_KINDS}, "
                             f"got {position.kind!r}")
        self.cfg = cfg
        # only the kind: every queue of a kind is the same hardware (one module,
        # `sim/stamp.py`); the position names the instance in the chip, not here
        self.kind = position.kind
        super().__init__({
            "start": In(1),
            "stop": In(1),
            "notify_in": In(1),
            "notify_out": Out(1),
            "imem_we": In(1),
            "imem_addr": In(cfg.imem_address_bits_of(position.kind)),
            "imem_data": In(isa.WORD_BITS),
            "issue": Out(issue_layout()),
            "halted": Out(1),
            "error": Out(1),
            "error_code": Out(ERROR_CODE_BITS),
            "issued_count": Out(COUNTER_BITS),
        })

    def elaborate(self, platform):
        m = Module()
        cfg, kind = self.cfg, self.kind
        depth = cfg.imem_depth_of(kind)
        abits = cfg.imem_address_bits_of(kind)

        m.submodules.imem = imem = memory.Memory(shape=isa.WORD_BITS, depth=depth, init=[])
        wp = imem.write_port()
        m.d.comb += [wp.addr.eq(self.imem_addr), wp.data.eq(self.imem_data),
                     wp.en.eq(self.imem_we)]
        rp_cur = imem.read_port(domain="comb")
        rp_nxt = imem.read_port(domain="comb")

        state = Signal(State)
        pc = Signal(abits + 1)  # one extra bit: pc == depth is past the end
        wait = Signal(32)
        rep_left = Signal(16)
        rep_d = Signal(16)
        rep_wait = Signal(16)
        rep_word = Signal(isa.WORD_BITS, reset_less=True)
        rep_stride_a = Signal(signed(12), reset_less=True)
        rep_stride_b = Signal(signed(12), reset_less=True)
        off_a = Signal(signed(OFFSET_BITS))
        off_b = Signal(signed(OFFSET_BITS))

        cur = rp_cur.data
        nxt = rp_nxt.data
        m.d.comb += [rp_cur.addr.eq(pc[:abits]), rp_nxt.addr.eq(pc[:abits] + 1)]

        rep_op = isa.OPCODES[kind]["REPEAT"]
        rv = view(nxt, kind, "REPEAT")
        # the words' checks, evaluated only in a cycle the queue may issue a fresh word in
        # (they read 0 otherwise, when nothing reads them)
        with m.If((state == State.RUN) & (wait == 0) & (rep_left == 0)):
            nxt_legal = _static_legal(m, nxt, kind, cfg, "nxt_legal")
            legal = _static_legal(m, cur, kind, cfg, "cur_legal")
        nxt_is_repeat = (opcode_of(nxt) == rep_op) & (pc + 1 < depth) & nxt_legal
        op = opcode_of(cur)
        icu_ops = isa.OPCODES[kind]

        # the word issued this cycle (a fresh slice instruction or a repetition)
        issue_word = Signal(isa.WORD_BITS)
        issue_off_a = Signal(signed(OFFSET_BITS))
        issue_off_b = Signal(signed(OFFSET_BITS))
        want_issue = Signal()  # a slice instruction is due this cycle (before range checks)
        fault = Signal()
        fault_code = Signal(ERROR_CODE_BITS)

        # -- strided-field range check of the word about to issue -----------------------
        stride_ok = Signal(init=1)
        stride_code = Signal(ERROR_CODE_BITS)
        # (decoded by opcode, and only with a word to issue)
        with m.If(want_issue), m.Switch(opcode_of(issue_word)):
            for mn, d in isa.DEFS[kind].items():
                sf = [f for f in d.fields if f.stride]
                if not sf:
                    continue
                with m.Case(d.opcode):
                    v = view(issue_word, kind, mn)
                    for f in sf:
                        lo, hi = f.bounds(cfg)
                        off = issue_off_a if f.stride == "A" else issue_off_b
                        eff = getattr(v, f.name) + off
                        with m.If((eff < lo) | (eff > hi)):
                            m.d.comb += stride_ok.eq(0)
                            code = (ErrorCode.ADDRESS_RANGE
                                    if kind == "MEM" and f.domain in ("addr", "rw_addr")
                                    else ErrorCode.ILLEGAL_INSTRUCTION)
                            m.d.comb += stride_code.eq(code)

        # -- decode (combinational): what this queue does in this cycle ------------------
        # (START is accepted only while the chip is not running, when every queue is IDLE
        # or HALTED: no issue depends on the host's command inputs combinationally)
        go = (state == State.RUN) & ~self.stop
        is_icu_op = Signal()  # a legal NOP/SYNC/NOTIFY/HALT is due this cycle
        with m.If(go & (wait == 0)):
            with m.If(rep_left != 0):
                with m.If(rep_wait == 0):
                    m.d.comb += [want_issue.eq(1), issue_word.eq(rep_word),
                                 issue_off_a.eq(off_a + rep_stride_a),
                                 issue_off_b.eq(off_b + rep_stride_b)]
            with m.Elif(pc >= depth):
                m.d.comb += [fault.eq(1), fault_code.eq(ErrorCode.IMEM_OVERRUN)]
            with m.Elif(~legal):
                m.d.comb += [fault.eq(1), fault_code.eq(ErrorCode.ILLEGAL_INSTRUCTION)]
            with m.Elif(op == rep_op):
                m.d.comb += [fault.eq(1), fault_code.eq(ErrorCode.REPEAT_MISPLACED)]
            with m.Elif((op == icu_ops["NOP"]) | (op == icu_ops["SYNC"])
                        | (op == icu_ops["NOTIFY"]) | (op == icu_ops["HALT"])):
                m.d.comb += is_icu_op.eq(1)
            with m.Else():
                m.d.comb += [want_issue.eq(1), issue_word.eq(cur),
                             issue_off_a.eq(0), issue_off_b.eq(0)]
        with m.If(want_issue & ~stride_ok):
            m.d.comb += [fault.eq(1), fault_code.eq(stride_code)]

        do_issue = want_issue & stride_ok
        m.d.comb += [
            self.issue.valid.eq(do_issue),
            self.issue.word.eq(issue_word),
            self.issue.off_a.eq(issue_off_a),
            self.issue.off_b.eq(issue_off_b),
            self.halted.eq(state == State.HALTED),
            self.notify_out.eq(is_icu_op & (op == icu_ops["NOTIFY"])),
            self.error.eq(fault),
            self.error_code.eq(fault_code),
        ]

        # -- sequencing (state updates) --------------------------------------------------
        with m.If(self.start):
            m.d.sync += [state.eq(State.RUN), pc.eq(0), wait.eq(0), rep_left.eq(0),
                         off_a.eq(0), off_b.eq(0)]
        with m.Elif(self.stop | fault):
            with m.If(state != State.IDLE):
                m.d.sync += state.eq(State.HALTED)
        with m.Elif(state == State.PARKED):
            with m.If(self.notify_in):
                m.d.sync += [state.eq(State.RUN), wait.eq(isa.SYNC_RELEASE_DELAY - 1)]
        with m.Elif(state == State.RUN):
            with m.If(wait != 0):
                m.d.sync += wait.eq(wait - 1)
            with m.Elif(rep_left != 0):
                with m.If(rep_wait != 0):
                    m.d.sync += rep_wait.eq(rep_wait - 1)
                with m.Else():
                    m.d.sync += [rep_left.eq(rep_left - 1), rep_wait.eq(rep_d - 1),
                                 off_a.eq(off_a + rep_stride_a), off_b.eq(off_b + rep_stride_b)]
            with m.Elif(is_icu_op):
                with m.Switch(op):
                    with m.Case(icu_ops["NOP"]):
                        m.d.sync += [wait.eq(view(cur, kind, "NOP").n - 1), pc.eq(pc + 1)]
                    with m.Case(icu_ops["SYNC"]):
                        m.d.sync += pc.eq(pc + 1)
                        with m.If(self.notify_in):
                            m.d.sync += wait.eq(isa.SYNC_RELEASE_DELAY - 1)
                        with m.Else():
                            m.d.sync += state.eq(State.PARKED)
                    with m.Case(icu_ops["NOTIFY"]):
                        m.d.sync += [wait.eq(isa.SYNC_RELEASE_DELAY - 1), pc.eq(pc + 1)]
                    with m.Case(icu_ops["HALT"]):
                        m.d.sync += state.eq(State.HALTED)
                    with m.Default():  # excluded by is_icu_op
                        pass
            with m.Elif(do_issue):  # a fresh slice instruction (not a repetition)
                with m.If(nxt_is_repeat):
                    m.d.sync += pc.eq(pc + 2)
                    with m.If(rv.n != 0):
                        m.d.sync += [rep_left.eq(rv.n), rep_d.eq(rv.d),
                                     rep_wait.eq(rv.d - 1), rep_word.eq(cur),
                                     rep_stride_a.eq(rv.stride_a),
                                     rep_stride_b.eq(rv.stride_b),
                                     off_a.eq(0), off_b.eq(0)]
                with m.Else():
                    m.d.sync += pc.eq(pc + 1)

        # -- counter ------------------------------------------------------------------------
        with m.If(self.start):
            m.d.sync += self.issued_count.eq(0)
        with m.Elif(do_issue):
            m.d.sync += self.issued_count.eq(self.issued_count + 1)
        return m
