"""Random C2C traffic over a system of linked chips (`golden.system`, `hdl.system`).

``random_traffic(cfg, chips, seed)`` returns one program per chip, their SRAM images and
what to read back: a seeded sequence of actions in slots of ``2P + 8`` cycles (``P``
slice positions), at most one per chip and slot.  An action is either a SEND (its 1, 2
or 4 byte planes read from as many MEM slices, on a random link of a random end, a
random type) or the RECV of the oldest message waiting on one of the chip's links,
written back to MEM; a RECV is issued in the first free slot at or after the message's
arrival, at a random distance from it (0 = the arrival cycle itself), and never lets a
receive buffer overflow.  So every message is received, and sends, arrivals and
receives of different links and chips interleave.
"""

from __future__ import annotations

import random

import numpy as np

from arch.asm import Schedule
from arch.config import TspConfig
from arch.isa import TYPE_BYTES

#: message types and their byte planes
_TYPES = ("i8", "i16", "i32")
#: SRAM: vectors read by SENDs live below this address, vectors written by RECVs above it
_WRITE_BASE = 128


def random_traffic(cfg: TspConfig, chips: int, seed: int, actions: int = 24):
    """(programs, images, readback) of seeded random traffic (see the module docstring)."""
    rng = random.Random(seed)
    P = cfg.n_positions
    gap = 2 * P + 8
    pos = {s.name: s.index for s in cfg.slices}
    mems = [s.name for s in cfg.slices_of("MEM")]
    ns = cfg.streams_per_direction
    B = cfg.c2c_beats
    vl = cfg.vector_length
    scheds = [Schedule(cfg) for _ in range(chips)]
    images: list[dict[str, dict[int, np.ndarray]]] = [{} for _ in range(chips)]
    readback: list[list[tuple[str, int]]] = [[] for _ in range(chips)]
    nrng = np.random.default_rng(seed)
    # per chip: slot -> busy; per (chip, end, link): messages waiting [(arrival, type)]
    busy: list[set[int]] = [set() for _ in range(chips)]
    waiting: dict[tuple[int, str, int], list[tuple[int, str]]] = {}
    tx_free: dict[tuple[int, str, int], int] = {}
    next_read = [0] * chips
    next_write = [_WRITE_BASE] * chips

    def peer(i: int, end: str) -> tuple[int, str]:
        return ((i + 1) % chips, "C2C_W") if end == "C2C_E" else ((i - 1) % chips, "C2C_E")

    def send(i: int, slot: int) -> bool:
        end = rng.choice(("C2C_W", "C2C_E"))
        link = rng.randrange(cfg.c2c_links)
        t = rng.choice([x for x in _TYPES if TYPE_BYTES[x] <= min(len(mems), ns)])
        w = TYPE_BYTES[t]
        cyc = slot * gap + P + 2 + rng.randrange(3)
        key = (i, end, link)
        if cyc < tx_free.get(key, 0):
            return False
        dst = peer(i, end) + (link,)
        arrival = cyc + cfg.c2c_arrival(w)
        if len(waiting.get(dst, [])) >= cfg.c2c_buffer:
            return False
        tx_free[key] = cyc + w * B
        waiting.setdefault(dst, []).append((arrival, t))
        s = rng.randrange(ns - w + 1)
        d = "E" if end == "C2C_E" else "W"
        for p, sl in enumerate(rng.sample(mems, w)):
            a = next_read[i]
            next_read[i] += 1
            images[i].setdefault(sl, {})[a] = nrng.integers(0, 256, vl, np.uint8)
            dist = abs(pos[end] - pos[sl])
            scheds[i].at(sl, cyc - 1 - dist, f"READ {a}, s{s + p}.{d}")
        scheds[i].at(end, cyc, f"SEND.{t} {link}, s{s}.{d}")
        return True

    def recv(i: int, slot: int) -> bool:
        ready = [(k, q[0]) for k, q in waiting.items() if k[0] == i and q
                 and q[0][0] <= slot * gap + P + 4]
        if not ready:
            return False
        (_, end, link), (arrival, t) = min(ready, key=lambda kv: kv[1][0])
        w = TYPE_BYTES[t]
        lo = max(arrival, slot * gap + 2)
        cyc = lo + rng.choice((0, 0, 1, 3))
        if cyc > slot * gap + P + 4:
            cyc = lo
        waiting[(i, end, link)].pop(0)
        s = rng.randrange(ns - w + 1)
        d = "E" if end == "C2C_W" else "W"  # a RECV writes into the chip
        scheds[i].at(end, cyc, f"RECV.{t} {link}, s{s}.{d}")
        for p, sl in enumerate(rng.sample(mems, w)):
            a = next_write[i]
            next_write[i] += 1
            dist = abs(pos[end] - pos[sl])
            scheds[i].at(sl, cyc + 1 + dist, f"WRITE s{s + p}.{d}, {a}")
            readback[i].append((sl, a))
        return True

    slot = 0
    done = 0
    while done < actions or any(waiting.values()):
        for i in rng.sample(range(chips), chips):
            if slot in busy[i]:
                continue
            did = recv(i, slot) if rng.random() < 0.6 else False
            if not did and done < actions:
                did = send(i, slot)
                done += did
            if did:
                busy[i].add(slot)
        slot += 1
        if slot > 20 * actions + 100:  # pragma: no cover - the generator's own bug
            raise AssertionError(f"seed {seed}: traffic did not drain")
    programs = [s.program(f"<traffic seed {seed} chip {i}>") for i, s in enumerate(scheds)]
    return programs, images, readback


