"""cocotb tests of the chip through its host interface, against golden/machine.py.

Parameters (``TSP_PARAMS``): ``seeds`` (random MEM/ICU programs), ``lockstep``
(seeds also compared cycle by cycle, stream register by stream register).
"""

from __future__ import annotations

import time

import cocotb

from arch.isa import Instr
from arch.program import Program
from hdl.slice import ErrorCode
from tb import env

from .host import HostDriver
from .lockstep import LockstepMonitor
from .programs import random_mem_program
from .scoreboard import ChipScoreboard, run_model, undefined_state_models


async def load_and_run(dut, host: HostDriver, cfg, program, init, *,
                       lockstep_cycles: int | None = None, lockstep_model=None,
                       max_cycles=20_000):
    """Load `program` and the SRAM image `init`, start, wait for done; with
    `lockstep_cycles` (the model's cycle count) also record every stream register
    for that many cycles (given the reference `lockstep_model`, only those it holds a
    value in).  Returns (cycles waited, the LockstepMonitor or None)."""
    await host.load(program, init)
    mon = LockstepMonitor(dut, cfg) if lockstep_cycles is not None else None
    await host.start()
    mon_task = None
    if mon is not None:
        mon_task = cocotb.start_soon(mon.run(lockstep_cycles, lockstep_model))
    waited = await host.wait_done(max_cycles)
    if mon_task is not None:
        await mon_task
    return waited, mon


@cocotb.test()
async def chip_random_mem_programs(dut):
    cfg = env.config()
    prm = env.params()
    seeds = prm.get("seeds", [0])
    lock = set(prm.get("lockstep", []))
    host = HostDriver(dut, cfg)
    await env.start_clock_and_reset(dut)
    board = ChipScoreboard(cfg)
    t0 = time.monotonic()
    totals = {"programs": 0, "instructions": 0, "program_cycles": 0, "lockstep_programs": 0,
              "lockstep_cycles": 0}
    sim_cycles = 0
    for seed in seeds:
        rp = random_mem_program(cfg, seed)
        dut._log.info("program seed=%d (%d instructions)%s", seed, rp.n_instructions,
                      " lock-step" if seed in lock else "")
        exp = run_model(cfg, rp.program, rp.init, keep_history=seed in lock)
        assert exp.error is None, f"seed {seed}: generator produced a refused program: " \
                                  f"{exp.error}\n{rp.describe()}"
        before = host.cycles_used
        waited, mon = await load_and_run(
            dut, host, cfg, rp.program, rp.init,
            lockstep_cycles=exp.result.cycles if seed in lock else None,
            lockstep_model=exp.machine if seed in lock else None)
        tag = f"seed {seed}"
        # the first command after done reads SRAM: a done that rose before the upper
        # superlanes have written shows here
        for sl, addrs in rp.touched.items():
            for a in sorted(addrs):
                board.check_sram(tag, exp.machine, sl, a, await host.read_sram(sl, a))
        st = await host.status()
        if st["error"]:
            board.errors.append(f"{tag}: RTL raised error code {st['error_code']} at slice "
                                f"{cfg.slices[st['error_slice']].name}")
        board.check_counters(tag, exp.result, await host.counters(), clock=waited)
        if mon is not None:
            dirty = undefined_state_models(cfg, rp.program, rp.init, seed)
            board.errors += [f"{tag} lock-step: {e}" for e in mon.compare(
                exp.machine, exp.result.cycles, dirty=dirty)]
            totals["lockstep_programs"] += 1
            totals["lockstep_cycles"] += exp.result.cycles
        totals["programs"] += 1
        totals["instructions"] += rp.n_instructions
        totals["program_cycles"] += exp.result.cycles
        sim_cycles += host.cycles_used - before + waited
        if board.errors:
            dut._log.error("program seed %d:\n%s", seed, rp.describe())
            break
    wall = time.monotonic() - t0
    totals.update(config=cfg.name, seeds=seeds, mismatches=len(board.errors),
                  sram_vectors_compared=board.compared_vectors, wall_seconds=wall,
                  sim_cycles=sim_cycles, sim_cycles_per_second=sim_cycles / wall)
    env.write_result(totals)
    for e in board.errors[:20]:
        dut._log.error(e)
    assert not board.errors, f"{len(board.errors)} mismatch(es); first: {board.errors[0]}"


