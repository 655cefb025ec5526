"""Decode steps on the Verilated chip (`make sim-decode`): the block's decode program
(`compiler.decode`) run once per token with the KV cache in SRAM between steps.

Steps: build the causal block (`golden.block.make_block`, calibrated for ``seq`` =
the maximum context) and a sequence of ``steps`` input rows; the reference is the
golden *prefill* of the whole sequence (`QuantBlock.forward_int`), row ``p`` for step
``p`` -- computed independently of the decode program; compile one decode step; run
every step on the machine model (reference timing), then on the RTL: the image is
loaded once through the host interface, then per step the host writes the row and the
position, STARTs, waits for ``done`` and reads ``y_p`` and CYCLES.  Every step must be
bit-exact, with predicted == machine model == chip CYCLES == testbench clock, and the
cache in SRAM after the last step must hold the golden k and v of every position.
Report: terminal, ``build/sim/<run>/report.json`` and the schedule picture of one step.
"""

from __future__ import annotations

import time

import numpy as np

from arch.config import TspConfig

from .block import BlockSpec, first_difference, run_on_chip, write_report
from .build import check_simulable
from .reports import new_run_dir


def golden_cache(block, x_q: np.ndarray, steps: int) -> dict[str, np.ndarray]:
    """What the cache must hold after ``steps`` steps: the golden k and v rows (int8)."""
    t = block.trace(x_q)
    return {"k": t["k"][:steps], "v": t["v"][:steps]}


def read_caches(comp, read_vec, steps: int) -> dict[str, np.ndarray]:
    """k and v rows (steps, d_model) from the cache tensors (v: each head's lanes from its
    own cache)."""
    b, vl = comp.block, comp.cfg.vector_length
    dh = b.d_model // b.n_heads
    out = {"k": np.zeros((steps, b.d_model), np.int64), "v": np.zeros((steps, b.d_model),
                                                                        np.int64)}
    for name in comp.caches:
        rows = comp.read_cache(read_vec, name)[:steps].astype(np.int64)
        idx = [int(x) for x in name[2:-1].split(",")]
        t = idx[-1]
        lanes = np.arange(t * vl, min((t + 1) * vl, b.d_model))
        if name.startswith("v"):
            lanes = lanes[(lanes >= idx[0] * dh) & (lanes < (idx[0] + 1) * dh)]
        out[name[0]][:, lanes] = rows[:, lanes - t * vl]
    return out


