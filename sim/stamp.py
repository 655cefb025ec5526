"""Verilog with one module per kind of tile, not one per instance.

Amaranth elaborates and emits every component instance on its own: the 16 MEM
tiles of `small` become 16 identical Verilog modules with different names, each
built into a netlist in Python, written by yosys, parsed and compiled to C++ by
Verilator.  `convert` does what a hand-written design does instead: every
`wiring.Component` is generated once per distinct *stamp* (its class and its
parameters) as a module of its own, and each instance becomes an ``Instance`` of
that module.  Generation, Verilog size and Verilator's C++ then grow with the
number of kinds of tile, not with the number of tiles.

A component's stamp is its class, its ports (path, direction, shape) and every
attribute it holds that is not a port (``cfg``, a layout, a depth, ...): `elaborate`
sees nothing else, so two
components with the same stamp elaborate to the same hardware.  A component that
holds a `Value` outside its signature (shared state with its parent) or an
attribute without a stable ``repr`` is elaborated in place, as Amaranth would.

Instance names, and so hierarchical paths (``tsp_chip.fabric.superlane1``), are
unchanged; module names are ``<top>__<Class>`` (``__<n>`` for further stamps of
the same class).  `modules` maps each generated module to the component class it
was made from.

Amaranth's netlist is objects per bit, many in cycles, and CPython's cyclic collector
traverses the whole heap again each time it grows by a quarter.  `convert` therefore
freezes (`gc.freeze`) the heap it starts with, collects and freezes again after each
stamped module (what that module left is garbage or final), and runs the collector's
young generations less often (`GC_THRESHOLD`); all restored on return.  `medium`: 44.8
-> 31.5 s at the same peak memory (663 MB); with the collector off instead, 29.8 s but
1.7 GB (docs/simulation.md, "Generation").
"""

from __future__ import annotations

import gc
import re
from dataclasses import dataclass, field

#: the collector's thresholds while `convert` runs (CPython's default: 700, 10, 10)
GC_THRESHOLD = (10_000, 10, 100)

_ADDR = re.compile(r" at 0x[0-9a-f]+")
_PORT = re.compile(r"^\s*wire\b.*\b(input|output|inout)\s+\d+\s+(?:signed\s+)?\\(\S+)\s*$")


@dataclass
class _Stamped:
    module: str
    ports: dict[str, str]  # port name -> "input"/"output"/"inout"
    cls: type


@dataclass
class _Context:
    top: str
    emit_src: bool
    platform: object = None
    stamps: dict[tuple, _Stamped | None] = field(default_factory=dict)
    texts: list[str] = field(default_factory=list)
    names: dict[str, int] = field(default_factory=dict)
    roots: set[int] = field(default_factory=set)


def _ports(component) -> dict[str, tuple[object, str]]:
    """Port name -> (value, "i"/"o"), named as Amaranth names a top's ports."""
    from amaranth.hdl import _ast
    from amaranth.lib import wiring

    out = {}
    for path, member, value in component.signature.flatten(component):
        if isinstance(value, _ast.ValueCastable):
            value = value.as_value()
        if isinstance(value, _ast.Value):
            out["__".join(map(str, path))] = (value, "i" if member.flow == wiring.In else "o")
    return out


#: Amaranth 0.5 numbers a cell's output bits in 16 bits (`_nir.Net.from_cell`): the
#: input bits of a module generated on its own (its top's inputs are one cell) and the
#: output bits of an instance of it.  A component with more of either is elaborated in
#: place (the stream fabric of a superlane at `layer`: 19 positions x 2 directions x 16
#: streams x 129 bits in, and at `full`; from 8 superlanes on, the MXM weight buffer's
#: rows out: VL x VL bytes, which made such configs fail inside Amaranth)
_MAX_PORT_BITS = 1 << 16


def _port_bits(component) -> int:
    """The larger of ``component``'s input and output bits."""
    bits = {"i": 0, "o": 0}
    for v, d in _ports(component).values():
        bits[d] += len(v)
    return max(bits.values())


def stamp_of(component) -> tuple | None:
    """(class, parameters) of a component, or None where it cannot be shared (it holds
    a `Value` that is not one of its ports, or something without a stable repr)."""
    from amaranth.hdl import _ast
    from amaranth.lib import wiring

    if not isinstance(component, wiring.Component):
        return None
    members = {path[0] for path, _m in component.signature.members.flatten()}
    state = []
    for name, value in sorted(vars(component).items()):
        if name in members or name.startswith(("_MustUse", "_Component__")):
            continue
        if isinstance(value, (_ast.Value, _ast.ValueCastable)):
            return None
        text = repr(value)
        if _ADDR.search(text):  # default object repr: identity, not parameters
            return None
        state.append((name, text))
    ports = tuple((path, repr(member)) for path, member in component.signature.members.flatten()
                  if member.is_port)
    return (type(component).__module__, type(component).__qualname__, tuple(state), ports)


