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


DESIGNS: dict[str, DesignFactory] = {
    "fabric": _fabric,
}

DEFAULT_DESIGN = "fabric"


def get_design(name: str) -> DesignFactory:
    try:
        return DESIGNS[name]
    except KeyError:
        raise ValueError(f"unknown design {name!r}; designs are: {', '.join(DESIGNS)}") from None


def top_name(design: str) -> str:
    return f"tsp_{design}"
