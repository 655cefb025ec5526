"""`make cost`: synthesis of every unit and the chip, place and route of what fits an
ECP5-85, the config sweep and the reference point; a table on stdout, ``build/cost.json``
and ``build/cost.png``."""

from __future__ import annotations

import json
import re
import time

from arch.config import KINDS as SLICE_KINDS
from arch.config import TspConfig

from .build import BuildError, build_root
from .cli import Refused
from .cost import (
    ECP5_85K,
    PARTIAL_UNITS,
    SUBUNITS,
    UNITS,
    ecp5_summary,
    load_rows,
    synth_unit,
)
from .cost_pnr import PNR_TIMEOUT_S, harness_bound, pnr_unit
from .cost_sweep import chip_from_units, growth, plot, sweep, write

#: FeSens openTPU (github.com/FeSens/opentpu), as the issue quotes it
REFERENCE = {
    "name": "FeSens openTPU",
    "whole_design_yosys_estimate": {"lut": 85600, "ff": 42400, "dsp": 267, "bram36": 635,
                                    "mhz": 106},
    "mac_array_8x8_int8_ecp5_85_speed6": {"fmax_mhz": 81, "critical_path":
                                          "DSP into the 32-bit accumulator carry chain"},
}

#: units placed and routed, in this order, if they fit (one ICU stands for all: the four
#: differ only in their decode checks)
PNR_ORDER = ("MEM", "ICU_MEM", "MXM", "SXM", "VXM", "fabric", "chip")
#: units not placed, and why
PNR_SKIP = {"fabric": "not placed: its logic is one 2:1 mux (the write enable) between two "
                      "registers per bit, and its {ports:,} port bits would each need a "
                      "harness flip-flop"}


def chip_ecp5_from_units(cfg: TspConfig, units: dict[str, dict]) -> dict:
    """The chip's ECP5 resources as the sum of its units (each slice with its ICU, and the
    fabric); the chip adds its host interface and counters (compare the generic counts)."""
    parts = [("fabric", 1)]
    for kind in SLICE_KINDS:
        n = len(cfg.slices_of(kind))
        if n:  # (C2C: only in configs with links)
            parts += [(kind, n), (f"ICU_{kind}", n)]
    keys = ("lut4", "ccu2c", "lut4_eq", "dpr16x4", "ff", "dp16kd", "mult18x18d")
    if any("ecp5" not in units.get(u, {}) for u, _ in parts):
        return {}
    tot = {k: sum(n * units[u]["ecp5"][k] for u, n in parts) for k in keys}
    tot["fits_ecp5_85"] = ecp5_summary({"LUT4": tot["lut4_eq"], "TRELLIS_FF": tot["ff"],
                                        "DP16KD": tot["dp16kd"],
                                        "MULT18X18D": tot["mult18x18d"]})["fits_ecp5_85"]
    tot["instances"] = dict(parts)
    return tot


def place_subunits(cfg: TspConfig, unit: str, whole: dict, timeout: float, log) -> dict:
    """`unit` did not route: place each of `SUBUNITS[unit]` alone.  The record keeps the
    whole unit's outcome and gives the lowest unit fmax as an upper bound of the slice's
    (the paths between the units and from the slice's decode are not in any of them)."""
    subs = {s: pnr_unit(cfg, s, timeout=timeout, log=log) for s in SUBUNITS[unit]}
    routed = {s: r for s, r in subs.items() if r.get("status") == "routed"}
    rec = {"status": "units routed" if len(routed) == len(subs) else "not routed",
           "whole": whole, "subunits": subs,
           "reason": f"the whole {unit} did not route ({whole.get('reason', whole['status'])})"}
    if routed:
        # a unit whose worst path is the harness's is faster than its figure: it limits
        # the bound only if nothing else does
        low = min(routed, key=lambda s: (harness_bound(routed[s]["critical_path"]),
                                         routed[s]["fmax_mhz"]))
        rec.update(fmax_upper_bound_mhz=routed[low]["fmax_mhz"], limiting_subunit=low,
                   critical_path=routed[low]["critical_path"])
    return rec


