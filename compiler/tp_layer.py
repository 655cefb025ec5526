"""A llama decoder layer's decode step tensor-parallel over a ring of chips, bit-exact with
the one-chip integer numerics (`golden.llm.layer_int`).

Chip ``r`` of ``n`` holds the ``r``-th part of every product, Megatron-style:

* **column split** (output rows of the weight): Q, K, V by *KV head* -- chip ``r`` has KV
  heads ``r*hkv/n ..`` and the query heads that read them (GQA groups stay whole), so
  its attention is local, over its own part of the KV cache; gate and up by hidden
  feature;
* **row split** (input columns, whole GGUF blocks): the output projection and down.
  Their int32 sums are all-reduced over C2C (`allreduce_rows`) before anything uses them.

Every shard keeps its whole tensor's exponent and per-tensor shift (`RowWeight.shard`), so
a column part's sums are those rows of the whole product's and the row parts' sums add up
to the whole one's exactly (each block term is rounded on its own).  Where the one-chip
numerics choose an exponent from a row that is now split -- gate and up narrowed to 16
bits, SiLU and the SwiGLU product narrowed, the context's largest head exponent and its
narrow -- each chip takes the largest of every chip's shift or exponent (`allreduce_reg`: one
byte or two over C2C), which is the whole row's.  RMSNorm, the residual adds and RoPE
work on replicated rows or whole heads and need nothing.

All chips run one SPMD schedule (`compiler.parallel.compile_parallel`'s rule: chip 0
scheduled, the others placed in its cycles, the C2C queues checked identical); the host
writes the same residual row and position into every chip and every chip ends with the
same next residual row.  A whole model (`TpModelStep`) splits every layer so, and the LM
head by vocabulary rows with the argmax agreed over the ring.
"""

from __future__ import annotations

import numpy as np

from arch.config import TspConfig, get_config
from golden.planes import RowWeight

from .collector import paused
from .errors import CompileError
from .graph import Graph, Node
from .layer import CompiledLayerStep, LayerStep, layer_nodes, new_system
from .model import CompiledModelStep, ModelStep, greedy
from .parallel import check_spmd_links


