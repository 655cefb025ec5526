"""The top-level designs that can be generated and simulated, by name.

Each entry builds an Amaranth component for a config; its Verilog module name
is ``tsp_<design>``.  The chip top joins this table when it exists.
"""

from __future__ import annotations

from collections.abc import Callable

from arch.config import TspConfig

DesignFactory = Callable[[TspConfig], object]


def _fabric(cfg: TspConfig):
    from hdl.probe import FabricProbeTop

    return FabricProbeTop(cfg)


def _chip(cfg: TspConfig):
    from hdl.chip import Chip

    return Chip(cfg)


def _system(chips: int) -> DesignFactory:
    def factory(cfg: TspConfig):
        from hdl.system import System

        return System(cfg, chips)

    return factory


#: systems of 1 (a chip whose links loop back), 2, 3 (SmolLM2's 3 KV heads: the layer
#: tensor-parallel) and 4 chips on a ring (`hdl.system`); their config must have links
#: (`TspConfig.with_links`)
SYSTEM_DESIGNS = {f"system{n}": n for n in (1, 2, 3, 4)}

DESIGNS: dict[str, DesignFactory] = {
    "chip": _chip,
    "fabric": _fabric,
    **{name: _system(n) for name, n in SYSTEM_DESIGNS.items()},
}

DEFAULT_DESIGN = "chip"

#: the modules each design is built from (their module-level imports are followed)
_MODULES: dict[str, tuple[str, ...]] = {
    "chip": ("hdl.chip", "hdl.vxm", "hdl.mxm", "hdl.sxm"),
    "fabric": ("hdl.probe",),
    **{name: ("hdl.system", "hdl.chip", "hdl.vxm", "hdl.mxm", "hdl.sxm")
       for name in SYSTEM_DESIGNS},
}


def design_modules(name: str) -> tuple[str, ...]:
    get_design(name)
    return _MODULES[name]


def get_design(name: str) -> DesignFactory:
    try:
        return DESIGNS[name]
    except KeyError:
        raise ValueError(f"unknown design {name!r}; designs are: {', '.join(DESIGNS)}") from None


def top_name(design: str) -> str:
    return f"tsp_{design}"
