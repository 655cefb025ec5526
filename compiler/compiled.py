"""``compile_block``: lower, schedule, emit, check resources; the :class:`CompiledBlock`.

The driver tries a few variants and keeps the fastest that fits the config:
intermediates kept in SRAM or their space reused (when SRAM is short), list scheduling
by critical-path priority or in program order (more regular, so more REPEATs: the
fallback when instruction memory is short).  Nothing here runs the machine model: the
cycle count, busy cycles and MVM counts are computed from the schedule itself with the
ISA's definitions (:mod:`compiler.emit`); :meth:`CompiledBlock.run_on_model` checks them.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from arch.asm import format_instr
from arch.config import TspConfig, get_config
from arch.program import Program
from golden.block import QuantBlock
from golden.machine import Machine, RunResult

from . import tiling as T
from .block import PLANS, block_graph, check_block
from .builder import ProgramBuilder
from .collector import paused
from .emit import Emitted, emit
from .errors import CompileError, imem_error
from .graph import lower_graph
from .ir import Bundle, op_slots
from .schedule import justify, list_schedule, place_in_order

#: the golden trace names the compiled program can keep in SRAM (scores are the masked
#: scores when the block is causal)
INTERMEDIATES = ("x8", "q", "k", "v", "scores", "scores_masked", "exp", "probs", "ctx", "h",
                 "h_sum", "ff1", "gelu", "y")


@dataclass
class Bounds:
    """Lower bounds on the total cycle count of the compiled program."""

    mxm: int  # MVMs / number of MXMs (the machine's matmul bound for these products)
    mxm_slots: int  # busiest MXM queue: max(MVM + IW, weight loads + IW) issue slots
    vxm: int  # VXM instructions / VXM groups (each group issues one per cycle)
    queue: int  # busiest queue of any kind (issue slots)
    path: int  # longest dependency chain (latencies and stream distances)

    @property
    def best(self) -> int:
        return max(self.mxm, self.mxm_slots, self.vxm, self.queue, self.path)

    def as_dict(self) -> dict:
        return {"mxm_mvm": self.mxm, "mxm_issue": self.mxm_slots, "vxm_issue": self.vxm,
                "busiest_queue": self.queue, "dependency_path": self.path,
                "lower_bound": self.best}


class ScheduleView:
    """The issued instructions of a compiled program (needs ``cfg``, ``emitted``,
    ``bundles`` and ``stats()``)."""

    def schedule(self) -> list[tuple[int, str, str, str]]:
        """Every slice instruction (repetitions expanded): (cycle, slice, mnemonic, text)."""
        out = []
        for name, q in self.emitted.queues.items():
            for c, ins, _lat in q.issued:
                out.append((c, name, ins.mnemonic, format_instr(ins)))
        out.sort(key=lambda r: (r[0], self.cfg.slice(r[1]).index))
        return out

    def schedule_json(self) -> dict:
        lat = {}
        for q in self.emitted.queues.values():
            for c, _ins, L in q.issued:
                lat[(q.slice, c)] = L
        where = {}
        for b in self.bundles:
            for op in b.ops:
                where.setdefault((op.slice, op.cycle), []).append(b.name)
        return {"stats": self.stats(),
                "instructions": [{"cycle": c, "slice": s, "mnemonic": m, "text": t,
                                  "latency": lat[(s, c)], "bundle": "; ".join(where[(s, c)])}
                                 for c, s, m, t in self.schedule()]}


@dataclass
class CompiledBlock(ScheduleView):
    cfg: TspConfig
    block: QuantBlock
    program: Program
    emitted: Emitted
    bundles: list[Bundle]
    init: dict[tuple[str, int], np.ndarray]
    inputs: dict[tuple[int, int], list[tuple[str, int]]]
    kept: dict[str, tuple]
    bounds: Bounds
    variant: dict
    sram_used: int
    sram_peak: int
    compile_seconds: float = 0.0
    tried: list[dict] = field(default_factory=list)

    # -- figures -------------------------------------------------------------------------
    @property
    def shape_label(self) -> str:
        b = self.block
        return (f"seq {b.seq_len}, d_model {b.d_model}, heads {b.n_heads}, d_ff {b.d_ff}"
                f"{'' if b.causal else ', non-causal'}")

    @property
    def cycles(self) -> int:
        """Predicted total cycles (docs/isa.md definition)."""
        return self.emitted.cycles

    @property
    def lower_bound(self) -> int:
        return self.bounds.best

    @property
    def ratio(self) -> float:
        return self.cycles / self.lower_bound

    @property
    def useful_mvms(self) -> int:
        """MVMs that compute products of the block's own matmuls."""
        return self.emitted.mvm_purpose.get("matmul", 0)

    @property
    def overhead_mvms(self) -> dict[str, int]:
        """MVMs of the lowering's own (transposes, re-emits, row sums), by kind."""
        return {k: v for k, v in sorted(self.emitted.mvm_purpose.items()) if k != "matmul"}

    @property
    def mxm_utilisation(self) -> float:
        """Useful MVMs / (cycles x MXMs): only the block's own matmul products count."""
        n = len(self.emitted.mvm)
        return self.useful_mvms / (self.cycles * n)

    @property
    def mxm_utilisation_all(self) -> float:
        """Every MVM issued / (cycles x MXMs), overhead included."""
        n = len(self.emitted.mvm)
        return sum(self.emitted.mvm.values()) / (self.cycles * n)

    @property
    def busy(self) -> dict[str, int]:
        return dict(self.emitted.busy)

    @property
    def words(self) -> dict[str, int]:
        return {k: len(q.words) for k, q in self.emitted.queues.items()}

    def stats(self) -> dict:
        cfg = self.cfg
        kinds: dict[str, list[int]] = {}
        for s in cfg.slices:
            kinds.setdefault(s.kind, []).append(self.busy[s.name])
        return {
            "config": cfg.name,
            "shape": {"seq": self.block.seq_len, "d_model": self.block.d_model,
                      "heads": self.block.n_heads, "d_ff": self.block.d_ff,
                      "causal": self.block.causal},
            "cycles": self.cycles,
            "bounds": self.bounds.as_dict(),
            "ratio": round(self.ratio, 3),
            "mxm_mvm": dict(self.emitted.mvm),
            "mxm_utilisation": round(self.mxm_utilisation, 4),
            "mxm_utilisation_all_mvms": round(self.mxm_utilisation_all, 4),
            "mvm_useful": self.useful_mvms,
            "mvm_overhead": self.overhead_mvms,
            "busy": self.busy,
            "busy_pct_by_kind": {k: round(100 * sum(v) / (len(v) * self.cycles), 1)
                                 for k, v in kinds.items()},
            "words": self.words,
            "imem_depth": {k: cfg.imem_depth_of(k) for k in self.words},
            "sram_vectors_used": self.sram_used,
            "sram_vectors_peak": self.sram_peak,
            "sram_vectors": cfg.mem_addresses * len(cfg.slices_of("MEM")),
            "vector_bytes": cfg.vector_length,
            "variant": self.variant,
            "kept_intermediates": sorted(self.kept),
        }

    # -- schedule --------------------------------------------------------------------------
    # -- host interface ----------------------------------------------------------------------
    def _x_vectors(self, x_q: np.ndarray):
        b = self.block
        if not isinstance(x_q, np.ndarray) or x_q.dtype != np.int32 or x_q.shape != b.shape:
            got = (f"{x_q.dtype} array of shape {x_q.shape}" if isinstance(x_q, np.ndarray)
                   else type(x_q).__name__)
            raise ValueError(f"x_q: expected an int32 array of shape {b.shape} (the residual "
                             f"stream, QuantBlock.quantize_input), got {got}")
        vl = self.cfg.vector_length
        for (i, t), copies in self.inputs.items():
            planes = T.bytes_of(T.tile_vec(x_q[i], t, vl), 4)
            for locs in copies:
                yield from zip(locs, planes, strict=True)

    def sram_image(self, x_q: np.ndarray) -> dict[str, dict[int, np.ndarray]]:
        """Everything the host writes into SRAM before start: {MEM slice: {addr: uint8[VL]}}
        (weights, tables, constants and the input ``x_q``, which goes to both hemispheres)."""
        img: dict[str, dict[int, np.ndarray]] = {}
        for (s, a), v in self.init.items():
            img.setdefault(s, {})[a] = v.copy()
        for (s, a), v in self._x_vectors(x_q):
            img.setdefault(s, {})[a] = v.copy()
        return img

    def input_layout(self) -> dict:
        """Where x_q goes: vector (row i, lane tile t) = x_q[i, t*VL:(t+1)*VL] (int32, zero
        padded), byte plane p (little-endian) at the p-th (slice, address) of each copy."""
        return {f"{i},{t}": [[list(loc) for loc in locs] for locs in copies]
                for (i, t), copies in self.inputs.items()}

    def output_layout(self) -> dict:
        """Where y_q is: vector (row i, lane tile t), int32, byte plane p at the p-th
        (slice, address)."""
        kind, t, width = self.kept["y"]
        return {f"{i},{tt}": [list(loc) for loc in locs] for (i, tt), locs in t.locs.items()}

    def read_output(self, read_vec: Callable[[str, int], np.ndarray]) -> np.ndarray:
        """y_q (seq_len, d_model) int32 from ``read_vec(slice, addr) -> uint8[VL]``."""
        return self._read("y", read_vec)

    def read_intermediates(self, read_vec: Callable[[str, int], np.ndarray]) -> dict:
        """The golden-trace intermediates that stay in SRAM (``self.kept``)."""
        return {name: self._read(name, read_vec) for name in self.kept}

    def _read(self, name: str, read_vec) -> np.ndarray:
        b, vl = self.block, self.cfg.vector_length
        S = b.seq_len
        kind, t, meta = self.kept[name]

        def vec(loc, signed=True, dtype=np.int8):
            return np.asarray(read_vec(*loc), np.uint8)

        if kind in ("rows", "rows4", "heads"):
            width = meta
            nt = T.ntiles(width, vl)
            out = np.zeros((S, nt * vl), np.int64)
            for key, locs in t.locs.items():
                if kind == "heads":
                    _h, i, tt = key
                else:
                    i, tt = key
                planes = np.stack([vec(loc) for loc in locs])
                out[i, tt * vl:(tt + 1) * vl] += T.from_bytes(planes, signed=True)
            dtype = np.int32 if kind == "rows4" else np.int8
            return out[:, :width].astype(dtype)
        # attention tensors: {h: {j: locs}}, vector j holds query i in lane i
        out = np.zeros((b.n_heads, S, S), np.int64)
        signed = name != "exp"
        for h, per in t.items():
            for j, (locs, lane0) in per.items():
                planes = np.stack([vec(loc) for loc in locs])
                out[h, :, j] = T.from_bytes(planes, signed=signed)[lane0:lane0 + S]
        dtype = {"exp": np.int32, "probs": np.int8}.get(name, np.int16)
        return out.astype(dtype)

    def run_on_model(self, x_q: np.ndarray, max_cycles: int | None = None
                     ) -> tuple[np.ndarray, RunResult, dict]:
        """Load the SRAM image and program into golden.machine.Machine, run, read back."""
        m = Machine(self.cfg)
        for s, per in self.sram_image(x_q).items():
            for a, v in per.items():
                m.write_mem(s, a, v)
        m.load_program(self.program)
        res = m.run(max_cycles=max_cycles or 4 * self.cycles + 1000)

        def rd(s, a):
            return m.read_mem(s, a)
        return self.read_output(rd), res, self.read_intermediates(rd)

    # -- files -----------------------------------------------------------------------------
    def _example(self, x_q) -> tuple[dict, dict, dict]:
        """For `write`: (the SRAM image with ``x_q``, expected.npz's arrays, more of
        layout.json)."""
        if x_q is None:
            x_q = self.block.quantize_input(self.block.example_input())
        return self.sram_image(x_q), {"x_q": x_q, "y_q": self.block.forward_int(x_q)}, {}

    def write(self, outdir: str | Path, plot: bool = False, x_q: np.ndarray | None = None
              ) -> dict[str, Path]:
        """prog.bin, schedule.json, layout.json, sram_image.npz (per MEM slice
        ``<slice>.addr`` int32[n] and ``<slice>.data`` uint8[n, VL]: everything the host
        writes, with ``x_q`` -- default the block's example input), expected.npz (x_q and
        the golden y_q), and with ``plot`` schedule.png."""
        out = Path(outdir)
        out.mkdir(parents=True, exist_ok=True)
        files = {"prog.bin": out / "prog.bin", "schedule.json": out / "schedule.json",
                 "layout.json": out / "layout.json", "sram_image.npz": out / "sram_image.npz",
                 "expected.npz": out / "expected.npz"}
        files["prog.bin"].write_bytes(self.program.to_bytes())
        image, expected, layout = self._example(x_q)
        arrays = {}
        for sl, per in sorted(image.items()):
            addrs = sorted(per)
            arrays[f"{sl}.addr"] = np.array(addrs, np.int32)
            arrays[f"{sl}.data"] = np.stack([per[a] for a in addrs])
        np.savez(files["sram_image.npz"], **arrays)
        np.savez(files["expected.npz"], **expected)
        files["schedule.json"].write_text(json.dumps(self.schedule_json(), indent=1))
        files["layout.json"].write_text(json.dumps({
            "config": self.cfg.to_dict(), "input_x_q": self.input_layout(),
            "output_y_q": self.output_layout(),
            "sram_image_constants": len(self.init), **layout}, indent=1))
        if plot:
            from .plot import plot_schedule
            files["schedule.png"] = out / "schedule.png"
            plot_schedule(self, files["schedule.png"])
        return files


