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
from golden.rope import rope_tables

from . import tiling as T
from .alloc import ZEROS, FirstOf, Tensor
from .builder import ProgramBuilder, copy_avoiding
from .compiled import ScheduleView
from .errors import CompileError
from .ir import Bundle
from .lowerings import (
    activation_tables,
    add_aligned_rows,
    attention_decode_row,
    linear_rows,
    narrow_groups,
    narrow_rows,
    rmsnorm_rows,
    rope_rows,
    rsqrt_seed_table,
    swiglu_rows,
)
from .lowerings.linear import block_planes
from .lowerings.rope import position_tables
from .routes import planes_in


class LayerStep(ProgramBuilder):
    def __init__(self, lc, L: dict, cfg: TspConfig, C: int):
        # weight rows loaded each on its own (not one rigid run of VL cycles): a run must
        # find VL consecutive free read cycles on its MEM slice, which the products'
        # scale and offset reads fragment (real SmolLM2 layer: 35.1k -> 25.7k cycles)
        super().__init__(cfg, rigid_loads=False)
        self.mem.what = "the layer step"
        self.lc, self.L, self.C = lc, L, C
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
        return 4 * self.C * self.hkv * self.d * len(self.caches)

    def tensor(self, name, width, planes):
        return self.mem.tensor(name, [(0, t) for t in range(T.ntiles(width, self.vl))], planes)

    def run(self) -> None:
        self.setup()
        D = self.lc.d_model
        self.h = self.tensor("h", D, 4)
        self.eh = self.tensor("h.e", D, 2)
        self.inputs = {"h": self.h, "h.e": self.eh}
        self.y, self.ey = self.layer("", self.L, self.h, self.eh)
        self.mem.check()

    def setup(self) -> None:
        """What every layer shares: zero registers, tables, the position vectors and the
        RoPE position tables; checks the shape."""
        lc, vl = self.lc, self.vl
        d, hq, hkv, C = self.d, self.hq, self.hkv, self.C
        if vl % d or C > vl or C > 256:
            raise CompileError(f"the layer step needs head_dim | VL and the context <= "
                               f"min(VL, 256) (got head_dim {d}, context {C}, VL {vl})",
                               "shape", True)
        for z in ZEROS:
            self.set_imm(z, 0, "zero")
        rsqrt_seed_table(self)
        activation_tables(self)
        self.pos = self.position_vectors()
        cos, sin = rope_tables(np.arange(C), d, lc.rope_base)
        self.tabs = position_tables(self, "rope", cos, sin, hq)
        self.ktabs = position_tables(self, "rope.k", cos, sin, hkv)
        self.kvt = T.ntiles(hkv * d, vl)
        self.caches: dict[str, tuple[dict, dict]] = {}

    def new_cache(self, tag: str) -> None:
        """One layer's KV cache: key/value digit rows (C per KV tile, one slice and bank
        each) and, per KV head, the exponents over keys; made the current cache."""
        vl, C, hkv = self.vl, self.C, self.hkv
        cache, locs = {}, {}
        for nm in ("kh", "kl", "vh", "vl"):
            view = cache[nm] = Tensor(f"{tag}cache.{nm}", 1, "")
            for t in range(self.kvt):
                rows, locs[(nm, t)] = self.kv_rows(f"{tag}cache.{nm}[{t}]", C, final=True)
                view.locs.update({(j, t): rows[(j,)] for j in range(C)})
        for nm in ("ek", "ev"):  # per KV head: [vector over keys, scratch] per plane
            t = self.const(f"{tag}cache.{nm}", {(h, k): np.zeros((2, vl), np.uint8)
                                               for h in range(hkv) for k in (0, 1)}, 2)
            self.volatile.update(loc for locs_ in t.locs.values() for loc in locs_)
            cache[nm] = FirstOf(t)  # the vector over keys (the scratch after it)
            locs[nm] = t
        self.caches[tag] = (cache, locs)
        self.cache, self.cache_locs = cache, locs

    def layer(self, tag: str, L: dict, h, eh):
        """One decoder layer on the residual row ``h, eh`` (int32, exponents) with its own
        KV cache (named by ``tag``): the next residual row ``(y, ey)``."""
        lc = self.lc
        d, hq, hkv, C, D, F = self.d, self.hq, self.hkv, self.C, lc.d_model, lc.d_ff
        tabs, ktabs = self.tabs, self.ktabs
        self.new_cache(tag)
        # 1. attention inputs
        x, ex = self.tensor(tag + "x", D, 2), self.tensor(tag + "x.e", D, 2)
        rmsnorm_rows(self, tag + "attn_norm", h, eh, x, ex, 1, L["attn_norm"])
        heads = {}
        xplanes = self.shared_planes(tag + "x", x, D, (L["wq"], L["wk"], L["wv"]))
        for nm, w, n in (("q", L["wq"], hq), ("k", L["wk"], hkv), ("v", L["wv"], hkv)):
            wide = self.tensor(tag + f"{nm}32", n * d, 4)
            ew = self.tensor(tag + f"{nm}32.e", n * d, 2)
            linear_rows(self, tag + f"w{nm}", x, ex, w, wide, ew, 1, planes=xplanes)
            nar = self.tensor(tag + f"{nm}15", n * d, 2)
            en = self.tensor(tag + f"{nm}15.e", n * d, 2)
            narrow_groups(self, tag + f"{nm}.heads", wide, ew, nar, en, 1, n, d, bits=15)
            if nm == "v":
                heads[nm] = (nar, en)
                continue
            r, er = self.tensor(tag + nm, n * d, 2), self.tensor(tag + f"{nm}.e", n * d, 2)
            rope_rows(self, tag + f"rope.{nm}", nar, en, r, er, 1, n, d, None, None, 15,
                      self.pos, tabs if nm == "q" else ktabs)
            heads[nm] = (r, er)
        # 2. append k and v (digits) and their exponents at the position
        self.append(heads["k"], "k")
        self.append(heads["v"], "v")
        # 3. attention over the cache
        c, ec = self.tensor(tag + "ctx", hq * d, 2), self.tensor(tag + "ctx.e", hq * d, 2)
        attention_decode_row(self, tag + "attn", heads["q"][0], heads["q"][1], self.cache,
                             next(iter(self.pos.values())), c, ec, hq, hkv, d, C)
        # 4. Wo + residual, the MLP + residual
        o, eo = self.tensor(tag + "o", D, 4), self.tensor(tag + "o.e", D, 2)
        linear_rows(self, tag + "wo", c, ec, L["wo"], o, eo, 1)
        h1, eh1 = self.tensor(tag + "h1", D, 4), self.tensor(tag + "h1.e", D, 2)
        add_aligned_rows(self, tag + "res1", h, eh, o, eo, h1, eh1, 1, D)
        x2, ex2 = self.tensor(tag + "x2", D, 2), self.tensor(tag + "x2.e", D, 2)
        rmsnorm_rows(self, tag + "ffn_norm", h1, eh1, x2, ex2, 1, L["ffn_norm"])
        gu = {}
        x2planes = self.shared_planes(tag + "x2", x2, D, (L["w_gate"], L["w_up"]))
        for nm, w in (("gate", L["w_gate"]), ("up", L["w_up"])):
            wide, ew = self.tensor(tag + nm, F, 4), self.tensor(tag + f"{nm}.e", F, 2)
            linear_rows(self, tag + f"w_{nm}", x2, ex2, w, wide, ew, 1, planes=x2planes)
            n16 = self.tensor(tag + f"{nm}16", F, 2)
            e16 = self.tensor(tag + f"{nm}16.e", F, 2)
            narrow_rows(self, tag + f"{nm}.narrow", wide, ew, n16, e16, 1, F, 16)
            gu[nm] = (n16, e16)
        m, em = self.tensor(tag + "m", F, 2), self.tensor(tag + "m.e", F, 2)
        swiglu_rows(self, tag + "swiglu", *gu["gate"], *gu["up"], m, em, 1, F)
        dn, edn = self.tensor(tag + "down", D, 4), self.tensor(tag + "down.e", D, 2)
        linear_rows(self, tag + "w_down", m, em, L["w_down"], dn, edn, 1)
        y, ey = self.tensor(f"{tag}y", D, 4), self.tensor(f"{tag}y.e", D, 2)
        add_aligned_rows(self, tag + "res2", h1, eh1, dn, edn, y, ey, 1, D)
        return y, ey

    def shared_planes(self, name: str, x, width: int, weights):
        """The masked input planes (`block_planes`) once for products that share ``x``
        (one block size), with block sums if any of them has offsets."""
        groups = {w.group for w in weights}
        if len(groups) != 1:
            raise CompileError(f"{name}: products sharing an input have block sizes "
                               f"{sorted(groups)}", "shape", True)
        return block_planes(self, f"{name}.planes", x, 1, width, groups.pop(),
                            any(w.o is not None for w in weights),
                            self.cfg.slices_of("MXM")[0].hemisphere)

    def append(self, row_e, nm: str) -> None:
        """``nm`` (k or v): its digit rows at ``cache + p``, each KV head's exponent into
        lane ``p`` of its exponent-over-keys vector."""
        O, regs = self.O, self.regs
        (row, e) = row_e
        rx, rlo = regs.single(), regs.single()
        for t in range(self.kvt):
            b = Bundle(f"append {nm} row tile {t}", "append")
            v = O.vxm(b, "i16", ("r", rx), "PASS", "s", otype="i32")
            planes_in(O, b, row[(0, t)], v, "a")
            self.emit(b)
            self.vx_bundle(f"append {nm} lo tile {t}", "i32", ("r", rlo), "PASS", ("r", rx),
                           otype="i8")
            for dig, sub in (("l", False), ("h", True)):
                s, base = self.cache_locs[(nm + dig, t)]
                b = Bundle(f"append {nm}{dig} tile {t}", "append")
                if sub:
                    v = O.vxm(b, "i32", "s", "SUB", ("r", rx), ("r", rlo), "SRA", 8,
                              otype="i8")
                else:
                    v = O.vxm(b, "i32", "s", "PASS", ("r", rlo), otype="i8")
                sc = O.scatter(b, s, base, self.C)
                b.connect(v, "d", sc, "in")
                b.connect(O.read(b, *copy_avoiding(self.pos, s)), "out", sc, "idx")
                self.emit(b)
        regs.release(rx, rlo)
        # exponents: idx = 0 in lane p, 1 elsewhere (the scratch vector after it)
        rid = regs.single()
        b = Bundle(f"append {nm} exponent index", "append")
        v = O.vxm(b, "u8", ("r", rid), "NE", "lane", "s", otype="i32")
        b.connect(O.read(b, *next(iter(self.pos.values()))), "out", v, "b")
        self.emit(b)
        et = self.cache_locs["e" + nm]
        sxm = "SXM_W"
        for hk in range(self.hkv):
            for plane in (0, 1):
                s, base = et[(hk, 0)][plane]
                b = Bundle(f"append {nm} exponent head {hk} plane {plane}", "append")
                dist = O.move(b, sxm, "DIST", "i16", hk * self.d % self.vl)
                planes_in(O, b, e[(0, hk * self.d // self.vl)], dist, "in")
                sc = O.scatter(b, s, base, 2)
                w = b.wire(2)
                b.drive(w, 0, dist, "out")
                b.tap(w, plane, sc, "in")
                iv = O.vxm(b, "i32", "s", "PASS", ("r", rid), otype="u8")
                b.connect(iv, "d", sc, "idx")
                self.emit(b)
        regs.release(rid)


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
        and every KV digit cache, ``4 C n_kv d`` bytes per layer, into an MXM once at one
        VL-byte row per MXM per cycle), ``mvm`` (the step's MVMs over the MXMs), ``vxm``
        (VXM instructions, one per cycle); beside them the longest dependency chain of this
        program (``dependency_path``, a bound for this lowering only)."""
        from .compiled import _bounds

        vl = self.cfg.vector_length
        n_mxm = len(self.cfg.slices_of("MXM"))
        wbytes, kv = self.low.weight_bytes(), self.low.kv_bytes()
        b = _bounds(self.cfg, self.low.bundles, self.emitted)
        rows = -(-(wbytes + kv) // vl)  # VL-byte weight rows
        out = {"weight_stream": -(-rows // n_mxm), "mvm": b.mxm, "vxm": b.vxm}
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

    def run_on_model(self, rows: np.ndarray, es, machine: Machine | None = None
                     ) -> tuple[list, list[RunResult], Machine]:
        """Steps at positions 0..T-1 (rows ``[T, d_model]`` int32 with exponents ``es``):
        ``([(y, e_y)], runs, machine)``."""
        m = machine if machine is not None else self.new_machine()
        outs, runs = [], []
        d_model = rows.shape[1]
        for p in range(rows.shape[0]):
            for (s, a), v in self.step_writes(rows[p], int(es[p]), p):
                m.write_mem(s, a, v)
            runs.append(m.run(max_cycles=4 * self.cycles + 1000))
            outs.append(self.read_row(m.read_mem, self.low.y, self.low.ey, d_model))
        return outs, runs, m


def compile_layer_step(lc, L: dict, cfg: TspConfig | str, max_context: int,
                       orders=("priority", "program", "cycle")) -> CompiledLayerStep:
    """Lower one decode step once, list-schedule it in each of ``orders`` and keep the
    fastest schedule that fits the instruction memory (the last `CompileError` if none
    does)."""
    cfg = get_config(cfg)
    low = LayerStep(lc, L, cfg, max_context)
    low.run()
    prog, em = low.finish_best("the layer step", orders)
    return CompiledLayerStep(cfg, prog, em.cycles, dict(low.init), low, em)


__all__ = ["CompiledLayerStep", "compile_layer_step"]
