"""All-reduce of an int32 row tensor over the C2C ring: every chip ends with the sum of
every chip's tensor (tensor parallelism: the partial sums of a row-split product).

SPMD: every chip runs the same schedule (its own shard's weights, the same shapes), so a
message a chip sends in cycle ``t`` on link ``k`` of one end is in the next chip's
receive buffer (at its other end) in ``t + A``, ``A = c2c_latency + 4 B``: exactly when
that chip's own schedule receives it.

Two algorithms:

* **Ring** (more than two chips; the vectors in slots of ``n = chips``): slot ``q`` is one
  bundle.  At step ``h`` this chip (``rank`` of the ring) works on vector ``q*n + (rank
  - h) mod n`` (eastward; ``+ h`` westward), the one the previous chip worked on at step
  ``h - 1``: it sends its own partial at step 0; at steps ``1 .. n-1`` it receives the
  running sum, the VXM adds its own partial as the stream passes and the far end sends
  it on (reduce-scatter: at step ``n - 1`` the sum is whole and also written); at steps
  ``n .. 2n-2`` it receives whole sums, writes them and passes them on (all-gather).
  Per vector: ``2(n-1)/n`` messages, ``(n-1)/n`` VXM adds, no register.  The VXM's sum
  goes both to SRAM and on to the far end, so the slot turns towards the hemisphere its
  sums are written to; slots alternate links.
* **Chains** (two chips, and vectors left over): one bundle per vector, two chains
  around the ring from the chip's own vector: eastward (SEND.i32 on C2C_E; the west
  neighbour's arrives on C2C_W) over ``ceil((chips-1)/2)`` hops and westward over
  ``floor((chips-1)/2)``, the westward SENDs ``delta`` cycles after the eastward ones;
  with two chips the one chain alternates direction from vector to vector (both
  directions of the links busy).  A received vector crosses the chip on its stream; the
  VXM adds it to the running sum as it passes (the own vector, read from SRAM, first; a
  VXM register of a rotating pool after that) and the far end sends it on.  ``delta``
  (>= 4: a register written in ``t + 3`` is read from ``t + 4``) is the first that puts
  no two of the bundle's SRAM reads on one slice in one cycle.  Per vector: ``chips -
  1`` messages and adds.

On one chip alone the ring is a loopback: every hop brings the chip's own vector and the
result is ``chips x`` its input (the golden function says so).

`allreduce_reg` is the all-reduce of one VXM register under ``MAX`` or ``MIN`` (a row's
narrowing shift or largest exponent when the row is split over the chips; an argmax's
value and index): the chains above, each chip's value sent as it is (``SEND.i8``/
``.i16``/``.i32``: its type's planes) and forwarded by the far end, every arrival
combined into the register as it passes the VXM.  Both are idempotent, so on one chip
alone (the loopback) the register keeps its value.
"""

from __future__ import annotations

from arch.isa import TYPE_BYTES

from ..builder import ProgramBuilder
from ..errors import CompileError
from ..ir import Bundle
from ..routes import planes_in, planes_out

#: at most this many VXM registers hold the running sums of overlapping vectors (chips >
#: 2): all the free ones up to it (a sum lives ~(hops - 1) x (A + P) cycles)
POOL = 12
#: (sends on, receives on) of the eastward and the westward chain
EAST, WEST = ("C2C_E", "C2C_W"), ("C2C_W", "C2C_E")


