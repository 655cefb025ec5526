"""cocotb test: random compute-slice programs (VXM, MXM, SXM, mixed, all) on the whole chip
through its host interface, against golden/machine.py.

Parameters (``TSP_PARAMS``): ``kinds`` (default all of
``tb.chip.programs_compute.KINDS``), ``seeds`` (one program per kind and seed),
``lockstep`` (seeds whose programs are also compared cycle by cycle, stream register by
stream register), ``scale`` (program size factor), ``max_cycles``, ``corrupt`` (seeds
whose operand vectors are perturbed on the RTL side only -- a negative control: those
programs must mismatch; they are counted in ``corruptions_detected``, not as failures).

Per program: the SRAM vectors it touched, the counters (cycles, busy, issued, mvm per
slice) and the error status (the model accepts every generated program, so the RTL must
not flag anything) are compared with the model.  The first failing program of a kind is
logged as an assembly listing (``describe()``) and stops that kind; the others go on.
The summary (``TSP_RESULT``) has the counts, the failures with their listings, and the
coverage counters of the programs that ran.

``chip_compute_faults``: each program of ``compute_fault_programs`` (REQUANT parameters
and PMAP entries out of range, a stream collision, IW during a weight load, illegal words,
REPEAT strides leaving a field's range) is refused by the model at a compute slice; the
RTL must flag the expected error code at that slice and halt (a case's ``known`` code is
accepted as a reported deviation, listed in ``known_deviations``), and a clean random
program of that slice kind must run correctly right after it.
"""

from __future__ import annotations

import time
from collections import Counter

import cocotb

from hdl.slice import ErrorCode
from tb import env

from .host import HostDriver, HostTimeout
from .programs_compute import KINDS, compute_fault_programs, random_compute_program
from .scoreboard import ChipScoreboard, run_model, undefined_state_models
from .test_chip import load_and_run


@cocotb.test()
async def chip_random_compute_programs(dut):
    cfg = env.config()
    prm = env.params()
    kinds = prm.get("kinds", list(KINDS))
    seeds = prm.get("seeds", [0])
    lock = set(prm.get("lockstep", []))
    corrupt = set(prm.get("corrupt", []))
    scale = float(prm.get("scale", 1.0))
    max_cycles = int(prm.get("max_cycles", 20_000))
    host = HostDriver(dut, cfg)
    await env.start_clock_and_reset(dut)
    t0 = time.monotonic()
    totals = {"programs": 0, "instructions": 0, "program_cycles": 0, "lockstep_programs": 0,
              "lockstep_cycles": 0, "sram_vectors_compared": 0}
    per_kind = {k: {"programs": 0, "passed": 0, "instructions": 0, "program_cycles": 0}
                for k in kinds}
    coverage: Counter = Counter()
    failures = []
    sim_cycles = 0
    hung = False
    corrupted = detected = 0
    for kind in kinds:
        if hung:
            break
        for seed in seeds:
            rp = random_compute_program(cfg, seed, kind, scale=scale)
            ls = seed in lock and seed not in corrupt
            dut._log.info("%s program seed=%d (%d instructions)%s", kind, seed,
                          rp.n_instructions, " lock-step" if ls else "")
            exp = run_model(cfg, rp.program, rp.init, keep_history=ls)
            assert exp.error is None, f"{kind} seed {seed}: generator produced a refused " \
                                      f"program: {exp.error}\n{rp.describe()}"
            board = ChipScoreboard(cfg)
            tag = f"{kind} seed {seed}"
            before = host.cycles_used
            init = rp.init
            if seed in corrupt:  # flip lane 0 bit 0 of every operand vector (RTL only)
                init = {sl: dict(d) for sl, d in rp.init.items()}
                for sl, addrs in rp.inputs.items():
                    for a in addrs:
                        v = init[sl][a].copy()
                        v[0] ^= 1
                        init[sl][a] = v
            try:
                waited, mon = await load_and_run(
                    dut, host, cfg, rp.program, init,
                    lockstep_cycles=exp.result.cycles if ls else None,
                    lockstep_model=exp.machine if ls else None, max_cycles=max_cycles)
            except HostTimeout as e:
                board.errors.append(f"{tag}: {e} (model: {exp.result.cycles} cycles)")
                hung = True
                waited, mon = max_cycles, None
            if not hung:
                for sl, addrs in rp.touched.items():  # SRAM first, right after done
                    if seed in corrupt:  # only results count
                        addrs = addrs - rp.inputs.get(sl, set())
                    for a in sorted(addrs):
                        board.check_sram(tag, exp.machine, sl, a, await host.read_sram(sl, a))
                board.check_clean_status(tag, await host.status())
                board.check_counters(tag, exp.result, await host.counters(), clock=waited)
                if mon is not None:
                    dirty = undefined_state_models(cfg, rp.program, rp.init, seed)
                    board.errors += [f"{tag} lock-step: {e}" for e in mon.compare(
                        exp.machine, exp.result.cycles, dirty=dirty)]
                    totals["lockstep_programs"] += 1
                    totals["lockstep_cycles"] += exp.result.cycles
            sim_cycles += host.cycles_used - before + waited
            totals["programs"] += 1
            totals["instructions"] += rp.n_instructions
            totals["program_cycles"] += exp.result.cycles
            totals["sram_vectors_compared"] += board.compared_vectors
            pk = per_kind[kind]
            pk["programs"] += 1
            pk["instructions"] += rp.n_instructions
            pk["program_cycles"] += exp.result.cycles
            coverage.update(rp.coverage)
            if seed in corrupt:
                corrupted += 1
                detected += bool(board.errors)
                dut._log.info("corrupted operands: %d mismatch(es) detected", len(board.errors))
                continue
            if board.errors:
                listing = rp.describe()
                for e in board.errors[:20]:
                    dut._log.error(e)
                dut._log.error("first failing %s program (seed %d):\n%s", kind, seed, listing)
                failures.append({"kind": kind, "seed": seed, "errors": board.errors[:20],
                                 "n_errors": len(board.errors), "listing": listing})
                break
            pk["passed"] += 1
    wall = time.monotonic() - t0
    totals.update(config=cfg.name, kinds=kinds, seeds=seeds, lockstep=sorted(lock),
                  per_kind=per_kind, failures=failures, mismatches=len(failures),
                  hung=hung, corrupted_programs=corrupted, corruptions_detected=detected,
                  wall_seconds=wall, sim_cycles=sim_cycles,
                  sim_cycles_per_second=sim_cycles / wall if wall else 0.0,
                  coverage=dict(sorted(coverage.items())))
    env.write_result(totals)
    assert not failures, (
        f"{len(failures)} kind(s) failed; first: {failures[0]['kind']} seed "
        f"{failures[0]['seed']}: {failures[0]['errors'][0]}")


