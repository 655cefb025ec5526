"""Seeded random compute-slice and whole-ISA programs that are legal by construction.

``random_compute_program(cfg, seed, kind)`` with ``kind`` in :data:`KINDS` returns a
:class:`ComputeProgram` (a :class:`tb.chip.programs.RandomProgram`: program, SRAM init
windows, touched addresses, listing, instruction count; plus the kind and coverage
counters) that ``golden.machine.Machine`` accepts:

* **Operands.**  MEM slices ``READ`` every operand byte plane onto a stream so that it is
  at the compute slice's position in the cycle that slice issues (a value written by
  position ``p`` in cycle ``t`` is at ``p +- d`` in cycle ``t + d``; READ latency 1).  The
  planes of one operand (and every operand of one direction) arrive together, so each
  comes from a different MEM slice upstream.
* **Results.**  A result written in cycle ``t + L`` (``L = arch.isa.latency``) is taken by
  ``WRITE``\\ s of MEM slices downstream on the exact arrival cycle, one MEM slice per
  byte plane (all planes arrive together); when there are fewer MEM slices downstream
  than planes (the VXM on ``tiny``: 2 per hemisphere), only some planes are captured.
* **Reservation tables** (as in ``tb/chip/programs.py``): one issue per queue per cycle (a
  REPEAT block holds its queue until its last repetition), every stream register on every
  value's path (``(dir, stream, position, cycle)``; a write nobody reads reserves its first
  register, so it cannot overwrite a value in flight or collide with another write of the
  same slice), SRAM banks per cycle (a read and a write of one bank in one cycle is
  refused), fresh SRAM addresses for every vector read or written (kind ``all``: the MEM
  actor also reads addresses again and writes its SCATTER windows again; every address a
  program reads or writes is initialised by the host, write targets with canary vectors,
  so nothing depends on SRAM contents outside ``init``).
* **State.**  Each compute slice's instructions are generated in issue order (a cursor per
  slice), so the generator knows its state in every cycle: VXM registers (defined or not,
  and a range of their values: REQUANT is only used with a multiplier in [0, 2**31 - 1], a
  shift in [-31, 30] and a zero point in the otype's range; results become visible 4
  cycles after issue), MXM weight buffers (which elements of the shadow and the active
  buffer were loaded in this program, loads in flight for IW), accumulator slots, SXM
  permutation maps (usable 2 cycles after their PMAP) and transposer rows (a TGET of
  ``rows`` rows only when rows 0..rows-1 were all written by TPUTs issued 2 or more cycles
  before).  A program never reads state it did not write: the RTL keeps registers,
  weights, accumulators, maps and transposer rows across runs, the model starts each
  program from reset (``tests/test_programs_compute.py`` runs every program on a machine
  with random state too).

Kinds: ``VXM`` (random ops and types, two-stage chains, registers loaded from streams and
immediates and read 1..5 cycles after a write to them, REQUANT with legal parameters --
per-lane shifts and zero points from streams, normalised multipliers --, immediates, the
lane operand, SEL, ``:sat``, REPEAT with immediate and address strides, NOP gaps,
register drains: every register written is finally put on streams, all 32 bits);
``MXM`` (one or both MXMs: LW/LWT weight fills with REPEAT row strides, IW swaps as soon as
the loads allow, MVM with accumulate/emit, ``lw=``/``lwt=`` double buffering over VL
repetitions, IW between MVMs, K > VL accumulation over several weight sets, back-to-back
accumulation); ``SXM`` (one or both SXMs: SHS/ROTS/SHV/ROTV/DIST/PMAP+PERM/RMAX/RMIN/RSUM
with every type and type:otype pair, REPEAT with ``n``/``map`` strides, PERM right after a
PMAP; on configs with a transposer also TPUT (runs of the lowest unwritten rows, rows
written again, row strides) and TGET (col strides, 1..all written rows, 1 and 2 cycles
after a TPUT of a row it reads), coverage ``SXM.TPUT.*``/``SXM.TGET*``); ``mixed`` (all
compute slices at once, sharing MEM slices and streams, plus chains where one compute
slice's result is another's operand: MXM -> VXM (REQUANT of the int32 result), MXM -> SXM,
SXM -> VXM, SXM -> SXM, SXM -> MXM, VXM -> SXM, VXM -> MXM; a TGET result may be chained,
a chained int8 value TPUT); ``all`` (the whole ISA: ``mixed`` plus one or two
:class:`_Mem` actors -- MEM-slice work of its own in the same tables, after every compute
slice's first step:

* ``copy``: READ -> WRITE between any two MEM slices (either direction, any distance),
  REPEATed with independent READ/WRITE address strides (0, +-1, 2, -3), both banks; data
  vectors or index vectors (whose copies become index vectors after their WRITE); then
  sometimes a READ of the last written address at the earliest legal cycle (WRITE issue
  + 2 = SRAM write + 1) sent on;
* ``gather``: GATHER with its index from a READ (host index vectors, copies of them) or
  from another GATHER (of an index table), the table fresh, shared with earlier GATHERs,
  or across the bank boundary (a few addresses each side of it are kept for this), table
  stride REPEATs; the result to a WRITE, a GATHER (as index), a SCATTER or dropped;
* ``scatter``: SCATTER with index and data from READs/GATHERs of either direction each,
  the window fresh, written before, or across the bank boundary, window stride REPEATs;
* ``raw``: READ of an address written earlier (a compute result's drain, a WRITE, a
  SCATTER window), half the time at write cycle + 1;
* ``switch``: WRITE or SCATTER in cycle c (SRAM write of bank b in c + 1) and READ or
  GATHER of bank 1 - b in c + 1 on the same slice;
* ``to_compute``: a READ (fresh, again, or of a result written earlier) or a GATHER is an
  operand of the VXM, an SXM or an MXM;
* ``from_compute``: a VXM/SXM/MXM result plane is SCATTER data, or a VXM ``AND(x, R-1)``
  / ``SHR.u8(x, 8 - log2 R)`` is the index of a GATHER or SCATTER.

Index vectors hold values below the table/window size R (2, 4 or 8 = ``programs.IDX_RANGE``,
powers of two so a flipped bit 0 stays in range).  MEM actor chains may add steps to a
compute slice whose own steps are done.  ``all`` programs have about 1.4x the
instructions of ``mixed`` and 1.0-1.4x its cycles (30 seeds: mean 250 vs 241 on tiny, 256
vs 231 on small); long NOPs there come only from a step's first attempt (else a crowded
MEM schedule favours them) and rarely from the MEM actors.)  A quarter of the programs
start with a SYNC/NOTIFY barrier; 1 % of the gaps are long NOPs.

Coverage (``coverage``): per compute slice kind as above; ``MEM.*`` for the MEM actor's own
instructions only (feeders and drains are not counted): ``MEM.{READ,WRITE,GATHER,SCATTER}``
(repetitions included), ``.bank0/1``, ``MEM.REPEAT.<mn>[.stride0/+/-]``,
``MEM.READ.{fresh,again,raw}``, ``MEM.READ.index.{fresh,again,copied}``,
``MEM.WRITE.index``, ``MEM.RAW[.earliest|.of_drain|.of_WRITE|.of_SCATTER]``,
``MEM.GATHER.{idx.<src>,table.<where>,crosses_banks,index_table,turns}``,
``MEM.SCATTER.{idx.<src>,data.<src>,window.<where>,crosses_banks,
idx_data_opposite_directions}``, ``MEM.bank_switch`` (SRAM write and read of the other
bank in one cycle on one slice, whoever issued them) and ``.step``,
``MEM.transfer.{E,W,distance_N}``, ``MEM.chain.<src>-><slice>`` and
``MEM.chain.<slice>->{SCATTER.data,GATHER.idx,SCATTER.idx}``, ``MEM.dropped``,
``MEM.step.<mode>``.

``compute_fault_programs(cfg)`` gives one program per compute-slice fault (REQUANT
parameters and PMAP entries out of range, a stream collision, IW during a weight load,
illegal words, REPEAT strides leaving a field's range; with a transposer a TGET of R + 1
rows and a TPUT row strided to R) with the slice and error code the RTL must flag.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from arch.asm import format_instr
from arch.config import TspConfig
from arch.isa import (
    MXM_ACC_SLOTS,
    SEL_IMM,
    SEL_LANE,
    SEL_NONE,
    SEL_REG,
    SXM_MAPS,
    TYPE_BYTES,
    TYPE_SIGNED,
    TYPES,
    VXM_OP_BY_NAME,
    VXM_OPS,
    VXM_REGS,
    Instr,
    latency,
    sel_stream,
    validate,
)
from arch.program import Program

from .programs import IDX_RANGE, RandomProgram

E, W = 0, 1
KINDS = ("VXM", "MXM", "SXM", "mixed", "all")
IMM_LO, IMM_HI = -(2**14), 2**14 - 1
INT32 = (-(2**31), 2**31 - 1)
MULT_RANGE = (0, 2**31 - 1)
SHIFT_RANGE = (-31, 30)


@dataclass
class ComputeProgram(RandomProgram):
    kind: str = ""
    config: str = ""
    #: feature -> count (instructions, types, operand kinds, REPEATs, ...)
    coverage: Counter = field(default_factory=Counter)
    #: the addresses whose initial vectors are operands (the others are overwritten)
    inputs: dict[str, set[int]] = field(default_factory=dict)
    scale: float = 1.0

    def describe(self) -> str:
        """The program as assembly (``arch.asm.assemble`` reads it back; the SRAM contents
        come from the seed)."""
        src = ("compute_fault_programs" if self.kind == "fault" else
               f"random_compute_program(get_config({self.config!r}), {self.seed}, "
               f"{self.kind!r}" + (f", scale={self.scale}" if self.scale != 1 else "") + ")")
        lines = [f"# random {self.kind} program, seed {self.seed}: "
                 f"tb.chip.programs_compute.{src}", f".config {self.config}"]
        for name, ins in self.listing.items():
            if ins == ["HALT"]:
                continue
            lines.append(f".slice {name}")
            lines += [f"    {t}" for t in ins]
        return "\n".join(lines)


def _trange(t: str) -> tuple[int, int]:
    bits = 8 * TYPE_BYTES[t]
    if TYPE_SIGNED[t]:
        return -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return 0, (1 << bits) - 1


def _within(r, lo_hi) -> bool:
    return r is not None and lo_hi[0] <= r[0] and r[1] <= lo_hi[1]


# =============================================================================== tables
class _Tables:
    """Reservations of the whole program and what it will contain."""

    def __init__(self, cfg: TspConfig, rng: np.random.Generator):
        self.cfg, self.rng = cfg, rng
        self.P = cfg.n_positions
        self.VL = cfg.vector_length
        self.NS = cfg.streams_per_direction
        self.depth = cfg.mem_depth
        self.pos = {s.name: s.index for s in cfg.slices}
        self.mems = [s.name for s in cfg.slices_of("MEM")]
        self.queue: dict[str, dict[int, tuple[Instr, tuple | None]]] = {
            s.name: {} for s in cfg.slices}
        self.qbusy: dict[str, set[int]] = {s.name: set() for s in cfg.slices}
        #: stream registers on a value's path: (dir, stream, pos, cycle) -> value id
        self.cells: dict[tuple[int, int, int, int], int] = {}
        self.rd: set[tuple[str, int, int]] = set()  # (MEM slice, cycle, bank) SRAM reads
        self.wr: set[tuple[str, int, int]] = set()  # SRAM writes (in their write cycle)
        self.next_addr = {(m, b): b * self.depth for m in self.mems for b in range(2)}
        #: end (exclusive) of what ``alloc`` may hand out in (MEM slice, bank)
        self.limit = {(m, b): (b + 1) * self.depth for m in self.mems for b in range(2)}
        #: MEM actor bookkeeping (kind "all"): (slice, addr) -> (last SRAM write cycle,
        #: writer) of every address the program writes; per slice the index vectors (addr,
        #: values below, first cycle a READ sees it), read-only GATHER tables (base, size,
        #: index values below or None for data), SCATTER windows (base, size) and the
        #: address range kept around the bank boundary (tables/windows crossing it)
        self.wrote: dict[tuple[str, int], tuple[int, str]] = {}
        self.idxvec: dict[str, list[tuple[int, int, int]]] = {m: [] for m in self.mems}
        self.tables: dict[str, list[tuple[int, int, int | None]]] = {m: [] for m in self.mems}
        self.swins: dict[str, list[tuple[int, int]]] = {m: [] for m in self.mems}
        self.straddle: dict[str, tuple[int, int]] = {}
        self.init: dict[str, dict[int, np.ndarray]] = {m: {} for m in self.mems}
        self.touched: dict[str, set[int]] = {m: set() for m in self.mems}
        self.inputs: dict[str, set[int]] = {m: set() for m in self.mems}
        self.cov: Counter = Counter()
        self._vid = 0
        #: long NOP gaps only on a step's first attempt (kind "all": otherwise a crowded
        #: MEM schedule makes the rare long gap the attempt that succeeds)
        self.long_gap_first_try_only = False

    def new_vid(self) -> int:
        self._vid += 1
        return self._vid

    def upstream(self, q: int, d: int) -> list[str]:
        """MEM slices that can put a value on a d-ward stream towards position q."""
        return [m for m in self.mems if (self.pos[m] < q if d == E else self.pos[m] > q)]

    def downstream(self, p: int, d: int) -> list[str]:
        return [m for m in self.mems if (self.pos[m] > p if d == E else self.pos[m] < p)]

    def bytes(self, n: int | None = None, edgy: bool | None = None) -> np.ndarray:
        """Random bytes; sometimes biased to 0x00/0x7f/0x80/0xff (edges of every type)."""
        rng = self.rng
        n = self.VL if n is None else n
        v = rng.integers(0, 256, n, dtype=np.uint8)
        if edgy is None:
            edgy = rng.random() < 0.25
        if edgy:
            special = np.array([0, 1, 0x7F, 0x80, 0xFF, 0xFE], np.uint8)
            mask = rng.random(n) < 0.5
            v[mask] = rng.choice(special, int(mask.sum()))
        return v


@dataclass
class _Chain:
    """A compute slice (the consumer) takes a producer's result off a stream: the
    producer's drain reserves the path to the consumer's position (``produced``), the
    consumer's feed finds it there (``provided``) instead of a MEM slice."""

    consumer: str
    pos: int
    d: int  # direction from the producer to the consumer
    widths: tuple[int, ...]  # byte planes the consumer can take


