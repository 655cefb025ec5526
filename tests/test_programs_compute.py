"""The random compute-slice program generator (tb/chip/programs_compute.py) on the
machine model only: every program it makes is accepted by golden.machine, does not
depend on state left by an earlier program (the RTL keeps VXM registers, MXM weights and
accumulators, SXM maps and transposer rows and SRAM across runs), writes results, and
together the programs cover the instructions and types of each compute slice kind (kind
"all": the whole ISA, MEM slices' READ/WRITE/GATHER/SCATTER work of their own included;
tiny3: the SXM transposer).  A generator bug must show up here, not on the RTL.

Independence of earlier state: each program also runs on a machine whose every piece of
state is random -- SRAM outside the program's ``init`` too, as the RTL SRAM is never
initialised -- and must give the clean machine's results; every SRAM lane it reads was
initialised by the host or written by the program in an earlier cycle, and it writes no
address outside ``touched`` (the addresses the RTL tests compare)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from arch.asm import assemble
from arch.config import get_config
from arch.isa import OPCODES, TYPES, VXM_OPS, available, decode
from golden.machine import Machine, Observer, SramEvent
from tb.chip.programs_compute import KINDS, compute_fault_programs, random_compute_program
from tb.chip.scoreboard import run_model
from tb.fuzz import randomise_state

N_SEEDS = 30
CONFIGS = ("tiny", "small")
ICU = ("NOP", "REPEAT", "SYNC", "NOTIFY", "HALT")


def _seeds(base_seed: int) -> list[int]:
    return [base_seed * 1000 + i for i in range(N_SEEDS)]


def _dirty_machine(cfg, rng: np.random.Generator) -> Machine:
    """A machine whose every piece of state is random (as the RTL after other programs)."""
    m = Machine(cfg)
    randomise_state(m, rng)  # (the SXM transposers' rows too)
    return m


class _SramReads(Observer):
    """Collects SRAM accesses; ``undefined`` lists the reads of lanes that neither the
    host (``init``) nor an earlier write of the program defined."""

    def __init__(self):
        self.events: list[SramEvent] = []

    def on_sram(self, ev: SramEvent) -> None:
        self.events.append(ev)

    def undefined(self, cfg, init) -> list[str]:
        lanes = np.arange(cfg.vector_length)
        defined = {s.name: np.zeros((cfg.mem_addresses, cfg.vector_length), bool)
                   for s in cfg.slices_of("MEM")}
        for sl, d in init.items():
            defined[sl][sorted(d)] = True
        bad = []
        # a write in cycle c is seen by reads from cycle c + 1 on
        for ev in sorted(self.events, key=lambda e: (e.cycle, e.op == "write")):
            single = np.ndim(ev.addrs) == 0
            where = (int(ev.addrs),) if single else (ev.addrs, lanes)
            if ev.op == "write":
                defined[ev.slice][where] = True
            elif not defined[ev.slice][where].all():
                bad.append(f"cycle {ev.cycle}: {ev.slice} {ev.mnemonic} (issued in cycle "
                           f"{ev.issue_cycle}) reads undefined SRAM at {ev.addrs}")
        return bad


def _check_independent(cfg, rp, exp, seed: int) -> None:
    """``rp`` on a machine with random state (SRAM outside ``init`` included) gives the
    clean run's results, reads only defined SRAM lanes and writes only ``touched``."""
    dirty = _dirty_machine(cfg, np.random.default_rng(seed))
    for sl, d in rp.init.items():
        for a, v in d.items():
            dirty.write_mem(sl, a, v)
    before = {sl: m.copy() for sl, m in dirty.mem.items()}
    obs = _SramReads()
    dirty.observer = obs
    dirty.load_program(rp.program)
    res = dirty.run()
    bad = obs.undefined(cfg, rp.init)
    assert not bad, f"seed {seed}: " + "\n".join(bad[:5]) + f"\n{rp.describe()}"
    for sl, m in dirty.mem.items():
        addrs = sorted(rp.touched.get(sl, ()))
        other = np.ones(len(m), bool)
        other[addrs] = False
        assert np.array_equal(m[other], before[sl][other]), (
            f"seed {seed}: {sl} writes addresses outside touched: "
            f"{np.flatnonzero(other & (m != before[sl]).any(axis=1))[:8]}\n{rp.describe()}")
        diff = [a for a in addrs if not np.array_equal(m[a], exp.machine.mem[sl][a])]
        assert not diff, (f"seed {seed}: {sl}{diff[:8]} depend on state the program did not "
                          f"write\n{rp.describe()}")
    assert (res.cycles, res.busy, res.issued, res.mxm_mvm_cycles) == (
        exp.result.cycles, exp.result.busy, exp.result.issued, exp.result.mxm_mvm_cycles)


