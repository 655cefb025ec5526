"""The chip top: every slice position of a config on the stream fabric.

West to east, mirrored (`TspConfig.slices`)::

    MXM | SXM | MEM ... MEM | VXM | MEM ... MEM | SXM | MXM

Each position has an `InstructionControlUnit` (its queue) and a slice column
(`SLICE_CLASSES`) plugged into the `StreamFabric` through one tile port per
superlane.  The host interface (`hdl/host.py`) loads programs and SRAM, starts
the machine and reads status and counters.

Run control, from the datapath: the machine runs from the cycle after START
(cycle 0) while any queue has not halted or any slice reports work in flight
(its ``busy``: pipeline valid bits up to superlane S-1).  In the first cycle in
which neither holds, ``running`` falls and ``done`` rises, combinationally, so
the host may read SRAM or start again in that very cycle.  ``CYCLES`` counts
the clock cycles of the run (cycle 0 up to the last busy cycle), each slice's
``BUSY`` counter the cycles in which that slice issued or was busy.  Both
depend on registers only, so ``ready`` does too.
"""

from __future__ import annotations

from amaranth import Cat, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from arch.config import TspConfig

from .c2c import C2cSlice, LinkLaneSignature
from .host import (
    REG_ADDR_BITS,
    STATUS_DONE,
    STATUS_ERROR,
    STATUS_RUNNING,
    HostOp,
    Reg,
    host_command_layout,
    status_value,
)
from .icu import COUNTER_BITS, InstructionControlUnit
from .mem import MemSlice
from .mxm import MxmSlice
from .slice import ERROR_CODE_BITS, check_slice_config
from .stream import StreamFabric
from .sxm import SxmSlice
from .vxm import VxmSlice

#: the slice column of each kind
SLICE_CLASSES: dict[str, type] = {"MEM": MemSlice, "VXM": VxmSlice, "MXM": MxmSlice,
                                  "SXM": SxmSlice, "C2C": C2cSlice}


def chip_members(cfg: TspConfig) -> dict:
    """The chip's ports (`Chip`'s signature members; `hdl.system` repeats them per chip)."""
    members = {
        "cmd": In(stream.Signature(host_command_layout(cfg))),
        "rsp_valid": Out(1),
        "rsp_data": Out(cfg.vector_length * 8),
        "running": Out(1),
        "done": Out(1),
        "error": Out(1),
    }
    if cfg.c2c_links:
        for end in ("c2c_w", "c2c_e"):
            members[end] = Out(LinkLaneSignature(cfg)).array(cfg.c2c_links, cfg.superlanes)
    return members