def fault_cases(cfg: TspConfig) -> dict[str, tuple[list[str], str, int, str]]:
    """Directed C2C faults on two chips: name -> (assembly per chip, the RTL's error code
    name, the chip and the slice that must flag it).  Chip 0 sends what MEM_E1 (and
    MEM_E0) read in cycle 0 on C2C_E link 0, to chip 1's C2C_W; the timing follows the
    config (``c2c_beats >= 2``, for the busy case)."""
    if cfg.c2c_beats < 2:
        raise ValueError(f"fault_cases: config {cfg.name!r} sends a plane in one beat; the "
                         "busy case needs c2c_bytes_per_cycle <= 8")
    pos = {s.name: s.index for s in cfg.slices}
    B = cfg.c2c_beats
    t = 1 + pos["C2C_E"] - pos["MEM_E1"]  # the SEND, fed by a READ in cycle 0
    arrival = t + cfg.c2c_arrival(1)  # of an i8 message sent in t

    def reads(n: int, every: int) -> str:  # n READs of MEM_E1, `every` cycles apart
        rep = f"    REPEAT {n - 1}, {every}\n" if n > 1 else ""
        return f".slice MEM_E1\n    READ 0, s0.E\n{rep}    HALT\n"

    def sends(ty: str, n: int, every: int) -> str:
        rep = f"    REPEAT {n - 1}, {every}\n" if n > 1 else ""
        return f".slice C2C_E\n    NOP {t}\n    SEND.{ty} 0, s0.E\n{rep}    HALT\n"

    def receiver(at: int, ty: str = "i8") -> str:
        return f".slice C2C_W\n    NOP {at}\n    RECV.{ty} 0, s0.E\n    NOP 8\n    HALT\n"

    gap = pos["MEM_E1"] - pos["MEM_E0"]  # MEM_E1's plane waits for MEM_E0's
    two_planes = (f".slice MEM_E0\n    READ 1, s1.E\n    HALT\n.slice MEM_E1\n    NOP {gap}\n"
                  f"    READ 0, s0.E\n    HALT\n.slice C2C_E\n    NOP {t + gap}\n"
                  "    SEND.i16 0, s0.E\n    HALT\n")
    n = cfg.c2c_buffer + 1  # one more message than the buffer holds, one every B cycles
    return {
        "empty": ([reads(1, 1) + sends("i8", 1, 1), receiver(arrival - 1)],
                  "LINK_EMPTY", 1, "C2C_W"),
        "busy": ([reads(2, B - 1) + sends("i8", 2, B - 1), receiver(arrival)],
                 "LINK_BUSY", 0, "C2C_E"),
        "type": ([two_planes, receiver(arrival + gap + B, "i8")], "LINK_TYPE", 1, "C2C_W"),
        "overflow": ([reads(n, B) + sends("i8", n, B),
                      f".slice C2C_W\n    NOP {arrival + n * B + 16}\n    HALT\n"],
                     "LINK_OVERFLOW", 1, "C2C_W"),
    }
