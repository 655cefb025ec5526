"""Row-streamed matrix product ``Y[i] = W X[i]`` tiled over any K and N, on one MXM or
spread over several (output tile ``n`` on ``mxms[n % len(mxms)]``).

The weight matrix ``W`` (``n_out x k_in`` int8, host constants, tiles of VL x VL rows
as `ProgramBuilder.weights` lays them out) is installed tile by tile; every input row
``X[i]`` (one int8 vector per K tile) is streamed through it.  For output tile ``n`` the
K tiles accumulate in one MXM accumulator slot per row (``S`` slots held while
``k_in > VL``; a scratch slot otherwise) and the last K tile emits the int32 sum, which
the caller's *epilogue* consumes inside the same bundle (bias add, requantisation, a
table lookup, a residual add, a write ...).

Timing: per output tile, ``ceil(k_in / VL)`` installs (weight rows loaded into the
shadow buffer while the previous tile computes, as many per load as leave the MEM a read
port for the MVMs' inputs: `ProgramBuilder.load_width`) and ``S`` MVMs per K tile, one per
cycle on the MXM; the epilogue's VXM op is fed ``2S+2`` cycles after the MVM issues.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from .. import tiling as T
from ..builder import ProgramBuilder
from ..ir import Bundle, Op


def matmul_rows(pb: ProgramBuilder, name: str, mxm: str | Sequence[str], weights,
                n_out: int, k_in: int,
                rows: int, x_loc: Callable[[int, int], tuple[str, int]], *,
                epilogue: Callable[[Bundle, Op, int, int], None],
                after_row: Callable[[int, int], None] | None = None,
                tile_begin: Callable[[int], None] | None = None,
                tile_end: Callable[[int], None] | None = None,
                tile_done: Callable[[int, list[int] | None], None] | None = None,
                hold_slots: Callable[[int], bool] | None = None,
                kind: str | None = None, weights_key: str | None = None) -> None:
    """Lower ``Y[i] = W X[i]`` for ``i < rows`` (see the module docstring).

    ``mxm``: one MXM slice name, or several: the output tiles go to them in turn, so that
    their installs and MVMs overlap (an MXM in the other hemisphere than ``weights`` and
    X reads them across the VXM).

    ``x_loc(i, k)``: where row ``i``, K tile ``k`` of X is.  ``epilogue(b, mvm, i, n)``:
    adds the consumer of the emitted sum of row ``i``, output tile ``n`` to bundle ``b``
    (connect ``mvm``'s ``out``).  ``after_row(i, n)``: appends bundles that follow that
    row's result (e.g. a residual add).  ``tile_begin(n)`` / ``tile_end(n)``: per output
    tile set-up (register constants) and release.  ``hold_slots(n)``: keep one slot per
    row for tile ``n`` even with one K tile, so that ``tile_done(n, slots)`` can reuse
    the accumulators (e.g. re-emit them with other requantisations) before they are
    given back.  Bundles are named after ``name`` (kind ``kind``, default
    ``<name>.mvm``); the weight installs are keyed by ``weights_key`` (default ``name``),
    so that the same weights are not installed twice in a row."""
    vl = pb.vl
    kt = T.ntiles(k_in, vl)
    mxms = [mxm] if isinstance(mxm, str) else list(mxm)
    # where the MVMs read their inputs (both sides for an input dealt over both)
    x_sides = {pb.cfg.slice(x_loc(i, k)[0]).hemisphere for i in range(rows)
               for k in range(kt)}
    for n in range(T.ntiles(n_out, vl)):
        mxm = mxms[n % len(mxms)]
        if tile_begin:
            tile_begin(n)
        hold = kt > 1 or (hold_slots is not None and hold_slots(n))
        slots = pb.slots[mxm].take(rows) if hold else None
        for k in range(kt):
            ins = pb.install(mxm, (weights_key or name, n, k), [(r, weights.loc(n, k, r))
                                                 for r in range(pb.rows_of_tile(n_out, n))],
                             stream=(rows, x_sides))
            last = k == kt - 1
            for i in range(rows):
                b = Bundle(f"{name}[{n}] row {i} pass {k}", kind or f"{name}.mvm")
                rd = pb.O.read(b, *x_loc(i, k))
                slot = slots[i] if slots else pb.slots[mxm].scratch()
                mv = pb.O.mvm(b, mxm, slot, k > 0, last, ins)
                b.connect(rd, "out", mv, "x")
                if last:
                    epilogue(b, mv, i, n)
                pb.emit(b)
                if last and after_row:
                    after_row(i, n)
        if tile_done:
            tile_done(n, slots)
        if slots:
            pb.slots[mxm].give(slots)
        if tile_end:
            tile_end(n)
