# amaranth: UnusedElaboratable=no
"""sim/stamp.py: one Verilog module per kind of component, instances of it elsewhere."""

from __future__ import annotations

import re

import pytest
from amaranth import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from sim import stamp


class Adder(wiring.Component):
    def __init__(self, width: int, k: int):
        self.k = k
        super().__init__({"a": In(width), "y": Out(width + 1)})

    def elaborate(self, platform):
        m = Module()
        m.d.sync += self.y.eq(self.a + self.k)
        return m


class Shared(wiring.Component):
    """Holds a signal of its parent: cannot be generated on its own."""

    def __init__(self, outside: Signal):
        self.outside = outside
        super().__init__({"y": Out(8)})

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.y.eq(self.outside + 1)
        return m


class Top(wiring.Component):
    def __init__(self):
        super().__init__({"a": In(8), "ys": Out(9).array(4), "z": Out(8)})

    def elaborate(self, platform):
        m = Module()
        ks = [3, 3, 5, 3]
        for i, k in enumerate(ks):
            sub = m.submodules[f"add{i}"] = Adder(8, k)
            m.d.comb += [sub.a.eq(self.a), self.ys[i].eq(sub.y)]
        m.submodules.shared = shared = Shared(self.a)
        m.d.comb += self.z.eq(shared.y)
        return m


def _modules(text: str) -> list[str]:
    return re.findall(r"^module (\\\S+|[\w$]+)", text, re.M)


def test_one_module_per_stamp():
    text, modules = stamp.convert(Top(), "top")
    mods = _modules(text)
    # two kinds of Adder (k=3 three times, k=5 once); Shared is elaborated in place
    assert sorted(m for m in mods if "Adder" in m) == ["top__Adder", "top__Adder__1"]
    assert set(modules) == {"top__Adder", "top__Adder__1"}
    assert modules["top__Adder"] is Adder
    assert "\\top.shared" in mods
    instances = re.findall(r"^\s*(top__Adder\S*) (add\d) \(", text, re.M)
    assert sorted(instances) == [("top__Adder", "add0"), ("top__Adder", "add1"),
                                 ("top__Adder", "add3"), ("top__Adder__1", "add2")]
    # each instance has every port connected, the clock included
    for name in ("add0", "add2"):
        body = text[text.index(f" {name} ("):]
        body = body[:body.index(");")]
        assert {".clk(", ".rst(", ".a(", ".y("} <= set(re.findall(r"\.\w+\(", body))


def test_convert_gives_the_garbage_collector_back_as_it_was():
    """`convert` freezes the heap per stamped module and raises the collector's thresholds
    (docs/simulation.md, "Generation"); afterwards nothing is frozen and the thresholds are
    the caller's, also when the elaboration raises."""
    import gc

    before = gc.get_threshold()
    gc.set_threshold(123, 4, 5)
    try:
        stamp.convert(Top(), "top")
        assert gc.get_freeze_count() == 0 and gc.get_threshold() == (123, 4, 5)

        class Broken(Adder):
            def elaborate(self, platform):
                raise RuntimeError("broken tile")

        class BrokenTop(Top):
            def elaborate(self, platform):
                m = Module()
                m.submodules.b = Broken(8, 3)
                return m

        with pytest.raises(RuntimeError, match="broken tile"):
            stamp.convert(BrokenTop(), "top")
        assert gc.get_freeze_count() == 0 and gc.get_threshold() == (123, 4, 5)
    finally:
        gc.set_threshold(*before)


