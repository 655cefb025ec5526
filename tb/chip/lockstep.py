"""Lock-step monitor: every cycle, every valid stream register of the machine model
against the RTL's, superlane by superlane.

The RTL registers (``taps__<p>__e_in`` of ``fabric.superlane<k>``: the eastward stream
register bank at position p) are copied at each clock edge by C++ compiled into the
simulator (`tapcap`): no Python and no VPI read per cycle.  Cycle c
of the program is the clock period after edge ``e0 + c`` (edge e0 accepted
START); superlane k holds cycle c's values after edge ``e0 + c + k``.
"""

from __future__ import annotations

import numpy as np
from cocotb.triggers import RisingEdge, Timer

from arch.config import TspConfig
from hdl.slice import LANES

from ..env import PERIOD_NS
from .tapcap import Capture, library


class LockstepMonitor:
    def __init__(self, dut, cfg: TspConfig):
        self.dut, self.cfg = dut, cfg
        self.undefined_lanes = 0
        #: the RTL's registers: cycle x (E, W) x position x superlane x stream x lane of
        #: the superlane (one register bank a contiguous block, as captured; `frame`
        #: shows a cycle by stream and lane), and which (direction, position) has one
        self.vals = np.zeros((0, 2, cfg.n_positions, cfg.superlanes,
                              cfg.streams_per_direction, LANES), np.uint8)
        self._history: dict = {}  # (models, first cycle, end) -> `_expected`
        P, S = cfg.n_positions, cfg.superlanes
        # the banks with a register: eastward ones east of position 0, westward ones west
        # of the last position (`hdl.stream`), in every superlane
        self._taps = np.array([(k, d, p) for k in range(S) for d in (0, 1) for p in range(P)
                               if (p > 0 if d == 0 else p < P - 1)], np.int64)
        self.known = np.zeros((2, P), bool)
        self.known[self._taps[:, 1], self._taps[:, 2]] = True
        library()  # a simulator without the capture stops here, named

    async def run(self, cycles: int, model=None) -> None:
        """Start right after `HostDriver.start` returns (mid cycle 0, edge e0 just
        taken): after edge e0 + n superlane k shows cycle n - k.  The registers are
        copied at each edge by the C++ capture (`tapcap`), not by Python; given the
        `model` (`compare`'s reference) only the register banks it holds a value in, in
        the cycles it does (the others are never compared)."""
        cfg = self.cfg
        P, NS, S, Lw = cfg.n_positions, cfg.streams_per_direction, cfg.superlanes, LANES
        rows = cycles + S + 1  # row j: the registers after edge j from now (j = 0: this one)
        kdp = self._taps
        if model is not None:
            need = self._valid(model, cycles).any(-1)[:, kdp[:, 1], kdp[:, 2]]  # cycle x bank
        else:
            need = np.ones((cycles, len(kdp)), bool)
        need[:1] = False  # in cycle 0 no stream register holds a value yet
        c, i = np.nonzero(need)
        k, d, p = kdp[i].T
        cap = Capture(rows, S, P, NS * Lw, np.stack([c + k, k, d, p], axis=1))
        await Timer(rows * PERIOD_NS, unit="ns")
        while cap.done < rows:
            await RisingEdge(self.dut.clk)
        vals = np.zeros((max(cycles, 1), 2, P, S, NS, Lw), np.uint8)
        vals[c, d, p, k] = cap.data().reshape(len(c), NS, Lw)
        self.vals = vals

    def frame(self, cycle: int) -> np.ndarray:
        """The RTL's registers in `cycle`: (E, W) x position x stream x lane (a copy)."""
        v = self.vals[cycle]
        return v.transpose(0, 1, 3, 2, 4).reshape(*v.shape[:2], v.shape[3], -1)

    def _valid(self, model, cycles: int) -> np.ndarray:
        """Which stream registers `model` holds a value in, cycles 0 .. cycles - 1 (kept
        for further runs of the same program)."""
        key = ("valid", id(model), cycles)
        if key not in self._history:
            self._history[key] = (model, model.stream_history(0, cycles, values=False)[1])
        return self._history[key][1]

    def _expected(self, model, dirty, c0: int, c1: int):
        """What cycles ``c0 .. c1 - 1`` must show, kept for further runs of the same
        program (a model never changes after its run): the valid registers the RTL has
        (cycle offset, direction, position, stream index arrays), their values and which
        of their bytes are defined; the valid ones it lacks; per cycle, how many dirty
        models disagree on validity; the count of undefined lane values."""
        key = (id(model), tuple(map(id, dirty)), c0, c1)
        if key not in self._history:
            mvals, mvalid = model.stream_history(c0, c1)
            defined = np.ones(mvals.shape, bool)
            unsure = np.zeros(c1 - c0, int)  # dirty models disagreeing on validity
            undefined = 0
            for other in dirty:
                dvals, dvalid = other.stream_history(c0, c1)
                unsure += (dvalid != mvalid).any(axis=(1, 2, 3))
                defined &= mvals == dvals
                undefined += int((~defined & mvalid[..., None]).sum())
            here = self.known[..., None]  # (2, P, 1): per stream
            sel = np.nonzero(mvalid & here)
            missing = np.nonzero(mvalid & ~here)
            self._history[key] = ((model, *dirty), sel, mvals[sel], defined[sel], missing,
                                  unsure, undefined)
        return self._history[key][1:]

    def compare(self, model, cycles: int, limit: int = 10, dirty=None,
                chunk: int = 1024) -> list[str]:
        """Differences against a `golden.machine.Machine` run with keep_history=True
        (its `stream_history`, `chunk` cycles at a time).  With `dirty` (the same program
        run from random power-up states, `lockstep_models`), bytes whose value differs
        between the runs depend on undefined state and are not compared;
        `self.undefined_lanes` counts them.  Only the registers the model holds a value
        in are compared (gathered from the frames), in order of cycle, direction,
        position and stream."""
        names = [s.name for s in self.cfg.slices]
        errors: list[str] = []
        self.undefined_lanes = 0
        for c0 in range(1, cycles, chunk):  # in cycle 0 no stream register holds a value
            c1 = min(cycles, c0 + chunk)
            sel, want, check, missing, unsure, undefined = self._expected(
                model, tuple(dirty or ()), c0, c1)
            self.undefined_lanes += undefined
            got = self.vals[c0 + sel[0], sel[1], sel[2], :, sel[3]].reshape(len(sel[0]), -1)
            bad = np.nonzero(((got != want) & check).any(-1))[0]
            events = sorted(
                [(int(sel[0][j]), 1, int(sel[1][j]), int(sel[2][j]), int(sel[3][j]), int(j))
                 for j in bad]
                + [(int(i), 1, int(d), int(p), int(st), -1)
                   for i, d, p, st in zip(*missing, strict=True)]
                + [(int(i), 0, 0, 0, 0, -1) for i in np.nonzero(unsure)[0]])
            for i, kind, d, p, st, j in events:
                c = c0 + i
                if kind == 0:
                    errors += [f"cycle {c}: which stream registers hold a value depends on "
                               "undefined state (the model from random state differs)"
                               ] * int(unsure[i])
                elif j < 0:
                    errors.append(f"cycle {c}: no RTL register for {'EW'[d]}[{p}]")
                else:
                    lane = int(np.argmax((got[j] != want[j]) & check[j]))
                    errors.append(
                        f"cycle {c}: stream {'EW'[d]}{st} at position {p} ({names[p]}) "
                        f"lane {lane}: RTL {got[j, lane]:#04x}, model {want[j, lane]:#04x}")
                if len(errors) >= limit:
                    return errors[:limit]
        return errors
