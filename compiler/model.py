"""One decode step of a whole llama model on the machine: token in, next token out.

``compile_model_step(model, cfg, max_context)`` compiles one program that every step
runs: a graph of every layer's nodes (`compiler.layer.layer_nodes`) and the head:

    embedding row (host) -> layer 0 -> ... -> layer n-1 -> RMSNorm -> LM head
        -> argmax (on chip) -> the next token's id

Per step the host writes the token's embedding row (`golden.vocab.embed_int`: the int32
row of the GGUF's Q8_0 table and its exponent; the issue allows the row instead of the id)
and the position ``p``; it reads the next token's id, an int32 in SRAM.  Every layer keeps
its own KV cache in SRAM across steps.  A prompt is prefilled by the same program, one
token per step (the steps of the prompt's last token gives the first new token), so the
time to first token is ``len(prompt) x cycles``; a prefill that batches the prompt's rows
through the products is not built yet.  Fixed maximum context ``C`` with a position mask,
as in `compiler.layer`: every step has the same predicted cycle count.
"""

from __future__ import annotations

import numpy as np

from arch.config import PRESETS, TspConfig, get_config
from golden.machine import Machine
from golden.vocab import embed_int

from . import tiling as T
from .alloc import FirstOf
from .collector import paused
from .errors import CompileError
from .graph import Graph, Node
from .layer import CompiledLayerStep, LayerStep, layer_nodes


class ModelStep(LayerStep):
    """`LayerStep` over every layer, then the final norm, the LM head and the argmax."""

    def __init__(self, lc, W: dict, cfg: TspConfig, C: int):
        super().__init__(lc, W["layers"][0], cfg, C)
        self.what = f"the model step ({lc.n_layers} layers)"
        self.W = W

    def check_weights_fit(self) -> None:
        """Refuse at once (before lowering every layer) a model whose int8 weights alone
        exceed the SRAM: a `CompileError` naming both sizes and the parameters to raise."""
        need, have = self.weight_bytes(), self.cfg.sram_bytes
        top = {k: hi for k, (_, hi) in TspConfig._RANGES.items()}

        def size(b: int) -> str:
            return f"{b / 2**20:.1f} MiB" if b >= 2**20 else f"{b / 1024:.1f} KiB"

        if need > have:
            raise CompileError(
                f"{self.what} does not fit the SRAM of config {self.cfg.name!r}: its "
                f"int8 weights alone are {size(need)} ({need} bytes; the block scales, the "
                f"KV caches and the activations come on top) but the config has "
                f"{size(have)}.  Use a config with more SRAM (mem_slices_per_hemisphere "
                f"{self.cfg.mem_slices_per_hemisphere} of at most "
                f"{top['mem_slices_per_hemisphere']}, mem_depth {self.cfg.mem_depth} of at "
                f"most {top['mem_depth']}; `full` has {size(PRESETS['full'].sram_bytes)}) "
                f"or a smaller model.", "sram", True)

    def weight_bytes(self) -> int:
        return (sum(LayerStep.weight_bytes_of(L) for L in self.W["layers"])
                + int(self.W["output"].q.size))

    @property
    def n_layers(self) -> int:
        return len(self.W["layers"])

    @property
    def out_name(self) -> str:
        return f"l{self.n_layers - 1}.y"

    def graph(self) -> Graph:
        """Every layer's nodes (tags ``l0.`` ...), then the final RMSNorm, the LM head and
        the argmax: the next token's id in ``token``."""
        lc, W, C = self.lc, self.W, self.C
        nodes, h = [], "h"
        for i, L in enumerate(W["layers"]):
            nodes += layer_nodes(lc, L, C, h, f"l{i}.")
            h = f"l{i}.y"
        nodes += [Node("head.x", "rmsnorm", (h,), {"norm": W["out_norm"]}),
                  Node("logits", "qlinear", ("head.x",), {"weight": W["output"]}),
                  Node("token", "argmax", ("logits",))]
        D = lc.d_model
        return Graph({"h": (1, D, 4), "h.e": (1, D, 2)}, tuple(nodes), ("token",))

    def run(self) -> None:
        super().run()
        self.token = FirstOf(self.tensors["token"])


