"""The stream-register capture of the lock-step monitor, in C++ (`tapcap.cpp`), compiled
into every Verilated chip: `add_hooks` adds its DPI calls to the simulated Verilog of
each superlane's stream fabric (`SuperlaneStreams`), `Capture` arms it from the cocotb
testbench through ctypes (the executable exports ``tapcap_*``).  No Python and no VPI
read per cycle, and no stream register has to be visible through VPI."""

from __future__ import annotations

import ctypes
import re
from pathlib import Path

import numpy as np

#: the C++ side, compiled into the Verilated chip (`sim.build`)
SOURCE = Path(__file__).with_name("tapcap.cpp")
#: linker flag: the executable exports the capture's entry points to ctypes
LDFLAGS = "-Wl,--export-dynamic-symbol=tapcap_*"


def add_hooks(verilog: str, top: str, positions: int) -> str:
    """`verilog` (the chip's) with the capture's DPI calls in every stream-fabric module:
    the stamped ``<top>__SuperlaneStreams`` or, where a superlane's fabric is elaborated
    in place, each ``<top>.fabric.superlane<k>``.  Raises if there is none."""
    pat = re.compile(rf"^module \\?({re.escape(top)}__SuperlaneStreams|"
                     rf"{re.escape(top)}\.fabric\.superlane\d+)\s*\(", re.M)
    out, pos, found = [], 0, 0
    for m in pat.finditer(verilog):
        end = verilog.index("\nendmodule", m.end())
        body = verilog[m.start():end]
        width = re.search(r"output \[(\d+):0\] taps__1__e_in;", body)
        if width is None or "  input clk;" not in body:
            raise ValueError(f"stream-fabric module {m.group(1)} has no clk or taps ports")
        bits = int(width.group(1)) + 1
        calls = "".join(f"      tapcap_bank(0, {p}, taps__{p}__e_in);\n"
                        for p in range(1, positions))
        calls += "".join(f"      tapcap_bank(1, {p}, taps__{p}__w_in);\n"
                         for p in range(positions - 1))
        hook = (
            "\n  // lock-step capture (tb/chip/tapcap.cpp): the stream registers as the\n"
            "  // previous edge left them, only while a capture is armed; testbench code,\n"
            "  // not counted in the design's coverage\n"
            "  /*verilator coverage_off*/\n"
            '  import "DPI-C" context function int tapcap_on();\n'
            '  import "DPI-C" function void tapcap_bank(input int d, input int p, '
            f"input bit [{bits - 1}:0] v);\n"
            "  always @(posedge clk) begin\n"
            "    if (tapcap_on() != 0) begin\n"
            f"{calls}"
            "    end\n"
            "  end\n"
            "  /*verilator coverage_on*/")
        out += [verilog[pos:end], hook]
        pos = end
        found += 1
    if not found:
        raise ValueError(f"no stream-fabric module of {top} to add the lock-step capture to")
    return "".join(out) + verilog[pos:]


_lib = None


def library() -> ctypes.CDLL:
    """The capture's entry points in the running simulator."""
    global _lib
    if _lib is None:
        lib = ctypes.CDLL(None)
        try:
            lib.tapcap_arm.argtypes = [ctypes.c_long, ctypes.c_int, ctypes.c_int,
                                       ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]
        except AttributeError:
            raise AssertionError(
                "lock-step: this simulator has no stream-register capture (tapcap_arm is "
                "not exported); it was built before the capture existed: rebuild it") from None
        lib.tapcap_arm.restype = None
        lib.tapcap_done.restype = ctypes.c_long
        _lib = lib
    return _lib


class Capture:
    """Records register banks at each of the next `rows` rising edges.  Bank ``(k, d,
    p)`` is superlane k's stream registers of direction d (0 = E, 1 = W) at position p,
    `nbytes` bytes; `wanted` lists the (row, k, d, p) to keep, in any order.  Afterwards
    `data()` has their bytes in that order."""

    def __init__(self, rows: int, superlanes: int, positions: int, nbytes: int,
                 wanted: np.ndarray):
        self.lib = library()
        self.rows = rows
        self.words = (nbytes + 3) // 4
        self.nbytes = nbytes
        wanted = np.asarray(wanted, np.int64).reshape(-1, 4)
        r, k, d, p = wanted.T
        if len(wanted) and not (0 <= r.min() and r.max() < rows and 0 <= k.min()
                                and k.max() < superlanes and 0 <= d.min() and d.max() <= 1
                                and 0 <= p.min() and p.max() < positions):
            raise ValueError("capture: a wanted bank outside the rows, superlanes, "
                             "directions or positions")
        self.slot = np.full(rows * superlanes * 2 * positions, -1, np.int32)
        self.slot[((r * superlanes + k) * 2 + d) * positions + p] = np.arange(len(wanted))
        self.buf = np.zeros((max(len(wanted), 1), self.words), np.uint32)
        self.n = len(wanted)
        self.lib.tapcap_arm(rows, superlanes, positions, self.words, self.slot.ctypes.data,
                            self.buf.ctypes.data)

    @property
    def done(self) -> int:
        return int(self.lib.tapcap_done())

    def data(self) -> np.ndarray:
        """wanted x bytes (uint8)."""
        return self.buf.view(np.uint8)[:self.n, :self.nbytes]
