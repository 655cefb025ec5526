"""The chip (ICU, MEM slices, host interface) on Verilator against the machine model,
at 1, 2, 3 (an odd count, VL = 48) and 4 superlanes: every superlane's tail counts."""

import pytest

from arch.config import get_config
from sim.build import build_sim
from sim.run import run_cocotb

pytestmark = pytest.mark.rtl


#: every chip config the regression builds: 1, 2, 3 and 4 superlanes
CONFIGS = ["tiny", "small", "tiny3", "medium"]


@pytest.mark.parametrize("config", CONFIGS)
def test_random_mem_programs(config, base_seed):
    cfg = get_config(config)
    seeds = [base_seed * 1000 + i for i in range(24 if cfg.superlanes <= 2 else 12)]
    lockstep = seeds[:2]
    print(f"chip {config}: random MEM/ICU program seeds {seeds} (lock-step: {lockstep})")
    sim = build_sim(cfg, "chip")
    run = run_cocotb(sim, "tb.chip.test_chip", name=f"chip-mem-{config}",
                     testcase="chip_random_mem_programs",
                     params={"seeds": seeds, "lockstep": lockstep})
    s = run.summary
    print(s)
    assert s["mismatches"] == 0
    assert s["programs"] == len(seeds) and s["lockstep_programs"] == len(lockstep)
    assert s["sram_vectors_compared"] > 0


@pytest.mark.parametrize("config", CONFIGS)
def test_faults_flag_and_halt(config):
    """Every fault at the slice and with the code the model names, the machine halted,
    and a clean program right after; the queue faults (illegal word, misplaced REPEAT,
    running past the instruction memory) on every one of the slices' queues."""
    cfg = get_config(config)
    sim = build_sim(cfg, "chip")
    # the queue faults on every slice's queue (the imem overrun loads imem_depth words
    # per queue through the host) at 1 and 2 superlanes, and where the queues differ in
    # depth (tiny3); the superlane count does not change the queues, only the tiles the
    # faults above travel through
    every_queue = cfg.superlanes <= 2 or len({cfg.imem_depth_of(s.name)
                                              for s in cfg.slices}) > 1
    run = run_cocotb(sim, "tb.chip.test_chip", name=f"chip-faults-{config}",
                     testcase="chip_faults", params={"every_queue": every_queue})
    faults = run.summary["faults"]
    for f in faults:
        print(f"{f['case']}: {f['slice']} {f['code']} cycle {f['cycle']}")
    if every_queue:
        assert len(faults) >= 2 + 3 * cfg.n_positions
        assert {f["slice"] for f in faults} == {s.name for s in cfg.slices}
    else:
        assert len(faults) >= 3


@pytest.mark.parametrize("config", CONFIGS)
def test_reset_mid_program(config, base_seed):
    sim = build_sim(get_config(config), "chip")
    fractions = [0.1, 0.5, 0.9]
    run = run_cocotb(sim, "tb.chip.test_chip", name=f"chip-reset-{config}",
                     testcase="chip_reset_mid_program",
                     params={"seed": base_seed, "kind": "all", "fractions": fractions})
    print(run.summary)
    s = run.summary
    assert s["mismatches"] == 0 and s["sram_vectors_compared"] > 10 * len(fractions)
    assert len(s["resets"]) == len(fractions)


@pytest.mark.parametrize("config", CONFIGS)
def test_first_command_after_done(config):
    """The end-of-run races (`tb.chip.races`): the host's first command after done, an
    SRAM read of the last write or the next START, sees every superlane's result."""
    cfg = get_config(config)
    run = run_cocotb(build_sim(cfg, "chip"), "tb.chip.test_chip", name=f"chip-races-{config}",
                     testcase="chip_done_races")
    s = run.summary
    print(s)
    assert s["mismatches"] == 0, s["errors"]
    assert [c["case"] for c in s["cases"]] == ["transfer", "increment"]
    # the cases end with the write whose upper superlanes come last
    assert s["sram_vectors_compared"] == 3
