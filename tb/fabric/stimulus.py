"""Seeded random producers and consumers for the fabric testbench."""

from __future__ import annotations

import numpy as np

from arch.config import TspConfig

from .model import ProbeOp


def random_ops(cfg: TspConfig, seed: int, cycles: int = 200, density: float = 0.3
               ) -> list[ProbeOp]:
    """Random writes, each followed (mostly) by a read downstream exactly when the
    value should arrive, plus random reads anywhere; one command per position
    per cycle.  Later producers overwrite streams in flight, as in real programs."""
    rng = np.random.default_rng(seed)
    P, n, V = cfg.n_positions, cfg.streams_per_direction, cfg.vector_length
    busy: set[tuple[int, int]] = set()
    ops: list[ProbeOp] = []

    def add(op: ProbeOp) -> bool:
        if (op.cycle, op.pos) in busy or op.cycle >= cycles:
            return False
        busy.add((op.cycle, op.pos))
        ops.append(op)
        return True

    for t in range(cycles):
        for p in range(P):
            r = rng.random()
            if r < density:
                west = bool(rng.integers(2))
                s = int(rng.integers(n))
                data = rng.integers(0, 256, V, dtype=np.uint8)
                if not add(ProbeOp(t, p, True, west, s, data)):
                    continue
                if rng.random() < 0.8:
                    room = p if west else P - 1 - p
                    if room >= 1:
                        d = int(rng.integers(1, room + 1))
                        q = p - d if west else p + d
                        add(ProbeOp(t + d, q, False, west, s))
            elif r < density * 1.3:
                add(ProbeOp(t, p, False, bool(rng.integers(2)), int(rng.integers(n))))
    ops.sort(key=lambda o: (o.cycle, o.pos))
    return ops