# ------------------------------------------------------------------------------- driver
def _bounds(cfg: TspConfig, bundles: list[Bundle], em: Emitted) -> Bounds:
    n_mxm = len(cfg.slices_of("MXM"))
    mvm = sum(em.mvm.values())
    per: dict[str, dict[str, int]] = {}  # slice -> issue sub-slot -> ops that take it
    for b in bundles:
        for op in b.ops:
            d = per.setdefault(op.slice, {})
            for sub in op_slots(op):
                d[sub] = d.get(sub, 0) + 1
    # a queue issues one op per sub-slot and cycle (an MXM an MVM and a load, a MEM slice
    # with mem_read_write a READ and a WRITE; IW, GATHER, SCATTER take both)
    slots = {s: max(d.values()) for s, d in per.items()}
    mxm_slots = max((v for s, v in slots.items() if cfg.slice(s).kind == "MXM"), default=0)
    # longest dependency path: prio of every bundle is its longest path to the end; a
    # bundle cannot start before its own earliest start (longest path from the program
    # start), so the program needs at least max(start + prio) + 1 cycles
    start = {}
    best = 0
    for b in bundles:
        t = 0
        for p, poff, off, d in b.preds:
            t = max(t, start[id(p)] + poff + d - off)
        start[id(b)] = t
        best = max(best, t + b.span)
    vxms = [s.name for s in cfg.slices_of("VXM")]
    return Bounds(mxm=math.ceil(mvm / n_mxm), mxm_slots=mxm_slots,
                  vxm=math.ceil(sum(slots.get(s, 0) for s in vxms) / len(vxms)),
                  queue=max(slots.values()), path=best + 1)


