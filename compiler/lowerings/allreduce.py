"""All-reduce of an int32 row tensor over the C2C ring: every chip ends with the sum of
every chip's tensor (tensor parallelism: the partial sums of a row-split product).

SPMD: every chip runs the same schedule (its own shard's weights, the same shapes), so a
message a chip sends in cycle ``t`` on link ``k`` of one end is in the next chip's
receive buffer (at its other end) in ``t + A``, ``A = c2c_latency + 4 B``: exactly when
that chip's own schedule receives it.

Per vector, one bundle, two chains around the ring from the chip's own vector (read from
SRAM): eastward (SEND.i32 on C2C_E; the west neighbour's arrives on C2C_W) over ``e =
ceil((chips-1)/2)`` hops and westward over ``w = floor((chips-1)/2)``, its SENDs
``delta`` cycles after the eastward ones; with two chips the one chain alternates
direction from vector to vector.  A received vector crosses the chip on its stream; the
VXM adds it to the running sum as it passes (the own vector, read from SRAM, at the
first arrival; a VXM register of a rotating pool after that, so that the bundles of
consecutive vectors overlap), and the far end sends it on (the next hop) as it passes
there.  The last sum is written.  ``delta`` (>= 4: a register written in ``t + 3`` is
read from ``t + 4``) is the first that puts no two of the bundle's SRAM reads on one
slice in one cycle.  A vector takes ``chips - 1`` messages, over both directions and the
links of each end.

On one chip alone the ring is a loopback: every hop brings the chip's own vector and the
result is ``chips x`` its input (the golden function says so).
"""

from __future__ import annotations

from ..builder import ProgramBuilder
from ..ir import Bundle
from ..routes import planes_in, planes_out

#: VXM registers the running sums of overlapping vectors rotate through (chips > 2)
POOL = 6
#: (sends on, receives on) of the eastward and the westward chain
EAST, WEST = ("C2C_E", "C2C_W"), ("C2C_W", "C2C_E")


def chains(chips: int, j: int) -> list[tuple[tuple[str, str], int]]:
    """The chains of vector ``j``: ((send end, receive end), hops), hops >= 1."""
    if chips == 2:
        return [(EAST if j % 2 == 0 else WEST, 1)]
    return [c for c in ((EAST, chips // 2), (WEST, (chips - 1) // 2)) if c[1]]


def _bundle(pb: ProgramBuilder, name: str, src, dst, key, chips: int, j: int, link: int,
            reg: int | None, delta: int) -> Bundle:
    cfg = pb.cfg
    arrive = cfg.c2c_latency + 4 * cfg.c2c_beats
    b = Bundle(f"{name} {key}", name)
    events = []  # (hop, chain, the received vector's wire)
    first = None
    for ci, ((tx, rx), hops) in enumerate(chains(chips, j)):
        send = pb.O.send(b, tx, link)
        planes_in(pb.O, b, src[key], send, "in")
        if first is None:
            first = send
        else:
            b.tie(first, send, delta)
        for h in range(hops):
            recv = pb.O.recv(b, rx, link)
            b.tie(send, recv, arrive)
            w = b.wire(4)
            b.drive(w, 0, recv, "out")
            events.append((h, ci, w))
            if h + 1 < hops:  # on to the next chip, from the far end as it passes there
                send = pb.O.send(b, tx, link)
                b.tap(w, 0, send, "in")
    events.sort(key=lambda e: e[:2])
    for k, (_, _, w) in enumerate(events):
        last = k == len(events) - 1
        add = pb.O.vxm(b, "i32", "s" if last else ("r", reg), "ADD", "s",
                       "s" if k == 0 else ("r", reg))
        b.tap(w, 0, add, "a")
        if k == 0:
            planes_in(pb.O, b, src[key], add, "b")
        if last:
            planes_out(pb.O, b, add, "d", dst[key])
    return b


def allreduce_rows(pb: ProgramBuilder, name: str, src, dst, keys, chips: int) -> None:
    """``dst[key] = sum over the ring's chips of src[key]`` for every vector key."""
    cfg = pb.cfg
    if not cfg.c2c_links:
        raise ValueError(f"{name}: config {cfg.name!r} has no C2C links")
    regs = [pb.regs.single() for _ in range(POOL)] if chips > 2 else [None]
    limit = cfg.c2c_latency + 4 * cfg.c2c_beats + cfg.n_positions - 4
    for j, key in enumerate(keys):
        link = (j // (2 if chips == 2 else 1)) % cfg.c2c_links
        for delta in range(4, max(limit, 5)):
            try:
                b = _bundle(pb, name, src, dst, key, chips, j, link, regs[j % len(regs)],
                            delta)
                b.finalize()
                break
            except AssertionError:  # two reads on one slice in one cycle: the next delta
                continue
        else:
            raise ValueError(f"{name} {key}: no spacing of the two chains fits the "
                             "bundle's SRAM reads")
        pb.emit(b)
    for r in regs:
        if r is not None:
            pb.regs.release(r)
