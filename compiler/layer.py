"""One decode step of a llama decoder layer in the LLM's integer numerics, on the machine:
`golden.llm.layer_int` for one token, the layer's KV cache in MEM SRAM across steps.

``compile_layer_step(cfg_llm, L, tsp_cfg, max_context)`` compiles one program that every
step runs.  Per step the host writes the token's int32 residual row and its exponent
vector, and the position ``p`` (a u8 vector, one copy per MEM slice); it reads the next
residual row and its exponents.  The program (each step a lowering of
`compiler.lowerings`):

1. RMSNorm -> q, k, v block-scaled products (the GGUF blocks) -> per-head narrows to 15
   bits -> RoPE of q and k at the run-time position (C/S vectors gathered from per-position
   tables by the position vector);
2. append: k and v as their two int8 digits SCATTERed to ``cache + p``; each KV head's key
   and value exponent broadcast (SXM ``DIST``) and SCATTERed into lane ``p`` of its
   exponent-over-keys vector (index 0 in lane ``p``, 1 -- a scratch vector -- elsewhere);
3. attention over the cache (`attention_decode_row`, keys past ``p`` masked);
4. Wo, the aligned residual add, RMSNorm, gate/up, narrows, SwiGLU, down, the aligned
   residual add.

Fixed maximum context ``C`` (``<= VL``) with a position mask, as `compiler.decode`: the same
program and cycle count at every position.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from arch.config import TspConfig, get_config
from arch.program import Program
from golden.machine import Machine, RunResult

from . import tiling as T
from .collector import paused
from .compiled import ScheduleView
from .errors import CompileError
from .graph import Graph, Node, lower_graph


def layer_nodes(lc, L: dict, C: int, h: str = "h", tag: str = "", chips: int = 1,
                rank: int = 0) -> list[Node]:
    """One decoder layer (`golden.llm.layer_int` for one token) as graph nodes, on the
    residual row ``h`` (with ``h.e``); names prefixed by ``tag``; the next residual row is
    ``{tag}y``.  Bits per site as `golden.llm.ACT_BITS`.  ``chips > 1``: chip ``rank``'s
    part of the layer tensor-parallel over that many chips (``L`` its weights,
    `compiler.tp_layer.split_layer`): its heads, the output projection's and down's sums
    all-reduced, split rows narrowed with the whole row's shift."""
    hq, hkv = lc.n_heads // chips, lc.n_kv_heads // chips
    ring = {"chips": chips, "rank": rank} if chips > 1 else {}
    split = {"chips": chips} if chips > 1 else {}
    t = tag
    nodes = [Node(t + "x", "rmsnorm", (h,), {"norm": L["attn_norm"]})]
    for nm, n_h in (("q", hq), ("k", hkv), ("v", hkv)):
        nodes += [Node(f"{t}{nm}32", "qlinear", (t + "x",), {"weight": L[f"w{nm}"]}),
                  Node(f"{t}{nm}15", "narrow", (f"{t}{nm}32",), {"heads": n_h, "bits": 15})]
        if nm != "v":
            nodes.append(Node(t + nm, "rope_at", (f"{t}{nm}15",), {
                "heads": n_h, "bits": 15, "base": lc.rope_base, "max_context": C}))
    nodes += [
        Node(t + "ctx", "gqa_attention", (t + "q", t + "k", t + "v15"),
             {"n_heads": hq, "n_kv_heads": hkv, "max_context": C, **split}),
        Node(t + "o", "qlinear", (t + "ctx",), {"weight": L["wo"], **ring}),
        Node(t + "h1", "add_aligned", (h, t + "o")),
        Node(t + "x2", "rmsnorm", (t + "h1",), {"norm": L["ffn_norm"]}),
        Node(t + "gate", "qlinear", (t + "x2",), {"weight": L["w_gate"]}),
        Node(t + "gate16", "narrow", (t + "gate",), {"bits": 16, **split}),
        Node(t + "up", "qlinear", (t + "x2",), {"weight": L["w_up"]}),
        Node(t + "up16", "narrow", (t + "up",), {"bits": 16, **split}),
        Node(t + "m", "swiglu", (t + "gate16", t + "up16"), split),
        Node(t + "down", "qlinear", (t + "m",), {"weight": L["w_down"], **ring}),
        Node(t + "y", "add_aligned", (t + "h1", t + "down")),
    ]
    return nodes


def layer_graph(lc, L: dict, C: int) -> Graph:
    """A layer's decode step as a graph: the residual row ``h`` (and ``h.e``) in, ``y``
    out; the KV cache is the state of its ``gqa_attention`` node."""
    D = lc.d_model
    return Graph({"h": (1, D, 4), "h.e": (1, D, 2)}, tuple(layer_nodes(lc, L, C)), ("y",))


