"""Seeded random MEM/ICU programs that are legal by construction.

A program is a set of *transfers* between MEM slices, scheduled on exact
cycles: a READ (or two, for SCATTER) puts a vector on a stream, and a consumer
downstream takes it on the cycle it arrives (WRITE, GATHER's index, SCATTER's
index and data).  Some transfers are REPEATed with address strides.  The
generator keeps reservation tables — one issue per queue per cycle, every
stream register on a value's path, SRAM banks per cycle (a read and a write in
one bank in one cycle is refused) — so the machine model accepts the program;
queues get NOP gaps between their instructions and end with HALT.

The host initialises small address windows in both banks of every MEM slice
(`init`), some of them with index vectors of small values for GATHER/SCATTER;
`touched` lists every address whose final contents are worth comparing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from arch.asm import format_instr
from arch.config import TspConfig
from arch.isa import Instr, latency
from arch.program import Program

WINDOW = 24  # data addresses per bank window
IDX_SLOTS = 4  # index vectors per bank window (values 0..IDX_RANGE-1)
IDX_RANGE = 8


@dataclass
class RandomProgram:
    seed: int
    program: Program
    init: dict[str, dict[int, np.ndarray]]
    touched: dict[str, set[int]]
    listing: dict[str, list[str]] = field(default_factory=dict)
    n_instructions: int = 0

    def describe(self) -> str:
        lines = [f"# random MEM/ICU program, seed {self.seed}"]
        for name, ins in self.listing.items():
            lines.append(f".slice {name}")
            lines += [f"    {t}" for t in ins]
        return "\n".join(lines)


class _Sched:
    def __init__(self, cfg: TspConfig):
        self.cfg = cfg
        self.queue: dict[str, dict[int, tuple[Instr, tuple | None]]] = {}
        self.queue_busy: dict[str, set[int]] = {}
        self.cells: set[tuple[int, int, int, int]] = set()  # (dir, stream, pos, cycle)
        self.reads: set[tuple[str, int, int]] = set()  # (slice, cycle, bank)
        self.writes: set[tuple[str, int, int]] = set()

    def free_queue(self, sl: str, cycles) -> bool:
        busy = self.queue_busy.setdefault(sl, set())
        return not any(c in busy for c in cycles)

    def take_queue(self, sl: str, t0: int, instr: Instr, rep: tuple | None, span: range):
        self.queue.setdefault(sl, {})[t0] = (instr, rep)
        self.queue_busy.setdefault(sl, set()).update(span)


def _queue_span(t: int, rep: tuple | None) -> range:
    """Issue cycles a queue gives an instruction issued at `t`: with a REPEAT (n, d, ...)
    the whole block and the cycle after it, else just `t`."""
    return range(t, t + rep[0] * rep[1] + 2) if rep else range(t, t + 1)


def _bank_of(cfg, addr):
    return addr // cfg.mem_depth


def random_mem_program(cfg: TspConfig, seed: int, n_transfers: int | None = None,
                       horizon: int = 60) -> RandomProgram:
    rng = np.random.default_rng(seed)
    mems = cfg.slices_of("MEM")
    names = [s.name for s in mems]
    pos = {s.name: s.index for s in mems}
    V, NS, depth = cfg.vector_length, cfg.streams_per_direction, cfg.mem_depth
    L = latency("READ", cfg)
    n_transfers = n_transfers or int(rng.integers(8, 20))

    init: dict[str, dict[int, np.ndarray]] = {n: {} for n in names}
    touched: dict[str, set[int]] = {n: set() for n in names}
    windows = {}
    for n in names:
        for b in range(2):
            base = b * depth
            for a in range(base, base + WINDOW):
                init[n][a] = rng.integers(0, 256, V, dtype=np.uint8)
            for a in range(base + WINDOW, base + WINDOW + IDX_SLOTS):
                init[n][a] = rng.integers(0, IDX_RANGE, V, dtype=np.uint8)
            windows[(n, b)] = base
        touched[n].update(init[n])

    sched = _Sched(cfg)

    def path_cells(src: str, dst: str, s: int, t_out: int):
        """Stream cells a value written by src in cycle t_out occupies up to dst."""
        p, q = pos[src], pos[dst]
        d = 0 if q > p else 1
        step = 1 if q > p else -1
        return d, [(d, s, p + step * j, t_out + j) for j in range(1, abs(q - p) + 1)]

    def try_transfer() -> bool:
        kind = rng.choice(["copy", "copy", "gather", "scatter"])
        reps = int(rng.integers(1, 5)) if rng.random() < 0.35 else 1
        d_rep = int(rng.integers(1, 4))
        t0 = int(rng.integers(0, horizon))
        dst = str(rng.choice(names))
        srcs = [str(x) for x in rng.choice([n for n in names if n != dst],
                                           size=2 if kind == "scatter" else 1, replace=False)]
        if kind != "copy":
            reps = 1
        # every source issues so that its value arrives at dst in cycle t_arr
        t_arr = t0 + L + max(abs(pos[s] - pos[dst]) for s in srcs)
        plan = []  # (slice, issue cycle, instr, rep_fields, reads/writes (cycle, bank), cells)
        used_cells = []
        streams = []
        for i, src in enumerate(srcs):
            dist = abs(pos[src] - pos[dst])
            t_src = t_arr - L - dist
            s = int(rng.integers(0, NS))
            d, cells = path_cells(src, dst, s, t_src + L)
            streams.append((s, d))
            is_idx = kind != "copy" and i == 0
            b = int(rng.integers(2))
            base = windows[(src, b)]
            if is_idx:
                addr = base + WINDOW + int(rng.integers(0, IDX_SLOTS))
                stride = 0
            else:
                addr = base + int(rng.integers(0, WINDOW - reps))
                stride = 1 if reps > 1 else 0
            instr = Instr("READ", {"addr": addr, "out_s": s, "out_d": d})
            rep_cells, rep_reads = [], []
            for k in range(reps):
                dt = k * d_rep
                rep_cells += [(dd, ss, pp, cc + dt) for dd, ss, pp, cc in cells]
                rep_reads.append((t_src + dt, _bank_of(cfg, addr + k * stride)))
            plan.append((src, t_src, instr, (reps - 1, d_rep, stride) if reps > 1 else None,
                         rep_reads, [], rep_cells))
            used_cells += rep_cells
        # the consumer
        b = int(rng.integers(2))
        base = windows[(dst, b)]
        if kind == "copy":
            s, d = streams[0]
            addr = base + int(rng.integers(0, WINDOW - reps))
            instr = Instr("WRITE", {"addr": addr, "in_s": s, "in_d": d})
            stride = 1 if reps > 1 else 0
            writes = [(t_arr + k * d_rep + 1, _bank_of(cfg, addr + k * stride))
                      for k in range(reps)]
            plan.append((dst, t_arr, instr, (reps - 1, d_rep, stride) if reps > 1 else None,
                         [], writes, []))
            for k in range(reps):
                touched[dst].add(addr + k * stride)
        elif kind == "gather":
            (s, d), = streams
            out_s = int(rng.integers(0, NS))
            addr = base + int(rng.integers(0, WINDOW - IDX_RANGE))
            instr = Instr("GATHER", {"addr": addr, "idx_s": s, "idx_d": d,
                                     "out_s": out_s, "out_d": d})
            # the result flows on in the same direction to the edge of the chip: reserve
            # its cells up to the next MEM slice downstream, which WRITEs it
            p = pos[dst]
            step = 1 if d == 0 else -1
            nxt = [n for n in names if (pos[n] - p) * step > 0]
            if not nxt:
                return False
            tgt = min(nxt, key=lambda n: abs(pos[n] - p))
            _, cells = path_cells(dst, tgt, out_s, t_arr + L)
            t_w = t_arr + L + abs(pos[tgt] - p)
            wb = int(rng.integers(2))
            waddr = windows[(tgt, wb)] + int(rng.integers(0, WINDOW))
            plan.append((dst, t_arr, instr, None, [(t_arr, _bank_of(cfg, addr))], [], cells))
            plan.append((tgt, t_w, Instr("WRITE", {"addr": waddr, "in_s": out_s, "in_d": d}),
                         None, [], [(t_w + 1, _bank_of(cfg, waddr))], []))
            used_cells += cells
            touched[tgt].add(waddr)
        else:  # scatter: idx from srcs[0], data from srcs[1]
            (si, di), (sd, dd) = streams
            addr = base + int(rng.integers(0, WINDOW - IDX_RANGE))
            instr = Instr("SCATTER", {"addr": addr, "idx_s": si, "idx_d": di,
                                      "in_s": sd, "in_d": dd})
            plan.append((dst, t_arr, instr, None, [], [(t_arr + 1, _bank_of(cfg, addr))], []))
            touched[dst].update(range(addr, addr + IDX_RANGE))
        # check every reservation
        if len(set(used_cells)) != len(used_cells) or sched.cells & set(used_cells):
            return False
        qspans = {}
        plan_writes = {(sl, c, bk) for sl, _t, _i, _r, _rd, wr, _c in plan for c, bk in wr}
        for sl, t, _ins, rep, reads, writes, _c in plan:
            span = _queue_span(t, rep)
            if not sched.free_queue(sl, span) or any(c in qspans.get(sl, ()) for c in span):
                return False
            qspans.setdefault(sl, set()).update(span)
            for c, bk in reads:
                if (sl, c, bk) in sched.writes or (sl, c, bk) in plan_writes:
                    return False
            for c, bk in writes:
                if (sl, c, bk) in sched.reads:
                    return False
        for sl, t, ins, rep, reads, writes, _c in plan:
            sched.take_queue(sl, t, ins, rep, _queue_span(t, rep))
            sched.reads.update((sl, c, bk) for c, bk in reads)
            sched.writes.update((sl, c, bk) for c, bk in writes)
        sched.cells.update(used_cells)
        return True

    done = tries = 0
    while done < n_transfers and tries < 40 * n_transfers:
        tries += 1
        if try_transfer():
            done += 1

    queues: dict[str, list[Instr]] = {}
    listing: dict[str, list[str]] = {}
    n_instr = 0
    for sl in cfg.slices:
        items = sorted(sched.queue.get(sl.name, {}).items())
        out: list[Instr] = []
        t_next = 0
        for t, (ins, rep) in items:
            if t > t_next:
                out.append(Instr("NOP", {"n": t - t_next}))
            out.append(ins)
            if rep:
                n, d, stride = rep
                out.append(Instr("REPEAT", {"n": n, "d": d, "stride_a": stride}))
                t_next = t + n * d + 1
            else:
                t_next = t + 1
        if rng.random() < 0.3:
            out.append(Instr("NOP", {"n": int(rng.integers(1, 6))}))
        out.append(Instr("HALT", {}))
        queues[sl.name] = out
        listing[sl.name] = [format_instr(i) for i in out]
        n_instr += len(out)
    prog = Program.from_instrs(cfg, queues)
    return RandomProgram(seed, prog, init, touched, listing, n_instr)
