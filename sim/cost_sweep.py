"""How cost grows with the config: one parameter varied at a time from a base config.

For each point every unit is synthesised with the generic (technology-independent) flow of
`sim.cost` (fast; the ECP5 mapping of the big units takes minutes each) and the chip is
counted as the sum of its units (instances from the config: 2 x MEM slices per hemisphere,
2 x MXMs, 2 SXMs, 1 VXM, one ICU per position, the fabric).  The chip's own synthesis at the
base config checks that sum (the chip adds only its host interface and counters).

Axes: superlanes, streams per direction, MEM depth.  The VXM has no group parameter in this
RTL (one VXM of two chained ALUs per lane), so there is no VXM-groups axis.
"""

from __future__ import annotations

import json

from arch.config import TspConfig

from .build import BuildError, build_root
from .cost import synth_unit

#: parameter -> values swept (others as the base config)
AXES: dict[str, tuple[int, ...]] = {
    # (superlanes 4 and 32 streams: the MXM, and the fabric, alone as a top module then fail
    # in Amaranth's RTLIL backend, an AssertionError in emit_top_ports: net index >= 2**16)
    "superlanes": (1, 2, 3),
    "streams_per_direction": (8, 16, 24),
    "mem_depth": (256, 1024, 4096),
}

SWEEP_UNITS = ("MEM", "VXM", "MXM", "SXM", "ICU_MEM", "fabric")
METRICS = ("ff_bits", "logic_bits", "multipliers", "memory_bits")


def instances(cfg: TspConfig) -> dict[str, int]:
    """How many of each unit the chip of `cfg` has (ICU_MEM stands for every ICU)."""
    return {"MEM": 2 * cfg.mem_slices_per_hemisphere, "VXM": cfg.vxm_groups,
            "MXM": 2 * cfg.mxms_per_hemisphere, "SXM": 2, "ICU_MEM": cfg.n_positions,
            "fabric": 1}


def chip_from_units(cfg: TspConfig, units: dict[str, dict]) -> dict[str, int]:
    n = instances(cfg)
    return {k: sum(n[u] * units[u][k] for u in SWEEP_UNITS) for k in METRICS}


def sweep(base: TspConfig, axes: dict[str, tuple[int, ...]] = AXES, log=print) -> dict:
    """Generic counts per unit and chip (sum of units) at every point of every axis."""
    out: dict = {"base": base.to_dict(), "axes": {}}
    for param, values in axes.items():
        points = []
        for v in values:
            cfg = base.replace(name=f"{base.name}-{param}{v}", **{param: v})
            log(f"sweep {param}={v}: {cfg.summary()}")
            units = {}
            for u in SWEEP_UNITS:
                try:
                    g = synth_unit(cfg, u, ecp5=False, log=log)["generic"]
                except Exception as e:  # name the point that failed
                    raise BuildError(f"sweep {param}={v}: {u} failed: "
                                     f"{type(e).__name__}: {e}") from e
                units[u] = {k: g[k] for k in METRICS}
            points.append({"value": v, "config": cfg.to_dict(), "units": units,
                           "chip_from_units": chip_from_units(cfg, units)})
        out["axes"][param] = points
    return out


def plot(result: dict, path=None):
    """Two rows (flip-flop bits, logic bits) x one column per axis, log scale, a line per
    unit and the chip; written to build/cost.png."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    axes = list(result["axes"])
    fig, grid = plt.subplots(2, len(axes), figsize=(4.2 * len(axes), 7), squeeze=False)
    for j, param in enumerate(axes):
        pts = result["axes"][param]
        xs = [p["value"] for p in pts]
        for i, metric in enumerate(("ff_bits", "logic_bits")):
            ax = grid[i][j]
            for u in SWEEP_UNITS:
                ax.plot(xs, [p["units"][u][metric] for p in pts], marker="o", label=u)
            ax.plot(xs, [p["chip_from_units"][metric] for p in pts], marker="s", color="k",
                    linewidth=2, label="chip (sum)")
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_xticks(xs, [str(x) for x in xs])
            ax.set_xlabel(param.replace("_", " "))
            ax.set_ylabel({"ff_bits": "flip-flop bits", "logic_bits": "logic bits "
                           "(comb. cell outputs)"}[metric])
            ax.grid(True, which="both", alpha=0.3)
    grid[0][0].legend(fontsize=7)
    fig.suptitle(f"OpenTSP cost vs config (generic yosys synthesis; base {result['base']['name']})")
    fig.tight_layout()
    path = path or build_root() / "cost.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def growth(result: dict) -> dict[str, dict[str, float]]:
    """Per axis and unit: the exponent b of metric ~ value**b between the first and last
    point (flip-flop and logic bits), a one-number summary of how it scales."""
    import math

    out: dict = {}
    for param, pts in result["axes"].items():
        a, b = pts[0], pts[-1]
        r = math.log(b["value"] / a["value"])
        out[param] = {}
        for u in (*SWEEP_UNITS, "chip"):
            va = a["chip_from_units"] if u == "chip" else a["units"][u]
            vb = b["chip_from_units"] if u == "chip" else b["units"][u]
            out[param][u] = {m: round(math.log(vb[m] / va[m]) / r, 2) if va[m] and vb[m] else None
                             for m in ("ff_bits", "logic_bits")}
    return out


def write(result: dict, path=None):
    path = path or build_root() / "cost_sweep.json"
    path.write_text(json.dumps(result, indent=1))
    return path
