"""Lock-step monitor: every cycle, every valid stream register of the machine model
against the RTL's, superlane by superlane.

The RTL registers are read through VPI inside ``fabric.superlane<k>``
(``taps__<p>__e_in`` is eastward stream register bank at position p).  Cycle c
of the program is the clock period after edge ``e0 + c`` (edge e0 accepted
START); superlane k holds cycle c's values after edge ``e0 + c + k``.
"""

from __future__ import annotations

import numpy as np
from cocotb.triggers import ReadOnly, RisingEdge

from arch.config import TspConfig


class LockstepMonitor:
    def __init__(self, dut, cfg: TspConfig):
        self.dut, self.cfg = dut, cfg
        self.undefined_lanes = 0
        self.frames: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # cycle -> (E, W) per sl
        fab = dut.fabric
        P, S = cfg.n_positions, cfg.superlanes
        self._regs = []
        for k in range(S):
            sl = getattr(fab, f"superlane{k}")
            e = [getattr(sl, f"taps__{p}__e_in", None) if p > 0 else None for p in range(P)]
            w = [getattr(sl, f"taps__{p}__w_in", None) if p < P - 1 else None for p in range(P)]
            missing = sum(h is None for h in e[1:] + w[:-1])
            if missing:  # never compare nothing and pass
                raise AssertionError(
                    f"lock-step: {missing} stream registers of superlane {k} are not visible "
                    "through VPI: this simulator was built without them (sim.build.build_sim "
                    "lockstep=True builds the lock-step variant)")
            self._regs.append((e, w))

    async def run(self, cycles: int) -> None:
        """Start right after `HostDriver.start` returns (mid cycle 0): the n-th rising
        edge from then is edge e0 + n + 1, where superlane k shows cycle n + 1 - k."""
        cfg = self.cfg
        P, NS, S, Lw = cfg.n_positions, cfg.streams_per_direction, cfg.superlanes, 16
        raw = {}
        for n in range(cycles + S):
            await RisingEdge(self.dut.clk)
            await ReadOnly()
            for k in range(S):
                c = n + 1 - k
                if 0 <= c < cycles:
                    e, w = self._regs[k]
                    raw[(c, k)] = ([None if h is None else h.value.to_unsigned() for h in e],
                                   [None if h is None else h.value.to_unsigned() for h in w])
        for c in range(1, cycles):  # in cycle 0 no stream register holds a value yet
            vals = np.zeros((2, P, NS, cfg.vector_length), np.uint8)
            known = np.ones((2, P), bool)
            for k in range(S):
                e, w = raw[(c, k)]
                for d, regs in ((0, e), (1, w)):
                    for p, v in enumerate(regs):
                        if v is None:
                            known[d, p] = False
                            continue
                        b = np.frombuffer(v.to_bytes(NS * Lw, "little"), np.uint8)
                        vals[d, p, :, k * Lw:(k + 1) * Lw] = b.reshape(NS, Lw)
            self.frames[c] = (vals, known)

    def compare(self, model, cycles: int, limit: int = 10, dirty=None) -> list[str]:
        """Differences against a `golden.machine.Machine` run with keep_history=True.
        With `dirty` (the same program run from random power-up states,
        `lockstep_models`), bytes whose value differs between the runs depend on
        undefined state and are not compared; `self.undefined_lanes` counts them."""
        names = [s.name for s in self.cfg.slices]
        errors: list[str] = []
        self.undefined_lanes = 0
        for c in range(1, cycles):
            mvals, mvalid = model.stream_snapshot(c)
            rvals, known = self.frames[c]
            defined = np.ones(mvals.shape, bool)
            for other in dirty or ():
                dvals, dvalid = other.stream_snapshot(c)
                if not np.array_equal(dvalid, mvalid):
                    errors.append(f"cycle {c}: which stream registers hold a value depends "
                                  "on undefined state (the model from random state differs)")
                defined &= mvals == dvals
                self.undefined_lanes += int((~defined & mvalid[..., None]).sum())
            for d in range(2):
                for p in range(self.cfg.n_positions):
                    for s in np.nonzero(mvalid[d, p])[0]:
                        if not known[d, p]:
                            errors.append(f"cycle {c}: no RTL register for {'EW'[d]}[{p}]")
                            continue
                        diff = (mvals[d, p, s] != rvals[d, p, s]) & defined[d, p, s]
                        if diff.any():
                            lane = int(np.argmax(diff))
                            errors.append(
                                f"cycle {c}: stream {'EW'[d]}{s} at position {p} ({names[p]}) "
                                f"lane {lane}: RTL {rvals[d, p, s, lane]:#04x}, model "
                                f"{mvals[d, p, s, lane]:#04x}")
                        if len(errors) >= limit:
                            return errors
        return errors
