"""Tensor parallelism on a system of chips: ``make sim CHIPS=2|4``.

The block of ``make sim`` (`golden.block.QuantBlock`: attention + MLP, SEQ, DMODEL, HEADS,
DFF, SEED) split over ``chips`` chips of ``CONFIG`` with links (`TspConfig.with_links`,
`compiler.parallel.tp_block_graph`): each chip holds ``HEADS / chips`` heads (their rows
of Wq, Wk, Wv and columns of Wo) and ``DFF / chips`` hidden features (rows of W1, columns
of W2); the attention output and the MLP output are all-reduced over the C2C ring as
int32 partial sums.  (`run_parallel_mlp`: the MLP alone, as `make scaling` splits it.)
Steps: compile one program per chip (one SPMD schedule: every SEND and RECV in the same
cycle on every chip); run them on the system model; run them on the Verilated system
(``system<N>``, each chip loaded through its own host interface, all started in one
cycle); check every chip's output against the unsplit block's `forward_int` (bit-exact),
and every chip's predicted cycles == the model's == its CYCLES register == the
testbench's clock count.
"""

from __future__ import annotations

import json
import time

import numpy as np

from arch.config import TspConfig
from compiler.parallel import (
    compile_parallel,
    golden_mlp,
    mlp_graph,
    random_mlp,
    run_parallel,
)

from .reports import new_run_dir


def run_parallel_block(cfg: TspConfig, chips: int, spec, *, rtl: bool = True,
                       log=print) -> dict:
    """The block of ``spec`` (`sim.block.BlockSpec`) tensor-parallel on ``chips`` chips."""
    from compiler.parallel import tp_block_graph
    from golden.block import make_block

    block = make_block(spec.seed, spec.seq, spec.d_model, spec.heads, spec.d_ff,
                       causal=spec.causal)
    x = block.quantize_input(block.example_input(spec.seed))
    parts = [tp_block_graph(block, chips, i) for i in range(chips)]
    log(f"tensor-parallel block: {spec.seq} rows, d_model {spec.d_model}, {spec.heads} heads "
        f"({spec.heads // chips} per chip), d_ff {spec.d_ff} ({spec.d_ff // chips} per chip)")
    return _run(cfg.with_links(), chips, [g for g, _ in parts],
                [{"x": x, **bias} for _, bias in parts], block.forward_int(x),
                f"tp{chips}-block-{spec.tag()}", {"what": "block", "rows": spec.seq,
                                                  "d_model": spec.d_model,
                                                  "heads": spec.heads, "d_ff": spec.d_ff,
                                                  "seed": spec.seed}, rtl=rtl, log=log)


def run_parallel_mlp(cfg: TspConfig, chips: int, rows: int, d: int, f: int, seed: int = 0,
                     *, rtl: bool = True, log=print) -> dict:
    """The MLP of `compiler.parallel.mlp_graph` tensor-parallel on ``chips`` chips."""
    mlp = random_mlp(d, f, seed)
    x = np.random.default_rng([seed, 1]).integers(-128, 128, (rows, d))
    log(f"tensor-parallel MLP: {rows} rows, d_model {d}, d_ff {f} ({f // chips} per chip)")
    return _run(cfg.with_links(), chips, [mlp_graph(mlp, rows, chips, i) for i in range(chips)],
                [{"x": x}] * chips, golden_mlp(mlp, x), f"tp{chips}-mlp-r{rows}-d{d}-f{f}",
                {"what": "MLP", "rows": rows, "d_model": d, "d_ff": f, "seed": seed},
                rtl=rtl, log=log)


def _run(cfg: TspConfig, chips: int, graphs, inputs, want, tag: str, shape: dict, *,
         rtl: bool, log) -> dict:
    from .system import dump_reader, run_system

    out_dir = new_run_dir(f"{tag}-{cfg.name}")
    t0 = time.monotonic()
    comp = compile_parallel(graphs, cfg)
    log(f"compiled {chips} programs for {chips} chips of {cfg.name} in "
        f"{time.monotonic() - t0:.1f} s: {comp[0].cycles} cycles predicted per chip")
    problems = []
    outs, model_cycles = run_parallel(comp, inputs)
    for i, y in enumerate(o["y"] for o in outs):
        if not np.array_equal(y, want):
            bad = np.argwhere(y != want)[0]
            problems.append(f"chip {i} (machine model): y[{bad[0]}, {bad[1]}] = "
                            f"{y[tuple(bad)]}, the unsplit reference gives {want[tuple(bad)]}")
    predicted = [c.cycles for c in comp]
    if model_cycles != predicted:
        problems.append(f"cycles: predicted {predicted}, machine model {model_cycles}")
    report = {"config": cfg.name, "chips": chips, **shape, "predicted_cycles": predicted,
              "model_cycles": model_cycles, "rtl": None, "out_dir": str(out_dir)}
    if rtl:
        images, readback = [], []
        for cg, inp in zip(comp, inputs, strict=True):
            img: dict = {}
            for (s, a), v in cg.sram_image(inp).items():
                img.setdefault(s, {})[a] = v
            images.append(img)
            readback.append(sorted({loc for locs in cg.tensors["y"].locs.values()
                                    for loc in locs}))
        rep = run_system(cfg, [c.program for c in comp], images, readback, out_dir=out_dir,
                         log=log)
        problems += rep["problems"]
        chips_rtl = rep["rtl"]["chips"]
        for i, (cg, rc) in enumerate(zip(comp, chips_rtl, strict=True)):
            got = cg.read("y", dump_reader(rc))
            if not np.array_equal(got, want):
                bad = np.argwhere(got != want)[0]
                problems.append(f"chip {i} (RTL): y[{bad[0]}, {bad[1]}] = "
                                f"{got[tuple(bad)]}, the unsplit reference gives "
                                f"{want[tuple(bad)]}")
        report["rtl"] = {"cycles_chip": [c["counters"]["cycles"] for c in chips_rtl],
                         "cycles_clock": [c["cycles_clock"] for c in chips_rtl],
                         "log": rep["rtl"]["log"]}
    report["problems"] = problems
    (out_dir / "report.json").write_text(json.dumps(report, indent=1))
    report["report_json"] = str(out_dir / "report.json")
    return report


def print_report(r: dict, log=print) -> None:
    log("")
    log(f"== tensor-parallel {r['what']} on {r['chips']} chips of {r['config']} ==")
    heads = f", {r['heads']} heads" if "heads" in r else ""
    log(f"shape             {r['rows']} rows, d_model {r['d_model']}{heads}, d_ff "
        f"{r['d_ff']} (seed {r['seed']})")
    log(f"predicted         {r['predicted_cycles']} cycles per chip")
    log(f"machine model     {r['model_cycles']}")
    if r["rtl"]:
        log(f"chips (CYCLES)    {r['rtl']['cycles_chip']}")
        log(f"testbench clock   {r['rtl']['cycles_clock']}")
        log(f"simulator log     {r['rtl']['log']}")
    ok = f"bit-exact with the unsplit {r['what']} on every chip"
    log(f"output            {ok if not r['problems'] else 'DIFFERS'}")
    log(f"report            {r['report_json']}")


__all__ = ["print_report", "run_parallel_block", "run_parallel_mlp"]
