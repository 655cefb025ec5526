"""Allocation of SRAM vectors, VXM registers and MXM accumulator slots.

SRAM: every MEM slice has ``2 * mem_depth`` addresses of one vector (VL bytes) each.  A
*tensor* is a set of vectors keyed by an index tuple; a multi-byte tensor (int16 scores,
int32 constants) stores each byte plane in a *different* slice of one side of the chip,
because the planes must arrive at the VXM in the same cycle (one READ per slice and
cycle).  With fewer than 4 MEM slices per side an int32 tensor uses the *relay layout*
(two slices, two planes each; :mod:`compiler.routes` relays two planes through the SXM).
Gather tables take 256 consecutive addresses of one slice.  Freed ranges are reused
(first fit); the dependency tracker orders the reuse after the last read.

Registers: r2, r5, r8, r11 hold zero for the whole program (the zero point of the
REQUANT triples ``(rK, rK+1, rK+2)`` with K in 0, 3, 6, 9); the other twelve are handed
out as singles or as triples ``(multiplier, shift)`` in program order.
"""

from __future__ import annotations

from collections import deque
from numbers import Integral

from arch.config import TspConfig
from arch.isa import MXM_ACC_SLOTS

from .errors import CompileError

TRIPLES = (0, 3, 6, 9)
ZEROS = tuple(k + 2 for k in TRIPLES)
SINGLES = (12, 13, 14, 15, 0, 1, 3, 4, 6, 7, 9, 10)


class Tensor:
    """Vectors keyed by an index tuple; ``locs[key]`` = ((slice, addr) per byte plane)."""

    def __init__(self, name: str, planes: int, side: str):
        self.name = name
        self.planes = planes
        self.side = side
        self.locs: dict[tuple, tuple[tuple[str, int], ...]] = {}
        self.ranges: list[tuple[str, int, int]] = []  # (slice, base, n) allocated

    def __getitem__(self, key) -> tuple[tuple[str, int], ...]:
        return self.locs[key if isinstance(key, tuple) else (key,)]

    def loc(self, *key) -> tuple[str, int]:
        """Location of a single-plane vector."""
        return self.locs[key][0]

    def __repr__(self) -> str:
        return f"Tensor({self.name}, {len(self.locs)} vectors x {self.planes} planes)"


class FirstOf:
    """A tensor keyed ``(k, 0)`` seen as keyed ``(k,)`` (its first vector per ``k``)."""

    def __init__(self, t: Tensor):
        self.t = t

    def __getitem__(self, key) -> tuple[tuple[str, int], ...]:
        return self.t[(key[0], 0)]


def _deal(key: tuple, m: int) -> int:
    """Which of ``m`` slices a spread tensor's vector ``key`` goes to: the sum of the key's
    indices, so that both a row's lane tiles and one lane tile's rows (what a K pass of a
    product streams) rotate over every slice (dealing in key order would put lane tile
    ``t`` of every row of a tensor ``m`` tiles wide in one slice)."""
    return sum(k for k in key if isinstance(k, Integral)) % m


