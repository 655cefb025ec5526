"""cocotb test: random producers/consumers on the stream fabric vs the model.

Parameters (``TSP_PARAMS``): ``seeds`` (list), ``cycles`` per program.
"""

from __future__ import annotations

import time

import cocotb
from cocotb.triggers import RisingEdge

from tb import env

from .components import FabricDriver, FabricMonitor, FabricScoreboard
from .model import FabricModel
from .stimulus import random_ops


@cocotb.test()
async def fabric_random(dut):
    cfg = env.config()
    prm = env.params()
    seeds = prm.get("seeds", [0])
    cycles = int(prm.get("cycles", 200))
    driver, model = FabricDriver(dut, cfg), FabricModel(cfg)
    driver.idle()
    await env.start_clock_and_reset(dut)
    totals = {"programs": 0, "ops": 0, "reads_compared": 0, "reads_unknown": 0, "cycles": 0}
    errors: list[str] = []
    t0 = time.monotonic()
    for seed in seeds:
        dut._log.info("fabric program seed=%d config=%s", seed, cfg.name)
        ops = random_ops(cfg, seed, cycles)
        expected = model.predict(ops)
        monitor = FabricMonitor(dut, cfg)
        run_cycles = cycles + cfg.superlanes + 2
        mon = cocotb.start_soon(monitor.run(run_cycles))
        await driver.run(ops, run_cycles)
        await mon
        board = FabricScoreboard(cfg)
        board.check(expected, monitor.seen)
        errors += [f"seed {seed}: {e}" for e in board.errors]
        totals["programs"] += 1
        totals["ops"] += len(ops)
        totals["reads_compared"] += board.compared
        totals["reads_unknown"] += board.unknown
        totals["cycles"] += run_cycles
        for _ in range(cfg.n_positions + 2):  # let the streams drain between programs
            await RisingEdge(dut.clk)
            totals["cycles"] += 1
    wall = time.monotonic() - t0
    totals.update(config=cfg.name, seeds=seeds, mismatches=len(errors), wall_seconds=wall,
                  sim_cycles_per_second=totals["cycles"] / wall if wall else 0.0)
    env.write_result(totals)
    for e in errors[:20]:
        dut._log.error(e)
    assert not errors, f"{len(errors)} mismatch(es); first: {errors[0]}"
    assert totals["reads_compared"] > 0, "no read compared a known value"
