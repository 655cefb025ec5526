"""The quantised dense layer: ``Y[i] = rq(W X[i] + b)`` with its epilogue fused into the
bundle that takes the sum off the MXM (`matmul_rows` does the tiling).

The epilogue is one VXM instruction per output vector: ``ADD`` the bias (a register),
``REQUANT`` with the per-lane pairs of the tile (a register triple), then one of

* **store** -- the result's planes to ``Y`` (int8, int16 or int32);
* **heads** -- ``Y`` keyed ``(head, row, tile)``: each head's vector holds only that head's
  lanes (the multiplier is 0 elsewhere), which is what the block's attention installs per
  head.  The first head of a tile comes from the MVM; the others re-emit the held
  accumulators (an MVM with ``x = 0`` and ``accum``), one requantisation each.  Or, on
  configs with VXM groups and SXM transposers, no re-emit: the whole tile is requantised
  once into a register and each head's vector is that ``AND`` the head's lane mask (a
  register per head; ``MASK_ROWS`` rows in flight);
* **table** -- the int8 result is the index of a 256-entry ``GATHER`` (an activation such as
  GELU) on its way to ``Y``; ``pre`` also keeps the index vector (the pre-activation);
* **residual** -- ``Y = R + rq(...)`` (int32): the requantised sum goes to a register and a
  second instruction adds ``R``'s planes on their way to ``Y``; with **narrow** (the
  graph's fused ``requant`` of ``Y``) the sum stays in a register, one ``REQUANT`` writes
  its per-lane narrowed copy and a ``PASS`` writes ``Y``.

With a residual, the rows' chains (requantised sum -> residual add -> narrow, store) hold
a register each from the MVM's epilogue to the last copy; up to ``RES_ROWS`` rows are in
flight per VXM group and the rows are dealt over several groups (each loads the tile's
constants), so the chain of one row does not hold back the MVMs of the next.

Timing: as `matmul_rows` (``S`` MVMs per K tile and output tile), plus per tile the
register constants (bias, multiplier, shift: an immediate or one SRAM read each), and for
heads one re-emit MVM per further head and row (masked: one VXM word per head and row).
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np

from .. import tiling as T
from ..builder import ProgramBuilder
from ..ir import Bundle
from ..routes import planes_in, planes_out
from .matmul import matmul_rows

TYPE = {1: "i8", 2: "i16", 4: "i32"}
#: heads per tile masked by registers (one mask register each) at most
MASK_HEADS_MAX = 6
#: rows in flight between the requantisation and the masks (one register each)
MASK_ROWS = 4
#: rows in flight between the requantisation and the residual add at most, per VXM group
RES_ROWS = 4


def dense_rows(pb: ProgramBuilder, name: str, x_loc, rows: int, k_in: int, weights,
               mxms: list[str], out, bias, multiplier, shift, *,
               heads: tuple[int, int] | None = None, table: tuple[str, int] | None = None,
               pre=None, residual=None, narrow: tuple | None = None,
               weights_key: str | None = None) -> None:
    """Lower the dense layer (module docstring) onto ``pb``.

    ``x_loc(i, k)``: row ``i``, K tile ``k`` of the int8 input; ``weights``: the int8
    weight tiles (`ProgramBuilder.weights`); ``mxms``: the MXMs the output tiles go to in
    turn; ``out``: the output tensor keyed ``(i, t)`` (``(h, i, t)`` with ``heads =
    (n_heads, d_head)``); ``bias``/``multiplier``/``shift``: int32 per output channel;
    ``table``: (slice, base) of a Gather table; ``pre``: tensor for the table's index;
    ``residual``: int32 tensor keyed ``(i, t)`` added after the requantisation;
    ``narrow``: ``(tensor, multiplier, shift)``, that sum also requantised per lane into
    the tensor."""
    vl, O = pb.vl, pb.O
    n_out = int(np.shape(bias)[0])
    # a row's VXM words dealt over groups (row i on the (i % n)-th): each group holds the
    # tile's constants and its rows' chains in its own registers
    groups = [O.vxm_slice]
    others = [g for g in pb.vxm_groups if g != groups[0]]

    def heads_of(n):
        return T.tile_heads(n, heads[0], heads[1], vl) if heads else [None]

    # per-head outputs by lane masks (`mask_heads`) on configs whose attention makes no
    # MVMs but its products (VXM groups and SXM transposers) and where the masks fit the
    # registers; else by re-emitting the held accumulators per further head.  (Measured on
    # the medium blocks: with transposers the masks save 12-13 cycles; without them they
    # cost 15-190, the re-emits filling MXM slots the transposing MVMs leave idle.)
    most_heads = max(len(heads_of(n)) for n in range(T.ntiles(n_out, vl)))  # in a tile
    mask_heads_on = bool(heads) and residual is None and table is None and (
        pb.cfg.vxm_groups > 1 and pb.cfg.sxm_transpose_rows > 0) and \
        most_heads <= MASK_HEADS_MAX
    # a row's VXM words: the epilogue, then the residual add (and the narrow and the
    # store), or one mask per head; dealt over as many groups, so that the rows keep up
    # with the MVMs, but one group left to the rest of the program (measured on the medium
    # d128 block with 4 groups: the masks over 3 groups save 36 cycles, the residual's 4
    # words over 3 groups 44, over all 4 only 3; tiny3's block with 2 groups: masks over
    # both cost 14).  A residual's rows go to two groups wherever there are two (its chain
    # holds a register per row in flight).
    words = (1 + most_heads if mask_heads_on
             else (4 if narrow is not None else 2) if residual is not None else 1)
    extra = max(0, min(words - 1, len(others) - 1))
    if residual is not None:
        extra = max(extra, min(1, len(others)))
    groups += others[:extra]
    sts: dict[str, dict] = {g: {} for g in groups}
    st, regs = sts[groups[0]], pb.regs

    @contextmanager
    def on(g):
        """The body on group ``g``: its VXM ops, registers and per-tile state."""
        nonlocal st, regs
        prev = st, regs
        with pb.use_vxm(g):
            st, regs = sts[g], pb.regs
            try:
                yield
            finally:
                st, regs = prev

    def grp(i):
        return groups[i % len(groups)]

    def slot(i, k):
        """The register (of ``k``) of row ``i``'s chain in its group."""
        return (i // len(groups)) % k

    def masked(n):
        return mask_heads_on and len(heads_of(n)) > 1

    def head_mult(n, h):
        m = T.tile_vec(multiplier, n, vl)
        if h is None:
            return m
        keep = np.zeros(vl, bool)
        keep[list(T.head_lanes(h, n, heads[1], vl))] = True
        return np.where(keep, m, 0)

    def out_loc(h, i, n):
        return out[(i, n)] if h is None else out[(h, i, n)]

    def begin(n):
        hs = st["hs"] = heads_of(n)
        st["rb"] = regs.single()
        pb.reg_const(st["rb"], T.tile_vec(bias, n, vl), f"b_{name}[{n}]")
        if masked(n):  # the whole tile requantised once, masked per head
            st["trip"] = [regs.triple()]
            pb.reg_const(st["trip"][0], T.tile_vec(multiplier, n, vl), f"m_{name}[{n}]")
            pb.reg_const(st["trip"][0] + 1, T.tile_vec(shift, n, vl), f"sh_{name}[{n}]")
            st["y"] = [regs.single() for _ in range(MASK_ROWS)]
            st["mask"] = [regs.single() for _ in hs]
            for h, r in zip(hs, st["mask"], strict=True):
                keep = np.zeros(vl, np.int64)
                keep[list(T.head_lanes(h, n, heads[1], vl))] = -1
                pb.reg_const(r, keep, f"mask_{name}[{n}]h{h}")
            return
        st["trip"] = [regs.triple() for _ in range(min(2, len(hs)))]
        for k, tr in enumerate(st["trip"]):
            pb.reg_const(tr, head_mult(n, hs[k]), f"m_{name}[{n}]h{hs[k]}")
            pb.reg_const(tr + 1, T.tile_vec(shift, n, vl), f"sh_{name}[{n}]")
        if narrow is not None:
            st["nt"] = regs.triple()
        # rows in flight between the epilogue and after_row: as many as the free registers
        # allow (2 to RES_ROWS), each row's chain holds one (two with narrow)
        per = 2 if narrow is not None else 1
        k = max(2, min(RES_ROWS, len(regs.free) // per)) if residual is not None else 0
        st["acc"] = [regs.single() for _ in range(k)]
        if narrow is not None:
            st["sum"] = [regs.single() for _ in range(k)]
            pb.reg_const(st["nt"], T.tile_vec(narrow[1], n, vl), f"m_{name}.narrow[{n}]")
            pb.reg_const(st["nt"] + 1, T.tile_vec(narrow[2], n, vl), f"sh_{name}.narrow[{n}]")

    def requant(b, mv, tr, h, i, n):
        """``ADD(sum, bias) REQUANT`` -> the output (or the residual's register, the
        table's Gather)."""
        if residual is not None:
            v = O.vxm(b, "i32", ("r", st["acc"][slot(i, len(st["acc"]))]), "ADD", "s",
                      ("r", st["rb"]),
                      "REQUANT", ("r", tr))
            b.connect(mv, "out", v, "a")
            return
        v = O.vxm(b, "i32", "s", "ADD", "s", ("r", st["rb"]), "REQUANT", ("r", tr),
                  otype=TYPE[out.planes] if table is None else "i8")
        b.connect(mv, "out", v, "a")
        if table is None:
            planes_out(O, b, v, "d", out_loc(h, i, n))
            return
        ga = O.gather(b, *table)
        idx = b.wire(1)
        b.drive(idx, 0, v, "d")
        b.tap(idx, 0, ga, "idx")
        if pre is not None:
            wr = O.write(b, *pre.loc(i, n))
            b.tap(idx, 0, wr, "in")
        planes_out(O, b, ga, "out", out[(i, n)])

    def epilogue(b, mv, i, n):
        if "mask" in st:  # the requantised tile to a register; after_row masks it per head
            v = O.vxm(b, "i32", ("r", st["y"][i % MASK_ROWS]), "ADD", "s", ("r", st["rb"]),
                      "REQUANT", ("r", st["trip"][0]), otype=TYPE[out.planes])
            b.connect(mv, "out", v, "a")
            return
        requant(b, mv, st["trip"][0], st["hs"][0], i, n)

    def mask_heads(i, n):
        """Head h's vector = the requantised tile AND head h's lane mask (one VXM word per
        head, no re-emit MVM); nothing for a tile of one head (its epilogue wrote it)."""
        if not masked(n):
            return
        for h, r in zip(st["hs"], st["mask"], strict=True):
            b = Bundle(f"{name}[{n}] head {h} row {i}", f"{name}.mask")
            v = O.vxm(b, TYPE[out.planes], "s", "AND", ("r", st["y"][i % MASK_ROWS]), ("r", r))
            planes_out(O, b, v, "d", out_loc(h, i, n))
            pb.emit(b)

    def after_row(i, n):
        b = Bundle(f"{name} row {i} tile {n} + residual", f"{name}.res")
        if narrow is None:
            v = O.vxm(b, "i32", "s", "ADD", ("r", st["acc"][slot(i, len(st["acc"]))]), "s")
            planes_in(O, b, residual[(i, n)], v, "b")
            planes_out(O, b, v, "d", out[(i, n)])
            pb.emit(b)
            return
        r_t = st["sum"][slot(i, len(st["sum"]))]  # the sum stays in a register for both
        v = O.vxm(b, "i32", ("r", r_t), "ADD", "s", ("r", st["acc"][slot(i, len(st["acc"]))]))
        planes_in(O, b, residual[(i, n)], v, "a")
        pb.emit(b)
        b = Bundle(f"{name} row {i} tile {n} narrow", f"{name}.narrow")
        v = O.vxm(b, "i32", "s", "REQUANT", ("r", r_t), ("r", st["nt"]),
                  otype=TYPE[narrow[0].planes])
        planes_out(O, b, v, "d", narrow[0][(i, n)])
        pb.emit(b)
        b = Bundle(f"{name} row {i} tile {n} store", f"{name}.store")
        v = O.vxm(b, "i32", "s", "PASS", ("r", r_t))
        planes_out(O, b, v, "d", out[(i, n)])
        pb.emit(b)

    def done(n, slots):
        hs, trip = st["hs"], st["trip"]
        mx = mxms[n % len(mxms)]  # the MXM that holds tile n's accumulators
        sd = pb.cfg.slice(mx).hemisphere  # a zero vector next to that MXM
        for hi in range(1, len(hs)):
            tr = trip[hi % len(trip)]
            if hi >= len(trip):
                pb.reg_const(tr, head_mult(n, hs[hi]), f"m_{name}[{n}]h{hs[hi]}")
            for i in range(rows):
                b = Bundle(f"{name}[{n}] head {hs[hi]} row {i}", f"{name}.reemit")
                rd = O.read(b, *pb.zero_loc(sd))
                mv = O.mvm(b, mx, slots[i], True, True, None, purpose="re-emit")
                b.connect(rd, "out", mv, "x")
                requant(b, mv, tr, hs[hi], i, n)
                pb.emit(b)

    def end(n):
        regs.release(st["rb"], *st.get("acc", ()), *st.get("sum", ()),
                     *st.pop("y", ()), *st.pop("mask", ()))
        if "nt" in st:
            regs.release_triple(st.pop("nt"))
        for tr in st["trip"]:
            regs.release_triple(tr)

    def each_group(f):
        def run(n, *a):
            for g in groups:
                with on(g):
                    f(n, *a)
        return run

    def row_group(f):
        def run(*a):
            i = a[-2]  # (b, mv, i, n) or (i, n)
            with on(grp(i)):
                f(*a)
        return run

    epilogue, after_row, mask_heads = map(row_group, (epilogue, after_row, mask_heads))
    begin, end, done = map(each_group, (begin, end, done))
    matmul_rows(pb, name, mxms, weights, n_out, k_in, rows, x_loc, epilogue=epilogue,
                after_row=(after_row if residual is not None
                           else mask_heads if mask_heads_on else None), tile_begin=begin,
                tile_done=done if heads and not mask_heads_on else None, tile_end=end,
                hold_slots=lambda n: len(heads_of(n)) > 1 and not masked(n),
                weights_key=weights_key)
