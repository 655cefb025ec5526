"""A model as data: a graph of ops over row tensors, compiled op by op onto one program.

A `Graph` names its inputs (row tensors: ``rows x width``, 1, 2 or 4 bytes per element)
and a list of `Node` s in program order; every node is one op kind of `OPS`, which pairs
the kind's golden function (plain numpy, what the machine must compute, bit for bit) with
its lowering (`compiler.lowerings`).  `evaluate` runs the graph on the golden functions;
`compile_graph` lowers every node onto one `ProgramBuilder` (tensors allocated in SRAM,
inputs and constants written by the host), schedules it and returns a `CompiledGraph`
that runs on the machine model (or the RTL, through the same host image).

Adding an op kind: its golden function, its lowering, one `OpKind` entry.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

from arch.config import TspConfig, get_config
from arch.isa import SIGNED_TYPE
from arch.program import Program
from golden.quant import requantize

from . import tiling as T
from .builder import ProgramBuilder
from .emit import emit
from .errors import CompileError, imem_error
from .lowerings import add_rows, lookup_rows, matmul_rows, requantize_rows
from .routes import planes_out
from .schedule import list_schedule

RANGE = {1: (-128, 127), 2: (-(2**15), 2**15 - 1), 4: (-(2**31), 2**31 - 1)}


@dataclass(frozen=True)
class Node:
    """One op: ``out = kind(*inputs, **attrs)``; ``out_bytes`` its element width."""

    out: str
    kind: str
    inputs: tuple[str, ...]
    attrs: Mapping[str, np.ndarray] = field(default_factory=dict)
    out_bytes: int = 4


@dataclass(frozen=True)
class Graph:
    """Inputs ``name -> (rows, width, bytes)``, nodes in program order, output names."""

    inputs: Mapping[str, tuple[int, int, int]]
    nodes: tuple[Node, ...]
    outputs: tuple[str, ...]

    def shapes(self) -> dict[str, tuple[int, int, int]]:
        """Every tensor's (rows, width, bytes), checking each node's inputs and attrs."""
        shp = dict(self.inputs)
        for n in self.nodes:
            if n.kind not in OPS:
                raise CompileError(f"node {n.out!r}: unknown op kind {n.kind!r} "
                                   f"(known: {', '.join(sorted(OPS))})", "graph", True)
            missing = [i for i in n.inputs if i not in shp]
            if missing:
                raise CompileError(f"node {n.out!r}: inputs {missing} are not defined before "
                                   "it (graph inputs or earlier nodes)", "graph", True)
            if n.out in shp:
                raise CompileError(f"node {n.out!r}: tensor defined twice", "graph", True)
            shp[n.out] = OPS[n.kind].shape(n, [shp[i] for i in n.inputs])
        for o in self.outputs:
            if o not in shp:
                raise CompileError(f"output {o!r} is not a tensor of the graph", "graph", True)
        return shp


@dataclass(frozen=True)
class OpKind:
    shape: Callable  # (node, input shapes) -> output shape, raising CompileError if bad
    golden: Callable  # (node, *input arrays) -> output array (int64)
    lower: Callable  # (builder, node, input tensors, output tensor, shapes) -> None
    #                  (a lookup's table tensor comes after its inputs)


def _need(node: Node, ok: bool, what: str) -> None:
    if not ok:
        raise CompileError(f"node {node.out!r} ({node.kind}): {what}", "graph", True)


# ----------------------------------------------------------------------------- op kinds
def _matmul_shape(n, ins):
    (rows, k, b), = ins
    w = np.asarray(n.attrs["weight"])
    _need(n, b == 1, f"input must be int8 (1 byte), got {b} bytes")
    _need(n, w.ndim == 2 and w.shape[1] == k and w.dtype == np.int8,
          f"weight must be int8 (N, {k}), got {w.dtype} {w.shape}")
    return rows, w.shape[0], n.out_bytes


def _matmul_golden(n, x):
    return x.astype(np.int64) @ np.asarray(n.attrs["weight"], np.int64).T


def _product(pb, n, ins, shp, **hooks):
    """`matmul_rows` of node ``n``: its weights as host constants, output tiles spread
    over every MXM of the config; ``hooks``: the epilogue and per-tile set-up."""
    (x,), (rows, k, _) = ins, shp[n.inputs[0]]
    w = np.asarray(n.attrs["weight"])
    mxms = [s.name for s in pb.cfg.slices_of("MXM")]
    wt = pb.weights(f"{n.out}.w", w, pb.cfg.slice(mxms[0]).hemisphere)
    matmul_rows(pb, n.out, mxms, wt, w.shape[0], k, rows, x.loc, **hooks)


def _matmul_lower(pb, n, ins, out, shp):
    def store(b, mv, i, t):  # the int32 sums straight to SRAM
        planes_out(pb.O, b, mv, "out", out[(i, t)])

    _product(pb, n, ins, shp, epilogue=store)


def _linear_shape(n, ins):
    rows, n_out, _ = _matmul_shape(n, ins)
    for a in ("bias", "multiplier", "shift"):
        _need(n, np.shape(n.attrs[a]) == (n_out,), f"{a} must have shape ({n_out},)")
    return rows, n_out, n.out_bytes


def _linear_golden(n, x):
    lo, hi = RANGE[n.out_bytes]
    acc = _matmul_golden(n, x) + np.asarray(n.attrs["bias"], np.int64)
    if np.abs(acc).max(initial=0) > 2**31 - 1:
        raise OverflowError(f"node {n.out!r}: int32 accumulator + bias out of range")
    return requantize(acc, n.attrs["multiplier"], n.attrs["shift"], qmin=lo,
                      qmax=hi).astype(np.int64)


def _linear_lower(pb, n, ins, out, shp):
    """The matrix product with its bias add and requantisation fused into the bundle that
    takes the sum off the MXM (one VXM instruction: ADD, then REQUANT)."""
    vl, otyp = pb.vl, SIGNED_TYPE[n.out_bytes]
    r: dict[str, int] = {}

    def begin(t):
        r["b"], r["tr"] = pb.regs.single(), pb.regs.triple()
        pb.reg_const(r["b"], T.tile_vec(n.attrs["bias"], t, vl), f"b_{n.out}[{t}]")
        pb.reg_const(r["tr"], T.tile_vec(n.attrs["multiplier"], t, vl), f"m_{n.out}[{t}]")
        pb.reg_const(r["tr"] + 1, T.tile_vec(n.attrs["shift"], t, vl), f"sh_{n.out}[{t}]")

    def epilogue(b, mv, i, t):
        v = pb.O.vxm(b, "i32", "s", "ADD", "s", ("r", r["b"]), "REQUANT", ("r", r["tr"]),
                     otype=otyp)
        b.connect(mv, "out", v, "a")
        planes_out(pb.O, b, v, "d", out[(i, t)])

    def end(t):
        pb.regs.release(r["b"])
        pb.regs.release_triple(r["tr"])

    _product(pb, n, ins, shp, epilogue=epilogue, tile_begin=begin, tile_end=end)


def _requant_shape(n, ins):
    (rows, width, _), = ins
    for a in ("multiplier", "shift"):
        _need(n, np.shape(n.attrs[a]) == (width,), f"{a} must have shape ({width},)")
    return rows, width, n.out_bytes


def _requant_golden(n, x):
    lo, hi = RANGE[n.out_bytes]
    return requantize(x, n.attrs["multiplier"], n.attrs["shift"], qmin=lo,
                      qmax=hi).astype(np.int64)


def _requant_lower(pb, n, ins, out, shp):
    rows, width, _ = shp[n.inputs[0]]
    requantize_rows(pb, n.out, ins[0], out, rows, width, n.attrs["multiplier"],
                    n.attrs["shift"])


def _add_shape(n, ins):
    (ra, wa, _), (rb, wb, _) = ins
    _need(n, (ra, wa) == (rb, wb), f"operand shapes differ: {(ra, wa)} and {(rb, wb)}")
    return ra, wa, n.out_bytes


def _add_golden(n, a, b):
    if "multiplier" in n.attrs:
        b = requantize(b, n.attrs["multiplier"], n.attrs["shift"], qmin=RANGE[4][0],
                       qmax=RANGE[4][1])
    return np.clip(a.astype(np.int64) + b, *RANGE[n.out_bytes])


def _add_lower(pb, n, ins, out, shp):
    rows, width, _ = shp[n.inputs[0]]
    add_rows(pb, n.out, ins[0], ins[1], out, rows, width, n.attrs.get("multiplier"),
             n.attrs.get("shift"))


def _lookup_shape(n, ins):
    (rows, width, b), = ins
    t = np.asarray(n.attrs["table"])
    _need(n, b == 1 and n.out_bytes == 1, "a table lookup maps int8 to int8")
    _need(n, t.shape == (256,), f"table must have 256 entries, got {t.shape}")
    return rows, width, 1


def _lookup_golden(n, x):
    return np.asarray(n.attrs["table"]).astype(np.int8)[x.astype(np.int8).view(np.uint8)] \
        .astype(np.int64)


def _lookup_lower(pb, n, ins, out, shp):
    src, tab = ins  # the table tensor: allocated first, by `compile_graph`
    if len(tab.ranges) != 1:  # a Gather indexes 256 consecutive addresses of one slice
        raise CompileError(f"node {n.out!r}: no 256 consecutive free addresses for its table "
                           f"(got {tab.ranges})", "sram", True)
    lookup_rows(pb, n.out, src, tab.loc(0), out, list(out.locs))


OPS: dict[str, OpKind] = {
    "matmul": OpKind(_matmul_shape, _matmul_golden, _matmul_lower),
    "linear": OpKind(_linear_shape, _linear_golden, _linear_lower),
    "requant": OpKind(_requant_shape, _requant_golden, _requant_lower),
    "add": OpKind(_add_shape, _add_golden, _add_lower),
    "lookup": OpKind(_lookup_shape, _lookup_golden, _lookup_lower),
}


# ----------------------------------------------------------------------------- running
def evaluate(graph: Graph, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every tensor of the graph by the golden functions (int64 arrays)."""
    graph.shapes()
    vals = {k: np.asarray(v, np.int64) for k, v in inputs.items()}
    for n in graph.nodes:
        vals[n.out] = OPS[n.kind].golden(n, *(vals[i] for i in n.inputs))
    return vals


