"""The static scheduler: places every bundle at an exact issue cycle.

Resources are reservation tables kept as Python integers used as bit sets over cycles:

* one issue slot per slice queue and cycle (the MXM has two sub-slots, MVM and weight
  load, which the emitter merges into one ``MVM ..., lw=`` word; ``IW`` takes both);
* per C2C link: the cycles a SEND's beats occupy it (issue .. issue + beats - 1);
* per MEM slice and bank: the cycles in which a READ/GATHER reads it and in which a WRITE
  (issued the cycle before) writes it -- the two may not coincide (bank conflict);
* per (direction, stream, position): the cycles in which that stream register holds a
  value some consumer still needs, or is written.

List scheduling: a bundle becomes ready when all bundles it depends on are placed; the
ready bundle with the longest latency path to the end of the program (its priority) is
placed at the earliest cycle that satisfies its dependency edges and finds every slot,
bank and stream register free (the stream index of each wire is chosen there: first the
one the previous bundle of the same kind used, so that loops stay regular and compress
into REPEATs, then the lowest free one).
"""

from __future__ import annotations

import heapq
from itertools import chain

from arch.config import TspConfig

from .ir import Bundle, op_slots


def slots_free_from(taken: dict, keys, t: int) -> int:
    """The first cycle >= t at which every issue slot ``(key, offset)`` of ``keys`` is free
    in ``taken`` (key -> bit set of cycles)."""
    masks = [(m, off) for key, off in keys if (m := taken.get(key))]
    moved = True
    while moved:
        moved = False
        for m, off in masks:
            x = m >> (t + off)
            if x & 1:  # skip the run of taken cycles
                x = ~x
                t += (x & -x).bit_length() - 1
                moved = True
    return t


def slots_free_until(taken: dict, keys, t: int) -> int:
    """The last cycle <= t at which every issue slot ``(key, offset)`` of ``keys`` is free
    in ``taken``; -1 if there is none >= 0."""
    masks = [(m, off) for key, off in keys if (m := taken.get(key))]
    moved = True
    while moved and t >= 0:
        moved = False
        for m, off in masks:
            c = t + off
            if (m >> c) & 1:  # back over the run of taken cycles ending in c
                free = ~m & ((1 << (c + 1)) - 1)  # the free cycles 0..c
                t = free.bit_length() - 1 - off  # the last free cycle below, or -1 - off
                moved = True
                if t < 0:
                    return -1
    return t


