"""``make fuzz CHIPS=2``: differential fuzzing of random programs over linked chips.

Each case is seeded random C2C traffic (`tb.system.programs.random_traffic`: SENDs of
random types on random links and ends, RECVs at or after the arrival, the data through
MEM) on ``chips`` chips of the config with links.  All cases run in one simulator run of
the Verilated system (``system<N>``) and are compared with the system model
(`sim.system.compare`): every chip's fault status, CYCLES register and clock count, its
counters and every received vector.  A failing case is saved to
``build/fuzz/system<N>-<seed>/`` (each chip's program as assembly and binary, its SRAM
image, ``case.json``) with the command that replays it.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from arch.asm import disassemble
from arch.config import TspConfig
from arch.isa import decode
from tb.system.programs import random_traffic

from .build import build_root
from .system import compare, rtl_cases, run_model, write_case


def case_dir(chips: int, seed: int) -> Path:
    return build_root() / "fuzz" / f"system{chips}-{seed}"


def fuzz_system(cfg: TspConfig, n: int, seed: int, chips: int = 2, log=print) -> dict:
    """Fuzz ``n`` traffic cases (seeds ``seed * 1000 + i``); the report."""
    cfg = cfg.with_links()
    work = build_root() / "runs" / f"fuzz-system{chips}-{cfg.name}-{seed}"
    shutil.rmtree(work, ignore_errors=True)
    seeds = [seed * 1000 + i for i in range(n)]
    cases, models, gens = [], [], []
    for s in seeds:
        progs, images, readback = random_traffic(cfg, chips, s)
        gens.append((progs, images, readback))
        models.append(run_model(cfg, progs, images, readback))
        cases.append(write_case(work / f"case{s}", progs, images, readback))
    log(f"fuzz {chips} linked chips of {cfg.name}: {n} cases, seeds {seeds[0]}..{seeds[-1]}")
    t0 = time.monotonic()
    limit = 4 * max(m.get("cycles", 0) for m in models) + 1000
    s = rtl_cases(cfg, chips, cases, name=f"fuzz-system{chips}-{cfg.name}-{seed}",
                  max_cycles=limit, log=log)
    wall = time.monotonic() - t0
    failures = []
    for sd, (progs, images, readback), model, got in zip(seeds, gens, models, s["cases"],
                                                         strict=True):
        problems = compare(cfg, model, {"chips": got["chips"]})
        if model["error"] is not None:
            problems.insert(0, f"the model refuses the case: {model['error']}")
        if problems:
            d = save_case(cfg, chips, sd, progs, images, readback, problems)
            failures.append({"seed": sd, "problems": problems, "dir": str(d)})
    sends = sum(decode("C2C", w).mnemonic == "SEND" for progs, _, _ in gens
                for p in progs for e in ("C2C_W", "C2C_E") for w in p.words(e))
    rep = {"config": cfg.name, "chips": chips, "seed": seed, "programs": n * chips,
           "cases": n, "messages": sends, "sim_cycles": s["sim_cycles"],
           "wall_seconds": round(wall, 1),
           "programs_per_minute": round(60 * n * chips / wall, 1) if wall else 0.0,
           "vectors_compared": sum(len(rb) for _, _, rbs in gens for rb in rbs),
           "failures": failures, "log": s["log"]}
    out = build_root() / "fuzz" / f"report-system{chips}-{cfg.name}-{seed}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rep, indent=1))
    return rep


def save_case(cfg: TspConfig, chips: int, seed: int, progs, images, readback,
              problems: list[str]) -> Path:
    d = case_dir(chips, seed)
    shutil.rmtree(d, ignore_errors=True)
    write_case(d, progs, images, readback)
    for i, p in enumerate(progs):
        (d / f"chip{i}.s").write_text(disassemble(p))
    (d / "case.json").write_text(json.dumps({
        "config": cfg.to_dict(), "chips": chips, "seed": seed, "problems": problems,
        "readback": [[list(x) for x in rb] for rb in readback],
        "replay": f"make fuzz-replay CASE={d}"}, indent=1))
    return d


def replay_system(path: Path, log=print) -> bool:
    """Run a saved system case again (model and Verilated system); True if they agree."""
    from arch.program import Program
    from tb.chip.test_run import load_image

    from .system import run_system

    meta = json.loads((path / "case.json").read_text())
    cfg = TspConfig.from_dict(meta["config"])
    n = meta["chips"]
    progs = [Program.from_bytes((path / f"chip{i}.bin").read_bytes(), cfg) for i in range(n)]
    images = [load_image(path / f"chip{i}.npz") for i in range(n)]
    readback = [[tuple(x) for x in rb] for rb in meta["readback"]]
    rep = run_system(cfg, progs, images, readback, log=log)
    problems = ([f"the model refuses the case: {rep['model']['error']}"]
                if rep["model"]["error"] else []) + rep["problems"]
    log(f"replay {path} ({n} chips of {cfg.name}, seed {meta['seed']}): "
        f"{'PASS (the system agrees with the model)' if not problems else 'FAIL'}")
    for p in problems:
        log(f"  {p}")
    return not problems


def text(rep: dict) -> str:
    lines = [f"fuzz {rep['chips']} linked chips of {rep['config']} seed {rep['seed']}: "
             f"{rep['cases']} cases ({rep['programs']} programs, {rep['messages']} C2C "
             f"messages, {rep['vectors_compared']} received vectors compared)",
             f"  {rep['sim_cycles']} simulated cycles in {rep['wall_seconds']:.0f} s "
             f"({rep['programs_per_minute']:.0f} programs/min)",
             f"  mismatches: {len(rep['failures'])}"]
    for f in rep["failures"]:
        lines.append(f"  FAIL seed {f['seed']}: {f['problems'][0]}")
        lines.append(f"       reproducer: {f['dir']}")
    return "\n".join(lines)


__all__ = ["fuzz_system", "replay_system", "text"]
