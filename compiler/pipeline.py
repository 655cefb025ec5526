"""Pipeline parallelism: a llama's decode step over chips too small to hold it alone.

Chip ``k`` of ``K`` holds a run of consecutive layers (their weights and KV caches); the
last also holds the final norm, the LM head and the argmax.  The residual row leaves a
chip as it is made (`send` nodes: int32 values on C2C_E link 0, their exponents on link 1)
and the next chip receives it (`recv` nodes) at the cycles it arrives.  The chips are
compiled in order: chip ``k``'s program is scheduled first, the cycles its SENDs issue
give chip ``k+1``'s arrivals (``+ c2c_arrival(w)``), and chip ``k+1``'s RECVs are
placed at them (`Bundle.earliest`), everything after them waiting on the data.  All
chips start together; a decode step ends when the last chip has its token, so a step
costs the sum of the stages plus the hops (one token in flight: pipelining across tokens
needs several sequences, not built).

`split_layers` balances the stages by weight bytes (the LM head counted on the last).
`PipelineModel.generate` runs steps on `golden.system.System`, the host writing the
token's embedding row into chip 0 and the position into every chip.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from arch.config import TspConfig, get_config

from .collector import paused
from .graph import Graph, Node
from .layer import LayerStep, layer_nodes, new_system
from .lowerings.link import sent
from .model import CompiledModelStep, ModelStep, greedy

#: links of a stage boundary: the residual row's int32 values, its exponents
LINK_H, LINK_E = 0, 1


class StageStep(ModelStep):
    """Layers ``a .. b-1`` of the model on one chip; ``arrivals`` (chip > 0): the
    previous chip's `sent` list; ``last``: the head too."""

    def __init__(self, lc, W: dict, cfg: TspConfig, C: int, a: int, b: int, last: bool,
                 arrivals=None):
        super().__init__(lc, W, cfg, C)
        self.a, self.b, self.last, self.arrivals = a, b, last, arrivals
        self.what = f"pipeline stage of layers {a}..{b - 1}" + (" and the head" if last else "")

    def weight_bytes(self) -> int:
        out = sum(LayerStep.weight_bytes_of(L) for L in self.W["layers"][self.a:self.b])
        return out + (int(self.W["output"].q.size) if self.last else 0)

    @property
    def n_layers(self) -> int:
        return self.b - self.a

    @property
    def out_name(self) -> str:
        return f"l{self.b - 1}.y"

    def graph(self) -> Graph:
        lc, W, C = self.lc, self.W, self.C
        D = lc.d_model
        nodes, inputs = [], {"h": (1, D, 4), "h.e": (1, D, 2)}
        if self.a > 0:  # the residual row from the previous chip
            cfg = self.cfg
            for name, link, nb in (("h", LINK_H, 4), ("h.e", LINK_E, 2)):
                arr = [(key, cyc + cfg.c2c_arrival(planes))
                       for cyc, ln, planes, key in self.arrivals if ln == link]
                nodes.append(Node(name, "recv", (), {"shape": (1, D, nb), "link": link,
                                                     "key": name, "arrivals": arr}, nb))
            inputs = {}
        h = "h"
        for i in range(self.a, self.b):
            nodes += layer_nodes(lc, W["layers"][i], C, h, f"l{i}.")
            h = f"l{i}.y"
        if self.last:
            nodes += [Node("head.x", "rmsnorm", (h,), {"norm": W["out_norm"]}),
                      Node("logits", "qlinear", ("head.x",), {"weight": W["output"]}),
                      Node("token", "argmax", ("logits",))]
            outs = ("token",)
        else:
            nodes += [Node("to_next", "send", (h,), {"link": LINK_H, "key": "h"}),
                      Node("to_next.e", "send", (f"{h}.e",), {"link": LINK_E, "key": "h.e"})]
            outs = ("to_next", "to_next.e")
        return Graph(inputs, tuple(nodes), outs)

    def run(self) -> None:
        LayerStep.run(self)
        if self.last:
            from .alloc import FirstOf
            self.token = FirstOf(self.tensors["token"])