class Chip(wiring.Component):
    """The whole machine with its host interface.

    Ports: ``cmd`` (valid/ready stream of `host_command_layout`), ``rsp_valid``
    / ``rsp_data`` (answer to a read, the cycle after it), ``running``,
    ``done`` (the last run finished), ``error`` (it stopped on a fault); with C2C
    links, ``c2c_w`` / ``c2c_e`` (``[link][superlane]``: `LinkLaneSignature`), which a
    system top (`hdl.system`) wires to other chips.
    """

    def __init__(self, cfg: TspConfig):
        check_slice_config("Chip", cfg)
        if cfg.n_positions > 255:
            raise ValueError(f"Chip supports up to 255 slice positions, config has "
                             f"{cfg.n_positions}")
        missing = sorted({p.kind for p in cfg.slices} - set(SLICE_CLASSES))
        if missing:
            raise ValueError(f"Chip: no RTL for slice kind(s) {', '.join(missing)} "
                             f"(known: {', '.join(SLICE_CLASSES)})")
        self.cfg = cfg
        members = chip_members(cfg)
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        P = cfg.n_positions
        m.submodules.fabric = fabric = StreamFabric(cfg)
        cmd = self.cmd.payload
        accept = self.cmd.valid & self.cmd.ready
        start = Signal()
        m.d.comb += start.eq(accept & (cmd.op == HostOp.START))

        running = Signal()
        done = Signal()
        err = Signal()
        err_code = Signal(ERROR_CODE_BITS)
        err_slice = Signal(8)
        err_cycle = Signal(COUNTER_BITS)
        cycle = Signal(COUNTER_BITS)

        icus, slices = [], []
        notify = Signal()
        notify_bits, busy_bits, halted_bits = [], [], []
        for p, pos in enumerate(cfg.slices):
            icu = m.submodules[f"icu_{pos.name}"] = InstructionControlUnit(cfg, pos)
            sl = m.submodules[f"slice_{pos.name}"] = SLICE_CLASSES[pos.kind](cfg)
            icus.append(icu)
            slices.append(sl)
            m.d.comb += [
                sl.issue.eq(icu.issue),
                icu.start.eq(start),
                icu.stop.eq(err),
                icu.notify_in.eq(notify),
                icu.imem_we.eq(accept & (cmd.op == HostOp.IMEM_WRITE) & (cmd.slice == p)),
                icu.imem_addr.eq(cmd.addr),
                icu.imem_data.eq(cmd.data[:64]),
            ]
            for k in range(cfg.superlanes):
                wiring.connect(m, fabric.taps[p][k], sl.tiles[k])
            if pos.kind == "C2C":
                m.d.comb += sl.start.eq(start)
                end = self.c2c_w if pos.hemisphere == "W" else self.c2c_e
                for j in range(cfg.c2c_links):
                    for k in range(cfg.superlanes):
                        wiring.connect(m, wiring.flipped(end[j][k]), sl.links[j][k])
            if pos.kind == "MEM":
                m.d.comb += [
                    sl.host.addr.eq(cmd.addr),
                    sl.host.we.eq(accept & (cmd.op == HostOp.SRAM_WRITE) & (cmd.slice == p)),
                    sl.host.re.eq(accept & (cmd.op == HostOp.SRAM_READ) & (cmd.slice == p)),
                    sl.host.wdata.eq(cmd.data),
                ]
            notify_bits.append(icu.notify_out)
            busy_bits.append(sl.busy)
            halted_bits.append(icu.halted)
        m.d.comb += notify.eq(Cat(*notify_bits).any())

        # MXMs report each matrix-vector product; count them per MXM
        mvm_counts = {}
        for p, sl in enumerate(slices):
            if hasattr(sl, "mvm"):
                cnt = mvm_counts[p] = Signal(COUNTER_BITS, name=f"mvm_count{p}")
                with m.If(start):
                    m.d.sync += cnt.eq(0)
                with m.Elif(sl.mvm):
                    m.d.sync += cnt.eq(cnt + 1)

        # -- faults: the first (lowest position in a cycle) is latched and stops all ------
        fault = Signal()
        f_code = Signal(ERROR_CODE_BITS)
        f_slice = Signal(8)
        for p in reversed(range(P)):
            for src in (slices[p], icus[p]):
                with m.If(running & src.error):
                    m.d.comb += [fault.eq(1), f_code.eq(src.error_code), f_slice.eq(p)]
        with m.If(start):
            m.d.sync += [err.eq(0), err_code.eq(0), err_slice.eq(0), err_cycle.eq(0)]
        with m.Elif(fault & ~err):
            m.d.sync += [err.eq(1), err_code.eq(f_code), err_slice.eq(f_slice),
                         err_cycle.eq(cycle)]

        # -- run control and the cycle count: from the queues and the datapath ---------
        # `running` is the registered run state; in the first cycle in which every queue
        # has halted and no slice has anything in flight the run is over: the outputs say
        # so in that cycle, the registers follow at its end
        work = ~Cat(*halted_bits).all() | Cat(*busy_bits).any()
        finished = Signal()
        m.d.comb += finished.eq(running & ~work)
        with m.If(start):
            m.d.sync += [running.eq(1), done.eq(0), cycle.eq(0)]
        with m.Elif(finished):
            m.d.sync += [running.eq(0), done.eq(1)]
        with m.Elif(running):
            m.d.sync += cycle.eq(cycle + 1)
        busy_counts = []
        for p, sl in enumerate(slices):
            cnt = Signal(COUNTER_BITS, name=f"busy_count{p}")
            with m.If(start):
                m.d.sync += cnt.eq(0)
            with m.Elif(running & (icus[p].issue.valid | sl.busy)):
                m.d.sync += cnt.eq(cnt + 1)
            busy_counts.append(cnt)
        live = Signal()
        m.d.comb += [
            live.eq(running & ~finished),
            self.cmd.ready.eq(~live),
            self.running.eq(live),
            self.done.eq(done | finished),
            self.error.eq(err),
        ]

        # -- reads: SRAM vectors and registers, answered in the next cycle ---------------
        rd_sram = Signal()
        rd_slice = Signal(8)
        rd_reg = Signal()
        reg_val = Signal(64)
        m.d.sync += [
            rd_sram.eq(accept & (cmd.op == HostOp.SRAM_READ)),
            rd_slice.eq(cmd.slice),
            rd_reg.eq(accept & (cmd.op == HostOp.REG_READ)),
        ]
        raddr = cmd.addr[:REG_ADDR_BITS]
        with m.If(accept & (cmd.op == HostOp.REG_READ)):
            with m.Switch(raddr):
                with m.Case(Reg.STATUS):
                    m.d.sync += reg_val.eq(status_value(
                        running=live, done=done | finished, error=err, error_code=err_code,
                        error_slice=err_slice))
                with m.Case(Reg.ERROR_CYCLE):
                    m.d.sync += reg_val.eq(err_cycle)
                with m.Case(Reg.CYCLES):
                    m.d.sync += reg_val.eq(cycle)
                with m.Case(Reg.CONFIG_HASH):
                    m.d.sync += reg_val.eq(int(cfg.stable_hash(), 16))
                for p in range(P):
                    with m.Case(Reg.BUSY + p):
                        m.d.sync += reg_val.eq(busy_counts[p])
                    with m.Case(Reg.ISSUED + p):
                        m.d.sync += reg_val.eq(icus[p].issued_count)
                    if p in mvm_counts:
                        with m.Case(Reg.MVM + p):
                            m.d.sync += reg_val.eq(mvm_counts[p])
                with m.Default():
                    m.d.sync += reg_val.eq(0)
        m.d.comb += self.rsp_valid.eq(rd_sram | rd_reg)
        with m.If(rd_reg):
            m.d.comb += self.rsp_data.eq(reg_val)
        with m.Elif(rd_sram):
            with m.Switch(rd_slice):
                for p, pos in enumerate(cfg.slices):
                    if pos.kind == "MEM":
                        with m.Case(p):
                            m.d.comb += self.rsp_data.eq(slices[p].host.rdata)
                with m.Default():  # not a MEM slice: reads as zero
                    m.d.comb += self.rsp_data.eq(0)
        return m


__all__ = ["SLICE_CLASSES", "Chip", "chip_members", "STATUS_DONE", "STATUS_ERROR", "STATUS_RUNNING"]