def _lower(block, cfg, keep, plan, prealloc=(), rigid_loads=True, v_transpose=False,
           x8_near_input=False, scores_after_inputs=False, spread_mlp=False,
           pb: ProgramBuilder | None = None) -> ProgramBuilder:
    """The block's graph (`compiler.block.block_graph`) placed by ``plan``, lowered."""
    graph = block_graph(block, plan, v_transpose=v_transpose, x8_near_input=x8_near_input,
                        scores_after_inputs=scores_after_inputs, spread_mlp=spread_mlp)
    pb, tensors = lower_graph(graph, cfg, keep=keep, rigid_loads=rigid_loads,
                              prealloc=prealloc, pb=pb, what="the block")
    pb.inputs = {key: [locs] for key, locs in tensors["x"].locs.items()}
    return pb


def _lower_retry(block, cfg, keep, plan, **opts) -> ProgramBuilder:
    """Lower; in SRAM-reuse mode, retry with the register constants of the first attempt
    pre-allocated (host constants created late cannot take reused space)."""
    try:
        return _lower(block, cfg, keep, plan, **opts)
    except CompileError as exc:
        if keep or exc.resource != "sram" or exc.final:
            raise
    first = ProgramBuilder(cfg, keep=False, rigid_loads=opts.get("rigid_loads", True))
    try:
        _lower(block, cfg, False, plan, pb=first, **opts)
    except CompileError:
        pass
    return _lower(block, cfg, False, plan, first.const_values, **opts)