class Scheduler:
    def __init__(self, cfg: TspConfig):
        self.cfg = cfg
        self.ns = cfg.streams_per_direction
        self.npos = cfg.n_positions
        self.depth = cfg.mem_depth
        self.slot: dict[tuple, int] = {}
        self.bank_r: dict[tuple, int] = {}
        self.bank_w: dict[tuple, int] = {}
        #: stream registers in use: [direction][stream] -> {diagonal: position bit set}; a
        #: value written eastward (westward) at position p in cycle c stays on diagonal
        #: c - p (c + p) as it moves
        self.diag: list[list[dict[int, int]]] = [[{} for _ in range(self.ns)]
                                                 for _ in range(2)]
        self.sticky: dict[str, int] = {}
        self.tries = 0
        self._cache: dict[int, tuple] = {}

    # -- per-bundle resource lists ---------------------------------------------------------
    def _prepare(self, b: Bundle):
        slots, brd, bwr = [], [], []
        for op in b.ops:
            for s in op_slots(op):
                slots.append(((op.slice, s), op.off))
            if op.mn == "SEND":  # the link is busy while the message's beats leave
                for j in range(op.lat):
                    slots.append(((op.slice, f"link{op.fields['link']}"), op.off + j))
            for bank in op.banks_r:
                brd.append(((op.slice, bank), op.off))
            if op.bank_w is not None:
                bwr.append(((op.slice, op.bank_w), op.off + 1))
        # per wire: (wire, its planes that reach a position on the chip as (plane,
        # diagonal, bit set of those positions))
        wires = []
        last = self.npos - 1
        for w in b.wires:
            rel = []
            for p, (diag, lo, hi) in enumerate(w.spans):
                lo, hi = max(lo, 0), min(hi, last)
                if lo <= hi:
                    rel.append((p, diag, ((1 << (hi - lo + 1)) - 1) << lo))
            wires.append((w, tuple(rel)))
        return slots, brd, bwr, wires

    def place(self, b: Bundle, tmin: int) -> int:
        """Place b at the earliest feasible cycle >= tmin."""
        t = tmin
        while True:
            t, choice = self.earliest(b, t)
            if choice is not None:
                return self.commit(b, t, choice)
            t += 1

    def earliest(self, b: Bundle, t: int):
        """(t', streams) with t' >= t the first cycle where the issue slots are free; streams
        is None if the banks or streams do not fit in t' (try t' + 1)."""
        slots, brd, bwr, wires = self._prep(b)
        self.tries += 1
        t = slots_free_from(self.slot, slots, max(t, 0))
        return t, self._rest(brd, bwr, wires, t)

    def latest(self, b: Bundle, t: int):
        """(t', streams) with t' <= t the last cycle where the issue slots are free (-1 if
        there is none); streams is None if the banks or streams do not fit in t' (try
        t' - 1)."""
        slots, brd, bwr, wires = self._prep(b)
        self.tries += 1
        t = slots_free_until(self.slot, slots, t)
        return t, (self._rest(brd, bwr, wires, t) if t >= 0 else None)

    def _rest(self, brd, bwr, wires, t):
        """The stream choice if the banks and streams fit in cycle ``t`` (its slots free),
        else None."""
        bank_r, bank_w = self.bank_r, self.bank_w
        for k, c in brd:
            if (bank_w.get(k, 0) >> (t + c)) & 1:
                return None
        for k, c in bwr:
            if (bank_r.get(k, 0) >> (t + c)) & 1:
                return None
        return self._streams(wires, t) if wires else []

    def _prep(self, b: Bundle):
        cached = self._cache.get(id(b))
        if cached is None:
            cached = self._cache[id(b)] = self._prepare(b)
        return cached

    def commit(self, b: Bundle, t: int, choice) -> int:
        slots, brd, bwr, wires = self._prep(b)
        slot, bank_r, bank_w = self.slot, self.bank_r, self.bank_w
        for key, off in slots:
            slot[key] = slot.get(key, 0) | (1 << (t + off))
        for k, c in brd:
            bank_r[k] = bank_r.get(k, 0) | (1 << (t + c))
        for k, c in bwr:
            bank_w[k] = bank_w.get(k, 0) | (1 << (t + c))
        for (w, rel), s in zip(wires, choice, strict=True):
            w.base = s
            self.sticky[w.tag] = s
            by_stream = self.diag[w.dir]
            for p, diag, mask in rel:
                d = by_stream[s + p]
                key = diag + t
                d[key] = d.get(key, 0) | mask
        b.t0 = t
        for op in b.ops:
            op.cycle = t + op.off
        self._cache.pop(id(b), None)
        return t

    def _streams(self, wires, t):
        if len(wires) == 1:
            s = self._pick(*wires[0], t, None)
            return None if s is None else [s]
        local: dict = {}
        out = []
        for w, rel in wires:
            s = self._pick(w, rel, t, local)
            if s is None:
                return None
            out.append(s)
            for p, diag, mask in rel:
                key = (w.dir, s + p, diag + t)
                local[key] = local.get(key, 0) | mask
        return out

    def _pick(self, w, rel, t, local):
        """The stream index for wire ``w`` (its planes ``rel``: (plane, diagonal, position
        bit set)) in cycle ``t``, beside the streams ``local`` that the bundle's other
        wires took: the one its tag used last if free, else the lowest free one (None if
        none is)."""
        limit = self.ns - w.n
        first = self.sticky.get(w.tag)
        cands = range(limit + 1)
        if first is not None and first <= limit:
            cands = chain((first,), range(first), range(first + 1, limit + 1))
        by_stream = self.diag[w.dir]
        d_ = w.dir
        for s in cands:
            for p, diag, mask in rel:
                dk = diag + t
                if by_stream[s + p].get(dk, 0) & mask:
                    break
                if local and local.get((d_, s + p, dk), 0) & mask:
                    break
            else:
                return s
        return None


def priorities(bundles: list[Bundle]) -> None:
    """prio = longest path (in cycles, dependency deltas and bundle spans) to the end.

    Edges always point forward in program order, so reverse program order is a reverse
    topological order."""
    for b in bundles:
        b.succs = []
    for b in bundles:
        seen = set()
        for p, _poff, _off, _d in b.preds:
            if id(p) not in seen:
                seen.add(id(p))
                p.succs.append(b)
    # an edge p -> b of weight poff + d - off: prio(p) >= that + prio(b)
    for b in bundles:
        b.prio = b.span
    for b in reversed(bundles):
        pb = b.prio
        for p, poff, off, d in b.preds:
            v = poff + d - off + pb
            if v > p.prio:
                p.prio = v


#: the list-scheduling orders of `list_schedule`
ORDERS = ("cycle", "priority", "program")


def check_order(order) -> None:
    if order not in ORDERS:
        raise ValueError(f"order={order!r}: the list-scheduling orders are "
                         f"{', '.join(map(repr, ORDERS))}")