class _Txn:
    """Tentative reservations of one step; ``commit`` applies them if nothing clashed."""

    def __init__(self, tab: _Tables):
        self.tab, self.rng = tab, tab.rng
        self.issues: list[tuple[str, int, Instr, tuple | None]] = []
        self.spans: dict[str, set[int]] = {}
        self.cells: dict = {}
        self.chain: _Chain | None = None
        #: the chained value: (direction, first stream, planes, cycle at the consumer)
        self.produced: tuple[int, int, int, int] | None = None
        self.provided: tuple[str, int, int, int, int] | None = None  # (consumer, d, s, w, t)
        self.provided_used = False
        self.rd: set = set()
        self.wr: set = set()
        self.used: Counter = Counter()
        self.init: list[tuple[str, int, np.ndarray]] = []
        self.inputs: list[tuple[str, int]] = []
        self.wrote: list[tuple[str, int, int, str]] = []  # (slice, addr, write cycle, writer)
        self.idxvec: list[tuple[str, int, int, int]] = []
        self.tables: list[tuple[str, int, int, int | None]] = []
        self.swins: list[tuple[str, int, int]] = []
        self.cov: Counter = Counter()
        self.ok = True

    def fail(self):
        self.ok = False
        return None

    # -- queues ---------------------------------------------------------------------
    @staticmethod
    def _span(t: int, rep) -> range:
        n, d = (rep[0], rep[1]) if rep else (0, 1)
        return range(t, t + n * d + 1)

    def queue_free(self, sl: str, t: int, rep=None) -> bool:
        if t < 0:
            return False
        busy, mine = self.tab.qbusy[sl], self.spans.get(sl, ())
        return not any(c in busy or c in mine for c in self._span(t, rep))

    def issue(self, sl: str, t: int, instr: Instr, rep: tuple | None = None,
              check: bool = True):
        """Issue ``instr`` on ``sl`` in cycle t; rep = (n, d, stride_a, stride_b)."""
        if not self.ok:
            return None
        if not self.queue_free(sl, t, rep):
            return self.fail()
        kind = self.tab.cfg.slice(sl).kind
        if check:
            validate(instr, kind, self.tab.cfg)  # a generator bug, not a test failure
        self.spans.setdefault(sl, set()).update(self._span(t, rep))
        self.issues.append((sl, t, instr, rep if rep and rep[0] else None))
        if kind != "MEM":
            self.cov[f"{kind}.{instr.mnemonic}"] += 1 + (rep[0] if rep else 0)
            if rep and rep[0]:
                self.cov[f"{kind}.REPEAT"] += 1
                if rep[2] or (len(rep) > 3 and rep[3]):
                    self.cov[f"{kind}.REPEAT.strided"] += 1
        elif rep and rep[0]:
            self.cov["MEM.REPEAT"] += 1
        return True

    # -- streams --------------------------------------------------------------------
    def cell(self, c, vid: int):
        """Stream register c carries value vid (one value may be read by several)."""
        other = self.cells.get(c, self.tab.cells.get(c))
        if other is not None and other != vid:
            return self.fail()
        self.cells[c] = vid
        return True

    def path(self, p: int, q: int, d: int, s: int, t_w: int, vid: int):
        """Value vid, written by position p in cycle t_w on (d, s), is read at q."""
        step = 1 if d == E else -1
        assert (q - p) * step > 0, (p, q, d)
        for j in range(1, abs(q - p) + 1):
            self.cell((d, s, p + step * j, t_w + j), vid)

    def stub(self, p: int, d: int, s: int, t_w: int, vid: int):
        """Value vid, written by position p in cycle t_w: its first register (so that it
        can neither overwrite a value in flight nor collide with another write)."""
        q = p + (1 if d == E else -1)
        if 0 <= q < self.tab.P:
            self.cell((d, s, q, t_w + 1), vid)

    # -- SRAM -----------------------------------------------------------------------
    def sram(self, m: str, c: int, bank: int, write: bool):
        key = (m, c, bank)
        if write:
            if key in self.tab.rd or key in self.rd:
                return self.fail()
            self.wr.add(key)
        else:
            if key in self.tab.wr or key in self.wr:
                return self.fail()
            self.rd.add(key)
        return True

    def alloc(self, m: str, bank: int, n: int, stride: int) -> list[int] | None:
        """n fresh addresses of one bank, ``stride`` apart (first one first)."""
        span = (n - 1) * abs(stride) + 1
        base = self.tab.next_addr[(m, bank)] + self.used[(m, bank)]
        if base + span > self.tab.limit[(m, bank)]:
            return self.fail()
        self.used[(m, bank)] += span
        if stride >= 0:
            return [base + k * stride for k in range(n)]
        return [base + span - 1 + k * stride for k in range(n)]

    def _stride(self, n: int) -> int:
        if n == 0:
            return 0
        return int(self.rng.choice([1, 1, 1, 1, -1, 2]))

    # -- MEM feeders and drains ---------------------------------------------------------
    def feed(self, q_name: str, t: int, d: int, planes: list[int], rep=None,
             data=None) -> dict[int, list[np.ndarray]] | None:
        """READs so that streams ``planes`` (direction d) hold a value at q's position in
        cycle t (and t + k*dr for the k = 1..n repetitions of rep = (n, dr)).  One MEM
        slice per plane.  ``data(i, k)`` gives plane i's vector of repetition k (default:
        random bytes).  Returns {stream: [vector per repetition]}."""
        tab = self.tab
        if not self.ok:
            return None
        pv = self.provided
        if pv is not None and not self.provided_used and (q_name, d, t) == (pv[0], pv[1], pv[4]):
            mine = list(range(pv[2], pv[2] + pv[3]))
            if all(s in planes for s in mine) and rep is None:
                planes = [s for s in planes if s not in mine]
                self.provided_used = True
                self.cov["chain.consumed"] += 1
        q = tab.pos[q_name]
        n, dr = (rep[0], rep[1]) if rep else (0, 1)
        cands = tab.upstream(q, d)
        self.rng.shuffle(cands)
        out = {}
        for i, s in enumerate(planes):
            m = None
            while cands:
                c = cands.pop()
                if self.queue_free(c, t - 1 - abs(q - tab.pos[c]), rep):
                    m = c
                    break
            if m is None:
                return self.fail()
            t_r = t - 1 - abs(q - tab.pos[m])
            bank = int(self.rng.integers(2))
            stride = self._stride(n)
            addrs = self.alloc(m, bank, n + 1, stride)
            if addrs is None:
                return None
            vecs = []
            for k, a in enumerate(addrs):
                v = tab.bytes() if data is None else np.asarray(data(i, k), np.uint8)
                self.init.append((m, a, v))
                self.inputs.append((m, a))
                vecs.append(v)
                self.sram(m, t_r + k * dr, bank, False)
                self.path(tab.pos[m], q, d, s, t_r + 1 + k * dr, tab.new_vid())
            self.issue(m, t_r, Instr("READ", {"addr": addrs[0], "out_s": s, "out_d": d}),
                       (n, dr, stride, 0) if n else None)
            out[s] = vecs
        return out if self.ok else None

    def drain(self, p_name: str, t_w: int, d: int, planes: list[int], rep=None,
              min_capture: int = 1) -> int:
        """WRITEs in MEM slices downstream of p taking the values p writes on streams
        ``planes`` (direction d) in cycle t_w (+ k*dr); as many planes as there are free
        MEM slices, the others are left to flow off (their first register reserved).
        Returns the number of captured planes."""
        tab = self.tab
        if not self.ok:
            return 0
        p = tab.pos[p_name]
        n, dr = (rep[0], rep[1]) if rep else (0, 1)
        vids = {(s, k): tab.new_vid() for s in planes for k in range(n + 1)}
        ch = self.chain
        if (ch is not None and self.produced is None and rep is None and d == ch.d
                and len(planes) in ch.widths and (ch.pos - p) * (1 if d == E else -1) > 0):
            for s in planes:
                self.path(p, ch.pos, d, s, t_w, vids[(s, 0)])
            self.produced = (d, planes[0], len(planes), t_w + abs(ch.pos - p))
            min_capture = 0
        # (a MEM slice consuming the chained value -- kind "all" -- captures no plane)
        cands = [m for m in tab.downstream(p, d) if ch is None or m != ch.consumer]
        self.rng.shuffle(cands)
        order = list(planes)
        self.rng.shuffle(order)
        captured = 0
        for s in order:
            m = None
            while cands:
                c = cands.pop()
                if self.queue_free(c, t_w + abs(tab.pos[c] - p), rep):
                    m = c
                    break
            if m is None:
                for k in range(n + 1):
                    self.stub(p, d, s, t_w + k * dr, vids[(s, k)])
                continue
            t_c = t_w + abs(tab.pos[m] - p)
            bank = int(self.rng.integers(2))
            stride = self._stride(n)
            addrs = self.alloc(m, bank, n + 1, stride)
            if addrs is None:
                return 0
            for k, a in enumerate(addrs):
                self.init.append((m, a, tab.bytes(edgy=False)))  # a canary, overwritten
                self.sram(m, t_c + 1 + k * dr, bank, True)
                self.wrote.append((m, a, t_c + 1 + k * dr, "drain"))
                self.path(p, tab.pos[m], d, s, t_w + k * dr, vids[(s, k)])
            self.issue(m, t_c, Instr("WRITE", {"addr": addrs[0], "in_s": s, "in_d": d}),
                       (n, dr, stride, 0) if n else None)
            captured += 1
        if captured < min(min_capture, len(planes)):
            self.fail()
        self.cov["planes.captured"] += captured
        self.cov["planes.dropped"] += len(planes) - captured
        return captured

    def commit(self):
        assert self.ok
        tab = self.tab
        for sl, t, ins, rep in self.issues:
            tab.queue[sl][t] = (ins, rep)
        for sl, sp in self.spans.items():
            tab.qbusy[sl] |= sp
        tab.cells.update(self.cells)
        tab.rd |= self.rd
        tab.wr |= self.wr
        for k, v in self.used.items():
            tab.next_addr[k] += v
        for m, a, v in self.init:
            tab.init[m][a] = v
            tab.touched[m].add(a)
        for m, a in self.inputs:
            tab.inputs[m].add(a)
        for m, a, c, who in self.wrote:
            if (m, a) not in tab.wrote or tab.wrote[(m, a)][0] < c:
                tab.wrote[(m, a)] = (c, who)
        for m, *rest in self.idxvec:
            tab.idxvec[m].append(tuple(rest))
        for m, *rest in self.tables:
            tab.tables[m].append(tuple(rest))
        for m, *rest in self.swins:
            tab.swins[m].append(tuple(rest))
        tab.cov.update(self.cov)


def _streams(rng, ns: int, width: int, taken: set[int]) -> int | None:
    """A first stream s with s..s+width-1 inside the config and not in ``taken``."""
    opts = [s for s in range(ns - width + 1) if not taken & set(range(s, s + width))]
    return int(rng.choice(opts)) if opts else None


# =============================================================================== actors
def _start(rng, lo: int, hi: int, n: int, stride: int) -> int | None:
    """A random v with v + k*stride in [lo, hi] for k = 0..n."""
    a, b = lo - min(0, n * stride), hi - max(0, n * stride)
    return int(rng.integers(a, b + 1)) if a <= b else None


class _Actor:
    """One compute slice: its instructions are generated in issue order (cursor ``t``),
    so the generator knows the slice's state in every cycle."""

    kind = ""

    def __init__(self, tab: _Tables, name: str, n_steps: int):
        self.tab, self.rng, self.cfg = tab, tab.rng, tab.cfg
        self.name, self.p = name, tab.pos[name]
        self.t = tab.P + 3 + int(self.rng.integers(0, 4))  # feeders issue from cycle 2
        self.n_steps = n_steps
        self.done_steps = 0
        self.failures = 0
        self.mode = ""
        self.no_rep = False  # chain steps: no REPEAT
        self.attempt = 0  # of the current step

    def gap(self) -> int:
        if self.rng.random() < 0.01 and not (self.tab.long_gap_first_try_only
                                             and self.attempt):
            return int(self.rng.integers(50, 300))  # a long NOP
        return int(self.rng.choice([0, 0, 0, 0, 1, 1, 2, 3, 5, 8]))

    def finished(self) -> bool:
        return self.done_steps >= self.n_steps or self.failures > 80

    def choose(self) -> str:  # pragma: no cover - abstract
        raise NotImplementedError

    def build(self, t: int, txn: _Txn) -> int | None:  # pragma: no cover - abstract
        """Add one step (one or a few instructions of this slice, their feeders and
        drains) issued from cycle t to txn; return the last issue cycle, or None."""
        raise NotImplementedError

    def on_commit(self) -> None:
        """Apply the state change of the step just committed (``self.pending``)."""

    def step(self) -> bool:
        self.mode = self.choose()
        for attempt in range(10):
            self.attempt = attempt
            t = self.t + self.gap()
            txn = _Txn(self.tab)
            self.pending = None
            end = self.build(t, txn)
            if end is not None and txn.ok:
                txn.commit()
                self.on_commit()
                self.t = end + 1
                self.done_steps += 1
                return True
        self.failures += 1
        self.t += 1 + int(self.rng.integers(0, 3))
        return False

    def chain_mode(self, chain: _Chain | None):
        """The mode of a chain step: as producer (chain given) or consumer (None)."""
        return self.choose()

    def rep(self, p: float, nmax: int = 4, dmax: int = 3) -> tuple[int, int]:
        if self.no_rep or self.rng.random() >= p:
            return 0, 1
        return int(self.rng.integers(1, nmax + 1)), int(self.rng.integers(1, dmax + 1))


# ------------------------------------------------------------------------------- VXM
_UNARY = [o.name for o in VXM_OPS if o.arity == 1]
_NOT_SEL = [o.name for o in VXM_OPS if o.arity < 3]


