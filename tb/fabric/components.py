"""Driver, monitor and scoreboard of the fabric testbench."""

from __future__ import annotations

from cocotb.triggers import ReadOnly, RisingEdge

from arch.config import TspConfig

from .model import Expected, ProbeOp


class FabricDriver:
    """Presents each `ProbeOp` on the ``ctl_*[pos]`` ports during its cycle.

    Cycle ``t`` is the clock period after edge ``t`` (edge 0 is the first edge
    after reset); inputs set then are sampled at edge ``t + 1``.
    """

    def __init__(self, dut, cfg: TspConfig):
        self.dut, self.cfg = dut, cfg
        P = cfg.n_positions
        self._valid = [getattr(dut, f"ctl_valid__{p}") for p in range(P)]
        self._write = [getattr(dut, f"ctl_write__{p}") for p in range(P)]
        self._west = [getattr(dut, f"ctl_west__{p}") for p in range(P)]
        self._stream = [getattr(dut, f"ctl_stream__{p}") for p in range(P)]
        self._data = [getattr(dut, f"ctl_data__{p}") for p in range(P)]

    def idle(self) -> None:
        for p in range(self.cfg.n_positions):
            self._valid[p].value = 0
            self._write[p].value = 0
            self._west[p].value = 0
            self._stream[p].value = 0
            self._data[p].value = 0

    async def run(self, ops: list[ProbeOp], cycles: int) -> None:
        by_cycle: dict[int, list[ProbeOp]] = {}
        for op in ops:
            by_cycle.setdefault(op.cycle, []).append(op)
        for t in range(cycles):
            active = set()
            for op in by_cycle.get(t, ()):
                p = op.pos
                active.add(p)
                self._valid[p].value = 1
                self._write[p].value = int(op.write)
                self._west[p].value = int(op.west)
                self._stream[p].value = op.stream
                if op.write:
                    self._data[p].value = int.from_bytes(op.data.tobytes(), "little")
            for p in range(self.cfg.n_positions):
                if p not in active:
                    self._valid[p].value = 0
            await RisingEdge(self.dut.clk)
        self.idle()


class FabricMonitor:
    """Records every probe output (rd_valid high) as (edge, pos, superlane, bytes),
    sampled in the read-only phase after each rising edge."""

    def __init__(self, dut, cfg: TspConfig):
        self.dut, self.cfg = dut, cfg
        self.seen: list[tuple[int, int, int, bytes]] = []
        P, S = cfg.n_positions, cfg.superlanes
        self._valid = [[getattr(dut, f"rd_valid__{p}__{k}") for k in range(S)] for p in range(P)]
        self._data = [[getattr(dut, f"rd_data__{p}__{k}") for k in range(S)] for p in range(P)]

    async def run(self, cycles: int) -> None:
        nbytes = self.cfg.lanes_per_superlane
        for edge in range(1, cycles + 1):
            await RisingEdge(self.dut.clk)
            await ReadOnly()  # registers settle after the edge (NBA region)
            for p, row in enumerate(self._valid):
                for k, v in enumerate(row):
                    if int(v.value):
                        raw = self._data[p][k].value.to_unsigned()
                        self.seen.append((edge, p, k, raw.to_bytes(nbytes, "little")))


class FabricScoreboard:
    """Compares observed probe outputs with the model's, cycle, position and superlane."""

    def __init__(self, cfg: TspConfig):
        self.cfg = cfg
        self.compared = 0
        self.unknown = 0
        self.errors: list[str] = []

    def check(self, expected: list[Expected], seen: list[tuple[int, int, int, bytes]]) -> None:
        names = [s.name for s in self.cfg.slices]
        exp = {(e.edge, e.pos, e.superlane): e for e in expected}
        got = {(edge, p, k): d for edge, p, k, d in seen}
        for key in sorted(set(exp) | set(got)):
            edge, p, k = key
            where = f"{names[p]} superlane {k} after edge {edge}"
            if key not in got:
                self.errors.append(f"missing read at {where} (op {exp[key].op})")
            elif key not in exp:
                self.errors.append(f"unexpected read at {where}: {got[key].hex()}")
            elif exp[key].data is None:
                self.unknown += 1
            else:
                self.compared += 1
                if exp[key].data != got[key]:
                    op = exp[key].op
                    self.errors.append(
                        f"{where}: stream {'W' if op.west else 'E'}{op.stream} read "
                        f"{got[key].hex()}, expected {exp[key].data.hex()} (read issued at "
                        f"cycle {op.cycle})"
                    )
