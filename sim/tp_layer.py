"""A llama layer's decode steps tensor-parallel on a Verilated system: ``make sim-layer
CHIPS=N``.

The layer of ``make sim-layer`` (MODEL, LAYER, SEQ = context, STEPS, SEED) split over
``N`` chips of ``CONFIG`` with links (`compiler.tp_layer`: Q/K/V by KV head, gate/up by
hidden feature, the output projection's and down's int32 partial sums all-reduced, the
row exponents of split rows agreed over C2C).  One SPMD program per chip; per step the
host writes the residual row, its exponent and the position into every chip, starts them
in one cycle and reads every chip's next residual row.  Checked per step and chip: the
output against `golden.llm.layer_int` of the whole layer with a golden KV cache
(bit-exact), and predicted == system model == the chip's CYCLES == the testbench clock.
Beside it, the same layer compiled for one chip of the config: the speed-up.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from arch.config import TspConfig

from .layer import bound_fields, check_steps, layer_inputs, load_layer


def _step_images(steps, rows, es, p: int) -> list[dict]:
    """Every chip's host writes of step ``p``, as images ``{slice: {addr: vector}}``."""
    out = []
    for st in steps:
        img: dict = {}
        for (s, a), v in st.step_writes(rows[p], int(es[p]), p):
            img.setdefault(s, {})[a] = v
        out.append(img)
    return out


def run_tp_layer_rtl(steps, rows, es, out_dir: Path, log=print) -> dict:
    """The steps on the Verilated system (one simulator run; the first case loads the
    programs and initial images): per step every chip's ``(y, e_y)``, CYCLES, clock and
    fault status."""
    from .system import dump_reader, fault_text, rtl_cases, write_case

    cfg, n = steps[0].cfg, len(steps)
    readback = [sorted({loc for t in (st.low.y, st.low.ey) for locs in t.locs.values()
                        for loc in locs}) for st in steps]
    cases = []
    for p in range(rows.shape[0]):
        imgs = _step_images(steps, rows, es, p)
        if p == 0:  # the weights, tables and zeroed caches, then the first step's writes
            for st, img in zip(steps, imgs, strict=True):
                for (s, a), v in st.init.items():
                    img.setdefault(s, {}).setdefault(a, v)
        cases.append(write_case(out_dir / f"step{p}", [st.program for st in steps]
                                if p == 0 else None, imgs, readback))
    limit = 4 * max(st.cycles for st in steps) + 10_000
    s = rtl_cases(cfg, n, cases, name=f"tp{n}-layer-{cfg.name}", max_cycles=limit, log=log)
    d = rows.shape[1]
    out = {"outputs": [], "cycles_chip": [], "cycles_clock": [], "faults": [],
           "log": s["log"]}
    for p, case in enumerate(s["cases"]):
        outs, chip, clock = [], [], []
        for i, (st, c) in enumerate(zip(steps, case["chips"], strict=True)):
            outs.append(st.read_row(dump_reader(c), st.low.y, st.low.ey, d))
            chip.append(c["counters"]["cycles"])
            clock.append(c["cycles_clock"])
            if c["status"]["error"]:
                out["faults"].append(f"step {p} chip {i}: fault "
                                     f"{fault_text(cfg, c['status'])}")
        out["outputs"].append(outs)
        out["cycles_chip"].append(chip)
        out["cycles_clock"].append(clock)
    return out