class _Vxm(_Actor):
    kind = "VXM"

    def __init__(self, tab, name="VXM", n_steps=30):
        super().__init__(tab, name, n_steps)
        self.L = latency("VXM", self.cfg)
        #: (first cycle in which an instruction issued sees it, register, value range)
        self.writes: list[tuple[int, int, tuple[int, int]]] = []
        self.cap_in = {d: len(tab.upstream(self.p, d)) for d in (E, W)}
        self.cap_out = {d: len(tab.downstream(self.p, d)) for d in (E, W)}
        self.plan: list[str] = ["load"] * int(self.rng.integers(1, 4)) + ["mult", "shift", "zp"]
        self.dirty: set[int] = set()  # written and not drained since
        self.triple = int(self.rng.integers(0, VXM_REGS - 2))

    # -- register state ---------------------------------------------------------------
    def regs_at(self, t: int) -> dict[int, tuple[int, int]]:
        """Register -> range of its value, as an instruction issued in cycle t reads it."""
        st = {}
        for tv, r, rg in self.writes:
            if tv <= t:
                st[r] = rg
        return st

    @staticmethod
    def requant_ks(regs, ot: str) -> set[int]:
        return {k for k in range(VXM_REGS - 2)
                if _within(regs.get(k), MULT_RANGE) and _within(regs.get(k + 1), SHIFT_RANGE)
                and _within(regs.get(k + 2), _trange(ot))}

    def finished(self) -> bool:
        return ((self.done_steps >= self.n_steps and not self.dirty) or self.failures > 80)

    def choose(self) -> str:
        if self.done_steps >= self.n_steps:
            return "drain"
        if self.plan:
            return self.plan.pop(0)
        r = self.rng.random()
        if r < 0.08:
            return "load"
        if r < 0.16:
            return str(self.rng.choice(["mult", "shift", "zp"]))
        if r < 0.21:
            return "drain"
        return "random"

    def on_commit(self) -> None:
        writes, drained, again = self.pending
        self.plan[:0] = again
        self.writes += writes
        self.dirty |= {r for _tv, r, _rg in writes}
        self.dirty -= drained

    def build(self, t: int, txn: _Txn) -> int | None:
        self.pending = ([], set(), [])
        if self.mode == "drain":
            return self._drain(t, txn)
        if self.mode in ("mult", "shift", "zp"):
            return self._param(self.mode, t, txn)
        return self._random(t, txn, load=self.mode == "load")

    # -- pieces -------------------------------------------------------------------------
    def _imm(self) -> int:
        r = self.rng.random()
        if r < 0.5:
            return int(self.rng.integers(-20, 41))
        if r < 0.75:
            return int(self.rng.integers(-300, 301))
        return int(self.rng.integers(IMM_LO, IMM_HI + 1))

    def _pick_reg_dest(self, regs, avoid=()) -> int:
        """A destination register; valid REQUANT triples survive most of the time."""
        rng = self.rng
        keep = set()
        for ot in ("i8", "u8"):
            for k in self.requant_ks(regs, ot):
                keep |= {k, k + 1, k + 2}
        opts = [r for r in range(VXM_REGS)
                if r not in avoid and (r not in keep or rng.random() < 0.1)]
        if not opts:
            opts = [r for r in range(VXM_REGS) if r not in avoid]
        return int(rng.choice(opts))

    def _emit(self, t, txn, f, rep=(0, 1), sa=0, streams=None, dest_range=None,
              cov: Counter | None = None) -> int | None:
        """Issue the VXM word ``f`` in cycle t with its feeders and drains."""
        n, dr = rep
        streams = streams or {}
        for d in (E, W):
            planes = []
            for (dd, s0), w in sorted(streams.items()):
                if dd == d:
                    planes += list(range(s0, s0 + w))
            if planes:
                txn.feed(self.name, t, d, planes, rep=(n, dr) if n else None)
        if not txn.ok:
            return None
        txn.issue(self.name, t, Instr("VXM", f), (n, dr, sa, 0) if n else None)
        ot = TYPES[f["otype"]]
        dsel = f["d"]
        if dsel < 64:
            d, s = dsel >> 5, dsel & 31
            txn.drain(self.name, t + self.L, d, list(range(s, s + TYPE_BYTES[ot])),
                      rep=(n, dr) if n else None)
        if not txn.ok:
            return None
        if SEL_REG <= dsel < SEL_REG + VXM_REGS:
            rg = dest_range or _trange(ot)
            self.pending[0].extend((t + k * dr + self.L + 1, dsel - SEL_REG, rg)
                                   for k in range(n + 1))
        txn.cov.update(cov or {})
        txn.cov[f"VXM.type.{TYPES[f['type']]}"] += 1
        txn.cov[f"VXM.otype.{ot}"] += 1
        return t + n * dr

    def chain_mode(self, chain):
        return "random"

    def _random(self, t, txn, load=False) -> int | None:
        rng = self.rng
        cov = Counter()
        pv = txn.provided if txn.provided and txn.provided[0] == self.name else None
        ch = txn.chain
        typ = str(rng.choice(TYPES, p=[0.3, 0.25, 0.25, 0.2]))
        if pv is not None:  # operand a is a chained value of pv[3] byte planes
            typ = str(rng.choice([x for x in TYPES if TYPE_BYTES[x] == pv[3]]))
        w = TYPE_BYTES[typ]
        ot = typ if rng.random() < 0.5 else str(rng.choice(TYPES))
        if ch is not None:  # the result goes to another compute slice
            ot = str(rng.choice([x for x in TYPES if TYPE_BYTES[x] in ch.widths]))
        sat = int(rng.random() < 0.3)
        if load:
            op1 = "PASS" if rng.random() < 0.7 else str(rng.choice(_UNARY))
            op2 = "PASS"
        else:
            op1 = str(rng.choice([o.name for o in VXM_OPS]))
            if op1 == "SEL":
                op2 = str(rng.choice(_UNARY))
            else:
                op2 = "PASS" if rng.random() < 0.35 else str(rng.choice(_NOT_SEL))
            p_rq = 0.6 if pv is not None and pv[3] == 4 else 0.15  # int32 MVM results
            if rng.random() < p_rq and self.requant_ks(self.regs_at(t), ot):
                # REQUANT whenever a legal triple exists, in either stage
                if rng.random() < 0.5:
                    op1, op2 = "REQUANT", str(rng.choice(["PASS", "PASS", *_NOT_SEL]))
                else:
                    op1 = str(rng.choice(_NOT_SEL))
                    op2 = "REQUANT"
        rep_n, rep_d = self.rep(0.15)
        regs = self.regs_at(t)
        ks = None
        if "REQUANT" in (op1, op2):
            # legal in every repetition (registers written by earlier instructions may
            # become visible during the REPEAT)
            ks = set.intersection(*(self.requant_ks(self.regs_at(t + k * rep_d), ot)
                                    for k in range(rep_n + 1)))
            if not ks:
                return None
        streams: dict[tuple[int, int], int] = {}  # (dir, first stream) -> width
        taken = {E: set(), W: set()}
        used_planes = {E: 0, W: 0}
        use_imm = False

        def stream_src():
            dirs = [d for d in (E, W) if used_planes[d] + w <= self.cap_in[d]]
            same = [(d, s) for (d, s) in streams]
            if same and rng.random() < 0.25:
                d, s = same[int(rng.integers(len(same)))]
                return sel_stream(s, d)
            if not dirs:
                return None
            d = int(rng.choice(dirs))
            s = _streams(rng, self.tab.NS, w, taken[d])
            if s is None:
                return None
            taken[d] |= set(range(s, s + w))
            used_planes[d] += w
            streams[(d, s)] = w
            return sel_stream(s, d)

        def src(force_stream=False):
            nonlocal use_imm
            if pv is not None and not streams:
                _c, d, s0, _w, _t = pv
                taken[d] |= set(range(s0, s0 + w))
                streams[(d, s0)] = w  # fed by the producer, not by MEM slices
                cov["VXM.src.chained"] += 1
                return sel_stream(s0, d)
            defined = sorted(regs)
            kinds = ["stream"] * 4 + ["reg"] * (3 if defined else 0) + ["imm"] * 2 + ["lane"]
            k = "stream" if force_stream else str(rng.choice(kinds))
            if k == "stream":
                sel = stream_src()
                if sel is not None:
                    cov["VXM.src.stream"] += 1
                    return sel
                k = "reg" if defined else "imm"
            if k == "reg":
                cov["VXM.src.reg"] += 1
                # registers written in the last 4 cycles: the old value until t + 3, the
                # new one from t + 4 (pipeline hazards)
                hot = [r for r in defined if any(t - 1 <= tv <= t + 3 for tv, rr, _ in
                                                 self.writes if rr == r)]
                r = int(rng.choice(hot if hot and rng.random() < 0.5 else defined))
                for tv, rr, _ in self.writes:
                    if rr == r and t - 1 <= tv <= t + 3:
                        cov[f"VXM.src.reg.written_{t - tv + 4}_cycles_before"] += 1
                        break
                return SEL_REG + r
            if k == "imm":
                use_imm = True
                cov["VXM.src.imm"] += 1
                return SEL_IMM
            cov["VXM.src.lane"] += 1
            return SEL_LANE

        a1, a2 = VXM_OP_BY_NAME[op1].arity, VXM_OP_BY_NAME[op2].arity
        f = {"type": TYPES.index(typ), "otype": TYPES.index(ot), "sat": sat,
             "op1": VXM_OP_BY_NAME[op1].code, "op2": VXM_OP_BY_NAME[op2].code,
             "a": src(force_stream=load), "b": SEL_NONE, "c": SEL_NONE, "imm": 0}
        k_used: set[int] = set()
        if a1 >= 2:
            if op1 == "REQUANT":
                k = int(rng.choice(sorted(ks)))
                k_used |= {k, k + 1, k + 2}
                f["b"] = SEL_REG + k
            else:
                f["b"] = src()
        if a1 == 3 or a2 == 2:
            if op2 == "REQUANT":
                k = int(rng.choice(sorted(ks)))
                k_used |= {k, k + 1, k + 2}
                f["c"] = SEL_REG + k
            else:
                f["c"] = src()
        sa = 0
        if use_imm:
            f["imm"] = self._imm()
            if rep_n and rng.random() < 0.6:
                sa = int(rng.integers(-5, 6))
                if not IMM_LO <= f["imm"] + rep_n * sa <= IMM_HI:
                    sa = 0
        if ch is not None:
            f["d"] = sel_stream(_streams(rng, self.tab.NS, TYPE_BYTES[ot], set()), ch.d)
            cov["VXM.dst.chained"] += 1
        elif load or rng.random() < 0.3:
            f["d"] = SEL_REG + self._pick_reg_dest(regs, k_used if rep_n else ())
            cov["VXM.dst.reg"] += 1
        else:
            ow = TYPE_BYTES[ot]
            d = int(rng.choice([d for d in (E, W) if self.cap_out[d]]))
            f["d"] = sel_stream(_streams(rng, self.tab.NS, ow, set()), d)
            cov["VXM.dst.stream"] += 1
        cov[f"VXM.op1.{op1}"] += 1
        cov[f"VXM.op2.{op2}"] += 1
        if op2 != "PASS" and op1 != "PASS":
            cov["VXM.chain"] += 1
        cov["VXM.sat"] += sat
        return self._emit(t, txn, f, (rep_n, rep_d), sa, streams, cov=cov)

    def _param(self, what, t, txn) -> int | None:
        """Set a register to a legal REQUANT multiplier, shift or zero point (from an
        immediate or from streams), mostly completing one triple rK..rK+2."""
        rng = self.rng
        regs = self.regs_at(t)
        off = {"mult": 0, "shift": 1, "zp": 2}[what]
        k = self.triple if rng.random() < 0.85 else int(rng.integers(0, VXM_REGS - 2))
        r = k + off
        cov = Counter({f"VXM.param.{what}": 1})
        f = {"sat": 0, "d": SEL_REG + r}
        streams: dict[tuple[int, int], int] = {}
        choice = rng.random()

        def one_stream(w):
            dirs = [d for d in (E, W) if self.cap_in[d] >= w]
            if not dirs:
                return None
            d = int(rng.choice(dirs))
            s = _streams(rng, self.tab.NS, w, set())
            streams[(d, s)] = w
            return sel_stream(s, d)

        def op(t1, ot, op1, a, b=SEL_NONE, imm=0, op2="PASS", c=SEL_NONE):
            f.update(type=TYPES.index(t1), otype=TYPES.index(ot), op1=VXM_OP_BY_NAME[op1].code,
                     op2=VXM_OP_BY_NAME[op2].code, a=a, b=b, c=c, imm=imm)

        if what == "shift":
            if choice < 0.4:
                v = int(rng.integers(-31, 31))
                op("i32", "i32", "PASS", SEL_IMM, imm=v)
                rg = (v, v)
            else:
                sh = int(rng.integers(3, 8))
                op("i8", "i8", "SRA", one_stream(1), SEL_IMM, imm=sh)
                rg = (-128 >> sh, 127 >> sh)
        elif what == "zp":
            if choice < 0.4:
                v = int(rng.integers(-128, 128)) if rng.random() < 0.7 else int(
                    rng.integers(0, 256))
                op("i32", "i32", "PASS", SEL_IMM, imm=v)
                rg = (v, v)
            elif choice < 0.7:
                op("i8", "i8", "SRA", one_stream(1), SEL_IMM, imm=2)
                rg = (-32, 31)
            else:
                op("u8", "i32", "SHR", one_stream(1), SEL_IMM, imm=2)
                rg = (0, 63)
        else:  # multiplier
            src_regs = [x for x in regs if x != r]
            two30 = [x for x, g in regs.items() if g == (2**30, 2**30)]
            two28 = [x for x, g in regs.items() if g == (2**28, 2**28)]
            if choice < 0.2:
                v = int(rng.integers(0, IMM_HI + 1))
                op("i32", "i32", "PASS", SEL_IMM, imm=v)
                rg = (v, v)
            elif choice < 0.35:
                op("u8", "i32", "PASS", one_stream(1))
                rg = (0, 255)
            elif choice < 0.5 and src_regs:
                op("i32", "i32", "SHR", SEL_REG + int(rng.choice(src_regs)), SEL_IMM, imm=1)
                rg = MULT_RANGE
            elif choice < 0.6 and max(self.cap_in.values()) >= 4:
                op("i32", "i32", "SHR", one_stream(4), SEL_IMM, imm=1)
                rg = MULT_RANGE
            else:
                # normalised multipliers [2**30, 2**31 - 1] = (x >> 2) | 2**30, with the
                # constant built as (-16384)**2 << 2 in two earlier steps
                cov["VXM.param.mult.normalised"] += 1
                if two30 and src_regs:
                    op("i32", "i32", "SHR", SEL_REG + int(rng.choice(src_regs)), SEL_IMM,
                       imm=2, op2="OR", c=SEL_REG + int(rng.choice(two30)))
                    rg = (2**30, 2**31 - 1)
                elif two28:
                    f["d"] = SEL_REG + self._pick_reg_dest(regs, {r})
                    op("i32", "i32", "SHL", SEL_REG + int(rng.choice(two28)), SEL_IMM, imm=2)
                    rg = (2**30, 2**30)
                    self.pending[2].append("mult")  # then the multiplier itself
                else:
                    f["d"] = SEL_REG + self._pick_reg_dest(regs, {r})
                    op("i32", "i32", "MUL", SEL_IMM, SEL_IMM, imm=-16384)
                    rg = (2**28, 2**28)
                    self.pending[2].append("mult")
        return self._emit(t, txn, f, (0, 1), 0, streams, dest_range=rg, cov=cov)

    def _drain(self, t, txn) -> int | None:
        """A register written since its last drain, all 32 bits onto streams (one i32
        result, or two i16 halves in both directions when a hemisphere has fewer than 4
        MEM slices)."""
        rng = self.rng
        final = {}
        for tv, r, _rg in self.writes:
            final[r] = tv
        ready = [r for r in sorted(self.dirty) if final[r] <= t]
        if not ready:
            return None
        r = int(rng.choice(ready))
        d = int(rng.choice([E, W]))
        NS = self.tab.NS
        base = {"type": 2, "sat": 0, "op1": 0, "op2": 0, "a": SEL_REG + r, "b": SEL_NONE,
                "c": SEL_NONE, "imm": 0}
        if self.cap_out[d] >= 4:
            f = dict(base, otype=2, d=sel_stream(_streams(rng, NS, 4, set()), d))
            end = self._emit(t, txn, f, cov=Counter({"VXM.drain": 1}))
        else:
            f = dict(base, otype=1, d=sel_stream(_streams(rng, NS, 2, set()), d))
            end = self._emit(t, txn, f, cov=Counter({"VXM.drain": 1}))
            f2 = dict(base, otype=1, op1=VXM_OP_BY_NAME["SRA"].code, b=SEL_IMM, imm=16,
                      d=sel_stream(_streams(rng, NS, 2, set()), 1 - d))
            end = None if end is None else self._emit(t + 1, txn, f2)
        if end is not None:
            self.pending[1].add(r)
        return end


