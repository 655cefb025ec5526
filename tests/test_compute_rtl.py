"""Random compute-slice programs (VXM, MXM, SXM, all of them mixed, and `all`: every
slice kind including MEM GATHER/SCATTER traffic) on the whole chip
(Verilator), through the host interface, against the machine model
(tb/chip/test_compute.py; the generator is tb/chip/programs_compute.py, checked on the
model alone by tests/test_programs_compute.py)."""

import json
import os
import warnings

import pytest

from arch.config import get_config
from sim.build import build_root, build_sim
from sim.run import SimFailure, _safe, run_cocotb
from tb.chip.programs_compute import KINDS

pytestmark = pytest.mark.rtl

N_PROGRAMS = 20  # per kind and config
N_LOCKSTEP = 2


#: every kind at 1 and 2 superlanes; at 3 (tiny3) and 4 (medium) the mixed kinds
CASES = ([(c, k) for c in ("tiny", "small") for k in KINDS]
         + [(c, k) for c in ("tiny3", "medium") for k in ("mixed", "all")])


@pytest.mark.parametrize(("config", "kind"), CASES, ids=[f"{c}-{k}" for c, k in CASES])
def test_random_compute_programs(config, kind, base_seed):
    cfg = get_config(config)
    n = N_PROGRAMS if cfg.superlanes <= 2 else N_PROGRAMS // 2
    seeds = [base_seed * 1000 + i for i in range(n)]
    lockstep = seeds[:N_LOCKSTEP]
    print(f"chip {config}: random {kind} program seeds {seeds} (lock-step: {lockstep}); "
          f"rebuild one with tb.chip.programs_compute.random_compute_program("
          f"get_config({config!r}), SEED, {kind!r})")
    sim = build_sim(cfg, "chip")
    name = f"chip-compute-{kind}-{config}"
    try:
        run = run_cocotb(sim, "tb.chip.test_compute", name=name,
                         testcase="chip_random_compute_programs",
                         params={"kinds": [kind], "seeds": seeds, "lockstep": lockstep})
    except SimFailure as exc:
        # the testbench writes its summary before its final assert: show the failing
        # program's mismatches and listing
        res = build_root() / "runs" / _safe(f"{name}-{os.getpid()}") / "result.json"
        if not res.exists():
            raise
        fails = json.loads(res.read_text()).get("failures", [])
        detail = "\n".join(f"{f['kind']} seed {f['seed']} ({f['n_errors']} mismatches):\n  "
                           + "\n  ".join(f["errors"]) + "\n" + f["listing"] for f in fails)
        raise SimFailure(f"{exc}\n{detail}") from None
    s = run.summary
    print({k: v for k, v in s.items() if k not in ("coverage", "failures")})
    assert s["mismatches"] == 0, s["failures"]
    assert s["programs"] == len(seeds) and s["lockstep_programs"] == len(lockstep)
    assert s["sram_vectors_compared"] > 0


@pytest.mark.parametrize("config", ["tiny", "small", "tiny3", "medium"])
def test_compute_faults_flag_and_halt(config, base_seed):
    """REQUANT parameters / PMAP entries out of range, a stream collision, IW during a
    load, illegal words and strided fields out of range: the RTL flags the model's
    slice with the expected code and halts; the next program runs cleanly."""
    sim = build_sim(get_config(config), "chip")
    run = run_cocotb(sim, "tb.chip.test_compute", name=f"chip-compute-faults-{config}",
                     testcase="chip_compute_faults", params={"seed": base_seed})
    for r in run.summary["faults"]:
        print(f"{r['case']}: {r['slice']} {r['code']} cycle {r['cycle']}")
    for d in run.summary.get("known_deviations", []):
        warnings.warn(f"{config}: {d}", stacklevel=1)
    assert len(run.summary["faults"]) >= 12