def _fault_programs(cfg, every_queue: bool = False):
    """(name, program, slice, expected RTL code) for each fault the chip must flag; with
    `every_queue` also, on every slice's queue, an illegal word, a REPEAT that follows no
    slice instruction and a queue that runs past the end of its instruction memory."""
    mem0, mem1 = cfg.slices_of("MEM")[0].name, cfg.slices_of("MEM")[1].name
    A = cfg.mem_addresses
    out = []
    illegal = {mem1: [Instr("NOP", {"n": 3}).encode(), 0x3F, Instr("HALT", {}).encode()]}
    out.append(("illegal opcode", Program(cfg, illegal), mem1, ErrorCode.ILLEGAL_INSTRUCTION))
    if A < 8192:
        bad = {mem0: [Instr("NOP", {"n": 2}), Instr("READ", {"addr": A, "out_s": 0}),
                      Instr("HALT", {})]}
        out.append(("address out of range", Program.from_instrs(cfg, bad), mem0,
                    ErrorCode.ADDRESS_RANGE))
    strided = {mem1: [Instr("READ", {"addr": A - 3, "out_s": 1}),
                      Instr("REPEAT", {"n": 5, "d": 1, "stride_a": 1}), Instr("HALT", {})]}
    out.append(("address out of range after REPEAT stride",
                 Program.from_instrs(cfg, strided), mem1, ErrorCode.ADDRESS_RANGE))
    if every_queue:
        for s in cfg.slices:
            nm = s.name
            out.append((f"illegal word on {nm}", Program(cfg, {nm: [
                Instr("NOP", {"n": 2}).encode(), 0x3F, Instr("HALT", {}).encode()]}),
                nm, ErrorCode.ILLEGAL_INSTRUCTION))
            out.append((f"REPEAT after a NOP on {nm}", Program.from_instrs(cfg, {nm: [
                Instr("NOP", {"n": 2}), Instr("REPEAT", {"n": 1, "d": 1}),
                Instr("HALT", {})]}), nm, ErrorCode.REPEAT_MISPLACED))
            depth = cfg.imem_depth_of(nm)
            out.append((f"{nm} runs past the end of its {depth}-word queue",
                        Program.from_instrs(cfg, {nm: [Instr("NOP", {"n": 1})] * depth}),
                        nm, ErrorCode.IMEM_OVERRUN))
    return out


@cocotb.test()
async def chip_faults(dut):
    """An illegal opcode and out-of-range addresses raise their flag, name the slice
    and halt the machine; the model refuses the same programs at the same slice.
    Parameter ``every_queue``: also the queue faults on every slice (`_fault_programs`)."""
    cfg = env.config()
    prm = env.params()
    host = HostDriver(dut, cfg)
    await env.start_clock_and_reset(dut)
    errors = []
    results = []
    for name, prog, sl, code in _fault_programs(cfg, bool(prm.get("every_queue"))):
        exp = run_model(cfg, prog, {})
        if exp.error is None or not exp.error.startswith(sl):
            errors.append(f"{name}: model did not refuse it at {sl}: {exp.error}")
        await host.load_program(prog)
        await host.start()
        await host.wait_done(1000 + 2 * max(cfg.imem_depth_of(s.name) for s in cfg.slices))
        st = await host.status()
        got = (st["error"], cfg.slices[st["error_slice"]].name, st["error_code"])
        results.append({"case": name, "slice": got[1], "code": ErrorCode(got[2]).name,
                        "cycle": st["error_cycle"], "model": exp.error})
        if got != (True, sl, int(code)):
            errors.append(f"{name}: RTL status error={got[0]} slice={got[1]} "
                          f"code={ErrorCode(got[2]).name}, expected {sl} {code.name}")
        # the machine is usable again afterwards: a clean program runs without error
        ok = Program.from_instrs(cfg, {sl: [Instr("NOP", {"n": 2}), Instr("HALT", {})]})
        await host.load_program(ok)
        # the fault program's words beyond the new program's length stay in imem,
        # but HALT stops the queue before them
        await host.start()
        await host.wait_done(100)
        st = await host.status()
        if st["error"]:
            errors.append(f"{name}: the next program after the fault still reports an error")
        if await host.read_reg(2) != run_model(cfg, ok, {}).result.cycles:
            errors.append(f"{name}: cycles of the program after the fault differ from model")
    env.write_result({"faults": results})
    for e in errors:
        dut._log.error(e)
    assert not errors, errors[0]



