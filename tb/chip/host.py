"""Host driver: the chip's command stream, driven on falling edges, answers sampled
after rising edges (read-only phase).

The driver keeps its own clock count of a run: the simulation time of the rising
edge that accepted START and of the one at which ``done`` rose, divided by the
clock period (`tb.env.PERIOD_NS`): the number of clock edges from one to the
other, measured without the chip's help.  While the program runs no Python runs:
the driver waits for the ``done`` edge (or a timeout)."""

from __future__ import annotations

import functools

import numpy as np
from cocotb.triggers import FallingEdge, First, ReadOnly, RisingEdge, Timer
from cocotb.utils import get_sim_time

from arch.config import TspConfig
from arch.program import Program
from hdl.host import HostOp, Reg, host_command_layout, status_layout
from tb.env import PERIOD_NS


class HostTimeout(AssertionError):
    pass


@functools.cache
def _command_offsets(cfg: TspConfig) -> tuple[int, int, int, int]:
    lay = host_command_layout(cfg)
    return tuple(lay[name].offset for name in ("op", "slice", "addr", "data"))


def encode_command(cfg: TspConfig, op, slice_pos: int = 0, addr: int = 0, data: int = 0) -> int:
    """The ``cmd.payload`` bits of one host command (`host_command_layout`)."""
    o_op, o_slice, o_addr, o_data = _command_offsets(cfg)
    return ((int(op) << o_op) | (int(slice_pos) << o_slice) | (int(addr) << o_addr)
            | (int(data) << o_data))


def load_commands(cfg: TspConfig, prog: Program | None = None,
                  image: dict[str, dict[int, np.ndarray]] | None = None) -> list[int]:
    """Payloads of the write commands that load `prog` (every queue's words) and `image`
    (slice -> {address: vector}) through the host interface."""
    pos = {s.name: s.index for s in cfg.slices}
    out = []
    if prog is not None:
        for s in cfg.slices:
            for a, w in enumerate(prog.words(s.name)):
                out.append(encode_command(cfg, HostOp.IMEM_WRITE, s.index, a, w))
    for sl, vecs in (image or {}).items():
        for a, v in sorted(vecs.items()):
            data = int.from_bytes(np.asarray(v, np.uint8).tobytes(), "little")
            out.append(encode_command(cfg, HostOp.SRAM_WRITE, pos[sl], a, data))
    return out


class _Port:
    """The host-interface signals of one chip: ``dut.<prefix>cmd__valid`` and so on (a
    system top names chip ``i``'s ``c<i>_``, `hdl.system`)."""

    def __init__(self, dut, prefix: str):
        self.clk = dut.clk
        for name in ("cmd__valid", "cmd__payload", "cmd__ready", "rsp_valid", "rsp_data",
                     "done"):
            setattr(self, name, getattr(dut, prefix + name))