def list_schedule(cfg: TspConfig, bundles: list[Bundle], order: str = "cycle") -> Scheduler:
    """Place every bundle.  ``order``:

    * "cycle": cycle-driven list scheduling -- repeatedly place, among the ready bundles,
      the one that can start earliest (ties: longest path to the end first), so that a
      critical bundle that becomes ready late still finds its cycles free;
    * "priority": ready bundles in order of priority, each at its earliest cycle;
    * "program": program order, each at its earliest cycle (regular, compact code).
    """
    check_order(order)
    sch = _unplaced(cfg, bundles)
    if order == "program":
        for b in bundles:
            sch.place(b, _tmin(b))
            b.placed = True
        return sch
    priorities(bundles)
    if order == "priority":
        done = _place_ready(sch, bundles, lambda b: -b.prio)
    else:
        done = 0
        waiting = {id(b): len({id(p) for p, *_ in b.preds}) for b in bundles}
        heap = [(_tmin(b), -b.prio, b.index) for b in bundles if waiting[id(b)] == 0]
        heapq.heapify(heap)
        while heap:
            t, negp, i = heapq.heappop(heap)
            b = bundles[i]
            t2, choice = sch.earliest(b, t)
            if choice is None or t2 != t:
                heapq.heappush(heap, (t2 if choice is not None else t2 + 1, negp, i))
                continue
            sch.commit(b, t, choice)
            b.placed = True
            done += 1
            for s in b.succs:
                waiting[id(s)] -= 1
                if waiting[id(s)] == 0:
                    heapq.heappush(heap, (_tmin(s), -s.prio, s.index))
    assert done == len(bundles), "dependency cycle in the program"
    return sch


def _tmin(b: Bundle) -> int:
    t = b.earliest
    for p, poff, off, d in b.preds:
        assert p.placed, f"{b.name} placed before {p.name}"
        t = max(t, p.t0 + poff + d - off)
    return t


def backward_starts(cfg: TspConfig, bundles: list[Bundle]) -> dict[int, int] | None:
    """A backward list schedule of the placed ``bundles``: latest forward finish first,
    each bundle as late as its placed successors' dependency edges and the resources
    allow, below a horizon of twice the forward schedule (only the order of the starts is
    used).  {id(bundle): start}, or None if a bundle finds no cycle >= 0."""
    horizon = 2 * max(b.t0 + b.span for b in bundles) + 1
    sch = Scheduler(cfg)
    succ: dict[int, list] = {id(b): [] for b in bundles}
    for b in bundles:
        for p, poff, off, d in b.preds:
            succ[id(p)].append((b, poff, off, d))
    left = {id(b): len({id(s) for s, *_ in succ[id(b)]}) for b in bundles}
    start: dict[int, int] = {}
    heap = [(-(b.t0 + b.span), b.index) for b in bundles if left[id(b)] == 0]
    heapq.heapify(heap)
    while heap:
        _, i = heapq.heappop(heap)
        b = bundles[i]
        t = horizon - b.span
        for s, poff, off, d in succ[id(b)]:  # start(s) + off >= start(b) + poff + d
            t = min(t, start[id(s)] + off - poff - d)
        t, choice = sch.latest(b, t)
        while choice is None:
            if t < 0:
                return None
            t, choice = sch.latest(b, t - 1)
        sch.commit(b, t, choice)
        start[id(b)] = t
        for p in {id(p): p for p, *_ in b.preds}.values():
            left[id(p)] -= 1
            if left[id(p)] == 0:
                heapq.heappush(heap, (-(p.t0 + p.span), p.index))
    return start


def place_in_order(cfg: TspConfig, bundles: list[Bundle], key: dict[int, int]) -> Scheduler:
    """List scheduling with ``key[id(bundle)]`` as the priority (smallest first among the
    ready bundles), each bundle at its earliest cycle."""
    sch = _unplaced(cfg, bundles)
    priorities(bundles)  # (the successor lists)
    done = _place_ready(sch, bundles, lambda b: key[id(b)])
    assert done == len(bundles), "dependency cycle in the program"
    return sch


def _unplaced(cfg: TspConfig, bundles: list[Bundle]) -> Scheduler:
    """An empty schedule, every bundle numbered in program order and not placed."""
    for i, b in enumerate(bundles):
        b.index = i
        b.placed = False
    return Scheduler(cfg)


def _place_ready(sch: Scheduler, bundles: list[Bundle], key) -> int:
    """Place every bundle, among the ready ones (every predecessor placed) the smallest
    ``key(bundle)`` first, each at its earliest cycle; how many were placed."""
    waiting = {id(b): len({id(p) for p, *_ in b.preds}) for b in bundles}
    heap = [(key(b), b.index) for b in bundles if waiting[id(b)] == 0]
    heapq.heapify(heap)
    done = 0
    while heap:
        _, i = heapq.heappop(heap)
        b = bundles[i]
        sch.place(b, _tmin(b))
        b.placed = True
        done += 1
        for s in b.succs:
            waiting[id(s)] -= 1
            if waiting[id(s)] == 0:
                heapq.heappush(heap, (key(s), s.index))
    return done


def justify(cfg: TspConfig, bundles: list[Bundle], rounds: int = 3):
    """Forward-backward improvement of a placed list schedule (justification, as in
    resource-constrained project scheduling): schedule backward from the end
    (`backward_starts`), then forward again in the order of those starts
    (`place_in_order`), which packs bundles that a greedy forward pass left waiting into
    the gaps.  A generator: after each round's forward pass (the bundles placed) it yields
    that round's order, which `place_in_order` reproduces; the caller keeps the best.  Stops
    early where a backward pass does not fit."""
    for _ in range(rounds):
        key = backward_starts(cfg, bundles)
        if key is None:
            return
        place_in_order(cfg, bundles, key)
        yield key
