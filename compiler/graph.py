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
from .alloc import ZEROS, FirstOf
from .builder import ProgramBuilder
from .errors import CompileError
from .lowerings import add_rows, lookup_rows, matmul_rows, requantize_rows
from .routes import planes_out

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
            if OPS[n.kind].scaled:
                bad = [f"{i}.e" for i in n.inputs if f"{i}.e" not in shp]
                if bad:
                    raise CompileError(f"node {n.out!r} ({n.kind}) takes row-scaled inputs: "
                                       f"their exponent tensors {bad} are not defined",
                                       "graph", True)
            shp[n.out] = OPS[n.kind].shape(n, [shp[i] for i in n.inputs])
            if OPS[n.kind].scaled:
                shp[f"{n.out}.e"] = (shp[n.out][0], shp[n.out][1], 2)
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
    #: row-scaled (`golden.planes`): every input ``x`` comes with its exponent tensor
    #: ``x.e`` and the output ``y`` with ``y.e`` (int16 lane vectors: each lane holds its
    #: row's or head's exponent); golden gets and returns (values, exponents) pairs, the
    #: lowering gets (tensor, exponent tensor) pairs
    scaled: bool = False
    #: allocates the op's Gather tables before anything else (256 consecutive addresses)
    setup: Callable | None = None


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


# ---- row-scaled ops: the LLM's integer path (golden.planes, norm, rope, activation) ------
def _row_e(e) -> np.ndarray:
    """A per-row exponent from its lane form (every lane of a row holds it)."""
    return np.asarray(e, np.int64)[:, :1]


