"""The fuzzing machinery of tb/fuzz.py on the machine model alone: the plan, reproducer
files, the uninitialised-state check, the timing-preserving removal the shrinker relies
on, and the shrinker against a mutant model (a known bug it must isolate)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from arch.asm import disassemble
from arch.config import get_config
from arch.isa import Instr
from arch.program import Program
from golden.machine import Machine
from tb.fuzz import (
    ICU_MNEMONICS as ICU,
)
from tb.fuzz import (
    Case,
    _Shape,
    dependency_cone,
    fuzz_kinds,
    fuzz_plan,
    generate,
    load_case,
    model_outcome,
    shrink,
)


def test_plan_is_deterministic_and_covers_kinds():
    a, b = fuzz_plan(200, 3), fuzz_plan(200, 3)
    assert a == b and a != fuzz_plan(200, 4)
    assert len({s for _, s in a}) == 200
    assert set(Counter(k for k, _ in a)) == set(fuzz_kinds())
    # a case can be re-made alone: its kind depends only on its seed
    assert fuzz_plan(1, 3)[0] == a[0]
    with pytest.raises(ValueError, match="unknown fuzz kind"):
        fuzz_plan(3, 0, ["VXM", "GPU"])


@pytest.mark.parametrize("kind", ["MEM", "VXM", "mixed"])
def test_reproducer_round_trip(tmp_path, kind, base_seed):
    cfg = get_config("tiny")
    seed = base_seed * 100 + 1
    print(f"{kind} seed {seed}")
    case = generate(cfg, kind, seed)
    case.save(tmp_path / "c", failure=["x"])
    back = Case.load(tmp_path / "c")
    assert back.program == case.program and back.compare == case.compare
    assert back.origin == case.origin and back.cfg == cfg
    assert {sl: set(d) for sl, d in back.image.items()} == \
        {sl: set(d) for sl, d in case.image.items() if d}
    for sl, d in case.image.items():
        for a, v in d.items():
            assert np.array_equal(back.image[sl][a], v)
    with pytest.raises(FileNotFoundError, match="not a fuzz reproducer"):
        Case.load(tmp_path)


def _case(cfg, queues, image=None):
    return Case(cfg, Program.from_instrs(cfg, queues), image or {}, {})


def test_outcome_flags_programs_reading_undefined_state():
    cfg = get_config("tiny")
    v = np.arange(cfg.vector_length, dtype=np.uint8)
    # MEM_W1 reads address 5, MEM_W0 (next position east) writes it to address 7
    prog = {"MEM_W1": [Instr("READ", {"addr": 5, "out_s": 0}), Instr("HALT", {})],
            "MEM_W0": [Instr("NOP", {"n": 2}), Instr("WRITE", {"in_s": 0, "addr": 7}),
                       Instr("HALT", {})]}
    good = model_outcome(_case(cfg, prog, {"MEM_W1": {5: v}}), compare={})
    assert good.ok and good.written == {"MEM_W0": {7}}
    assert np.array_equal(good.sram["MEM_W0"][7], v)
    bad = model_outcome(_case(cfg, prog), compare={})  # address 5 never written
    assert not bad.ok and "MEM_W0[7] depends on uninitialised state" in bad.error
    refused = model_outcome(_case(cfg, {"MEM_W0": [Instr("WRITE", {"in_s": 0, "addr": 7}),
                                                   Instr("HALT", {})]}))
    assert not refused.ok and "refuses" in refused.error


def _issue_cycles(cfg, program) -> dict[str, list[int]]:
    """slice -> issue cycles of its slice instructions (first issues, not repetitions),
    from the queue words (NOP, REPEAT and a start barrier: SYNC/NOTIFY in cycle 0, all go
    on in cycle 2 -- the only barrier the generators make)."""
    out = {}
    for s in cfg.slices:
        t, res = 0, []
        for ins in program.instrs(s.name):
            mn = ins.mnemonic
            if mn == "HALT":
                break
            if mn == "REPEAT":
                t += ins.fields["n"] * ins.fields["d"]
            elif mn == "NOP":
                t += ins.fields["n"]
            elif mn in ("SYNC", "NOTIFY"):
                assert t == 0
                t = 2
            else:
                res.append(t)
                t += 1
        out[s.name] = res
    return out


def _model_issue_cycles(cfg, program) -> dict[str, list[int]]:
    m = Machine(cfg)
    m.load_program(program)
    tr = m.run(trace=True).trace
    return {s.name: sorted(tc.cycle for tc in tr for sl, _, rep, text in tc.issued
                           if sl == s.name and rep == 0 and text.split()[0] not in ICU)
            for s in cfg.slices}


@pytest.mark.parametrize("kind", ["MEM", "VXM", "MXM", "SXM", "mixed"])
def test_removal_keeps_every_other_issue_cycle(kind, base_seed):
    """Replacing instructions (with their REPEATs) by NOPs of their length leaves every
    other instruction's issue cycle unchanged (what makes shrink candidates legal)."""
    cfg = get_config("small")
    rng = np.random.default_rng(base_seed)
    for seed in range(base_seed * 100, base_seed * 100 + 3):
        case = generate(cfg, kind, seed)
        shape = _Shape(case.program)
        units = shape.units()
        drop = {units[i] for i in rng.choice(len(units), size=max(1, len(units) // 5),
                                             replace=False)}
        print(f"{kind} seed {seed}: {len(units)} slice instructions, dropping {len(drop)}")
        before = _issue_cycles(cfg, case.program)
        assert before == _model_issue_cycles(cfg, case.program)
        after = _issue_cycles(cfg, shape.without(drop))
        for s in cfg.slices:
            mine = [u for u in units if u[0] == s.name]
            assert len(mine) == len(before[s.name])
            assert after[s.name] == [c for u, c in zip(mine, before[s.name], strict=True)
                                     if u not in drop], s.name


class _MutantMachine(Machine):
    """A model with a planted bug: VXM ADD results are off by one in lane 0."""

    def _alu(self, op, x, y, z, t, yreg, ot):
        r = super()._alu(op, x, y, z, t, yreg, ot)
        if op.name == "ADD":
            r = r.copy()
            r[0] += 1
        return r


def _mutant_mismatches(case: Case) -> set[tuple[str, int]]:
    """The written SRAM addresses where the mutant model disagrees with the model."""
    ref = model_outcome(case, compare={})
    m = _MutantMachine(case.cfg)
    load_case(m, case)
    m.run()
    return {(sl, a) for sl, d in ref.sram.items() for a, v in d.items()
            if not np.array_equal(m.read_mem(sl, a), v)}


def _mutant_fails(case: Case) -> bool:
    return bool(_mutant_mismatches(case))


@pytest.mark.parametrize("focused", [False, True], ids=["ddmin", "cone-first"])
def test_shrink_isolates_a_planted_bug(base_seed, focused):
    cfg = get_config("tiny")
    found = None
    for seed in range(base_seed * 100, base_seed * 100 + 40):
        case = generate(cfg, "VXM", seed)
        case.compare = {}
        if _mutant_fails(case):
            found = case
            break
    assert found is not None, "no VXM program exercising ADD in 40 seeds"
    print(f"VXM seed {found.origin['seed']}: {found.n_slice_instructions} slice instructions")
    calls = []

    def oracle(cands):
        calls.append(len(cands))
        return [_mutant_fails(c) for c in cands]

    focus = set(sorted(_mutant_mismatches(found))[:1]) if focused else set()
    small, st = shrink(found, oracle, max_oracle_runs=80, focus=focus, log=print)
    print(st)
    assert _mutant_fails(small) and model_outcome(small, compare={}).ok
    assert small.n_slice_instructions < found.n_slice_instructions / 4
    # what is left is the bug: an ADD, its operands' feeders and the WRITE of its result
    mn = Counter(i.mnemonic for s in cfg.slices for i in small.program.instrs(s.name))
    text = disassemble(small.program)
    print(text)
    assert mn["WRITE"] >= 1 and "ADD(" in text, text
    assert small.n_slice_instructions <= 8, text
    assert len(calls) == st.oracle_runs <= (40 if focused else 80)


@pytest.mark.parametrize("kind", ["MEM", "VXM", "MXM", "SXM", "all"])
def test_dependency_cone_keeps_the_value(kind, base_seed):
    """Keeping only the dependency cone of an address (everything else replaced by NOPs)
    gives a program the model accepts from any state, with the same final value there."""
    cfg = get_config("small")
    for seed in range(base_seed * 100, base_seed * 100 + 3):
        case = generate(cfg, kind, seed)
        out = model_outcome(case, compare={})
        written = sorted((sl, a) for sl, aa in out.written.items() for a in aa)
        rng = np.random.default_rng(seed)
        picks = [written[i] for i in rng.choice(len(written), 3, replace=False)]
        shape = _Shape(case.program)
        for sl, a in picks:
            cone = dependency_cone(case, [(sl, a)])
            keep = {(w[0], shape.word_item[w]) for w in cone}
            small = Case(cfg, shape.without([u for u in shape.units() if u not in keep]),
                         case.image, {sl: {a}})
            got = model_outcome(small)
            print(f"{kind} seed {seed} {sl}[{a}]: cone {len(cone)} of "
                  f"{case.n_slice_instructions}")
            assert got.ok, got.error
            assert np.array_equal(got.sram[sl][a], out.sram[sl][a])
            assert len(cone) < case.n_slice_instructions or kind == "MEM"
