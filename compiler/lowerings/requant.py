"""Per-lane requantisation of a row tensor: ``Y[i] = requantize(X[i], m[c], s[c])``.

One VXM ``REQUANT`` per vector (row ``i``, lane tile ``t``): the source's byte planes
(1, 2 or 4: int8, int16, int32) are read onto the streams together, the VXM applies the
per-lane multiplier/shift pair of tile ``t`` (a register triple, loaded once per tile) and
saturates to the destination type, and the result's planes are written.  This is
`golden.quant.requantize` (and `golden.block.narrow_lanes`) on the machine.

Timing: one VXM issue per vector; the read-to-write latency of the bundle is the MEM read
latency plus the stream distance to the VXM, the VXM's, and the distance back.
"""

from __future__ import annotations

import numpy as np

from arch.isa import SIGNED_TYPE

from .. import tiling as T
from ..builder import ProgramBuilder
from ..ir import Bundle
from ..routes import planes_in, planes_out


def requantize_rows(pb: ProgramBuilder, name: str, src, dst, rows: int, width: int,
                    multiplier: np.ndarray, shift: np.ndarray) -> None:
    """``dst[(i, t)] = REQUANT(src[(i, t)], (multiplier, shift) of lanes of tile t)``.

    ``src``/``dst``: tensors keyed ``(row, tile)``; their plane counts give the types.
    ``multiplier``/``shift``: int32 ``(width,)``, one pair per lane (channel)."""
    vl = pb.vl
    ityp, otyp = SIGNED_TYPE[src.planes], SIGNED_TYPE[dst.planes]
    for t in range(T.ntiles(width, vl)):
        tr = pb.regs.triple()
        pb.reg_const(tr, T.tile_vec(multiplier, t, vl), f"m_{name}[{t}]")
        pb.reg_const(tr + 1, T.tile_vec(shift, t, vl), f"sh_{name}[{t}]")
        for i in range(rows):
            b = Bundle(f"{name} row {i} tile {t}", name)
            v = pb.O.vxm(b, ityp, "s", "REQUANT", "s", ("r", tr), otype=otyp)
            planes_in(pb.O, b, src[(i, t)], v, "a")
            planes_out(pb.O, b, v, "d", dst[(i, t)])
            pb.emit(b)
        pb.regs.release_triple(tr)