# ------------------------------------------------------------------------------- MXM
class _Mxm(_Actor):
    kind = "MXM"

    def __init__(self, tab, name, n_steps=14):
        super().__init__(tab, name, n_steps)
        cfg = self.cfg
        VL = self.VL = cfg.vector_length
        west = self.p < tab.P // 2
        self.din = W if west else E  # operands come from the MEM slices towards the centre
        self.dout = E if west else W
        self.L = latency("MVM", cfg)
        self.L_lwt = latency("LWT", cfg)
        #: rows (columns) a multi-row load writes at most (rows=n, n <= K; K = 1: none, and
        #: no random numbers are drawn for them, so such configs keep their programs)
        self.K = cfg.mxm_load_rows
        #: which weights of each buffer this program loaded; act = the active buffer
        self.defined = [np.zeros((VL, VL), bool), np.zeros((VL, VL), bool)]
        self.act = 0
        self.load_done = -1  # last cycle in which a load in flight writes the shadow
        self.gen = 0  # IWs so far
        self.acc_gen: dict[int, int] = {}  # slot -> weight generation of its first MVM
        self.last_mvm = -100
        self.last_iw = -100

    def full(self, which: int) -> bool:
        return bool(self.defined[which].all())

    def chain_mode(self, chain):
        return "mvm" if self.full(self.act) else "none"

    def choose(self) -> str:
        sh = 1 - self.act
        if not self.full(self.act):
            return "iw" if self.full(sh) else "fill"
        opts = ["mvm"] * 6 + ["mvm_ld"] * 2 + ["lw", "fill", "stream_fill"]
        if self.full(sh):
            opts += ["iw"] * 3
        return str(self.rng.choice(opts))

    def build(self, t, txn) -> int | None:
        mode = self.mode
        if mode == "none":
            return None
        if mode == "iw":
            return self._iw(t, txn)
        if mode == "fill":
            return self._fill(t, txn)
        if mode == "lw":
            return self._lw(t, txn)
        return self._mvm(t, txn, ld=mode in ("mvm_ld", "stream_fill"),
                         fill=mode == "stream_fill")

    def on_commit(self) -> None:
        kind = self.pending[0]
        cov = self.tab.cov
        if kind == "iw":
            t = self.pending[1]
            self.act = 1 - self.act
            self.gen += 1
            if t - self.last_mvm <= 3:
                cov["MXM.IW_right_after_MVM"] += 1
            self.last_iw = t
            return
        _, shadow, done, slots, accum, t0, t1 = self.pending
        self.defined[1 - self.act] = shadow
        self.load_done = done
        if kind == "mvm":
            for a in slots:
                if not accum or a not in self.acc_gen:
                    self.acc_gen[a] = self.gen
                elif self.acc_gen[a] != self.gen:
                    cov["MXM.K>VL_accumulation"] += 1
            if t0 - self.last_iw <= 3:
                cov["MXM.MVM_right_after_IW"] += 1
            self.last_mvm = t1

    def _iw(self, t, txn):
        t = max(t, self.load_done)
        if not self.full(1 - self.act):
            return None
        txn.issue(self.name, t, Instr("IW", {}))
        if t == self.load_done:
            txn.cov["MXM.IW_at_load_done"] += 1
        self.pending = ("iw", t)
        return t

    def _loaded(self, ld: int, rows, times, extra: int = 0):
        """The shadow's defined weights and last landing cycle after loads of rows (LW,
        ld 1) or columns ``r..r + extra`` (r in rows) issued in ``times``."""
        sh = self.defined[1 - self.act].copy()
        done = self.load_done
        for r, tt in zip(rows, times, strict=True):
            if ld == 1:
                sh[r:r + extra + 1, :] = True
                done = max(done, tt + 1)
            else:
                sh[:, r:r + extra + 1] = True
                done = max(done, tt + self.L_lwt)
        return sh, done

    def _fill(self, t, txn):
        """The whole shadow buffer: LW (rows) or LWT (columns) with REPEAT and a row
        stride of +1 or -1, in one or two chunks."""
        rng = self.rng
        VL = self.VL
        mn = "LW" if rng.random() < 0.6 else "LWT"
        order = list(range(VL)) if rng.random() < 0.7 else list(range(VL - 1, -1, -1))
        cut = VL if rng.random() < 0.6 else int(rng.integers(1, VL))
        chunks = [order[:cut], order[cut:]] if cut < VL else [order]
        dr = 1 if rng.random() < 0.8 else 2
        if self.K > 1 and rng.random() < 0.5:  # K rows (columns) per issue, group by group
            return self._fill_multi(t, txn, mn, order[0] == 0, dr)
        rows, times = [], []
        tt = t
        for ch in chunks:
            n = len(ch) - 1
            stride = ch[1] - ch[0] if n else 0
            s = int(rng.integers(0, self.tab.NS))
            txn.feed(self.name, tt, self.din, [s], rep=(n, dr) if n else None)
            txn.issue(self.name, tt, Instr(mn, {"row": ch[0], "w_s": s, "w_d": self.din}),
                      (n, dr, stride, 0) if n else None)
            rows += ch
            times += [tt + k * dr for k in range(n + 1)]
            tt = times[-1] + 1 + int(rng.integers(0, 3))
        if not txn.ok:
            return None
        sh, done = self._loaded(1 if mn == "LW" else 2, rows, times)
        self.pending = ("load", sh, done, [], 0, t, times[-1])
        txn.cov[f"MXM.fill.{mn}"] += 1
        return times[-1]

    def _fill_multi(self, t, txn, mn, up, dr):
        """The whole shadow buffer K rows (columns) per issue: one REPEAT over the VL / K
        groups, stride K (``up``) or -K, K consecutive streams."""
        K, VL = self.K, self.VL
        n = VL // K - 1
        stride = K if up else -K
        r0 = 0 if up else VL - K
        s = int(self.rng.integers(0, self.tab.NS - K + 1))
        txn.feed(self.name, t, self.din, list(range(s, s + K)), rep=(n, dr) if n else None)
        txn.issue(self.name, t, Instr(mn, {"row": r0, "w_s": s, "w_d": self.din,
                                           "extra": K - 1}),
                  (n, dr, stride, 0) if n else None)
        if not txn.ok:
            return None
        rows = [r0 + k * stride for k in range(n + 1)]
        times = [t + k * dr for k in range(n + 1)]
        sh, done = self._loaded(1 if mn == "LW" else 2, rows, times, K - 1)
        self.pending = ("load", sh, done, [], 0, t, times[-1])
        txn.cov[f"MXM.fill.{mn}.rows={K}"] += 1
        return times[-1]

    def _lw(self, t, txn):
        """A few rows or columns of the shadow buffer (K > 1: some of them several per
        issue, REPEAT strides of whole groups)."""
        rng = self.rng
        mn = "LW" if rng.random() < 0.5 else "LWT"
        n, dr = self.rep(0.4, nmax=3, dmax=2)
        multi = self.K > 1 and rng.random() < 0.5
        stride = int(rng.choice([1, -1, 2])) * (self.K if multi else 1) if n else 0
        r0 = _start(rng, 0, self.VL - 1, n, stride)
        if r0 is None:  # (strides of whole groups may not fit)
            return None
        rows = [r0 + k * stride for k in range(n + 1)]
        # (rows=extra + 1 from r0 % K: the strides keep every repetition in its group)
        extra = int(rng.integers(0, self.K - r0 % self.K)) if multi else 0
        s = int(rng.integers(0, self.tab.NS - extra))
        txn.feed(self.name, t, self.din, list(range(s, s + extra + 1)),
                 rep=(n, dr) if n else None)
        f = {"row": r0, "w_s": s, "w_d": self.din, **({"extra": extra} if extra else {})}
        txn.issue(self.name, t, Instr(mn, f), (n, dr, stride, 0) if n else None)
        if not txn.ok:
            return None
        if extra:
            txn.cov[f"MXM.{mn}.rows"] += 1
        times = [t + k * dr for k in range(n + 1)]
        sh, done = self._loaded(1 if mn == "LW" else 2, rows, times, extra)
        self.pending = ("load", sh, done, [], 0, t, times[-1])
        return times[-1]

    def _mvm(self, t, txn, ld=False, fill=False):
        """MVM (REPEATed, accumulating, emitting or not, loading the shadow with lw=/lwt=;
        ``fill``: VL repetitions loading the whole shadow while streaming)."""
        rng = self.rng
        VL, NS = self.VL, self.tab.NS
        if not self.full(self.act):
            return None
        cov = Counter()
        K = self.K
        multi = ld and K > 1 and rng.random() < 0.5  # rows=n loads (K = 1: no draw)
        if fill:
            n, dr = VL // (K if multi else 1) - 1, (1 if rng.random() < 0.8 else 2)
        else:
            n, dr = self.rep(0.35, nmax=6, dmax=2)
        pv = txn.provided if txn.provided and txn.provided[0] == self.name else None
        emit = int(rng.random() < 0.75 or txn.chain is not None)
        sa = int(rng.choice([0, 0, 1, -1])) if n else 0
        acc = _start(rng, 0, MXM_ACC_SLOTS - 1, n, sa)
        if acc is None:
            sa, acc = 0, int(rng.integers(0, MXM_ACC_SLOTS))
        if self.acc_gen and rng.random() < 0.5:  # a slot written before: accumulate onto it
            a0 = int(rng.choice(sorted(self.acc_gen)))
            if all(0 <= a0 + k * sa < MXM_ACC_SLOTS for k in range(n + 1)):
                acc = a0
        slots = [acc + k * sa for k in range(n + 1)]
        accum = 0
        if rng.random() < 0.55:
            seen, okk = set(self.acc_gen), True
            for a in slots:  # repetition k may accumulate onto repetition j < k
                okk &= a in seen
                seen.add(a)
            accum = int(okk)
        if pv is not None:  # x is a chained int8 value
            if pv[1] != self.din or pv[3] != 1:
                return None
            cov["MXM.MVM.x_chained"] += 1
        f = {"x_s": pv[2] if pv else int(rng.integers(0, NS)), "x_d": self.din,
             "acc": acc, "accum": accum,
             "emit": emit, "out_s": 0, "out_d": 0, "ld": 0, "row": 0, "w_s": 0, "w_d": 0}
        planes = [f["x_s"]]
        sb, rows = 0, []
        extra = 0
        if ld and multi:  # K rows (a whole group per repetition) or n < K at an offset
            f["ld"] = 1 if rng.random() < 0.6 else 2
            if fill:
                sb = K if rng.random() < 0.7 else -K
                f["row"], extra = (0 if sb > 0 else VL - K), K - 1
            else:
                sb = int(rng.choice([0, K, -K])) if n else 0
                f["row"] = _start(rng, 0, VL - 1, n, sb)
                if f["row"] is None:
                    return None
                extra = int(rng.integers(0, K - f["row"] % K))
            f["w_s"], f["w_d"] = _streams(rng, NS, extra + 1, {f["x_s"]}), self.din
            if f["w_s"] is None:
                return None
            f["extra"] = extra
            rows = [f["row"] + k * sb for k in range(n + 1)]
            planes += list(range(f["w_s"], f["w_s"] + extra + 1))
            cov[f"MXM.MVM.{'lw' if f['ld'] == 1 else 'lwt'}.rows"] += 1
        elif ld:
            f["ld"] = 1 if rng.random() < 0.6 else 2
            f["w_s"], f["w_d"] = _streams(rng, NS, 1, {f["x_s"]}), self.din
            if fill:
                sb = 1 if rng.random() < 0.7 else -1
                f["row"] = 0 if sb > 0 else VL - 1
            else:
                sb = int(rng.choice([0, 1, -1])) if n else 0
                f["row"] = _start(rng, 0, VL - 1, n, sb)
            rows = [f["row"] + k * sb for k in range(n + 1)]
            planes.append(f["w_s"])
            cov[f"MXM.MVM.{'lw' if f['ld'] == 1 else 'lwt'}"] += 1
        rep = (n, dr) if n else None
        txn.feed(self.name, t, self.din, planes, rep=rep)
        if emit:
            f["out_s"], f["out_d"] = int(rng.integers(0, NS - 3)), self.dout
        txn.issue(self.name, t, Instr("MVM", f), (n, dr, sa, sb) if n else None)
        if emit:
            txn.drain(self.name, t + self.L, self.dout,
                      list(range(f["out_s"], f["out_s"] + 4)), rep=rep)
        if not txn.ok:
            return None
        cov["MXM.MVM.accum"] += accum
        cov["MXM.MVM.emit"] += emit
        cov["MXM.MVM.no_emit"] += 1 - emit
        if accum and n and sa == 0:
            cov["MXM.MVM.back_to_back_accum"] += 1
        if fill:
            cov["MXM.stream_fill"] += 1
        txn.cov.update(cov)
        times = [t + k * dr for k in range(n + 1)]
        sh, done = (self._loaded(f["ld"], rows, times, extra) if ld
                    else (self.defined[1 - self.act].copy(), self.load_done))
        self.pending = ("mvm", sh, done, slots, accum, t, times[-1])
        return times[-1]


# ------------------------------------------------------------------------------- SXM
_SXM_OPS = ("SHS", "ROTS", "SHV", "ROTV", "DIST", "PMAP", "PERM", "RMAX", "RMIN", "RSUM")
_SXM_TRANSPOSE = ("TPUT", "TGET")  # configs with sxm_transpose_rows > 0


