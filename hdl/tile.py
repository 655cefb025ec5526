"""Superlane tile plumbing shared by every slice column.

A slice is a column of `cfg.superlanes` tiles.  Each tile connects to the
stream fabric of its own superlane through a `TileStreamsSignature` port, and
receives its instruction (control word) from the tile below it one cycle late:
the ICU issues into superlane 0 in the issue cycle `t`, superlane `k` acts in
cycle `t + k` (`SkewChain`).
"""

from amaranth import Cat, Module, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from arch.config import TspConfig


def superlane_layout(cfg: TspConfig) -> data.ArrayLayout:
    """One stream in one superlane tile: 16 lanes of one byte (lane 0 in bits 7:0)."""
    return data.ArrayLayout(8, cfg.lanes_per_superlane)


def streams_layout(cfg: TspConfig) -> data.ArrayLayout:
    """All streams of one direction in one superlane tile.

    Elements are plain 128-bit words (lane ``i`` in bits ``8i+7:8i``); slices
    that work per lane view one with `superlane_layout`.  Keeping the fabric's
    elements flat keeps the generated Verilog small (one name per stream, not
    per byte).
    """
    return data.ArrayLayout(cfg.superlane_bits, cfg.streams_per_direction)


class TileStreamsSignature(wiring.Signature):
    """A tile's port on the stream fabric of its superlane, seen from the tile.

    - ``e_in`` / ``w_in``: the eastward / westward stream registers at this
      position (what arrives here this cycle).
    - ``e_we[s]`` / ``e_out[s]``: overwrite eastward stream ``s`` with ``e_out[s]``;
      the value is at the next position east in the next cycle.  Likewise
      ``w_we`` / ``w_out`` westward.  Where a write enable is low the stream
      passes through unchanged.
    """

    def __init__(self, cfg: TspConfig):
        self.cfg = cfg
        layout = streams_layout(cfg)
        n = cfg.streams_per_direction
        super().__init__({
            "e_in": In(layout),
            "w_in": In(layout),
            "e_we": Out(n),
            "e_out": Out(layout),
            "w_we": Out(n),
            "w_out": Out(layout),
        })

    def __eq__(self, other):
        return isinstance(other, TileStreamsSignature) and self.cfg.params() == other.cfg.params()

    def __hash__(self):
        return hash(tuple(sorted(self.cfg.params().items())))

    def __repr__(self):
        return f"TileStreamsSignature({self.cfg.name})"


class SkewChain(wiring.Component):
    """Delays a control word by one cycle per superlane ("chained SIMD").

    ``o[0]`` is ``i`` (superlane 0 acts in the issue cycle); ``o[k]`` is ``i``
    delayed by ``k`` registers.  The registers carry no reset: callers include
    a valid bit in the layout and clear it with ``rst`` through ``valid_field``.
    ``busy`` is high while a valid word is on its way north (a valid bit in
    ``o[1..depth-1]``): part of the slice's in-flight state.
    """

    def __init__(self, layout, depth: int, *, valid_field: str | None = "valid"):
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
            raise ValueError(f"SkewChain depth must be an int >= 1, got {depth!r}")
        self._layout = data.Layout.cast(layout)
        if valid_field is not None and (not isinstance(self._layout, data.StructLayout)
                                        or valid_field not in self._layout.members):
            raise ValueError(f"SkewChain valid_field {valid_field!r} is not a field of the "
                             f"layout")
        self._depth = depth
        self._valid_field = valid_field
        super().__init__({"i": In(self._layout), "o": Out(self._layout).array(depth),
                          "busy": Out(1)})

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.o[0].eq(self.i)
        prev = self.i
        valids = []
        for k in range(1, self._depth):
            stage = Signal(self._layout, name=f"skew{k}", reset_less=True)
            m.d.sync += stage.eq(prev)
            if self._valid_field is not None:
                # the valid bit is reset so that no stale word acts after reset
                valid = Signal(name=f"skew{k}_valid")
                m.d.sync += valid.eq(getattr(prev, self._valid_field))
                m.d.comb += [self.o[k].eq(stage), getattr(self.o[k], self._valid_field).eq(valid)]
                valids.append(valid)
            else:
                m.d.comb += self.o[k].eq(stage)
            prev = self.o[k]
        m.d.comb += self.busy.eq(Cat(*valids).any() if valids else 0)
        return m
