"""``make fuzz``: differential fuzzing of whole programs on the Verilated chip.

`fuzz` makes ``n`` cases (`tb.fuzz.fuzz_plan`: kind and seed of each from one base
seed), runs them in batches on the chip (``tb/chip/test_fuzz.py``, one simulator run per
batch, ``jobs`` batches at a time, each batch with its own X seed: random power-up
state), and for every case that fails writes a reproducer to ``build/fuzz/<case>/``,
shrinks it (`tb.fuzz.shrink`, with the chip as the oracle) to ``build/fuzz/<case>/min/``
and prints the one command that replays it: ``make fuzz-replay CASE=<dir>``.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from arch.config import TspConfig
from tb.fuzz import Case, fuzz_plan, generate, shrink

from .build import build_root, build_sim
from .run import run_cocotb

_SRAM_MISMATCH = re.compile(r"SRAM (\w+)\[(\d+)\]")


def fuzz_dir() -> Path:
    return build_root() / "fuzz"


def run_batch(cfg: TspConfig, specs: list[dict], *, name: str, x_seed: int,
              max_cycles: int = 50_000, funcov: bool = False) -> dict:
    """Run case specs (see tb/chip/test_fuzz.py) in one simulator run; its summary."""
    sim = build_sim(cfg, "chip", log=lambda *_: None)
    run = run_cocotb(sim, "tb.chip.test_fuzz", name=name, testcase="chip_fuzz",
                     params={"cases": specs, "max_cycles": max_cycles, "funcov": funcov},
                     x_seed=x_seed)
    s = run.summary
    s["log"] = str(run.log)
    return s


def _run_batch_job(args) -> dict:
    cfg_dict, specs, name, x_seed, max_cycles = args
    return run_batch(TspConfig.from_dict(cfg_dict), specs, name=name, x_seed=x_seed,
                     max_cycles=max_cycles, funcov=True)


def rtl_oracle(cfg: TspConfig, work: Path, *, x_seed: int, log=print):
    """A `tb.fuzz.shrink` oracle: candidates saved under `work`, run in one batch each."""
    calls = [0]

    def still_fails(cands: list[Case]) -> list[bool]:
        calls[0] += 1
        specs = []
        for j, c in enumerate(cands):
            d = c.save(work / f"r{calls[0]:02d}-{j:02d}")
            specs.append({"dir": str(d)})
        s = run_batch(cfg, specs, name=f"shrink-{work.parent.name}", x_seed=x_seed)
        verdict = [not r["ok"] for r in s["cases"]]
        log(f"  shrink round {calls[0]}: {len(cands)} candidates, {sum(verdict)} still fail")
        return verdict

    return still_fails


def replay_command(path: Path) -> str:
    try:
        rel = path.resolve().relative_to(Path.cwd())
    except ValueError:
        rel = path
    return f"make fuzz-replay CASE={rel}"


@dataclass
class FuzzReport:
    config: str
    seed: int
    programs: int = 0
    instructions: int = 0
    program_cycles: int = 0
    sram_vectors_compared: int = 0
    sim_cycles: int = 0
    wall_seconds: float = 0.0
    kinds: dict[str, int] = field(default_factory=dict)
    x_seeds: list[int] = field(default_factory=list)
    failures: list[dict] = field(default_factory=list)
    #: functional coverage of the programs that ran (tb.funcov): hit, bins, missed names
    funcov: dict = field(default_factory=dict)

    @property
    def programs_per_minute(self) -> float:
        return 60.0 * self.programs / self.wall_seconds if self.wall_seconds else 0.0

    def to_dict(self) -> dict:
        return {**self.__dict__, "programs_per_minute": round(self.programs_per_minute, 1)}

    def text(self) -> str:
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(self.kinds.items()))
        lines = [
            f"fuzz {self.config} seed {self.seed}: {self.programs} programs ({kinds}), "
            f"{self.instructions} instructions, {self.program_cycles} program cycles, "
            f"{self.sram_vectors_compared} SRAM vectors compared",
            f"  {self.sim_cycles} simulated cycles in {self.wall_seconds:.0f} s "
            f"({self.programs_per_minute:.0f} programs/min, "
            f"{self.sim_cycles / max(self.wall_seconds, 1e-9):.0f} cycles/s), X seeds "
            f"{self.x_seeds}",
            f"  mismatches: {len(self.failures)}"]
        if self.funcov:
            fc = self.funcov
            miss = fc["missed"]
            more = f" ... ({len(miss) - 12} more)" if len(miss) > 12 else ""
            lines.insert(2, f"  functional coverage: {fc['hit']}/{fc['bins']} bins"
                         + (f"; not hit: {', '.join(miss[:12])}{more}" if miss else ""))
        for f in self.failures:
            lines.append(f"  FAIL {f['name']}: {f['errors'][0] if f['errors'] else '?'}")
            lines.append(f"       reproducer: {f['dir']}  ->  {f['replay']}")
            if f.get("min_replay"):
                lines.append(f"       shrunk to {f['min_instructions']} slice instructions: "
                             f"{f['min_replay']}")
        return "\n".join(lines)


def fuzz(cfg: TspConfig, n: int, seed: int, *, kinds=None, batch: int = 40, jobs: int = 1,
         do_shrink: bool = True, corrupt: tuple[int, ...] = (), max_cycles: int = 50_000,
         max_shrink_runs: int = 40, max_shrinks: int = 3, log=print) -> FuzzReport:
    """Fuzz `n` cases on the chip (see the module doc); `corrupt` lists case indices whose
    image the chip gets corrupted (negative controls: they must be reported).  Every
    failure is saved; the `max_shrinks` smallest are shrunk (the SRAM addresses that
    mismatched focus the shrinker on their dependency cone first)."""
    plan = fuzz_plan(n, seed, kinds)
    specs = [{"gen": [k, s, 1.0], **({"corrupt": True} if i in corrupt else {})}
             for i, (k, s) in enumerate(plan)]
    log(f"fuzz {cfg.name}: {n} cases, base seed {seed} (case seeds {plan[0][1]}.."
        f"{plan[-1][1]}), {jobs} job(s), batches of {batch}" if plan else "fuzz: no cases")
    build_sim(cfg, "chip", log=log)  # once, before the workers share it
    rep = FuzzReport(cfg.name, seed)
    batches = [specs[i:i + batch] for i in range(0, len(specs), batch)]
    jobs_args = [(cfg.to_dict(), b, f"fuzz-{cfg.name}-{seed}-{j}", seed * 1000 + j, max_cycles)
                 for j, b in enumerate(batches)]
    rep.x_seeds = [a[3] for a in jobs_args]
    t0 = time.monotonic()
    if jobs > 1 and len(batches) > 1:
        with ProcessPoolExecutor(max_workers=jobs) as ex:
            summaries = list(ex.map(_run_batch_job, jobs_args))
    else:
        summaries = []
        for a in jobs_args:
            summaries.append(_run_batch_job(a))
            log(f"  batch {len(summaries)}/{len(batches)} done "
                f"({time.monotonic() - t0:.0f} s)")
    rep.wall_seconds = time.monotonic() - t0
    from tb.funcov import FunctionalCoverage

    fc = FunctionalCoverage(cfg)
    for s in summaries:
        if "funcov" in s:
            fc.merge(FunctionalCoverage.from_json(s["funcov"]))
    rep.funcov = {"bins": len(fc.bins()), "hit": len(fc.bins()) - len(fc.missed()),
                  "missed": fc.missed()}
    for a, s in zip(jobs_args, summaries, strict=True):
        for k in ("programs", "instructions", "program_cycles", "sram_vectors_compared",
                  "sim_cycles"):
            setattr(rep, k, getattr(rep, k) + s[k])
        for r in s["cases"]:
            kind = r["spec"]["gen"][0]
            rep.kinds[kind] = rep.kinds.get(kind, 0) + 1
            if not r["ok"]:
                rep.failures.append({**r, "x_seed": a[3], "log": s["log"]})
    shrunk = 0
    # shrink the smallest failures first (a systematic bug fails many programs)
    rep.failures.sort(key=lambda f: f["instructions"])
    for f in rep.failures:
        kind, cseed, scale = f["spec"]["gen"]
        case = generate(cfg, kind, cseed, scale)
        case.corrupt = bool(f["spec"].get("corrupt"))
        d = fuzz_dir() / case.name
        if d.exists():
            shutil.rmtree(d)
        case.save(d, failure=f["errors"], x_seed=f["x_seed"], log=f["log"])
        f["dir"], f["replay"] = str(d), replay_command(d)
        log(f"FAIL {case.name}: {f['errors'][0] if f['errors'] else '?'}\n"
            f"  reproducer {d}; replay: {f['replay']}")
        if do_shrink and not f.get("invalid") and shrunk < max_shrinks:
            shrunk += 1
            focus = {(m.group(1), int(m.group(2)))
                     for e in f["errors"] if (m := _SRAM_MISMATCH.match(e))}
            small, st = shrink(case, rtl_oracle(cfg, d / "shrink", x_seed=f["x_seed"],
                                                log=log),
                               max_oracle_runs=max_shrink_runs, focus=focus, log=log)
            m = small.save(d / "min", x_seed=f["x_seed"],
                           shrunk_from=case.n_slice_instructions)
            f["min_replay"] = replay_command(m)
            f["min_instructions"] = small.n_slice_instructions
            shutil.rmtree(d / "shrink", ignore_errors=True)
    fuzz_dir().mkdir(parents=True, exist_ok=True)
    (fuzz_dir() / f"report-{cfg.name}-{seed}.json").write_text(
        json.dumps(rep.to_dict(), indent=1, default=str))
    return rep


def replay(path: Path, *, x_seed: int | None = None, log=print) -> dict:
    """Run a saved reproducer on the chip again; its summary entry (``ok``, errors)."""
    case = Case.load(path)
    meta = json.loads((Path(path) / "case.json").read_text())
    xs = meta.get("x_seed", 0) if x_seed is None else x_seed
    # the testbench asks the model first (a case it refuses comes back not ok, invalid)
    s = run_batch(case.cfg, [{"dir": str(path)}], name=f"replay-{Path(path).name}",
                  x_seed=xs)
    r = s["cases"][0]
    verdict = "PASS (the chip agrees with the model)" if r["ok"] else "FAIL"
    log(f"replay {path} ({case.name}, {case.n_slice_instructions} slice instructions, "
        f"X seed {xs}): "
        f"{verdict}")
    for e in r["errors"]:
        log(f"  {e}")
    log(f"  log: {s['log']}")
    return r