class _Sxm(_Actor):
    kind = "SXM"

    def __init__(self, tab, name, n_steps=20):
        super().__init__(tab, name, n_steps)
        west = self.p < tab.P // 2
        self.din = W if west else E  # operands come from the MEM slices towards the centre
        self.dout = E if west else W
        self.VL = self.cfg.vector_length
        self.pmaps: list[tuple[int, int]] = []  # (issue cycle, map)
        #: the transposer (if any): (issue cycle, row) of every TPUT
        self.R = self.cfg.sxm_transpose_rows
        self.ops = _SXM_OPS + (_SXM_TRANSPOSE if self.R else ())
        self.tputs: list[tuple[int, int]] = []

    def maps_at(self, t) -> set[int]:
        """Maps loaded by a PMAP that a PERM issued in cycle t sees."""
        return {m for tp, m in self.pmaps if tp + 2 <= t}

    def rows_at(self, t) -> int:
        """Transposer rows 0..P-1 all written by TPUTs that a TGET issued in cycle t sees:
        P (a TGET reads only rows this program wrote, never power-up or earlier state)."""
        seen = {r for tp, r in self.tputs if tp + 2 <= t}
        p = 0
        while p in seen:
            p += 1
        return p

    def choose(self):
        # the types are fixed for all attempts of a step: wide ones need more free MEM
        # slices and would otherwise be under-represented
        rng = self.rng
        if self.R and rng.random() < 0.3:  # the transposer (TGET falls back to TPUT)
            mn = "TGET" if rng.random() < 0.6 else "TPUT"
        else:
            mn = str(rng.choice(_SXM_OPS))
        return mn, str(rng.choice(TYPES)), str(rng.choice(TYPES))

    def chain_mode(self, chain):
        rng = self.rng
        # a producer (chain given) may TGET, a consumer TPUT (one int8 plane each)
        mn = str(rng.choice([m for m in self.ops if m != "PMAP"
                             and m != ("TPUT" if chain is not None else "TGET")]))
        ok = [x for x in TYPES if chain is None or TYPE_BYTES[x] in chain.widths]
        red = mn in ("RMAX", "RMIN", "RSUM")
        return (mn, str(rng.choice(TYPES if red else ok)), str(rng.choice(ok)))

    def on_commit(self) -> None:
        if self.pending is None:
            return
        if self.pending[0] == "tput":
            self.tputs += self.pending[1]
        else:
            self.pmaps.append(self.pending)

    def build(self, t, txn):
        rng = self.rng
        VL, NS = self.VL, self.tab.NS
        maps = self.maps_at(t)
        mn, typ, ot = self.mode
        pv = txn.provided if txn.provided and txn.provided[0] == self.name else None
        din = self.din
        if pv is not None:  # the input is a chained value
            din = pv[1]
            typ = str(rng.choice([x for x in TYPES if TYPE_BYTES[x] == pv[3]]))
            if (mn == "PERM" and not maps) or (mn == "TPUT" and pv[3] != 1):
                mn = "ROTV"
        if mn == "PERM" and not maps:
            mn = "PMAP"
        if mn == "TGET" and not self.rows_at(t):
            mn = "TPUT"
        n, dr = self.rep(0.2, nmax=4, dmax=3)
        rep = (n, dr) if n else None
        if mn == "TPUT":
            return self._tput(t, txn, n, dr, din, pv)
        if mn == "TGET":
            return self._tget(t, txn, n, dr)
        if mn == "PMAP":
            m = int(rng.integers(0, SXM_MAPS))
            s = _streams(rng, NS, 2, set())
            style = str(rng.choice(["perm", "random", "reverse", "rotate"]))
            if style == "perm":
                entries = rng.permutation(VL)
            elif style == "random":
                entries = rng.integers(0, VL, VL)
            elif style == "reverse":
                entries = np.arange(VL)[::-1]
            else:
                entries = (np.arange(VL) + int(rng.integers(1, VL))) % VL
            entries = entries.astype(np.uint16)
            txn.feed(self.name, t, self.din, [s, s + 1],
                     data=lambda i, k: (entries >> (8 * i)).astype(np.uint8))
            txn.issue(self.name, t, Instr("PMAP", {"in_s": s, "in_d": self.din, "map": m}))
            txn.cov[f"SXM.PMAP.{style}"] += 1
            if any(tp == t - 1 for tp, _m in self.pmaps):
                txn.cov["SXM.PMAP.back_to_back"] += 1
            self.pending = (t, m)
            return t if txn.ok else None
        w = TYPE_BYTES[typ]
        f = {"type": TYPES.index(typ)}
        sa = 0
        if mn in ("RMAX", "RMIN", "RSUM"):
            f["otype"] = TYPES.index(ot)
            ow = TYPE_BYTES[ot]
            txn.cov[f"SXM.{mn}.{typ}:{ot}"] += 1
        else:
            ow = w
            if mn == "PERM":
                sa = int(rng.choice([0, 1, -1])) if n else 0
                m = int(rng.choice(sorted(maps)))
                if not all(m + k * sa in maps for k in range(n + 1)):
                    sa = 0
                f["map"] = m
                if any(tp == t - 2 for tp, _m in self.pmaps):
                    txn.cov["SXM.PERM_2_after_PMAP"] += 1
                if any(tp == t - 1 for tp, _m in self.pmaps):
                    txn.cov["SXM.PERM_1_after_PMAP(old map)"] += 1
            else:
                hi = 15 if mn in ("SHS", "ROTS") else VL - 1
                lo = 0 if mn == "DIST" else -hi
                sa = int(rng.integers(-3, 4)) if n else 0
                nval = _start(rng, lo, hi, n, sa)
                if nval is None:
                    sa, nval = 0, int(rng.integers(lo, hi + 1))
                if rng.random() < 0.15 and not sa:
                    nval = int(rng.choice([lo, hi, 0]))
                f["n"] = nval
            txn.cov[f"SXM.{mn}.{typ}"] += 1
        s_in = pv[2] if pv is not None else _streams(rng, NS, w, set())
        s_out = _streams(rng, NS, ow, set())
        f.update(in_s=s_in, in_d=din, out_s=s_out, out_d=self.dout)
        txn.feed(self.name, t, din, list(range(s_in, s_in + w)), rep=rep)
        txn.issue(self.name, t, Instr(mn, f), (n, dr, sa, 0) if n else None)
        txn.drain(self.name, t + latency(mn, self.cfg), self.dout,
                  list(range(s_out, s_out + ow)), rep=rep)
        return t + n * dr if txn.ok else None

    def _tput(self, t, txn, n, dr, din, pv):
        """TPUT (REPEATed with a row stride); often a run of the lowest rows not written
        yet (up to all of them, stride 1), so that TGETs soon have rows to read."""
        rng, R = self.rng, self.R
        written = {r for _tp, r in self.tputs}
        low = min(set(range(R)) - written, default=None)
        if low is not None and (low == 0 or rng.random() < 0.5):
            if self.no_rep:
                n, sa = 0, 0
            else:
                left = R - low
                n = left - 1 if rng.random() < 0.2 else int(rng.integers(0, min(left, 8)))
                sa, dr = 1, int(rng.choice([1, 1, 1, 2]))
            row = low
        elif self.rows_at(t) and rng.random() < 0.4:  # a row TGETs read, written again
            n, sa, row = 0, 0, int(rng.integers(0, self.rows_at(t)))
        else:  # often rewriting rows (TGETs of them 1 cycle later see the old ones)
            sa = int(rng.choice([1, 1, -1, 2])) if n else 0
            hi = max(written) if written and rng.random() < 0.6 else R - 1
            row = _start(rng, 0, hi, n, sa)
            if row is None:
                sa, row = 0, int(rng.integers(0, R))
            if rng.random() < 0.1 and not sa:
                row = R - 1
        s_in = pv[2] if pv is not None else _streams(rng, self.tab.NS, 1, set())
        rep = (n, dr) if n else None
        txn.feed(self.name, t, din, [s_in], rep=rep)
        txn.issue(self.name, t, Instr("TPUT", {"row": row, "in_s": s_in, "in_d": din}),
                  (n, dr, sa, 0) if n else None)
        rows = [row + k * sa for k in range(n + 1)]
        cov = txn.cov
        if R - 1 in rows:
            cov["SXM.TPUT.row=max"] += 1
        if any(r in written for r in rows):
            cov["SXM.TPUT.rewrite"] += 1
        if pv is not None:
            cov["SXM.TPUT.chained"] += 1
        if any(tp == t - 1 for tp, _r in self.tputs):
            cov["SXM.TPUT.back_to_back"] += 1
        self.pending = ("tput", [(t + k * dr, r) for k, r in enumerate(rows)])
        end = t + n * dr
        if not n and row < self.rows_at(t) and rng.random() < 0.6:
            # a row written before, written again: a TGET of it 1 cycle later (the old
            # row) or 2 (the new one)
            end = t + int(rng.choice([1, 2]))
            self._tget(end, txn, 0, 1, after=(t, row))
        return end if txn.ok else None

    def _tget(self, t, txn, n, dr, after=None):
        """TGET (REPEATed with a col stride) of rows 0..rows-1, all written by this
        program's TPUTs before (2 cycles or more) the first repetition; ``after`` =
        (issue cycle, row) of a TPUT of this step that the TGET reads (row < rows)."""
        rng, VL, R = self.rng, self.VL, self.R
        p = self.rows_at(t)
        lo = after[1] + 1 if after else 1
        sa = int(rng.integers(-3, 4)) if n else 0
        col = _start(rng, 0, VL - 1, n, sa)
        if col is None:
            sa, col = 0, int(rng.integers(0, VL))
        if rng.random() < 0.15 and not sa:
            col = int(rng.choice([0, VL - 1]))
        x = rng.random()
        rows = p if x < 0.4 else (lo if x < 0.5 else int(rng.integers(lo, p + 1)))
        s_out = _streams(rng, self.tab.NS, 1, set())
        txn.issue(self.name, t, Instr("TGET", {"col": col, "rows": rows, "out_s": s_out,
                                               "out_d": self.dout}),
                  (n, dr, sa, 0) if n else None)
        txn.drain(self.name, t + latency("TGET", self.cfg), self.dout, [s_out],
                  rep=(n, dr) if n else None)
        cov = txn.cov
        if txn.chain is not None and txn.produced is not None:
            cov["SXM.TGET.chained"] += 1
        cov[f"SXM.TGET.rows={'R' if rows == R else 'min' if rows == 1 else 'mid'}"] += 1
        if VL - 1 in (col, col + n * sa):
            cov["SXM.TGET.col=max"] += 1
        tputs = self.tputs + ([after] if after else [])
        if any(tp == t - 2 and r < rows for tp, r in tputs):
            cov["SXM.TGET_2_after_TPUT"] += 1
        if any(tp == t - 1 and r < rows for tp, r in tputs):
            cov["SXM.TGET_1_after_TPUT(old row)"] += 1
        return t + n * dr if txn.ok else None


# ------------------------------------------------------------------------------- MEM
_STRADDLE = 2 * IDX_RANGE  # addresses kept on each side of the bank boundary (kind "all")
_SIZES = tuple(r for r in (2, 4, 8, 16) if r <= IDX_RANGE)  # GATHER tables, SCATTER windows


def _index_vector(rng, vl: int, r: int) -> np.ndarray:
    """Index values below r (a power of two, so that flipping bit 0 keeps them below r:
    the RTL tests' operand corruption stays legal)."""
    x = rng.random()
    if x < 0.6:
        v = rng.integers(0, r, vl)
    elif x < 0.7:
        v = np.zeros(vl, np.int64)
    elif x < 0.8:
        v = np.full(vl, r - 1)
    elif x < 0.9:
        v = np.arange(vl) % r
    else:
        v = np.full(vl, int(rng.integers(0, r)))
    return v.astype(np.uint8)


def _sign(x: int) -> str:
    return "0" if x == 0 else ("+" if x > 0 else "-")