def _lanes(e, width: int) -> np.ndarray:
    """Exponents ``(rows, 1)`` or per head ``(rows, H, 1)`` in lane form ``(rows, width)``."""
    e = np.asarray(e, np.int64)
    if e.ndim == 3:
        return np.repeat(e[..., 0], width // e.shape[1], axis=1)
    return np.repeat(e, width, axis=1)


def _heads_e(e, heads: int) -> np.ndarray:
    e = np.asarray(e, np.int64)
    return e[:, ::e.shape[1] // heads][..., None]


def _scaled_shape(bytes_in: int | None, bytes_out: int):
    def shape(n, ins):
        (rows, width, b), *rest = ins
        _need(n, bytes_in is None or b == bytes_in,
              f"input must be {8 * (bytes_in or 0)}-bit ({bytes_in} bytes), got {b}")
        for r in rest:
            _need(n, r[:2] == (rows, width), f"operand shapes differ: {(rows, width)} and "
                  f"{r[:2]}")
        return rows, width, bytes_out
    return shape


def _bits(n, default=16) -> int:
    return int(n.attrs.get("bits", default))


def _rmsnorm_nw(n):
    from golden.norm import NormWeights
    return NormWeights(np.asarray(n.attrs["gamma"]), float(n.attrs.get("eps", 1e-5)))


def _rmsnorm_shape(n, ins):
    (rows, width, b), = ins
    _need(n, b == 4, f"input must be the int32 residual stream, got {b} bytes")
    _need(n, np.shape(n.attrs["gamma"]) == (width,), f"gamma must have shape ({width},)")
    return rows, width, 2


def _rmsnorm_golden(n, he):
    from golden.norm import rmsnorm_int
    q, e = rmsnorm_int(he[0], _row_e(he[1]), _rmsnorm_nw(n), 16)
    return q, _lanes(e, q.shape[1])


def _rmsnorm_lower(pb, n, ins, out, shp):
    from .lowerings import rmsnorm_rows
    (h, eh), = ins
    rmsnorm_rows(pb, n.out, h, eh, out[0], out[1], shp[n.inputs[0]][0], _rmsnorm_nw(n))


def _qlinear_shape(n, ins):
    (rows, width, b), = ins
    w = n.attrs["weight"]
    _need(n, b == 2, f"input must be int16 (2 bytes), got {b}")
    _need(n, w.shape[1] == width, f"weight input width {w.shape[1]} != {width}")
    return rows, w.shape[0], 4


def _qlinear_golden(n, xe):
    from golden.planes import linear_int
    acc, e = linear_int(xe[0], _row_e(xe[1]), n.attrs["weight"], 16)
    return acc, _lanes(e, acc.shape[1])


def _qlinear_lower(pb, n, ins, out, shp):
    from .lowerings import linear_rows
    (x, ex), = ins
    linear_rows(pb, n.out, x, ex, n.attrs["weight"], out[0], out[1], shp[n.inputs[0]][0])


def _narrow_shape(n, ins):
    rows, width, _ = _scaled_shape(4, -(-_bits(n) // 8))(n, ins)
    h = int(n.attrs.get("heads", 1))
    _need(n, h >= 1 and width % h == 0, f"{h} heads do not divide the width {width}")
    return rows, width, -(-_bits(n) // 8)


def _narrow_golden(n, xe):
    from golden.planes import narrow
    x, e = xe
    h = int(n.attrs.get("heads", 1))
    if h == 1:
        q, eo = narrow(x, _row_e(e), _bits(n))
        return q, _lanes(eo, x.shape[1])
    rows, width = x.shape
    q, eo = narrow(x.reshape(rows, h, width // h), _heads_e(e, h), _bits(n))
    return q.reshape(rows, width), _lanes(eo, width)


def _narrow_lower(pb, n, ins, out, shp):
    from .lowerings import narrow_groups, narrow_rows
    (x, e), = ins
    rows, width, _ = shp[n.inputs[0]]
    h = int(n.attrs.get("heads", 1))
    if h == 1:
        narrow_rows(pb, n.out, x, e, out[0], out[1], rows, width, _bits(n))
    else:
        narrow_groups(pb, n.out, x, e, out[0], out[1], rows, h, width // h, bits=_bits(n))


def _rope_golden(n, xe):
    from golden.rope import rope_int
    x, e = xe
    rows, width = x.shape
    h = int(n.attrs["heads"])
    q, eo = rope_int(x.reshape(rows, h, width // h), _heads_e(e, h), n.attrs["positions"],
                     float(n.attrs.get("base", 10000.0)), _bits(n))
    return q.reshape(rows, width), _lanes(eo, width)


def _rope_lower(pb, n, ins, out, shp):
    from golden.rope import rope_tables

    from .lowerings import rope_rows
    (x, e), = ins
    rows, width, _ = shp[n.inputs[0]]
    h = int(n.attrs["heads"])
    cos, sin = rope_tables(n.attrs["positions"], width // h, float(n.attrs.get("base", 1e4)))
    rope_rows(pb, n.out, x, e, out[0], out[1], rows, h, width // h, cos, sin, _bits(n))


def _swiglu_golden(n, ge, ue):
    from golden.activation import swiglu_int
    q, e = swiglu_int(ge[0], _row_e(ge[1]), ue[0], _row_e(ue[1]), _bits(n))
    return q, _lanes(e, q.shape[1])


def _swiglu_lower(pb, n, ins, out, shp):
    from .lowerings import swiglu_rows
    (g, eg), (u, eu) = ins
    rows, width, _ = shp[n.inputs[0]]
    swiglu_rows(pb, n.out, g, eg, u, eu, out[0], out[1], rows, width)


def _add_aligned_golden(n, ae, be):
    from golden.planes import add_aligned
    q, e = add_aligned(ae[0], _row_e(ae[1]), be[0], _row_e(be[1]), bits=32)
    return q, _lanes(e, q.shape[1])


def _add_aligned_lower(pb, n, ins, out, shp):
    from .lowerings import add_aligned_rows
    (a, ea), (b, eb) = ins
    rows, width, _ = shp[n.inputs[0]]
    add_aligned_rows(pb, n.out, a, ea, b, eb, out[0], out[1], rows, width)


def _argmax_shape(n, ins):
    (rows, width, b), = ins
    _need(n, b == 4, f"input must be int32 (4 bytes), got {b}")
    return rows, 1, 4


def _argmax_golden(n, x):
    from golden.vocab import argmax_int
    return argmax_int(x)[:, None].astype(np.int64)


def _argmax_lower(pb, n, ins, out, shp):
    from .lowerings import argmax_rows
    rows, width, _ = shp[n.inputs[0]]
    # the output is one int32 per row: its (row, 0) vector holds it in every lane
    argmax_rows(pb, n.out, ins[0], FirstOf(out), rows, width)


def _setup_rsqrt(pb):
    from .lowerings import rsqrt_seed_table
    rsqrt_seed_table(pb)


def _setup_activation(pb):
    from .lowerings import activation_tables
    activation_tables(pb)


OPS: dict[str, OpKind] = {
    "matmul": OpKind(_matmul_shape, _matmul_golden, _matmul_lower),
    "linear": OpKind(_linear_shape, _linear_golden, _linear_lower),
    "requant": OpKind(_requant_shape, _requant_golden, _requant_lower),
    "add": OpKind(_add_shape, _add_golden, _add_lower),
    "lookup": OpKind(_lookup_shape, _lookup_golden, _lookup_lower),
    # the LLM's row-scaled integer ops (int16 activations, exponents per row or head)
    "rmsnorm": OpKind(_rmsnorm_shape, _rmsnorm_golden, _rmsnorm_lower, True, _setup_rsqrt),
    "qlinear": OpKind(_qlinear_shape, _qlinear_golden, _qlinear_lower, True),
    "narrow": OpKind(_narrow_shape, _narrow_golden, _narrow_lower, True),
    "rope": OpKind(_scaled_shape(2, 2), _rope_golden, _rope_lower, True),
    "swiglu": OpKind(_scaled_shape(2, 2), _swiglu_golden, _swiglu_lower, True,
                     _setup_activation),
    "add_aligned": OpKind(_scaled_shape(4, 4), _add_aligned_golden, _add_aligned_lower, True),
    "argmax": OpKind(_argmax_shape, _argmax_golden, _argmax_lower),  # the next token's id
}


# ----------------------------------------------------------------------------- running
def evaluate(graph: Graph, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every tensor of the graph by the golden functions (int64 arrays)."""
    graph.shapes()
    vals = {k: np.asarray(v, np.int64) for k, v in inputs.items()}
    for n in graph.nodes:
        op = OPS[n.kind]
        if op.scaled:
            vals[n.out], vals[f"{n.out}.e"] = op.golden(
                n, *((vals[i], vals[f"{i}.e"]) for i in n.inputs))
        else:
            vals[n.out] = op.golden(n, *(vals[i] for i in n.inputs))
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
    if any(OPS[n.kind].scaled for n in graph.nodes):
        for z in ZEROS:  # the zero registers (the row-scaled lowerings subtract from 0)
            pb.set_imm(z, 0, "zero")
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
    for kind in sorted({n.kind for n in graph.nodes}):
        if OPS[kind].setup is not None:
            OPS[kind].setup(pb)
    avoid = sorted({sl for t in tensors.values() for sl, _, _ in t.ranges})
    for name, (rows, width, nb) in graph.inputs.items():
        keys = [(i, t) for i in range(rows) for t in range(T.ntiles(width, vl))]
        tensors[name] = pb.mem.tensor(name, keys, nb, exclude=avoid, const=True)
    for n in graph.nodes:
        rows, width, nb = shp[n.out]
        keys = [(i, t) for i in range(rows) for t in range(T.ntiles(width, vl))]
        tensors[n.out] = pb.mem.tensor(n.out, keys, nb, exclude=avoid)
        if OPS[n.kind].scaled:
            tensors[f"{n.out}.e"] = pb.mem.tensor(f"{n.out}.e", keys, 2, exclude=avoid)
            ins = [(tensors[i], tensors[f"{i}.e"]) for i in n.inputs]
            out = (tensors[n.out], tensors[f"{n.out}.e"])
        else:
            ins = [tensors[i] for i in n.inputs]
            out = tensors[n.out]
        if n.kind == "lookup":
            ins.append(tensors[f"{n.out}.table"])
        OPS[n.kind].lower(pb, n, ins, out, shp)
    pb.mem.check()
    prog, em = pb.finish("the graph", order)
    return CompiledGraph(cfg, graph, prog, em.cycles, dict(pb.init), tensors)
