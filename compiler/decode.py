"""Decode steps of the block: one token per run, the KV cache in MEM SRAM across runs.

``compile_decode(block, cfg, max_context=C)`` compiles *one* program that every decode
step runs.  Per step the host writes the token's residual row ``x_p`` (int32, 4 byte
planes) and its position ``p`` (a u8 vector, ``p`` in every lane), starts the chip and
reads ``y_p``; the weights, tables and the cache stay in SRAM between steps.

What the program does (row layout: one vector per row, lanes = features; inside attention
lanes = key positions ``j < C``):

1. ``x8``, then ``q`` (per head, masked to the head's lanes), ``k``, ``v`` (per head) as
   in the prefill block (the same graph, `compiler.block.decode_graph`, one row).
2. **Append**: ``SCATTER`` writes ``k_p`` (each lane tile) and ``v_p`` (each head and tile)
   at ``cache + p``: the address is the per-lane index read from the position vector, so
   the program is the same for every position.
3. **Position mask** (once per step, two VXM registers from ``p`` and the lane index):
   ``min(score, 32767 | -32768)`` and ``max(d, 0 | 255)`` for ``j <= p | j > p``.
4. **Scores**: ``K`` installed as MXM weights (row ``j`` = cached ``k_j``, loaded from the
   cache), one MVM per head with ``q_h``: lane ``j`` = ``q_h . k_j``; REQUANT to int16,
   masked.
5. **Softmax** per head: ``RMAX`` (SXM) -> ``d = max(M - s, mask):u8:sat`` -> exp Gather
   -> ``RSUM`` (SXM) -> the reciprocal (`lowerings.recip`) -> ``p_j`` int8.
6. **Context**: ``V_h^T`` installed (LWT column ``j`` = cached ``v_j`` of head h), one MVM
   with ``p_h``; the heads of a lane tile accumulate in one slot; REQUANT -> ``ctx``.
7. Wo + residual, W1 + GELU, W2 + residual as in the prefill block -> ``y_p``.

The choice: attention over a *fixed* maximum context ``C`` with a position mask, so every
step runs the same program in the same number of cycles (predicted exactly, measured per
step).  The price is the masked keys: each step loads and multiplies all ``C`` cache rows,
however short the context so far (``C - p - 1`` wasted rows per head and step; see
docs/compiler.md).  Integer semantics are the block's (`golden.block`): decode step ``p``
equals row ``p`` of the causal block on the whole sequence, bit for bit, because every
integer step of a row depends only on that row and the keys it sees.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from arch.config import TspConfig, get_config, preset_hint
from arch.program import Program
from golden.block import QuantBlock
from golden.machine import Machine, RunResult

from . import tiling as T
from .block import PLANS, decode_graph
from .collector import paused
from .compiled import (
    CompiledBlock,
    _bounds,
    _check_weights_fit,
    _justified,
    _schedule,
    check_effort,
)
from .errors import CompileError, imem_error
from .graph import lower_graph
from .lowerings.block_attention import need_two_mem_slices

#: the largest context: the position is a u8 SCATTER index and keys are lanes
MAX_CONTEXT = 256


def _lower(block, cfg, C, plan, rigid_loads, spread, x8_near_input=False):
    """The decode step's graph (`compiler.block.decode_graph`) placed by ``plan``, lowered;
    the builder with the cache, the position vectors and the input's place noted."""
    pb, tensors = lower_graph(decode_graph(block, C, plan, spread=spread,
                                           x8_near_input=x8_near_input), cfg,
                              rigid_loads=rigid_loads, what="the block")
    pb.inputs = {key: [locs] for key, locs in tensors["x"].locs.items()}
    pb.cache = pb.state["ctx"]["cache"]
    return pb