class Sram:
    def __init__(self, cfg: TspConfig):
        self.cfg = cfg
        self.depth = cfg.mem_depth
        self.size = cfg.mem_addresses
        mems = cfg.slices_of("MEM")
        self.side = {"W": [s.name for s in sorted((m for m in mems if m.hemisphere == "W"),
                                                  key=lambda s: s.ordinal)],
                     "E": [s.name for s in sorted((m for m in mems if m.hemisphere == "E"),
                                                  key=lambda s: s.ordinal)]}
        self._side_of = {n: sd for sd, names in self.side.items() for n in names}
        #: never allocated ranges (host constants may only go here) and released ones
        self.free: dict[str, list[list[int]]] = {
            m.name: [[0, self.depth], [self.depth, self.depth]] for m in mems}
        self.reused: dict[str, list[list[int]]] = {m.name: [] for m in mems}
        self.used = 0
        self.short = 0  # vectors handed out beyond the SRAM after a failure (still live)
        self.peak = 0
        self.failed: list[str] = []
        self.fake = self.size  # addresses handed out after a failure (never emitted)
        self.tensors: dict[str, Tensor] = {}
        self._rr = 0

    @property
    def capacity(self) -> int:
        return self.size * len(self.free)

    def free_of(self, slice_: str) -> int:
        return sum(n for _, n in self.free[slice_]) + sum(n for _, n in self.reused[slice_])

    def _take(self, slice_: str, n: int, const: bool = False, avoid=()) -> int | None:
        """First fit, preferring released space (not for host constants, whose initial
        content the program must not have overwritten) and the bank with more room;
        ``avoid``: banks of this slice that other tensors of the same op are read from
        (a READ and a WRITE of one bank cannot share a cycle), taken only if no other
        bank has room."""
        for out_of in ((avoid, ()) if avoid else ((),)):
            for fl in (() if const else (self.reused[slice_],)) + (self.free[slice_],):
                a = self._take_from(fl, n, top=not const and fl is self.free[slice_],
                                    avoid=out_of)
                if a is not None:
                    return a
        return None

    def _take_from(self, fl: list[list[int]], n: int, top: bool = False, avoid=()
                   ) -> int | None:
        """First fit in ``fl``; ``top``: from the end of the range (program-written
        tensors take never-used space from the top of a bank, constants from the bottom,
        so that constants created late still find space); ``avoid``: banks the whole
        range must stay out of."""
        banks = sorted((0, 1), key=lambda b: -sum(r[1] for r in fl if r[0] // self.depth == b))
        for pass_ in (0, 1):
            for r in fl:
                if r[1] < n:
                    continue
                a = r[0] + r[1] - n if top else r[0]
                if avoid and (a // self.depth in avoid or (a + n - 1) // self.depth in avoid):
                    continue
                if pass_ == 0 and (r[0] // self.depth != banks[0]
                                   or (r[0] + n - 1) // self.depth != r[0] // self.depth):
                    continue
                if top:
                    a = r[0] + r[1] - n
                else:
                    a = r[0]
                    r[0] += n
                r[1] -= n
                if r[1] == 0:
                    fl.remove(r)
                return a
        return None

    def release(self, t: Tensor) -> None:
        for s, a, n in t.ranges:
            if a >= self.size:
                self.short -= n
                continue
            self.reused[s].append([a, n])
            self.reused[s].sort()
            merged: list[list[int]] = []
            for r in self.reused[s]:
                if merged and merged[-1][0] + merged[-1][1] == r[0]:
                    merged[-1][1] += r[1]
                else:
                    merged.append(r)
            self.reused[s] = merged
            self.used -= n
        t.ranges = []

    def banks_of(self, *tensors) -> dict[str, set[int]]:
        """{slice: the banks the ``tensors``' vectors occupy there}."""
        out: dict[str, set[int]] = {}
        for t in tensors:
            for s, a, n in t.ranges:
                if a < self.size:
                    out.setdefault(s, set()).update(range(a // self.depth,
                                                          (a + n - 1) // self.depth + 1))
        return out

    def side_of(self, t) -> str:
        """The hemisphere ("W" or "E") of a MEM slice name, or of the first vector of a
        tensor-like ``t`` (``t[(0, 0)]``: a `Tensor`, `FirstOf` or a dict of locations)."""
        name = t if isinstance(t, str) else t[(0, 0)][0][0]
        return self._side_of[name]

    def slices(self, side: str | None, k: int, exclude=(), const: bool = False) -> list[str]:
        """k distinct slices of one side (the side with more free space if None), most
        free space (never-used space only for host constants) first."""
        room = self.clean_of if const else self.free_of
        if side is None:
            sides = sorted(("W", "E"), key=lambda sd: -sum(room(s) for s in self.side[sd]))
        else:
            sides = [side]
        for sd in sides:
            cand = [s for s in self.side[sd] if s not in exclude]
            if len(cand) >= k:
                self._rr += 1
                cand.sort(key=lambda s: (-room(s), (self.side[sd].index(s) + self._rr)
                                         % len(self.side[sd])))
                return cand[:k]
        raise CompileError(f"config {self.cfg.name!r} has {len(self.side['W'])} MEM slices "
                           f"per hemisphere; this needs {k} on one side "
                           f"(raise mem_slices_per_hemisphere)", "sram", True)

    def clean_of(self, slice_: str) -> int:
        return sum(n for _, n in self.free[slice_])

    def _spread(self, name, keys, side, exclude, const, avoid_banks) -> Tensor | None:
        """A single-plane tensor dealt over every slice of a side, or of both sides with
        ``side="both"`` (key ``k`` in the `_deal`-th, each slice's share contiguous); None
        if a share finds no room."""
        if side == "both":  # W and E slices in turn: consecutive keys on both sides
            sd = "W"
            cands = [s for pair in zip(self.side["W"], self.side["E"], strict=True)
                     for s in pair if s not in exclude]
        else:
            sd = side or max(("W", "E"),
                             key=lambda x: sum(self.free_of(s) for s in self.side[x]))
            cands = [s for s in self.side[sd] if s not in exclude]
        if len(cands) < 2:
            return None
        self._rr += 1
        cands = cands[self._rr % len(cands):] + cands[:self._rr % len(cands)]
        t = Tensor(name, 1, sd)
        m = len(cands)
        for j, s in enumerate(cands):
            mine = [k for k in keys if _deal(k, m) == j]
            if not mine:
                continue
            a = self._take(s, len(mine), const, avoid_banks.get(s, ()))
            if a is None:
                self._undo(t, const)
                return None
            t.ranges.append((s, a, len(mine)))
            self.used += len(mine)
            for i, k in enumerate(mine):
                t.locs[k] = ((s, a + i),)
        t.locs = {k: t.locs[k] for k in keys}
        self.peak = max(self.peak, self.used + self.short)
        self.tensors[name] = t
        return t

    def tensor(self, name: str, keys, planes: int = 1, side: str | None = None,
               slices: list[str] | None = None, exclude=(), const: bool = False,
               spread: bool = False, avoid_banks=None) -> Tensor:
        """Allocate a tensor: plane p of every vector in slice ``slices[p]``, contiguous.

        An int32 tensor on a side with fewer than 4 MEM slices gets the relay layout:
        planes 0, 2 in the slice nearer the VXM, planes 1, 3 in the farther one.
        ``spread`` (single plane, no ``slices``): the vectors dealt over the side's slices
        (`_spread`; ``side="both"``: over both sides', for a product whose MXMs on both
        sides read it), so that a matmul streaming them reads every slice in turn.
        ``avoid_banks``: {slice: banks} the tensor should stay out of where another bank
        has room (the banks its producer reads in the cycles it writes: `banks_of`)."""
        keys = [k if isinstance(k, tuple) else (k,) for k in keys]
        avoid_banks = avoid_banks or {}
        if spread and planes == 1 and slices is None and len(keys) > 1:
            t = self._spread(name, keys, side, exclude, const, avoid_banks)
            if t is not None:
                return t
        if side == "both":  # not dealt: on the side with more room
            side = None
        explicit = list(slices) if slices is not None else None
        if slices is None:
            sd = side
            if planes == 4 and side is None:
                sd = None
            try:
                slices = self.slices(sd, planes, exclude, const)
            except CompileError:
                if planes != 4:
                    raise
                slices = self.slices(sd, 2, exclude, const)
        sd = self.side_of(slices[0])
        if len(slices) < planes:
            assert planes == 4 and len(slices) == 2, (name, slices)
            slices = sorted(slices, key=self.side[sd].index)
            slices = [slices[p % 2] for p in range(planes)]
        t = Tensor(name, planes, sd)
        n = len(keys)
        bases = []
        for s in slices:
            a = self._take(s, n, const, avoid_banks.get(s, ())) if n <= self.size else None
            if a is None:
                break
            t.ranges.append((s, a, n))
            self.used += n
            bases.append(a)
        if len(bases) < len(slices) and planes > 1:
            self.failed.append(f"{name} ({n} vectors x {planes} planes in {slices})")
            for p in range(len(bases), len(slices)):
                bases.append(self.fake)
                t.ranges.append((slices[p], self.fake, n))
                self.fake += n
                self.short += n
        if len(bases) < len(slices):  # no contiguous room: pieces (single plane only)
            self._undo(t, const)
            pieces = self._pieces(name, n, planes, sd, side, exclude, const, slices, explicit)
            i = 0
            for s, a, k in pieces:
                for m in range(k):
                    t.locs[keys[i]] = ((s, a + m),)
                    i += 1
                t.ranges.append((s, a, k))
                if a < self.size:
                    self.used += k
                else:
                    self.short += k
        else:
            for i, k in enumerate(keys):
                t.locs[k] = tuple((slices[p], bases[p] + i) for p in range(planes))
        self.peak = max(self.peak, self.used + self.short)
        self.tensors[name] = t
        return t

    def _undo(self, t: Tensor, const: bool) -> None:
        """Give back the ranges allocated so far to ``t`` (an allocation that failed)."""
        for s, a, k in t.ranges:
            self._give_back(s, a, k, const)
            self.used -= k
        t.ranges = []

    def _give_back(self, s: str, a: int, n: int, const: bool) -> None:
        (self.free if const else self.reused)[s].append([a, n])
        (self.free if const else self.reused)[s].sort()

    def _pieces(self, name, n, planes, sd, side, exclude, const, slices, explicit):
        """Largest free ranges first over the allowed slices (a failure records the
        shortage and hands out addresses beyond the SRAM, never emitted)."""
        if planes == 1:
            if explicit:
                cands = explicit
            else:
                cands = [x for x in (self.side[side] if side else
                                     self.side["W"] + self.side["E"]) if x not in exclude]
            out = []
            left = n
            while left:
                best = None
                for x in cands:
                    for fl in ((self.free[x],) if const else (self.reused[x], self.free[x])):
                        for r in fl:
                            if r[1] and (best is None or r[1] > best[2][1]):
                                best = (x, fl, r)
                if best is None:
                    break
                x, fl, r = best
                k = min(left, r[1])
                out.append((x, r[0], k))
                r[0] += k
                r[1] -= k
                if r[1] == 0:
                    fl.remove(r)
                left -= k
            if not left:
                return out
            n_fail = left
        else:
            out, n_fail = [], n
        self.failed.append(f"{name} ({n_fail} of {n} vectors, {planes} plane(s), side "
                           f"{side or 'any'})")
        out.append((slices[0], self.fake, n_fail))
        self.fake += n_fail
        return out

    def table(self, name: str, slice_: str) -> Tensor:
        t = self.tensor(name, range(256), 1, slices=[slice_])
        return t

    #: what the program is, for the error message (set by the lowering: "the layer step")
    what = "the block"

    def check(self, final: bool = False) -> None:
        """Raise if an allocation failed (``final``: failed for host constants alone)."""
        if self.failed:
            slices = len(self.free)
            vl = self.cfg.vector_length
            cap = (f"{self.capacity} ({slices} MEM slices x {self.size} addresses x {vl} B "
                   f"= {self.capacity * vl / 1024:.1f} KiB)")
            if self.peak > self.capacity:
                why = (f"it needs at least {self.peak} vectors ({self.peak * vl / 1024:.1f} "
                       f"KiB) at its peak but the config has {cap}")
            else:  # the total fits; the slices the failing tensor must go to did not
                why = (f"the slices a tensor must go to ran out, although the program's "
                       f"peak ({self.peak} vectors, {self.peak * vl / 1024:.1f} KiB) is "
                       f"within the config's {cap}: a tensor's planes lie on given slices "
                       f"of one side")
            raise CompileError(
                f"{self.what} does not fit the SRAM of config {self.cfg.name!r}: {why}; first "
                f"failing allocation: {self.failed[0]}.  Raise mem_depth (now {self.depth}) "
                f"or mem_slices_per_hemisphere, or use a smaller "
                f"{'block' if self.what == 'the block' else 'model'}.", "sram", final)


class Regs:
    """VXM registers in program order (see the module docstring)."""

    def __init__(self):
        self.free = set(SINGLES)
        self.order = deque(SINGLES)

    def single(self) -> int:
        """A free register, preferring r12..r15, then halves of already broken triples,
        so that whole triples stay available; least recently freed first."""
        def rank(r: int) -> int:
            if r >= 12:
                return 0
            k = r - r % 3
            return 1 if not ({k, k + 1} <= self.free) else 2
        cands = [r for r in self.order if r in self.free]
        if not cands:
            raise CompileError("out of VXM registers (compiler limitation)", "registers")
        r = min(cands, key=lambda x: (rank(x), cands.index(x)))
        self.free.discard(r)
        self.order.remove(r)
        return r

    def triple(self) -> int:
        """A free triple, least recently freed first (a product's per-tile constants go to
        another triple than the previous tile's, so that loading them does not wait for
        that tile's last use)."""
        pos = {r: j for j, r in enumerate(self.order)}
        cands = [k for k in TRIPLES if k in self.free and k + 1 in self.free]
        if not cands:
            raise CompileError("out of VXM register triples (compiler limitation)",
                               "registers")
        k = min(cands, key=lambda k: max(pos[k], pos[k + 1]))
        self.free -= {k, k + 1}
        self.order.remove(k)
        self.order.remove(k + 1)
        return k

    def release(self, *rs: int) -> None:
        for r in rs:
            assert r not in self.free and r not in ZEROS, r
            self.free.add(r)
            self.order.append(r)

    def release_triple(self, k: int) -> None:
        self.release(k, k + 1)


class Slots:
    """MXM accumulator slots of one MXM, reused first-in first-out."""

    def __init__(self, mxm: str):
        self.mxm = mxm
        self.free = deque(range(MXM_ACC_SLOTS))

    def take(self, n: int = 1) -> list[int]:
        if len(self.free) < n:
            raise CompileError(f"{self.mxm}: needs {n} live accumulator slots, "
                               f"{len(self.free)} of {MXM_ACC_SLOTS} free", "accumulators")
        return [self.free.popleft() for _ in range(n)]

    def scratch(self) -> int:
        if not self.free:
            raise CompileError(f"{self.mxm}: no free accumulator slot (all "
                               f"{MXM_ACC_SLOTS} hold live accumulations)", "accumulators")
        s = self.free.popleft()
        self.free.append(s)
        return s

    def give(self, slots) -> None:
        self.free.extend(slots)