def split_layer(lc, L: dict, chips: int, shard: int) -> dict:
    """Chip ``shard``'s weights of layer ``L`` (`golden.llm.LlamaModel.int_weights`)."""
    hq, hkv, d, f = lc.n_heads, lc.n_kv_heads, lc.head_dim, lc.d_ff
    go, gd = L["wo"].group, L["w_down"].group
    if hkv % chips or f % chips or (hq // chips * d) % go or (f // chips) % gd:
        raise CompileError(
            f"tensor parallel: {chips} chips must divide the {hkv} KV heads and d_ff {f}, "
            f"and each chip's part of the output projection's inputs ({hq}/{chips} heads "
            f"of {d}; blocks of {go}) and of down's (d_ff/{chips}; blocks of {gd}) must be "
            "whole blocks", "shape", True)
    heads = slice(shard * hq // chips * d, (shard + 1) * hq // chips * d)
    kv = slice(shard * hkv // chips * d, (shard + 1) * hkv // chips * d)
    ff = slice(shard * f // chips, (shard + 1) * f // chips)
    out = dict(L)
    out.update(wq=L["wq"].shard(rows=heads), wk=L["wk"].shard(rows=kv),
               wv=L["wv"].shard(rows=kv), wo=L["wo"].shard(cols=heads),
               w_gate=L["w_gate"].shard(rows=ff), w_up=L["w_up"].shard(rows=ff),
               w_down=L["w_down"].shard(cols=ff))
    return out


class TpLayerStep(LayerStep):
    """One chip's program of the tensor-parallel step (lowered as one of an SPMD set)."""

    spmd = True

    def __init__(self, lc, L: dict, cfg: TspConfig, C: int, chips: int, shard: int):
        super().__init__(lc, split_layer(lc, L, chips, shard), cfg, C)
        self.chips, self.shard = chips, shard
        self.hq, self.hkv = lc.n_heads // chips, lc.n_kv_heads // chips
        self.what = f"chip {shard}'s part of the layer step"

    def graph(self) -> Graph:
        D = self.lc.d_model
        return Graph({"h": (1, D, 4), "h.e": (1, D, 2)},
                     tuple(layer_nodes(self.lc, self.L, self.C, chips=self.chips,
                                       rank=self.shard)), ("y",))


def split_head(W: dict, chips: int, shard: int) -> tuple[RowWeight, dict]:
    """Chip ``shard``'s part of the LM head: vocabulary rows ``shard*P ..`` (``P =
    ceil(vocab / chips)``; the last part padded with zero rows) and its argmax's attrs."""
    out = W["output"]
    V = out.shape[0]
    P = -(-V // chips)
    a, b = shard * P, min((shard + 1) * P, V)
    lows = [min((r + 1) * P, V) - r * P for r in range(chips)]
    if min(lows) < 1:
        raise CompileError(f"tensor parallel: a vocabulary of {V} does not split over "
                           f"{chips} chips", "shape", True)
    return out.shard(rows=slice(a, b), pad_rows=P), {
        "chips": chips, "offset": a, "valid": b - a, "valid_min": min(lows)}


class TpModelStep(ModelStep):
    """One chip's program of a tensor-parallel model step: every layer split
    (`compiler.layer.layer_nodes` with ``chips``), the final norm replicated, the LM head
    split by vocabulary rows, the argmax agreed over the ring (the largest logit, then
    the lowest index holding it).
    A tensor's SRAM is reused after its last reader (``keep`` False): a chip's part of the
    activations and tables does not shrink with its weights."""

    spmd = True
    keep = False

    def __init__(self, lc, W: dict, cfg: TspConfig, C: int, chips: int, shard: int):
        head, self.argmax = split_head(W, chips, shard)
        S = {**W, "layers": [split_layer(lc, L, chips, shard) for L in W["layers"]],
             "output": head}
        super().__init__(lc, S, cfg, C)
        self.chips, self.shard = chips, shard
        self.hq, self.hkv = lc.n_heads // chips, lc.n_kv_heads // chips
        self.what = f"chip {shard}'s part of the model step"

    def graph(self) -> Graph:
        lc, W, C = self.lc, self.W, self.C
        nodes, h = [], "h"
        for i, S in enumerate(W["layers"]):
            nodes += layer_nodes(lc, S, C, h, f"l{i}.", self.chips, self.shard)
            h = f"l{i}.y"
        nodes += [Node("head.x", "rmsnorm", (h,), {"norm": W["out_norm"]}),
                  Node("logits", "qlinear", ("head.x",), {"weight": W["output"]}),
                  Node("token", "argmax", ("logits",), self.argmax)]
        D = lc.d_model
        return Graph({"h": (1, D, 4), "h.e": (1, D, 2)}, tuple(nodes), ("token",))


def _spmd(cfg: TspConfig, lows: list, orders, compiled_cls) -> list:
    """Lower every chip's step, schedule chip 0's in the fastest of ``orders`` and place
    the others in its cycles (`check_spmd_links`)."""
    out, ref = [], None
    for low in lows:
        low.run()
        prog, em = (low.finish_best(low.what, orders) if ref is None
                    else low.pb.finish_as(low.what, ref))
        ref = ref if ref is not None else low.bundles
        out.append(compiled_cls(cfg, prog, em.cycles, dict(low.init), low, em))
    check_spmd_links(cfg, [st.emitted for st in out])
    return out


def _with_links(cfg: TspConfig | str, chips: int) -> TspConfig:
    from golden.system import MAX_CHIPS

    if isinstance(chips, bool) or not isinstance(chips, int) or not 1 <= chips <= MAX_CHIPS:
        raise CompileError(f"tensor parallel: chips={chips!r} must be an int in "
                           f"1..{MAX_CHIPS}", "shape", True)
    cfg = get_config(cfg)
    if not cfg.c2c_links:
        raise CompileError(f"tensor parallel: config {cfg.name!r} has no C2C links (use "
                           f"{cfg.with_links().name!r})", "shape", True)
    return cfg


@paused
def compile_tp_layer(lc, L: dict, cfg: TspConfig | str, max_context: int, chips: int,
                     orders=("priority", "program", "cycle")) -> list[CompiledLayerStep]:
    """Every chip's program of one tensor-parallel decode step of layer ``L`` (one SPMD
    schedule, `_spmd`)."""
    cfg = _with_links(cfg, chips)
    return _spmd(cfg, [TpLayerStep(lc, L, cfg, max_context, chips, r) for r in range(chips)],
                 orders, CompiledLayerStep)


@paused
def compile_tp_model(model, cfg: TspConfig | str, max_context: int, chips: int,
                     orders=("priority",)) -> list[CompiledModelStep]:
    """Every chip's program of a tensor-parallel decode step of ``model`` (a
    `golden.llm.LlamaModel`): token in, the next token's id out on every chip."""
    cfg = _with_links(cfg, chips)
    W = model.int_weights()
    lows = [TpModelStep(model.config, W, cfg, max_context, chips, r) for r in range(chips)]
    for low in lows:
        low.check_weights_fit()
    return _spmd(cfg, lows, orders, CompiledModelStep)


def generate_tp(steps: list[CompiledModelStep], prompt_ids, n_tokens: int, on_token=None
                ) -> tuple[list[int], list[list[int]]]:
    """Greedy continuation on the system model (`compiler.model.greedy`, every chip given
    the token's embedding row and the position): ``(new token ids, per step every chip's
    cycles)``; a ValueError if the chips disagree on a token."""
    sysm = new_system(steps)
    at = [0]  # the position of the step last run

    def step(tok: int, p: int) -> list[int]:
        at[0] = p
        for m, st in zip(sysm.machines, steps, strict=True):
            for (s, a), v in st.token_writes(tok, p):
                m.write_mem(s, a, v)
        res = sysm.run(max_cycles=4 * max(st.cycles for st in steps) + 1000)
        return [r.cycles for r in res.chips]

    def read_token() -> int:
        got = [st.read_token(m.read_mem) for st, m in zip(steps, sysm.machines, strict=True)]
        if len(set(got)) != 1:
            raise ValueError(f"step {at[0]}: the chips' next tokens differ: {got}")
        return got[0]

    return greedy(prompt_ids, n_tokens, steps[0].low.C, step, read_token, on_token)


def run_tp_layer(steps: list[CompiledLayerStep], rows: np.ndarray, es,
                 results: list | None = None) -> tuple[list[list], list[list[int]]]:
    """Steps at positions 0..T-1 on the system model (every chip gets row ``p`` of
    ``rows`` and its exponent ``es[p]``): per step every chip's ``(y, e_y)`` and cycles
    (and its `RunResult` appended to ``results``)."""
    rows, es = steps[0].check_steps(rows, es)
    sysm = new_system(steps)
    d_model = rows.shape[1]
    outs, cycles = [], []
    for p in range(rows.shape[0]):
        for m, st in zip(sysm.machines, steps, strict=True):
            for (s, a), v in st.step_writes(rows[p], int(es[p]), p):
                m.write_mem(s, a, v)
        res = sysm.run(max_cycles=4 * max(st.cycles for st in steps) + 1000)
        if results is not None:
            results.append(res.chips)
        cycles.append([r.cycles for r in res.chips])
        outs.append([st.read_row(m.read_mem, st.low.y, st.low.ey, d_model)
                     for st, m in zip(steps, sysm.machines, strict=True)])
    return outs, cycles


__all__ = ["TpLayerStep", "TpModelStep", "compile_tp_layer", "compile_tp_model",
           "generate_tp", "run_tp_layer", "split_head", "split_layer"]
