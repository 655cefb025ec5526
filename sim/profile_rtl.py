"""`make profile-rtl`: where a simulated cycle goes, counted rather than timed.

The bare harness (`sim/bare.py`, one thread) runs the compiled block of `make sim` (the
case of `make bench-rtl`) under valgrind's callgrind twice: ``runs`` runs back to back,
then ``2 * runs``.  The difference of the two instruction counts is exactly ``runs``
runs -- loading, start-up and read-back cancel -- so

    instructions per simulated cycle = (I(2 runs) - I(runs)) / (runs x block cycles),

split by Verilated module class (one C++ class per kind of tile: `MemTile`, `VxmTile`,
...; ``root`` is the scheduler and the top, ``runtime`` Verilator's library and the
harness).  An instruction count does not move with the machine's load, so it compares
two designs (or two builds) on a machine whose speed varies by a third from run to run;
it is not a speed (a cache miss costs more than an add).  Every run must take the
predicted cycles and the read-back must be bit-exact.  Beside it, the floor: the same
count while every queue only waits (`idle_program`: ``NOP`` then ``HALT``), which is what
each cycle costs before any slice does work.  The harness is compiled for g++'s default
target (``TSP_MARCH=portable``, whatever the environment says): valgrind does not execute
AVX-512, which ``-march=native`` uses on this machine.  Needs valgrind on PATH, which is
not part of the toolchain: the command says so and stops when it is absent.  Writes
``build/profile-rtl.json``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np

from arch.config import TspConfig

#: the callgrind_annotate line of one function: "1,234 (5.6%)  file:function [object]"
_LINE = re.compile(r"^\s*([\d,]+)\s+\(\s*[\d.]+%\)\s+(\S.*?)\s+\[")


class ProfileError(RuntimeError):
    pass


def require_valgrind() -> None:
    for tool in ("valgrind", "callgrind_annotate"):
        if shutil.which(tool) is None:
            raise ProfileError(f"profile-rtl needs `{tool}` on PATH (valgrind's callgrind); "
                               "it is not part of the toolchain: install valgrind (e.g. "
                               "`apt install valgrind`) and run it again")


def module_class(function: str, top: str) -> str:
    """The Verilated class a C++ function belongs to: ``MemTile`` for
    ``Vtsp_<top>___05FMemTile___nba_sequent__...``, ``root`` for the top's and the
    scheduler's own functions, ``runtime`` for the rest (Verilator's library, the
    harness, libc)."""
    name = re.sub(r"^[^:\s]*:(?!:)", "", function)  # callgrind's "file:" (not C++'s ::)
    prefix = f"Vtsp_{top}___05F"
    if name.startswith(prefix):
        return re.match(r"[A-Za-z0-9]*", name[len(prefix):]).group(0) or "runtime"
    if name.startswith("Vtsp___024root") or name.startswith("Vtsp::"):
        return "root"
    return "runtime"


def callgrind_by_class(out_file: Path, top: str) -> tuple[int, dict[str, int]]:
    """(total instructions, instructions per module class) of a callgrind output file."""
    text = subprocess.run(["callgrind_annotate", "--threshold=100", str(out_file)],
                          capture_output=True, text=True, check=True).stdout
    try:
        return annotate_by_class(text, top)
    except ValueError as e:
        raise ProfileError(f"{e} (callgrind_annotate of {out_file})") from None


def annotate_by_class(text: str, top: str) -> tuple[int, dict[str, int]]:
    """(total, per class) from callgrind_annotate's text: each function's count added to
    its `module_class`; what the listing leaves out is counted as ``runtime``."""
    total, by_class = None, {}
    for line in text.splitlines():
        if "PROGRAM TOTALS" in line:
            total = int(line.split()[0].replace(",", ""))
            continue
        hit = _LINE.match(line)
        if hit:
            n = int(hit.group(1).replace(",", ""))
            cls = module_class(hit.group(2), top)
            by_class[cls] = by_class.get(cls, 0) + n
    if total is None:
        raise ValueError("no PROGRAM TOTALS line")
    by_class["runtime"] = by_class.get("runtime", 0) + total - sum(by_class.values())
    return total, by_class


def _portable(build):
    """`build()` with the simulator compiled for g++'s default target (`toolchain.march`
    ``portable``), whatever $TSP_MARCH says: valgrind does not execute every instruction
    ``-march=native`` may use (AVX-512: SIGILL), and the counts then compare designs
    rather than CPUs.  (Every build sets its make variables up from the environment
    first, `toolchain.setup_environ`.)"""
    from . import toolchain

    saved = os.environ.get(toolchain.MARCH_ENV)
    os.environ[toolchain.MARCH_ENV] = "portable"
    try:
        return build()
    finally:
        if saved is None:
            os.environ.pop(toolchain.MARCH_ENV)
        else:
            os.environ[toolchain.MARCH_ENV] = saved


def profile_config(cfg: TspConfig, *, runs: int = 5, log=print) -> dict:
    from .bare import build_bare, write_commands
    from .bench_rtl import _case
    from .build import build_root

    if runs < 1:
        raise ProfileError(f"profile-rtl: --runs must be >= 1, got {runs}")
    require_valgrind()
    block, comp, x_q, image, restore, readback = _case(cfg)
    y_gold = block.forward_int(x_q)
    bare = _portable(lambda: build_bare(cfg, threads=1, log=log))
    work = build_root() / "profile-rtl" / cfg.name
    work.mkdir(parents=True, exist_ok=True)
    counts = {}
    for n in (runs, 2 * runs):
        log(f"{cfg.name}: {n} runs of the block ({comp.cycles} cycles each) under callgrind")
        cmd = write_commands(bare, comp.program, image, readback, work / f"commands{n}.txt",
                             repeat=n, restore=restore, max_cycles=4 * comp.cycles + 1000)
        r, counts[n] = _under_callgrind(bare, cmd, work / f"callgrind{n}.out", readback)
        edges = [e for e, _ in r.runs]
        if len(edges) != n or any(e != comp.cycles for e in edges):
            raise ProfileError(f"{cfg.name}: runs took {sorted(set(edges))} cycles "
                               f"({len(edges)} runs), predicted {comp.cycles} ({n} runs)")
        y = comp.read_output(lambda sl, a, r=r: r.readback[f"{sl}/{a}"])
        if not np.array_equal(y, y_gold):
            raise ProfileError(f"{cfg.name}: output after {n} runs not bit-exact")
    total, per_class = _per_cycle(counts[runs], counts[2 * runs], runs * comp.cycles)
    idle_total, idle_class = idle_floor(cfg, bare, work, log)
    return {
        "config": cfg.name, "block_cycles": comp.cycles, "runs": runs,
        "instructions_per_cycle": total, "by_class": per_class,
        "idle_cycles": IDLE_CYCLES, "idle_instructions_per_cycle": idle_total,
        "idle_by_class": idle_class,
    }


def _under_callgrind(bare, cmd: Path, out: Path, readback) -> tuple:
    """Run the bare harness on command file ``cmd`` under callgrind (its output to
    ``out``): (the harness's parsed output, `callgrind_by_class` of the run)."""
    from .bare import parse_output

    proc = subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
                           str(bare.binary), str(cmd)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise ProfileError(f"valgrind failed ({proc.returncode}): {proc.stderr[-400:]}")
    return parse_output(bare, proc.stdout, readback), callgrind_by_class(out, "tsp_chip")


def _per_cycle(short, long, cycles: int) -> tuple[int, dict[str, int]]:
    """(instructions per cycle, per class) from the counts of two runs that differ by
    ``cycles`` simulated cycles (`callgrind_by_class` results)."""
    (t1, c1), (t2, c2) = short, long
    per_class = {k: (c2.get(k, 0) - c1.get(k, 0)) / cycles for k in set(c1) | set(c2)}
    per_class = {k: round(v) for k, v in sorted(per_class.items(), key=lambda kv: -kv[1])
                 if round(v)}
    return round((t2 - t1) / cycles), per_class


#: cycles the idle program waits, and twice that (their difference is what is counted)
IDLE_CYCLES = 2000


def idle_program(cfg: TspConfig, cycles: int):
    """Every queue of the chip waits ``cycles`` (one ``NOP``) and halts: no slice works."""
    from arch import isa
    from arch.asm import assemble

    text = f".config {cfg.name}\n" + "".join(
        f".slice {s.name}\n    NOP {cycles}\n    HALT\n" for s in cfg.slices
        if s.kind in isa.SLICE_KINDS)
    return assemble(text, cfg)


def idle_floor(cfg: TspConfig, bare, work: Path, log=print) -> tuple[int, dict[str, int]]:
    """What a simulated cycle costs while every queue only waits (`idle_program`, run
    for ``IDLE_CYCLES`` and twice that): the floor every cycle pays, whatever runs."""
    from .bare import write_commands

    counts = {}
    for n in (IDLE_CYCLES, 2 * IDLE_CYCLES):
        log(f"{cfg.name}: every queue waiting {n} cycles, under callgrind")
        cmd = write_commands(bare, idle_program(cfg, n), {}, [], work / f"idle{n}.txt",
                             max_cycles=n + 100)
        r, counts[n] = _under_callgrind(bare, cmd, work / f"callgrind-idle{n}.out", [])
        if [e for e, _ in r.runs] != [n + 1]:
            raise ProfileError(f"{cfg.name}: the idle program took {[e for e, _ in r.runs]} "
                               f"cycles, expected {n + 1} (NOP {n}, HALT)")
    return _per_cycle(counts[IDLE_CYCLES], counts[2 * IDLE_CYCLES], IDLE_CYCLES)


def run_profile_rtl(configs, *, runs: int = 5, out: Path | None = None, log=print):
    from .build import build_root

    rows = [profile_config(cfg, runs=runs, log=log) for cfg in configs]
    out = out or build_root() / "profile-rtl.json"
    out.write_text(json.dumps(rows, indent=1))
    for row in rows:
        total = row["instructions_per_cycle"]
        log(f"{row['config']}: {total:,} instructions per simulated cycle "
            f"(block of {row['block_cycles']} cycles, {row['runs']} runs)")
        idle = row["idle_by_class"]
        log(f"  {'class':<24} {'block':>9}  {'share':>7}  {'idle':>9}  (every queue "
            f"waiting: {row['idle_instructions_per_cycle']:,})")
        for cls, n in row["by_class"].items():
            log(f"  {cls:<24} {n:>9,}  {100 * n / total:5.1f} %  {idle.get(cls, 0):>9,}")
    log(f"written {out}")
    return rows