@dataclass
class CompiledGraph:
    cfg: TspConfig
    graph: Graph
    program: Program
    cycles: int
    init: dict  # (slice, addr) -> uint8[VL]: constants and weights
    tensors: dict  # name -> Tensor

    def sram_image(self, inputs: Mapping[str, np.ndarray]) -> dict[tuple[str, int], np.ndarray]:
        """What the host writes before start: constants, weights and the inputs."""
        img = dict(self.init)
        vl = self.cfg.vector_length
        for name, (rows, width, nb) in self.graph.inputs.items():
            x = np.asarray(inputs[name], np.int64)
            if x.shape != (rows, width):
                raise ValueError(f"input {name!r}: expected shape {(rows, width)}, "
                                 f"got {x.shape}")
            lo, hi = RANGE[nb]
            if x.size and (x.min() < lo or x.max() > hi):
                raise ValueError(f"input {name!r}: values outside the {8 * nb}-bit range")
            for (i, t), locs in self.tensors[name].locs.items():
                planes = T.bytes_of(T.tile_vec(x[i], t, vl), nb)
                for loc, v in zip(locs, planes, strict=True):
                    img[loc] = v
        return img

    def read(self, name: str, read_vec) -> np.ndarray:
        rows, width, _ = self.graph.shapes()[name]
        vl = self.cfg.vector_length
        out = np.zeros((rows, T.ntiles(width, vl) * vl), np.int64)
        for (i, t), locs in self.tensors[name].locs.items():
            out[i, t * vl:(t + 1) * vl] = T.from_bytes(np.stack([read_vec(*l) for l in locs]))
        return out[:, :width]

    def run_on_model(self, inputs) -> tuple[dict[str, np.ndarray], int]:
        """Outputs read back after a run on the machine model, and its cycle count."""
        from golden.machine import Machine

        m = Machine(self.cfg)
        for (s, a), v in self.sram_image(inputs).items():
            m.write_mem(s, a, v)
        m.load_program(self.program)
        res = m.run(max_cycles=4 * self.cycles + 1000)
        return {o: self.read(o, m.read_mem) for o in self.graph.outputs}, res.cycles


