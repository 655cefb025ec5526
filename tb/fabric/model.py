"""Pure-Python model of the stream fabric, in superlane-0 time.

It predicts what each probe read captures: per logical cycle it holds, for each
direction, position and stream, the vector there (or None where no producer
has put one), and moves every value one hop per cycle with the overwrite rule
of `hdl/stream.py`.  Superlane ``k`` of the RTL does the same ``k`` cycles later,
so a read issued at logical cycle ``t`` at position ``p`` shows superlane ``k``'s
16 bytes on the probe's output after clock edge ``t + k + 1``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from arch.config import TspConfig

EAST, WEST = 0, 1


@dataclass(frozen=True)
class ProbeOp:
    """One probe command: issued at `cycle` at position `pos`."""

    cycle: int
    pos: int
    write: bool
    west: bool
    stream: int
    data: np.ndarray | None = None  # uint8[vector_length] for writes


@dataclass(frozen=True)
class Expected:
    """An expected probe output: rd_valid[pos][superlane] after edge `edge`."""

    edge: int
    pos: int
    superlane: int
    data: bytes | None  # None: no producer has written that stream there (unknown)
    op: ProbeOp


class FabricModel:
    def __init__(self, cfg: TspConfig):
        self.cfg = cfg

    def predict(self, ops: list[ProbeOp]) -> list[Expected]:
        cfg = self.cfg
        P, n, L = cfg.n_positions, cfg.streams_per_direction, cfg.lanes_per_superlane
        by_cycle: dict[int, list[ProbeOp]] = {}
        for op in ops:
            by_cycle.setdefault(op.cycle, []).append(op)
        last = max(by_cycle, default=-1)
        regs: list[list[list[np.ndarray | None]]] = [
            [[None] * n for _ in range(P)] for _ in (EAST, WEST)
        ]
        out: list[Expected] = []
        for t in range(last + 1):
            nxt = [[[None] * n for _ in range(P)] for _ in (EAST, WEST)]
            for p in range(P):
                for s in range(n):
                    if p + 1 < P:
                        nxt[EAST][p + 1][s] = regs[EAST][p][s]
                    if p >= 1:
                        nxt[WEST][p - 1][s] = regs[WEST][p][s]
            for op in by_cycle.get(t, ()):
                d = WEST if op.west else EAST
                if op.write:
                    q = op.pos + (-1 if op.west else 1)
                    if 0 <= q < P:
                        nxt[d][q][op.stream] = op.data
                else:
                    vec = regs[d][op.pos][op.stream]
                    for k in range(cfg.superlanes):
                        part = None if vec is None else bytes(vec[k * L:(k + 1) * L])
                        out.append(Expected(t + k + 1, op.pos, k, part, op))
            regs = nxt
        return out