class CompiledModelStep(CompiledLayerStep):
    """A compiled model step: the layer step's schedule views and bounds (over every
    layer's weights and caches and the LM head's), plus the token interface."""

    @property
    def shape_label(self) -> str:
        lc = self.low.lc
        return (f"llama decode step, {lc.n_layers} layers, context {self.low.C}, d_model "
                f"{lc.d_model}, vocab {self.low.W['output'].shape[0]}")

    def token_writes(self, token: int, pos: int) -> list:
        """The host's writes for one step: the token's embedding row and exponent, and the
        position (one u8 vector per MEM slice)."""
        vl, low = self.cfg.vector_length, self.low
        row, e = embed_int(np.array([token]), low.W["embedding"])
        out = []
        for (_, t), locs in low.h.locs.items():
            out += list(zip(locs, T.bytes_of(T.tile_vec(row[0], t, vl), 4), strict=True))
        for locs in low.eh.locs.values():
            out += list(zip(locs, T.bytes_of(np.full(vl, int(np.ravel(e)[0])), 2), strict=True))
        out += [(loc, np.full(vl, pos, np.uint8)) for loc in low.pos.values()]
        return out

    def read_token(self, read_vec) -> int:
        return int(T.from_bytes(np.stack([read_vec(*loc) for loc in
                                          self.low.token[(0,)]]))[0])

    def generate(self, prompt_ids, n_tokens: int, machine: Machine | None = None,
                 on_token=None) -> tuple[list[int], list[int]]:
        """Greedy continuation on the machine model (`greedy`).  ``(new token ids, cycles
        of every step)``."""
        m = machine if machine is not None else self.new_machine()

        def step(tok: int, p: int) -> int:
            for (s, a), v in self.token_writes(tok, p):
                m.write_mem(s, a, v)
            return m.run(max_cycles=4 * self.cycles + 1000).cycles

        return greedy(prompt_ids, n_tokens, self.low.C, step,
                      lambda: self.read_token(m.read_mem), on_token)


def greedy(prompt_ids, n_tokens: int, C: int, step, read_token, on_token=None):
    """Greedy decoding with a decode program of context ``C``: the prompt one token per
    step, then each generated token fed back.  ``step(token, position)`` runs one step
    (on a machine or a system) and returns its cycles; ``read_token()`` the next token's
    id after it.  ``(new token ids, every step's cycles)``."""
    prompt_ids = [int(t) for t in prompt_ids]
    total = len(prompt_ids) + n_tokens - 1
    if not prompt_ids or n_tokens < 1 or total > C:
        raise ValueError(f"a prompt of {len(prompt_ids)} tokens and {n_tokens} new ones "
                         f"need {total} positions; the program's context is {C} (prompt "
                         f">= 1, tokens >= 1)")
    out, cycles = [], []
    for p in range(total + 1):
        tok = prompt_ids[p] if p < len(prompt_ids) else out[-1]
        cycles.append(step(tok, p))
        if p >= len(prompt_ids) - 1:
            out.append(read_token())
            if on_token is not None:
                on_token(out[-1])
        if len(out) == n_tokens:
            break
    return out, cycles


@paused
def compile_model_step(model, cfg: TspConfig | str, max_context: int,
                       orders=("priority", "program", "cycle")) -> CompiledModelStep:
    """Lower one decode step of ``model`` (a `golden.llm.LlamaModel`) once, list-schedule
    it in each of ``orders`` and keep the fastest that fits the instruction memory."""
    cfg = get_config(cfg)
    low = ModelStep(model.config, model.int_weights(), cfg, max_context)
    low.check_weights_fit()
    low.run()
    prog, em = low.finish_best("the model step", orders)
    return CompiledModelStep(cfg, prog, em.cycles, dict(low.init), low, em)


__all__ = ["CompiledModelStep", "ModelStep", "compile_model_step", "greedy"]