def run_decode(cfg: TspConfig, spec: BlockSpec, steps: int, *, out_dir=None, plot: bool = True,
               log=print) -> dict:
    """Compile the decode step, run ``steps`` steps on the model and the RTL; the report."""
    from compiler.decode import check_context, compile_decode
    from golden.block import make_block

    t_start = time.monotonic()
    check_simulable(cfg)
    check_context(cfg, spec.seq)  # before calibrating a block of that length
    if not spec.causal:
        raise ValueError("decode steps need a causal block (drop --no-causal)")
    if not isinstance(steps, int) or not 1 <= steps <= spec.seq:
        raise ValueError(f"steps={steps!r} must be in 1..{spec.seq} (the maximum context "
                         f"--context, SEQ)")
    block = make_block(spec.seed, spec.seq, spec.d_model, spec.heads, spec.d_ff, causal=True)
    x_q = block.quantize_input(block.example_input(spec.seed))
    y_gold = block.forward_int(x_q)[:steps]  # prefill of the whole sequence, row p
    kv_gold = golden_cache(block, x_q, steps)

    t0 = time.monotonic()
    comp = compile_decode(block, cfg)
    compile_s = time.monotonic() - t0
    bnd = comp.decode_bounds()
    log(f"compiled the decode step of {spec.tag()} for {cfg.name} (max context {spec.seq}): "
        f"{comp.cycles} cycles per step predicted; bound {bnd['bounds'][bnd['binding']]} "
        f"({bnd['binding']}), ratio {bnd['ratio']} ({compile_s:.1f} s)")
    t0 = time.monotonic()
    y_model, model_runs, m = comp.run_on_model(x_q[:steps])
    model_s = time.monotonic() - t0
    problems: list[str] = []
    if not np.array_equal(y_model, y_gold):
        problems.append("machine model: " + first_difference("y", y_model, y_gold))
    bad = [(p, r.cycles) for p, r in enumerate(model_runs) if r.cycles != comp.cycles]
    if bad:
        problems.append(f"machine model cycles differ from the prediction {comp.cycles} at "
                        f"steps {bad}")

    if out_dir is None:
        out_dir = new_run_dir(f"decode-{cfg.name}-{spec.tag()}")
    out_dir.mkdir(parents=True, exist_ok=True)
    image = comp.sram_image()
    wanted: set[tuple[str, int]] = set()

    def record(s, a):
        wanted.add((s, int(a)))
        return np.zeros(cfg.vector_length, np.uint8)

    comp.read_output(record)
    for name in comp.caches:  # read after every step; checked after the last
        comp.read_cache(record, name)
    log(f"running {steps} decode steps on the Verilated chip ({comp.cycles} cycles each "
        f"predicted; program and {sum(len(d) for d in image.values())} SRAM vectors loaded "
        "once through the host interface)")
    vecs, run, sim = run_on_chip(cfg, out_dir, f"decode-{cfg.name}-{spec.tag()}", comp.program,
                            image, wanted, 4 * comp.cycles + 10_000,
                            steps=[comp.step_writes(x_q[p], p) for p in range(steps)], log=log)
    s = run.summary
    y_rtl = np.stack([comp.read_output(lambda sl, a, p=p: vecs[f"{p}/{sl}/{a}"])
                      for p in range(steps)])
    for e in s["step_errors"]:
        problems.append(f"RTL stopped on a fault in step {e['run']}: code {e['error_code']} "
                        f"at slice {cfg.slices[e['error_slice']].name} in cycle "
                        f"{e['error_cycle']}")
    bit_exact = bool(np.array_equal(y_rtl, y_gold)) and not s["step_errors"]
    if not np.array_equal(y_rtl, y_gold):
        problems.append("RTL output: " + first_difference("y", y_rtl, y_gold))
    kv_rtl = read_caches(comp, lambda sl, a: vecs[f"{steps - 1}/{sl}/{a}"], steps)
    kv_model = read_caches(comp, m.read_mem, steps)
    for name in ("k", "v"):
        if not np.array_equal(kv_model[name], kv_gold[name]):
            problems.append("machine model cache: " + first_difference(
                name, kv_model[name], kv_gold[name]))
        if not np.array_equal(kv_rtl[name], kv_gold[name]):
            problems.append("RTL cache: " + first_difference(name, kv_rtl[name], kv_gold[name]))
    for what, got in (("chip CYCLES", s["cycles_chip_runs"]),
                      ("testbench clock", s["cycles_clock_runs"])):
        bad = [(p, c) for p, c in enumerate(got) if c != comp.cycles]
        if bad or len(got) != steps:
            problems.append(f"{what} differs from the prediction {comp.cycles}: (step, "
                            f"cycles) {bad or got}")
    n_mxm = len(cfg.slices_of("MXM"))
    report = {
        "config": cfg.name,
        "shape": {"max_context": spec.seq, "d_model": spec.d_model, "heads": spec.heads,
                  "d_ff": spec.d_ff},
        "seed": spec.seed,
        "steps": steps,
        "bit_exact": bit_exact,
        "cache_matches_golden": not any("cache" in p for p in problems),
        "cycles_predicted": comp.cycles,
        "cycles_model_steps": [r.cycles for r in model_runs],
        "cycles_chip_steps": s["cycles_chip_runs"],
        "cycles_clock_steps": s["cycles_clock_runs"],
        "decode_bounds": bnd["bounds"],
        "binding_bound": bnd["binding"],
        "ratio_to_bound": bnd["ratio"],
        "weight_bytes": bnd["weight_bytes"],
        "kv_cache_bytes": bnd["kv_bytes"],
        "schedule_bounds": comp.stats()["bounds"],
        "mxm_utilization": round(comp.useful_mvms / (comp.cycles * n_mxm), 4),
        "mvm_useful": comp.useful_mvms,
        "mvm_overhead": comp.overhead_mvms,
        "tokens_per_second_at_900MHz": round(900e6 / comp.cycles, 1),
        "sim_cycles_per_second": round(s["sim_cycles_per_second"], 1),
        "wall_seconds": round(time.monotonic() - t_start, 1),
        "compile_seconds": round(compile_s, 2),
        "model_seconds": round(model_s, 2),
        "verilog_cached": sim.verilog.cached,
        "verilator_cached": sim.cached,
        "run_seconds": round(run.seconds, 1),
        "problems": problems,
        "log": str(run.log),
        "out_dir": str(out_dir),
    }
    return write_report(report, comp, out_dir, plot)


def print_report(r: dict, log=print) -> None:
    sh = r["shape"]
    log("")
    log("== decode steps of the block on the Verilated TSP (KV cache in SRAM) ==")
    log(f"config            {r['config']}")
    log(f"shape             max context {sh['max_context']}, d_model {sh['d_model']}, heads "
        f"{sh['heads']}, d_ff {sh['d_ff']}; seed {r['seed']}; {r['steps']} steps")
    log(f"bit_exact: {str(r['bit_exact']).lower()} (every step vs the golden prefill row; "
        f"cache {'== golden k, v' if r['cache_matches_golden'] else 'DIFFERS'})")
    same = len({r["cycles_predicted"], *r["cycles_chip_steps"], *r["cycles_clock_steps"],
                *r["cycles_model_steps"]}) == 1
    log(f"cycles per step   predicted {r['cycles_predicted']} "
        f"{'==' if same else '!='} machine model, chip CYCLES, testbench clock at every step"
        + ("" if same else f": chip {r['cycles_chip_steps']}, clock {r['cycles_clock_steps']}"))
    b = r["decode_bounds"]
    log(f"bounds            weight stream {b['weight_stream']} ({r['weight_bytes']} weight + "
        f"{r['kv_cache_bytes']} KV bytes), MAC {b['mac']}, VXM {b['vxm']}, dependency path "
        f"{b['path']}: {r['binding_bound']} binds, cycles / bound = {r['ratio_to_bound']}")
    log(f"at 900 MHz        {r['tokens_per_second_at_900MHz']:,} tokens/s for this block "
        "(one layer)")
    log(f"simulation        {r['sim_cycles_per_second']} cycles/s; wall {r['wall_seconds']} s")
    if r.get("schedule_png"):
        log(f"schedule          {r['schedule_png']}")
    log(f"report            {r['report_json']}")


__all__ = ["print_report", "read_caches", "run_decode"]
