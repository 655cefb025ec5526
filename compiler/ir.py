"""The compiler's intermediate form: *bundles* of machine instructions tied by streams.

A :class:`Bundle` is a small set of instructions (:class:`Op`) on several slices whose
relative issue cycles are fixed, because they pass values to each other on streams: a
value written by the slice at ``p`` in cycle ``t + L`` is read by a consumer at distance
``d`` exactly in cycle ``t + L + d`` (docs/isa.md).  A :class:`Wire` is one such value:
``n`` byte planes on consecutive streams ``base..base+n-1`` of one direction, each plane
driven by one instruction's output port and read by one or more input ports.  The stream
index ``base`` is chosen by the scheduler.

Every op also declares the *state* it reads and writes (SRAM addresses, VXM registers,
MXM accumulator slots, MXM weight installs); :mod:`compiler.deps` turns the program order
of bundles into dependency edges from these.
"""

from __future__ import annotations

from arch.isa import (
    SEL_IMM,
    SEL_LANE,
    SEL_NONE,
    SEL_REG,
    TYPE_BYTES,
    TYPES,
    VXM_OP_BY_NAME,
    Instr,
    sel_stream,
)

from .errors import CompileError

E, W = 0, 1


class Wire:
    """A value on ``n`` consecutive streams of one direction inside a bundle."""

    __slots__ = ("n", "tag", "drivers", "taps", "dir", "base", "spans")

    def __init__(self, n: int, tag: str):
        self.n = n
        self.tag = tag
        self.drivers: list[tuple[Op, str, int, int]] = []  # (op, port, first plane, count)
        self.taps: list[tuple[Op, str, int, int]] = []
        self.dir: int | None = None
        self.base: int | None = None
        #: per plane, the stream registers that hold it (`Bundle.finalize`): (diagonal,
        #: first position, last position); the value is at position p in the cycle
        #: (relative to the bundle) diagonal + p eastward, diagonal - p westward
        self.spans: list[tuple[int, int, int]] = []


class Op:
    """One instruction of a bundle (MXM loads and MVMs are separate ops; the emitter merges
    an MVM and a load issued in the same cycle into one ``MVM ..., lw=`` word)."""

    __slots__ = ("slice", "pos", "kind", "mn", "lat", "fields", "ports", "off", "vx",
                 "sram_r", "sram_w", "reg_r", "reg_w", "acc_r", "acc_w", "install",
                 "role", "banks_r", "bank_w", "bundle", "cycle", "note", "purpose", "map_r",
                 "map_w", "subs")

    def __init__(self, slice_: str, pos: int, kind: str, mn: str, lat: int, **fields):
        self.slice = slice_
        self.pos = pos
        self.kind = kind
        self.mn = mn
        self.lat = lat
        #: the issue sub-slots it takes (`op_slots`)
        self.subs = _MXM_SUBS[mn] if kind == "MXM" else ("i",)
        self.fields = fields
        #: port name -> (width, wire, first plane, is output)
        self.ports: dict[str, tuple[int, Wire | None, int, bool]] = {}
        self.off: int | None = None
        self.vx: dict | None = None
        #: the state it reads and writes (`compiler.deps`): SRAM words (slice, address),
        #: VXM registers, MXM accumulator slots, SXM permutation maps (slice, index) and
        #: transposer rows (slice, ("T", row)); tuples, replaced (not appended to) by
        #: `compiler.ops`, so that an op without them shares the empty one
        self.sram_r: tuple[tuple[str, int], ...] = ()
        self.sram_w: tuple[tuple[str, int], ...] = ()
        self.reg_r: tuple[int, ...] = ()
        self.reg_w: tuple[int, ...] = ()
        self.acc_r: tuple[str, int] | None = None
        self.acc_w: tuple[str, int] | None = None
        self.map_r: tuple[tuple[str, object], ...] = ()
        self.map_w: tuple[tuple[str, object], ...] = ()
        self.install = None
        self.role: str | None = None  # MXM: "load", "iw", "mvm"
        self.banks_r: tuple[int, ...] = ()
        self.bank_w: int | None = None
        self.bundle: Bundle | None = None
        self.cycle: int | None = None
        self.note = ""
        #: MVM: "matmul" (the model's own products) or the overhead kind (ops.MVM_PURPOSES)
        self.purpose: str | None = None

    def port(self, name: str, width: int, out: bool) -> None:
        self.ports[name] = (width, None, 0, out)

    def stream_of(self, name: str) -> tuple[int, int]:
        width, wire, plane, out = self.ports[name]
        return wire.base + plane, wire.dir

    # -- encoding -------------------------------------------------------------------------
    def instr(self) -> Instr:
        return Instr(self.mn, self.instr_fields())

    def instr_fields(self) -> dict:
        f = dict(self.fields)
        vxm = self.mn == "VXM"
        for name, (_width, wire, plane, _out) in self.ports.items():
            if vxm and name in ("a", "b", "c", "d"):
                continue
            f[_S[name]], f[_D[name]] = wire.base + plane, wire.dir
        if vxm:
            f.update(self._vxm_fields())
        if self.mn == "MVM" and not f.get("emit"):
            f.pop("out_s", None)
            f.pop("out_d", None)
        return f

    def _vxm_fields(self) -> dict:
        vx = self.vx
        out = {"type": TYPES.index(vx["type"]), "otype": TYPES.index(vx["otype"]),
               "sat": int(vx["sat"]), "op1": VXM_OP_BY_NAME[vx["op1"]].code,
               "op2": VXM_OP_BY_NAME[vx["op2"]].code, "imm": 0}
        for k in "abcd":
            spec = vx.get(k)
            if spec is None:
                out[k] = SEL_NONE
            elif spec[0] == "port":
                s, d = self.stream_of(k)
                out[k] = sel_stream(s, d)
            elif spec[0] == "reg":
                out[k] = SEL_REG + spec[1]
            elif spec[0] == "imm":
                out[k] = SEL_IMM
                out["imm"] = spec[1]
            elif spec[0] == "lane":
                out[k] = SEL_LANE
        return out

    def __repr__(self) -> str:
        return f"Op({self.slice} {self.mn} off={self.off} {self.fields})"


