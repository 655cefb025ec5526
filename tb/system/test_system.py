"""cocotb test: run one program per chip on a system of linked chips (`hdl.system`).

Parameters (``TSP_PARAMS``): ``chips``, ``max_cycles`` and ``cases``, a list of runs,
each with ``programs`` (a program binary per chip, or null: run the loaded programs
again, the SRAM kept -- decode steps over a KV cache), ``images`` (an ``.npz`` of SRAM
vectors per chip, keys ``"<slice>/<addr>"``), ``readback`` (per chip, a list of
``[slice, addr]``) and ``out`` (an ``.npz`` the read-back vectors go to, keys
``"<chip>/<slice>/<addr>"``).

Per case, each chip is loaded through its own host interface; then every host presents
START in the same cycle (`HostDriver.start_together`).  The testbench counts each chip's
run with its own clock (START edge to that chip's ``done`` edge) and reads every chip's
status, counters and vectors.  The summary has one entry per case.
"""

from __future__ import annotations

import time
from pathlib import Path

import cocotb
import numpy as np

from arch.program import Program
from tb import env
from tb.chip.host import HostDriver
from tb.chip.test_run import load_image


@cocotb.test()
async def run_system(dut):
    cfg = env.config()
    prm = env.params()
    n = int(prm["chips"])
    limit = int(prm.get("max_cycles", 1_000_000))
    hosts = [HostDriver(dut, cfg, prefix=f"c{i}_") for i in range(n)]
    await env.start_clock_and_reset(dut)
    results, cycles, t0 = [], 0, time.monotonic()
    for case in prm["cases"]:
        for i, h in enumerate(hosts):
            prog = (Program.from_bytes(Path(case["programs"][i]).read_bytes(), cfg)
                    if case["programs"] is not None else None)
            await h.load(prog, load_image(case["images"][i]))
        await HostDriver.start_together(hosts)
        waits = [cocotb.start_soon(h.wait_done(limit)) for h in hosts]
        clock = [await w for w in waits]
        cycles += max(clock)
        chips, vecs = [], {}
        for i, h in enumerate(hosts):
            chips.append({"status": await h.status(), "counters": await h.counters(),
                          "cycles_clock": clock[i]})
            for sl, a in case["readback"][i]:
                vecs[f"{i}/{sl}/{a}"] = await h.read_sram(sl, int(a))
        np.savez(case["out"], **vecs)
        results.append({"chips": chips})
    env.write_result({"cases": results, "sim_cycles": cycles,
                      "seconds": time.monotonic() - t0})