def _missing(mn: Counter, cfg) -> list:
    """The slice instructions (per slice kind the config has: C2C only with links; TPUT/TGET
    only with SXM transposers) and ICU instructions (on any queue) that ``mn`` ((kind,
    mnemonic) -> count) lacks."""
    out = [(k, x) for k, names in OPCODES.items() if cfg.slices_of(k) for x in names
           if x not in ICU and available(x, cfg) and not mn[(k, x)]]
    return out + [x for x in ICU if not sum(mn[(k, x)] for k in OPCODES)]


def _far(cfg) -> str:
    """The coverage name of the longest MEM -> MEM distance of the config."""
    pos = [s.index for s in cfg.slices_of("MEM")]
    d = max(pos) - min(pos)
    return "5+" if d >= 5 else str(d)


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
        _check_independent(cfg, rp, exp, seed)
        cov.update(rp.coverage)
        mn.update(_mnemonics(cfg, rp.program))
    print(f"cycles per program: min {min(cycles)} mean {np.mean(cycles):.0f} max {max(cycles)}")
    print("coverage:", dict(sorted(cov.items())))
    # every instruction of the kind, every type (mixed programs: every instruction)
    if kind == "all":
        assert not _missing(mn, cfg), f"never generated: {_missing(mn, cfg)}"
        for k in ("REPEAT.READ", "REPEAT.WRITE", "REPEAT.GATHER", "REPEAT.SCATTER",
                  "REPEAT.READ.stride0", "REPEAT.WRITE.stride-", "REPEAT.GATHER.stride+",
                  "REPEAT.SCATTER.stride+", "READ.bank0", "READ.bank1", "WRITE.bank0",
                  "WRITE.bank1", "GATHER.bank0", "GATHER.bank1", "SCATTER.bank0",
                  "SCATTER.bank1", "GATHER.crosses_banks", "SCATTER.crosses_banks",
                  "bank_switch", "bank_switch.step", "RAW", "RAW.earliest", "RAW.of_drain",
                  "RAW.of_WRITE", "RAW.of_SCATTER", "READ.again", "READ.index.fresh",
                  "READ.index.again", "WRITE.index", "GATHER.idx.read", "GATHER.idx.gather",
                  "GATHER.idx.given", "GATHER.index_table", "GATHER.table.existing",
                  "GATHER.table.straddle", "GATHER.turns", "SCATTER.idx.read",
                  "SCATTER.data.gather", "SCATTER.data.given", "SCATTER.window.existing",
                  "SCATTER.window.straddle", "SCATTER.idx_data_opposite_directions",
                  "transfer.E", "transfer.W", f"transfer.distance_{_far(cfg)}",
                  "chain.VXM->GATHER.idx", "chain.VXM->SCATTER.idx", "dropped"):
            assert cov[f"MEM.{k}"] > 0, f"MEM {k} never generated"
        for c in ("VXM", "SXM", "MXM"):
            assert cov[f"MEM.chain.GATHER->{c}"] + sum(
                v for k, v in cov.items() if k.startswith("MEM.chain.READ") and
                k.endswith(f"->{c}")) > 0, f"MEM -> {c} never generated"
            assert cov[f"MEM.chain.{c}->SCATTER.data"] > 0, f"{c} -> SCATTER never generated"
        assert sum(v for k, v in cov.items() if k.startswith("chain.") and "->" in k) > 0
        assert cov["start_barrier"] > 0
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


@pytest.mark.parametrize("config", CONFIGS)
def test_all_programs_cover_the_isa(config, base_seed):
    """Kind "all": every program has work on every slice kind (MEM slices: at least 10
    steps of their own, GATHER/SCATTER among them, beyond the compute slices' feeders and
    drains); together 30 programs contain every mnemonic of every slice kind."""
    cfg = get_config(config)
    mn = Counter()
    for seed in _seeds(base_seed):
        rp = random_compute_program(cfg, seed, "all")
        m = _mnemonics(cfg, rp.program)
        for k in ("VXM", "MXM", "SXM"):
            assert sum(v for (kk, name), v in m.items()
                       if kk == k and name not in ICU) > 0, (seed, k)
        steps = sum(v for k, v in rp.coverage.items() if k.startswith("MEM.step."))
        assert steps >= 10 and m[("MEM", "GATHER")] + m[("MEM", "SCATTER")] > 0, seed
        mn.update(m)
    assert not _missing(mn, cfg), f"never generated: {_missing(mn, cfg)}"