def check_context(cfg: TspConfig, max_context: int) -> None:
    """Refuse a maximum context no decode program on ``cfg`` holds (cheap: callers run it
    before building and calibrating a block)."""
    vl = cfg.vector_length
    if not isinstance(max_context, int) or not 1 <= max_context <= min(vl, MAX_CONTEXT):
        need = -(-int(max_context) // cfg.lanes_per_superlane) if isinstance(
            max_context, int) and max_context > 0 else 1
        if isinstance(max_context, int) and vl < max_context <= MAX_CONTEXT:
            hint = preset_hint("superlanes", need)
        elif isinstance(max_context, int) and max_context > MAX_CONTEXT:
            hint = f"the largest is {MAX_CONTEXT}"
        else:
            hint = "a cache holds at least one position"
        raise CompileError(f"max_context={max_context!r} must be in 1..{min(vl, MAX_CONTEXT)} "
                           f"on config {cfg.name!r} (keys are lanes: VL = {vl}; the position "
                           f"is a u8 index); {hint}", "shape", True)
    need_two_mem_slices(cfg, "decode")


def check_decode(block: QuantBlock, cfg: TspConfig, max_context: int) -> None:
    """Refuse what one decode program cannot do, naming the limit."""
    check_context(cfg, max_context)
    if not block.causal:
        raise CompileError("decode steps need a causal block (each token sees the keys up "
                           "to its own position); this block is non-causal", "shape", True)
    if block.n_heads < 1 or block.d_model % block.n_heads:
        raise CompileError(f"d_head: d_model={block.d_model} is not a multiple of "
                           f"n_heads={block.n_heads}", "shape", True)
    if max_context > block.seq_len:
        raise CompileError(f"max_context={max_context} exceeds the block's calibrated "
                           f"seq_len={block.seq_len}", "shape", True)