def run_tp_layer_sim(cfg: TspConfig, chips: int, model: str = "tiny", layer: int = 0,
                     context: int = 16, steps: int = 4, seed: int = 0, *, rtl: bool = True,
                     out_dir: Path | None = None, log=print) -> dict:
    from compiler.layer import compile_layer_step
    from compiler.tp_layer import compile_tp_layer, run_tp_layer, split_layer
    from golden.llm import layer_steps_int

    from .reports import new_run_dir

    t0 = time.monotonic()
    cfg = cfg.with_links()
    check_steps(context, steps)
    out_dir = out_dir or new_run_dir(f"tp{chips}-layer-{cfg.name}-"
                                     f"{model if model == 'tiny' else 'gguf'}")
    path, lc, L = load_layer(model, layer, out_dir, seed)
    split_layer(lc, L, chips, 0)  # a split that does not divide: refused before anything
    log(f"layer {layer} of {path.name} over {chips} chips of {cfg.name}: "
        f"{lc.n_heads // chips} query heads, {lc.n_kv_heads // chips} KV heads and "
        f"d_ff {lc.d_ff // chips} per chip")
    tc = time.monotonic()
    comp = compile_tp_layer(lc, L, cfg, context, chips)
    predicted = [c.cycles for c in comp]
    log(f"compiled {chips} programs in {time.monotonic() - tc:.1f} s: {predicted[0]} "
        f"cycles per step on every chip")
    one = compile_layer_step(lc, L, cfg, context)
    log(f"the same layer on one chip of {cfg.name}: {one.cycles} cycles "
        f"(speed-up {one.cycles / predicted[0]:.2f}x)")
    rows, es = layer_inputs(lc.d_model, steps, seed)
    gold = layer_steps_int(lc, L, rows, es)
    problems = []

    def check(what, outs):
        for p, (per_chip, (gy, ge)) in enumerate(zip(outs, gold, strict=True)):
            for i, (y, e) in enumerate(per_chip):
                if not (np.array_equal(y, gy) and e == ge):
                    bad = np.argwhere(y != gy)
                    where = f"y[{bad[0][0]}] = {y[bad[0][0]]}, golden {gy[bad[0][0]]}" if len(
                        bad) else f"exponent {e}, golden {ge}"
                    problems.append(f"{what} step {p} chip {i}: {where} "
                                    "(golden.llm.layer_int)")

    model_outs, model_cycles = run_tp_layer(comp, rows, es)
    check("machine model", model_outs)
    if model_cycles != [predicted] * steps:
        problems.append(f"machine model cycles {model_cycles} != predicted {predicted}")
    bnd = comp[0].bounds()
    report = {"config": cfg.name, "chips": chips, "model": str(path), "layer": layer,
              "context": context, "steps": steps, "seed": seed,
              "cycles_predicted": predicted, "cycles_model_steps": model_cycles,
              "cycles_one_chip": one.cycles, "speedup": round(one.cycles / predicted[0], 3),
              **bound_fields(bnd), "rtl": None, "out_dir": str(out_dir)}
    if rtl:
        r = run_tp_layer_rtl(comp, rows, es, out_dir, log=log)
        check("RTL", r["outputs"])
        problems += r["faults"]
        for what in ("cycles_chip", "cycles_clock"):
            if r[what] != [predicted] * steps:
                problems.append(f"RTL {what} {r[what]} != predicted {predicted} at every step")
        report["rtl"] = {k: r[k] for k in ("cycles_chip", "cycles_clock", "log")}
    report["problems"] = problems
    report["bit_exact"] = not any("golden" in p or "fault" in p for p in problems)
    report["wall_seconds"] = round(time.monotonic() - t0, 1)
    report["report_json"] = str(out_dir / "report.json")
    (out_dir / "report.json").write_text(json.dumps(report, indent=1))
    return report


def print_report(r: dict, log=print) -> None:
    log("")
    log(f"== a llama layer's decode steps tensor-parallel on {r['chips']} linked chips ==")
    log(f"config            {r['chips']} x {r['config']}; model {r['model']}, layer "
        f"{r['layer']}; context {r['context']}, {r['steps']} steps; seed {r['seed']}")
    where = "the system model" + (" and the Verilated system" if r["rtl"] else "")
    log(f"bit_exact: {str(r['bit_exact']).lower()} (every chip, every step, on {where}, vs "
        "golden.llm.layer_int of the whole layer)")
    vals = {*r["cycles_predicted"], *(c for s in r["cycles_model_steps"] for c in s)}
    if r["rtl"]:
        vals |= {c for k in ("cycles_chip", "cycles_clock") for s in r["rtl"][k] for c in s}
    log(f"cycles per step   {r['cycles_predicted'][0]} predicted "
        f"{'==' if len(vals) == 1 else '!='} system model"
        f"{', chip CYCLES, testbench clock' if r['rtl'] else ''} on every chip, every step")
    log(f"one chip          {r['cycles_one_chip']} cycles: speed-up {r['speedup']}x on "
        f"{r['chips']} chips")
    b = r["bounds"]
    log(f"bounds (per chip) weight stream {b['weight_stream']} ({r['weight_bytes']} weight + "
        f"{r['kv_cache_bytes']} KV bytes), MVM {b['mvm']}, VXM {b['vxm']}; cycles / bound "
        f"= {r['ratio_to_bound']}")
    if r["rtl"]:
        log(f"simulator log     {r['rtl']['log']}")
    log(f"report            {r['report_json']}")


__all__ = ["print_report", "run_tp_layer_rtl", "run_tp_layer_sim"]
