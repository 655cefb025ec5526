"""The program builder every lowering shares: bundles in program order, SRAM and
register allocation, host constants, MXM weight installs.

A lowering (one op kind, or a whole model) calls these to append `Bundle` s; the list
scheduler (`compiler.schedule`) then places them at exact cycles.  What the builder
tracks across bundles:

* ``bundles`` -- program order, each finalised (op offsets) and registered with the
  dependency tracker (`compiler.deps`);
* ``mem`` (`compiler.alloc.Sram`) -- tensors in MEM SRAM; ``init`` -- what the host writes
  before start (weights, tables, constants), deduplicated for register constants;
* ``regs`` -- the VXM registers (singles and multiplier/shift triples) of the VXM group
  being lowered onto (`vxm_group`: each group has 16 of its own);
* per MXM: accumulator ``slots``, the ``active`` weight install and what its two weight
  buffers hold (``buf``), so that re-installing the same weights costs nothing and rows
  the shadow buffer already holds are not loaded again;
* ``kept`` -- intermediates left in SRAM for read-back (``keep``), ``released`` -- SRAM
  given back for reuse (``keep=False``).
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np

from arch.config import TspConfig
from arch.isa import SIGNED_TYPE

from . import tiling as T
from .alloc import ZEROS, Regs, Slots, Sram, Tensor
from .deps import DepTracker, Install
from .errors import CompileError
from .ir import Bundle, op_slots
from .ops import Ops
from .routes import planes_in
from .schedule import slots_free_from


class ProgramBuilder:
    """Shared state and primitives of the lowerings (see the module docstring)."""

    def __init__(self, cfg: TspConfig, *, keep: bool = True, rigid_loads: bool = True,
                 mxms: tuple[str, ...] | None = None):
        self.cfg = cfg
        self.vl = cfg.vector_length
        self.keep = keep
        #: the program runs again and again (decode steps): the host's constants (weights,
        #: tables) are loaded once and must survive every run, so they are never released
        self.reruns = False
        self.rigid_loads = rigid_loads  # weight rows in consecutive cycles (compact code)
        mxms = tuple(mxms) if mxms is not None else tuple(s.name for s in cfg.slices_of("MXM"))
        self.O = Ops(cfg)
        self.mem = Sram(cfg)
        #: the VXM groups (slice names) and, per group, its registers, the VXM ops given
        #: to it so far (ties in `vxm_soonest`; counted with more than one group) and
        #: whether its zero registers are set yet
        self.vxm_groups = tuple(s.name for s in cfg.slices_of("VXM"))
        self._regs = {g: Regs() for g in self.vxm_groups}
        self.vxm_load = dict.fromkeys(self.vxm_groups, 0)
        self._zeroed: set[str] = set()
        #: a rough schedule made as bundles are emitted (in program order, each at the first
        #: cycle its dependencies and issue slots allow; no streams or banks): per bundle
        #: its start, per issue slot the cycles taken (a bit set), per VXM group the cycle
        #: of its last op -- what `vxm_group` and `vxm_soonest` choose by (a group whose
        #: registers an earlier, late-running op still holds would make new work wait)
        self._est: dict[int, int] = {}
        self._slot_taken: dict[tuple, int] = {}
        self.vxm_busy = dict.fromkeys(self.vxm_groups, 0)
        self.deps = DepTracker()
        self.bundles: list[Bundle] = []
        self.slots = {m: Slots(m) for m in mxms}
        self.active: dict[str, Install | None] = dict.fromkeys(mxms)
        #: per MXM: [active, shadow] weight buffer contents ("row"/"col", index -> source)
        self.buf = {m: [("row", {}), ("row", {})] for m in mxms}
        self.init: dict[tuple[str, int], np.ndarray] = {}
        #: host-initialised vectors the program itself rewrites (a KV cache): never
        #: assumed to still hold their initial value
        self.volatile: set[tuple[str, int]] = set()
        self.kept: dict[str, tuple] = {}  # intermediate name -> (kind, tensor(s), meta)
        self.kept_src: dict[str, list[str]] = {}  # intermediate -> names of its tensors
        self.released: set[str] = set()
        self._consts: dict[bytes, Tensor] = {}
        self._zero: dict[str, tuple[str, int]] = {}
        self.const_values: list[tuple[str, np.ndarray]] = []
        #: weight tiles each MXM has been given so far (`linear_rows` starts a product on
        #: the least loaded)
        self.mxm_load: dict[str, int] = {}
        #: per graph node: what its `OpKind.prepare` / `reserve` allocated (tables, weights)
        self.state: dict[str, dict] = {}
        self.table_slices: list[str] = []  # slices holding a Gather table
        #: tensor name -> slices it must not go to (e.g. a KV cache's: its SCATTER reads
        #: the step's k and v from another slice)
        self.avoid: dict[str, list[str]] = {}
        #: names of the tensors the node being lowered reads last (`release_dying`)
        self.dying: set[str] = set()
        #: what several ops of one program share, made by the first that needs it (keyed
        #: by the op: e.g. the masked input planes of products that read one tensor)
        self.shared: dict = {}
        self.graph = None  # the graph being lowered (`compiler.graph.lower_graph`)
        #: one program of an SPMD set (`compiler.parallel`): no lowering decision may
        #: depend on a constant's value (every register constant an int32 SRAM load, none
        #: shared), so that every chip's program has the same bundles
        self.spmd = False
        self.pos: dict[str, tuple[str, int]] | None = None  # `position_vectors`

    @property
    def regs(self) -> Regs:
        """The registers of the VXM group being lowered onto."""
        return self._regs[self.O.vxm_slice]

    @contextmanager
    def use_vxm(self, group: str):
        """The body's VXM ops (`Ops.vxm`) and registers (`regs`) are VXM group ``group``'s
        (a slice name).  Its zero registers (`ZEROS`) are set the first time it is used."""
        prev = self.O.vxm_slice
        self.O.vxm_slice = group
        try:
            if group not in self._zeroed:
                self._zeroed.add(group)
                for z in ZEROS:  # REQUANT's zero point; 0 - x
                    self.set_imm(z, 0, "zero")
            yield group
        finally:
            self.O.vxm_slice = prev

    def zero_registers(self, group: str | None = None) -> None:
        """Set a group's zero registers now (the first group's by default), rather than when
        `use_vxm` first switches to it."""
        with self.use_vxm(group or self.vxm_groups[0]):
            pass

    @contextmanager
    def vxm_group(self):
        """Lower the body (a graph node) onto the VXM group the rough schedule has free
        soonest (`vxm_soonest`); a lowering may deal independent chains to the other groups
        (`pool`).  The body gives back every register it takes, in every group (a chain of
        register ops stays in one group; groups pass values on the streams)."""
        g = min(self.vxm_groups, key=self._soonest)
        held = {k: set(r.free) for k, r in self._regs.items()}
        with self.use_vxm(g):
            yield g
        kept = {k: sorted(held[k] - r.free) for k, r in self._regs.items() if r.free != held[k]}
        if kept:
            raise AssertionError(f"a lowering kept VXM registers past its node: {kept}")

    def _soonest(self, g: str) -> tuple[int, int]:
        return self.vxm_busy[g], self.vxm_load[g]

    def vxm_soonest(self) -> str:
        """The VXM group the rough schedule has free soonest: where the next independent
        chain goes (the estimate moves on as its bundles are emitted)."""
        return min(self.vxm_groups, key=self._soonest)

    def pool(self, consts=None) -> VxmPool:
        """A `VxmPool` over this builder's VXM groups."""
        return VxmPool(self, consts)

    def _estimate(self, b: Bundle) -> None:
        """Start ``b`` in the rough schedule (see ``_est``)."""
        t = 0
        for p, poff, off, d in b.preds:
            t = max(t, self._est.get(id(p), 0) + poff + d - off)
        keys = [((op.slice, s), op.off) for op in b.ops for s in op_slots(op)]
        taken = self._slot_taken
        t = slots_free_from(taken, keys, t)
        for k, off in keys:
            taken[k] = taken.get(k, 0) | (1 << (t + off))
        self._est[id(b)] = t
        for op in b.ops:
            if op.kind == "VXM":
                self.vxm_busy[op.slice] = max(self.vxm_busy[op.slice], t + op.off)
                self.vxm_load[op.slice] += 1

    def emit(self, b: Bundle) -> Bundle:
        b.finalize()
        self.deps.add(b)
        self.bundles.append(b)
        if len(self.vxm_groups) > 1:
            self._estimate(b)
        return b

    def const(self, name: str, vectors: dict, planes: int = 1, side_: str | None = None,
              slices=None, exclude=()) -> Tensor:
        """Allocate a tensor the host writes before start (vectors: key -> (planes, VL))."""
        t = self.mem.tensor(name, list(vectors), planes, side_, slices, exclude, const=True)
        for key, data in vectors.items():
            key = key if isinstance(key, tuple) else (key,)
            data = np.asarray(data, np.uint8).reshape(planes, self.vl)
            for p, loc in enumerate(t.locs[key]):
                self.init[loc] = data[p]
        return t

    def zero_loc(self, sd: str) -> tuple[str, int]:
        if sd not in self._zero:
            t = self.const(f"zero.{sd}", {(0,): np.zeros(self.vl, np.uint8)}, 1, sd)
            self._zero[sd] = t.loc(0)
        return self._zero[sd]

    def vx_bundle(self, name: str, *args, **kw) -> Bundle:
        """A bundle with one register-to-register VXM op."""
        b = Bundle(name, "vxm")
        self.O.vxm(b, *args, **kw)
        return self.emit(b)

    def set_imm(self, r: int, value: int, name: str = "") -> None:
        self.vx_bundle(f"r{r} = {value} {name}", "i32", ("r", r), "PASS", int(value))

    def reg_const(self, r: int, values, name: str) -> None:
        """Load a per-lane int32 constant into register r: an immediate if uniform and
        small, else from SRAM with the narrowest type that holds it (``VXM.i8/i16/i32 rK:i32
        = s`` sign-extends), so int8 shifts cost one READ and int16 biases two."""
        v = np.asarray(values, np.int64)
        if not self.spmd and np.all(v == v[0]) and -16384 <= v[0] <= 16383:
            self.set_imm(r, int(v[0]), name)
            return
        nb, t = self.const_vec(name, v)
        typ = SIGNED_TYPE[nb]
        b = Bundle(f"r{r} <- {name}", "regload")
        op = self.O.vxm(b, typ, ("r", r), "PASS", "s", otype="i32")
        planes_in(self.O, b, t[(0,)], op, "a")
        self.emit(b)

    def const_vec(self, name: str, v: np.ndarray) -> tuple[int, Tensor]:
        nb = 1 if v.min() >= -128 and v.max() <= 127 else (
            2 if v.min() >= -32768 and v.max() <= 32767 else 4)
        key = bytes([nb]) + v.astype("<i4").tobytes()
        if self.spmd:
            nb, key = 4, ("spmd", len(self._consts))
        t = self._consts.get(key)
        if t is None:
            t = self.const(f"c.{name}.{len(self._consts)}", {(0,): T.bytes_of(v, nb)}, nb)
            self._consts[key] = t
            self.const_values.append((name, v))
        return nb, t

    def install(self, mxm: str, key, rows, transposed: bool = False, *,
                stream: tuple[int, set[str]] | None = None) -> Install:
        """Load rows [(row, (slice, addr))] into the shadow weights and install them
        (nothing if the same weights are active).  ``stream``: ``(mvms, sides)``, the
        install serves that many MVMs whose inputs are read on those sides
        (`load_width`)."""
        act = self.active[mxm]
        if act is not None and act.key == key:
            return act
        ins = Install(mxm, key)
        mode, have = self.buf[mxm][1]
        want = "col" if transposed else "row"
        if mode == want:  # rows the shadow buffer already holds (same constant) stay
            rows = [(r, src) for r, src in rows if have.get(r) != src]
        self.load_block(f"{mxm} {key} loads", mxm, ins, rows, transposed,
                        width=self.load_width(rows, stream))
        self.activate(mxm, ins)
        return ins

    def load_width(self, rows, stream: tuple[int, set[str]] | None) -> int:
        """Rows per load for weight rows [(row, (slice, addr))] installed for ``stream``
        (see `install`: the MVMs and the sides their inputs are on): ``cfg.mxm_load_rows``,
        unless the loads would take every MEM read port of the side that all the MVMs'
        inputs are read on (a load of ``k`` rows reads ``k`` slices in one cycle, each MVM
        one more; inputs dealt over both sides leave each side half): then the widest
        divisor of ``mxm_load_rows`` that leaves a port free, if its loads still fit under
        the MVMs (so that each of the install's MVMs can overlap a load of the next
        install instead of waiting for the ports)."""
        k = self.cfg.mxm_load_rows
        if stream is None or not rows or k == 1:
            return k
        mvms, x_sides = stream
        side = self.cfg.slice(rows[0][1][0]).hemisphere
        ports = len(self.mem.side[side])
        if x_sides != {side} or k < ports:
            return k
        for d in range(min(k - 1, ports - 1), 0, -1):
            if k % d == 0 and -(-len(rows) // d) <= mvms:
                return d
        return k

    def note_load(self, mxm: str, row: int, src, transposed: bool) -> None:
        """Track what the shadow buffer holds: row (LW) or column (LWT) -> the constant
        SRAM vector loaded there (host constants never change), else unknown."""
        mode, have = self.buf[mxm][1]
        want = "col" if transposed else "row"
        if mode != want:
            have = {}
            self.buf[mxm][1] = (want, have)
        if src is not None and src in self.init and src not in self.volatile:
            have[row] = src
        else:
            have.pop(row, None)

    def load_chunks(self, rows, width: int | None = None
                    ) -> list[list[tuple[int, tuple[str, int]]]]:
        """Weight rows [(row, (slice, addr))] cut into the loads that write them: runs of
        consecutive rows in one aligned group of ``width`` (a divisor of, by default,
        ``cfg.mxm_load_rows``), each from another MEM slice of one hemisphere (one READ
        per slice feeds each stream of the load)."""
        k = width or self.cfg.mxm_load_rows
        chunks: list[list] = []
        for row, src in rows:
            c = chunks[-1] if chunks else None
            if (c is not None and row == c[-1][0] + 1 and row // k == c[0][0] // k
                    and src[0] not in {s for _r, (s, _a) in c}
                    and self.cfg.slice(src[0]).hemisphere
                    == self.cfg.slice(c[0][1][0]).hemisphere):
                c.append((row, src))
            else:
                chunks.append([(row, src)])
        return chunks

    def _load_ops(self, b: Bundle, mxm: str, ins: Install, chunk, transposed: bool):
        """One load of ``chunk``'s rows, its planes read by one READ each."""
        ld = self.O.load(b, mxm, chunk[0][0], ins, transposed, len(chunk))
        w = b.wire(len(chunk), f"ld.{mxm}")
        for j, (_row, (s, a)) in enumerate(chunk):
            b.drive(w, j, self.O.read(b, s, a), "out")
        b.tap(w, 0, ld, "w")
        return ld

    def load_block(self, name: str, mxm: str, ins: Install, rows, transposed=False,
                   width: int | None = None) -> None:
        """Weight rows [(row, (slice, addr))] loaded in consecutive cycles (`load_chunks`
        rows per cycle, ``width`` at most): one rigid bundle, so that its READs and loads
        always compress into single REPEAT runs."""
        for row, src in rows:
            self.note_load(mxm, row, src, transposed)
        if not rows:
            return
        chunks = self.load_chunks(rows, width)
        if not self.rigid_loads:
            for chunk in chunks:
                b = Bundle(f"{name} {chunk[0][0]}", f"ld.{mxm}")
                self._load_ops(b, mxm, ins, chunk, transposed)
                self.emit(b)
            return
        b = Bundle(name, f"ld.{mxm}")
        for k, chunk in enumerate(chunks):
            self._load_ops(b, mxm, ins, chunk, transposed).off = k
        self.emit(b)

    def activate(self, mxm: str, ins: Install) -> None:
        b = Bundle(f"{mxm} {ins.key} IW", "iw")
        self.O.iw(b, mxm, ins)
        self.emit(b)
        self.active[mxm] = ins
        self.buf[mxm].reverse()

    def weights(self, name: str, w: np.ndarray, sd, stripe: int = 1, exclude=()) -> Tensor:
        """``w``'s VL x VL tiles as constants keyed ``(n, k, row)``, one allocation per tile
        spread over the slices of side ``sd`` (or of ``sd(n, k)`` per tile: the side of the
        MXM that takes it).  ``stripe`` > 1: a tile's rows dealt over that many slices in
        turn (row ``r`` in the ``r % stripe``-th; all the side's if it has fewer), so that
        MXMs loading at once rarely want one slice's single read port in the same cycle.
        ``exclude``: slices no tile may use (a tile then spans the side's others; unless
        fewer than two are left)."""
        out_t, in_t = T.ntiles(w.shape[0], self.vl), T.ntiles(w.shape[1], self.vl)
        t = Tensor(name, 1, sd if isinstance(sd, str) else "")
        for n in range(out_t):
            for k in range(in_t):
                rows = [row.view(np.uint8) for row in T.weight_rows(w, n, k, self.vl)]
                side = sd(n, k) if callable(sd) else sd
                # at least a multi-row load's worth of slices (`load_chunks`)
                ex = [s for s in self.mem.side[side] if s in exclude]
                if len(self.mem.side[side]) - len(ex) < 2:
                    ex = []  # a tile keeps at least two slices (two-row loads, room)
                m = min(max(stripe, self.cfg.mxm_load_rows), len(self.mem.side[side]) - len(ex))
                rows += [np.zeros(self.vl, np.uint8)] * (-len(rows) % m)
                tt = self.const(f"{name}[{n},{k}]", {
                    (j,): np.stack(rows[j * m:(j + 1) * m]) for j in range(len(rows) // m)},
                    m, side, exclude=ex)
                for r in range(len(rows)):
                    t.locs[(n, k, r)] = (tt[(r // m,)][r % m],)
                t.ranges += tt.ranges
        return t

    def rows_of_tile(self, n_out: int, n: int) -> int:
        return min(self.vl, n_out - n * self.vl)

    def release(self, *ts: Tensor) -> None:
        """Give the tensors' SRAM back for reuse (only with ``keep=False``; once each;
        with ``reruns`` never a host constant's)."""
        if not self.keep:
            for t in ts:
                if t.name in self.released or (self.reruns and any(
                        loc in self.init for locs in t.locs.values() for loc in locs)):
                    continue
                self.mem.release(t)
                self.released.add(t.name)

    def release_dying(self, *ts: Tensor) -> None:
        """`release` those of ``ts`` that nothing after the node being lowered reads."""
        self.release(*(t for t in ts if t.name in self.dying))

    def kv_rows(self, name: str, n: int, slice_: str | None = None,
                final: bool = False) -> tuple[Tensor, tuple[str, int]]:
        """``n`` consecutive vectors of one slice and bank (zero at load) that the program
        itself rewrites (a KV cache, written by SCATTER at ``base + p``): ``(tensor,
        (slice, base))``; a `CompileError` if no such range is free."""
        t = self.const(name, {j: np.zeros(self.vl, np.uint8) for j in range(n)}, 1,
                       slices=[slice_] if slice_ else None)
        locs = [t.loc(j) for j in range(n)]
        s, base = locs[0]
        depth = self.cfg.mem_depth
        if (any(loc != (s, base + j) for j, loc in enumerate(locs))
                or base // depth != (base + n - 1) // depth):
            raise CompileError(f"the KV cache {name} ({n} vectors) finds no contiguous "
                               f"range in one bank of a MEM slice of config "
                               f"{self.cfg.name!r} (mem_depth {depth})", "sram", final)
        self.volatile.update(locs)
        return t, (s, base)

    def position_vectors(self) -> dict[str, tuple[str, int]]:
        """The step's position ``p`` as a u8 vector (``p`` in every lane, written by the
        host per step), one copy per MEM slice: ``{slice: (slice, addr)}`` (a bundle reads
        the copy on a slice none of its other ops uses: `copy_avoiding`).  Allocated by the
        first op that asks; every op of the program shares them."""
        if self.pos is None:
            self.pos = {s: self.const(f"pos.{s}", {(0,): np.zeros(self.vl, np.uint8)}, 1,
                                      slices=[s]).loc(0)
                        for s in self.mem.side["W"] + self.mem.side["E"]}
        return self.pos

    def finish_best(self, what: str, orders=("priority", "program", "cycle")):
        """`finish` in each list-scheduling order; the fastest schedule that fits the
        instruction memory, placed again: ``(Program, Emitted)`` (the last `CompileError`
        if none fits)."""
        from .schedule import ORDERS, check_order

        orders = tuple(orders)
        if not orders:
            raise ValueError(f"{what}: orders is empty: give at least one scheduling order "
                             f"({', '.join(ORDERS)})")
        for order in orders:  # all of them before the first schedule
            check_order(order)
        best, err, last = None, None, None
        for order in orders:
            try:
                out = self.finish(what, order)
            except CompileError as exc:
                err, last = exc, None
                continue
            last = order
            if best is None or out[1].cycles < best[1][1].cycles:
                best = (order, out)
        if best is None:
            raise err
        # the bundles hold the last order's placement: place the best again if it was not
        return best[1] if best[0] == last else self.finish(what, best[0])

    def finish(self, what: str, order: str = "program"):
        """Schedule the bundles (`compiler.schedule.list_schedule`), emit every queue and
        check the instruction memory (a `CompileError` naming ``what`` if a queue is too
        long): ``(Program, Emitted)``."""
        from .schedule import list_schedule

        list_schedule(self.cfg, self.bundles, order=order)
        return self._program(what)

    def _program(self, what: str):
        """Emit the placed bundles and check the instruction memory (a `CompileError`
        naming ``what`` if a queue is too long): ``(Program, Emitted)``."""
        from arch.program import Program

        from .emit import emit
        from .errors import imem_error

        em = emit(self.cfg, self.bundles, True)
        words = {k: q.nwords for k, q in em.queues.items()}
        if not self.cfg.imem_fits(words):
            raise imem_error(what, self.cfg, words)
        return Program.from_instrs(self.cfg, {k: q.words for k, q in em.queues.items()}), em

    def finish_as(self, what: str, ref: list):
        """Place every bundle at the cycle of its counterpart in ``ref`` (the bundles of
        another chip's program of the same shapes: an SPMD schedule), checking that its
        dependencies, slots, banks and streams allow it there (streams may differ), and
        emit: ``(Program, Emitted)``; a CompileError naming the first bundle that does
        not fit."""
        from .schedule import Scheduler, _tmin

        if len(ref) != len(self.bundles):
            raise CompileError(f"{what}: {len(self.bundles)} bundles, the reference "
                               f"schedule has {len(ref)}", "schedule")
        sch = Scheduler(self.cfg)
        for i, b in enumerate(self.bundles):
            b.index, b.placed = i, False
        for b, r in zip(self.bundles, ref, strict=True):
            shape = [(op.slice, op.mn, op.off) for op in b.ops]
            if shape != [(op.slice, op.mn, op.off) for op in r.ops]:
                raise CompileError(f"{what}: bundle {b.name!r} has another shape than the "
                                   f"reference's {r.name!r}", "schedule")
            t = r.t0
            t2, choice = (None, None) if _tmin(b) > t else sch.earliest(b, t)
            if choice is None or t2 != t:
                raise CompileError(f"{what}: bundle {b.name!r} does not fit in cycle {t}, "
                                   "where the reference schedule has it", "schedule")
            sch.commit(b, t, choice)
            b.placed = True
        return self._program(what)

    def keep_as(self, name: str, kind: str, obj, meta, *tensors: Tensor) -> None:
        self.kept[name] = (kind, obj, meta)
        self.kept_src[name] = [t.name for t in tensors]

    def valid_intermediates(self) -> dict[str, tuple]:
        """The kept intermediates none of whose SRAM was reused."""
        return {k: v for k, v in self.kept.items()
                if not set(self.kept_src[k]) & self.released}


def copy_avoiding(copies: dict[str, tuple[str, int]], *slices: str) -> tuple[str, int]:
    """The location of a copy (`ProgramBuilder.position_vectors`) on none of ``slices``."""
    return next(loc for s, loc in copies.items() if s not in slices)


class VxmPool:
    """Independent register chains of one lowering dealt over the VXM groups as they come:
    each chain (`chain`) goes to the group the builder's rough schedule has free soonest
    (`ProgramBuilder.vxm_soonest`).  ``consts()`` (run inside the group) loads what
    every chain of a group reads -- its constant registers, returned as a tuple -- the first
    time a chain goes to that group; `release` gives them back.  With one VXM group the
    chains run on it one after the other, as a lowering without the pool would."""

    def __init__(self, pb: ProgramBuilder, consts=None):
        self.pb = pb
        self.make = consts
        self.consts: dict[str, tuple] = {}
        #: (key, group) -> what `each` made there
        self.made: dict[tuple, tuple] = {}
        self.main = pb.O.vxm_slice
        self.of(self.main)

    def each(self, key, make) -> tuple:
        """Per group, what ``make()`` returns (registers it takes, ...), made the first time
        ``key`` is asked for in the group being lowered onto (call it inside `chain` or
        `ProgramBuilder.use_vxm`)."""
        k = (key, self.pb.O.vxm_slice)
        if k not in self.made:
            self.made[k] = tuple(make())
        return self.made[k]

    def made_for(self, key) -> dict[str, tuple]:
        """Group -> what `each` made for ``key`` (in the order the groups were first used)."""
        return {g: v for (k, g), v in self.made.items() if k == key}

    def release_each(self, key, release, skip=()) -> None:
        """``release(made)`` inside each group that has a ``key`` (but those in ``skip``),
        which is forgotten."""
        for g, v in self.made_for(key).items():
            del self.made[(key, g)]
            if g not in skip:
                with self.pb.use_vxm(g):
                    release(v)

    def of(self, g: str) -> tuple:
        """Group g's constants (loaded now if this is its first chain)."""
        if g not in self.consts:
            with self.pb.use_vxm(g):
                self.consts[g] = tuple(self.make()) if self.make else ()
        return self.consts[g]

    @contextmanager
    def chain(self, group: str | None = None):
        """The body runs on one group (``group``, or the one free soonest); yields (group,
        its constants).  Registers the body takes from ``pb.regs`` are that group's."""
        g = group or self.pb.vxm_soonest()
        c = self.of(g)
        with self.pb.use_vxm(g):
            yield g, c

    def release(self, release, skip=()) -> None:
        """``release(constants)`` inside each group that has them (but those in ``skip``)."""
        for g, c in self.consts.items():
            if g not in skip:
                with self.pb.use_vxm(g):
                    release(c)