class Bundle:
    """Instructions with fixed relative timing (see the module docstring)."""

    __slots__ = ("name", "kind", "ops", "wires", "ties", "span", "index", "t0", "preds",
                 "succs", "prio", "placed", "earliest")

    def __init__(self, name: str, kind: str):
        self.name = name
        self.kind = kind
        self.ops: list[Op] = []
        self.wires: list[Wire] = []
        #: fixed timings that are not streams: (op a, op b, delta): b issues delta after a
        self.ties: list[tuple[Op, Op, int]] = []
        self.span = 0
        self.index = -1
        self.t0: int | None = None
        #: dependency edges: (pred bundle, pred op offset, my op offset, delta):
        #: t0 + my_off >= pred.t0 + pred_off + delta
        self.preds: list[tuple[Bundle, int, int, int]] = []
        self.succs: list[Bundle] = []
        self.prio = 0
        self.placed = False
        #: the bundle may not start before this cycle (a RECV of a message that arrives
        #: then: `compiler.pipeline`)
        self.earliest = 0

    def add(self, op: Op) -> Op:
        op.bundle = self
        self.ops.append(op)
        return op

    # -- wiring ----------------------------------------------------------------------------
    def wire(self, n: int, tag: str | None = None) -> Wire:
        w = Wire(n, tag or f"{self.kind}.{len(self.wires)}")
        self.wires.append(w)
        return w

    def drive(self, w: Wire, plane: int, op: Op, port: str) -> None:
        width, _, _, out = op.ports[port]
        assert out, (op, port)
        assert plane + width <= w.n, (op, port, plane, w.n)
        op.ports[port] = (width, w, plane, True)
        w.drivers.append((op, port, plane, width))

    def tap(self, w: Wire, plane: int, op: Op, port: str) -> None:
        width, _, _, out = op.ports[port]
        assert not out, (op, port)
        assert plane + width <= w.n, (op, port, plane, w.n)
        op.ports[port] = (width, w, plane, False)
        w.taps.append((op, port, plane, width))

    def connect(self, src: Op, sport: str, dst: Op, dport: str, plane: int = 0,
                tag: str | None = None) -> Wire:
        """Wire src's output port to dst's input port (dst reads planes plane.. of it)."""
        w = self.wire(src.ports[sport][0], tag)
        self.drive(w, 0, src, sport)
        self.tap(w, plane, dst, dport)
        return w

    def tie(self, a: Op, b: Op, delta: int) -> None:
        """``b`` issues exactly ``delta`` cycles after ``a`` (a timing no stream carries: a
        C2C message's RECV at its SEND's arrival)."""
        self.ties.append((a, b, delta))

    # -- timing ----------------------------------------------------------------------------
    def finalize(self) -> None:
        """Compute op offsets from the wires (producer + L + distance = consumer), the
        direction and register span of every wire plane; normalise offsets to start at 0."""
        ops = self.ops
        links: dict[int, list[tuple[Op, int]]] = {id(op): [] for op in ops}
        drivers_of = []  # per wire: plane -> driving op
        for w in self.wires:
            by_plane: dict[int, Op] = {}
            for op, _port, p0, cnt in w.drivers:
                for p in range(p0, p0 + cnt):
                    assert p not in by_plane, f"{self.name}: plane {p} driven twice"
                    by_plane[p] = op
            drivers_of.append(by_plane)
            dirs = set()
            for cop, _port, p0, cnt in w.taps:
                cl = links[id(cop)]
                for p in range(p0, p0 + cnt):
                    pop = by_plane.get(p)
                    if pop is None:
                        raise AssertionError(f"{self.name}: wire {w.tag} plane {p} has no driver")
                    dist = cop.pos - pop.pos
                    if dist == 0:
                        raise CompileError(
                            f"{self.name}: {pop.slice} would feed itself (a stream between "
                            f"two instructions of one slice); with fewer than 4 MEM slices "
                            f"on a side an int32 is stored in the relay layout through that "
                            f"side's SXM, so an SXM result cannot go there: use a config "
                            f"with >= 4 MEM slices per hemisphere", "shape", True)
                    dirs.add(E if dist > 0 else W)
                    delta = pop.lat + abs(dist)
                    links[id(pop)].append((cop, delta))
                    cl.append((pop, -delta))
            if not dirs:  # only drivers: direction given by the tag's preset
                dirs = {w.dir if w.dir is not None else E}
            assert len(dirs) == 1, f"{self.name}: wire {w.tag} taps on both sides"
            w.dir = dirs.pop()
        for a, b, delta in self.ties:
            links[id(a)].append((b, delta))
            links[id(b)].append((a, -delta))
        # propagate offsets, first from ops whose offset the builder preset
        preset = [op for op in ops if op.off is not None]
        for op in preset + [o for o in ops if o.off is None]:
            if op.off is not None and op not in preset:
                continue
            if op.off is None:
                op.off = 0
            stack = [op]
            while stack:
                cur = stack.pop()
                for nxt, delta in links[id(cur)]:
                    want = cur.off + delta
                    if nxt.off is None:
                        nxt.off = want
                        stack.append(nxt)
                    elif nxt.off != want:
                        raise AssertionError(f"{self.name}: inconsistent timing at {nxt.slice} "
                                             f"{nxt.mn}: {nxt.off} vs {want}")
        lo = min(op.off for op in ops)
        if lo:
            for op in ops:
                op.off -= lo
        used = set()
        for op in ops:
            for sub in op_slots(op):
                key = (op.slice, sub, op.off)
                if key in used:
                    raise AssertionError(f"{self.name}: two instructions on {op.slice} in "
                                         f"relative cycle {op.off}")
                used.add(key)
        self.span = max(op.off + max(op.lat, 0) for op in ops)
        # register spans
        for w, by_plane in zip(self.wires, drivers_of, strict=True):
            far: dict[int, int] = {}
            for cop, _port, p0, cnt in w.taps:
                for p in range(p0, p0 + cnt):
                    d = abs(cop.pos - by_plane[p].pos)
                    if d > far.get(p, 0):
                        far[p] = d
            east = w.dir == E
            spans = []
            for p in range(w.n):
                op = by_plane.get(p)
                if op is None:
                    raise AssertionError(f"{self.name}: wire {w.tag} plane {p} undriven")
                n = far.get(p, 1)  # a plane nobody reads still occupies the next register
                wcyc = op.off + op.lat
                if east:  # positions pos+1 .. pos+n in cycles wcyc+1 .. wcyc+n
                    spans.append((wcyc - op.pos, op.pos + 1, op.pos + n))
                else:  # positions pos-1 .. pos-n in cycles wcyc+1 .. wcyc+n
                    spans.append((wcyc + op.pos, op.pos - n, op.pos - 1))
            w.spans = spans

    def __repr__(self) -> str:
        return f"Bundle({self.name}, {len(self.ops)} ops)"


class _Suffixed(dict):
    """port name -> the name of its stream (direction) field: ``{port}_s`` (``{port}_d``)."""

    def __init__(self, suffix: str):
        super().__init__()
        self.suffix = suffix

    def __missing__(self, port: str) -> str:
        self[port] = name = f"{port}{self.suffix}"
        return name


_S, _D = _Suffixed("_s"), _Suffixed("_d")


def type_width(t: str) -> int:
    return TYPE_BYTES[t]


_MXM_SUBS = {"MVM": ("m",), "LW": ("l",), "LWT": ("l",), "IW": ("m", "l")}
#: MEM sub-slots on configs with ``mem_read_write``: a READ and a WRITE per cycle (one
#: ``READ ..., w=`` word); GATHER and SCATTER take the whole cycle
MEM_RW_SUBS = {"READ": ("r",), "WRITE": ("w",), "GATHER": ("r", "w"), "SCATTER": ("r", "w")}


def op_slots(op: Op) -> tuple[str, ...]:
    """Issue sub-slots an op takes: MXMs issue an MVM and a weight load per cycle, MEM
    slices with ``mem_read_write`` a READ and a WRITE (`Ops` sets them), others one op."""
    return op.subs
