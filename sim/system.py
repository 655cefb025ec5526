"""Run one program per chip on a system of linked chips: the machine model
(`golden.system`) and the Verilated system (`hdl.system`, design ``system<N>``), and
compare them.

`run_system` loads every chip's program and SRAM image, runs the model, and (with
``rtl``) builds the system (cached), loads each chip through its host interface, starts
all chips in one cycle (`tb/system/test_system.py`) and compares, per chip: the fault
status, the CYCLES register, the testbench's clock count and the model's cycles, the
busy / issued / MVM counters, and the read-back vectors.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from arch.config import TspConfig
from arch.program import Program
from golden.machine import MachineError
from golden.system import System

from .designs import SYSTEM_DESIGNS

__all__ = ["SYSTEM_DESIGNS", "compare", "rtl_cases", "run_model", "run_rtl", "run_system",
           "system_design", "write_case"]


def system_design(chips: int) -> str:
    for name, n in SYSTEM_DESIGNS.items():
        if n == chips:
            return name
    have = ", ".join(str(n) for n in SYSTEM_DESIGNS.values())
    raise ValueError(f"no system design of {chips} chips; systems of {have} chips are built")


def run_model(cfg: TspConfig, programs: list[Program], images, readback,
              max_cycles: int = 1_000_000) -> dict:
    """The system model's run: per chip cycles and counters, and the read-back vectors
    (``error``: the model's refusal, naming chip, slice and cycle)."""
    sysm = System(cfg, len(programs))
    for m, img in zip(sysm.machines, images, strict=True):
        for sl, vecs in img.items():
            for a, v in vecs.items():
                m.write_mem(sl, a, v)
    sysm.load_programs(programs)
    out: dict = {"error": None, "chips": []}
    try:
        res = sysm.run(max_cycles)
    except MachineError as exc:
        out["error"] = str(exc)
        return out
    for i, r in enumerate(res.chips):
        out["chips"].append({
            "cycles": r.cycles, "busy": r.busy, "issued": r.issued, "mvm": r.mxm_mvm_cycles,
            "dump": {f"{sl}/{a}": sysm.machines[i].read_mem(sl, a).tolist()
                     for sl, a in readback[i]}})
    out["cycles"] = res.cycles
    return out


def write_case(out_dir: Path, programs: list[Program] | None, images, readback) -> dict:
    """The files of one system run (`tb/system/test_system.py`'s case); ``programs``
    None: the chips run the programs already loaded again (only ``images`` written)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths, imgs = [], []
    for i, img in enumerate(images):
        if programs is not None:
            pp = out_dir / f"chip{i}.bin"
            pp.write_bytes(programs[i].to_bytes())
            paths.append(str(pp))
        ip = out_dir / f"chip{i}.npz"
        np.savez(ip, **{f"{s}/{a}": v for s, d in img.items() for a, v in d.items()})
        imgs.append(str(ip))
    return {"programs": paths if programs is not None else None, "images": imgs,
            "out": str(out_dir / "readback.npz"),
            "readback": [[list(x) for x in rb] for rb in readback]}


def rtl_cases(cfg: TspConfig, chips: int, cases: list[dict], *, name: str,
              max_cycles: int, log=print) -> dict:
    """Run `write_case` cases on the Verilated system in one simulator run: the summary,
    each case's read-back vectors filled in per chip (``dump``)."""
    from .build import build_sim
    from .run import run_cocotb

    sim = build_sim(cfg, system_design(chips), log=log)
    res = run_cocotb(sim, "tb.system.test_system", name=name,
                     params={"chips": chips, "cases": cases, "max_cycles": max_cycles},
                     log=log)
    s = dict(res.summary)
    for case, got in zip(cases, s["cases"], strict=True):
        with np.load(case["out"]) as z:
            for i, chip in enumerate(got["chips"]):
                chip["dump"] = {k.split("/", 1)[1]: z[k].tolist() for k in z.files
                                if k.split("/", 1)[0] == str(i)}
    s["log"] = str(res.log)
    return s


def run_rtl(cfg: TspConfig, programs: list[Program], images, readback, out_dir: Path, *,
            max_cycles: int, log=print) -> dict:
    n = len(programs)
    case = write_case(out_dir, programs, images, readback)
    s = rtl_cases(cfg, n, [case], name=f"system{n}-{cfg.name}", max_cycles=max_cycles,
                  log=log)
    return {**s["cases"][0], "log": s["log"]}


def dump_reader(chip: dict):
    """``read_vec(slice, addr)`` over one chip's read-back vectors of an `rtl_cases` case
    (its ``dump``): what `CompiledGraph.read` and `CompiledLayerStep.read_row` take."""
    vecs = {tuple(k.split("/")): np.asarray(v, np.uint8) for k, v in chip["dump"].items()}
    return lambda sl, a: vecs[(sl, str(a))]


def fault_text(cfg: TspConfig, status: dict) -> str:
    """A chip's fault, from its status: the error code's name, the slice and the cycle."""
    from hdl.slice import ErrorCode

    return (f"{ErrorCode(status['error_code']).name} at slice "
            f"{cfg.slices[status['error_slice']].name} in cycle {status['error_cycle']}")


def compare(cfg: TspConfig, model: dict, rtl: dict) -> list[str]:
    """Differences between the Verilated system and the model, per chip (empty: agree)."""
    problems = []
    if model["error"] is not None:
        if not any(c["status"]["error"] for c in rtl["chips"]):
            problems.append(f"the model refuses the programs ({model['error']}) but every "
                            "chip finished without a fault")
        return problems
    for i, (mc, rc) in enumerate(zip(model["chips"], rtl["chips"], strict=True)):
        st, ctr = rc["status"], rc["counters"]
        if st["error"]:
            problems.append(f"chip {i} stopped on a fault: {fault_text(cfg, st)}; the model "
                            "accepts the programs")
        for what, got in (("CYCLES register", ctr["cycles"]),
                          ("testbench clock", rc["cycles_clock"])):
            if got != mc["cycles"]:
                problems.append(f"chip {i} cycles: {what} {got}, model {mc['cycles']}")
        for what in ("busy", "issued", "mvm"):
            for name, v in mc[what].items():
                if ctr[what].get(name, v) != v:
                    problems.append(f"chip {i} counter {what}[{name}]: chip "
                                    f"{ctr[what][name]}, model {v}")
        for k, v in mc["dump"].items():
            got = rc["dump"][k]
            if got != v:
                lane = next(j for j, (a, b) in enumerate(zip(got, v, strict=True)) if a != b)
                problems.append(f"chip {i} SRAM {k} lane {lane}: chip {got[lane]}, model "
                                f"{v[lane]}")
    return problems


def run_system(cfg: TspConfig, programs: list[Program], images, readback, *,
               rtl: bool = True, out_dir: Path | None = None, log=print) -> dict:
    """Model (and with ``rtl`` the Verilated system) of the programs; the report."""
    from .reports import new_run_dir

    n = len(programs)
    out_dir = out_dir or new_run_dir(f"system{n}-{cfg.name}")
    model = run_model(cfg, programs, images, readback)
    report = {"config": cfg.name, "chips": n, "model": model, "rtl": None, "problems": []}
    if rtl:
        limit = 4 * model.get("cycles", 100_000) + 1000
        report["rtl"] = run_rtl(cfg, programs, images, readback, out_dir, max_cycles=limit,
                                log=log)
        report["problems"] = compare(cfg, model, report["rtl"])
    (out_dir / "report.json").write_text(json.dumps(report, indent=1))
    report["report_json"] = str(out_dir / "report.json")
    return report

