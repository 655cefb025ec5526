"""A system: several chips of one config on a ring of C2C links, in one design.

Topology (the same as `golden.system`): link ``k`` of chip ``i``'s C2C_E and link ``k``
of chip ``i+1``'s C2C_W are the two ends of one link, one `C2cLink` wire per direction;
chip ``n-1``'s C2C_E leads back to chip 0's C2C_W (one chip alone: its own ends, a
loopback).  Every chip keeps its own host interface, prefixed ``c<i>_`` (``c0_cmd``,
``c0_rsp_data``, ``c0_done``, ...); the host starts the chips in the same cycle (START
on every command port at once), which is what makes one static schedule span them.
``done`` is high when every chip is done.
"""

from __future__ import annotations

from amaranth import Cat, Module
from amaranth.lib import wiring
from amaranth.lib.wiring import Out

from arch.config import TspConfig

from .c2c import C2cLink
from .chip import Chip, chip_members

__all__ = ["MAX_CHIPS", "System"]

#: the largest system one design holds (`golden.system.MAX_CHIPS`)
MAX_CHIPS = 16


class System(wiring.Component):
    """``chips`` `Chip`\\ s of ``cfg`` (which needs ``c2c_links >= 1``) on a ring."""

    def __init__(self, cfg: TspConfig, chips: int):
        if not isinstance(cfg, TspConfig):
            raise ValueError(f"System: cfg must be a TspConfig, got {type(cfg).__name__}")
        if not cfg.c2c_links:
            raise ValueError(f"System: config {cfg.name!r} has no C2C links (c2c_links=0); "
                             f"use cfg.with_links() ({cfg.with_links().name!r})")
        if isinstance(chips, bool) or not isinstance(chips, int) or not 1 <= chips <= MAX_CHIPS:
            raise ValueError(f"System: chips must be an int in [1, {MAX_CHIPS}], got {chips!r}")
        self.cfg, self.chips = cfg, chips
        #: the host-facing ports of one chip (its links stay inside)
        self._host = {k: v for k, v in chip_members(cfg).items() if k not in ("c2c_w", "c2c_e")}
        members = {"done": Out(1)}
        for i in range(chips):
            for name, member in self._host.items():
                members[f"c{i}_{name}"] = member
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        cfg, n = self.cfg, self.chips
        chips = []
        for i in range(n):
            chip = m.submodules[f"chip{i}"] = Chip(cfg)
            chips.append(chip)
            for name in self._host:
                mine = getattr(self, f"c{i}_{name}")
                if name == "cmd":
                    wiring.connect(m, wiring.flipped(mine), chip.cmd)
                else:  # outputs
                    m.d.comb += mine.eq(getattr(chip, name))
        m.d.comb += self.done.eq(Cat(*(c.done for c in chips)).all())
        S = cfg.superlanes
        for i in range(n):
            east, west = chips[i].c2c_e, chips[(i + 1) % n].c2c_w
            for k in range(cfg.c2c_links):
                for src, dst, name in ((east, west, f"link{i}_{k}_to_w"),
                                       (west, east, f"link{i}_{k}_to_e")):
                    wire = m.submodules[name] = C2cLink(cfg)
                    m.d.comb += [
                        wire.i_valid.eq(Cat(*(src[k][t].tx_valid for t in range(S)))),
                        wire.i_last.eq(Cat(*(src[k][t].tx_last for t in range(S)))),
                        wire.i_data.eq(Cat(*(src[k][t].tx_data for t in range(S)))),
                    ]
                    w = 8 * cfg.c2c_bytes_per_cycle
                    for t in range(S):
                        m.d.comb += [dst[k][t].rx_valid.eq(wire.o_valid[t]),
                                     dst[k][t].rx_last.eq(wire.o_last[t]),
                                     dst[k][t].rx_data.eq(wire.o_data[w * t:w * (t + 1)])]
        return m