def _schedule(cfg, low, order, full: bool = False) -> Emitted:
    list_schedule(cfg, low.bundles, order=order)
    return emit(cfg, low.bundles, full)


def _justified(cfg, low, order, em: Emitted, orders=("priority", "cycle", "program"),
               effort: str = "best") -> tuple[Emitted, dict]:
    """The chosen variant's schedule (placed in ``order``, emitted as ``em``) improved by
    forward-backward passes (`schedule.justify`) from its list schedule in each of
    ``orders``, where one is shorter and still fits the instruction memory: (its Emitted,
    {"justified": the round, 0 if none was shorter and ``em`` is placed again;
    "justified_from": the order whose list schedule the passes started from}).
    ``effort="fast"``: no passes, ``em`` as it is.  (The
    passes pack a schedule that left bundles waiting better than one that did not: on the
    medium block the `cycle` order's 1,671 cycles justify to 1,597, `priority`'s 1,635 to
    1,606.)"""
    best, best_key, how = em, None, {"justified": 0, "justified_from": order}
    if effort == "fast":
        return em, how
    for o in (order, *(o for o in orders if o != order)):
        list_schedule(cfg, low.bundles, order=o)
        # three rounds from the chosen order's schedule, one from the others' (a later
        # round helped only from the chosen one: the tiny block's third, 763 -> 723)
        for k, key in enumerate(justify(cfg, low.bundles, rounds=3 if o == order else 1), 1):
            e = emit(cfg, low.bundles, False)  # (counted; the one kept is emitted below)
            if e.cycles < best.cycles and cfg.imem_fits({q: v.nwords
                                                         for q, v in e.queues.items()}):
                best, best_key, how = e, key, {"justified": k, "justified_from": o}
    if best_key is None:
        return _schedule(cfg, low, order, full=True), how
    place_in_order(cfg, low.bundles, best_key)
    again = emit(cfg, low.bundles, True)
    assert again.cycles == best.cycles, (again.cycles, best.cycles)
    return again, how