class HostDriver:
    def __init__(self, dut, cfg: TspConfig, prefix: str = ""):
        self.dut, self.cfg = _Port(dut, prefix), cfg
        self.pos = {s.name: s.index for s in cfg.slices}
        self.cycles_used = 0
        self.t_start: float | None = None  # sim time (ns) of the edge that accepted START
        self.t_done: float | None = None  # sim time (ns) of the edge at which done rose
        self.t_accept: float | None = None  # sim time (ns) of the last command's accept edge
        self.dut.cmd__valid.value = 0
        self.dut.cmd__payload.value = 0

    async def command(self, op, slice_name: str | None = None, addr: int = 0, data: int = 0):
        """Send one command; return the response data (for reads) or None."""
        await FallingEdge(self.dut.clk)
        if not int(self.dut.cmd__ready.value):  # ready depends only on registered state
            raise AssertionError(f"host command {HostOp(op).name} refused (machine running)")
        p = 0 if slice_name is None else self.pos[slice_name]
        self.dut.cmd__payload.value = encode_command(self.cfg, op, p, addr, data)
        self.dut.cmd__valid.value = 1
        await RisingEdge(self.dut.clk)
        self.t_accept = get_sim_time("ns")
        if op == HostOp.START:
            self.t_start = get_sim_time("ns")
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

    async def burst(self, payloads: list[int]) -> None:
        """Send write commands (IMEM_WRITE, SRAM_WRITE; `encode_command`) back to back,
        one per clock cycle: the host interface accepts one per cycle while the machine is
        not running, and a write has no response, so Python wakes once per command (at the
        falling edge where it presents the next one) instead of four times."""
        dut = self.dut
        for p in payloads:
            await FallingEdge(dut.clk)
            if not int(dut.cmd__ready.value):
                raise AssertionError("host write refused (machine running)")
            dut.cmd__payload.value = p
            dut.cmd__valid.value = 1
        if payloads:
            await FallingEdge(dut.clk)  # the last one was accepted at the edge before
            dut.cmd__valid.value = 0
            self.cycles_used += len(payloads)

    # -- convenience ------------------------------------------------------------------
    async def load(self, prog: Program | None = None,
                   image: dict[str, dict[int, np.ndarray]] | None = None) -> None:
        """Load a program and an SRAM image (slice -> {address: vector}) in one burst."""
        await self.burst(load_commands(self.cfg, prog, image))

    async def load_program(self, prog: Program) -> None:
        await self.load(prog)

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

    @staticmethod
    async def start_together(hosts: list[HostDriver]) -> None:
        """START every chip at the same clock edge (one static schedule spans them): each
        host presents START in the same cycle."""
        first = hosts[0].dut
        await FallingEdge(first.clk)
        for h in hosts:
            if not int(h.dut.cmd__ready.value):
                raise AssertionError("host START refused (machine running)")
            h.dut.cmd__payload.value = encode_command(h.cfg, HostOp.START)
            h.dut.cmd__valid.value = 1
        await RisingEdge(first.clk)
        t = get_sim_time("ns")
        for h in hosts:
            h.t_start = h.t_accept = t
            h.cycles_used += 1
        await FallingEdge(first.clk)
        for h in hosts:
            h.dut.cmd__valid.value = 0

    async def wait_done(self, max_cycles: int) -> int:
        """Wait for ``done`` (it rises in the first cycle after the run, right after a
        clock edge); return the clock edges from the START edge to that one: the run's
        length in cycles as the testbench's clock counts it."""
        if self.t_start is None:
            raise AssertionError("wait_done before start")
        if not int(self.dut.done.value):
            left = self.t_start + (max_cycles + 1) * PERIOD_NS - get_sim_time("ns")
            fired = await First(RisingEdge(self.dut.done), Timer(max(left, PERIOD_NS), "ns"))
            if not isinstance(fired, RisingEdge):
                raise HostTimeout(f"machine not done after {max_cycles} cycles")
        await ReadOnly()
        self.t_done = get_sim_time("ns")
        edges = (self.t_done - self.t_start) / PERIOD_NS
        if edges != int(edges):
            raise AssertionError(f"done rose between clock edges ({edges} periods after START)")
        return int(edges)

    def accepted_in_first_cycle_after_done(self) -> bool:
        """The last command was accepted at the first clock edge after done rose: it was
        presented in the first cycle of done."""
        return (self.t_done is not None and self.t_accept is not None
                and self.t_accept - self.t_done == PERIOD_NS)

    async def status(self) -> dict:
        st = await self.read_reg(Reg.STATUS)
        lay = status_layout()

        def f(name):
            return (st >> lay[name].offset) & ((1 << lay[name].width) - 1)

        return {"running": bool(f("running")), "done": bool(f("done")),
                "error": bool(f("error")), "error_code": f("error_code"),
                "error_slice": f("error_slice"),
                "error_cycle": await self.read_reg(Reg.ERROR_CYCLE)}

    async def counters(self) -> dict:
        out = {"cycles": await self.read_reg(Reg.CYCLES), "busy": {}, "issued": {}, "mvm": {}}
        for s in self.cfg.slices:
            out["busy"][s.name] = await self.read_reg(Reg.BUSY + s.index)
            out["issued"][s.name] = await self.read_reg(Reg.ISSUED + s.index)
            if s.kind == "MXM":
                out["mvm"][s.name] = await self.read_reg(Reg.MVM + s.index)
        return out
