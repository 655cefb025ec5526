"""The probe slice and the fabric test top.

`ProbeSlice` is a test slice column: on command it writes a vector onto one
stream, or captures one stream, with the superlane skew of a real slice (the
command enters superlane 0 in its issue cycle and moves north one tile per
cycle).  `FabricProbeTop` puts a probe at every slice position of a config on
the real `StreamFabric`, so a testbench can drive producers and consumers at
any position and cycle and check hop timing, overwrites and skew.

Timing: a command presented on ``ctl_*[p]`` in cycle ``t`` acts in superlane
``k`` in cycle ``t + k``.  A write is at the neighbouring position in the next
cycle; a read captures the stream register at ``p`` and shows it on
``rd_data[p][k]`` (with ``rd_valid``) in cycle ``t + k + 1``.
"""

from amaranth import Module
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from arch.config import TspConfig

from .slice import check_slice_config
from .stream import StreamFabric
from .tile import SkewChain, TileStreamsSignature


def probe_command_layout(cfg: TspConfig) -> data.StructLayout:
    return data.StructLayout({
        "valid": 1,
        "write": 1,  # 1: write data onto the stream; 0: capture the stream
        "west": 1,  # direction: 0 eastward, 1 westward
        "stream": cfg.stream_index_bits,
        "data": data.ArrayLayout(cfg.superlane_bits, cfg.superlanes),
    })


class ProbeSlice(wiring.Component):
    """A slice column that writes or captures one stream per command."""

    def __init__(self, cfg: TspConfig):
        check_slice_config("ProbeSlice", cfg)
        self.cfg = cfg
        S = cfg.superlanes
        super().__init__({
            "cmd": In(probe_command_layout(cfg)),
            "tiles": Out(TileStreamsSignature(cfg)).array(S),
            "rd_valid": Out(1).array(S),
            "rd_data": Out(cfg.superlane_bits).array(S),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        m.submodules.skew = skew = SkewChain(probe_command_layout(cfg), cfg.superlanes)
        m.d.comb += skew.i.eq(self.cmd)
        for k in range(cfg.superlanes):
            c, tile = skew.o[k], self.tiles[k]
            for s in range(cfg.streams_per_direction):
                hit = c.valid & c.write & (c.stream == s)
                m.d.comb += [
                    tile.e_we[s].eq(hit & ~c.west),
                    tile.w_we[s].eq(hit & c.west),
                    tile.e_out[s].eq(c.data[k]),
                    tile.w_out[s].eq(c.data[k]),
                ]
            m.d.sync += self.rd_valid[k].eq(c.valid & ~c.write)
            with m.If(c.valid & ~c.write):
                with m.If(c.west):
                    m.d.sync += self.rd_data[k].eq(tile.w_in[c.stream])
                with m.Else():
                    m.d.sync += self.rd_data[k].eq(tile.e_in[c.stream])
        return m


class FabricProbeTop(wiring.Component):
    """The stream fabric of a config with a `ProbeSlice` at every position."""

    def __init__(self, cfg: TspConfig):
        check_slice_config("FabricProbeTop", cfg)
        self.cfg = cfg
        P, S = cfg.n_positions, cfg.superlanes
        super().__init__({
            "ctl_valid": In(1).array(P),
            "ctl_write": In(1).array(P),
            "ctl_west": In(1).array(P),
            "ctl_stream": In(cfg.stream_index_bits).array(P),
            "ctl_data": In(cfg.vector_length * 8).array(P),
            "rd_valid": Out(1).array(P, S),
            "rd_data": Out(cfg.superlane_bits).array(P, S),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        m.submodules.fabric = fabric = StreamFabric(cfg)
        for p, pos in enumerate(cfg.slices):
            probe = m.submodules[f"probe_{pos.name}"] = ProbeSlice(cfg)
            m.d.comb += [
                probe.cmd.valid.eq(self.ctl_valid[p]),
                probe.cmd.write.eq(self.ctl_write[p]),
                probe.cmd.west.eq(self.ctl_west[p]),
                probe.cmd.stream.eq(self.ctl_stream[p]),
                probe.cmd.data.as_value().eq(self.ctl_data[p]),
            ]
            for k in range(cfg.superlanes):
                wiring.connect(m, fabric.taps[p][k], probe.tiles[k])
                m.d.comb += [
                    self.rd_valid[p][k].eq(probe.rd_valid[k]),
                    self.rd_data[p][k].eq(probe.rd_data[k]),
                ]
        return m
