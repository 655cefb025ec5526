"""cocotb test: run one program image on the chip and save what the host reads back.

A generic loader for anything compiled elsewhere (the compiled transformer
block, fuzzing reproducers).  Parameters (``TSP_PARAMS``):

- ``program``: path of a program binary (`arch.program.Program.to_bytes`);
- ``image``: path of an ``.npz`` of SRAM vectors to load, keys ``"<slice>/<addr>"``;
- ``readback``: path of a JSON list of ``[slice, addr]`` to read after the run;
- ``out``: path of the ``.npz`` to write the read-back vectors to (same keys);
- ``max_cycles``; ``lockstep`` (compare every stream register every cycle with
  the machine model run on the same program and image: ``true`` in the first run,
  ``"every"`` in every run of ``repeat``, the lock-step speed benchmark);
- ``repeat``: run the loaded program that many times (START after each ``done``;
  the speed benchmark's long run), read back after the last; ``restore``: an
  ``.npz`` like ``image`` written again before each further run (what a run
  overwrites of its own input; not counted in the run time).
- ``steps``: an ``.npz`` of per-run writes, keys ``"<run>/<slice>/<addr>"`` (decode
  steps: the token's row and position): run ``r`` writes its vectors, STARTs, and the
  ``readback`` vectors and the chip's CYCLES are read after *each* run (``out`` keys
  ``"<run>/<slice>/<addr>"``; ``cycles_chip_runs`` in the summary).  Excludes ``repeat``.

The summary (``TSP_RESULT``) has the status, the counters, the measured cycles
and the simulation speed.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import cocotb
import numpy as np

from arch.program import Program
from tb import env

from .host import HostDriver
from .lockstep import LockstepMonitor
from .scoreboard import lockstep_models


def load_image(path) -> dict[str, dict[int, np.ndarray]]:
    out: dict[str, dict[int, np.ndarray]] = {}
    with np.load(path) as z:
        for key in z.files:
            sl, addr = key.rsplit("/", 1)
            out.setdefault(sl, {})[int(addr)] = z[key]
    return out


@cocotb.test()
async def run_program(dut):
    cfg = env.config()
    prm = env.params()
    prog = Program.from_bytes(Path(prm["program"]).read_bytes(), cfg)
    image = load_image(prm["image"])
    readback = json.loads(Path(prm["readback"]).read_text())
    host = HostDriver(dut, cfg)
    await env.start_clock_and_reset(dut)
    t_load = time.monotonic()
    await host.load(prog, image)
    load_seconds = time.monotonic() - t_load
    load_commands = host.cycles_used
    mon = exp = dirty = None
    if prm.get("lockstep"):
        exp, dirty = lockstep_models(cfg, prog, image)
        assert exp.error is None, f"the machine model refuses the program: {exp.error}"
        mon = LockstepMonitor(dut, cfg)
    restore = load_image(prm["restore"]) if prm.get("restore") else None
    with env.heap_frozen():
        t_run = time.monotonic()
        if prm.get("steps"):
            await run_steps(dut, host, prm, readback, load_seconds, load_commands, t_run)
            return
        waited_runs, run_seconds, lock_errors, compare_seconds = await run_repeated(
            host, prm, mon, exp, dirty, restore, t_run)
    waited = waited_runs[0]
    status = await host.status()
    counters = await host.counters()
    vecs = {}
    for sl, a in readback:
        vecs[f"{sl}/{a}"] = await host.read_sram(sl, int(a))
    np.savez(prm["out"], **vecs)
    env.write_result({
        "status": status, "counters": counters, "cycles_clock": waited,
        "cycles_clock_runs": waited_runs, "load_seconds": load_seconds,
        "load_commands": load_commands, "run_seconds": run_seconds,
        "sim_cycles_per_second": sum(waited_runs) / run_seconds if run_seconds else 0.0,
        "lockstep": bool(mon), "lockstep_errors": lock_errors,
        "lockstep_undefined_lanes": mon.undefined_lanes if mon is not None else 0,
        "lockstep_compare_seconds": compare_seconds,
    })
    for e in lock_errors:
        dut._log.error("lock-step: %s", e)


async def run_repeated(host, prm, mon, exp, dirty, restore, t_run):
    """START the loaded program ``prm["repeat"]`` times, each after restoring its input
    (`restore`), lock-step compared where asked.  Returns (clock edges of each run, run
    seconds without the restores and compares, lock-step errors, compare seconds)."""
    waited_runs: list[int] = []
    restore_seconds = compare_seconds = 0.0
    lock_errors: list[str] = []
    for r in range(int(prm.get("repeat", 1))):
        if r and restore:
            t0 = time.monotonic()
            await host.load(None, restore)
            restore_seconds += time.monotonic() - t0
        await host.start()
        lock_run = mon is not None and (r == 0 or prm["lockstep"] == "every")
        task = cocotb.start_soon(mon.run(exp.result.cycles, exp.machine)) if lock_run else None
        waited_runs.append(await host.wait_done(int(prm.get("max_cycles", 1_000_000))))
        if task is not None:  # every run: the same program and image, the same expectation
            await task
            t0 = time.monotonic()
            lock_errors += [f"run {r}: {e}" if r else e for e in mon.compare(
                exp.machine, exp.result.cycles, dirty=dirty)]
            compare_seconds += time.monotonic() - t0
    run_seconds = time.monotonic() - t_run - restore_seconds - compare_seconds
    return waited_runs, run_seconds, lock_errors, compare_seconds


async def run_steps(dut, host, prm, readback, load_seconds, load_commands, t_run):
    """Run the loaded program once per step of ``prm["steps"]`` (see the module
    docstring); the machine's state (SRAM: a KV cache) carries over between runs."""
    steps: dict[int, dict] = {}
    with np.load(prm["steps"]) as z:
        for key in z.files:
            r, sl, addr = key.split("/")
            steps.setdefault(int(r), {}).setdefault(sl, {})[int(addr)] = z[key]
    vecs, waited_runs, chip_runs, errors = {}, [], [], []
    io_seconds = 0.0
    for r in sorted(steps):
        t0 = time.monotonic()
        await host.load(None, steps[r])
        io_seconds += time.monotonic() - t0
        await host.start()
        waited_runs.append(await host.wait_done(int(prm.get("max_cycles", 1_000_000))))
        t0 = time.monotonic()
        status = await host.status()
        if status["error"]:
            errors.append({"run": r, **status})
        chip_runs.append((await host.counters())["cycles"])
        for sl, a in readback:
            vecs[f"{r}/{sl}/{a}"] = await host.read_sram(sl, int(a))
        io_seconds += time.monotonic() - t0
    run_seconds = time.monotonic() - t_run - io_seconds
    np.savez(prm["out"], **vecs)
    env.write_result({
        "status": await host.status(), "counters": await host.counters(),
        "cycles_clock": waited_runs[-1], "cycles_clock_runs": waited_runs,
        "cycles_chip_runs": chip_runs, "step_errors": errors,
        "load_seconds": load_seconds, "load_commands": load_commands,
        "run_seconds": run_seconds, "step_io_seconds": io_seconds,
        "sim_cycles_per_second": sum(waited_runs) / run_seconds if run_seconds else 0.0,
        "lockstep": False, "lockstep_errors": [], "lockstep_undefined_lanes": 0,
    })
