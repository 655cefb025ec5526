"""A llama decoder layer's decode steps (`compiler.layer`) on the Verilated chip.

`run_layer_rtl(cl, rows, es, out_dir)` loads the program, the weights, tables and the
zeroed KV cache once through the host interface, then per step writes the token's
residual row, its exponent and the position, STARTs, waits for ``done`` and reads the
next residual row and its exponent and the chip's CYCLES (`tb/chip/test_run.py`, steps
mode).  The caller compares them with `golden.llm.layer_int` and the prediction.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .block import run_on_chip


def run_layer_rtl(cl, rows: np.ndarray, es, out_dir: Path, log=print) -> dict:
    """``{"outputs": [(y, e_y)] per step, "cycles_chip": [...], "cycles_clock": [...],
    "step_errors": [...]}``."""
    wanted = [loc for t in (cl.low.y, cl.low.ey) for locs in t.locs.values() for loc in locs]
    vecs, run, _ = run_on_chip(cl.cfg, out_dir, f"layer-{cl.cfg.name}", cl.program, cl.init,
                            wanted, 4 * cl.cycles + 10_000,
                            steps=[cl.step_writes(rows[p], int(es[p]), p)
                                   for p in range(rows.shape[0])], log=log)
    s = run.summary
    d = rows.shape[1]
    outs = [cl.read_row(lambda sl, a, p=p: vecs[f"{p}/{sl}/{a}"], cl.low.y, cl.low.ey, d)
            for p in range(rows.shape[0])]
    return {"outputs": outs, "cycles_chip": s["cycles_chip_runs"],
            "cycles_clock": s["cycles_clock_runs"], "step_errors": s["step_errors"],
            "log": str(run.log)}


def step_problems(predicted: int, chip: list, clock: list, errors: list, steps: int) -> list:
    """What a chip run of ``steps`` decode steps did wrong besides its outputs: a step
    whose chip ``CYCLES`` or testbench clock is not the prediction, a slice fault."""
    out = [f"{what} {got} != predicted {predicted} at every step"
           for what, got in (("cycles_chip", chip), ("cycles_clock", clock))
           if got != [predicted] * steps]
    return out + [f"RTL fault in step {e['run']}: code {e['error_code']}" for e in errors]


def bound_fields(bnd: dict) -> dict:
    """A step's bounds (`CompiledLayerStep.bounds`) as report fields."""
    return {"bounds": bnd["bounds"], "binding_bound": bnd["binding"],
            "ratio_to_bound": bnd["ratio"], "dependency_path": bnd["dependency_path"],
            "weight_bytes": bnd["weight_bytes"], "kv_cache_bytes": bnd["kv_bytes"]}


def load_layer(model: str, layer: int, out_dir: Path, seed: int = 0):
    """``(gguf path, LlamaConfig, the layer's integer weights)``: ``model`` ``"tiny"`` (the
    random llama of `golden.tiny_llama`, written to ``out_dir``) or a llama GGUF."""
    from golden.llm import LlamaModel, model_path

    if model == "tiny":
        from golden.tiny_llama import write_tiny_gguf

        path = out_dir / "tiny.gguf"
        out_dir.mkdir(parents=True, exist_ok=True)
        write_tiny_gguf(path, seed)
    else:
        path = model_path(model)
    lm = LlamaModel(path)
    if not 0 <= layer < lm.config.n_layers:
        raise ValueError(f"layer={layer}: the model has layers 0..{lm.config.n_layers - 1}")
    return path, lm.config, lm.int_weights()["layers"][layer]


def check_steps(context, steps) -> None:
    """A run's cache positions and steps (ValueError): context >= 1, 1 <= steps <= it."""
    if not isinstance(context, int) or context < 1:
        raise ValueError(f"context={context!r} must be >= 1 (the KV cache's positions)")
    if not isinstance(steps, int) or not 1 <= steps <= context:
        raise ValueError(f"steps={steps!r} must be in 1..{context} (the context)")