@cocotb.test()
async def chip_reset_mid_program(dut):
    """Reset in the middle of a program stops it cleanly: the chip is idle and not in
    error afterwards, and the next program runs exactly as the model says.

    Parameters: ``seed``, ``kind`` (a `tb.fuzz` generator kind, default ``all``: every
    slice kind busy when reset comes), ``fractions`` (where in the first program reset
    comes, as fractions of its length; one first/second program pair per fraction)."""
    from cocotb.triggers import RisingEdge

    from tb.fuzz import generate, model_outcome

    cfg = env.config()
    prm = env.params()
    seed, kind = int(prm.get("seed", 0)), prm.get("kind", "all")
    fractions = prm.get("fractions", [0.5])
    host = HostDriver(dut, cfg)
    await env.start_clock_and_reset(dut)
    board = ChipScoreboard(cfg)
    done = []
    for j, frac in enumerate(fractions):
        first = generate(cfg, kind, seed * 100 + 2 * j)
        exp_first = model_outcome(first)
        assert exp_first.ok, exp_first.error
        await host.load(first.program, first.image)
        await host.start()
        stop_after = max(2, int(exp_first.result.cycles * frac))
        for _ in range(stop_after):
            await RisingEdge(dut.clk)
        assert int(dut.running.value), "the program should still be running when reset comes"
        await env.pulse_reset(dut)
        for _ in range(3):
            await RisingEdge(dut.clk)
        tag = f"after reset at cycle {stop_after} of {first.name}"
        if int(dut.running.value) or int(dut.done.value) or int(dut.error.value):
            board.errors.append(f"{tag}: running/done/error not all low")
        # the next program (new SRAM image over the old contents, compute state left
        # over) runs as the model says
        second = generate(cfg, kind, seed * 100 + 2 * j + 1)
        exp = model_outcome(second)
        assert exp.ok, exp.error
        waited, _ = await load_and_run(dut, host, cfg, second.program, second.image)
        board.check_clean_status(tag, await host.status())
        board.check_counters(tag, exp.result, await host.counters(), clock=waited)
        for sl, d in exp.sram.items():
            for a in sorted(d):
                board.check_vector(tag, sl, a, d[a], await host.read_sram(sl, a))
        done.append({"first": first.name, "reset_at_cycle": stop_after,
                     "first_program_cycles": exp_first.result.cycles,
                     "second": second.name})
    env.write_result({"resets": done, "mismatches": len(board.errors),
                      "sram_vectors_compared": board.compared_vectors})
    for e in board.errors[:20]:
        dut._log.error(e)
    assert not board.errors, board.errors[0]


@cocotb.test()
async def chip_done_races(dut):
    """The host's first command after done sees every superlane's result: an SRAM read of
    the program's last write, and a START of the next run (`tb.chip.races`)."""
    from .races import race_cases

    cfg = env.config()
    host = HostDriver(dut, cfg)
    await env.start_clock_and_reset(dut)
    board = ChipScoreboard(cfg)
    cases = []
    for case in race_cases(cfg):
        await host.load(case.program, case.init)
        state = {sl: dict(d) for sl, d in case.init.items()}
        exp = None
        await host.start()
        for run in range(case.runs):
            exp = run_model(cfg, case.program, state)
            assert exp.error is None, f"{case.name}: the model refuses it: {exp.error}"
            waited = await host.wait_done(1000)
            tag = f"{case.name} run {run + 1}/{case.runs}"
            if run + 1 < case.runs:
                await host.start()  # in the first cycle of done
                if not host.accepted_in_first_cycle_after_done():
                    board.errors.append(f"{tag}: START not sent in the first cycle of done")
            state = {sl: {a: exp.machine.read_mem(sl, a) for a in d} for sl, d in state.items()}
        for k, (sl, a) in enumerate(case.reads):
            got = await host.read_sram(sl, a)
            if k == 0 and not host.accepted_in_first_cycle_after_done():
                board.errors.append(f"{case.name}: SRAM read not sent in the first cycle of "
                                    "done")
            board.check_sram(case.name, exp.machine, sl, a, got)
        board.check_counters(case.name, exp.result, await host.counters(), clock=waited)
        cases.append({"case": case.name, "runs": case.runs, "cycles": exp.result.cycles})
    env.write_result({"cases": cases, "mismatches": len(board.errors), "errors": board.errors,
                      "sram_vectors_compared": board.compared_vectors})
    for e in board.errors[:20]:
        dut._log.error(e)
    assert not board.errors, board.errors[0]


@cocotb.test()
async def chip_power_up_state(dut):
    """After reset: what reset defines (status, counters) is clean whatever the power-up
    state; what it does not (SRAM) is reported, so that the launcher can check that the
    power-up state really is random (X seeds) and not silently zero."""
    cfg = env.config()
    host = HostDriver(dut, cfg)
    await env.start_clock_and_reset(dut)
    st = await host.status()
    counters = await host.counters()
    sram = {}
    for s in cfg.slices_of("MEM"):
        for a in (0, cfg.mem_depth, cfg.mem_addresses - 1):
            sram[f"{s.name}/{a}"] = (await host.read_sram(s.name, a)).tolist()
    env.write_result({"status": st, "counters": counters, "sram": sram})
