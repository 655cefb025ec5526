"""Host interface: a command stream in, a response out, status pins.

The host (a cocotb testbench here; a PCIe/AXI bridge on a real board) drives
the chip through one valid/ready command stream (`lib.stream`): load
instruction memories, write and read SRAM vectors (one vector per cycle), read
status and counter registers, and start the program.  Commands are accepted
only while the machine is not running (``ready`` is low while it runs).  A
read (`SRAM_READ`, `REG_READ`) answers with ``rsp_valid`` and ``rsp_data`` in
the cycle after it is accepted.

Timing of a run: the cycle after `START` is accepted is cycle 0 of the
program.  The machine runs while any queue has not halted or any slice has work
in flight in any superlane (each slice reports it from its pipeline valid
bits).  In the first cycle in which neither holds, ``done`` rises and
``running`` and ``ready`` change, in that same cycle: a command sent then (an
SRAM read, another START) sees every result of the run.  ``CYCLES``
(register 0x002) then holds the run's length in clock cycles: with START
accepted at clock edge 0, ``done`` rises at edge ``CYCLES``.  That is the
program's cycle count of `arch.timing` (the compiler's prediction, the machine
model's count).
"""

from __future__ import annotations

import enum

from amaranth.lib import data

from arch.config import IMEM_MAX, TspConfig


class HostOp(enum.IntEnum):
    NOP = 0
    IMEM_WRITE = 1  # imem[slice][addr] <- data[63:0]
    SRAM_WRITE = 2  # MEM slice `slice`, address `addr` <- data (one vector)
    SRAM_READ = 3  # response: the vector at (slice, addr)
    REG_READ = 4  # response: register `addr` (see Reg) in data[63:0]
    START = 5  # run the loaded program from cycle 0 (the next cycle)


class Reg(enum.IntEnum):
    """Host-readable registers (64 bits each)."""

    STATUS = 0x000  # status_layout(): [0] running [1] done [2] error [7:4] code [15:8] slice
    ERROR_CYCLE = 0x001  # the cycle in which the first fault was detected
    CYCLES = 0x002  # clock cycles of the last run: cycle 0 to the last busy cycle
    CONFIG_HASH = 0x003  # first 64 bits of TspConfig.stable_hash()
    BUSY = 0x100  # + slice position: cycles in which that slice had work in flight
    ISSUED = 0x200  # + slice position: slice instructions issued
    MVM = 0x300  # + slice position: MVMs of that MXM (0 for other slices)


REG_ADDR_BITS = 12
#: the host command's address field: the deepest instruction queue a config may have
#: (`arch.config.IMEM_MAX` words) and every SRAM address and register number
HOST_ADDR_BITS = (IMEM_MAX - 1).bit_length()


def host_command_layout(cfg: TspConfig) -> data.StructLayout:
    return data.StructLayout({
        "op": 3,
        "slice": 8,  # slice position, 0 = westmost
        "addr": HOST_ADDR_BITS,  # imem address, SRAM address, or register number
        "data": cfg.vector_length * 8,
    })


def status_layout() -> data.StructLayout:
    """The STATUS register, bit 0 first (upper bits read as 0): ``error_code`` is an
    `hdl.slice.ErrorCode`, ``error_slice`` the position of the faulting slice."""
    from .slice import ERROR_CODE_BITS

    return data.StructLayout({
        "running": 1,
        "done": 1,
        "error": 1,
        "reserved": 1,
        "error_code": ERROR_CODE_BITS,
        "error_slice": 8,
    })


def status_value(**fields):
    """The STATUS word from its fields (`status_layout` order; absent fields are 0): a
    plain concatenation, so no bit is a constant driven from a process (which Verilator's
    lint reads as undriven)."""
    from amaranth import C, Cat, Value

    lay = status_layout()
    unknown = set(fields) - {name for name, _f in lay}
    if unknown:
        raise ValueError(f"status_value: no STATUS field(s) {sorted(unknown)}")
    parts = []
    for name, f in lay:
        v = Value.cast(fields.get(name, C(0, f.width)))
        if len(v) > f.width:
            raise ValueError(f"status_value: {name} is {len(v)} bits, the field {f.width}")
        parts.append(v.as_unsigned()[:f.width] if len(v) == f.width else
                     Cat(v, C(0, f.width - len(v))))
    return Cat(*parts)


STATUS_RUNNING, STATUS_DONE, STATUS_ERROR = 1, 2, 4
