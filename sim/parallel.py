"""Tensor parallelism on a system of chips: ``make sim CHIPS=2|4``.

The block's MLP (``rows`` = SEQ, d_model, d_ff; `compiler.parallel.Mlp`, seeded) split
over ``chips`` chips of ``CONFIG`` with links (`TspConfig.with_links`): each chip computes
its slice of the hidden layer and its partial sum of the output, an all-reduce over the
C2C ring sums the partials.  Steps: compile one program per chip (one SPMD schedule:
every SEND and RECV in the same cycle on every chip); run them on the system model; run
them on the Verilated system (``system<N>``, each chip loaded through its own host
interface, all started in one cycle); check every chip's output against the unsplit MLP
in numpy (bit-exact), and every chip's predicted cycles == the model's == its CYCLES
register == the testbench's clock count.
"""

from __future__ import annotations

import json
import time

import numpy as np

from arch.config import TspConfig
from compiler.parallel import compile_parallel, golden_mlp, mlp_graph, random_mlp, run_parallel

from .reports import new_run_dir


def run_parallel_mlp(cfg: TspConfig, chips: int, rows: int, d: int, f: int, seed: int = 0,
                     *, rtl: bool = True, search: bool = False, log=print) -> dict:
    from .system import run_system

    cfg = cfg.with_links()
    out_dir = new_run_dir(f"tp{chips}-{cfg.name}-r{rows}-d{d}-f{f}-seed{seed}")
    mlp = random_mlp(d, f, seed)
    x = np.random.default_rng([seed, 1]).integers(-128, 128, (rows, d))
    want = golden_mlp(mlp, x)
    log(f"tensor-parallel MLP: {rows} rows, d_model {d}, d_ff {f} ({f // chips} per chip) "
        f"on {chips} chips of {cfg.name}")
    t0 = time.monotonic()
    comp = compile_parallel([mlp_graph(mlp, rows, chips, i) for i in range(chips)], cfg,
                            search=search)
    log(f"compiled {chips} programs in {time.monotonic() - t0:.1f} s: "
        f"{comp[0].cycles} cycles predicted per chip")
    outs, model_cycles = run_parallel(comp, {"x": x})
    problems = []
    for i, o in enumerate(outs):
        if not np.array_equal(o["y"], want):
            problems.append(f"chip {i}: the machine model's output differs from the MLP")
    predicted = [c.cycles for c in comp]
    if model_cycles != predicted:
        problems.append(f"cycles: predicted {predicted}, machine model {model_cycles}")
    report = {"config": cfg.name, "chips": chips, "rows": rows, "d_model": d, "d_ff": f,
              "seed": seed, "predicted_cycles": predicted, "model_cycles": model_cycles,
              "rtl": None, "out_dir": str(out_dir)}
    if rtl:
        images, readback = [], []
        for cg in comp:
            img: dict = {}
            for (s, a), v in cg.sram_image({"x": x}).items():
                img.setdefault(s, {})[a] = v
            images.append(img)
            readback.append(sorted({loc for locs in cg.tensors["y"].locs.values()
                                    for loc in locs}))
        rep = run_system(cfg, [c.program for c in comp], images, readback, out_dir=out_dir,
                         log=log)
        problems += rep["problems"]
        chips_rtl = rep["rtl"]["chips"]
        for i, (cg, rc) in enumerate(zip(comp, chips_rtl, strict=True)):
            vecs = {tuple(k.split("/")): np.asarray(v, np.uint8)
                    for k, v in rc["dump"].items()}
            got = cg.read("y", lambda s, a, vecs=vecs: vecs[(s, str(a))])
            if not np.array_equal(got, want):
                bad = np.argwhere(got != want)[0]
                problems.append(f"chip {i} (RTL): y[{bad[0]}, {bad[1]}] = "
                                f"{got[tuple(bad)]}, the MLP gives {want[tuple(bad)]}")
        report["rtl"] = {"cycles_chip": [c["counters"]["cycles"] for c in chips_rtl],
                         "cycles_clock": [c["cycles_clock"] for c in chips_rtl],
                         "log": rep["rtl"]["log"]}
    report["problems"] = problems
    (out_dir / "report.json").write_text(json.dumps(report, indent=1))
    report["report_json"] = str(out_dir / "report.json")
    return report


def print_report(r: dict, log=print) -> None:
    log("")
    log(f"== tensor-parallel MLP on {r['chips']} chips of {r['config']} ==")
    log(f"shape             {r['rows']} rows, d_model {r['d_model']}, d_ff {r['d_ff']} "
        f"(seed {r['seed']})")
    log(f"predicted         {r['predicted_cycles']} cycles per chip")
    log(f"machine model     {r['model_cycles']}")
    if r["rtl"]:
        log(f"chips (CYCLES)    {r['rtl']['cycles_chip']}")
        log(f"testbench clock   {r['rtl']['cycles_clock']}")
        log(f"simulator log     {r['rtl']['log']}")
    ok = "bit-exact with the unsplit MLP on every chip"
    log(f"output            {ok if not r['problems'] else 'DIFFERS'}")
    log(f"report            {r['report_json']}")


__all__ = ["print_report", "run_parallel_mlp"]
