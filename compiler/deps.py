"""Dependency edges from the program order of bundles.

The lowering writes a *sequential* program: a list of bundles whose meaning is the one
they have when executed one after the other.  :class:`DepTracker` walks that list and
records, for every piece of state an op touches, the edges that keep that meaning when
the scheduler moves bundles in time (``t_succ >= t_pred + delta``, in issue cycles):

==============================  =====  =====  =====
state                            RAW    WAR    WAW
==============================  =====  =====  =====
VXM register (L = 3)             +4     -3     +1
SRAM address (same slice)        +2     +1     +1
MXM accumulator slot             +1     +1     +1
SXM map / transposer row         +2     +1     +1
==============================  =====  =====  =====

(a VXM register written by an op issued in ``t`` is visible from ``t + 4``; a reader
issued up to ``t + 3`` still sees the old value, hence WAR -3; an SRAM write issued in
``t`` happens in ``t + 1``, a read of that bank in ``t + 1`` is a bank conflict.)

MXM weights: an :class:`Install` is a set of loads into the shadow buffer, one ``IW`` and
the MVMs that use it.  Loads follow the previous install's IW (+1), the IW follows its
loads (+L) and every MVM of the previous install (+1), MVMs follow their IW (+1).
"""

from __future__ import annotations

from .ir import Bundle, Op

RAW, WAR, WAW = 0, 1, 2
DELTAS = {"reg": (4, -3, 1), "sram": (2, 1, 1), "acc": (1, 1, 1), "map": (2, 1, 1)}


class Install:
    """One set of weights for one MXM (see the module docstring)."""

    __slots__ = ("mxm", "key", "prev", "loads", "iw", "mvms")

    def __init__(self, mxm: str, key):
        self.mxm = mxm
        self.key = key
        self.prev: Install | None = None
        self.loads: list[tuple[Bundle, int, int]] = []
        self.iw: tuple[Bundle, int] | None = None
        self.mvms: list[tuple[Bundle, int]] = []

    def __repr__(self) -> str:
        return f"Install({self.mxm}, {self.key})"


class DepTracker:
    def __init__(self):
        self.state: dict[tuple, list] = {}  # key -> [writer (bundle, off) | None, readers]
        self.active: dict[str, Install | None] = {}
        self.pending: dict[str, Install | None] = {}
        self.n_edges = 0

    def _edge(self, src: tuple[Bundle, int], dst: Bundle, off: int, delta: int) -> None:
        sb, soff = src
        if sb is dst:
            if off < soff + delta:
                raise AssertionError(f"{dst.name}: intra-bundle dependency violated "
                                     f"({soff} + {delta} > {off})")
            return
        dst.preds.append((sb, soff, off, delta))
        self.n_edges += 1

    def _access(self, cls: str, key, b: Bundle, op: Op, write: bool) -> None:
        raw, war, waw = DELTAS[cls]
        st = self.state.get((cls, key))
        if st is None:
            st = self.state[(cls, key)] = [None, []]
        me = (b, op.off)
        if not write:
            if st[0] is not None:
                self._edge(st[0], b, op.off, raw)
            st[1].append(me)
        else:
            for r in st[1]:
                if r[0] is not b or r[1] != op.off:
                    self._edge(r, b, op.off, war)
            if st[0] is not None:
                self._edge(st[0], b, op.off, waw)
            st[0] = me
            st[1] = []

    def add(self, b: Bundle) -> None:
        for op in sorted(b.ops, key=lambda o: o.off):
            for key in op.sram_r:
                self._access("sram", key, b, op, False)
            for r in op.reg_r:  # each VXM group has registers of its own
                self._access("reg", (op.slice, r), b, op, False)
            if op.acc_r is not None:
                self._access("acc", op.acc_r, b, op, False)
            for key in op.map_r:
                self._access("map", key, b, op, False)
            for key in op.sram_w:
                self._access("sram", key, b, op, True)
            for r in op.reg_w:
                self._access("reg", (op.slice, r), b, op, True)
            if op.acc_w is not None:
                self._access("acc", op.acc_w, b, op, True)
            for key in op.map_w:
                self._access("map", key, b, op, True)
            if op.install is not None:
                self._mxm(b, op)

    def _mxm(self, b: Bundle, op: Op) -> None:
        ins: Install = op.install
        m = ins.mxm
        me = (b, op.off)
        if op.role in ("load", "iw") and ins.iw is None and ins not in (self.pending.get(m),):
            if self.pending.get(m) is not None:
                raise AssertionError(f"{m}: install {ins.key} starts while "
                                     f"{self.pending[m].key} is still loading")
            self.pending[m] = ins
            ins.prev = self.active.get(m)
        if op.role == "load":
            if ins.prev is not None and ins.prev.iw is not None:
                self._edge(ins.prev.iw, b, op.off, 1)
            ins.loads.append((b, op.off, op.lat))
        elif op.role == "iw":
            for lb, loff, lat in ins.loads:
                self._edge((lb, loff), b, op.off, lat)
            if ins.prev is not None:
                for mv in ins.prev.mvms:
                    self._edge(mv, b, op.off, 1)
                if ins.prev.iw is not None:
                    self._edge(ins.prev.iw, b, op.off, 1)
            ins.iw = me
            self.active[m] = ins
            self.pending[m] = None
        elif op.role == "mvm":
            if self.active.get(m) is not ins:
                raise AssertionError(f"{b.name}: MVM on {m} uses install {ins.key} which is "
                                     f"not the active one ({self.active.get(m)})")
            self._edge(ins.iw, b, op.off, 1)
            ins.mvms.append(me)