def check_layer_shape(cfg: TspConfig, head_dim: int, context: int, what: str = "") -> None:
    """Refuse a layer step's shape the lowering cannot take (CompileError): the heads tile
    the vector (head_dim | VL) and the cache's positions are lanes (context <= VL) and a
    Gather index (<= 256).  ``what`` names where the context came from."""
    vl = cfg.vector_length
    if vl % head_dim or context > vl or context > 256:
        raise CompileError(f"the layer step needs head_dim | VL and the context <= "
                           f"min(VL, 256) (got head_dim {head_dim}, {what or 'context'} "
                           f"{context}, VL {vl} on {cfg.name!r})", "shape", True)


class LayerStep:
    """A layer (or model) step's graph, lowered (`compiler.graph.lower_graph`): the
    builder's program and the tensors of the host interface (``h``/``h.e`` in, ``y``/
    ``y.e`` out, the position vectors ``pos``)."""

    what = "the layer step"

    def __init__(self, lc, L: dict, cfg: TspConfig, C: int):
        self.lc, self.L, self.cfg, self.C = lc, L, cfg, C
        self.d, self.hq, self.hkv = lc.head_dim, lc.n_heads, lc.n_kv_heads

    MATRICES = ("wq", "wk", "wv", "wo", "w_gate", "w_up", "w_down")

    @staticmethod
    def weight_bytes_of(L: dict) -> int:
        return sum(int(L[k].q.size) for k in LayerStep.MATRICES)

    def weight_bytes(self) -> int:
        """int8 weight bytes the step streams into the MXMs."""
        return self.weight_bytes_of(self.L)

    def kv_bytes(self) -> int:
        """KV cache bytes the step streams into the MXMs (every cache: both digits of k
        and v, ``C`` positions)."""
        return self.n_layers * 4 * self.C * self.hkv * self.d

    n_layers = 1

    def check_shape(self) -> None:
        check_layer_shape(self.cfg, self.d, self.C)

    def graph(self) -> Graph:
        return layer_graph(self.lc, self.L, self.C)

    def run(self) -> None:
        """Lower the step's graph (weight rows loaded each on its own, not one rigid run of
        VL cycles: a run must find VL consecutive free read cycles on its MEM slice, which
        the products' scale and offset reads fragment; real SmolLM2 layer: 35.1k -> 25.7k
        cycles)."""
        self.check_shape()
        self.pb, self.tensors = lower_graph(self.graph(), self.cfg, rigid_loads=False,
                                            what=self.what, spmd=self.spmd,
                                            keep=self.keep, reruns=True)
        t = self.tensors
        self.h, self.eh = t["h"], t["h.e"]
        self.y, self.ey = t[self.out_name], t[f"{self.out_name}.e"]
        self.pos = self.pb.position_vectors()

    out_name = "y"
    #: one program of an SPMD set (`compiler.tp_layer`)
    spmd = False
    #: keep every node's output for read-back (False: SRAM reused after a tensor's last
    #: reader, `lower_graph`)
    keep = True

    @property
    def bundles(self):
        return self.pb.bundles

    @property
    def mem(self):
        return self.pb.mem

    @property
    def init(self):
        return self.pb.init

    def finish_best(self, what: str, orders):
        return self.pb.finish_best(what, orders)