def test_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="unknown kind"):
        random_compute_program(get_config("tiny"), 0, "FOO")


def _run_checked(cfg, seed, kind):
    """The seed's program: the model runs it without error, and its results do not depend
    on the state it starts from (`_check_independent`)."""
    rp = random_compute_program(cfg, seed, kind)
    exp = run_model(cfg, rp.program, rp.init)
    assert exp.error is None, f"seed {seed}: {exp.error}\n{rp.describe()}"
    _check_independent(cfg, rp, exp, seed)
    return rp


@pytest.mark.parametrize("kind", ["SXM", "mixed", "all"])
def test_transposer_programs(kind, base_seed):
    """On tiny3 (a 32-row SXM transposer) the SXM actors also TPUT/TGET: the programs run
    on the model, read no transposer row they did not write (the dirty machine's rows are
    random) and cover the transposer's corners."""
    cfg = get_config("tiny3")
    seeds = _seeds(base_seed)[:15]
    print(f"{kind} programs on tiny3: seeds {seeds[0]}..{seeds[-1]}")
    cov, mn = Counter(), Counter()
    for seed in seeds:
        rp = _run_checked(cfg, seed, kind)
        cov.update(rp.coverage)
        mn.update(_mnemonics(cfg, rp.program))
    print("coverage:", {k: v for k, v in sorted(cov.items()) if "TPUT" in k or "TGET" in k})
    assert mn[("SXM", "TPUT")] > 0 and mn[("SXM", "TGET")] > 0
    if kind == "all":
        assert not _missing(mn, cfg), f"never generated: {_missing(mn, cfg)}"
    if kind == "SXM":
        for k in ("TPUT.row=max", "TPUT.rewrite", "TPUT.back_to_back", "TGET.rows=R",
                  "TGET.rows=min", "TGET.rows=mid", "TGET.col=max", "TGET_2_after_TPUT",
                  "TGET_1_after_TPUT(old row)"):
            assert cov[f"SXM.{k}"] > 0, f"SXM {k} never generated"
    if kind == "mixed":
        assert cov["SXM.TGET.chained"] + cov["SXM.TPUT.chained"] > 0


@pytest.mark.parametrize("config", ["tiny3:mxm_load_rows=2", "small:mxm_load_rows=4"])
@pytest.mark.parametrize("kind", ["MXM", "all"])
def test_multirow_load_programs(config, kind, base_seed):
    """With multi-row weight loads (mxm_load_rows = K > 1) the MXM actors also load up to K
    rows (columns) per LW/LWT/MVM lw=: the programs run on the model, depend on no
    weight they did not load, and have such loads (whole buffers K rows per issue too)."""
    cfg = get_config(config)
    K = cfg.mxm_load_rows
    seeds = _seeds(base_seed)[:12]
    print(f"{kind} programs on {config}: seeds {seeds[0]}..{seeds[-1]}")
    cov, extra = Counter(), Counter()
    for seed in seeds:
        rp = _run_checked(cfg, seed, kind)
        cov.update(rp.coverage)
        for s in cfg.slices_of("MXM"):
            for w in rp.program.words(s.name):
                ins = decode("MXM", w)
                if ins.mnemonic in ("LW", "LWT", "MVM") and ins["extra"]:
                    extra[(ins.mnemonic, ins["extra"] + 1)] += 1
    print("multi-row loads (mnemonic, rows):", dict(sorted(extra.items())))
    print("coverage:", {k: v for k, v in sorted(cov.items()) if "rows" in k})
    assert {mn for mn, _ in extra} == {"LW", "LWT", "MVM"}
    assert any(n == K for _, n in extra)
    if kind == "MXM":
        assert cov[f"MXM.fill.LW.rows={K}"] + cov[f"MXM.fill.LWT.rows={K}"] > 0
        assert cov["MXM.MVM.lw.rows"] + cov["MXM.MVM.lwt.rows"] > 0


@pytest.mark.parametrize("config", [*CONFIGS, "tiny3"])
def test_fault_programs_are_refused_at_their_slice(config):
    cfg = get_config(config)
    cases = compute_fault_programs(cfg)
    assert len(cases) >= 12
    for fc in cases:
        exp = run_model(cfg, fc.program.program, fc.program.init)
        assert exp.error is not None and exp.error.startswith(fc.slice + " "), (
            f"{fc.name}: {exp.error}\n{fc.program.describe()}")
