"""The random compute-slice program generator (tb/chip/programs_compute.py) on the
machine model only: every program it makes is accepted by golden.machine, does not
depend on state left by an earlier program (the RTL keeps VXM registers, MXM weights and
accumulators, SXM maps and SRAM across runs), writes results, and together the programs
cover the instructions and types of each compute slice kind.  A generator bug must show
up here, not on the RTL."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from arch.asm import assemble
from arch.config import get_config
from arch.isa import TYPES, VXM_OPS, decode
from golden.machine import Machine
from tb.chip.programs_compute import KINDS, compute_fault_programs, random_compute_program
from tb.chip.scoreboard import run_model

N_SEEDS = 30
CONFIGS = ("tiny", "small")


def _seeds(base_seed: int) -> list[int]:
    return [base_seed * 1000 + i for i in range(N_SEEDS)]


def _dirty_machine(cfg, rng: np.random.Generator) -> Machine:
    """A machine whose every piece of state is random (as the RTL after other programs)."""
    m = Machine(cfg)
    vl = cfg.vector_length
    for name in m.mem:
        m.mem[name][:] = rng.integers(0, 256, m.mem[name].shape, dtype=np.uint8)
    m.vxm_regs[:] = rng.integers(-(2**31), 2**31, m.vxm_regs.shape)
    for st in m.mxm.values():
        st.active[:] = rng.integers(-128, 128, st.active.shape)
        st.shadow[:] = rng.integers(-128, 128, st.shadow.shape)
        st.acc[:] = rng.integers(-(2**31), 2**31, st.acc.shape)
    for maps in m.sxm_maps.values():
        maps[:] = rng.integers(0, vl, maps.shape)
    return m


def _mnemonics(cfg, program) -> Counter:
    c = Counter()
    for s in cfg.slices:
        for w in program.words(s.name):
            c[(s.kind, decode(s.kind, w).mnemonic)] += 1
    return c


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("kind", KINDS)
def test_programs_run_on_the_model(config, kind, base_seed):
    cfg = get_config(config)
    seeds = _seeds(base_seed)
    print(f"{kind} programs on {config}: seeds {seeds[0]}..{seeds[-1]}")
    cov = Counter()
    mn = Counter()
    cycles = []
    for seed in seeds:
        rp = random_compute_program(cfg, seed, kind)
        exp = run_model(cfg, rp.program, rp.init)
        assert exp.error is None, f"seed {seed}: the model refuses the program: " \
                                  f"{exp.error}\n{rp.describe()}"
        cycles.append(exp.result.cycles)
        if seed - seeds[0] < 3:  # deterministic
            again = random_compute_program(cfg, seed, kind)
            assert again.program == rp.program and again.describe() == rp.describe()
            assert assemble(rp.describe()) == rp.program  # the listing is a reproducer
        # results were written: some touched address differs from its initial value
        changed = sum(not np.array_equal(exp.machine.read_mem(sl, a), rp.init[sl][a])
                      for sl, addrs in rp.touched.items() for a in addrs)
        assert changed > 0, f"seed {seed}: the program changes no SRAM vector"
        # independent of the state earlier programs leave behind
        dirty = _dirty_machine(cfg, np.random.default_rng(seed))
        for sl, d in rp.init.items():
            for a, v in d.items():
                dirty.write_mem(sl, a, v)
        dirty.load_program(rp.program)
        res = dirty.run()
        for sl, addrs in rp.touched.items():
            for a in addrs:
                assert np.array_equal(dirty.read_mem(sl, a), exp.machine.read_mem(sl, a)), (
                    f"seed {seed}: {sl}[{a}] depends on state the program did not write\n"
                    f"{rp.describe()}")
        assert (res.cycles, res.busy, res.issued, res.mxm_mvm_cycles) == (
            exp.result.cycles, exp.result.busy, exp.result.issued, exp.result.mxm_mvm_cycles)
        cov.update(rp.coverage)
        mn.update(_mnemonics(cfg, rp.program))
    print(f"cycles per program: min {min(cycles)} mean {np.mean(cycles):.0f} max {max(cycles)}")
    print("coverage:", dict(sorted(cov.items())))
    # every instruction of the kind, every type (mixed programs: every instruction)
    if kind == "mixed":
        for k, m in (("VXM", "VXM"), ("MXM", "LW"), ("MXM", "LWT"), ("MXM", "IW"),
                     ("MXM", "MVM"), ("SXM", "PMAP"), ("SXM", "PERM"), ("SXM", "RSUM")):
            assert mn[(k, m)] > 0, f"{k} {m} never generated"
    if kind == "VXM":
        for op in VXM_OPS:
            assert cov[f"VXM.op1.{op.name}"] > 0, f"VXM op1 {op.name} never generated"
            if op.arity < 3:
                assert cov[f"VXM.op2.{op.name}"] > 0, f"VXM op2 {op.name} never generated"
        for t in TYPES:
            assert cov[f"VXM.type.{t}"] > 0 and cov[f"VXM.otype.{t}"] > 0
        for k in ("src.stream", "src.reg", "src.imm", "src.lane", "dst.reg", "dst.stream",
                  "chain", "sat", "REPEAT", "REPEAT.strided", "param.mult", "param.shift",
                  "param.zp", "param.mult.normalised", "drain"):
            assert cov[f"VXM.{k}"] > 0, f"VXM {k} never generated"
    if kind == "MXM":
        for m in ("LW", "LWT", "IW", "MVM"):
            assert mn[("MXM", m)] > 0, f"MXM {m} never generated"
        for k in ("MVM.accum", "MVM.emit", "MVM.no_emit", "MVM.lw", "MVM.lwt",
                  "K>VL_accumulation", "MVM_right_after_IW", "REPEAT.strided"):
            assert cov[f"MXM.{k}"] > 0, f"MXM {k} never generated"
    if kind == "SXM":
        for m in ("SHS", "ROTS", "SHV", "ROTV", "DIST", "PERM"):
            for t in TYPES:
                assert cov[f"SXM.{m}.{t}"] > 0, f"SXM {m}.{t} never generated"
        for t in TYPES:
            for ot in TYPES:
                assert sum(cov[f"SXM.{m}.{t}:{ot}"] for m in ("RMAX", "RMIN", "RSUM")) > 0, \
                    f"SXM reduction {t}:{ot} never generated"
            for m in ("RMAX", "RMIN", "RSUM"):
                assert sum(cov[f"SXM.{m}.{t}:{ot}"] for ot in TYPES) > 0, f"{m}.{t} missing"
                assert sum(cov[f"SXM.{m}.{ot}:{t}"] for ot in TYPES) > 0, f"{m} :{t} missing"
        assert mn[("SXM", "PMAP")] > 0 and cov["SXM.REPEAT.strided"] > 0


def test_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="unknown kind"):
        random_compute_program(get_config("tiny"), 0, "FOO")


@pytest.mark.parametrize("config", CONFIGS)
def test_fault_programs_are_refused_at_their_slice(config):
    cfg = get_config(config)
    cases = compute_fault_programs(cfg)
    assert len(cases) >= 12
    for fc in cases:
        exp = run_model(cfg, fc.program.program, fc.program.init)
        assert exp.error is not None and exp.error.startswith(fc.slice + " "), (
            f"{fc.name}: {exp.error}\n{fc.program.describe()}")