def layer_inputs(d_model: int, steps: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Random int32 residual rows and their exponents, one per step."""
    rng = np.random.default_rng([seed, 40])
    return (rng.integers(-(2**27), 2**27, (steps, d_model)), rng.integers(-30, -18, steps))


def run_layer(cfg, model: str = "tiny", layer: int = 0, context: int = 16, steps: int = 4,
              seed: int = 0, out_dir: Path | None = None, plot: bool = True,
              log=print) -> dict:
    """`make sim-layer`: one llama decoder layer's decode steps on the model and the RTL;
    every step checked against `golden.llm.layer_int` with a golden KV cache; the report."""
    import time

    from compiler.layer import compile_layer_step
    from golden.llm import layer_steps_int

    from .block import write_report
    from .build import check_simulable
    from .reports import run_dir_unless_refused

    t0 = time.monotonic()
    check_simulable(cfg)
    check_steps(context, steps)
    with run_dir_unless_refused(
            out_dir, f"layer-{cfg.name}-{model if model == 'tiny' else 'gguf'}") as out_dir:
        path, lc, L = load_layer(model, layer, out_dir, seed)
        cl = compile_layer_step(lc, L, cfg, context)
    bnd = cl.bounds()
    log(f"compiled layer {layer} of {path.name} for {cfg.name} (context {context}): "
        f"{cl.cycles} cycles per step; bounds {bnd['bounds']}, dependency path "
        f"{bnd['dependency_path']}")
    rows, es = layer_inputs(lc.d_model, steps, seed)
    gold = layer_steps_int(lc, L, rows, es)
    outs, runs, _ = cl.run_on_model(rows, es)
    problems = []
    for name, got in (("machine model", outs),):
        for p, ((y, e), (gy, ge)) in enumerate(zip(got, gold, strict=True)):
            if not (np.array_equal(y, gy) and e == ge):
                problems.append(f"{name} step {p}: output differs from golden.llm.layer_int")
    if any(r.cycles != cl.cycles for r in runs):
        problems.append(f"machine model cycles {[r.cycles for r in runs]} != {cl.cycles}")
    r = run_layer_rtl(cl, rows, es, out_dir, log=log)
    for p, ((y, e), (gy, ge)) in enumerate(zip(r["outputs"], gold, strict=True)):
        if not (np.array_equal(y, gy) and e == ge):
            problems.append(f"RTL step {p}: output differs from golden.llm.layer_int")
    problems += step_problems(cl.cycles, r["cycles_chip"], r["cycles_clock"],
                              r["step_errors"], steps)
    report = {"config": cfg.name, "model": str(path), "layer": layer, "context": context,
              "steps": steps, "seed": seed,
              "bit_exact": not any("differs" in p or "fault" in p for p in problems),
              "cycles_predicted": cl.cycles, "cycles_model_steps": [x.cycles for x in runs],
              "cycles_chip_steps": r["cycles_chip"], "cycles_clock_steps": r["cycles_clock"],
              **bound_fields(bnd), "problems": problems, "log": r["log"], "out_dir": str(out_dir),
              "wall_seconds": round(time.monotonic() - t0, 1)}
    return write_report(report, cl, out_dir, plot)


def print_report(r: dict, log=print) -> None:
    log("")
    log("== a llama decoder layer's decode steps on the Verilated TSP (KV cache in SRAM) ==")
    log(f"config            {r['config']}; model {r['model']}, layer {r['layer']}; context "
        f"{r['context']}, {r['steps']} steps; seed {r['seed']}")
    log(f"bit_exact: {str(r['bit_exact']).lower()} (every step vs golden.llm.layer_int with "
        "a golden KV cache)")
    same = len({r["cycles_predicted"], *r["cycles_chip_steps"], *r["cycles_clock_steps"],
                *r["cycles_model_steps"]}) == 1
    log(f"cycles per step   predicted {r['cycles_predicted']} "
        f"{'==' if same else '!='} machine model, chip CYCLES, testbench clock at every step")
    b = r["bounds"]
    log(f"bounds            weight stream {b['weight_stream']} ({r['weight_bytes']} weight + "
        f"{r['kv_cache_bytes']} KV bytes), MVM {b['mvm']}, VXM {b['vxm']}: "
        f"{r['binding_bound']} binds, cycles / bound = {r['ratio_to_bound']}; this "
        f"program's dependency path {r['dependency_path']}")
    if r.get("schedule_png"):
        log(f"schedule          {r['schedule_png']}")
    log(f"report            {r['report_json']}")


__all__ = ["bound_fields", "print_report", "run_layer", "run_layer_rtl", "step_problems"]
