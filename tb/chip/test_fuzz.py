"""cocotb test: differential fuzzing -- run a batch of cases on the chip and compare each
with the machine model (``tb/fuzz.py``).

Parameters (``TSP_PARAMS``): ``cases``, a list of ``{"gen": [kind, seed, scale]}``
(a generated case, re-made here from its seed) or ``{"dir": path}`` (a saved reproducer
or shrink candidate), each optionally with ``"corrupt": true`` (the chip gets a corrupted
image: a negative control that must fail); ``max_cycles``; ``funcov`` (also measure the
functional coverage of the cases, `tb.funcov`, on the model: ``funcov`` in the summary).

Per case: load the program and image through the host, run, then compare the error
status (the model accepts every case, so the chip must not flag anything), the counters
(cycles, busy, issued, MVMs per slice) and every compared SRAM vector with the model.
A case that does not finish within ``max_cycles`` is a failure; the chip is reset and
the next case runs.  The summary (``TSP_RESULT``) has one entry per case (``ok``, the
first mismatches, sizes) and the totals.
"""

from __future__ import annotations

import time

import cocotb

from tb import env
from tb.fuzz import Case, generate, model_outcome

from .host import HostDriver, HostTimeout
from .scoreboard import ChipScoreboard
from .test_chip import load_and_run


def _case(cfg, spec: dict) -> Case:
    if "gen" in spec:
        kind, seed, scale = spec["gen"]
        case = generate(cfg, kind, int(seed), float(scale))
    else:
        case = Case.load(spec["dir"])
    if spec.get("corrupt"):
        case.corrupt = True
    return case


@cocotb.test()
async def chip_fuzz(dut):
    cfg = env.config()
    prm = env.params()
    max_cycles = int(prm.get("max_cycles", 50_000))
    fc = None
    if prm.get("funcov"):
        from tb.funcov import FunctionalCoverage

        fc = FunctionalCoverage(cfg)
    host = HostDriver(dut, cfg)
    await env.start_clock_and_reset(dut)
    t0 = time.monotonic()
    results = []
    sim_cycles = 0
    for i, spec in enumerate(prm["cases"]):
        case = _case(cfg, spec)
        exp = model_outcome(case, seed=i)
        entry = {"index": i, "name": case.name, "spec": spec,
                 "instructions": case.n_instructions}
        if not exp.ok:  # not a valid test: a generator (or shrinker) bug, not an RTL one
            entry.update(ok=False, invalid=True, errors=[exp.error])
            results.append(entry)
            dut._log.error("case %d %s: %s", i, case.name, exp.error)
            continue
        if fc is not None:
            fc.sample(case.program, case.image)
        dut._log.info("case %d %s: %d instructions, %d cycles", i, case.name,
                      case.n_instructions, exp.result.cycles)
        board = ChipScoreboard(cfg)
        before = host.cycles_used
        try:
            waited, _ = await load_and_run(dut, host, cfg, case.program, case.rtl_image(),
                                           max_cycles=max_cycles)
        except HostTimeout as e:
            board.errors.append(f"{e} (model: {exp.result.cycles} cycles)")
            waited = max_cycles
            await env.pulse_reset(dut)
        else:
            # SRAM first: the first command after done reads a vector (the race of a
            # done that rises before the upper superlanes have written)
            for sl, d in exp.sram.items():
                for a in sorted(d):
                    board.check_vector("", sl, a, d[a], await host.read_sram(sl, a))
            board.check_clean_status("", await host.status())
            board.check_counters("", exp.result, await host.counters(), clock=waited)
        sim_cycles += host.cycles_used - before + waited
        entry.update(ok=not board.errors, errors=[e.lstrip(": ") for e in board.errors[:12]],
                     n_errors=len(board.errors), cycles=exp.result.cycles,
                     vectors=board.compared_vectors)
        results.append(entry)
        if board.errors:
            dut._log.error("case %d %s: %d mismatch(es), first: %s", i, case.name,
                           len(board.errors), entry["errors"][0])
    wall = time.monotonic() - t0
    env.write_result({
        "cases": results, "programs": len(results),
        "failed": sum(not r["ok"] for r in results),
        "instructions": sum(r["instructions"] for r in results),
        "program_cycles": sum(r.get("cycles", 0) for r in results),
        "sram_vectors_compared": sum(r.get("vectors", 0) for r in results),
        "sim_cycles": sim_cycles, "wall_seconds": wall,
        "sim_cycles_per_second": sim_cycles / wall if wall else 0.0,
        **({"funcov": fc.to_json()} if fc is not None else {})})