def split_layers(W: dict, chips: int) -> list[tuple[int, int]]:
    """``chips`` runs of consecutive layers (at least one each), the LM head on the last
    chip, with the largest chip's weight bytes as small as possible: ``[(a, b), ...]``."""
    sizes = [LayerStep.weight_bytes_of(L) for L in W["layers"]]
    n = len(sizes)
    if not 1 <= chips <= n:
        raise ValueError(f"pipeline: {chips} chips for {n} layers (1..{n})")
    head = int(W["output"].q.size)
    pre = np.concatenate([[0], np.cumsum(sizes)])
    inf = float("inf")
    # best[k][i]: the smallest largest load of the first i layers on k chips; cut: its j
    best = [[inf] * (n + 1) for _ in range(chips + 1)]
    cut = [[0] * (n + 1) for _ in range(chips + 1)]
    best[0][0] = 0
    for k in range(1, chips + 1):
        for i in range(k, n + 1):
            for j in range(k - 1, i):
                load = pre[i] - pre[j] + (head if k == chips and i == n else 0)
                v = max(best[k - 1][j], load)
                if v < best[k][i]:
                    best[k][i], cut[k][i] = v, j
    out, i = [], n
    for k in range(chips, 0, -1):
        out.append((cut[k][i], i))
        i = cut[k][i]
    return out[::-1]


@dataclass
class PipelineModel:
    cfg: TspConfig
    stages: list[CompiledModelStep]
    split: list[tuple[int, int]]

    @property
    def cycles(self) -> int:
        """Cycles of a decode step: the last chip's end (every chip starts together)."""
        return max(s.cycles for s in self.stages)

    def generate(self, prompt_ids, n_tokens: int, on_token=None):
        """Greedy continuation on the system model (`compiler.model.greedy`; the token's
        embedding row into chip 0, the position into every chip): ``(new token ids, per
        step: every chip's cycles)``."""
        sysm = new_system(self.stages)

        def step(tok: int, p: int) -> list[int]:
            writes = [(0, w) for w in self.stages[0].token_writes(tok, p)]
            for k, st in enumerate(self.stages[1:], 1):
                writes += [(k, (loc, np.full(self.cfg.vector_length, p, np.uint8)))
                           for loc in st.low.pos.values()]
            for k, ((s, a), v) in writes:
                sysm.machines[k].write_mem(s, a, v)
            return [r.cycles for r in sysm.run(max_cycles=4 * self.cycles + 1000).chips]

        return greedy(prompt_ids, n_tokens, self.stages[0].low.C, step,
                      lambda: self.stages[-1].read_token(sysm.machines[-1].read_mem),
                      on_token)


@paused
def compile_pipeline(model, cfg: TspConfig | str, max_context: int, chips: int,
                     orders=("priority",), log=None) -> PipelineModel:
    """One program per chip of ``cfg`` (which needs two links per end) for ``chips``
    pipeline stages of ``model`` (a `golden.llm.LlamaModel`)."""
    import time

    cfg = get_config(cfg)
    if cfg.c2c_links < 2:
        raise ValueError(f"pipeline: config {cfg.name!r} needs 2 C2C links per end "
                         f"(the row and its exponents), has {cfg.c2c_links}")
    W = model.int_weights()
    split = split_layers(W, chips)
    stages, arrivals = [], None
    for k, (a, b) in enumerate(split):
        t0 = time.monotonic()
        low = StageStep(model.config, W, cfg, max_context, a, b, k == chips - 1, arrivals)
        low.check_weights_fit()
        low.run()
        prog, em = low.finish_best(low.what, orders)
        stages.append(CompiledModelStep(cfg, prog, em.cycles, dict(low.init), low, em))
        if not low.last:  # what the next chip receives, and when it leaves this one
            t = low.tensors
            arrivals = (sent(low.bundles, "to_next", t[low.out_name])
                        + sent(low.bundles, "to_next.e", t[f"{low.out_name}.e"]))
        if log is not None:
            log(f"  chip {k}: layers {a}..{b - 1}{' + head' if k == chips - 1 else ''}, "
                f"{low.weight_bytes() / 2**20:.1f} MiB of weights, ends in cycle "
                f"{em.cycles} ({time.monotonic() - t0:.0f} s)")
    return PipelineModel(cfg, stages, split)


__all__ = ["PipelineModel", "StageStep", "compile_pipeline", "split_layers"]