def run_cost(cfg: TspConfig, *, pnr: bool = True, do_sweep: bool = True, chip_ecp5: bool = False,
             pnr_timeout: float = PNR_TIMEOUT_S, pnr_units: tuple[str, ...] = PNR_ORDER,
             log=print) -> dict:
    """Everything `make cost` does.  The chip is mapped to ECP5 only with `chip_ecp5` (it
    takes long and cannot fit: its ECP5 figure is otherwise the sum of its units)."""
    t0 = time.monotonic()
    log(f"== synthesis (yosys), {cfg.summary()}")
    units: dict[str, dict] = {}
    for u in UNITS:
        try:
            units[u] = synth_unit(cfg, u, ecp5=u != "chip" or chip_ecp5, log=log)
        except BuildError as e:
            units[u] = {"unit": u, "error": str(e)}
            log(f"  {u:8s} synthesis failed: {e}")
    chip_sum = chip_ecp5_from_units(cfg, units)
    if pnr:
        log("== place and route (nextpnr-ecp5, LFE5UM-85F speed 6) of what fits")
        for u in PNR_ORDER:
            e = units.get(u, {}).get("ecp5")
            if u not in pnr_units:
                why = ("does not fit an ECP5-85: " + ", ".join(e["over_ecp5_85"]) + "; "
                       if e and not e["fits_ecp5_85"] else "")
                units[u]["pnr"] = {"status": "not attempted",
                                   "reason": why + "not selected (--pnr-units)"}
                continue
            if u in PNR_SKIP:
                from .cost_pnr import PnrHarness

                ports = sum(PnrHarness(UNITS[u][0](cfg)).port_bits())
                units[u]["pnr"] = {"status": "not attempted",
                                   "reason": PNR_SKIP[u].format(ports=ports)}
                continue
            if u == "chip" and e is None and chip_sum and not chip_sum["fits_ecp5_85"]:
                units[u]["pnr"] = {"status": "not attempted", "reason": (
                    f"its units alone need {chip_sum['lut4_eq']:,} LUT4-eq, "
                    f"{chip_sum['mult18x18d']} MULT18X18D (ECP5-85: {ECP5_85K['lut4']:,}, "
                    f"{ECP5_85K['mult18']})")}
                continue
            if e is None:
                continue
            if e["fits_ecp5_85"]:
                units[u]["pnr"] = pnr_unit(cfg, u, timeout=pnr_timeout, log=log)
                if units[u]["pnr"]["status"] != "routed" and u in SUBUNITS:
                    units[u]["pnr"] = place_subunits(cfg, u, units[u]["pnr"], pnr_timeout, log)
                continue
            reason = "does not fit an ECP5-85: " + ", ".join(e["over_ecp5_85"])
            units[u]["pnr"] = {"status": "not attempted", "reason": reason}
            part = PARTIAL_UNITS.get(u)
            pe = units.get(part, {}).get("ecp5")
            if pe and pe["fits_ecp5_85"]:
                # every path of the slice, fewer of its identical lanes / rows
                units[u]["pnr"] = {**pnr_unit(cfg, part, timeout=pnr_timeout, log=log),
                                   "placed_as": part, "placed_as_what": UNITS[part][1],
                                   "note": reason}
            elif all(o.startswith("MULT18X18D") for o in e["over_ecp5_85"]):
                # short of DSPs only: place it with its multipliers in LUTs
                r = synth_unit(cfg, u, ecp5=False, nodsp=True, log=log)
                units[u]["ecp5_nodsp"] = n = r["ecp5_nodsp"]
                if n["fits_ecp5_85"]:
                    units[u]["pnr"] = {**pnr_unit(cfg, u, timeout=pnr_timeout, nodsp=True,
                                                  log=log), "note": reason}
                else:
                    units[u]["pnr"]["reason"] += (" (with multipliers in LUTs: "
                                                  + ", ".join(n["over_ecp5_85"]) + ")")
    result = {"config": cfg.to_dict(), "device_capacity_ecp5_85": ECP5_85K, "units": units,
              "chip_ecp5_from_units": chip_sum, "additions": additions(cfg, units),
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
    _summary(result, log)
    if do_sweep:
        log("")
        log(growth_text(result["sweep"]["growth_exponents"]))
    log(f"\nwritten {out}" + (f", {result['sweep']['plot']}" if do_sweep else ""))
    return result


def additions(cfg: TspConfig, units: dict[str, dict]) -> dict:
    """What one more of each optional unit adds to the chip (ECP5 resources, from the units'
    synthesis): a VXM group (`TspConfig.vxm_groups`) is one more VXM slice, its instruction
    queue and one more slice position of the stream fabric (the fabric's resources per
    position: it is linear in positions); the read-write MEM, the transposers and the
    multi-row weight loads are the difference of the slices and queues with and without
    them."""
    keys = ("lut4_eq", "ff", "dp16kd", "mult18x18d")
    e = {u: r.get("ecp5") for u, r in units.items()}
    out = {}
    if all(e.get(u) for u in ("VXM", "ICU_VXM", "fabric")):
        fab = {k: e["fabric"][k] / cfg.n_positions for k in keys}
        out["vxm_group"] = {**{k: round(e["VXM"][k] + e["ICU_VXM"][k] + fab[k]) for k in keys},
                            "parts": "VXM + ICU_VXM + fabric / positions"}
    # an option of every slice of a kind: the slice and its queue built with it, less without
    for key, kind, tag, note in (("mem_read_write", "MEM", "RW", ""),
                                 ("sxm_transposer", "SXM", "TP",
                                  f", {cfg.vector_length} rows"),
                                 ("mxm_load_rows", "MXM", "LR", f", K = {load_rows(cfg)}")):
        plus, minus = (f"{kind}_{tag}", f"ICU_{kind}_{tag}"), (kind, f"ICU_{kind}")
        if all(e.get(u) for u in plus + minus):
            n = len(cfg.slices_of(kind))
            out[key] = {**{k: n * (sum(e[u][k] for u in plus) - sum(e[u][k] for u in minus))
                           for k in keys},
                        "parts": f"{n} x ({' + '.join(plus)} - {' - '.join(minus)}){note}"}
    return out


def additions_text(result: dict) -> str:
    """One line per addition, beside the chip as the sum of its units."""
    add, chip = result.get("additions") or {}, result.get("chip_ecp5_from_units") or {}
    what = {"vxm_group": "one more VXM group",
            "mem_read_write": "mem_read_write (a READ and a WRITE per MEM word)",
            "sxm_transposer": "SXM transposers of VL rows (sxm_transpose_rows = VL)",
            "mxm_load_rows": "multi-row weight loads (mxm_load_rows = K)"}
    lines = []
    for key, g in add.items():
        share = (f" ({100 * g['lut4_eq'] / chip['lut4_eq']:.1f} % of the chip's units)"
                 if chip else "")
        lines.append(f"{what[key]} ({result['config']['name']}): {g['lut4_eq']:+,} LUT4-eq"
                     f"{share}, {g['ff']:+,} FF, {g['mult18x18d']:+} MULT18X18D "
                     f"({g['parts']})")
    return "\n".join(lines)


def report_cost(log=print) -> int:
    """`python -m sim cost --report`: the tables of the last `make cost` again, its
    ``additions`` recomputed from its units (written back)."""
    from arch.config import TspConfig as _Cfg

    path = build_root() / "cost.json"
    if not path.exists():
        raise Refused(f"{path} does not exist: run `make cost` first")
    try:
        result = json.loads(path.read_text())
        cfg = _Cfg.from_dict(result["config"])
        result["additions"] = additions(cfg, result["units"])
        text = table(result)
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        what = f"missing {e}" if isinstance(e, KeyError) else f"{type(e).__name__}: {e}"
        raise Refused(f"{path} is not the result of `make cost` ({what}): run `make cost` "
                      "again") from None
    path.write_text(json.dumps(result, indent=1))
    _summary(result, log, text)
    log(f"written {path}")
    return 0


def _summary(result: dict, log, text: str | None = None) -> None:
    """The unit table (``text`` if made already), the chip as the sum of its units, what
    each addition costs."""
    log(text if text is not None else table(result))
    c = result.get("chip_ecp5_from_units")
    if c:
        log(f"chip, ECP5 as the sum of its units: {c['lut4_eq']:,} LUT4-eq, {c['ff']:,} FF, "
            f"{c['dp16kd']} DP16KD, {c['mult18x18d']} MULT18X18D "
            f"({'fits' if c['fits_ecp5_85'] else 'does not fit'} an ECP5-85)")
    if result.get("additions"):
        log(additions_text(result))


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
    # a partial build or unit placed for a slice shows its own placement on its row
    placed = {}
    for r in result["units"].values():
        p = r.get("pnr", {})
        if p.get("placed_as"):
            placed[p["placed_as"]] = {k: v for k, v in p.items()
                                      if k not in ("placed_as", "placed_as_what", "note")}
        placed.update(p.get("subunits", {}))
    for u, r in result["units"].items():
        g, e, p = r.get("generic", {}), r.get("ecp5", {}), r.get("pnr") or placed.get(u, {})
        if p.get("status") == "routed":
            cp = p["critical_path"]
            fmax, path = f"{p['fmax_mhz']:.1f}", (f"{cp['from']} -> {cp['to']} "
                                                   f"({cp['logic_levels']} levels)")
            if harness_bound(cp):
                fmax = ">= " + fmax + " (harness path)"
            if p.get("multipliers_in_luts"):
                fmax += " (mult. in LUTs)"
            if p.get("placed_as"):
                fmax += f" (as {p['placed_as']})"
        elif p.get("fmax_upper_bound_mhz"):
            cp = p["critical_path"]
            fmax = f"<= {p['fmax_upper_bound_mhz']:.1f} (units alone)"
            path = (f"{p['reason']}; its units placed alone, the slowest "
                    f"{p['limiting_subunit']}: {cp['from']} -> {cp['to']} "
                    f"({cp['logic_levels']} levels)")
        elif p:
            fmax, path = "-", f"{p['status']}: {p.get('reason', '')}"
        else:
            fmax, path = "-", "-"
        path = re.sub(r" \(last: [^()]*\)", "", path)  # the tool's last log line
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
