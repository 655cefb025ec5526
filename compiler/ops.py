"""Constructors for the instructions the compiler emits, with their ports and state.

``Ops(cfg)`` knows the floorplan; each method adds one :class:`compiler.ir.Op` to a
bundle and records which state it touches (SRAM address, VXM registers, MXM accumulator
slot and weight install) for :mod:`compiler.deps`.
"""

from __future__ import annotations

from arch.config import TspConfig
from arch.isa import TYPE_BYTES, TYPES, VXM_OP_BY_NAME, latency

from .ir import MEM_RW_SUBS, Bundle, Op

#: why an MVM is issued: the model's own matmuls, or overhead of the lowering
MVM_PURPOSES = ("matmul", "transpose", "re-emit", "row-sum")

class Ops:
    def __init__(self, cfg: TspConfig):
        self.cfg = cfg
        self.pos = {s.name: s.index for s in cfg.slices}
        self.kind = {s.name: s.kind for s in cfg.slices}
        self.lat = {mn: latency(mn, cfg) for mn in (
            "READ", "WRITE", "GATHER", "SCATTER", "VXM", "LW", "LWT", "IW", "MVM", "SHS",
            "RMAX", "RMIN", "RSUM", "PMAP", "PERM", "SHV", "DIST", "TPUT", "TGET")}
        self.depth = cfg.mem_depth
        #: the VXM group (slice) that `vxm` puts its op on (`ProgramBuilder.use_vxm`)
        self.vxm_slice = "VXM"

    def _op(self, b: Bundle, slice_: str, mn: str, **fields) -> Op:
        op = Op(slice_, self.pos[slice_], self.kind[slice_], mn, self.lat[mn], **fields)
        if op.kind == "MEM" and self.cfg.mem_read_write:
            op.subs = MEM_RW_SUBS[mn]
        return b.add(op)

    # -- MEM ---------------------------------------------------------------------------------
    def read(self, b: Bundle, slice_: str, addr: int) -> Op:
        op = self._op(b, slice_, "READ", addr=addr)
        op.port("out", 1, True)
        op.sram_r = ((slice_, addr),)
        op.banks_r = (addr // self.depth,)
        return op

    def write(self, b: Bundle, slice_: str, addr: int) -> Op:
        op = self._op(b, slice_, "WRITE", addr=addr)
        op.port("in", 1, False)
        op.sram_w = ((slice_, addr),)
        op.bank_w = addr // self.depth
        return op

    def gather(self, b: Bundle, slice_: str, table: int) -> Op:
        """Table lookups read constant tables: no state dependencies, only bank use."""
        op = self._op(b, slice_, "GATHER", addr=table)
        op.port("idx", 1, False)
        op.port("out", 1, True)
        last = min(table + 255, self.cfg.mem_addresses - 1)
        op.banks_r = tuple(range(table // self.depth, last // self.depth + 1))
        return op

    def scatter(self, b: Bundle, slice_: str, base: int, n: int) -> Op:
        """Per-lane store at ``base + idx[lane]``: the program cannot know which of the
        ``n`` addresses ``base..base+n-1`` it writes, so it counts as writing all of them
        (dependencies); they must lie in one bank (the bank the write occupies)."""
        if base // self.depth != (base + n - 1) // self.depth:
            raise ValueError(f"SCATTER range {slice_} {base}..{base + n - 1} crosses a bank")
        op = self._op(b, slice_, "SCATTER", addr=base)
        op.port("idx", 1, False)
        op.port("in", 1, False)
        op.sram_w = tuple((slice_, a) for a in range(base, base + n))
        op.bank_w = base // self.depth
        return op

    # -- MXM ---------------------------------------------------------------------------------
    def load(self, b: Bundle, mxm: str, row: int, install, transposed: bool = False,
             n: int = 1) -> Op:
        """Shadow rows (columns) ``row..row+n-1`` <- the ``n`` planes of port ``w`` (n > 1:
        one aligned group of ``cfg.mxm_load_rows``)."""
        op = self._op(b, mxm, "LWT" if transposed else "LW", row=row, extra=n - 1)
        op.port("w", n, False)
        op.install, op.role = install, "load"
        return op

    def iw(self, b: Bundle, mxm: str, install) -> Op:
        op = self._op(b, mxm, "IW")
        op.install, op.role = install, "iw"
        return op

    def mvm(self, b: Bundle, mxm: str, slot: int, accum: bool, emit: bool, install,
            purpose: str = "matmul") -> Op:
        """``install`` None: the result does not depend on the weights (x = 0 re-emission).
        ``purpose``: "matmul" for a product of the model's own matmuls; anything else
        ("transpose", "re-emit", "row-sum") is overhead of the lowering."""
        if purpose not in MVM_PURPOSES:
            raise ValueError(f"MVM purpose must be one of {MVM_PURPOSES}, got {purpose!r}")
        op = self._op(b, mxm, "MVM", acc=slot, accum=int(accum), emit=int(emit))
        op.purpose = purpose
        op.port("x", 1, False)
        if emit:
            op.port("out", 4, True)
        if accum:
            op.acc_r = (mxm, slot)
        op.acc_w = (mxm, slot)
        op.install, op.role = install, "mvm"
        return op

    # -- SXM ---------------------------------------------------------------------------------
    def shs(self, b: Bundle, sxm: str, typ: str = "i16", n: int = 0) -> Op:
        op = self._op(b, sxm, "SHS", type=("i8", "i16", "i32", "u8").index(typ), n=n)
        op.port("in", TYPE_BYTES[typ], False)
        op.port("out", TYPE_BYTES[typ], True)
        return op

    def move(self, b: Bundle, sxm: str, mn: str, typ: str, n: int) -> Op:
        """``SHV``/``DIST`` (or ``SHS``): move lanes across the vector by ``n`` / broadcast
        lane ``n``."""
        op = self._op(b, sxm, mn, type=("i8", "i16", "i32", "u8").index(typ), n=n)
        op.port("in", TYPE_BYTES[typ], False)
        op.port("out", TYPE_BYTES[typ], True)
        return op

    def pmap(self, b: Bundle, sxm: str, index: int) -> Op:
        """Load permutation map ``index`` of ``sxm`` from a uint16 vector (two planes)."""
        op = self._op(b, sxm, "PMAP", map=index)
        op.port("in", 2, False)
        op.map_w += ((sxm, index),)
        return op

    def perm(self, b: Bundle, sxm: str, index: int, typ: str) -> Op:
        """``out[i] = in[map[i]]`` with map ``index`` (loaded by an earlier PMAP)."""
        op = self._op(b, sxm, "PERM", map=index, type=("i8", "i16", "i32", "u8").index(typ))
        op.port("in", TYPE_BYTES[typ], False)
        op.port("out", TYPE_BYTES[typ], True)
        op.map_r += ((sxm, index),)
        return op

    def tput(self, b: Bundle, sxm: str, row: int) -> Op:
        """Transposer row ``row`` of ``sxm`` <- the int8 vector on ``in``."""
        op = self._op(b, sxm, "TPUT", row=row)
        op.port("in", 1, False)
        op.map_w += ((sxm, ("T", row)),)
        return op

    def tget(self, b: Bundle, sxm: str, col: int, rows: int) -> Op:
        """``out[r] = T[r, col]`` for the first ``rows`` transposer rows (0 beyond)."""
        op = self._op(b, sxm, "TGET", col=col, rows=rows)
        op.port("out", 1, True)
        op.map_r += tuple((sxm, ("T", r)) for r in range(rows))
        return op

    def reduce(self, b: Bundle, sxm: str, mn: str, typ: str, otype: str | None = None) -> Op:
        """``RMAX``/``RMIN``/``RSUM`` over every lane, broadcast to every lane as ``otype``."""
        otype = otype or typ
        types = ("i8", "i16", "i32", "u8")
        op = self._op(b, sxm, mn, type=types.index(typ), otype=types.index(otype))
        op.port("in", TYPE_BYTES[typ], False)
        op.port("out", TYPE_BYTES[otype], True)
        return op

    # -- C2C ---------------------------------------------------------------------------------
    def send(self, b: Bundle, end: str, link: int, typ: str = "i32") -> Op:
        """``SEND.typ link, in``: one message of the type's planes; the link is busy for
        its ``w x c2c_beats`` beats (the scheduler reserves them, `Scheduler._prepare`)."""
        w = TYPE_BYTES[typ]
        op = b.add(Op(end, self.pos[end], self.kind[end], "SEND", w * self.cfg.c2c_beats,
                      link=link, type=TYPES.index(typ)))
        op.port("in", w, False)
        return op

    def recv(self, b: Bundle, end: str, link: int, typ: str = "i32") -> Op:
        """``RECV.typ link, out``: the oldest message of the link onto streams out.. (a
        bundle places it at its SEND's arrival: `lowerings.allreduce`)."""
        op = b.add(Op(end, self.pos[end], self.kind[end], "RECV", latency("RECV", self.cfg),
                      link=link, type=TYPES.index(typ)))
        op.port("out", TYPE_BYTES[typ], True)
        return op

    # -- VXM ---------------------------------------------------------------------------------
    def vxm(self, b: Bundle, typ: str, dst, op1: str, a, bb=None, op2: str = "PASS", c=None,
            otype: str | None = None, sat: bool = False) -> Op:
        """``VXM.typ dst:otype[:sat] = op2(op1(a, bb), c)``.

        Operands: ``"s"`` (a stream port of that name, connected by the caller), ``("r", k)``
        a register (of the op's VXM group, ``vxm_slice``), an ``int`` immediate, ``"lane"``;
        ``dst``: ``"s"`` or ``("r", k)``.
        """
        otype = otype or typ
        op = self._op(b, self.vxm_slice, "VXM")
        vx = {"type": typ, "otype": otype, "sat": sat, "op1": op1, "op2": op2}
        imm = None
        for k, spec in (("a", a), ("b", bb), ("c", c)):
            if spec is None:
                vx[k] = None
            elif spec == "s":
                vx[k] = ("port", k)
                op.port(k, TYPE_BYTES[typ], False)
            elif spec == "lane":
                vx[k] = ("lane",)
            elif isinstance(spec, tuple):
                vx[k] = ("reg", spec[1])
                op.reg_r += (spec[1],)
            else:
                if imm is not None and imm != spec:
                    raise ValueError(f"VXM immediates {imm} and {spec} share one field")
                imm = int(spec)
                vx[k] = ("imm", imm)
        for opname, k in ((op1, "bb"), (op2, "c")):
            if opname == "REQUANT":
                spec = vx["b" if k == "bb" else "c"]
                assert spec[0] == "reg", "REQUANT needs a register triple"
                op.reg_r += (spec[1] + 1, spec[1] + 2)
        if dst == "s":
            vx["d"] = ("port", "d")
            op.port("d", TYPE_BYTES[otype], True)
        else:
            vx["d"] = ("reg", dst[1])
            op.reg_w += (dst[1],)
        assert op1 in VXM_OP_BY_NAME and op2 in VXM_OP_BY_NAME
        op.vx = vx
        return op