def chains(chips: int, j: int) -> list[tuple[tuple[str, str], int]]:
    """The chains of vector ``j``: ((send end, receive end), hops), hops >= 1."""
    if chips == 2:
        return [(EAST if j % 2 == 0 else WEST, 1)]
    return [c for c in ((EAST, chips // 2), (WEST, (chips - 1) // 2)) if c[1]]


def _hops(pb: ProgramBuilder, b: Bundle, send, rx: str, link: int, hops: int,
          typ: str = "i32") -> list:
    """The hops of one chain from its first ``send``: per hop a RECV on ``rx`` at the
    message's arrival, and, but for the last, a SEND on from the far end as the message
    passes there.  The received messages' wires, in hop order."""
    arrive = pb.cfg.c2c_arrival(TYPE_BYTES[typ])
    wires = []
    for h in range(hops):
        recv = pb.O.recv(b, rx, link, typ)
        b.tie(send, recv, arrive)
        w = b.wire(TYPE_BYTES[typ])
        b.drive(w, 0, recv, "out")
        wires.append(w)
        if h + 1 < hops:
            send = pb.O.send(b, send.slice, link, typ)
            b.tap(w, 0, send, "in")
    return wires


def _bundle(pb: ProgramBuilder, name: str, src, dst, key, chips: int, j: int, link: int,
            reg: int | None, delta: int) -> Bundle:
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
        events += [(h, ci, w) for h, w in enumerate(_hops(pb, b, send, rx, link, hops))]
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


def _ring_bundle(pb: ProgramBuilder, name: str, src, dst, keys, chips: int, rank: int,
                 q: int, ends: tuple[str, str], link: int) -> Bundle:
    """Slot ``q``: the ring's reduce-scatter and all-gather of vectors ``q*n .. q*n+n-1``
    (see `allreduce_rows`)."""
    cfg = pb.cfg
    n = chips
    arrive = cfg.c2c_arrival(4)
    tx, rx = ends
    sign = 1 if tx == "C2C_E" else -1  # eastward: from chip i-1; westward: from i+1

    def key(h):  # the vector this chip works on at step h
        return keys[q * n + (rank - sign * h) % n]

    b = Bundle(f"{name} slot {q}", name)
    send = pb.O.send(b, tx, link)
    planes_in(pb.O, b, src[key(0)], send, "in")
    for h in range(1, 2 * n - 1):
        recv = pb.O.recv(b, rx, link)
        b.tie(send, recv, arrive)
        w = b.wire(4)
        b.drive(w, 0, recv, "out")
        if h < n:  # reduce: add this chip's partial and pass it on
            add = pb.O.vxm(b, "i32", "s", "ADD", "s", "s")
            b.tap(w, 0, add, "a")
            planes_in(pb.O, b, src[key(h)], add, "b")
            w = b.wire(4)
            b.drive(w, 0, add, "d")
        if h >= n - 1:  # a whole sum: keep it
            for p, (sl, a) in enumerate(dst[key(h)]):
                wr = pb.O.write(b, sl, a)
                b.tap(w, p, wr, "in")
        if h < 2 * n - 2:
            send = pb.O.send(b, tx, link)
            b.tap(w, 0, send, "in")
    return b


def _rank_free(b: Bundle, srcs, dsts) -> None:
    """Every rank works on the slot's vectors in another order, and every rank's program
    is placed in the same cycles: make the bundle's dependencies the same on every rank.
    Its first and last READ count as reading every vector of the slot, its first and last
    WRITE as writing every one (a writer before must be done by the first read, a reader
    after waits for the last write, and so on)."""
    for mn, locs, attr in (("READ", srcs, "sram_r"), ("WRITE", dsts, "sram_w")):
        ops = sorted((op for op in b.ops if op.mn == mn), key=lambda o: o.off)
        every = [loc for ls in locs for loc in ls]
        for op in {id(o): o for o in (ops[0], ops[-1])}.values():
            have = getattr(op, attr)
            setattr(op, attr, have + tuple(loc for loc in every if loc not in have))


def allreduce_rows(pb: ProgramBuilder, name: str, src, dst, keys, chips: int,
                   rank: int = 0) -> None:
    """``dst[key] = sum over the ring's chips of src[key]`` for every vector key; this
    chip is ``rank`` of the ring."""
    cfg = pb.cfg
    if not cfg.c2c_links:
        raise ValueError(f"{name}: config {cfg.name!r} has no C2C links")
    # a slot's vectors from one lane tile (rows in order): ready at about the same time
    keys = sorted(keys, key=lambda k: (k[-1], k[:-1]))
    ring = len(keys) // chips * chips if chips > 2 else 0
    if any(len({sl for sl, _ in dst[k]}) < 4 for k in keys):
        ring = 0  # the sums' planes through an SXM relay (few MEM slices): per vector
    side = {s.name: s.hemisphere for s in cfg.slices}
    for q in range(ring // chips):
        # the VXM's whole sum goes both to the SEND and to SRAM: the same direction, so
        # the ring turns towards the side the slot's sums are written to
        sides = {side[sl] for k in keys[q * chips:(q + 1) * chips] for sl, _ in dst[k]}
        if len(sides) != 1:
            ring = q * chips
            break
        ends = EAST if sides == {"E"} else WEST
        link = q % cfg.c2c_links
        try:
            b = _ring_bundle(pb, name, src, dst, keys, chips, rank, q, ends, link)
            b.finalize()
        except AssertionError:  # two SRAM accesses of one slice in one cycle: per vector
            ring = q * chips
            break
        _rank_free(b, [src[k] for k in keys[q * chips:(q + 1) * chips]],
                   [dst[k] for k in keys[q * chips:(q + 1) * chips]])
        pb.emit(b)
    _chains(pb, name, src, dst, keys[ring:], chips)


def _chains(pb: ProgramBuilder, name: str, src, dst, keys, chips: int) -> None:
    """The vectors left after the ring's slots, each in its own bundle (two chains)."""
    cfg = pb.cfg
    if not keys:
        return
    regs = [None]
    if chips > 2:
        regs = []
        while len(regs) < POOL and pb.regs.free:
            regs.append(pb.regs.single())
        if not regs:
            raise CompileError(f"{name}: no VXM register left for the running sums",
                               "registers")
    limit = cfg.c2c_arrival(4) + cfg.n_positions - 4
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


def _reg_bundle(pb: ProgramBuilder, name: str, reg: int, chips: int, typ: str, op: str,
                link: int, delta: int) -> Bundle:
    O = pb.O
    b = Bundle(f"{name} {op.lower()} over {chips} chips", name)
    events, first = [], None
    for ci, ((tx, rx), hops) in enumerate(chains(chips, 0)):
        own = O.vxm(b, "i32", "s", "PASS", ("r", reg), otype=typ)  # one per direction
        send = O.send(b, tx, link, typ)
        b.connect(own, "d", send, "in")
        if first is None:
            first = own
        else:
            b.tie(first, own, delta)
        events += [(h, ci, w) for h, w in enumerate(_hops(pb, b, send, rx, link, hops, typ))]
    for _, _, wr in sorted(events, key=lambda e: e[:2]):
        mx = O.vxm(b, typ, ("r", reg), op, "s", ("r", reg), otype="i32")
        b.tap(wr, 0, mx, "a")
    return b


def allreduce_reg(pb: ProgramBuilder, name: str, reg: int, chips: int, typ: str = "i8",
                  op: str = "MAX") -> None:
    """``reg = op over the ring's chips of reg`` (``op`` ``MAX`` or ``MIN``; every chip's
    register the same in every lane, its values fitting ``typ``): one bundle, the two
    chains of `chains`, the second direction's value sent ``delta >= 4`` cycles after the
    first (the register an arrival's ``op`` writes in ``t + 3`` is read from ``t + 4``;
    the first ``delta`` whose VXM ops take distinct cycles).  Nothing on one chip."""
    if op not in ("MAX", "MIN"):
        raise ValueError(f"{name}: allreduce_reg takes MAX or MIN, got {op!r}")
    if chips == 1:
        return
    cfg = pb.cfg
    if not cfg.c2c_links:
        raise ValueError(f"{name}: config {cfg.name!r} has no C2C links")
    for delta in range(4, 4 + cfg.c2c_arrival(TYPE_BYTES[typ]) + 16):
        try:
            b = _reg_bundle(pb, name, reg, chips, typ, op, 0, delta)
            b.finalize()
            break
        except AssertionError:  # two VXM ops in one cycle: the next delta
            continue
    else:
        raise ValueError(f"{name}: no spacing of the two chains fits the VXM")
    pb.emit(b)