@pytest.mark.filterwarnings("ignore:.*created but never used")
class Wide(wiring.Component):
    """As many output bits as Amaranth can number in one cell, and one more."""

    def __init__(self, width: int):
        super().__init__({"a": In(8), "y": Out(width)})

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.y.eq(self.a.replicate(len(self.y) // 8 + 1))
        return m


class WideTop(wiring.Component):
    def __init__(self, width: int):
        super().__init__({"a": In(8), "y": Out(1)})
        self.width = width

    def elaborate(self, platform):
        m = Module()
        subs = [Wide(self.width) for _ in range(2)]
        for i, sub in enumerate(subs):
            m.submodules[f"w{i}"] = sub
            m.d.comb += sub.a.eq(self.a + i)
        m.d.comb += self.y.eq(subs[0].y[-1] ^ subs[1].y[-1])
        return m


def test_a_component_with_too_many_output_bits_is_elaborated_in_place():
    """An instance's outputs are one cell whose bits Amaranth numbers in 16 bits: a
    component with 2**16 output bits or more is not stamped (it used to fail inside
    Amaranth: the MXM weight buffer from 8 superlanes on); one bit fewer is."""
    text, modules = stamp.convert(WideTop(1 << 16), "top")
    assert not any(cls is Wide for cls in modules.values())
    text, modules = stamp.convert(WideTop((1 << 16) - 8), "top")
    assert sum(cls is Wide for cls in modules.values()) == 1


def test_stamp_keys():
    assert stamp.stamp_of(Adder(8, 3)) == stamp.stamp_of(Adder(8, 3))
    assert stamp.stamp_of(Adder(8, 3)) != stamp.stamp_of(Adder(8, 4))
    assert stamp.stamp_of(Adder(8, 3)) != stamp.stamp_of(Adder(9, 3))  # the signature
    assert stamp.stamp_of(Shared(Signal(8))) is None

    class Opaque(Adder):
        def __init__(self):
            self.thing = object()  # repr is an identity: not a parameter
            super().__init__(8, 1)

    assert stamp.stamp_of(Opaque()) is None


@pytest.mark.rtl  # shares the cached tiny3 Verilog (and its xdist group) with the RTL tests
@pytest.mark.parametrize("config", ["tiny3"])
def test_chip_tiles_are_one_module_each(config):
    """At tiny3 the MEM tiles, the superlane fabrics and the VXM tiles are one module each
    (the VXM tile's superlane number is a tie-off input)."""
    from arch.config import get_config
    from sim.build import generate_verilog

    cfg = get_config(config)
    text = generate_verilog(cfg, "chip").path.read_text()  # the cached build's Verilog
    mods = _modules(text)
    assert mods.count("tsp_chip__MemTile") == 1
    assert mods.count("tsp_chip__VxmTile") == 1
    assert mods.count("tsp_chip__SuperlaneStreams") == 1
    # one MemSlice module, instantiated per MEM slice, holds one MemTile per superlane
    n_mem = sum(1 for s in cfg.slices if s.kind == "MEM")
    assert len(re.findall(r"^\s*tsp_chip__MemSlice slice_MEM_\w+ \(", text, re.M)) == n_mem
    assert len(re.findall(r"^\s*tsp_chip__MemTile tile\d+ \(", text, re.M)) == cfg.superlanes
    # instance names (hierarchical paths) are unchanged
    assert len(re.findall(r"^\s*tsp_chip__SuperlaneStreams superlane\d \(", text, re.M)) == \
        cfg.superlanes


@pytest.mark.rtl  # shares the cached tiny3 Verilog (and its xdist group) with the RTL tests
def test_verilator_inlines_the_leaves_and_keeps_one_class_per_tile():
    """The Verilator control lines name every stamped module of the chip once: the VXM
    lanes and the MAC blocks inlined into their tile, every other module (the tiles, the
    slices, the queues, the fabric) kept a class of its own."""
    from arch.config import get_config
    from sim.build import generate_verilog, inline_vlt

    art = generate_verilog(get_config("tiny3"), "chip")
    mods = set(_modules(art.sim_path.read_text())) - {art.top}
    lines = [ln.split() for ln in inline_vlt(art).splitlines() if not ln.startswith("//")]
    said = {name.strip('"'): verb for verb, _, name in lines}
    assert len(said) == len(lines)
    stamped = {m for m in mods if m.startswith(f"{art.top}__")}
    assert set(said) == stamped
    inlined = {m for m, verb in said.items() if verb == "inline"}
    assert inlined == {"tsp_chip__VxmLane", "tsp_chip__MxmMacBlock"}
    assert {"tsp_chip__MemTile", "tsp_chip__VxmTile", "tsp_chip__MxmMacArray",
            "tsp_chip__SuperlaneStreams"} <= {m for m, v in said.items() if v == "no_inline"}