@cocotb.test()
async def chip_compute_faults(dut):
    cfg = env.config()
    prm = env.params()
    seed = int(prm.get("seed", 0))
    host = HostDriver(dut, cfg)
    await env.start_clock_and_reset(dut)
    errors, results, deviations = [], [], []
    for i, fc in enumerate(compute_fault_programs(cfg, seed)):
        rp = fc.program
        exp = run_model(cfg, rp.program, rp.init)
        if exp.error is None or not exp.error.startswith(fc.slice):
            errors.append(f"{fc.name}: model did not refuse it at {fc.slice}: {exp.error}")
        await host.load(rp.program, rp.init)
        await host.start()
        try:
            await host.wait_done(2000)
        except HostTimeout:
            errors.append(f"{fc.name}: the machine did not stop")
            break
        st = await host.status()
        got = (st["error"], cfg.slices[st["error_slice"]].name, ErrorCode(st["error_code"]).name)
        results.append({"case": fc.name, "slice": got[1], "code": got[2],
                        "cycle": st["error_cycle"], "model": exp.error})
        if fc.known and got == (True, fc.slice, fc.known):
            deviations.append(f"{fc.name}: RTL flags {fc.known} at {fc.slice}, documented "
                              f"{fc.code} (known deviation)")
            dut._log.warning(deviations[-1])
        elif got != (True, fc.slice, fc.code):
            errors.append(f"{fc.name}: RTL status error={got[0]} slice={got[1]} code={got[2]}, "
                          f"expected {fc.slice} {fc.code}; model: {exp.error}\n{rp.describe()}")
        # the next program runs cleanly (state the faulty one left behind does not matter)
        kind = cfg.slice(fc.slice).kind
        ok = random_compute_program(cfg, seed * 100 + i, kind, scale=0.4)
        exp = run_model(cfg, ok.program, ok.init)
        board = ChipScoreboard(cfg)
        waited, _ = await load_and_run(dut, host, cfg, ok.program, ok.init)
        st = await host.status()
        if st["error"]:
            board.errors.append(f"error code {ErrorCode(st['error_code']).name} at "
                                f"{cfg.slices[st['error_slice']].name}")
        board.check_counters("next", exp.result, await host.counters(), clock=waited)
        for sl, addrs in ok.touched.items():
            for a in sorted(addrs):
                board.check_sram("next", exp.machine, sl, a, await host.read_sram(sl, a))
        if board.errors:
            errors.append(f"{fc.name}: the {kind} program after it fails: {board.errors[0]}\n"
                          f"{ok.describe()}")
    env.write_result({"faults": results, "errors": errors, "known_deviations": deviations})
    for e in errors:
        dut._log.error(e)
    assert not errors, errors[0]
