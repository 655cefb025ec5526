"""Directed programs for the end-of-run races: what the host does in the first cycle
after ``done`` must see every result of the run, in every superlane.

Superlane ``k`` does everything ``k`` cycles after superlane 0, so the last thing a
program does happens ``S - 1`` cycles after its last superlane-0 effect.  A ``done``
that followed superlane-0 time would let the host read a vector whose upper
superlanes are not written yet, or start the next program over the old one's tail.
Each case here ends with a write as late as the program can make it, and the
testbench's first command after ``done`` touches exactly that write:

* ``transfer``: READ on the westmost MEM slice -> WRITE on the eastmost one (the
  longest stream path), the host's first command after done reads the destination;
  the vector's lanes differ per superlane, so a stale superlane shows.
* ``increment``: READ -> VXM ``ADD 1`` -> WRITE back to the same address, run twice
  with the second START in the first cycle after the first run's done (the second
  run's first READ meets the first run's last WRITE), then read back: every lane + 2.

The expected SRAM is the machine model's (`tb.chip.scoreboard.run_model`), run as
many times as the chip runs the program.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from arch.asm import assemble
from arch.config import TspConfig
from arch.isa import latency
from arch.program import Program


@dataclass
class RaceCase:
    name: str
    program: Program
    init: dict[str, dict[int, np.ndarray]]
    #: (slice, address) the host reads, in this order, as the first commands after done
    reads: list[tuple[str, int]]
    #: runs back to back, each START in the first cycle after the previous done
    runs: int = 1
    text: str = field(default="", repr=False)


def _ramp(cfg: TspConfig, base: int) -> np.ndarray:
    """Lane i = base + i: every superlane's lanes differ (the issue's [1, 17, 33, 49])."""
    return ((base + np.arange(cfg.vector_length)) % 200).astype(np.uint8)


def race_cases(cfg: TspConfig) -> list[RaceCase]:
    pos = {s.name: s.index for s in cfg.slices}
    mems = cfg.slices_of("MEM")
    west, east = mems[0].name, mems[-1].name  # slices are listed west to east
    lr, lv = latency("READ", cfg), latency("VXM", cfg)
    a_src, a_dst = 5, cfg.mem_depth + 9  # the write lands in the other bank
    d = pos[east] - pos[west]
    transfer = f"""\
# READ on {west} -> WRITE on {east}, {d} positions east: the longest eastward path
.slice {west}
    READ {a_src}, s2.E
    HALT
.slice {east}
    NOP {lr + d}
    WRITE s2.E, {a_dst}
    HALT
"""
    # READ a, s3.E on the MEM slice west of the VXM -> ADD 1 -> s3.W -> WRITE a back
    mem = max((s for s in mems if s.index < pos["VXM"]), key=lambda s: s.index).name
    dv = pos["VXM"] - pos[mem]
    a = 17
    increment = f"""\
# {mem}[{a}] += 1 through the VXM, {dv} position(s) east and back
.slice {mem}
    READ {a}, s3.E
    NOP {lr + dv + lv + dv - 1}  # READ in cycle 0, the NOP in 1
    WRITE s3.W, {a}
    HALT
.slice VXM
    NOP {lr + dv}
    VXM.u8 s3.W = ADD(s3.E, 1)
    HALT
"""
    return [
        RaceCase("transfer", assemble(transfer, cfg, "race-transfer"),
                 {west: {a_src: _ramp(cfg, 1)}}, [(east, a_dst), (west, a_src)],
                 text=transfer),
        RaceCase("increment", assemble(increment, cfg, "race-increment"),
                 {mem: {a: _ramp(cfg, 30)}}, [(mem, a)], runs=2, text=increment),
    ]


__all__ = ["RaceCase", "race_cases"]
