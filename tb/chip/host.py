"""Host driver: the chip's command stream, driven on falling edges, answers sampled
after rising edges (read-only phase)."""

from __future__ import annotations

import numpy as np
from cocotb.triggers import FallingEdge, ReadOnly, RisingEdge

from arch.config import TspConfig
from arch.program import Program
from hdl.host import HostOp, Reg, host_command_layout


class HostTimeout(AssertionError):
    pass


class HostDriver:
    def __init__(self, dut, cfg: TspConfig):
        self.dut, self.cfg = dut, cfg
        lay = host_command_layout(cfg)
        self._off = {name: lay[name].offset for name in ("op", "slice", "addr", "data")}
        self.pos = {s.name: s.index for s in cfg.slices}
        self.cycles_used = 0
        dut.cmd__valid.value = 0
        dut.cmd__payload.value = 0

    def _payload(self, op, slice_pos=0, addr=0, data=0) -> int:
        o = self._off
        return ((int(op) << o["op"]) | (slice_pos << o["slice"]) | (addr << o["addr"])
                | (int(data) << o["data"]))

    async def command(self, op, slice_name: str | None = None, addr: int = 0, data: int = 0):
        """Send one command; return the response data (for reads) or None."""
        await FallingEdge(self.dut.clk)
        if not int(self.dut.cmd__ready.value):  # ready depends only on registered state
            raise AssertionError(f"host command {HostOp(op).name} refused (machine running)")
        p = 0 if slice_name is None else self.pos[slice_name]
        self.dut.cmd__payload.value = self._payload(op, p, addr, data)
        self.dut.cmd__valid.value = 1
        await RisingEdge(self.dut.clk)
        await ReadOnly()
        self.cycles_used += 1
        rsp = None
        if op in (HostOp.SRAM_READ, HostOp.REG_READ):
            await RisingEdge(self.dut.clk)
            await ReadOnly()
            assert int(self.dut.rsp_valid.value), "no response to a read command"
            rsp = self.dut.rsp_data.value.to_unsigned()
            self.cycles_used += 1
        await FallingEdge(self.dut.clk)
        self.dut.cmd__valid.value = 0
        return rsp

    # -- convenience ------------------------------------------------------------------
    async def load_program(self, prog: Program) -> None:
        for s in self.cfg.slices:
            for a, w in enumerate(prog.words(s.name)):
                await self.command(HostOp.IMEM_WRITE, s.name, a, w)

    async def write_sram(self, slice_name: str, addr: int, vec: np.ndarray) -> None:
        data = int.from_bytes(np.asarray(vec, np.uint8).tobytes(), "little")
        await self.command(HostOp.SRAM_WRITE, slice_name, addr, data)

    async def read_sram(self, slice_name: str, addr: int) -> np.ndarray:
        v = await self.command(HostOp.SRAM_READ, slice_name, addr)
        return np.frombuffer(v.to_bytes(self.cfg.vector_length, "little"), np.uint8).copy()

    async def read_reg(self, reg: int) -> int:
        return await self.command(HostOp.REG_READ, None, int(reg)) & ((1 << 64) - 1)

    async def start(self) -> None:
        await self.command(HostOp.START)

    async def wait_done(self, max_cycles: int) -> int:
        """Wait for `done`; return the cycles waited after START was accepted."""
        for n in range(max_cycles):
            await RisingEdge(self.dut.clk)
            await ReadOnly()
            if int(self.dut.done.value):
                return n
        raise HostTimeout(f"machine not done after {max_cycles} cycles")

    async def status(self) -> dict:
        st = await self.read_reg(Reg.STATUS)
        return {"running": bool(st & 1), "done": bool(st & 2), "error": bool(st & 4),
                "error_code": (st >> 4) & 0xF, "error_slice": (st >> 8) & 0xFF,
                "error_cycle": await self.read_reg(Reg.ERROR_CYCLE)}

    async def counters(self) -> dict:
        out = {"cycles": await self.read_reg(Reg.CYCLES), "busy": {}, "issued": {}, "mvm": {}}
        for s in self.cfg.slices:
            out["busy"][s.name] = await self.read_reg(Reg.BUSY + s.index)
            out["issued"][s.name] = await self.read_reg(Reg.ISSUED + s.index)
            if s.kind == "MXM":
                out["mvm"][s.name] = await self.read_reg(Reg.MVM + s.index)
        return out