def compile_graph(graph: Graph, cfg: TspConfig | str, order: str = "program"
                  ) -> CompiledGraph:
    """Lower every node in program order onto one builder, schedule, emit."""
    cfg = get_config(cfg)
    shp = graph.shapes()
    pb = ProgramBuilder(cfg)
    vl = pb.vl
    tensors = {}
    # Gather tables first, while SRAM is empty (a table is 256 consecutive addresses of one
    # slice); no tensor shares their slices (a Gather's index and result stream through)
    mems = [s.name for s in cfg.slices_of("MEM")]
    tabs = [n for n in graph.nodes if n.kind == "lookup"]
    if len(tabs) >= len(mems) - 1:
        raise CompileError(f"{len(tabs)} table lookups need {len(tabs)} MEM slices of their "
                           f"own but config {cfg.name!r} has {len(mems)} in all", "sram", True)
    for k, n in enumerate(tabs):
        tensors[f"{n.out}.table"] = pb.const(
            f"{n.out}.table", dict(enumerate(T.table_vectors(n.attrs["table"], vl))), 1,
            slices=[mems[-1 - k]])
    avoid = sorted({sl for t in tensors.values() for sl, _, _ in t.ranges})
    for name, (rows, width, nb) in graph.inputs.items():
        keys = [(i, t) for i in range(rows) for t in range(T.ntiles(width, vl))]
        tensors[name] = pb.mem.tensor(name, keys, nb, exclude=avoid, const=True)
    for n in graph.nodes:
        rows, width, nb = shp[n.out]
        keys = [(i, t) for i in range(rows) for t in range(T.ntiles(width, vl))]
        tensors[n.out] = pb.mem.tensor(n.out, keys, nb, exclude=avoid)
        ins = [tensors[i] for i in n.inputs]
        if n.kind == "lookup":
            ins.append(tensors[f"{n.out}.table"])
        OPS[n.kind].lower(pb, n, ins, tensors[n.out], shp)
    pb.mem.check()
    list_schedule(cfg, pb.bundles, order=order)
    em = emit(cfg, pb.bundles, True)
    words = {k: q.nwords for k, q in em.queues.items()}
    if max(words.values()) > cfg.imem_depth:
        raise imem_error("the graph", cfg, words)
    prog = Program.from_instrs(cfg, {k: qc.words for k, qc in em.queues.items()})
    return CompiledGraph(cfg, graph, prog, em.cycles, dict(pb.init), tensors)
