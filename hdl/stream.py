"""The stream-register fabric: eastward and westward streams between slices.

For every superlane, direction, position and stream there is one register of
16 bytes.  In each cycle the slice at position ``p`` reads the registers at
``p`` and may overwrite any of them; at the clock edge the value moves one hop::

    E[p+1][s] <= e_we[p][s] ? e_out[p][s] : E[p][s]
    W[p-1][s] <= w_we[p][s] ? w_out[p][s] : W[p][s]

so a value written at ``p`` in cycle ``t`` is at ``p +- d`` in cycle ``t + d``.
``E[0]`` and ``W[P-1]`` have no producer and read as zero.  The registers are
not reset (datapath); a value means what the program says it means.
"""

from amaranth import Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In

from arch.config import TspConfig

from .slice import check_slice_config
from .tile import TileStreamsSignature, streams_layout


class SuperlaneStreams(wiring.Component):
    """The stream registers of one superlane, all positions, both directions.

    ``taps[p]`` is the fabric side of the tile port at position ``p``.
    """

    def __init__(self, cfg: TspConfig, superlane: int = 0):
        check_slice_config("SuperlaneStreams", cfg)
        if isinstance(superlane, bool) or not isinstance(superlane, int):
            raise ValueError(f"SuperlaneStreams: superlane must be an int, got {superlane!r}")
        if not 0 <= superlane < cfg.superlanes:
            raise ValueError(f"superlane must be in [0, {cfg.superlanes - 1}], got {superlane}")
        self.cfg = cfg  # the superlane index only names the instance: one module for all
        super().__init__({"taps": In(TileStreamsSignature(cfg)).array(cfg.n_positions)})

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        P, n = cfg.n_positions, cfg.streams_per_direction
        layout = streams_layout(cfg)
        east = [Signal(layout, name=f"e_p{p}", reset_less=True) for p in range(P)]
        west = [Signal(layout, name=f"w_p{p}", reset_less=True) for p in range(P)]
        for p in range(P):
            tap = self.taps[p]
            m.d.comb += [tap.e_in.eq(east[p]), tap.w_in.eq(west[p])]
            for s in range(n):
                if p + 1 < P:
                    m.d.sync += east[p + 1][s].eq(Mux(tap.e_we[s], tap.e_out[s], east[p][s]))
                if p >= 1:
                    m.d.sync += west[p - 1][s].eq(Mux(tap.w_we[s], tap.w_out[s], west[p][s]))
        return m


class StreamFabric(wiring.Component):
    """The whole fabric: one `SuperlaneStreams` per superlane.

    ``taps[p][k]`` is the port of the tile of superlane ``k`` at position ``p``.
    """

    def __init__(self, cfg: TspConfig):
        check_slice_config("StreamFabric", cfg)
        self.cfg = cfg
        super().__init__({
            "taps": In(TileStreamsSignature(cfg)).array(cfg.n_positions, cfg.superlanes),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        for k in range(cfg.superlanes):
            sl = m.submodules[f"superlane{k}"] = SuperlaneStreams(cfg, k)
            for p in range(cfg.n_positions):
                wiring.connect(m, wiring.flipped(self.taps[p][k]), sl.taps[p])
        return m
