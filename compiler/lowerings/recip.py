"""The integer reciprocal on VXM registers: `golden.block.reciprocal_int`, lane by lane.

``reciprocal_regs`` turns the positive int32 values of register ``rs`` into the REQUANT
triple ``rr = (y1, n - 30, 0)`` with ``requantize(v, y1, n - 30) ~= v / s`` (each lane its
own ``s``): ``n = clz(s)``; ``a/4 = (s << n) >> 3``; seed index ``(s << n) >> 23`` (wrapped
to u8) into the 256-entry seed table (a MEM ``GATHER``); ``y0 = 256 + T[index]``;
``t = rq(y0, a/4, 23)`` (= ``rq(y0, a, 21)``, ``a`` a multiple of 4); ``u = 2**30 - t``
(``((-4 t) mod 2**32) >> 2``); ``y1 = rq(y0, u, 23)``.  Nine dependent VXM instructions
and one Gather: about 40 cycles of chain (a register is read 4 cycles after its write).
"""

from __future__ import annotations

from ..alloc import ZEROS
from ..builder import ProgramBuilder
from ..ir import Bundle


def reciprocal_regs(pb: ProgramBuilder, table: tuple[str, int], rs: int, rn: int, ry0: int,
                    rr: int) -> None:
    """``rr, rr+1 = y1, n - 30`` for ``rs`` (``rn``, ``ry0``: scratch singles; ``rs`` is
    overwritten); ``table``: (slice, base) of the seed table (`golden.tables`)."""
    O = pb.O
    pb.vx_bundle("n = clz(S)", "i32", ("r", rn), "CLZ", ("r", rs))
    pb.vx_bundle("a/4", "i32", ("r", rr), "SHL", ("r", rs), ("r", rn), "SRA", 3)
    b = Bundle("recip seed", "recip")
    v = O.vxm(b, "i32", "s", "SHL", ("r", rs), ("r", rn), "SRA", 23, otype="u8")
    g = O.gather(b, *table)
    b.connect(v, "d", g, "idx")
    y = O.vxm(b, "u8", ("r", ry0), "ADD", "s", 256, otype="i32")
    b.connect(g, "out", y, "a")
    pb.emit(b)
    pb.set_imm(rr + 1, 23, "recip shift")
    pb.vx_bundle("t = a y0", "i32", ("r", rs), "REQUANT", ("r", ry0), ("r", rr))
    pb.vx_bundle("-4t", "i32", ("r", rr), "SUB", ("r", ZEROS[0]), ("r", rs), "SHL", 2)
    pb.vx_bundle("u = 2**30 - t", "i32", ("r", rr), "SHR", ("r", rr), 2)
    pb.vx_bundle("y1 = y0 u", "i32", ("r", rr), "REQUANT", ("r", ry0), ("r", rr))
    pb.vx_bundle("shift = n - 30", "i32", ("r", rr + 1), "SUB", ("r", rn), 30)
