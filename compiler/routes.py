"""Moving multi-byte values between SRAM and a consumer/producer inside one bundle.

A k-byte value is k byte planes on consecutive streams of one direction that must pass a
position in the same cycle.  Stored with one plane per MEM slice, k READs (one per slice,
each issued ``1 + distance`` cycles before the consumer) put them on the streams together
("direct").  With only two MEM slices on a side an int32 needs the *relay*: planes 2 and 3
are read towards the side's SXM, which sends them back (``SHS.i16 0``, latency 2) in step
with planes 0 and 1 read directly:

    store:  VXM -> planes 0,1 written by the near/far slice as they pass, planes 2,3 go on to
            the SXM and come back: the far slice writes plane 3, the near slice plane 2
    load:   near/far slices read planes 2,3 outwards to the SXM; its copy comes back inwards
            together with planes 0,1 read by the near/far slice
"""

from __future__ import annotations

from .ir import Bundle, Op
from .ops import Ops


def _sxm_of(ops: Ops, slice_: str) -> str:
    return "SXM_W" if ops.cfg.slice(slice_).hemisphere == "W" else "SXM_E"


def planes_in(ops: Ops, b: Bundle, locs, consumer: Op, port: str) -> list[Op]:
    """Read the planes at ``locs`` ((slice, addr) per plane) into ``consumer.port``."""
    n = len(locs)
    if len({s for s, _ in locs}) == n:
        w = b.wire(n)
        reads = []
        for p, (s, a) in enumerate(locs):
            rd = ops.read(b, s, a)
            b.drive(w, p, rd, "out")
            reads.append(rd)
        b.tap(w, 0, consumer, port)
        return reads
    assert n == 4, locs
    (near, a0), (far, a1), (_n2, a2), (_f3, a3) = locs
    sx = ops.shs(b, _sxm_of(ops, near), "i16")
    out = b.wire(2)
    r2, r3 = ops.read(b, near, a2), ops.read(b, far, a3)
    b.drive(out, 0, r2, "out")
    b.drive(out, 1, r3, "out")
    b.tap(out, 0, sx, "in")
    w = b.wire(4)
    r0, r1 = ops.read(b, near, a0), ops.read(b, far, a1)
    b.drive(w, 0, r0, "out")
    b.drive(w, 1, r1, "out")
    b.drive(w, 2, sx, "out")
    b.tap(w, 0, consumer, port)
    return [r0, r1, r2, r3]


def planes_out(ops: Ops, b: Bundle, producer: Op, port: str, locs) -> list[Op]:
    """Write ``producer.port`` (len(locs) planes) to SRAM at ``locs``."""
    n = len(locs)
    w = b.wire(n)
    b.drive(w, 0, producer, port)
    if len({s for s, _ in locs}) == n:
        writes = []
        for p, (s, a) in enumerate(locs):
            wr = ops.write(b, s, a)
            b.tap(w, p, wr, "in")
            writes.append(wr)
        return writes
    assert n == 4, locs
    (near, a0), (far, a1), (_n2, a2), (_f3, a3) = locs
    w0, w1 = ops.write(b, near, a0), ops.write(b, far, a1)
    b.tap(w, 0, w0, "in")
    b.tap(w, 1, w1, "in")
    sx = ops.shs(b, _sxm_of(ops, near), "i16")
    b.tap(w, 2, sx, "in")
    back = b.wire(2)
    b.drive(back, 0, sx, "out")
    w2, w3 = ops.write(b, near, a2), ops.write(b, far, a3)
    b.tap(back, 0, w2, "in")
    b.tap(back, 1, w3, "in")
    return [w0, w1, w2, w3]