class _Mem(_Actor):
    """MEM-slice work of its own (kind ``all``): transfers between MEM slices and with the
    compute slices, in the same reservation tables as the compute actors' feeders and
    drains.  A step is one of :attr:`MODES`, built from four primitives (READ, WRITE,
    GATHER, SCATTER at a given slice and cycle) and two routers (``_src``: a value at a
    position in a cycle, from a READ or a GATHER upstream; ``_sink``: a value written by a
    position taken by a WRITE, GATHER (index), SCATTER downstream or dropped).  A step
    anchors at the actor's cursor ``t`` (which moves on by a few cycles per step, so the
    steps of one actor overlap); chains with a compute slice use that slice's cursor.

    Every address read is initialised by the host (fresh vectors, index vectors, GATHER
    tables, canaries under every WRITE/SCATTER target) or one of those read again, so
    nothing depends on SRAM contents outside ``init``; index vectors (host ones, copies
    of them after their WRITE, GATHERs of index tables, VXM ``AND(x, R - 1)``) stay
    below the size of the table or window they index."""

    kind = "MEM"
    MODES = ("copy", "gather", "scatter", "raw", "switch", "to_compute", "from_compute")
    WEIGHTS = (4.0, 4.0, 3.0, 2.0, 1.5, 2.0, 2.0)

    def __init__(self, tab: _Tables, n_steps: int, partners: list[_Actor]):
        self.tab, self.rng, self.cfg = tab, tab.rng, tab.cfg
        self.name, self.p = "MEM", -1
        self.n_steps, self.done_steps, self.failures = n_steps, 0, 0
        self.mode, self.no_rep, self.pending, self.attempt = "", False, None, 0
        self.partners = partners  # compute actors (chains)
        self.post: list = []
        rng = self.rng
        self.t_min = 0 if rng.random() < 0.2 else 2  # else a start barrier stays possible
        self.t = self.t_min + int(rng.integers(0, tab.P))
        depth = tab.depth
        for m in tab.mems:  # before any allocation
            if m not in tab.straddle:
                tab.straddle[m] = (depth - _STRADDLE, depth + _STRADDLE)
                tab.limit[(m, 0)] = depth - _STRADDLE
                tab.next_addr[(m, 1)] = max(tab.next_addr[(m, 1)], depth + _STRADDLE)

    # -- step ---------------------------------------------------------------------------
    def gap(self) -> int:
        """Cycles from the cursor to a step's anchor; rarely (first attempts) a long one
        -- MEM queues get NOP gaps of all lengths from the other actors' work anyway."""
        if self.rng.random() < 0.004 and not self.attempt:
            return int(self.rng.integers(30, 150))
        return int(self.rng.choice([0, 0, 1, 1, 2, 3, 5, 8]))

    def live_partners(self) -> list[_Actor]:
        """Compute actors that can take part in a chain now (MXMs: with weights; also
        those whose own steps are done -- a VXM register written by a chain step is
        drained by the VXM's next steps)."""
        return [a for a in self.partners if a.failures <= 80
                and not (isinstance(a, _Mxm) and not a.full(a.act))]

    def partner(self) -> _Actor:
        """A live partner, each slice kind equally likely."""
        live = self.live_partners()
        kinds = sorted({a.kind for a in live})
        k = kinds[int(self.rng.integers(len(kinds)))]
        live = [a for a in live if a.kind == k]
        return live[int(self.rng.integers(len(live)))]

    def choose(self) -> str:
        w = np.array(self.WEIGHTS)
        if not self.tab.wrote:
            w[self.MODES.index("raw")] = 0
        if not self.live_partners():
            w[self.MODES.index("to_compute")] = w[self.MODES.index("from_compute")] = 0
        return str(self.rng.choice(self.MODES, p=w / w.sum()))

    def step(self) -> bool:
        rng = self.rng
        self.mode = self.choose()
        build = getattr(self, f"_m_{self.mode}")
        for attempt in range(10):
            self.attempt = attempt
            for a in self.partners:
                a.attempt = attempt
            t = self.t + self.gap()
            txn = _Txn(self.tab)
            self.post = []
            try:
                built = build(t, txn)
            finally:
                for a in self.partners:
                    a.no_rep = False
            if built is not None and txn.ok:
                txn.cov[f"MEM.step.{self.mode}"] += 1
                txn.commit()
                for f in self.post:
                    f()
                self.t = t + int(rng.integers(2, 10))
                self.done_steps += 1
                return True
        self.failures += 1
        self.t += 1 + int(rng.integers(0, 3))
        return False

    # -- helpers ------------------------------------------------------------------------
    def _dirs_down(self, p: int) -> list[int]:
        return [d for d in (E, W) if self.tab.downstream(p, d)]

    def _dirs_up(self, q: int) -> list[int]:
        return [d for d in (E, W) if self.tab.upstream(q, d)]

    def _stream(self, avoid=()) -> int:
        return int(self.rng.choice([s for s in range(self.tab.NS) if s not in avoid]))

    def _wrote(self, txn: _Txn, m: str, a: int) -> tuple[int, str] | None:
        last = None
        for mm, aa, c, who in txn.wrote:
            if (mm, aa) == (m, a) and (last is None or c > last[0]):
                last = (c, who)
        return last or self.tab.wrote.get((m, a))

    def _rep_cov(self, txn: _Txn, mn: str, n: int, stride: int) -> None:
        txn.cov[f"MEM.{mn}"] += n + 1
        if n:
            txn.cov[f"MEM.REPEAT.{mn}"] += 1
            txn.cov[f"MEM.REPEAT.{mn}.stride{_sign(stride)}"] += 1

    def _banks(self, lo: int, size: int) -> list[int]:
        return sorted({lo // self.tab.depth, (lo + size - 1) // self.tab.depth})

    # -- primitives ---------------------------------------------------------------------
    def _read_at(self, txn: _Txn, m: str, t: int, d: int, s: int, n: int, dr: int,
                 idx: int | None = None, bank: int | None = None, addr: int | None = None):
        """READ at m in cycle t (REPEAT n, dr) onto (d, s): fresh vectors, vectors already
        in SRAM (``again``), an address written earlier (``raw``; ``addr``: that one);
        ``idx``: index vectors with values below idx.  The caller reserves the path."""
        tab, rng, depth = self.tab, self.rng, self.tab.depth
        if not txn.ok or t < self.t_min:
            return txn.fail()
        if addr is not None:
            how, stride = "raw", 0
            addrs = [addr] * (n + 1)
        else:
            if idx is None:
                pool = [a for a in tab.init[m] if bank is None or a // depth == bank]
                raw = [a for a in pool if tab.wrote.get((m, a), (t,))[0] < t]
                hows = ["fresh"] * 4 + ["again"] * bool(pool) + ["raw"] * 2 * bool(raw)
            else:
                pool = sorted({a for a, r, tv in tab.idxvec[m]
                               if r <= idx and tv <= t and (bank is None or a // depth == bank)})
                hows = ["fresh"] * 2 + ["again"] * 2 * bool(pool)
            how = str(rng.choice(hows))
            if how == "fresh":
                b = int(rng.integers(2)) if bank is None else bank
                stride = int(rng.choice([1, 1, -1, 2, 0])) if n else 0
                addrs = txn.alloc(m, b, n + 1, stride)
                if addrs is None:
                    return None
                r = None if idx is None else int(rng.choice([x for x in (1, *_SIZES)
                                                             if x <= idx]))
                for a in dict.fromkeys(addrs):
                    v = tab.bytes() if r is None else _index_vector(rng, tab.VL, r)
                    txn.init.append((m, a, v))
                    txn.inputs.append((m, a))
                    if r is not None:
                        txn.idxvec.append((m, a, r, -1))
            else:
                a0 = int(rng.choice(raw if how == "raw" else pool))
                stride = 0
                if n and how == "again" and rng.random() < 0.5:
                    st = int(rng.choice([1, -1]))
                    if all(a0 + k * st in pool for k in range(n + 1)):
                        stride = st
                addrs = [a0 + k * stride for k in range(n + 1)]
        if how == "raw":
            wc, who = self._wrote(txn, m, addrs[0])
            assert wc < t, (m, addrs[0], wc, t)
            txn.cov["MEM.RAW"] += 1
            txn.cov[f"MEM.RAW.of_{who}"] += 1
            if t == wc + 1:
                txn.cov["MEM.RAW.earliest"] += 1
        if idx is not None:
            txn.cov[f"MEM.READ.index.{how}"] += 1
            if how == "again" and any(a == addrs[0] and tv >= 0 for a, _r, tv in tab.idxvec[m]):
                txn.cov["MEM.READ.index.copied"] += 1
        else:
            txn.cov[f"MEM.READ.{how}"] += 1
        for k, a in enumerate(addrs):
            txn.sram(m, t + k * dr, a // depth, False)
            txn.cov[f"MEM.READ.bank{a // depth}"] += 1
        txn.issue(m, t, Instr("READ", {"addr": addrs[0], "out_s": s, "out_d": d}),
                  (n, dr, stride, 0) if n else None)
        self._rep_cov(txn, "READ", n, stride)
        return how if txn.ok else None

    def _write_at(self, txn: _Txn, m: str, t: int, d: int, s: int, n: int, dr: int,
                  idx: int | None = None, bank: int | None = None) -> list[int] | None:
        """WRITE at m in cycle t (REPEAT n, dr) of the value on (d, s) to fresh addresses
        (a canary vector under each); returns the addresses."""
        tab, rng = self.tab, self.rng
        if not txn.ok or t < self.t_min:
            return txn.fail()
        b = int(rng.integers(2)) if bank is None else bank
        stride = int(rng.choice([1, 1, -1, 2, -3, 0])) if n else 0
        addrs = txn.alloc(m, b, n + 1, stride)
        if addrs is None:
            return None
        for a in dict.fromkeys(addrs):
            txn.init.append((m, a, tab.bytes(edgy=False)))
        for k, a in enumerate(addrs):
            c = t + 1 + k * dr
            txn.sram(m, c, b, True)
            txn.wrote.append((m, a, c, "WRITE"))
            if idx is not None:
                txn.idxvec.append((m, a, idx, c + 1))
        txn.issue(m, t, Instr("WRITE", {"addr": addrs[0], "in_s": s, "in_d": d}),
                  (n, dr, stride, 0) if n else None)
        txn.cov[f"MEM.WRITE.bank{b}"] += 1
        if idx is not None:
            txn.cov["MEM.WRITE.index"] += 1
        self._rep_cov(txn, "WRITE", n, stride)
        return addrs if txn.ok else None

    def _window(self, txn: _Txn, m: str, size: int, n: int, sa: int, table: bool,
                r: int | None = None, bank: int | None = None):
        """Base address of a GATHER table (``table``) or SCATTER window of ``size``
        entries at m, moved by sa in each of n repetitions: fresh (host-initialised table
        entries -- data, or index vectors below r -- or canaries under a window), an
        existing one (tables are never written, windows may be written again), or
        crossing the bank boundary (data only).  Returns (base, where)."""
        tab, rng, depth = self.tab, self.rng, self.tab.depth
        span = n * abs(sa) + size
        opts = ["fresh"] * 3
        if r is None and bank is None and span <= 2 * _STRADDLE:
            opts += ["straddle"] * 2
        if table:
            old = [(b0, sz) for b0, sz, rr in tab.tables[m]
                   if sz >= span and rr == r and (bank is None or b0 // depth == bank)]
        else:
            old = [(b0, sz) for b0, sz in tab.swins[m]
                   if sz >= span and (bank is None or b0 // depth == bank)]
        opts += ["existing"] * 2 * bool(old)
        where = str(rng.choice(opts))
        if where == "fresh":
            b = int(rng.integers(2)) if bank is None else bank
            got = txn.alloc(m, b, span, 1)
            if got is None:
                return None
            lo = got[0]
            for a in got:
                if not table:
                    txn.init.append((m, a, tab.bytes(edgy=False)))  # canaries
                else:
                    txn.init.append((m, a, tab.bytes() if r is None
                                     else _index_vector(rng, tab.VL, r)))
                    txn.inputs.append((m, a))
            if table:
                txn.tables.append((m, lo, span, r))
            else:
                txn.swins.append((m, lo, span))
        elif where == "straddle":
            r_lo, r_hi = tab.straddle[m]
            x_lo, x_hi = max(r_lo, depth - span + 1), min(r_hi - span, depth - 1)
            lo = int(rng.integers(x_lo, x_hi + 1))
            if r_lo not in tab.init[m] and not any(
                    (mm, a) == (m, r_lo) for mm, a, _v in txn.init):
                for a in range(r_lo, r_hi):
                    txn.init.append((m, a, tab.bytes()))
                    txn.inputs.append((m, a))
        else:
            b0, sz = old[int(rng.integers(len(old)))]
            lo = b0 + int(rng.integers(0, sz - span + 1))
        return (lo if sa >= 0 else lo + n * abs(sa)), where

    def _gather_at(self, txn: _Txn, g: str, t: int, n: int, dr: int, out_d: int,
                   out_s: int, out_idx: int | None = None, given=None,
                   bank: int | None = None, depth: int = 0):
        """GATHER at g in cycle t (REPEAT n, dr, table stride) onto (out_d, out_s); its
        index is ``given`` = (d, s, values below) on a stream at g (reserved by the
        caller) or comes from ``_src``; ``out_idx``: a table of index vectors."""
        tab, rng = self.tab, self.rng
        if not txn.ok or t < self.t_min:
            return txn.fail()
        q = tab.pos[g]
        size = int(rng.choice([x for x in _SIZES if given is None or x >= given[2]]))
        sa = int(rng.choice([0, 0, 1, -1, 2, size])) if n else 0
        got = self._window(txn, g, size, n, sa, True, out_idx, bank)
        if got is None:
            return txn.fail()
        base, where = got
        if given is not None:
            d_i, s_i = given[0], given[1]
            src = "given"
        else:
            dirs = self._dirs_up(q)
            if not dirs:
                return txn.fail()
            d_i = int(rng.choice(dirs))
            s_i = self._stream()
            src = self._src(txn, q, d_i, s_i, t, n, dr, idx=size, depth=depth)
            if src is None:
                return txn.fail()
        cross = False
        for k in range(n + 1):
            banks = self._banks(base + k * sa, size)
            cross |= len(banks) > 1
            for b in banks:
                txn.sram(g, t + k * dr, b, False)
                txn.cov[f"MEM.GATHER.bank{b}"] += 1
        txn.issue(g, t, Instr("GATHER", {"addr": base, "idx_s": s_i, "idx_d": d_i,
                                         "out_s": out_s, "out_d": out_d}),
                  (n, dr, sa, 0) if n else None)
        self._rep_cov(txn, "GATHER", n, sa)
        txn.cov[f"MEM.GATHER.table.{where}"] += 1
        txn.cov[f"MEM.GATHER.idx.{src}"] += 1
        txn.cov["MEM.GATHER.crosses_banks"] += cross
        txn.cov["MEM.GATHER.index_table"] += out_idx is not None
        if d_i != out_d:
            txn.cov["MEM.GATHER.turns"] += 1
        return src if txn.ok else None

    def _scatter_at(self, txn: _Txn, g: str, t: int, n: int, dr: int, data=None,
                    idx=None, bank: int | None = None, depth: int = 0):
        """SCATTER at g in cycle t (REPEAT n, dr, window stride); the data and index
        (``data`` = (d, s), ``idx`` = (d, s, values below) on streams at g, reserved by
        the caller) or from ``_src`` upstream (either direction each)."""
        tab, rng = self.tab, self.rng
        if not txn.ok or t < self.t_min:
            return txn.fail()
        q = tab.pos[g]
        size = int(rng.choice([x for x in _SIZES if idx is None or x >= idx[2]]))
        sa = int(rng.choice([0, 1, size, -size, 2])) if n else 0
        got = self._window(txn, g, size, n, sa, False, None, bank)
        if got is None:
            return txn.fail()
        base, where = got
        taken = {E: set(), W: set()}
        for op in (data, idx):
            if op is not None:
                taken[op[0]].add(op[1])
        labels = {}
        ops = {}
        for nm, op in (("idx", idx), ("data", data)):
            if op is not None:
                ops[nm] = op[:2]
                labels[nm] = "given"
                continue
            dirs = self._dirs_up(q)
            if not dirs:
                return txn.fail()
            dd = int(rng.choice(dirs))
            ss = self._stream(taken[dd])
            taken[dd].add(ss)
            labels[nm] = self._src(txn, q, dd, ss, t, n, dr,
                                   idx=size if nm == "idx" else None, depth=depth)
            if labels[nm] is None:
                return txn.fail()
            ops[nm] = (dd, ss)
        cross = False
        for k in range(n + 1):
            lo = base + k * sa
            banks = self._banks(lo, size)
            cross |= len(banks) > 1
            for b in banks:
                txn.sram(g, t + 1 + k * dr, b, True)
                txn.cov[f"MEM.SCATTER.bank{b}"] += 1
            for a in range(lo, lo + size):
                txn.wrote.append((g, a, t + 1 + k * dr, "SCATTER"))
        (d_i, s_i), (d_d, s_d) = ops["idx"], ops["data"]
        txn.issue(g, t, Instr("SCATTER", {"addr": base, "idx_s": s_i, "idx_d": d_i,
                                          "in_s": s_d, "in_d": d_d}),
                  (n, dr, sa, 0) if n else None)
        self._rep_cov(txn, "SCATTER", n, sa)
        txn.cov[f"MEM.SCATTER.window.{where}"] += 1
        txn.cov[f"MEM.SCATTER.idx.{labels['idx']}"] += 1
        txn.cov[f"MEM.SCATTER.data.{labels['data']}"] += 1
        txn.cov["MEM.SCATTER.crosses_banks"] += cross
        if d_i != d_d:
            txn.cov["MEM.SCATTER.idx_data_opposite_directions"] += 1
        return True if txn.ok else None

    # -- routers ------------------------------------------------------------------------
    def _src(self, txn: _Txn, q: int, d: int, s: int, t: int, n: int, dr: int,
             idx: int | None = None, depth: int = 0):
        """A value on (d, s) at position q in cycle t + k*dr (k = 0..n): a READ or (at
        depth 0) a GATHER at a MEM slice upstream, any distance."""
        tab, rng = self.tab, self.rng
        ups = tab.upstream(q, d)
        if not txn.ok or not ups:
            return txn.fail()
        m = str(rng.choice(ups))
        dist = abs(q - tab.pos[m])
        t_m = t - 1 - dist
        if depth == 0 and rng.random() < 0.3:
            lab = self._gather_at(txn, m, t_m, n, dr, d, s, out_idx=idx, depth=depth + 1)
            lab = lab and "gather"
        else:
            lab = self._read_at(txn, m, t_m, d, s, n, dr, idx)
            lab = lab and "read"
        for k in range(n + 1):
            txn.path(tab.pos[m], q, d, s, t_m + 1 + k * dr, tab.new_vid())
        txn.cov[f"MEM.transfer.{'EW'[d]}"] += 1
        txn.cov[f"MEM.transfer.distance_{min(dist, 5)}{'+' if dist >= 5 else ''}"] += 1
        return lab if txn.ok else None

    def _sink(self, txn: _Txn, p: int, d: int, s: int, t_w: int, n: int, dr: int,
              idx: int | None = None, depth: int = 0):
        """The value written by position p onto (d, s) in cycle t_w + k*dr: a WRITE, (at
        depth 0) a GATHER taking it as index (index values) or a SCATTER taking it as
        data or index, at a MEM slice downstream; or nobody (its first register)."""
        tab, rng = self.tab, self.rng
        if not txn.ok:
            return None
        downs = tab.downstream(p, d)
        opts = ["write"] * 6 + ["drop"]
        if depth == 0:
            opts += ["scatter"] * 2 + ["gather"] * 3 * (idx is not None)
        how = str(rng.choice(opts)) if downs else "drop"
        if how == "drop":
            for k in range(n + 1):
                txn.stub(p, d, s, t_w + k * dr, tab.new_vid())
            txn.cov["MEM.dropped"] += 1
            return how
        m = str(rng.choice(downs))
        t_c = t_w + abs(tab.pos[m] - p)
        for k in range(n + 1):
            txn.path(p, tab.pos[m], d, s, t_w + k * dr, tab.new_vid())
        if how == "write":
            ok = self._write_at(txn, m, t_c, d, s, n, dr, idx)
        elif how == "gather":
            dirs = self._dirs_down(tab.pos[m])
            out_d = int(rng.choice(dirs)) if dirs else d
            out_s = self._stream()
            ok = self._gather_at(txn, m, t_c, n, dr, out_d, out_s, given=(d, s, idx),
                                 depth=depth + 1)
            ok = ok and self._sink(txn, tab.pos[m], out_d, out_s, t_c + 1, n, dr,
                                   depth=depth + 1)
        else:
            as_idx = idx is not None and rng.random() < 0.5
            ok = self._scatter_at(txn, m, t_c, n, dr, data=None if as_idx else (d, s),
                                  idx=(d, s, idx) if as_idx else None, depth=depth + 1)
        return how if ok and txn.ok else txn.fail()

    # -- modes --------------------------------------------------------------------------
    def _core_time(self, t: int) -> int:
        return t + 1 + int(self.rng.integers(0, self.tab.P))

    def _m_copy(self, t, txn):
        """READ -> WRITE at another MEM slice (any distance, either direction), REPEATed
        with strides; sometimes the last written address is READ again at the earliest
        legal cycle (write cycle + 1) and sent on."""
        tab, rng = self.tab, self.rng
        m = str(rng.choice(tab.mems))
        d = int(rng.choice(self._dirs_down(tab.pos[m])))
        s = self._stream()
        n, dr = self.rep(0.4, nmax=5, dmax=3)
        idx = int(rng.choice(_SIZES)) if rng.random() < 0.2 else None
        if self._read_at(txn, m, t, d, s, n, dr, idx) is None:
            return None
        m2 = str(rng.choice(tab.downstream(tab.pos[m], d)))
        t_c = t + 1 + abs(tab.pos[m2] - tab.pos[m])
        for k in range(n + 1):
            txn.path(tab.pos[m], tab.pos[m2], d, s, t + 1 + k * dr, tab.new_vid())
        txn.cov[f"MEM.transfer.{'EW'[d]}"] += 1
        addrs = self._write_at(txn, m2, t_c, d, s, n, dr, idx)
        if addrs is None:
            return None
        if rng.random() < 0.4:  # read-after-write at the earliest legal cycle
            t_r = t_c + n * dr + 2
            dirs = self._dirs_down(tab.pos[m2])
            d2 = int(rng.choice(dirs))
            s2 = self._stream()
            if self._read_at(txn, m2, t_r, d2, s2, 0, 1, addr=addrs[-1]) is None:
                return None
            return self._sink(txn, tab.pos[m2], d2, s2, t_r + 1, 0, 1, idx=idx, depth=1)
        return True

    def _m_gather(self, t, txn):
        """GATHER (index from a READ or a GATHER, table fresh / shared / across the bank
        boundary, REPEAT with table strides) -> WRITE / GATHER / SCATTER / dropped."""
        tab, rng = self.tab, self.rng
        g = str(rng.choice(tab.mems))
        t_g = self._core_time(t)
        n, dr = self.rep(0.35, nmax=4, dmax=3)
        out_idx = int(rng.choice(_SIZES)) if rng.random() < 0.3 else None
        dirs = self._dirs_down(tab.pos[g])
        out_d = int(rng.choice(dirs))
        out_s = self._stream()
        if self._gather_at(txn, g, t_g, n, dr, out_d, out_s, out_idx=out_idx) is None:
            return None
        return self._sink(txn, tab.pos[g], out_d, out_s, t_g + 1, n, dr, idx=out_idx)

    def _m_scatter(self, t, txn):
        """SCATTER (index and data from READs / GATHERs, either direction each, window
        fresh / written before / across the bank boundary, REPEAT with window strides)."""
        g = str(self.rng.choice(self.tab.mems))
        n, dr = self.rep(0.35, nmax=4, dmax=3)
        return self._scatter_at(txn, g, self._core_time(t), n, dr)

    def _m_raw(self, t, txn):
        """READ of an address written earlier in the program (by a drain of a compute
        result, a WRITE or a SCATTER), at write cycle + 1 or later, sent on."""
        tab, rng = self.tab, self.rng
        keys = [k for k, (wc, _w) in tab.wrote.items() if wc + 1 >= self.t_min]
        if not keys:
            return None
        m, a = keys[int(rng.integers(len(keys)))]
        wc, _who = tab.wrote[(m, a)]
        t_r = wc + 1 if rng.random() < 0.5 else max(wc + 1, t + int(rng.integers(0, 8)))
        d = int(rng.choice(self._dirs_down(tab.pos[m])))
        s = self._stream()
        n, dr = self.rep(0.25, nmax=3, dmax=2)
        if self._read_at(txn, m, t_r, d, s, n, dr, addr=a) is None:
            return None
        return self._sink(txn, tab.pos[m], d, s, t_r + 1, n, dr)

    def _m_switch(self, t, txn):
        """Back-to-back bank switch on one slice: a WRITE or SCATTER issued in cycle c
        writes bank b in c + 1 while a READ or GATHER issued in c + 1 reads bank 1 - b."""
        tab, rng = self.tab, self.rng
        m = str(rng.choice(tab.mems))
        q = tab.pos[m]
        c = self._core_time(t)
        b = int(rng.integers(2))
        if rng.random() < 0.6:
            d = int(rng.choice(self._dirs_up(q)))
            s = self._stream()
            if self._src(txn, q, d, s, c, 0, 1, depth=1) is None:
                return None
            if self._write_at(txn, m, c, d, s, 0, 1, bank=b) is None:
                return None
        elif self._scatter_at(txn, m, c, 0, 1, bank=b, depth=1) is None:
            return None
        d2 = int(rng.choice(self._dirs_down(q)))
        s2 = self._stream()
        if rng.random() < 0.6:
            ok = self._read_at(txn, m, c + 1, d2, s2, 0, 1, bank=1 - b)
        else:
            ok = self._gather_at(txn, m, c + 1, 0, 1, d2, s2, bank=1 - b, depth=1)
        if ok is None:
            return None
        txn.cov["MEM.bank_switch.step"] += 1
        return self._sink(txn, q, d2, s2, c + 2, 0, 1, depth=1)

    def _m_to_compute(self, t, txn):
        """A READ (often of a vector already in SRAM or a result written earlier) or a
        GATHER at a MEM slice is an operand of a compute slice (one instruction)."""
        tab, rng = self.tab, self.rng
        c = self.partner()
        mode = c.chain_mode(None)
        if mode == "none":
            return None
        ms = [m for m in tab.mems if not isinstance(c, _Mxm)
              or (E if c.p > tab.pos[m] else W) == c.din]
        m = str(rng.choice(ms))
        d = E if c.p > tab.pos[m] else W
        dist = abs(c.p - tab.pos[m])
        t_c = max(c.t + c.gap(), self.t_min + 1 + dist)
        t_m = t_c - 1 - dist
        s = self._stream()
        if rng.random() < 0.5:
            lab = self._gather_at(txn, m, t_m, 0, 1, d, s)
            lab = lab and "GATHER"
        else:
            lab = self._read_at(txn, m, t_m, d, s, 0, 1)
            lab = lab and f"READ.{lab}"
        if lab is None:
            return None
        txn.path(tab.pos[m], c.p, d, s, t_m + 1, tab.new_vid())
        txn.provided = (c.name, d, s, 1, t_c)
        c.mode, c.pending, c.no_rep = mode, None, True
        end = c.build(t_c, txn)
        if end is None or not txn.ok or not txn.provided_used:
            return None
        txn.cov[f"MEM.chain.{lab}->{c.kind}"] += 1
        self.post.append(lambda: self._advance(c, end))
        return True

    @staticmethod
    def _advance(a: _Actor, end: int) -> None:
        a.on_commit()
        a.t = end + 1
        a.done_steps += 1

    def _m_from_compute(self, t, txn):
        """A compute slice's result is taken by a MEM slice: one byte plane as SCATTER data
        (VXM, SXM, MXM), or a VXM ``AND(x, R - 1)`` / ``SHR.u8(x, 8 - log2 R)`` as the
        index of a GATHER or SCATTER."""
        tab, rng = self.tab, self.rng
        p = self.partner()
        if isinstance(p, _Vxm) and rng.random() < 0.5:
            return self._vxm_index(p, t, txn)
        d = p.dout if not isinstance(p, _Vxm) else int(rng.choice([E, W]))
        downs = tab.downstream(p.p, d)
        g = str(rng.choice(downs))
        txn.chain = _Chain(g, tab.pos[g], d, (1, 2, 4))
        p.mode = p.chain_mode(txn.chain)
        if p.mode == "none":
            return None
        p.pending, p.no_rep = None, True
        end = p.build(p.t + p.gap(), txn)
        txn.chain = None
        if end is None or not txn.ok or txn.produced is None:
            return None
        d, s0, w, t_g = txn.produced
        plane = s0 + int(rng.integers(w))
        if self._scatter_at(txn, g, t_g, 0, 1, data=(d, plane), depth=1) is None:
            return None
        txn.cov[f"MEM.chain.{p.kind}->SCATTER.data"] += 1
        self.post.append(lambda: self._advance(p, end))
        return True

    def _vxm_index(self, v: _Vxm, t, txn):
        tab, rng = self.tab, self.rng
        r = int(rng.choice(_SIZES))
        g = str(rng.choice(tab.mems))
        d = E if tab.pos[g] > v.p else W
        txn.chain = _Chain(g, tab.pos[g], d, (1,))
        streams = {}
        t_v = v.t + v.gap()
        regs = v.regs_at(t_v)
        x = rng.random()
        if x < 0.3:  # u8 stream >> (8 - log2 R)
            typ, op1, b, imm = "u8", "SHR", SEL_IMM, 8 - (r.bit_length() - 1)
            ds = int(rng.choice([dd for dd in (E, W) if v.cap_in[dd]]))
            s = _streams(rng, tab.NS, 1, set())
            streams[(ds, s)] = 1
            a = sel_stream(s, ds)
        else:  # anything & (R - 1)
            typ, op1, b, imm = str(rng.choice(TYPES)), "AND", SEL_IMM, r - 1
            srcs = ["lane", "stream", "stream"] + ["reg"] * bool(regs)
            k = str(rng.choice(srcs))
            if k == "lane":
                a = SEL_LANE
            elif k == "reg":
                a = SEL_REG + int(rng.choice(sorted(regs)))
            else:
                w = TYPE_BYTES[typ]
                dirs = [dd for dd in (E, W) if v.cap_in[dd] >= w]
                if not dirs:
                    return None
                ds = int(rng.choice(dirs))
                s = _streams(rng, tab.NS, w, set())
                streams[(ds, s)] = w
                a = sel_stream(s, ds)
        f = {"type": TYPES.index(typ), "otype": TYPES.index("u8"),
             "sat": int(rng.random() < 0.3), "op1": VXM_OP_BY_NAME[op1].code,
             "op2": VXM_OP_BY_NAME["PASS"].code, "a": a, "b": b, "c": SEL_NONE, "imm": imm,
             "d": sel_stream(_streams(rng, tab.NS, 1, set()), d)}
        v.pending = ([], set(), [])
        v.no_rep = True
        end = v._emit(t_v, txn, f, streams=streams,
                      cov=Counter({f"VXM.op1.{op1}": 1, "VXM.op2.PASS": 1,
                                   "VXM.dst.chained": 1}))
        txn.chain = None
        if end is None or not txn.ok or txn.produced is None:
            return None
        d, s0, _w, t_g = txn.produced
        if rng.random() < 0.6:
            dirs = self._dirs_down(tab.pos[g])
            out_d = int(rng.choice(dirs)) if dirs else d
            out_s = self._stream()
            ok = self._gather_at(txn, g, t_g, 0, 1, out_d, out_s, given=(d, s0, r), depth=1)
            ok = ok and self._sink(txn, tab.pos[g], out_d, out_s, t_g + 1, 0, 1, depth=1)
            what = "GATHER"
        else:
            ok = self._scatter_at(txn, g, t_g, 0, 1, idx=(d, s0, r), depth=1)
            what = "SCATTER"
        if not ok:
            return None
        txn.cov[f"MEM.chain.VXM->{what}.idx"] += 1
        self.post.append(lambda: self._advance(v, end))
        return True


# =============================================================================== program
def _build(cfg: TspConfig, tab: _Tables, seed: int, kind: str) -> ComputeProgram:
    rng = tab.rng
    queues: dict[str, list[Instr]] = {}
    listing: dict[str, list[str]] = {}
    n_instr = 0
    # a start barrier (every queue SYNCs in cycle 0 but one, which NOTIFYs: all go on
    # in cycle 2) when no queue needs cycles 0 and 1
    first = min((min(q) for q in tab.queue.values() if q), default=2)
    notifier = int(rng.integers(cfg.n_positions)) if first >= 2 and rng.random() < 0.25 \
        else None
    if notifier is not None:
        tab.cov["start_barrier"] += 1
    for sl in cfg.slices:
        items = sorted(tab.queue[sl.name].items())
        out: list[Instr] = []
        t_next = 0
        if notifier is not None:
            out.append(Instr("NOTIFY" if sl.index == notifier else "SYNC", {}))
            t_next = 2
        for t, (ins, rep) in items:
            assert t >= t_next, (sl.name, t, t_next)
            if t > t_next:
                out.append(Instr("NOP", {"n": t - t_next}))
            out.append(ins)
            if rep:
                n, d, sa, sb = rep
                out.append(Instr("REPEAT", {"n": n, "d": d, "stride_a": sa, "stride_b": sb}))
                t_next = t + n * d + 1
            else:
                t_next = t + 1
        if items and rng.random() < 0.3:
            out.append(Instr("NOP", {"n": int(rng.integers(1, 6))}))
        out.append(Instr("HALT", {}))
        queues[sl.name] = out
        listing[sl.name] = [format_instr(i) for i in out]
        n_instr += len(out)
    prog = Program.from_instrs(cfg, queues)
    init = {m: d for m, d in tab.init.items() if d}
    touched = {m: set(a) for m, a in tab.touched.items() if a}
    inputs = {m: set(a) for m, a in tab.inputs.items() if a}
    return ComputeProgram(seed, prog, init, touched, listing, n_instr, kind=kind,
                          config=cfg.name, coverage=Counter(tab.cov), inputs=inputs)


def random_compute_program(cfg: TspConfig, seed: int, kind: str = "VXM",
                           scale: float = 1.0) -> ComputeProgram:
    """A random program exercising the compute slices of ``kind`` (see the module doc).

    ``scale`` multiplies the number of steps per compute slice (a step is one or a few
    instructions of that slice with their MEM feeders and drains)."""
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; kinds are {', '.join(KINDS)}")
    rng = np.random.default_rng([seed, KINDS.index(kind), 0x75])
    tab = _Tables(cfg, rng)
    tab.long_gap_first_try_only = kind == "all"
    actors: list[_Actor] = []

    def steps(lo, hi):
        return max(2, int(round(int(rng.integers(lo, hi + 1)) * scale)))

    if kind in ("VXM", "mixed", "all"):  # every VXM group, or now and then one of them
        names = [s.name for s in cfg.slices_of("VXM")]
        if kind == "VXM" and len(names) > 1 and rng.random() < 0.3:
            names = [str(rng.choice(names))]
        for nm in names:
            actors.append(_Vxm(tab, nm, steps(22, 36) if kind == "VXM" else steps(10, 16)))
    if kind in ("MXM", "mixed", "all"):
        names = [s.name for s in cfg.slices_of("MXM")]
        if kind == "MXM" and rng.random() < 0.3:
            names = [str(rng.choice(names))]
        for nm in names:
            actors.append(_Mxm(tab, nm, steps(8, 14) if kind == "MXM" else steps(4, 7)))
    if kind in ("SXM", "mixed", "all"):
        names = [s.name for s in cfg.slices_of("SXM")]
        if kind == "SXM" and rng.random() < 0.3:
            names = [str(rng.choice(names))]
        for nm in names:
            actors.append(_Sxm(tab, nm, steps(12, 20) if kind == "SXM" else steps(5, 9)))
    pairs = _chain_pairs(actors) if kind in ("mixed", "all") else []
    if kind == "all":
        compute = list(actors)
        n_mem = steps(18, 30)
        k = 1 if rng.random() < 0.6 else 2
        for i in range(k):
            actors.append(_Mem(tab, max(2, n_mem // k + (i < n_mem % k)), compute))
    while True:
        live = [a for a in actors if not a.finished()]
        if not live:
            break
        if kind == "all" and any(a.done_steps < 1 for a in live if not isinstance(a, _Mem)):
            # the compute slices' first steps (weight fills) before the MEM actors' work
            live = [a for a in live if not isinstance(a, _Mem)]
        ok = [p for p in pairs if not p[0].finished() and not p[1].finished()]
        if ok and rng.random() < 0.3:
            prod, cons, chain = ok[int(rng.integers(len(ok)))]
            _chain_step(tab, prod, cons, chain)
            continue
        live[int(rng.integers(len(live)))].step()
    if kind == "all":  # SRAM writes and reads of the other bank in one cycle, one slice
        tab.cov["MEM.bank_switch"] += sum((m, c, 1 - b) in tab.rd for m, c, b in tab.wr)
    rp = _build(cfg, tab, seed, kind)
    rp.scale = scale
    return rp


def _chain_pairs(actors: list[_Actor]) -> list[tuple[_Actor, _Actor, _Chain]]:
    """(producer, consumer, chain) of compute slices where one's result can be the
    other's operand: the consumer lies downstream in a direction the producer writes and
    the consumer reads."""
    out = []
    for a in actors:
        for b in actors:
            if a is b:
                continue
            d = E if b.p > a.p else W
            if isinstance(a, (_Mxm, _Sxm)) and d != a.dout:
                continue
            if isinstance(b, _Mxm):
                if d != b.din or isinstance(a, _Mxm):
                    continue
                widths = (1,)
            else:
                widths = (1, 2, 4)
            out.append((a, b, _Chain(b.name, b.p, d, widths)))
    return out


_LMIN = {"VXM": "VXM", "MXM": "MVM", "SXM": "PMAP"}


def _chain_step(tab: _Tables, prod: _Actor, cons: _Actor, chain: _Chain) -> bool:
    """One step of ``prod`` whose result is an operand of one step of ``cons``."""
    dist = abs(cons.p - prod.p)
    lmin = latency(_LMIN[prod.kind], tab.cfg)
    prod.no_rep = cons.no_rep = True
    try:
        for attempt in range(10):
            prod.attempt = cons.attempt = attempt
            t_p = max(prod.t + prod.gap(), cons.t - lmin - dist)
            txn = _Txn(tab)
            txn.chain = chain
            prod.mode = prod.chain_mode(chain)
            prod.pending = None
            end_p = prod.build(t_p, txn)
            if end_p is None or not txn.ok or txn.produced is None:
                continue
            d, s, w, t_c = txn.produced
            if t_c < cons.t:
                continue
            txn.chain = None
            txn.provided = (cons.name, d, s, w, t_c)
            cons.mode = cons.chain_mode(None)
            cons.pending = None
            end_c = cons.build(t_c, txn)
            if end_c is None or not txn.ok or not txn.provided_used:
                continue
            txn.cov[f"chain.{prod.kind}->{cons.kind}"] += 1
            txn.commit()
            prod.on_commit()
            cons.on_commit()
            prod.t, cons.t = end_p + 1, end_c + 1
            prod.done_steps += 1
            cons.done_steps += 1
            return True
        return False
    finally:
        prod.no_rep = cons.no_rep = False


# =============================================================================== faults
@dataclass
class FaultCase:
    """A program the model refuses at ``slice``; the RTL must flag ``code`` (an
    ``hdl.slice.ErrorCode`` name, as docs/verification.md and the slice's docstring
    define it) at that slice and halt.  ``known``: the code the RTL is known to flag
    instead (a reported deviation, tolerated with a warning until it is resolved)."""

    name: str
    program: ComputeProgram
    slice: str
    code: str
    known: str | None = None


#: A non-MEM strided field (VXM imm, SXM n/map, MXM row/acc) out of its range -- directly
#: or after a REPEAT stride -- is ILLEGAL_INSTRUCTION (docs/verification.md: "a field out
#: of its range for the config"), and hdl/icu.py flags exactly that; no deviation is
#: tolerated.  If one is ever found, name the code the RTL flags instead here.
ICU_FIELD_RANGE_KNOWN: str | None = None  # strict


def compute_fault_programs(cfg: TspConfig, seed: int = 0) -> list[FaultCase]:
    """One program per compute-slice fault: run-time values out of range (REQUANT
    parameters, PMAP entries), a stream collision, IW during a weight load, illegal words
    and REPEAT strides leaving a field's range."""
    out: list[FaultCase] = []
    VL = cfg.vector_length
    sxm = cfg.slices_of("SXM")[-1].name  # SXM_E: reads E, writes W
    mxm = cfg.slices_of("MXM")[-1].name
    S = cfg.superlanes

    def case(name, sl, code, body, known=None):
        rng = np.random.default_rng([seed, len(out), 0xFA])
        tab = _Tables(cfg, rng)
        txn = _Txn(tab)
        body(txn)
        assert txn.ok, name
        txn.commit()
        rp = _build(cfg, tab, seed, "fault")
        out.append(FaultCase(name, rp, sl, code, known))

    def vxm_word(t, txn, text_fields, check=True, rep=None):
        txn.issue("VXM", t, Instr("VXM", text_fields), rep, check=check)

    def imm(t, txn, r, v):
        vxm_word(t, txn, {"type": 2, "otype": 2, "op1": 0, "op2": 0, "a": SEL_IMM,
                          "b": SEL_NONE, "c": SEL_NONE, "d": SEL_REG + r, "imm": v})

    def requant(mult, shift, zp, ot):
        def body(txn):
            imm(0, txn, 0, mult)
            imm(1, txn, 1, shift)
            imm(2, txn, 2, zp)
            vxm_word(6, txn, {"type": 2, "otype": TYPES.index(ot), "op1":
                              VXM_OP_BY_NAME["REQUANT"].code, "op2": 0, "a": SEL_LANE,
                              "b": SEL_REG + 0, "c": SEL_NONE, "d": SEL_REG + 3, "imm": 0})
        return body

    case("VXM REQUANT shift 31 > 30", "VXM", "VALUE_RANGE", requant(1000, 31, 0, "i8"))
    case("VXM REQUANT shift -32 < -31", "VXM", "VALUE_RANGE", requant(1000, -32, 0, "i8"))
    case("VXM REQUANT multiplier < 0", "VXM", "VALUE_RANGE", requant(-5, 0, 0, "i8"))
    case("VXM REQUANT zero point -1 outside u8", "VXM", "VALUE_RANGE", requant(1000, 0, -1, "u8"))
    case("VXM REQUANT zero point 128 outside i8", "VXM", "VALUE_RANGE",
         requant(1000, 0, 128, "i8"))

    def requant_no_reg(txn):
        vxm_word(3, txn, {"type": 2, "otype": 0, "op1": VXM_OP_BY_NAME["REQUANT"].code,
                          "op2": 0, "a": SEL_LANE, "b": SEL_IMM, "c": SEL_NONE,
                          "d": SEL_REG + 3, "imm": 7}, check=False)
    case("VXM REQUANT with an immediate (illegal word)", "VXM", "ILLEGAL_INSTRUCTION",
         requant_no_reg)

    def imm_stride(txn):
        vxm_word(2, txn, {"type": 2, "otype": 2, "op1": 0, "op2": 0, "a": SEL_IMM,
                          "b": SEL_NONE, "c": SEL_NONE, "d": SEL_REG + 0, "imm": IMM_HI - 8},
                 rep=(3, 1, 4, 0))
    case("VXM imm out of range after REPEAT stride", "VXM", "ILLEGAL_INSTRUCTION", imm_stride,
         ICU_FIELD_RANGE_KNOWN)

    def pmap_bad(txn):
        entries = np.arange(VL, dtype=np.uint16)
        entries[VL // 2 + 3] = VL  # one entry not a lane index (in superlane S-1 or 0)
        txn.feed(sxm, 12, E, [2, 3], data=lambda i, k: (entries >> (8 * i)).astype(np.uint8))
        txn.issue(sxm, 12, Instr("PMAP", {"in_s": 2, "in_d": E, "map": 1}))
    case("SXM PMAP entry = VL", sxm, "VALUE_RANGE", pmap_bad)

    def collision(txn):
        # RMAX (latency 2S + 1) at t and SHS (latency 2) at t + 2S - 1 both write s5.W
        # in cycle t + 2S + 1
        t = 12
        txn.feed(sxm, t, E, [0])
        txn.issue(sxm, t, Instr("RMAX", {"in_s": 0, "in_d": E, "out_s": 5, "out_d": W}))
        txn.feed(sxm, t + 2 * S - 1, E, [1])
        txn.issue(sxm, t + 2 * S - 1, Instr("SHS", {"in_s": 1, "in_d": E, "out_s": 5,
                                                    "out_d": W, "n": 3}))
    case("SXM stream collision (RMAX and SHS write s5.W in one cycle)", sxm,
         "STREAM_COLLISION", collision)

    def sxm_stride(txn):
        txn.feed(sxm, 12, E, [4], rep=(2, 1))
        txn.issue(sxm, 12, Instr("SHS", {"in_s": 4, "in_d": E, "out_s": 1, "out_d": W,
                                         "n": 14}), (2, 1, 1, 0))
    case("SXM SHS n = 16 after REPEAT stride", sxm, "ILLEGAL_INSTRUCTION", sxm_stride,
         ICU_FIELD_RANGE_KNOWN)

    def sxm_illegal(txn):
        txn.issue(sxm, 3, Instr("SHS", {"in_s": 0, "in_d": E, "out_s": 1, "out_d": W,
                                        "n": 20}), check=False)
    case("SXM SHS n = 20 (illegal word)", sxm, "ILLEGAL_INSTRUCTION", sxm_illegal,
         ICU_FIELD_RANGE_KNOWN)

    R = cfg.sxm_transpose_rows
    if R:
        def tget_rows(txn):
            txn.issue(sxm, 3, Instr("TGET", {"col": 0, "rows": R + 1, "out_s": 1,
                                             "out_d": W}), check=False)
        case(f"SXM TGET rows = R + 1 = {R + 1} (illegal word)", sxm, "ILLEGAL_INSTRUCTION",
             tget_rows, ICU_FIELD_RANGE_KNOWN)

        def tput_stride(txn):
            txn.feed(sxm, 12, E, [2], rep=(2, 1))
            txn.issue(sxm, 12, Instr("TPUT", {"row": R - 2, "in_s": 2, "in_d": E}),
                      (2, 1, 1, 0))
        case(f"SXM TPUT row = R = {R} after REPEAT stride", sxm, "ILLEGAL_INSTRUCTION",
             tput_stride, ICU_FIELD_RANGE_KNOWN)

    def mxm_stride(txn):
        txn.feed(mxm, 12, E, [3], rep=(2, 1))
        txn.issue(mxm, 12, Instr("MVM", {"x_s": 3, "x_d": E, "acc": MXM_ACC_SLOTS - 2}),
                  (2, 1, 1, 0))
    case("MXM MVM accumulator slot 32 after REPEAT stride", mxm, "ILLEGAL_INSTRUCTION",
         mxm_stride, ICU_FIELD_RANGE_KNOWN)

    def mxm_illegal(txn):
        txn.issue(mxm, 3, Instr("MVM", {"x_s": 3, "x_d": E, "row": 5}), check=False)
    case("MXM MVM row set without a load (illegal word)", mxm, "ILLEGAL_INSTRUCTION",
         mxm_illegal)

    if latency("LWT", cfg) > 1:
        def iw_in_flight(txn):
            txn.feed(mxm, 12, E, [6])
            txn.issue(mxm, 12, Instr("LWT", {"row": 3, "w_s": 6, "w_d": E}))
            txn.issue(mxm, 12 + latency("LWT", cfg) - 1, Instr("IW", {}))
        # hdl/mxm.py: ILLEGAL_INSTRUCTION (docs/verification.md lists "IW during a load"
        # under VALUE_RANGE)
        case("MXM IW while an LWT is in flight", mxm, "ILLEGAL_INSTRUCTION", iw_in_flight)
    return out
