"""Lock-step monitor: every cycle, every valid stream register of the machine model
against the RTL's, superlane by superlane.

The RTL registers are read through VPI inside ``fabric.superlane<k>``
(``taps__<p>__e_in`` is eastward stream register bank at position p), by a C++
value-change callback on the clock (`tapcap`): no Python runs per cycle.  Cycle c
of the program is the clock period after edge ``e0 + c`` (edge e0 accepted
START); superlane k holds cycle c's values after edge ``e0 + c + k``.
"""

from __future__ import annotations

import numpy as np
from cocotb.triggers import RisingEdge, Timer

from arch.config import TspConfig
from hdl.slice import LANES

from ..env import PERIOD_NS
from .tapcap import Capture


class LockstepMonitor:
    def __init__(self, dut, cfg: TspConfig):
        self.dut, self.cfg = dut, cfg
        self.undefined_lanes = 0
        #: the RTL's registers: cycle x (E, W) x position x stream x lane, and which
        #: (direction, position) has a register
        self.vals = np.zeros((0, 2, cfg.n_positions, cfg.streams_per_direction,
                              cfg.vector_length), np.uint8)
        self.known = np.zeros((2, cfg.n_positions), bool)
        self._history: dict = {}  # (model, first cycle, end) -> its stream_history
        fab = dut.fabric
        P, S = cfg.n_positions, cfg.superlanes
        self._taps = []  # ((superlane, direction, position), handle)
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
            self._taps += [((k, d, p), h) for d, regs in ((0, e), (1, w))
                           for p, h in enumerate(regs) if h is not None]

    async def run(self, cycles: int) -> None:
        """Start right after `HostDriver.start` returns (mid cycle 0, edge e0 just
        taken): after edge e0 + n superlane k shows cycle n - k.  The registers are
        copied at each edge by the C++ capture (`tapcap`), not by Python."""
        cfg = self.cfg
        P, NS, S, Lw = cfg.n_positions, cfg.streams_per_direction, cfg.superlanes, LANES
        rows = cycles + S + 1  # row j: the registers after edge j from now (j = 0: this one)
        cap = Capture(self.dut.clk._path, [h._path for _, h in self._taps],
                      [len(h) for _, h in self._taps], rows)
        await Timer(rows * PERIOD_NS, unit="ns")
        while cap.done < rows:
            await RisingEdge(self.dut.clk)
        vals = np.zeros((max(cycles, 1), 2, P, NS, cfg.vector_length), np.uint8)
        known = np.zeros((2, P), bool)
        c = np.arange(1, cycles)  # in cycle 0 no stream register holds a value yet
        for i, ((k, d, p), _) in enumerate(self._taps):
            known[d, p] = True
            b = cap.register_bytes(i)[c + k]  # superlane k shows cycle c after edge c + k
            vals[1:cycles, d, p, :, k * Lw:(k + 1) * Lw] = b.reshape(len(c), NS, Lw)
        self.vals, self.known = vals, known

    def _model_history(self, model, c0: int, c1: int):
        """`model.stream_history`, kept for the next run of the same program (a model
        never changes after its run)."""
        key = (id(model), c0, c1)
        if key not in self._history:
            self._history[key] = (model, *model.stream_history(c0, c1))
        return self._history[key][1:]

    def compare(self, model, cycles: int, limit: int = 10, dirty=None,
                chunk: int = 1024) -> list[str]:
        """Differences against a `golden.machine.Machine` run with keep_history=True
        (its `stream_history`, `chunk` cycles at a time).  With `dirty` (the same program
        run from random power-up states, `lockstep_models`), bytes whose value differs
        between the runs depend on undefined state and are not compared;
        `self.undefined_lanes` counts them."""
        names = [s.name for s in self.cfg.slices]
        errors: list[str] = []
        self.undefined_lanes = 0
        known = self.known[..., None]  # (2, P, 1): per stream
        for c0 in range(1, cycles, chunk):  # in cycle 0 no stream register holds a value
            c1 = min(cycles, c0 + chunk)
            mvals, mvalid = self._model_history(model, c0, c1)
            rvals = self.vals[c0:c1]
            defined = np.ones(mvals.shape, bool)
            unsure = np.zeros(c1 - c0, int)  # dirty models disagreeing on validity
            for other in dirty or ():
                dvals, dvalid = self._model_history(other, c0, c1)
                unsure += (dvalid != mvalid).any(axis=(1, 2, 3))
                defined &= mvals == dvals
                self.undefined_lanes += int((~defined & mvalid[..., None]).sum())
            diff = (mvals != rvals) & defined & known[..., None]
            wrong = mvalid & (~known | diff.any(-1))
            for i in np.nonzero(unsure.astype(bool) | wrong.any(axis=(1, 2, 3)))[0]:
                c = c0 + int(i)
                errors += [f"cycle {c}: which stream registers hold a value depends on "
                           "undefined state (the model from random state differs)"] * unsure[i]
                for d, p, st in zip(*np.nonzero(wrong[i]), strict=True):
                    if not known[d, p, 0]:
                        errors.append(f"cycle {c}: no RTL register for {'EW'[d]}[{p}]")
                    else:
                        lane = int(np.argmax(diff[i, d, p, st]))
                        errors.append(
                            f"cycle {c}: stream {'EW'[d]}{st} at position {p} ({names[p]}) "
                            f"lane {lane}: RTL {rvals[i, d, p, st, lane]:#04x}, model "
                            f"{mvals[i, d, p, st, lane]:#04x}")
                    if len(errors) >= limit:
                        return errors[:limit]
                if len(errors) >= limit:
                    return errors[:limit]
        return errors