@dataclass
class CompiledDecode(CompiledBlock):
    """One decode-step program (see the module docstring) and its host interface."""

    max_context: int = 0
    pos_locs: list = field(default_factory=list)  # (slice, addr) of every copy of p
    caches: dict = field(default_factory=dict)  # name -> (slice, base) of C vectors

    @property
    def shape_label(self) -> str:
        b = self.block
        return (f"one decode step, context {self.max_context}, d_model {b.d_model}, heads "
                f"{b.n_heads}, d_ff {b.d_ff}")

    def decode_bounds(self) -> dict:
        """Lower bounds on one step's cycles, and the ratio of the cycles to the largest.

        * ``weight_stream``: every weight byte of the block and the whole KV cache (K and
          V, ``C x d_model`` each) enters an MXM once, ``mxm_load_rows`` VL-byte rows per
          cycle per MXM (LW/LWT), at most one per MEM slice and cycle:
          ``ceil(bytes / VL) / cfg.weight_rows_per_cycle``;
        * ``mac``: the step's multiply-accumulates (its matmul MVMs are VL x VL each) at
          ``VL^2`` per MXM and cycle;
        * ``vxm``: VXM instructions, one per cycle (one VXM queue);
        * ``path``: the longest dependency chain of the program.
        """
        b, vl = self.block, self.cfg.vector_length
        n_mxm = len(self.cfg.slices_of("MXM"))
        wbytes = sum(int(lin.weight.size) for lin in b.linears().values())
        kv = 2 * self.max_context * b.d_model
        rows = -(-(wbytes + kv) // vl)  # VL-byte weight rows
        bounds = {"weight_stream": -(-rows // self.cfg.weight_rows_per_cycle),
                  "mac": -(-self.useful_mvms // n_mxm),
                  "vxm": self.bounds.vxm, "path": self.bounds.path}
        top = max(bounds, key=bounds.get)
        return {"bounds": bounds, "binding": top, "weight_bytes": wbytes, "kv_bytes": kv,
                "ratio": round(self.cycles / bounds[top], 3)}

    def sram_image(self, x_q=None) -> dict[str, dict[int, np.ndarray]]:
        """What the host writes once, before the first step: weights, tables, constants,
        the zeroed cache (and, with ``x_q``, the first step's input)."""
        img: dict[str, dict[int, np.ndarray]] = {}
        for (s, a), v in self.init.items():
            img.setdefault(s, {})[a] = v.copy()
        if x_q is not None:
            for (s, a), v in self.step_writes(x_q, 0):
                img[s][a] = v
        return img

    def step_writes(self, x_row: np.ndarray, pos: int) -> list[tuple[tuple[str, int], np.ndarray]]:
        """The host writes of one step: the int32 row ``x_row`` (d_model,) and ``pos``."""
        b, vl = self.block, self.cfg.vector_length
        if not isinstance(x_row, np.ndarray) or x_row.dtype != np.int32 or \
                x_row.shape != (b.d_model,):
            got = (f"{x_row.dtype} array of shape {x_row.shape}"
                   if isinstance(x_row, np.ndarray) else type(x_row).__name__)
            raise ValueError(f"x_row: expected an int32 array of shape ({b.d_model},) (one "
                             f"row of the residual stream), got {got}")
        if isinstance(pos, bool) or not isinstance(pos, int | np.integer) or \
                not 0 <= pos < self.max_context:
            raise ValueError(f"pos={pos!r}: the position must be an int in "
                             f"0..{self.max_context - 1} (max_context {self.max_context})")
        out = []
        for (_i, t), copies in self.inputs.items():
            planes = T.bytes_of(T.tile_vec(x_row, t, vl), 4)
            for locs in copies:
                out += list(zip(locs, planes, strict=True))
        out += [(loc, np.full(vl, pos, np.uint8)) for loc in self.pos_locs]
        return out

    def _example(self, x_q) -> tuple[dict, dict, dict]:
        """For `write` (inherited): ``x_q`` is the rows of the steps (T <= max_context,
        d_model; default the block's example input); the image is what the host writes
        before the first step, with step 0's row; expected.npz has ``x_q`` and ``y_q``, the
        output row of each step (the causal block's rows: a step sees the positions before
        it); layout.json adds where each step writes its position."""
        b = self.block
        if x_q is None:
            x_q = b.quantize_input(b.example_input())[:self.max_context]
        x_q = np.asarray(x_q)
        if x_q.ndim != 2 or not 1 <= x_q.shape[0] <= self.max_context or \
                x_q.shape[1] != b.d_model:
            raise ValueError(f"x_q: expected the steps' rows, shape (T, {b.d_model}) with 1 <= "
                             f"T <= {self.max_context}, got shape {x_q.shape}")
        full = np.zeros((b.seq_len, b.d_model), np.int32)  # later rows cannot reach earlier
        full[:len(x_q)] = x_q
        y_q = b.forward_int(full)[:len(x_q)]
        return (self.sram_image(x_q[0].astype(np.int32)), {"x_q": x_q, "y_q": y_q},
                {"position_p": [list(loc) for loc in self.pos_locs],
                 "steps": "each step writes its row (input_x_q) and its position p (every "
                          "byte of each position_p vector) before START"})

    def read_output(self, read_vec) -> np.ndarray:
        """y_p (d_model,) int32 of the step just run."""
        return self._read("y", read_vec)[0]

    def read_cache(self, read_vec, name: str) -> np.ndarray:
        """One cache tensor (``k[t]`` or ``v[h,t]``): (C, VL) int8."""
        s, base = self.caches[name]
        return np.stack([np.asarray(read_vec(s, base + j), np.uint8).view(np.int8)
                         for j in range(self.max_context)])

    def run_on_model(self, x_q: np.ndarray, max_cycles: int | None = None,
                     machine: Machine | None = None
                     ) -> tuple[np.ndarray, list[RunResult], Machine]:
        """Decode the rows of ``x_q`` (T <= max_context, d_model) one step each, at
        positions 0..T-1, on golden.machine.Machine (image loaded once, the cache kept
        between steps): ``(y (T, d_model) int32, one RunResult per step, the machine)``.
        ``machine``: go on with one that already ran (a new sequence over the old cache,
        whose stale positions the mask must hide); else a fresh one, loaded."""
        x_q = np.asarray(x_q)
        if x_q.ndim != 2 or x_q.shape[0] > self.max_context:
            raise ValueError(f"x_q: expected (T <= {self.max_context}, "
                             f"{self.block.d_model}) rows, got shape {x_q.shape}")
        m = machine
        if m is None:
            m = Machine(self.cfg)
            for s, per in self.sram_image().items():
                for a, v in per.items():
                    m.write_mem(s, a, v)
            m.load_program(self.program)
        ys, runs = [], []
        for p in range(x_q.shape[0]):
            for (s, a), v in self.step_writes(x_q[p], p):
                m.write_mem(s, a, v)
            runs.append(m.run(max_cycles=max_cycles or 4 * self.cycles + 1000))
            ys.append(self.read_output(m.read_mem))
        return np.stack(ys).astype(np.int32), runs, m


@paused
def compile_decode(block: QuantBlock, cfg: TspConfig | str, max_context: int | None = None,
                   *, plans=None, orders=("priority", "cycle", "program"),
                   effort: str = "best") -> CompiledDecode:
    """Compile one decode step of the causal ``block`` over a KV cache of ``max_context``
    positions (default: the block's ``seq_len``).  Variants: the MXM ``plans`` x output
    tiles spread over every MXM or over the planned hemisphere's x the scheduling
    ``orders`` (for the two best also the int8 input copy on the input's side), weight
    rows loaded flexibly, then in rigid blocks if the instruction
    memory is short; the fastest that fits is kept."""
    t0 = time.time()
    check_effort(effort)
    cfg = get_config(cfg)
    if not isinstance(block, QuantBlock):
        raise TypeError(f"block: expected a golden.block.QuantBlock, got {type(block).__name__}")
    C = block.seq_len if max_context is None else max_context
    check_decode(block, cfg, C)
    _check_weights_fit(block, cfg)
    plans = list(plans or PLANS)
    tried, errors, best = [], [], None
    variants = [(pi, spread, False) for spread in (True, False) for pi in range(len(plans))]

    def attempt(rigid, pi, spread, x8i):
        nonlocal best
        try:
            low = _lower(block, cfg, C, plans[pi], rigid, spread, x8i)
        except CompileError as exc:
            if exc.final:
                raise
            errors.append(exc)
            return
        for order in orders:
            em = _schedule(cfg, low, order)
            words = {k: q.nwords for k, q in em.queues.items()}
            fits = cfg.imem_fits(words)
            rec = {"plan": pi, "spread": spread, "x8_near_input": x8i, "rigid_loads": rigid,
                   "order": order, "cycles": em.cycles,
                   "max_words": max(words.values()), "fits": fits, "words": words}
            tried.append(rec)
            if fits and (best is None or em.cycles < best[2]["cycles"]):
                best = (low, order, rec)
            if fits and effort == "fast":
                break

    for rigid in (False, True):
        for v in variants:
            attempt(rigid, *v)
            if best is not None and effort == "fast":
                break
        if effort != "fast":  # the two best placements again with x8 on the input's side
            mine = sorted((r for r in tried if r["rigid_loads"] == rigid and r["fits"]),
                          key=lambda r: r["cycles"])
            seen = []
            for r in mine:
                if (r["plan"], r["spread"]) not in seen and len(seen) < 2:
                    seen.append((r["plan"], r["spread"]))
            for pi, spread in seen:
                attempt(rigid, pi, spread, True)
        if best is not None:
            break
    if best is None:
        if not tried:
            raise errors[0]
        raise imem_error("the decode step", cfg, min(tried, key=lambda r: r["max_words"])["words"])
    low, order, rec = best
    em = _schedule(cfg, low, order, full=True)
    assert em.cycles == rec["cycles"]
    em, how = _justified(cfg, low, order, em, orders, effort)
    prog = Program.from_instrs(cfg, {k: q.words for k, q in em.queues.items()})
    return CompiledDecode(
        cfg=cfg, block=block, program=prog, emitted=em, bundles=low.bundles, init=low.init,
        inputs=low.inputs, kept=low.valid_intermediates(),
        bounds=_bounds(cfg, low.bundles, em),
        variant={"plan": rec["plan"], "spread": rec["spread"],
                 "x8_near_input": rec["x8_near_input"],
                 "rigid_loads": rec["rigid_loads"], "order": order,
                 "listed_cycles": rec["cycles"], **how, "max_context": C},
        sram_used=low.mem.used, sram_peak=low.mem.peak, compile_seconds=time.time() - t0,
        tried=[{k: v for k, v in r.items() if k != "words"} for r in tried],
        max_context=C, pos_locs=list(low.cache.pos.values()),
        caches={**{f"k[{t}]": loc for t, (_, loc) in low.cache.k.items()},
                **{f"v[{h},{t}]": loc for (h, t), (_, loc) in low.cache.v.items()}})
