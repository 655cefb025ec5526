"""Tensor parallelism over a ring of chips: one graph per chip, one static schedule.

`mlp_graph` splits the quantised MLP ``y = W2 . act(requant(W1 . x + b1))`` the Megatron
way: chip ``i`` holds rows ``i*f/n .. (i+1)*f/n`` of ``W1`` (and of ``b1``, the
requantisation, the activation: they act per hidden feature) and the same columns of
``W2``; its ``W2`` product is a partial sum of the output, and an ``allreduce`` node
(`compiler.lowerings.allreduce`) sums the partials over the C2C links, so every chip
ends with all of ``y``.  `tp_block_graph` splits the quantised block the same way (heads
and hidden features).

`compile_parallel` compiles each chip's graph as one SPMD schedule (chip 0 scheduled, the
others placed in its cycles) and checks that every chip's C2C queues (the only queues
that talk to other chips) issue the same instructions in the same cycles -- what
`allreduce` relies on.  `run_parallel` runs them on the system model (`golden.system`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from arch.config import TspConfig, get_config
from golden.system import System

from .collector import paused
from .errors import CompileError
from .graph import CompiledGraph, Graph, Node, compile_graph, lower_graph


@dataclass(frozen=True)
class Mlp:
    """``y = W2 . table(requant(W1 . x + b1, m1, s1))``: int8 x (rows, d); W1 (f, d),
    b1/m1/s1 (f,); ``table`` a 256-entry int8 activation; W2 (d, f); y int32."""

    w1: np.ndarray
    b1: np.ndarray
    m1: np.ndarray
    s1: np.ndarray
    table: np.ndarray
    w2: np.ndarray

    @property
    def d(self) -> int:
        return self.w1.shape[1]

    @property
    def f(self) -> int:
        return self.w1.shape[0]


def relu_table() -> np.ndarray:
    """ReLU as a 256-entry table, indexed as a Gather indexes it: by the int8 value's byte
    (two's complement)."""
    v = np.arange(256)
    v = np.where(v >= 128, v - 256, v)
    return np.maximum(v, 0).astype(np.int64)


def random_mlp(d: int, f: int, seed: int) -> Mlp:
    """Weights and a requantisation that keep the hidden layer in range (seeded)."""
    rng = np.random.default_rng(seed)
    w1 = rng.integers(-128, 128, (f, d)).astype(np.int8)
    w2 = rng.integers(-128, 128, (d, f)).astype(np.int8)
    b1 = rng.integers(-4096, 4096, f)
    m1 = np.full(f, 1 << 30, np.int64)
    s1 = np.full(f, 8 + max(0, (d - 1).bit_length()), np.int64)
    return Mlp(w1, b1, m1, s1, relu_table(), w2)


def mlp_graph(mlp: Mlp, rows: int, chips: int = 1, shard: int = 0) -> Graph:
    """The graph of chip ``shard`` of ``chips`` (``chips == 1``: the whole MLP)."""
    if isinstance(chips, bool) or not isinstance(chips, int) or chips < 1 or \
            not isinstance(shard, int) or not 0 <= shard < chips:
        raise CompileError(f"tensor parallel: chips={chips!r} must be an int >= 1 and "
                           f"shard={shard!r} one of 0..chips-1", "shape", True)
    if mlp.f % chips:
        raise CompileError(f"tensor parallel: the hidden width {mlp.f} does not split over "
                           f"{chips} chips", "shape", True)
    part = slice(shard * mlp.f // chips, (shard + 1) * mlp.f // chips)
    nodes = [
        Node("h", "linear", ("x",), {"weight": mlp.w1[part], "bias": mlp.b1[part],
                                     "multiplier": mlp.m1[part], "shift": mlp.s1[part],
                                     "table": mlp.table}, out_bytes=1),
        Node("p" if chips > 1 else "y", "matmul", ("h",), {"weight": mlp.w2[:, part]}),
    ]
    if chips > 1:
        nodes.append(Node("y", "allreduce", ("p",), {"chips": chips, "rank": shard}))
    return Graph({"x": (rows, mlp.d, 1)}, tuple(nodes), ("y",))


def golden_mlp(mlp: Mlp, x: np.ndarray) -> np.ndarray:
    """The whole MLP in numpy (int64), from the definition above, without the graph."""
    from golden.quant import requantize

    acc = x.astype(np.int64) @ mlp.w1.astype(np.int64).T + mlp.b1
    h = requantize(acc, mlp.m1, mlp.s1, qmin=-128, qmax=127).astype(np.int64)
    h = mlp.table[h & 0xFF]
    return h @ mlp.w2.astype(np.int64).T


#: what `best_variant` tries: the hemisphere of each tensor (the rest where there is room)
PLACES = ({}, {"y": "W"}, {"y": "E"}, {"p": "W"}, {"p": "E"}, {"h": "W"}, {"h": "E"})
ORDERS = ("priority", "program", "cycle")


def placed(g: Graph, place: dict) -> Graph:
    return Graph(g.inputs, g.nodes, g.outputs, {k: v for k, v in place.items()
                                                 if k in g.shapes()})


def best_variant(graph: Graph, cfg: TspConfig) -> tuple[dict, str]:
    """The placement and list-scheduling order (of `PLACES` x `ORDERS`) with the fewest
    cycles for ``graph`` (a variant that does not compile is skipped)."""
    best, err = None, None
    for place in PLACES:
        for order in ORDERS:
            try:
                c = compile_graph(placed(graph, place), cfg, order).cycles
            except CompileError as exc:
                err = exc
                continue
            if best is None or c < best[0]:
                best = (c, place, order)
    if best is None:
        raise err
    return best[1], best[2]


@paused
def compile_parallel(graphs: list[Graph], cfg: TspConfig | str, *, search: bool = False
                     ) -> list[CompiledGraph]:
    """Compile every chip's graph as one SPMD schedule: chip 0's is scheduled (``search``:
    in its fastest variant, `best_variant`), every other chip's bundles are placed in the
    same cycles (`ProgramBuilder.finish_as`: their addresses may differ, e.g. the ring
    all-reduce's vectors per rank).  A CompileError unless every chip's C2C queues issue
    the same instructions (link, type) in the same cycles."""
    graphs = list(graphs)
    if not graphs:
        raise CompileError("compile_parallel: no graphs (one per chip)", "shape", True)
    cfg = get_config(cfg)
    place, order = best_variant(graphs[0], cfg) if search else ({}, "program")
    out, ref, emitted = [], None, []
    for i, g in enumerate(graphs):
        pg = placed(g, place)
        pb, tensors = lower_graph(pg, cfg, spmd=True, keep=False)
        what = f"chip {i}'s program"
        prog, em = pb.finish(what, order) if ref is None else pb.finish_as(what, ref)
        ref = ref if ref is not None else pb.bundles
        out.append(CompiledGraph(cfg, pg, prog, em.cycles, dict(pb.init), tensors))
        emitted.append(em)
    check_spmd_links(cfg, emitted)
    return out


def check_spmd_links(cfg: TspConfig, emitted: list) -> None:
    """A CompileError unless every chip's C2C queues (the only queues that talk to other
    chips; ``emitted``: each chip's `compiler.emit` result) issue the same instructions
    (link, type) in the same cycles: one SPMD schedule."""
    def issues(em):
        return {e: [(c, ins.mnemonic, ins["link"], ins["type"])
                    for c, ins, _ in em.queues[e].issued if not isinstance(ins, str)]
                for e in (s.name for s in cfg.slices_of("C2C"))}

    ref = issues(emitted[0])
    for i, em in enumerate(emitted[1:], 1):
        for e, seq in issues(em).items():
            if seq != ref[e]:
                raise CompileError(f"tensor parallel: chip {i}'s {e} queue differs from chip "
                                   "0's: the shards' schedules are not one SPMD schedule",
                                   "schedule", False)


def run_parallel(compiled: list[CompiledGraph], inputs: dict | list[dict],
                 results: list | None = None) -> tuple[list[dict], list[int]]:
    """Run the chips' programs on the system model, with ``inputs`` (the same for every
    chip, or one dict per chip): each chip's outputs and cycles (and its `RunResult`
    appended to ``results``)."""
    cfg = compiled[0].cfg
    sysm = System(cfg, len(compiled))
    per_chip = inputs if isinstance(inputs, list) else [inputs] * len(compiled)
    for m, cg, inp in zip(sysm.machines, compiled, per_chip, strict=True):
        for (s, a), v in cg.sram_image(inp).items():
            m.write_mem(s, a, v)
    sysm.load_programs([cg.program for cg in compiled])
    res = sysm.run(max_cycles=4 * max(cg.cycles for cg in compiled) + 1000)
    if results is not None:
        results.extend(res.chips)
    outs = [{o: cg.read(o, m.read_mem) for o in cg.graph.outputs}
            for cg, m in zip(compiled, sysm.machines, strict=True)]
    return outs, [r.cycles for r in res.chips]


# ----------------------------------------------------------------------------- the block
def tp_block_graph(block, chips: int, shard: int) -> tuple[Graph, dict]:
    """Chip ``shard`` of the quantised attention + MLP block (`golden.block.QuantBlock`)
    split over ``chips``: heads ``shard*H/n ..`` (their rows of Wq, Wk, Wv, their columns
    of Wo) and hidden features ``shard*f/n ..`` (rows of W1, columns of W2); the two
    int32 partial sums (attention output, MLP output) are all-reduced, each with its bias
    added on chip 0 only (an int32 bias row, zero on the other chips: the same schedule
    everywhere), then requantised into the residual stream as the block does.  Returns the
    graph and the host inputs it takes beside ``x`` (the bias rows)."""
    from .block import PLANS, attention_attrs

    H, d, f = block.n_heads, block.d_model, block.d_ff
    if H % chips or f % chips:
        raise CompileError(f"tensor parallel: {H} heads and d_ff {f} must split over "
                           f"{chips} chips", "shape", True)
    hs = slice(shard * d // chips, (shard + 1) * d // chips)  # this chip's heads' features
    fs = slice(shard * f // chips, (shard + 1) * f // chips)
    rows = block.seq_len

    def lin(q, part, **extra):
        return {"weight": q.weight[part], "bias": q.bias[part],
                "multiplier": q.multiplier[part], "shift": q.shift[part], **extra}

    attn = attention_attrs(block, PLANS[0])
    attn["n_heads"] = H // chips
    nodes = (
        Node("x8", "requant", ("x",), {"multiplier": block.x8_multiplier,
                                       "shift": block.x8_shift}, 1),
        Node("q", "linear", ("x8",), lin(block.wq, hs, heads=H // chips), 1),
        Node("k", "linear", ("x8",), lin(block.wk, hs), 1),
        Node("v", "linear", ("x8",), lin(block.wv, hs, heads=H // chips), 1),
        Node("ctx", "attention", ("q", "k", "v"), attn, 1),
        Node("o_part", "matmul", ("ctx",), {"weight": block.wo.weight[:, hs]}),
        Node("o_bias", "add", ("o_part", "bo"), {}, 4),
        Node("attn_acc", "allreduce", ("o_bias",), {"chips": chips, "rank": shard}),
        Node("h_sum", "add", ("x", "attn_acc"), {"multiplier": block.wo.multiplier,
                                                 "shift": block.wo.shift}, 4),
        Node("h", "requant", ("h_sum",), {"multiplier": block.h8_multiplier,
                                          "shift": block.h8_shift}, 1),
        Node("gelu", "linear", ("h",), lin(block.w1, fs, table=block.gelu_table), 1),
        Node("f_part", "matmul", ("gelu",), {"weight": block.w2.weight[:, fs]}),
        Node("f_bias", "add", ("f_part", "b2"), {}, 4),
        Node("ff2_acc", "allreduce", ("f_bias",), {"chips": chips, "rank": shard}),
        Node("y", "add", ("h_sum", "ff2_acc"), {"multiplier": block.w2.multiplier,
                                                "shift": block.w2.shift}, 4),
    )
    g = Graph({"x": (rows, d, 4), "bo": (rows, d, 4), "b2": (rows, d, 4)}, nodes, ("y",))
    first = shard == 0
    bias = {"bo": np.tile(block.wo.bias if first else np.zeros(d, np.int64), (rows, 1)),
            "b2": np.tile(block.w2.bias if first else np.zeros(d, np.int64), (rows, 1))}
    return g, bias
