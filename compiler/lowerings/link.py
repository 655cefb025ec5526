"""A row tensor sent to the next chip and received from the previous one, over C2C
(pipeline parallelism: a stage's output row is the next stage's input).

* `send_rows`: one bundle per vector: its planes READ from SRAM and sent as one message
  (``SEND.i32`` for 4 planes, ``.i16`` for 2, ``.i8`` for 1) on a link of C2C_E.  The
  scheduler places them like any bundle (the link is reserved for a message's beats);
  `sent` reads back, after scheduling, in which cycle each vector left.
* `recv_rows`: the receiving chip knows those cycles (the sender is compiled first): one
  bundle holds a RECV per vector on the same link of C2C_W, tied to each other at the
  messages' exact arrival distances and not placed before the first arrival
  (`Bundle.earliest`); each writes its vector to SRAM.  One bundle keeps the RECVs in the
  order the messages arrive (the receive buffer is first in, first out).
"""

from __future__ import annotations

from arch.isa import SIGNED_TYPE

from ..builder import ProgramBuilder
from ..ir import Bundle
from ..routes import planes_in, planes_out


def send_rows(pb: ProgramBuilder, name: str, src, link: int) -> None:
    typ = SIGNED_TYPE[src.planes]
    for key, locs in src.locs.items():
        b = Bundle(f"{name} {key}", name)
        send = pb.O.send(b, "C2C_E", link, typ)
        planes_in(pb.O, b, locs, send, "in")
        pb.emit(b)


def sent(bundles, name: str, src) -> list[tuple[int, int, int, tuple]]:
    """The SENDs of `send_rows` ``name`` (of tensor ``src``), in the order they issue:
    ``(cycle, link, planes, vector key)`` (after scheduling).  `send_rows` emits one
    bundle per key of ``src``, in the order of its keys."""
    mine = [b for b in bundles if b.kind == name]
    out = [(op.cycle, op.fields["link"], src.planes, key)
           for b, key in zip(mine, src.locs, strict=True) for op in b.ops if op.mn == "SEND"]
    return sorted(out)


def recv_rows(pb: ProgramBuilder, name: str, dst, link: int, arrivals) -> None:
    """``arrivals``: per vector key of ``dst`` in the order the messages arrive, ``(key,
    cycle)``: the first cycle its message is in C2C_W link ``link``'s buffer."""
    typ = SIGNED_TYPE[dst.planes]
    b = Bundle(f"{name} recv", name)
    first = None
    for key, cycle in arrivals:
        recv = pb.O.recv(b, "C2C_W", link, typ)
        planes_out(pb.O, b, recv, "out", dst.locs[key])
        if first is None:
            first, t0 = recv, cycle
        else:
            b.tie(first, recv, cycle - t0)
    pb.emit(b)
    b.earliest = t0 - first.off  # the first RECV not before its message's arrival
