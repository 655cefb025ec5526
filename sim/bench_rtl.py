"""`make bench-rtl`: how fast the RTL is generated, built and simulated, per config.

For each config the compiled block (the `make sim` default shape) is loaded through the
host interface and run back to back until at least `MIN_CYCLES` cycles have run (each
run restores first what the previous one overwrote of its input: the vectors the
machine model shows changed), twice:

- driven by cocotb (`tb/chip/test_run.py`, the flow every test uses), and
- by the bare harness (`sim/bare.py`: the same Verilog and flags with a few lines of C++
  as the host; the simulator's limit), single-threaded and with ``--threads 2``,
- and driven by cocotb with the lock-step monitor on every run (`tb/chip/lockstep.py`:
  every stream register of every superlane, every cycle, against the machine model).

Every run must take the predicted cycles (clock edges START -> done) and the last run's
output must be bit-exact.  Each speed is the median of `TRIALS` measurements.
Reported: Verilog size and generation time, Verilator build time, load time, cycles per
second of each, and the ratio driven / bare; the builds' g++ optimisation level
(`toolchain.cxx_opt`: -O2, or $TSP_CXX_OPT), the CPU they are compiled for
(`toolchain.march`: native, or $TSP_MARCH) and whether they are profile-guided
(``pgo``: $TSP_PGO, `sim.pgo`; then every build's time includes its training).  With
``cold`` the builds are made in a fresh build directory (the generation and build
times are then this run's; otherwise they are those of the run that made the cache).
Written to ``build/bench-rtl.json`` (profile-guided: ``build/bench-rtl-pgo.json``).
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from arch.config import TspConfig

from . import toolchain

#: cycles each measurement runs at least
MIN_CYCLES = 100_000
#: each speed is the median of this many measurements (this machine's timing varies by
#: up to a third from run to run)
TRIALS = 3


def _case(cfg: TspConfig):
    """(compiled block, its input, SRAM image, restore image, read-back list)."""
    from golden.machine import Machine

    from .block import fitting_block

    spec, block, comp = fitting_block(cfg)
    x_q = block.quantize_input(block.example_input(spec.seed))
    image = comp.sram_image(x_q)
    m = Machine(cfg)
    for sl, per in image.items():
        for a, v in per.items():
            m.write_mem(sl, a, v)
    m.load_program(comp.program)
    m.run(max_cycles=4 * comp.cycles + 1000)
    restore: dict[str, dict[int, np.ndarray]] = {}
    for sl, per in image.items():
        for a, v in per.items():
            if not np.array_equal(m.read_mem(sl, a), v):
                restore.setdefault(sl, {})[a] = v
    wanted: list[tuple[str, int]] = []
    comp.read_output(lambda s, a: (wanted.append((s, int(a))),
                                   np.zeros(cfg.vector_length, np.uint8))[1])
    return block, comp, x_q, image, restore, sorted(set(wanted))


def _npz(path: Path, image) -> Path:
    np.savez(path, **{f"{s}/{a}": v for s, d in image.items() for a, v in d.items()})
    return path


def _driven(sim, name: str, work: Path, comp, image, restore, repeat: int, **params):
    """The benchmark's runs driven by cocotb (`tb/chip/test_run.py`, `params` added):
    (its summary, the vectors read back after the last run)."""
    from .run import run_cocotb

    run = run_cocotb(sim, "tb.chip.test_run", name=name,
                     params={"program": str(work / "prog.bin"),
                             "image": str(_npz(work / "image.npz", image)),
                             "restore": str(_npz(work / "restore.npz", restore)),
                             "readback": str(work / "readback.json"),
                             "out": str(work / "readback.npz"), "repeat": repeat,
                             "max_cycles": 4 * comp.cycles + 1000, **params})
    with np.load(work / "readback.npz") as z:
        return run.summary, {k: z[k] for k in z.files}


def bench_config(cfg: TspConfig, *, threads=(1, 2), log=print) -> dict:
    from .bare import build_bare, run_bare
    from .build import build_root, build_sim

    block, comp, x_q, image, restore, readback = _case(cfg)
    y_gold = block.forward_int(x_q)
    repeat = math.ceil(MIN_CYCLES / comp.cycles)
    problems: list[str] = []

    def check(what: str, edges: list[int], y: np.ndarray):
        if any(e != comp.cycles for e in edges):
            problems.append(f"{what}: runs took {sorted(set(edges))} cycles, predicted "
                            f"{comp.cycles}")
        if not np.array_equal(y, y_gold):
            problems.append(f"{what}: output after {len(edges)} runs not bit-exact")

    sim = build_sim(cfg, "chip", log=log)
    art = sim.verilog
    work = build_root() / "bench-rtl" / cfg.name
    work.mkdir(parents=True, exist_ok=True)
    (work / "prog.bin").write_bytes(comp.program.to_bytes())
    (work / "readback.json").write_text(json.dumps(readback))
    log(f"{cfg.name}: block of {comp.cycles} cycles, {repeat} runs "
        f"({repeat * comp.cycles} cycles) driven by cocotb")
    trials = []
    for trial in range(TRIALS):
        summary, vecs = _driven(sim, f"bench-rtl-{cfg.name}", work, comp, image, restore,
                                repeat)
        check(f"cocotb (trial {trial})", summary["cycles_clock_runs"],
              comp.read_output(lambda sl, a, vecs=vecs: vecs[f"{sl}/{a}"]))
        trials.append(summary)
    trials.sort(key=lambda t: t["sim_cycles_per_second"])
    s = trials[len(trials) // 2]
    row = {
        "config": cfg.name, "superlanes": cfg.superlanes, "cxx_opt": toolchain.cxx_opt(),
        "march": toolchain.march(),
        "pgo": toolchain.pgo(),
        "verilog_bytes": art.sim_path.stat().st_size,
        "verilog_bytes_with_init": art.size_bytes,
        "verilog_seconds": round(art.seconds, 1), "verilog_cached": art.cached,
        "verilator_seconds": round(sim.seconds, 1), "verilator_cached": sim.cached,
        "block_cycles": comp.cycles, "runs": repeat, "run_cycles": sum(s["cycles_clock_runs"]),
        "load_commands": s["load_commands"], "load_seconds": round(s["load_seconds"], 3),
        "run_cycles_per_second": round(s["sim_cycles_per_second"]),
    }
    for t in threads:
        bare = build_bare(cfg, threads=t, log=log)
        runs = []
        for _ in range(TRIALS):
            r = run_bare(bare, comp.program, image, readback, repeat=repeat,
                         restore=restore, max_cycles=4 * comp.cycles + 1000, work_dir=work)
            check(f"bare harness ({t} thread(s))", [e for e, _ in r.runs],
                  comp.read_output(lambda sl, a, r=r: r.readback[f"{sl}/{a}"]))
            runs.append(r)
        r = sorted(runs, key=lambda x: x.cycles_per_second)[len(runs) // 2]
        key = "bare" if t == 1 else f"bare_threads{t}"
        row[f"{key}_cycles_per_second"] = round(r.cycles_per_second)
        row[f"{key}_build_seconds"] = round(bare.seconds, 1)
        row[f"{key}_load_seconds"] = round(r.load_seconds, 4)
    row["ratio_driven_to_bare"] = round(row["run_cycles_per_second"]
                                        / row["bare_cycles_per_second"], 3)
    row.update(_lockstep(cfg, comp, image, restore, readback, repeat, work, check, log))
    problems += [f"lock-step: {e}" for e in row["lockstep_errors"]]
    row["problems"] = problems
    return row


def _lockstep(cfg, comp, image, restore, readback, repeat, work, check, log) -> dict:
    """The same runs driven by cocotb with the lock-step monitor on every run: every
    stream register of every superlane, every cycle, against the machine model.  Speed
    = cycles / (run time + comparison time)."""
    from .build import build_sim

    sim = build_sim(cfg, "chip", log=log)
    log(f"{cfg.name}: {repeat} runs with lock-step on every run")
    s, vecs = _driven(sim, f"bench-rtl-lockstep-{cfg.name}", work, comp, image, restore,
                      repeat, lockstep="every")
    check("cocotb with lock-step", s["cycles_clock_runs"],
          comp.read_output(lambda sl, a, vecs=vecs: vecs[f"{sl}/{a}"]))
    cycles = sum(s["cycles_clock_runs"])
    total = s["run_seconds"] + s["lockstep_compare_seconds"]
    return {"lockstep_cycles": cycles,
            "lockstep_cycles_per_second": round(cycles / total),
            "lockstep_run_cycles_per_second": round(cycles / s["run_seconds"]),
            "lockstep_compare_seconds": round(s["lockstep_compare_seconds"], 2),
            "lockstep_errors": s["lockstep_errors"][:5],
            "lockstep_verilator_seconds": round(sim.seconds, 1)}


def run_bench_rtl(configs: list[TspConfig], *, cold: bool = False, threads=(1, 2),
                  log=print) -> list[dict]:
    from .build import build_root

    # a profile-guided run beside the plain one, not over it
    out = build_root() / ("bench-rtl-pgo.json" if toolchain.pgo() else "bench-rtl.json")
    rows = []
    saved = os.environ.get("TSP_BUILD_DIR")
    tmp = tempfile.mkdtemp(prefix="tsp-cold-") if cold else None
    try:
        if tmp:
            os.environ["TSP_BUILD_DIR"] = tmp
        for cfg in configs:
            t0 = time.monotonic()
            row = bench_config(cfg, threads=threads, log=log)
            row["wall_seconds"] = round(time.monotonic() - t0, 1)
            rows.append(row)
            bare2 = row.get("bare_threads2_cycles_per_second")
            log(f"{cfg.name:7s} (g++ {row['cxx_opt']}{', PGO' if row['pgo'] else ''}) Verilog "
                f"{row['verilog_bytes'] / 1e6:.2f} MB in "
                f"{row['verilog_seconds']} s{' (cached)' if row['verilog_cached'] else ''}, "
                f"Verilator {row['verilator_seconds']} s"
                f"{' (cached)' if row['verilator_cached'] else ''}; load "
                f"{row['load_commands']} commands in {row['load_seconds']} s; run "
                f"{row['run_cycles']} cycles: cocotb {row['run_cycles_per_second']} cycles/s, "
                f"bare {row['bare_cycles_per_second']}"
                f"{f', bare 2 threads {bare2}' if bare2 else ''} cycles/s; driven/bare "
                f"{row['ratio_driven_to_bare']}; lock-step every cycle "
                f"{row['lockstep_cycles_per_second']} cycles/s (capture "
                f"{row['lockstep_run_cycles_per_second']}, compare "
                f"{row['lockstep_compare_seconds']} s)"
                + (f"; PROBLEMS: {row['problems']}" if row["problems"] else ""))
    finally:
        if tmp:
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
            if saved is None:
                os.environ.pop("TSP_BUILD_DIR", None)
            else:
                os.environ["TSP_BUILD_DIR"] = saved
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rows, indent=1))
    log(f"written {out}")
    return rows