def _module_name(ctx: _Context, cls: type) -> str:
    base = f"{ctx.top}__{cls.__name__}"
    n = ctx.names.get(base, 0)
    ctx.names[base] = n + 1
    return base if n == 0 else f"{base}__{n}"


def _rtlil_ports(text: str, module: str) -> dict[str, str] | None:
    """The ports of `module` in RTLIL text, or None if it was not emitted (empty)."""
    ports, inside = {}, False
    for line in text.splitlines():
        if line.startswith("module "):
            inside = line.split()[1] == "\\" + module
        elif inside:
            if line.startswith("end"):
                return ports
            m = _PORT.match(line)
            if m:
                ports[m.group(2)] = m.group(1)
    return None


def _standalone(ctx: _Context, component, name: str) -> str:
    from amaranth.back import rtlil
    from amaranth.hdl import _ir

    ctx.roots.add(id(component))
    fragment = _ir.Fragment.get(component, ctx.platform)
    ports = {n: (v, _ir.PortDirection.Input if d == "i" else _ir.PortDirection.Output)
             for n, (v, d) in _ports(component).items()}
    text, _ = rtlil.convert_fragment(fragment, ports, name, emit_src=ctx.emit_src)
    return text


def _instance(ctx: _Context, component, stamped: _Stamped):
    from amaranth.hdl import ClockSignal, Instance, ResetSignal

    component._MustUse__used = True
    ports = _ports(component)
    missing = sorted(set(ports) - set(stamped.ports))
    if missing:
        raise RuntimeError(f"module {stamped.module} lacks ports {missing[:4]} of the "
                           f"signature of {type(component).__name__}")
    args = []
    for name in stamped.ports:
        if name in ports:
            value, d = ports[name]
            args.append((d, name, value))
        elif name in ("clk", "rst") or name.endswith(("_clk", "_rst")):
            domain = "sync" if name in ("clk", "rst") else name[:-4]
            signal = ClockSignal if name.endswith("clk") else ResetSignal
            args.append(("i", name, signal(domain)))
        else:
            raise RuntimeError(f"module {stamped.module} has port {name!r} that is neither "
                               f"in the signature of {type(component).__name__} nor a clock "
                               "or reset")
    return Instance(stamped.module, *args)


def convert(component, top: str, *, emit_src: bool = True, platform=None) -> tuple[str, dict]:
    """Amaranth -> Verilog with one module per stamp.  Returns (Verilog text,
    {module name: component class} of the stamped modules)."""
    from amaranth.back import rtlil, verilog
    from amaranth.hdl import _ir

    ctx = _Context(top, emit_src, platform)
    original_get = _ir.Fragment.get

    def get(obj, platform):
        if id(obj) in ctx.roots:
            return original_get(obj, platform)
        key = stamp_of(obj)
        if key is None:
            return original_get(obj, platform)
        if key not in ctx.stamps and _port_bits(obj) >= _MAX_PORT_BITS:
            ctx.stamps[key] = None
        if key not in ctx.stamps:
            name = _module_name(ctx, type(obj))
            text = _standalone(ctx, obj, name)
            gc.collect()  # (what the module's netlist left; the rest is kept: frozen)
            gc.freeze()
            ports = _rtlil_ports(text, name)
            if ports is None:  # empty module: Amaranth emits nothing for it
                ctx.stamps[key] = None
                ctx.roots.discard(id(obj))
                return original_get(obj, platform)
            ctx.texts.append(text)
            ctx.stamps[key] = _Stamped(name, ports, type(obj))
        stamped = ctx.stamps[key]
        if stamped is None:
            return original_get(obj, platform)
        return _instance(ctx, obj, stamped)

    _ir.Fragment.get = staticmethod(get)
    threshold = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLD)
    try:
        ctx.roots.add(id(component))
        top_text = rtlil.convert(component, name=top, emit_src=emit_src, platform=platform)
    finally:
        _ir.Fragment.get = original_get
        gc.unfreeze()
        gc.set_threshold(*threshold)
    text = verilog._convert_rtlil_text("\n".join([top_text, *ctx.texts]))
    modules = {s.module: s.cls for s in ctx.stamps.values() if s is not None}
    return text, modules
