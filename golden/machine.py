"""Cycle-accurate model of the whole TSP executing a :class:`arch.program.Program`.

Everything is in superlane-0 time (docs/architecture.md): the model processes all
superlanes of an instruction in its issue cycle; superlane ``k`` of the RTL does the same
``k`` cycles later.  Timing rules (docs/isa.md):

* Every queue issues its first instruction in cycle 0, then at most one per cycle (NOP,
  REPEAT, SYNC/NOTIFY as defined in :mod:`arch.isa`).
* An instruction issued in cycle ``t`` at position ``p`` reads its stream operands from the
  stream registers at ``p`` in cycle ``t``; a result written in cycle ``t + L`` onto an
  eastward (westward) stream is at position ``p + d`` (``p - d``) in cycle ``t + L + d``,
  until a slice further downstream overwrites that stream or it leaves the chip.
* A value is *valid* from its write until it leaves the chip; never-written registers are
  invalid.  Reading an invalid register is a :class:`MachineError`.

Streams are stored by diagonal: an eastward value written by position ``p`` in cycle ``t``
is at position ``q > p`` in cycle ``t + q - p``, i.e. on the diagonal ``t - p``; the value
at ``(q, c)`` is the one on diagonal ``c - q`` from the nearest writer ``p < q``
(westward: diagonal ``t + p``, nearest writer ``p > q``).  So nothing moves per cycle and
idle cycles cost nothing: the model is event driven (only issue cycles are visited, and in
each only the queues that issue in it: the running queues are filed by their next issue
cycle, `next_cycle` / `step`; within a cycle they issue in slice order).

Effects that are *not* observable before their cycle are applied at issue (stream writes,
SRAM writes -- bank rules make an earlier read of the written bank impossible --, MXM
shadow loads -- IW refuses to swap while one is in flight --, accumulators -- only MVMs in
issue order read them).  VXM registers and SXM maps are written ``L`` cycles after issue
and are visible to instructions issued after that cycle.

Definitions (the RTL counters implement exactly these):

* ``cycles`` = 1 + the last cycle in which any queue issued (NOP/SYNC/NOTIFY/HALT
  included) or any slice column still works on an instruction (issue + occupancy, which
  includes the skew to the topmost superlane): `arch.timing`, the one definition.  The
  chip measures the same span with its clock.
* ``busy[slice]`` = number of cycles covered by the intervals ``[t, t + occupancy]`` of
  the slice instructions (not ICU instructions) that the slice issued.
* ``mxm_mvm_cycles[mxm]`` = number of MVM instructions issued by that MXM.
* collision: one slice writing the same (direction, stream) twice in the same cycle (from
  two in-flight instructions).  Different slices writing the same stream index is legal:
  the downstream write overwrites.

Observation: ``Machine(cfg, observer=obs)`` (or ``machine.observer = obs``) calls the
methods of an :class:`Observer` during a run with :class:`IssueEvent`,
:class:`StreamReadEvent`, :class:`StreamWriteEvent`, :class:`SramEvent` and
:class:`ReleaseEvent` records (``tb/funcov.py`` measures functional coverage with it).
Events arrive in model order (issue order), so an event's ``cycle`` can lie ahead of the
issue cycle (results, SRAM writes).  With no observer the model does no extra work.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Mapping
from dataclasses import dataclass, field
from heapq import heappop, heappush
from types import MappingProxyType
from typing import NamedTuple

import numpy as np

from arch.asm import format_instr
from arch.config import TspConfig, get_config
from arch.isa import (
    ALL_DEFS,
    DIRS,
    MXM_ACC_SLOTS,
    SEL_IMM,
    SEL_LANE,
    SEL_REG,
    SXM_MAPS,
    SYNC_RELEASE_DELAY,
    TYPE_BYTES,
    TYPE_SIGNED,
    TYPES,
    VXM_OP_BY_CODE,
    VXM_REGS,
    Instr,
    IsaError,
    check_load_rows,
    decode,
    stride_fields,
    validate,
)
from arch.isa import (
    latency as isa_latency,
)
from arch.program import Program
from arch.timing import SliceTimeline, occupancy
from golden.quant import requantize

E, W = 0, 1
_ICU = frozenset(("NOP", "REPEAT", "SYNC", "NOTIFY", "HALT"))
#: instructions whose occupancy depends on their fields (MVM: emit; SEND: type)
_FIELD_TIMED = frozenset(("MVM", "SEND"))

__all__ = [
    "InvalidReadError",
    "IssueEvent",
    "Machine",
    "MachineError",
    "Observer",
    "ReleaseEvent",
    "RunResult",
    "SramEvent",
    "StreamReadEvent",
    "StreamWrite",
    "StreamWriteEvent",
    "TraceCycle",
    "format_trace",
    "from_planes",
    "to_planes",
]


class MachineError(RuntimeError):
    """The program did something the hardware does not allow (message says where/when)."""


class InvalidReadError(MachineError):
    """A read of a stream register that holds no valid value in that cycle: a fault of the
    program's dataflow that only the model sees (the chip's streams carry no valid bits,
    so it reads whatever the register holds; docs/host.md, "STATUS")."""


# ----------------------------------------------------------------------------- helpers
def to_planes(values, nbytes: int) -> np.ndarray:
    """Integer vector -> (nbytes, VL) uint8 little-endian byte planes (two's complement)."""
    v = np.ascontiguousarray(np.asarray(values), dtype="<i8")
    return np.ascontiguousarray(v.view(np.uint8).reshape(-1, 8)[:, :nbytes].T)


_VIEW = {1: ("<i1", "<u1"), 2: ("<i2", "<u2"), 4: ("<i4", "<u4")}


def from_planes(planes, signed: bool = True) -> np.ndarray:
    """(nbytes, VL) uint8 byte planes -> int64 vector (sign-extended if ``signed``)."""
    p = np.asarray(planes, dtype=np.uint8)
    n = p.shape[0]
    if n in _VIEW:
        return np.ascontiguousarray(p.T).view(_VIEW[n][0 if signed else 1])[:, 0].astype(np.int64)
    v = np.zeros(p.shape[1:], dtype=np.int64)
    for k in range(n):
        v |= p[k].astype(np.int64) << (8 * k)
    return _wrap(v, 8 * n, signed)


def _wrap(v: np.ndarray, bits: int, signed: bool) -> np.ndarray:
    """Reduce int64 ``v`` to ``bits`` bits, two's complement if ``signed``."""
    if bits >= 64:
        return v
    if signed:
        half = 1 << (bits - 1)
        return ((v + half) & ((1 << bits) - 1)) - half
    return v & ((1 << bits) - 1)


def _type_range(t: str) -> tuple[int, int]:
    bits = 8 * TYPE_BYTES[t]
    if TYPE_SIGNED[t]:
        return -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return 0, (1 << bits) - 1


@dataclass
class StreamWrite:
    """A slice writes ``value`` onto stream ``stream`` in ``direction``; it is in the stream
    register at ``position`` (the writer's position +1 for E, -1 for W; -1 or n_positions
    means it left the chip) from the next cycle."""

    slice: str
    position: int
    direction: str
    stream: int
    value: np.ndarray


@dataclass
class TraceCycle:
    cycle: int
    #: (slice, instruction index, repetition (0 = the original), text)
    issued: list[tuple[str, int, int, str]] = field(default_factory=list)
    #: stream registers written at the end of this cycle
    writes: list[StreamWrite] = field(default_factory=list)


@dataclass
class RunResult:
    cycles: int
    busy: dict[str, int]
    #: slice instructions (not ICU) issued per slice, repetitions included
    issued: dict[str, int]
    mxm_mvm_cycles: dict[str, int]
    halt_cycle: dict[str, int]
    trace: list[TraceCycle] | None = None
    #: per sending (C2C slice, link): the beats sent (link utilisation)
    link_beats: dict[tuple[str, int], int] = field(default_factory=dict)


def format_trace(trace: list[TraceCycle], values: bool = True) -> str:
    lines = []
    for tc in trace:
        for s, i, rep, text in tc.issued:
            r = f".{rep}" if rep else ""
            lines.append(f"{tc.cycle:6d}  {s:8s} [{i}{r}] {text}")
        for w in tc.writes:
            v = " ".join(f"{b:02x}" for b in w.value) if values else ""
            reg = f"{w.direction}[{w.position}].s{w.stream}"
            lines.append(f"{tc.cycle:6d}  {w.slice:8s} -> {reg} {v}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- observation
class IssueEvent(NamedTuple):
    """A queue issued an instruction.  ICU instructions too (``latency`` None); a REPEAT,
    which takes no issue slot, is reported in the issue cycle of the instruction it repeats.
    """

    cycle: int
    slice: str
    kind: str
    position: int
    #: index of the instruction in its queue
    index: int
    #: repetition number (0 = the instruction itself, k = its k-th REPEAT repetition)
    rep: int
    mnemonic: str
    #: effective field values (REPEAT strides applied); read-only
    fields: Mapping[str, int]
    latency: int | None


class StreamReadEvent(NamedTuple):
    """An instruction read one stream register (one byte plane) at its own position."""

    cycle: int
    slice: str
    kind: str
    position: int
    mnemonic: str
    index: int
    rep: int
    direction: str
    stream: int
    #: the slice that wrote the value, its position, the cycle of the write (so
    #: ``cycle = producer_cycle + |position - producer_position|``), and the issue cycle
    #: and mnemonic of the instruction that wrote it
    producer: str
    producer_position: int
    producer_cycle: int
    producer_issue: int
    producer_mnemonic: str


class StreamWriteEvent(NamedTuple):
    """An instruction writes a stream (one byte plane) in ``cycle`` (= issue + latency)."""

    cycle: int
    slice: str
    kind: str
    position: int
    direction: str
    stream: int
    issue_cycle: int
    index: int
    rep: int
    mnemonic: str


class SramEvent(NamedTuple):
    """A MEM slice accesses its SRAM in ``cycle``: reads (READ, GATHER) in the issue cycle,
    writes (WRITE, SCATTER) in issue + latency."""

    cycle: int
    slice: str
    #: "read" or "write"
    op: str
    #: banks accessed (sorted)
    banks: tuple[int, ...]
    #: the address (READ/WRITE) or the per-lane addresses (GATHER/SCATTER, int64 array)
    addrs: int | np.ndarray
    mnemonic: str
    issue_cycle: int
    index: int
    rep: int


class ReleaseEvent(NamedTuple):
    """NOTIFY(s) issued in ``cycle`` released the queues parked by a SYNC."""

    cycle: int
    #: the cycle the released queues (and the notifier) issue their next instruction
    resume: int
    #: (slice, cycle of its SYNC) of every released queue
    released: tuple[tuple[str, int], ...]


class Observer:
    """Receives the events of a run (``Machine(cfg, observer=...)``); override what you
    need, every method does nothing here."""

    def on_issue(self, ev: IssueEvent) -> None:
        pass

    def on_stream_read(self, ev: StreamReadEvent) -> None:
        pass

    def on_stream_write(self, ev: StreamWriteEvent) -> None:
        pass

    def on_sram(self, ev: SramEvent) -> None:
        pass

    def on_release(self, ev: ReleaseEvent) -> None:
        pass


@dataclass
class MxmState:
    """One MXM: active and shadow int8 weights W[out lane, in lane], int32 accumulators."""

    active: np.ndarray
    shadow: np.ndarray
    acc: np.ndarray
    load_done: int = -1  # last cycle in which a load in flight writes the shadow


class _Queue:
    __slots__ = ("name", "pos", "kind", "ops", "pc", "t_next", "state", "rep", "timeline",
                 "issued", "halt_cycle", "sync_cycle", "index")

    def __init__(self, index, sl, ops):
        self.index = index
        self.name, self.pos, self.kind = sl.name, sl.index, sl.kind
        self.ops = ops
        self.pc = 0
        self.t_next = 0
        self.state = "run"  # run | wait | halt
        self.rep = None
        self.timeline = SliceTimeline()
        self.issued = 0
        self.halt_cycle = -1
        self.sync_cycle = -1


def _queue_index(q: _Queue) -> int:
    return q.index


# ----------------------------------------------------------------------------- machine
class Machine:
    """The whole chip.

    State (public, numpy): ``mem[MEM slice]`` (mem_addresses, VL) uint8, one byte per lane;
    ``mxm[MXM slice]`` active/shadow int8 weights ``W[out lane, in lane]`` and int32
    accumulators ``acc[slot]``; ``vxm[VXM slice]`` (VXM_REGS, VL) int32 register values
    (``vxm_regs``: the first group's); ``sxm_maps[SXM
    slice]`` (SXM_MAPS, VL); ``sxm_tp[SXM slice]`` the transposer's (sxm_transpose_rows, VL)
    uint8 rows.  They persist across runs like the hardware's; each run starts
    with every queue at its first instruction and every stream register invalid.

    ``observer`` (an :class:`Observer`, also settable as ``machine.observer`` between
    runs) receives the events of every run.
    """

    @property
    def vxm_regs(self) -> np.ndarray:
        """The registers of the first (or only) VXM group."""
        return self.vxm["VXM"]

    @vxm_regs.setter
    def vxm_regs(self, value: np.ndarray) -> None:
        self.vxm["VXM"] = self._vregs = value

    def __init__(self, cfg: TspConfig | str | None = None, keep_history: bool = False,
                 observer: Observer | None = None):
        self.cfg = cfg = get_config(cfg)
        self.observer = observer
        self.vl = vl = cfg.vector_length
        self.n_pos = cfg.n_positions
        self.ns = cfg.streams_per_direction
        self.keep_history = keep_history
        self.mem = {s.name: np.zeros((cfg.mem_addresses, vl), np.uint8)
                    for s in cfg.slices_of("MEM")}
        self.mxm = {s.name: MxmState(np.zeros((vl, vl), np.int8), np.zeros((vl, vl), np.int8),
                                     np.zeros((MXM_ACC_SLOTS, vl), np.int64))
                    for s in cfg.slices_of("MXM")}
        #: per VXM group (slice name): its registers
        self.vxm = {s.name: np.zeros((VXM_REGS, vl), np.int64) for s in cfg.slices_of("VXM")}
        self._vregs = self.vxm_regs
        self.sxm_maps = {s.name: np.tile(np.arange(vl, dtype=np.int64), (SXM_MAPS, 1))
                         for s in cfg.slices_of("SXM")}
        self.sxm_tp = {s.name: np.zeros((cfg.sxm_transpose_rows, vl), np.uint8)
                       for s in cfg.slices_of("SXM")}
        self._lanes = np.arange(vl, dtype=np.int64)
        self._lat = {}
        #: occupancy of every slice instruction but those whose fields set it (_FIELD_TIMED)
        self._occ = {d.mnemonic: occupancy(d.mnemonic, cfg) for d in ALL_DEFS
                     if d.latency is not None and d.mnemonic not in _FIELD_TIMED}
        self._lwt_latency = isa_latency("LWT", cfg)
        self.program: Program | None = None
        self._handlers = {
            "READ": self._read, "WRITE": self._write, "GATHER": self._gather,
            "SCATTER": self._scatter, "VXM": self._vxm, "LW": self._lw, "LWT": self._lw,
            "IW": self._iw, "MVM": self._mvm, "SHS": self._move, "ROTS": self._move,
            "SHV": self._move, "ROTV": self._move, "DIST": self._move, "PERM": self._move,
            "PMAP": self._pmap, "TPUT": self._tput, "TGET": self._tget,
            "RMAX": self._reduce, "RMIN": self._reduce, "RSUM": self._reduce,
            "SEND": self._send, "RECV": self._recv,
        }
        #: what this chip is called in errors about links ("" alone, "chip 1" in a system)
        self.chip = ""
        #: where a SEND on (C2C slice, link) goes: (machine, C2C slice, link) of the far end;
        #: alone, a chip's links loop back (C2C_E link k <-> its own C2C_W link k)
        self.c2c_peer: dict[tuple[str, int], tuple[Machine, str, int]] = {}
        ends = [s.name for s in cfg.slices_of("C2C")]
        for a, b in zip(ends, reversed(ends), strict=True):
            for k in range(cfg.c2c_links):
                self.c2c_peer[(a, k)] = (self, b, k)
        self.c2c_reset()

    # -- memory access ----------------------------------------------------------------
    def _mem_of(self, what: str, slice_name: str) -> np.ndarray:
        m = self.mem.get(slice_name)
        if m is None:
            raise ValueError(f"{what}: {slice_name!r} is not a MEM slice of config "
                             f"{self.cfg.name!r}; MEM slices are {', '.join(self.mem)}")
        return m

    def write_mem(self, slice_name: str, addr: int, data) -> None:
        """Store one vector (VL,) or consecutive vectors (n, VL) of bytes at ``addr``."""
        where = f"write_mem({slice_name}, {addr})"
        m = self._mem_of(where, slice_name)
        a = np.asarray(data)
        if a.ndim == 1:
            a = a[None, :]
        if a.ndim != 2 or a.shape[1] != self.vl:
            raise ValueError(f"{where}: vectors must have {self.vl} lanes, got shape "
                             f"{np.shape(data)}")
        if not (np.issubdtype(a.dtype, np.integer) or a.dtype == bool) and not (
                np.issubdtype(a.dtype, np.floating) and np.array_equal(a, np.round(a))):
            raise ValueError(f"{where}: values must be integer bytes, got dtype {a.dtype}")
        if a.size and (a.min() < -128 or a.max() > 255):
            bad = np.argwhere((a < -128) | (a > 255))[0]
            raise ValueError(f"{where}: values must be bytes (int8 or uint8): vector "
                             f"{bad[0]} lane {bad[1]} is {a[tuple(bad)]}")
        if not 0 <= addr <= len(m) - len(a):
            raise ValueError(f"{where}: addresses {addr}..{addr + len(a) - 1} out of range "
                             f"[0, {len(m) - 1}]")
        m[addr:addr + len(a)] = a.astype(np.int64).astype(np.uint8)

    def read_mem(self, slice_name: str, addr: int, n: int | None = None, dtype=np.uint8):
        """The vector at ``addr`` (or ``n`` vectors from it) viewed as ``dtype`` (uint8/int8)."""
        m = self._mem_of(f"read_mem({slice_name}, {addr})", slice_name)
        if n is not None and (isinstance(n, bool) or not isinstance(n, int | np.integer)
                              or n < 0):
            raise ValueError(f"read_mem({slice_name}, {addr}, {n!r}): the count must be an "
                             f"int >= 0 (or None for one vector)")
        k = 1 if n is None else n
        if not 0 <= addr <= len(m) - k or k < 0:
            raise ValueError(f"read_mem({slice_name}, {addr}): addresses {addr}.."
                             f"{addr + k - 1} out of range [0, {len(m) - 1}]")
        out = m[addr] if n is None else m[addr:addr + n]
        return out.copy().view(dtype)

    # -- program ------------------------------------------------------------------------
    def load_program(self, program: Program) -> None:
        """Decode and check every word once (an illegal word is kept as its error, raised
        when issued); every `run` starts the queues from these."""
        if program.config_hash != self.cfg.stable_hash():
            raise MachineError(
                f"program is for config {program.config_name!r}, machine is {self.cfg.name!r}"
            )
        self.program = program
        self._decoded = []
        self._adv: dict[tuple[int, int], tuple] = {}  # `_advances` per (word, REPEAT)
        for sl in self.cfg.slices:
            ops, seen = [], {}
            for w in program.words(sl.name):
                ins = seen.get(w)
                if ins is None:
                    try:
                        ins = decode(sl.kind, w)
                        validate(ins, sl.kind, self.cfg)
                    except IsaError as exc:
                        ins = exc
                    seen[w] = ins
                ops.append(ins)
            self._decoded.append(tuple(ops))
        self._reset_queues()

    def _reset_queues(self) -> None:
        self._queues = [_Queue(i, sl, list(ops))
                        for i, (sl, ops) in enumerate(zip(self.cfg.slices, self._decoded,
                                                          strict=True))]

    # -- run ------------------------------------------------------------------------------
    def run(self, max_cycles: int = 1_000_000, trace: bool = False) -> RunResult:
        """Execute the loaded program from cycle 0 until every queue halted (a chip alone:
        its C2C links, if it has any, loop back to itself; `golden.system` links chips)."""
        self.begin(trace)
        while (c := self.next_cycle()) is not None:
            self.step(c, max_cycles)
        self.c2c_settle()
        return self.finish()

    def begin(self, trace: bool = False) -> None:
        """Start a run: every queue at its first instruction, every stream register
        invalid, the C2C receive buffers empty.  `next_cycle` / `step` / `finish` follow
        (`run` does all of it; `golden.system.System` interleaves several chips)."""
        if self.program is None:
            raise MachineError("no program loaded")
        self._reset_queues()
        #: the running queues by the cycle they issue in next (each in one bucket), and a
        #: heap of those cycles: a cycle costs the queues that issue in it, not all of them
        self._due: dict[int, list[_Queue]] = {}
        self._due_cycles: list[int] = []
        for q in self._queues:
            self._due_at(q)
        self._streams = [[{} for _ in range(self.ns)] for _ in DIRS]
        self._reserved: dict[tuple, tuple] = {}
        self._pending_sram = {n: (-1, ()) for n in self.mem}
        self._pending_regs: list[tuple[int, str, int, np.ndarray]] = []
        #: SXM writes in flight: (cycle, slice, map index or ("T", transposer row), value)
        self._pending_maps: list[tuple[int, str, int | tuple, np.ndarray]] = []
        for st in self.mxm.values():
            st.load_done = -1
        self._last = 0
        self._mvm = {n: 0 for n in self.mxm}
        self._trace: dict[int, TraceCycle] | None = {} if trace else None
        self._purged = 0
        #: observer only: (dir, stream, position, write cycle) -> the writing instruction
        self._obs_src: dict[tuple, tuple] = {}
        self.c2c_reset()

    def _due_at(self, q: _Queue) -> None:
        """File running queue ``q`` under the cycle it issues in next (``q.t_next``)."""
        if q.state != "run":
            return
        b = self._due.get(q.t_next)
        if b is None:
            self._due[q.t_next] = [q]
            heappush(self._due_cycles, q.t_next)
        else:
            b.append(q)

    def next_cycle(self) -> int | None:
        """The next cycle in which a queue issues, or None when none will any more."""
        h = self._due_cycles
        while h and h[0] not in self._due:  # (a cycle whose queues have issued)
            heappop(h)
        return h[0] if h else None

    def step(self, c: int, max_cycles: int = 1_000_000) -> None:
        """Issue what the queues issue in cycle ``c`` (= `next_cycle`), in queue order."""
        if c >= max_cycles:
            names = ", ".join(f"{q.name} at instruction {q.pc}" for q in self._queues
                              if q.state == "run")
            raise MachineError(f"program did not halt within max_cycles={max_cycles} "
                               f"(still running: {names})")
        self.c2c_check(c)
        if c - self._purged > 8 * self.n_pos and not self.keep_history:
            self._purge(c)
        notify = False
        due = self._due.pop(c, ())
        if len(due) > 1:
            due.sort(key=_queue_index)
        for q in due:
            notify |= self._step(q, c)
            self._due_at(q)
        if notify:
            released = []
            for q in self._queues:
                if q.state == "wait" and q.sync_cycle <= c:
                    q.state = "run"
                    q.t_next = c + SYNC_RELEASE_DELAY
                    self._due_at(q)
                    released.append((q.name, q.sync_cycle))
            if self.observer is not None:
                self.observer.on_release(
                    ReleaseEvent(c, c + SYNC_RELEASE_DELAY, tuple(released)))

    def finish(self) -> RunResult:
        """End the run (after `next_cycle` returned None): a deadlock is an error; the
        pending register and map writes land; the counters."""
        queues = self._queues
        waiting = [q for q in queues if q.state == "wait"]
        if waiting:
            desc = ", ".join(f"{q.name} (SYNC, instruction {q.pc - 1}, in cycle "
                             f"{q.sync_cycle})" for q in waiting)
            raise MachineError(f"deadlock: {desc} wait for a NOTIFY that no queue "
                               "can issue any more")
        self._apply_pending(1 << 62)
        tr = None
        if self._trace is not None:
            tr = [self._trace[c] for c in sorted(self._trace)]
        return RunResult(
            cycles=self._last + 1,
            busy={q.name: q.timeline.busy for q in queues},
            issued={q.name: q.issued for q in queues},
            mxm_mvm_cycles=dict(self._mvm),
            halt_cycle={q.name: q.halt_cycle for q in queues},
            trace=tr,
            link_beats=dict(self._link_beats),
        )

    # -- queue sequencing ---------------------------------------------------------------
    def _err(self, q: _Queue, idx: int, mn: str, f, c: int, msg: str, rep: int = 0,
             cls: type[MachineError] = MachineError) -> MachineError:
        try:
            text = format_instr(Instr(mn, f))
        except IsaError:
            text = f"{mn} {f}"
        r = f", repetition {rep}" if rep else ""
        chip = f"{self.chip}: " if self.chip else ""
        return cls(f"{chip}{q.name} instruction {idx} ({text}{r}) in cycle {c}: {msg}")

    def _step(self, q: _Queue, c: int) -> bool:
        """Issue queue ``q``'s next instruction in cycle ``c``; True if it was a NOTIFY."""
        if q.rep is not None:
            idx, mn, base, k, n, d, adv, rep_idx = q.rep
            k += 1
            f = dict(base)
            for name, step, lo, hi in adv:
                v = f[name] = base[name] + k * step
                if not lo <= v <= hi:
                    raise self._err(q, idx, mn, f, c, f"after REPEAT stride: {name}={v} out "
                                    f"of range [{lo}, {hi}]", k)
            self._issue(q, idx, mn, f, c, k)
            if k == n:
                q.rep = None
                q.pc = rep_idx + 1
                q.t_next = c + 1
            else:
                q.rep = (idx, mn, base, k, n, d, adv, rep_idx)
                q.t_next = c + d
            return False
        idx = q.pc
        if idx >= len(q.ops):
            raise MachineError(f"{q.name}: ran past the end of its queue ({len(q.ops)} "
                               f"instructions) without HALT in cycle {c}")
        ins = q.ops[idx]
        if isinstance(ins, IsaError):
            raise MachineError(f"{q.name} instruction {idx} in cycle {c}: illegal instruction: "
                               f"{ins}")
        mn = ins.mnemonic
        if c > self._last:
            self._last = c
        q.pc += 1
        if mn in _ICU:
            if self._trace is not None:
                self._trace_issue(q, idx, 0, mn, ins.fields, c)
            if self.observer is not None:
                self._obs_issue(q, idx, 0, mn, ins.fields, c, None)
            if mn == "NOP":
                q.t_next = c + ins["n"]
            elif mn == "REPEAT":
                raise self._err(q, idx, mn, ins.fields, c,
                                "REPEAT must directly follow a slice instruction")
            elif mn == "SYNC":
                q.state, q.sync_cycle = "wait", c
            elif mn == "NOTIFY":
                q.t_next = c + SYNC_RELEASE_DELAY
                return True
            else:  # HALT
                q.state, q.halt_cycle = "halt", c
            return False
        self._issue(q, idx, mn, ins.fields, c, 0)
        nxt = q.ops[q.pc] if q.pc < len(q.ops) else None
        if isinstance(nxt, Instr) and nxt.mnemonic == "REPEAT":
            if self.observer is not None:
                self._obs_issue(q, q.pc, 0, "REPEAT", nxt.fields, c, None)
            if nxt["n"] == 0:
                q.pc += 1
                q.t_next = c + 1
            else:
                key = (id(ins), id(nxt))  # (the decoded words live as long as the program)
                adv = self._adv.get(key)
                if adv is None:
                    adv = self._adv[key] = self._advances(ins, nxt)
                q.rep = (idx, mn, ins.fields, 0, nxt["n"], nxt["d"], adv, q.pc)
                q.t_next = c + nxt["d"]
        else:
            q.t_next = c + 1
        return False

    def _advances(self, ins: Instr, rep: Instr) -> tuple:
        """(field, step, lo, hi) of the fields a REPEAT advances (nonzero steps only)."""
        fa, fb = stride_fields(ins.definition)
        out = []
        for names, step in ((fa, rep["stride_a"]), (fb, rep["stride_b"])):
            for name in names:
                if step:
                    lo, hi = ins.definition.field(name).bounds(self.cfg)
                    out.append((name, step, lo, hi))
        return tuple(out)

    def _issue(self, q: _Queue, idx: int, mn: str, f, c: int, rep: int) -> None:
        lat = self._lat.get(mn)
        if lat is None:
            lat = self._lat[mn] = isa_latency(mn, self.cfg)
        if mn == "SEND":
            lat = isa_latency(mn, self.cfg, f)
        if self._trace is not None:
            self._trace_issue(q, idx, rep, mn, f, c)
        if self.observer is not None:
            self._obs_issue(q, idx, rep, mn, f, c, lat)
        self._ctx = (q, idx, mn, f, c, rep)
        self._mn = mn
        self._handlers[mn](q, f, c, lat)
        end = c + (self._occ[mn] if mn not in _FIELD_TIMED else occupancy(mn, self.cfg, f))
        q.timeline.add(c, end)
        q.issued += 1
        if end > self._last:
            self._last = end

    def _fail(self, msg: str, cls: type[MachineError] = MachineError) -> MachineError:
        q, idx, mn, f, c, rep = self._ctx
        return self._err(q, idx, mn, f, c, msg, rep, cls)

    def _trace_issue(self, q, idx, rep, mn, f, c):
        tc = self._trace.setdefault(c, TraceCycle(c))
        tc.issued.append((q.name, idx, rep, format_instr(Instr(mn, f))))

    # -- observation (only with an observer) -----------------------------------------------
    def _obs_issue(self, q, idx, rep, mn, f, c, lat):
        self.observer.on_issue(IssueEvent(c, q.name, q.kind, q.pos, idx, rep, mn,
                                          MappingProxyType(f), lat))

    def _obs_read(self, q, d, s, c, p):
        w = c - abs(q.pos - p)
        name, t, mn = self._obs_src[(d, s, p, w)]
        _, idx, cmn, _, _, rep = self._ctx
        self.observer.on_stream_read(StreamReadEvent(
            c, q.name, q.kind, q.pos, cmn, idx, rep, DIRS[d], s, name, p, w, t, mn))

    def _obs_write(self, q, d, s, c):
        _, idx, mn, _, t, rep = self._ctx
        self._obs_src[(d, s, q.pos, c)] = (q.name, t, mn)
        self.observer.on_stream_write(StreamWriteEvent(
            c, q.name, q.kind, q.pos, DIRS[d], s, t, idx, rep, mn))

    def _obs_sram(self, q, c, op, banks, addrs):
        _, idx, mn, _, t, rep = self._ctx
        banks = tuple(sorted(int(b) for b in banks))
        self.observer.on_sram(SramEvent(c, q.name, op, banks, addrs, mn, t, idx, rep))

    # -- streams --------------------------------------------------------------------------
    def _get(self, pos: int, d: int, s: int, c: int):
        """The valid value in stream register (pos, d, s) in cycle c, or None."""
        best = self._get_src(pos, d, s, c)
        return None if best is None else best[1]

    def _get_src(self, pos: int, d: int, s: int, c: int):
        """(writer position, value) of the valid value in (pos, d, s) in cycle c, or None:
        of the values on the register's diagonal, the one written nearest upstream."""
        if d == E:
            ent = self._streams[E][s].get(c - pos)
            if ent:
                i = bisect_left(ent[0], pos)
                if i:
                    return ent[0][i - 1], ent[1][i - 1]
        else:
            ent = self._streams[W][s].get(c + pos)
            if ent:
                i = bisect_right(ent[0], pos)
                if i < len(ent[0]):
                    return ent[0][i], ent[1][i]
        return None

    def _rd(self, q: _Queue, d: int, s: int, c: int) -> np.ndarray:
        src = self._get_src(q.pos, d, s, c)
        if src is None:
            raise self._fail(f"reads stream s{s}.{DIRS[d]} at position {q.pos}, which holds "
                             "no valid value in this cycle", InvalidReadError)
        if self.observer is not None:
            self._obs_read(q, d, s, c, src[0])
        return src[1]

    def _rd_planes(self, q, d, s, n, c) -> np.ndarray:
        if n == 1:
            return self._rd(q, d, s, c)[None]
        return np.stack([self._rd(q, d, s + k, c) for k in range(n)])

    def _wr(self, q: _Queue, d: int, s: int, c: int, value: np.ndarray) -> None:
        """Slice q writes ``value`` (uint8 VL) onto stream (d, s) in cycle c."""
        key = (q.pos, c, d, s)
        prev = self._reserved.get(key)
        if prev is not None:
            raise self._fail(
                f"stream collision: writes s{s}.{DIRS[d]} in cycle {c}, which instruction "
                f"{prev[0]} ({prev[1]}) issued in cycle {prev[2]} also writes in that cycle"
            )
        self._reserved[key] = (self._ctx[1], self._ctx[2], self._ctx[4])
        value = np.asarray(value, dtype=np.uint8)
        # per diagonal: writer positions (sorted) and their values
        dest = q.pos + 1 if d == E else q.pos - 1
        if d == E:
            if dest < self.n_pos:
                ps, vs = self._streams[E][s].setdefault(c - q.pos, ([], []))
                i = bisect_left(ps, q.pos)
                ps.insert(i, q.pos)
                vs.insert(i, value)
        else:
            if dest >= 0:
                ps, vs = self._streams[W][s].setdefault(c + q.pos, ([], []))
                i = bisect_left(ps, q.pos)
                ps.insert(i, q.pos)
                vs.insert(i, value)
        if self._trace is not None:
            tc = self._trace.setdefault(c, TraceCycle(c))
            tc.writes.append(StreamWrite(q.name, dest, DIRS[d], s, value))
        if self.observer is not None:
            self._obs_write(q, d, s, c)

    def _wr_planes(self, q, d, s, c, planes) -> None:
        for k, p in enumerate(planes):
            self._wr(q, d, s + k, c, p)

    def _purge(self, c: int) -> None:
        lo_e, lo_w = c - self.n_pos, c
        for st in self._streams[E]:
            for k in [k for k in st if k < lo_e]:
                del st[k]
        for st in self._streams[W]:
            for k in [k for k in st if k < lo_w]:
                del st[k]
        self._reserved = {k: v for k, v in self._reserved.items() if k[1] >= c}
        if self._obs_src:  # a value written before c - n_pos has left the chip
            self._obs_src = {k: v for k, v in self._obs_src.items() if k[3] >= lo_e}
        self._purged = c

    def stream_value(self, pos: int, direction: str, stream: int, cycle: int):
        """The value in stream register (pos, direction, stream) in ``cycle`` (None if
        invalid).  Only reliable for past cycles with ``keep_history=True``."""
        return self._get(pos, DIRS.index(direction), stream, cycle)

    def stream_snapshot(self, cycle: int) -> tuple[np.ndarray, np.ndarray]:
        """(values (2, n_positions, streams, VL) uint8, valid (2, n_positions, streams))."""
        vals = np.zeros((2, self.n_pos, self.ns, self.vl), np.uint8)
        valid = np.zeros((2, self.n_pos, self.ns), bool)
        for d in (E, W):
            for p in range(self.n_pos):
                for s in range(self.ns):
                    v = self._get(p, d, s, cycle)
                    if v is not None:
                        vals[d, p, s], valid[d, p, s] = v, True
        return vals, valid

    def stream_history(self, c0: int, c1: int, values: bool = True
                       ) -> tuple[np.ndarray | None, np.ndarray]:
        """`stream_snapshot` of cycles ``c0 .. c1 - 1`` at once (values (n, 2, n_positions,
        streams, VL), or None without `values`; valid (n, 2, n_positions, streams)), from
        the written values rather than register by register: an eastward value written at
        position q is in the registers east of q up to the next writer of its diagonal
        (that one included), a westward one in those west of q down to the next writer's
        position."""
        n, P = c1 - c0, self.n_pos
        vals = np.zeros((n, 2, P, self.ns, self.vl), np.uint8) if values else None
        valid = np.zeros((n, 2, P, self.ns), bool)
        for d in (E, W):
            for s, diagonals in enumerate(self._streams[d]):
                for key, (ps, vs) in diagonals.items():
                    for i, (q, v) in enumerate(zip(ps, vs, strict=True)):
                        if d == E:  # key = cycle - position
                            pos = np.arange(q + 1, (ps[i + 1] if i + 1 < len(ps) else P - 1) + 1)
                            cyc = key + pos
                        else:  # key = cycle + position
                            pos = np.arange(ps[i - 1] if i else 0, q)
                            cyc = key - pos
                        keep = (cyc >= c0) & (cyc < c1)
                        if keep.any():
                            if values:
                                vals[cyc[keep] - c0, d, pos[keep], s] = v
                            valid[cyc[keep] - c0, d, pos[keep], s] = True
        return vals, valid

    def _apply_pending(self, c: int) -> None:
        """Apply VXM register / SXM map writes made in cycles before ``c``."""
        if self._pending_regs and self._pending_regs[0][0] < c:
            keep = []
            for t, name, r, v in self._pending_regs:
                if t < c:
                    self.vxm[name][r] = v
                else:
                    keep.append((t, name, r, v))
            self._pending_regs = keep
        if self._pending_maps and self._pending_maps[0][0] < c:
            keep = []
            for t, name, m, v in self._pending_maps:
                if t < c and isinstance(m, tuple):
                    self.sxm_tp[name][m[1]] = v
                elif t < c:
                    self.sxm_maps[name][m] = v
                else:
                    keep.append((t, name, m, v))
            self._pending_maps = keep

    # -- C2C --------------------------------------------------------------------------------
    def c2c_reset(self) -> None:
        """Empty receive buffers and idle links (the start of a run)."""
        ports = list(self.c2c_peer)
        #: per receiving (slice, link): [arrival cycle, vector, who sent it] in order
        self._rx: dict[tuple[str, int], list] = {k: [] for k in ports}
        #: per receiving (slice, link): cycles of its RECVs; arrivals checked so far
        self._rx_pops: dict[tuple[str, int], list[int]] = {k: [] for k in ports}
        self._rx_checked: dict[tuple[str, int], int] = {k: 0 for k in ports}
        self._rx_all: dict[tuple[str, int], list] = {k: [] for k in ports}
        self._rx_unchecked = 0  # arrivals not yet checked (`c2c_check`), on every link
        #: per sending (slice, link): the first cycle a SEND may issue again; beats sent
        self._tx_free: dict[tuple[str, int], int] = {k: 0 for k in ports}
        self._link_beats: dict[tuple[str, int], int] = {k: 0 for k in ports}

    def _where(self, sl: str, link: int) -> str:
        return f"{self.chip + ' ' if self.chip else ''}{sl} link {link}"

    def c2c_check(self, upto: int) -> None:
        """Receive-buffer overflows of the vectors that arrived by cycle ``upto``: one
        arriving in cycle A (its last beat lands in A - 1) finds the buffer full when the
        messages arrived by A minus those taken before A exceed ``c2c_buffer``."""
        if not self._rx_unchecked:
            return
        depth = self.cfg.c2c_buffer
        for key, arr in self._rx_all.items():
            i = i0 = self._rx_checked[key]
            pops = self._rx_pops[key]
            while i < len(arr) and arr[i][0] <= upto:
                a = arr[i][0]
                held = i + 1 - bisect_left(pops, a)
                if held > depth:
                    raise MachineError(
                        f"{self._where(*key)} in cycle {a - 1}: receive buffer overflow: "
                        f"{arr[i][2]} arrives while {depth} message(s) wait in the "
                        f"buffer (c2c_buffer={depth}); RECV them earlier")
                i += 1
            self._rx_checked[key] = i
            self._rx_unchecked -= i - i0

    def c2c_settle(self) -> None:
        """After the run (of every linked chip): overflows of the last arrivals, and no
        vector left that no RECV took."""
        self.c2c_check(1 << 62)
        for key, left in self._rx.items():
            if left:
                a, _, who, _ = left[0]
                raise MachineError(
                    f"{self._where(*key)}: {len(left)} message(s) arrived and were never "
                    f"received (the first: {who}, in the buffer from cycle {a})")

    def _send(self, q, f, c, lat):
        key = (q.name, f["link"])
        free = self._tx_free[key]
        if c < free:
            raise self._fail(f"link {f['link']} busy: the SEND before it sends its last "
                             f"beat in cycle {free}")
        t = TYPES[f["type"]]
        w = TYPE_BYTES[t]
        beats = w * self.cfg.c2c_beats
        self._tx_free[key] = c + beats
        self._link_beats[key] += beats
        v = self._rd_planes(q, f["in_d"], f["in_s"], w, c).copy()
        peer, psl, plink = self.c2c_peer[key]
        who = f"the {t} message sent by {self._where(*key)} in cycle {c}"
        entry = [c + self.cfg.c2c_arrival(w), v, who, t]
        peer._rx[(psl, plink)].append(entry)
        peer._rx_all[(psl, plink)].append(entry)
        peer._rx_unchecked += 1

    def _recv(self, q, f, c, lat):
        key = (q.name, f["link"])
        buf = self._rx[key]
        if not buf or buf[0][0] > c:
            nxt = (f"; the next arrives in cycle {buf[0][0]} ({buf[0][2]})" if buf
                   else "; none is on its way")
            raise self._fail(f"link {f['link']} empty: no message has arrived by this "
                             f"cycle{nxt}")
        t = TYPES[f["type"]]
        if buf[0][3] != t:
            raise self._fail(f"link {f['link']}: RECV.{t} takes {buf[0][2]}: the types "
                             "differ")
        _, v, _, _ = buf.pop(0)
        self._rx_pops[key].append(c)
        self._wr_planes(q, f["out_d"], f["out_s"], c + lat, v)

    # -- MEM --------------------------------------------------------------------------------
    def _bank_check(self, q, c, banks, what) -> None:
        t, wbanks = self._pending_sram[q.name]
        if t == c:
            both = sorted(set(banks) & set(wbanks))
            if both:
                raise self._fail(
                    f"MEM bank conflict: {what} bank {both[0]} in cycle {c} while a write "
                    f"issued in cycle {c - 1} writes bank {both[0]} in that cycle"
                )

    def _addr_check(self, addrs) -> None:
        n = self.cfg.mem_addresses
        if isinstance(addrs, int):
            if 0 <= addrs < n:
                return
            addrs = np.array([addrs])
        if addrs.max() >= n or addrs.min() < 0:
            raise self._fail(f"address {int(addrs.max())} out of range [0, {n - 1}]")

    def _read(self, q, f, c, lat):
        a = f["addr"]
        self._addr_check(a)
        self._bank_check(q, c, (a // self.cfg.mem_depth,), "reads")
        if self.observer is not None:
            self._obs_sram(q, c, "read", (a // self.cfg.mem_depth,), a)
        self._wr(q, f["out_d"], f["out_s"], c + lat, self.mem[q.name][a].copy())
        if f["wr"]:  # READ ..., w=: the same word also writes (the read saw the old value)
            self._store(q, f["waddr"], f, c, lat)

    def _write(self, q, f, c, lat):
        self._store(q, f["addr"], f, c, lat)

    def _store(self, q, a, f, c, lat):
        """The vector on stream in at issue (c) into address a in cycle c + lat."""
        v = self._rd(q, f["in_d"], f["in_s"], c)
        self._addr_check(a)
        self._pending_sram[q.name] = (c + lat, (a // self.cfg.mem_depth,))
        if self.observer is not None:
            self._obs_sram(q, c + lat, "write", (a // self.cfg.mem_depth,), a)
        self.mem[q.name][a] = v

    def _gather(self, q, f, c, lat):
        idx = self._rd(q, f["idx_d"], f["idx_s"], c).astype(np.int64)
        addrs = f["addr"] + idx
        self._addr_check(addrs)
        self._bank_check(q, c, np.unique(addrs // self.cfg.mem_depth).tolist(), "gathers from")
        if self.observer is not None:
            self._obs_sram(q, c, "read", np.unique(addrs // self.cfg.mem_depth), addrs)
        self._wr(q, f["out_d"], f["out_s"], c + lat, self.mem[q.name][addrs, self._lanes])

    def _scatter(self, q, f, c, lat):
        idx = self._rd(q, f["idx_d"], f["idx_s"], c).astype(np.int64)
        v = self._rd(q, f["in_d"], f["in_s"], c)
        addrs = f["addr"] + idx
        self._addr_check(addrs)
        self._pending_sram[q.name] = (c + lat, tuple(np.unique(addrs // self.cfg.mem_depth)))
        if self.observer is not None:
            self._obs_sram(q, c + lat, "write", self._pending_sram[q.name][1], addrs)
        self.mem[q.name][addrs, self._lanes] = v

    # -- VXM --------------------------------------------------------------------------------
    def _operand(self, q, sel, t, imm, c) -> np.ndarray:
        if sel < 64:
            d, s = sel >> 5, sel & 31
            return from_planes(self._rd_planes(q, d, s, TYPE_BYTES[t], c), TYPE_SIGNED[t])
        if sel == SEL_IMM:
            return np.full(self.vl, imm, np.int64)
        if sel == SEL_LANE:
            return self._lanes.copy()
        return self._vregs[sel - SEL_REG].copy()

    def _alu(self, op, x, y, z, t, yreg, ot):
        name = op.name
        w = 8 * TYPE_BYTES[t]
        if name == "PASS":
            return x
        if name == "ADD":
            return x + y
        if name == "SUB":
            return x - y
        if name == "MUL":
            return (x.astype(np.uint64) * y.astype(np.uint64)).view(np.int64)
        if name == "MIN":
            return np.minimum(x, y)
        if name == "MAX":
            return np.maximum(x, y)
        if name == "AND":
            return x & y
        if name == "OR":
            return x | y
        if name == "XOR":
            return x ^ y
        if name == "SHL":
            return np.left_shift(x.astype(np.uint64), (y & 63).astype(np.uint64)).view(np.int64)
        if name == "SHR":
            return np.right_shift(x & ((1 << w) - 1), y & 63)
        if name == "SRA":
            return np.right_shift(x, y & 63)
        if name == "SRAR":
            n = y & 63
            half = np.where(n > 0, np.left_shift(1, np.maximum(n - 1, 0)), 0)
            return np.right_shift(x + half, n)
        if name in ("EQ", "NE", "LT", "LE", "GT", "GE"):
            f = {"EQ": np.equal, "NE": np.not_equal, "LT": np.less, "LE": np.less_equal,
                 "GT": np.greater, "GE": np.greater_equal}[name]
            return f(x, y).astype(np.int64)
        if name == "RELU":
            return np.maximum(x, 0)
        if name == "ABS":
            return np.abs(x)
        if name == "SAT8":
            return np.clip(x, -128, 127)
        if name == "SAT16":
            return np.clip(x, -32768, 32767)
        if name == "CLZ":
            v = x & ((1 << w) - 1)
            return w - np.frexp(v.astype(np.float64))[1].astype(np.int64)
        if name == "SEL":
            return np.where(x != 0, y, z)
        if name == "REQUANT":
            return self._requant(x, yreg, ot)
        raise AssertionError(name)  # pragma: no cover

    def _requant(self, x, k, ot):
        regs = self._vregs
        m, s, zp = regs[k], regs[k + 1], regs[k + 2]
        acc = _wrap(x, 32, True)
        qmin, qmax = _type_range(ot)
        out = np.empty(self.vl, np.int64)
        try:
            for z in np.unique(zp):
                lanes = zp == z
                out[lanes] = requantize(acc[lanes], m[lanes], s[lanes], int(z), qmin, qmax)
        except ValueError as exc:
            raise self._fail(f"REQUANT with r{k}..r{k + 2} (multiplier, shift, zero point): "
                             f"{exc}") from None
        return out

    def _vxm(self, q, f, c, lat):
        self._apply_pending(c)
        self._vregs = self.vxm[q.name]
        t, ot = TYPES[f["type"]], TYPES[f["otype"]]
        op1, op2 = VXM_OP_BY_CODE[f["op1"]], VXM_OP_BY_CODE[f["op2"]]
        imm = f["imm"]
        ops = {k: self._operand(q, f[k], t, imm, c) for k in "abc" if f[k] != 127}
        z = ops.get("c") if op1.arity == 3 else None
        r = self._alu(op1, ops["a"], ops.get("b"), z, t, f["b"] - SEL_REG, ot)
        if op2.name != "PASS":
            r = self._alu(op2, r, ops.get("c"), None, t, f["c"] - SEL_REG, ot)
        lo, hi = _type_range(ot)
        if f["sat"]:
            r = np.clip(r, lo, hi)
        nb = TYPE_BYTES[ot]
        dsel = f["d"]
        if dsel < 64:
            self._wr_planes(q, dsel >> 5, dsel & 31, c + lat, to_planes(r, nb))
        else:
            self._pending_regs.append((c + lat, q.name, dsel - SEL_REG,
                                       _wrap(r, 8 * nb, TYPE_SIGNED[ot])))

    # -- MXM --------------------------------------------------------------------------------
    def _load(self, q, st, ld, f, c):
        """Rows (ld 1) or columns (ld 2) ``row..row+extra`` of the shadow buffer <- the
        int8 vectors on streams ``w..w+extra``."""
        row, n = f["row"], f["extra"] + 1
        if n > 1 and row // self.cfg.mxm_load_rows != (row + n - 1) // self.cfg.mxm_load_rows:
            try:  # a REPEAT stride moved the rows across a group (validate saw the first)
                check_load_rows(self._mn, row, n - 1, self.cfg)
            except IsaError as e:
                raise self._fail(f"after REPEAT stride: {e}") from None
        v = self._rd_planes(q, f["w_d"], f["w_s"], n, c).view(np.int8)
        if ld == 1:
            st.shadow[row:row + n, :] = v
            done = c + 1
        else:
            st.shadow[:, row:row + n] = v.T
            done = c + self._lwt_latency
        st.load_done = max(st.load_done, done)

    def _lw(self, q, f, c, lat):
        ld = 1 if self._mn == "LW" else 2
        self._load(q, self.mxm[q.name], ld, f, c)

    def _iw(self, q, f, c, lat):
        st = self.mxm[q.name]
        if st.load_done > c:
            raise self._fail(f"IW while a weight load is in flight (it writes the shadow "
                             f"buffer in cycle {st.load_done})")
        st.active, st.shadow = st.shadow, st.active

    def _mvm(self, q, f, c, lat):
        st = self.mxm[q.name]
        x = self._rd(q, f["x_d"], f["x_s"], c).view(np.int8).astype(np.int64)
        r = st.active.astype(np.int64) @ x
        if f["accum"]:
            r = r + st.acc[f["acc"]]
        r = _wrap(r, 32, True)
        st.acc[f["acc"]] = r
        if f["emit"]:
            self._wr_planes(q, f["out_d"], f["out_s"], c + lat, to_planes(r, 4))
        if f["ld"]:
            self._load(q, st, f["ld"], f, c)
        self._mvm[q.name] += 1

    # -- SXM --------------------------------------------------------------------------------
    def _move(self, q, f, c, lat):
        nb = TYPE_BYTES[TYPES[f["type"]]]
        planes = self._rd_planes(q, f["in_d"], f["in_s"], nb, c)
        i = self._lanes
        mn = self._mn
        if mn == "PERM":
            self._apply_pending(c)
            src = self.sxm_maps[q.name][f["map"]]
        elif mn == "DIST":
            src = np.full(self.vl, f["n"])
        else:
            n = f["n"]
            if mn in ("SHS", "ROTS"):
                g, li = i // 16 * 16, i % 16
                src = g + (li - n) % 16 if mn == "ROTS" else np.where(
                    (li - n >= 0) & (li - n < 16), g + li - n, -1)
            else:
                src = (i - n) % self.vl if mn == "ROTV" else np.where(
                    (i - n >= 0) & (i - n < self.vl), i - n, -1)
        out = np.where(src >= 0, planes[:, np.maximum(src, 0)], 0).astype(np.uint8)
        self._wr_planes(q, f["out_d"], f["out_s"], c + lat, out)

    def _pmap(self, q, f, c, lat):
        m = from_planes(self._rd_planes(q, f["in_d"], f["in_s"], 2, c), signed=False)
        if m.max() >= self.vl:
            lane = int(np.argmax(m >= self.vl))
            raise self._fail(f"PMAP entry {int(m[lane])} in lane {lane} is not a lane "
                             f"index < {self.vl}")
        self._pending_maps.append((c + lat, q.name, f["map"], m))

    def _tput(self, q, f, c, lat):
        self._pending_maps.append((c + lat, q.name, ("T", f["row"]),
                                   self._rd(q, f["in_d"], f["in_s"], c).copy()))

    def _tget(self, q, f, c, lat):
        self._apply_pending(c)
        out = np.zeros((1, self.vl), np.uint8)
        n = f["rows"]
        out[0, :n] = self.sxm_tp[q.name][:n, f["col"]]
        self._wr_planes(q, f["out_d"], f["out_s"], c + lat, out)

    def _reduce(self, q, f, c, lat):
        t, ot = TYPES[f["type"]], TYPES[f["otype"]]
        v = from_planes(self._rd_planes(q, f["in_d"], f["in_s"], TYPE_BYTES[t], c),
                        TYPE_SIGNED[t])
        r = {"RMAX": v.max, "RMIN": v.min, "RSUM": v.sum}[self._mn]()
        out = _wrap(np.full(self.vl, r, np.int64), 8 * TYPE_BYTES[ot], TYPE_SIGNED[ot])
        self._wr_planes(q, f["out_d"], f["out_s"], c + lat, to_planes(out, TYPE_BYTES[ot]))


if __name__ == "__main__":  # a library: say where running a program lives
    import sys

    print("error: golden.machine is a library, not a command; to run a program on the "
          "machine model use: python -m sim run PROG.s|PROG.bin [--image FILE] "
          "[--dump SLICE:ADDR[:COUNT]] (add --rtl for the Verilated chip)", file=sys.stderr)
    sys.exit(2)  # refused, as a usage error (sim/cli.py)
