"""`make cost`: synthesis of every unit and the chip, place and route of what fits an
ECP5-85, the config sweep and the reference point; a table on stdout, ``build/cost.json``
and ``build/cost.png``."""

from __future__ import annotations

import json
import time

from arch.config import TspConfig

from .build import BuildError, build_root
from .cost import ECP5_85K, UNITS, synth_unit
from .cost_pnr import PNR_TIMEOUT_S, pnr_unit
from .cost_sweep import chip_from_units, growth, plot, sweep, write

#: FeSens openTPU (github.com/FeSens/opentpu), as the issue quotes it
REFERENCE = {
    "name": "FeSens openTPU",
    "whole_design_yosys_estimate": {"lut": 85600, "ff": 42400, "dsp": 267, "bram36": 635,
                                    "mhz": 106},
    "mac_array_8x8_int8_ecp5_85_speed6": {"fmax_mhz": 81, "critical_path":
                                          "DSP into the 32-bit accumulator carry chain"},
}

#: units placed and routed, in this order (the others are reported by synthesis only)
PNR_ORDER = ("MEM", "ICU_MEM", "ICU_VXM", "ICU_MXM", "ICU_SXM", "SXM", "fabric", "chip")


def run_cost(cfg: TspConfig, *, pnr: bool = True, do_sweep: bool = True,
             pnr_timeout: float = PNR_TIMEOUT_S, log=print) -> dict:
    t0 = time.monotonic()
    log(f"== synthesis (yosys), {cfg.summary()}")
    units: dict[str, dict] = {}
    for u in UNITS:
        try:
            units[u] = synth_unit(cfg, u, log=log)
        except BuildError as e:
            units[u] = {"unit": u, "error": str(e)}
            log(f"  {u:8s} synthesis failed: {e}")
    if pnr:
        log("== place and route (nextpnr-ecp5, LFE5UM-85F speed 6) of what fits")
        for u in PNR_ORDER:
            e = units.get(u, {}).get("ecp5")
            if e is None:
                continue
            if not e["fits_ecp5_85"]:
                units[u]["pnr"] = {"status": "not attempted",
                                   "reason": "does not fit an ECP5-85: "
                                             + ", ".join(e["over_ecp5_85"])}
                continue
            units[u]["pnr"] = pnr_unit(cfg, u, timeout=pnr_timeout, log=log)
    result = {"config": cfg.to_dict(), "device_capacity_ecp5_85": ECP5_85K, "units": units,
              "reference": REFERENCE}
    if do_sweep:
        log("== sweep (generic counts)")
        sw = sweep(cfg, log=log)
        result["sweep"] = {"file": str(write(sw)), "plot": str(plot(sw)),
                           "growth_exponents": growth(sw)}
    result["seconds"] = round(time.monotonic() - t0, 1)
    out = build_root() / "cost.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    log("")
    log(table(result))
    if do_sweep:
        log("")
        log(growth_text(result["sweep"]["growth_exponents"]))
    log(f"\nwritten {out}" + (f", {result['sweep']['plot']}" if do_sweep else ""))
    return result


def _fmt(n) -> str:
    return "-" if n is None else f"{n:,}"


def table(result: dict) -> str:
    """The README table: one row per unit."""
    cfg = result["config"]["name"]
    lines = [
        f"| unit ({cfg}) | FF bits | mult | memory bits | LUT4-eq | FF | DP16KD | MULT18 "
        f"| fits ECP5-85 | fmax (MHz) | critical path |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---|",
    ]
    for u, r in result["units"].items():
        g, e, p = r.get("generic", {}), r.get("ecp5", {}), r.get("pnr", {})
        if p.get("status") == "routed":
            cp = p["critical_path"]
            fmax, path = f"{p['fmax_mhz']:.1f}", (f"{cp['from']} -> {cp['to']} "
                                                   f"({cp['logic_levels']} levels)")
        elif p:
            fmax, path = "-", f"{p['status']}: {p.get('reason', '')}"
        else:
            fmax, path = "-", "-"
        fits = "-" if not e else ("yes" if e["fits_ecp5_85"] else "no")
        lines.append(
            f"| {u} | {_fmt(g.get('ff_bits'))} | {_fmt(g.get('multipliers'))} | "
            f"{_fmt(g.get('memory_bits'))} | {_fmt(e.get('lut4_eq'))} | {_fmt(e.get('ff'))} | "
            f"{_fmt(e.get('dp16kd'))} | {_fmt(e.get('mult18x18d'))} | {fits} | {fmax} | "
            f"{path} |")
    return "\n".join(lines)


def growth_text(g: dict) -> str:
    rows = ["growth exponents b (cost ~ param**b, first to last sweep point; FF / logic bits):"]
    for param, units in g.items():
        rows.append(f"  {param:22s} " + "  ".join(
            f"{u} {v['ff_bits']}/{v['logic_bits']}" for u, v in units.items()))
    return "\n".join(rows)


__all__ = ["REFERENCE", "chip_from_units", "run_cost", "table"]