@dataclass
class CompiledLayerStep(ScheduleView):
    cfg: TspConfig
    program: Program
    cycles: int
    init: dict
    low: LayerStep = field(repr=False)
    emitted: object = field(default=None, repr=False)

    @property
    def busy(self) -> dict[str, int]:
        return dict(self.emitted.busy)

    @property
    def bundles(self):
        return self.low.bundles

    def stats(self) -> dict:
        return {"cycles": self.cycles, **self.bounds(),
                "words": {k: q.nwords for k, q in self.emitted.queues.items()}}

    @property
    def shape_label(self) -> str:
        lc = self.low.lc
        return (f"llama layer decode step, context {self.low.C}, d_model {lc.d_model}, "
                f"{lc.n_heads}/{lc.n_kv_heads} heads of {lc.head_dim}, d_ff {lc.d_ff}")

    @property
    def lower_bound(self) -> int:
        b = self.bounds()
        return b["bounds"][b["binding"]]

    @property
    def ratio(self) -> float:
        return self.cycles / self.lower_bound

    @property
    def mxm_utilisation(self) -> float:
        """The layer's own product MVMs / (cycles x MXMs)."""
        mvms = sum(1 for b in self.low.bundles for op in b.ops
                   if op.mn == "MVM" and op.purpose == "matmul")
        return mvms / (self.cycles * len(self.cfg.slices_of("MXM")))

    def bounds(self) -> dict:
        """Lower bounds on one step's cycles and the ratio to the largest: ``weight_stream``
        (every int8 weight of the step -- a model step's: every layer's and the LM head's --
        and every KV digit cache, ``4 C n_kv d`` bytes per layer, into an MXM once at
        ``cfg.weight_rows_per_cycle`` VL-byte rows per cycle), ``mvm`` (the step's MVMs
        over the MXMs), ``vxm`` (VXM instructions, one per cycle); beside them the longest
        dependency chain of this program (``dependency_path``, a bound for this lowering
        only)."""
        from .compiled import _bounds

        vl = self.cfg.vector_length
        wbytes, kv = self.low.weight_bytes(), self.low.kv_bytes()
        b = _bounds(self.cfg, self.low.bundles, self.emitted)
        rows = -(-(wbytes + kv) // vl)  # VL-byte weight rows
        out = {"weight_stream": -(-rows // self.cfg.weight_rows_per_cycle), "mvm": b.mxm,
               "vxm": b.vxm}
        top = max(out, key=out.get)
        return {"bounds": out, "binding": top, "dependency_path": b.path,
                "weight_bytes": wbytes, "kv_bytes": kv,
                "ratio": round(self.cycles / out[top], 3)}

    def step_writes(self, h_row: np.ndarray, e: int, pos: int) -> list:
        vl = self.cfg.vector_length
        low = self.low
        out = []
        for (_, t), locs in low.h.locs.items():
            out += list(zip(locs, T.bytes_of(T.tile_vec(h_row, t, vl), 4), strict=True))
        for locs in low.eh.locs.values():
            out += list(zip(locs, T.bytes_of(np.full(vl, e), 2), strict=True))
        out += [(loc, np.full(vl, pos, np.uint8)) for loc in low.pos.values()]
        return out

    def read_row(self, read_vec, t4, t2, width: int):
        vl = self.cfg.vector_length
        y = np.zeros(T.ntiles(width, vl) * vl, np.int64)
        for (_, t), locs in t4.locs.items():
            y[t * vl:(t + 1) * vl] = T.from_bytes(np.stack([read_vec(*l) for l in locs]))
        (_, _), elocs = next(iter(t2.locs.items()))
        e = int(T.from_bytes(np.stack([read_vec(*l) for l in elocs]))[0])
        return y[:width], e

    def new_machine(self) -> Machine:
        """A machine model with the program and the host's initial image (weights,
        tables, the zeroed caches) loaded."""
        m = Machine(self.cfg)
        for (s, a), v in self.init.items():
            m.write_mem(s, a, v)
        m.load_program(self.program)
        return m

    def check_steps(self, rows, es) -> tuple[np.ndarray, np.ndarray]:
        """The rows and exponents of steps at positions 0..T-1, checked (ValueError): T
        rows of d_model, 1 <= T <= the context (a step past it would wrap the cache), one
        exponent per row."""
        rows, es = np.asarray(rows), np.asarray(es)
        d, C = self.low.lc.d_model, self.low.C
        if rows.ndim != 2 or rows.shape[1] != d or not 1 <= rows.shape[0] <= C:
            raise ValueError(f"rows: expected (T, {d}) with 1 <= T <= {C} (the context: one "
                             f"row per step), got shape {rows.shape}")
        if es.shape != (rows.shape[0],):
            raise ValueError(f"es: expected one exponent per row ({rows.shape[0]},), got "
                             f"shape {es.shape}")
        return rows, es

    def run_on_model(self, rows: np.ndarray, es, machine: Machine | None = None
                     ) -> tuple[list, list[RunResult], Machine]:
        """Steps at positions 0..T-1 (rows ``[T, d_model]`` int32 with exponents ``es``):
        ``([(y, e_y)], runs, machine)``."""
        rows, es = self.check_steps(rows, es)
        m = machine if machine is not None else self.new_machine()
        outs, runs = [], []
        d_model = rows.shape[1]
        for p in range(rows.shape[0]):
            for (s, a), v in self.step_writes(rows[p], int(es[p]), p):
                m.write_mem(s, a, v)
            runs.append(m.run(max_cycles=4 * self.cycles + 1000))
            outs.append(self.read_row(m.read_mem, self.low.y, self.low.ey, d_model))
        return outs, runs, m


@paused
def compile_layer_step(lc, L: dict, cfg: TspConfig | str, max_context: int,
                       orders=("priority", "program", "cycle")) -> CompiledLayerStep:
    """Lower one decode step once, list-schedule it in each of ``orders`` and keep the
    fastest schedule that fits the instruction memory (the last `CompileError` if none
    does)."""
    cfg = get_config(cfg)
    if isinstance(max_context, bool) or not isinstance(max_context, int) or max_context < 1:
        raise ValueError(f"compile_layer_step: max_context must be an int >= 1 (the KV "
                         f"cache's positions), got {max_context!r}")
    low = LayerStep(lc, L, cfg, max_context)
    low.run()
    prog, em = low.finish_best("the layer step", orders)
    return CompiledLayerStep(cfg, prog, em.cycles, dict(low.init), low, em)


def new_system(steps: list[CompiledLayerStep]):
    """`CompiledLayerStep.new_machine` for a system: one chip per step program, each with
    its program and its host's initial image loaded (`golden.system.System`)."""
    from golden.system import System

    sysm = System(steps[0].cfg, len(steps))
    for m, st in zip(sysm.machines, steps, strict=True):
        for (s, a), v in st.init.items():
            m.write_mem(s, a, v)
    sysm.load_programs([st.program for st in steps])
    return sysm


__all__ = ["CompiledLayerStep", "compile_layer_step", "new_system"]