def _check_weights_fit(block: QuantBlock, cfg: TspConfig) -> None:
    """Fail fast if the int8 weights alone exceed the SRAM (the host writes all of them
    before the program starts, so this is a lower bound on what the block needs)."""
    vl = cfg.vector_length
    wbytes = sum(int(lin.weight.size) for lin in block.linears().values())
    need = -(-wbytes // vl)
    n_mem = len(cfg.slices_of("MEM"))
    cap = cfg.mem_addresses * n_mem
    if need > cap:
        raise CompileError(
            f"the block does not fit the SRAM of config {cfg.name!r}: it needs at least "
            f"{need} vectors ({wbytes / 1024:.1f} KiB) for its int8 weights alone but the "
            f"config has {cap} ({n_mem} MEM slices x {cfg.mem_addresses} addresses x {vl} B "
            f"= {cap * vl / 1024:.1f} KiB).  Raise mem_depth (now {cfg.mem_depth}) or "
            f"mem_slices_per_hemisphere, or use a smaller block.", "sram", True)


def _two_best(firsts: list[dict], lowered: dict) -> list[dict]:
    """The two fastest of stage 1's records (fitting ones first); the lowerings of the
    others dropped from ``lowered`` (a record out of the two never comes back in)."""
    ranked = sorted(firsts, key=lambda r: (not r["fits"], r["cycles"]))[:2]
    keep = {(r["plan"], r["spread_mlp"]) for r in ranked}
    for key in [k for k in lowered if k not in keep]:
        del lowered[key]
    return ranked


#: how hard `compile_block` and `compile_decode` search: every variant, or the first that fits
EFFORTS = ("best", "fast")


def check_effort(effort) -> None:
    if effort not in EFFORTS:
        raise ValueError(f"effort={effort!r}: expected one of {', '.join(map(repr, EFFORTS))}")


@paused
def compile_block(block: QuantBlock, cfg: TspConfig | str, *, plans=None,
                  orders=("priority", "cycle", "program"), effort: str = "best"
                  ) -> CompiledBlock:
    """Compile the quantised block for ``cfg``.

    The block is a graph (`compiler.block.block_graph`) compiled by the shared
    `compiler.graph.lower_graph`.  Variants tried, fastest schedule kept: the MXM
    assignment ``plans`` (default :data:`compiler.block.PLANS`) x scheduling ``orders``,
    with weight rows loaded flexibly, the products after the attention spread over every
    MXM or not (where there are several; for the two best (plan, spread) pairs also V^T,
    the int8 input copy on the input's side, the attention's score slices chosen after
    the input is placed); if no
    variant fits the instruction memory, weight rows loaded in rigid consecutive blocks
    (more REPEATs); if nothing fits the SRAM with every intermediate kept, with dead SRAM
    reused.  ``effort="fast"``: the first variant that fits.  Raises
    :class:`CompileError` naming the resource (SRAM, imem, accumulators, shape) and
    needed vs available."""
    t0 = time.time()
    check_effort(effort)
    cfg = get_config(cfg)
    if not isinstance(block, QuantBlock):
        raise TypeError(f"block: expected a golden.block.QuantBlock, got {type(block).__name__}")
    _check_weights_fit(block, cfg)
    check_block(block, cfg)
    plans = list(plans or PLANS)
    tried: list[dict] = []
    errors: list[CompileError] = []
    best = None

    lowered = {}  # (plan, spread) -> its stage 1 lowering, for stage 2's other orders

    def attempt(keep, rigid, pi, vt, order_list, x8i=False, late=False, spread=False,
                low=None, stage1=False):
        """Lower once (unless ``low``, stage 1's lowering, is given), schedule in each order
        (``stage1``: keep the lowering in ``lowered``); returns the best fitting record or
        None."""
        nonlocal best
        if low is None:
            try:
                low = _lower_retry(block, cfg, keep, plans[pi], rigid_loads=rigid,
                                   v_transpose=vt, x8_near_input=x8i,
                                   scores_after_inputs=late, spread_mlp=spread)
            except CompileError as exc:
                if exc.final:
                    raise
                errors.append(exc)
                return None
        mine = None  # this lowering's fastest record (fitting ones first)
        if stage1:
            lowered[pi, spread] = low
        for order in order_list:
            em = _schedule(cfg, low, order)
            words = {k: q.nwords for k, q in em.queues.items()}
            fits = cfg.imem_fits(words)
            rec = {"plan": pi, "keep": keep, "rigid_loads": rigid, "v_transpose": vt,
                   "x8_near_input": x8i, "scores_after_inputs": late,
                   "spread_mlp": spread, "order": order,
                   "cycles": em.cycles,
                   "max_words": max(words.values()), "fits": fits, "words": words}
            tried.append(rec)
            if mine is None or (fits, -em.cycles) > (mine["fits"], -mine["cycles"]):
                mine = rec
            if fits and (best is None or em.cycles < best[2]["cycles"]):
                best = (low, order, rec)
            if fits and effort == "fast":
                break
        return mine

    # the products after the attention spread over every MXM or not (where there are
    # several): it reorders the plans (medium d128: the last plan without it is the best
    # with it), so stage 1 ranks (plan, spread) pairs
    spreads = (True, False) if len(cfg.slices_of("MXM")) > 1 else (False,)
    for keep in (True, False):
        for rigid in (False, True):
            # stage 1: every plan, first order; stage 2: the two best plans, other orders
            # and the V^T variant
            firsts = []
            lowered.clear()
            for sp in spreads:
                for pi in range(len(plans)):
                    rec = attempt(keep, rigid, pi, False, orders[:1], spread=sp, stage1=True)
                    if rec is not None:
                        firsts.append(rec)
                        _two_best(firsts, lowered)
                        if effort == "fast" and best is not None:
                            break
                if effort == "fast" and best is not None:
                    break
            if effort != "fast" or best is None:
                ranked = _two_best(firsts, lowered)
                for rec in ranked:
                    pi, sp = rec["plan"], rec["spread_mlp"]
                    attempt(keep, rigid, pi, False, orders[1:], spread=sp,
                            low=lowered.pop((pi, sp), None))
                    if effort == "fast" and best is not None:
                        break
                    attempt(keep, rigid, pi, True, orders, spread=sp)
                    if effort == "fast" and best is not None:
                        break
                    attempt(keep, rigid, pi, False, orders, x8i=True, spread=sp)
                    if effort == "fast" and best is not None:
                        break
                    for x8i in (False, True):
                        attempt(keep, rigid, pi, False, orders, x8i=x8i, late=True, spread=sp)
                    if effort == "fast" and best is not None:
                        break
            if best is not None:
                break
        if best is not None or not any(e.resource == "sram" for e in errors):
            break
    if best is None:
        if not tried:
            raise errors[0]
        rec = min(tried, key=lambda r: r["max_words"])
        raise imem_error("the block", cfg, rec["words"])
    low, order, rec = best
    em = _schedule(cfg, low, order, full=True)  # re-place the chosen variant
    assert em.cycles == rec["cycles"]
    em, how = _justified(cfg, low, order, em, orders, effort)
    prog = Program.from_instrs(cfg, {k: q.words for k, q in em.queues.items()})
    variant = {"plan": rec["plan"], "keep_intermediates": rec["keep"],
               "rigid_loads": rec["rigid_loads"], "v_transpose": rec["v_transpose"],
               "x8_near_input": rec["x8_near_input"],
               "scores_after_inputs": rec["scores_after_inputs"],
               "spread_mlp": rec["spread_mlp"], "order": order,
               "listed_cycles": rec["cycles"], **how}
    return CompiledBlock(
        cfg=cfg, block=block, program=prog, emitted=em, bundles=low.bundles, init=low.init,
        inputs=low.inputs, kept=low.valid_intermediates(),
        bounds=_bounds(cfg, low.bundles, em), variant=variant, sram_used=low.mem.used,
        sram_peak=low.mem.peak, compile_seconds=time.time() - t0,
        tried=[{k: v for k, v in r.items() if k != "words"} for r in tried])
