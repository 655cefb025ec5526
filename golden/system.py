"""Several chips on C2C links, one static schedule: the machine model of a system.

``System(cfg, chips)`` is ``chips`` copies of the machine model of one config with C2C
slices (`TspConfig.with_links`), on a ring: link ``k`` of chip ``i``'s C2C_E is link ``k``
of chip ``i+1``'s C2C_W (chip ``n-1``'s C2C_E leads to chip 0's C2C_W; one chip alone
loops back to itself).  Every chip starts in the same cycle (the host starts them
together) and runs its own program; a vector sent in cycle ``t`` is in the far end's
receive buffer from ``t + c2c_latency + c2c_beats`` (docs/isa.md, "C2C links").

The chips run interleaved in cycle order (every chip's issues of cycle ``c`` before any
of ``c + 1``): a RECV in ``c`` sees exactly the messages sent by ``c - c2c_arrival(w)``
(``w`` planes).  Each
chip's cycle count is its own (from the common start to its own end), as each chip's
CYCLES register counts; the system's is the largest.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

from arch.config import TspConfig, get_config
from arch.program import Program

from .machine import Machine, MachineError, RunResult

#: the largest system one simulation builds or models here
MAX_CHIPS = 16


@dataclass
class SystemResult:
    #: every chip's run (its own cycles, busy counters, ...)
    chips: list[RunResult]

    @property
    def cycles(self) -> int:
        """Cycles from the common start to the last chip's end."""
        return max(r.cycles for r in self.chips)


def ring(chips: int) -> list[tuple[int, int]]:
    """The ring's links as (chip whose C2C_E sends/receives, chip whose C2C_W does)."""
    return [(i, (i + 1) % chips) for i in range(chips)]


class System:
    """``chips`` machine models of ``cfg`` (which must have C2C links) on a ring."""

    def __init__(self, cfg: TspConfig | str | None, chips: int):
        cfg = get_config(cfg)
        if not cfg.c2c_links:
            raise ValueError(f"System: config {cfg.name!r} has no C2C links (c2c_links=0); "
                             f"use cfg.with_links() ({cfg.with_links().name!r})")
        if isinstance(chips, bool) or not isinstance(chips, int) or not 1 <= chips <= MAX_CHIPS:
            raise ValueError(f"System: chips must be an int in [1, {MAX_CHIPS}], got {chips!r}")
        self.cfg = cfg
        self.machines = [Machine(cfg) for _ in range(chips)]
        for i, m in enumerate(self.machines):
            m.chip = f"chip {i}"
        for a, b in ring(chips):
            ma, mb = self.machines[a], self.machines[b]
            for k in range(cfg.c2c_links):
                ma.c2c_peer[("C2C_E", k)] = (mb, "C2C_W", k)
                mb.c2c_peer[("C2C_W", k)] = (ma, "C2C_E", k)

    def __len__(self) -> int:
        return len(self.machines)

    def load_programs(self, programs: list[Program]) -> None:
        if len(programs) != len(self.machines):
            raise ValueError(f"System: {len(programs)} program(s) for {len(self.machines)} "
                             "chips (one per chip)")
        for i, (m, p) in enumerate(zip(self.machines, programs, strict=True)):
            try:
                m.load_program(p)
            except MachineError as exc:
                raise MachineError(f"chip {i}: {exc}") from None

    def run(self, max_cycles: int = 1_000_000) -> SystemResult:
        """Run every chip's program from a common cycle 0 until all have halted."""
        ms = self.machines
        with self._named():
            for m in ms:
                m.begin()
            while True:
                nxt = [m.next_cycle() for m in ms]
                live = [c for c in nxt if c is not None]
                if not live:
                    break
                c = min(live)
                for m, n in zip(ms, nxt, strict=True):
                    if n == c:
                        self._current = m
                        m.step(c, max_cycles)
            for m in ms:
                self._current = m
                m.c2c_settle()
            out = []
            for m in ms:
                self._current = m
                out.append(m.finish())
        return SystemResult(out)

    @contextmanager
    def _named(self):
        """Errors name the chip they happened on."""
        self._current = None
        try:
            yield
        except MachineError as exc:
            m = self._current
            if m is not None and not str(exc).startswith(m.chip):
                raise MachineError(f"{m.chip}: {exc}") from None
            raise
