"""What a cocotb test gets from its launcher: config, parameters, result file."""

from __future__ import annotations

import contextlib
import gc
import json
import os

from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, RisingEdge

from arch.config import TspConfig


def config() -> TspConfig:
    return TspConfig.from_dict(json.loads(os.environ["TSP_CONFIG"]))


def params() -> dict:
    return json.loads(os.environ.get("TSP_PARAMS", "{}"))


def write_result(summary: dict) -> None:
    path = os.environ.get("TSP_RESULT")
    if path:
        with open(path, "w") as fh:
            json.dump(summary, fh, indent=1)


#: the clock period of every testbench, in ns
PERIOD_NS = 10
#: "1" where the simulator's own main loop toggles ``clk`` (sim/cocotb_main.cpp; set by
#: `sim.run`): the testbench then starts no clock
NATIVE_CLOCK_ENV = "TSP_NATIVE_CLOCK"


async def start_clock_and_reset(dut, cycles: int = 2) -> None:
    """Start a `PERIOD_NS` clock on ``clk`` and hold ``rst`` for `cycles` edges.

    The clock toggles in the simulator's C++ code, so no Python runs in a cycle in which
    no testbench coroutine waits for it: the simulator's own main loop toggles it where
    it was built with one (`NATIVE_CLOCK_ENV`), else cocotb's GPI clock (traced and
    coverage builds)."""
    if os.environ.get(NATIVE_CLOCK_ENV) != "1":
        Clock(dut.clk, PERIOD_NS, unit="ns", impl="gpi").start()
    dut.rst.value = 1
    for _ in range(cycles):
        await RisingEdge(dut.clk)
    dut.rst.value = 0


async def pulse_reset(dut, cycles: int = 2) -> None:
    """Assert ``rst`` from a falling edge for `cycles` rising edges (mid-run too)."""
    await FallingEdge(dut.clk)
    dut.rst.value = 1
    for _ in range(cycles):
        await RisingEdge(dut.clk)
    await FallingEdge(dut.clk)
    dut.rst.value = 0


@contextlib.contextmanager
def heap_frozen():
    """The testbench's heap as set up (program, images, models, cocotb's own objects)
    collected once and frozen (`gc.freeze`) while the machine runs: Python's cyclic
    collector, which runs at the host commands and edges between runs, then traverses
    only what the runs make, not everything the setup made.  Back to the collector on
    leaving.  (`make bench-rtl`, `tiny`: 139 runs of the block, each START and wait a few
    awaits; the full collections there had cost about a tenth of the driven run phase.)"""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
