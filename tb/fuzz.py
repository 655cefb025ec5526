"""Differential fuzzing of whole programs: cases, the model's verdict, reproducers and a
shrinker.  Pure Python (numpy): the RTL side lives in ``tb/chip/test_fuzz.py`` (the
cocotb test that runs cases on the chip) and ``sim/fuzz.py`` (``make fuzz``).

* A **case** is a program, the SRAM image the host loads before it, and the SRAM
  addresses whose final contents are compared.  Fuzz cases come from the seeded
  generators (:func:`generate`: ``MEM`` from ``tb.chip.programs``, the compute kinds from
  ``tb.chip.programs_compute``), legal by construction; :func:`fuzz_plan` picks the kind
  and seed of each of ``n`` cases from one base seed.
* The **model's verdict** (:func:`model_outcome`) runs ``golden.machine`` twice: from
  reset, and from random state everywhere the host does not write (SRAM outside the
  image, VXM registers, MXM weights and accumulators, SXM maps) -- like the RTL, whose
  SRAM and datapath state are never initialised.  A program the model refuses, or whose
  counters or compared vectors differ between the two runs, depends on something it did
  not define and is not a valid test.
* A **reproducer** is a directory (:meth:`Case.save`): ``program.s`` (assembly, readable
  and re-assemblable), ``program.bin``, ``image.npz`` (``"<slice>/<addr>"`` vectors),
  ``case.json`` (config, origin, compared addresses, X seed, the failure).
* The **shrinker** (:func:`shrink`) makes a failing case small while it keeps failing:
  delta debugging over the slice instructions, where an instruction (with its REPEAT) is
  replaced by a NOP of the same length so that every other instruction keeps its issue
  cycle; then fewer REPEATs, no start barrier, fewer image vectors.  Every candidate must
  get the model's approval first; the ``still_fails`` oracle (the RTL, or a mutant model in
  the tests) judges batches of candidates.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from arch.asm import assemble, disassemble
from arch.config import TspConfig
from arch.isa import ICU_DEFS, Instr
from arch.program import Program
from golden.machine import Machine, MachineError, Observer, RunResult

#: share of each generator kind in a fuzz run (the kinds that exist are used)
KIND_WEIGHTS = {"MEM": 1.0, "VXM": 1.0, "MXM": 1.0, "SXM": 1.0, "mixed": 1.5, "all": 4.0}
#: a case's seed is ``base_seed * SEED_STRIDE + i``
SEED_STRIDE = 1_000_000
ICU_MNEMONICS = frozenset(ICU_DEFS)


def fuzz_kinds() -> tuple[str, ...]:
    from tb.chip.programs_compute import KINDS

    return ("MEM", *KINDS)


# ================================================================================ cases
@dataclass
class Case:
    """A program, the host's SRAM image and the addresses compared after the run."""

    cfg: TspConfig
    program: Program
    image: dict[str, dict[int, np.ndarray]]
    compare: dict[str, set[int]]
    #: where it came from: {"kind", "seed", "scale"} for generated cases
    origin: dict = field(default_factory=dict)
    #: RTL-side image corruption (a negative control; see `rtl_image`)
    corrupt: bool = False

    @property
    def name(self) -> str:
        o = self.origin
        if "kind" in o:
            return f"{self.cfg.name}-{o['kind']}-{o['seed']}"
        return o.get("name", f"{self.cfg.name}-case")

    @property
    def n_instructions(self) -> int:
        """Words of all queues (NOP, REPEAT, HALT ... included)."""
        return sum(len(self.program.words(s.name)) for s in self.cfg.slices)

    @property
    def n_slice_instructions(self) -> int:
        """Slice (non-ICU) instructions: the size a shrinker minimises."""
        return sum(not _is_icu(i) for s in self.cfg.slices
                   for i in self.program.instrs(s.name))

    def rtl_image(self) -> dict[str, dict[int, np.ndarray]]:
        """The image the chip gets: the model's, or with ``corrupt`` lane 0 bit 0 of every
        vector flipped (so the chip must disagree with the model)."""
        if not self.corrupt:
            return self.image
        out = {}
        for sl, d in self.image.items():
            out[sl] = {}
            for a, v in d.items():
                v = v.copy()
                v[0] ^= 1
                out[sl][a] = v
        return out

    # -- reproducer files ---------------------------------------------------------------
    def save(self, path: str | Path, **extra) -> Path:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        (path / "program.bin").write_bytes(self.program.to_bytes())
        (path / "program.s").write_text(
            f"# {self.name}: {self.n_instructions} instructions\n" + disassemble(self.program))
        np.savez(path / "image.npz", **{f"{sl}/{a}": v for sl, d in self.image.items()
                                        for a, v in sorted(d.items())})
        meta = {"config": self.cfg.to_dict(), "origin": self.origin, "corrupt": self.corrupt,
                "compare": {sl: sorted(a) for sl, a in self.compare.items()}, **extra}
        (path / "case.json").write_text(json.dumps(meta, indent=1, default=str))
        return path

    @classmethod
    def load(cls, path: str | Path) -> Case:
        path = Path(path)
        missing = [f for f in ("program.s", "image.npz", "case.json") if not (path / f).exists()]
        if missing:
            raise FileNotFoundError(f"{path}: not a fuzz reproducer (missing "
                                    f"{', '.join(missing)})")
        meta = json.loads((path / "case.json").read_text())
        cfg = TspConfig.from_dict(meta["config"])
        # the assembly is the source of truth: a reproducer can be edited by hand
        # (check=False: a reproducer may be of a program the machine refuses at run time)
        program = assemble((path / "program.s").read_text(), cfg, str(path / "program.s"),
                           check=False)
        image: dict[str, dict[int, np.ndarray]] = {}
        with np.load(path / "image.npz") as z:
            for key in z.files:
                sl, a = key.rsplit("/", 1)
                image.setdefault(sl, {})[int(a)] = z[key]
        compare = {sl: set(a) for sl, a in meta["compare"].items()}
        return cls(cfg, program, image, compare, meta.get("origin", {}),
                   bool(meta.get("corrupt")))


def generate(cfg: TspConfig, kind: str, seed: int, scale: float = 1.0) -> Case:
    """The generated case ``kind``/``seed`` (a kind of :func:`fuzz_kinds`)."""
    if kind == "MEM":
        from tb.chip.programs import random_mem_program

        rp = random_mem_program(cfg, seed)
    else:
        from tb.chip.programs_compute import random_compute_program

        rp = random_compute_program(cfg, seed, kind, scale=scale)
    return Case(cfg, rp.program, rp.init, {sl: set(a) for sl, a in rp.touched.items()},
                {"kind": kind, "seed": seed, "scale": scale})


def fuzz_plan(n: int, base_seed: int, kinds: Sequence[str] | None = None
              ) -> list[tuple[str, int]]:
    """(kind, seed) of ``n`` cases: seed ``base_seed * SEED_STRIDE + i``, the kind drawn
    from `KIND_WEIGHTS` by that seed (so any one case can be re-made alone)."""
    kinds = list(kinds or fuzz_kinds())
    bad = [k for k in kinds if k not in fuzz_kinds()]
    if bad:
        raise ValueError(f"unknown fuzz kind(s) {bad}; kinds are {', '.join(fuzz_kinds())}")
    if not 0 <= base_seed < 2**31:
        raise ValueError(f"seed {base_seed} out of range 0..{2**31 - 1}")
    w = np.array([KIND_WEIGHTS.get(k, 1.0) for k in kinds])
    out = []
    for i in range(n):
        seed = base_seed * SEED_STRIDE + i
        k = int(np.random.default_rng([seed, 0xF022]).choice(len(kinds), p=w / w.sum()))
        out.append((kinds[k], seed))
    return out


def _is_icu(ins: Instr) -> bool:
    return ins.mnemonic in ICU_MNEMONICS


# ======================================================================== model verdict
@dataclass
class Outcome:
    """What the model says about a case.  ``ok``: accepted and independent of undefined
    state; then ``result`` and ``sram`` (the final vectors at the compared addresses)."""

    error: str | None = None
    result: RunResult | None = None
    sram: dict[str, dict[int, np.ndarray]] = field(default_factory=dict)
    #: every address the program wrote, found by the random-state run
    written: dict[str, set[int]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.error is None


def randomise_state(m: Machine, rng: np.random.Generator, complement: bool = False,
                    extreme: str | None = None) -> None:
    """Random bits in every piece of state a program could read without defining it;
    with `complement`, the bitwise complement of what the same `rng` state gives (a
    second draw that differs from the first in every bit); with `extreme` ("min" or
    "max") every value at that end of its range instead."""
    vl = m.cfg.vector_length

    def fill(arr, lo, hi):
        if extreme is not None:
            arr[:] = lo if extreme == "min" else hi - 1
            return
        v = rng.integers(lo, hi, arr.shape)
        arr[:] = (lo + hi - 1 - v) if complement else v

    for name in m.mem:
        fill(m.mem[name], 0, 256)
    for regs in m.vxm.values():
        fill(regs, -(2**31), 2**31)
    for st in m.mxm.values():
        fill(st.active, -128, 128)
        fill(st.shadow, -128, 128)
        fill(st.acc, -(2**31), 2**31)
    for maps in m.sxm_maps.values():
        fill(maps, 0, vl)
    for rows in m.sxm_tp.values():  # the transposers (configs with sxm_transpose_rows)
        fill(rows, 0, 256)


def load_case(m: Machine, case: Case) -> None:
    """The case's SRAM image and program into machine ``m``."""
    for sl, d in case.image.items():
        for a, v in d.items():
            m.write_mem(sl, a, v)
    m.load_program(case.program)


def model_outcome(case: Case, *, compare: dict[str, set[int]] | None = None, seed: int = 0,
                  max_cycles: int = 200_000) -> Outcome:
    """Run the model from reset and from random state (see the module doc).  `compare`
    defaults to ``case.compare``; ``{}`` means every address the program wrote."""
    cfg = case.cfg
    clean = Machine(cfg)
    load_case(clean, case)
    try:
        res = clean.run(max_cycles=max_cycles)
    except MachineError as e:
        return Outcome(error=f"the model refuses the program: {e}")
    dirty = Machine(cfg)
    randomise_state(dirty, np.random.default_rng([seed, 0xD1]))
    load_case(dirty, case)
    before = {sl: dirty.mem[sl].copy() for sl in dirty.mem}
    try:
        res2 = dirty.run(max_cycles=max_cycles)
    except MachineError as e:
        return Outcome(error=f"from random state the model refuses the program: {e}")
    for what in ("cycles", "busy", "issued", "mxm_mvm_cycles"):
        if getattr(res, what) != getattr(res2, what):
            return Outcome(error=f"{what} depend on uninitialised state")
    written = {sl: {int(a) for a in np.nonzero((dirty.mem[sl] != before[sl]).any(axis=1))[0]}
               for sl in dirty.mem}
    cmp = case.compare if compare is None else compare
    if not cmp:
        cmp = written
    sram: dict[str, dict[int, np.ndarray]] = {}
    for sl, addrs in cmp.items():
        for a in sorted(addrs):
            v = clean.read_mem(sl, a)
            if not np.array_equal(v, dirty.read_mem(sl, a)):
                return Outcome(error=f"{sl}[{a}] depends on uninitialised state")
            sram.setdefault(sl, {})[a] = v
    return Outcome(None, res, sram, {sl: a for sl, a in written.items() if a})


# ============================================================================= shrinking
#: a queue item: ("ins", instruction, its REPEAT or None) | ("nop", n) | ("icu", instr)
Item = tuple


def _items(program: Program, sl: str, word_item: dict | None = None) -> list[Item]:
    """Items of queue `sl`; `word_item` (if given) gets (sl, word index) -> item index
    for the slice instructions."""
    out: list[Item] = []
    for w, ins in enumerate(program.instrs(sl)):
        mn = ins.mnemonic
        if mn == "REPEAT":
            kind, prev, _ = out[-1]
            out[-1] = (kind, prev, ins)
        elif mn == "NOP":
            out.append(("nop", ins.fields["n"], None))
        elif mn in ("SYNC", "NOTIFY", "HALT"):
            out.append(("icu", ins, None))
        else:
            if word_item is not None:
                word_item[(sl, w)] = len(out)
            out.append(("ins", ins, None))
    return out


def _emit(items: list[Item]) -> list[Instr]:
    """Queue words from items, adjacent NOPs merged (NOP a; NOP b == NOP a+b)."""
    out: list[Instr] = []
    pending = 0
    for kind, x, rep in items:
        if kind == "nop":
            pending += x
            continue
        if pending:
            out.append(Instr("NOP", {"n": pending}))
            pending = 0
        out.append(x)
        if rep is not None:
            out.append(rep)
    if pending:
        out.append(Instr("NOP", {"n": pending}))
    return out


def _span(item: Item) -> int:
    _, _, rep = item
    return 1 if rep is None else rep.fields["n"] * rep.fields["d"] + 1


class _Shape:
    """A program as items per slice; units = the slice instructions (removable)."""

    def __init__(self, program: Program):
        self.cfg = program.cfg
        #: (slice, word index) -> item index, for the slice instructions
        self.word_item: dict[tuple[str, int], int] = {}
        self.items = {s.name: _items(program, s.name, self.word_item)
                      for s in self.cfg.slices}

    def units(self) -> list[tuple[str, int]]:
        return [(sl, i) for sl, its in self.items.items()
                for i, it in enumerate(its) if it[0] == "ins"]

    def program(self, items=None) -> Program:
        return Program.from_instrs(self.cfg, {sl: _emit(its)
                                              for sl, its in (items or self.items).items()})

    def without(self, units) -> Program:
        """Each unit replaced by a NOP of its length: the others keep their cycles."""
        items = {sl: list(its) for sl, its in self.items.items()}
        for sl, i in units:
            items[sl][i] = ("nop", _span(items[sl][i]), None)
        return self.program(items)

    def fewer_repeats(self, sl: str, i: int) -> Program | None:
        """The REPEAT of unit (sl, i) with half the repetitions, padded to its length."""
        kind, ins, rep = self.items[sl][i]
        if rep is None:
            return None
        n, d = rep.fields["n"], rep.fields["d"]
        k = n // 2
        items = {s: list(its) for s, its in self.items.items()}
        new = [(kind, ins, Instr("REPEAT", {**rep.fields, "n": k}) if k else None)]
        new.append(("nop", (n - k) * d, None))
        items[sl][i:i + 1] = new
        return self.program(items)

    def without_barrier(self) -> Program | None:
        """SYNC/NOTIFY replaced by NOP 2 (same timing when the barrier opens the program)."""
        items = {sl: [("nop", 2, None) if k == "icu" and x.mnemonic in ("SYNC", "NOTIFY")
                      else (k, x, r) for k, x, r in its] for sl, its in self.items.items()}
        if items == self.items:
            return None
        return self.program(items)


    def idle_queues_halt(self) -> Program | None:
        """Queues without slice instructions reduced to a bare HALT."""
        items = {sl: its if any(k == "ins" for k, _, _ in its) else
                 [("icu", Instr("HALT", {}), None)] for sl, its in self.items.items()}
        if items == self.items:
            return None
        return self.program(items)


class _Events(Observer):
    def __init__(self):
        self.issues: list = []
        self.reads: list = []
        self.sram: list = []

    def on_issue(self, ev):
        if ev.latency is not None:
            self.issues.append(ev)

    def on_stream_read(self, ev):
        self.reads.append(ev)

    def on_sram(self, ev):
        self.sram.append(ev)


def dependency_cone(case: Case, targets) -> set[tuple[str, int]] | None:
    """The slice instructions, as (slice, word index), that the final contents of the SRAM
    addresses `targets` ((slice, address) pairs) can depend on in a run of `case` on the
    model: the last write of each address, the producers of every stream value an
    included instruction reads, the last write of every address it reads, and --
    conservatively, for the state a compute slice keeps (registers, weights,
    accumulators, maps) -- every earlier instruction of the same compute slice.  None if
    the model refuses the case."""
    ev = _Events()
    m = Machine(case.cfg, observer=ev)
    load_case(m, case)
    try:
        m.run()
    except MachineError:
        return None
    vl = case.cfg.vector_length
    index = {(e.slice, e.cycle): e.index for e in ev.issues}  # an instance -> its word
    kind = {e.slice: e.kind for e in ev.issues}
    by_slice: dict[str, list[int]] = {}
    for e in ev.issues:
        by_slice.setdefault(e.slice, []).append(e.cycle)
    reads: dict[tuple[str, int], list] = {}
    for r in ev.reads:
        reads.setdefault((r.slice, r.cycle), []).append(r)
    sram_read: dict[tuple[str, int], object] = {}
    writes: dict[tuple[str, int], list[tuple[int, int]]] = {}  # (slice, addr) -> [(c, t)]
    for e in ev.sram:
        addrs = np.broadcast_to(np.asarray(e.addrs), vl)
        if e.op == "read":
            sram_read[(e.slice, e.issue_cycle)] = addrs
        else:
            for a in set(addrs.tolist()):
                writes.setdefault((e.slice, a), []).append((e.cycle, e.issue_cycle))

    def last_write(sl: str, a: int, before: int):
        ws = [w for w in writes.get((sl, a), ()) if w[0] < before]
        return (sl, max(ws)[1]) if ws else None

    todo = [w for sl, a in targets if (w := last_write(sl, a, 1 << 62)) is not None]
    seen: set[tuple[str, int]] = set()
    while todo:
        inst = todo.pop()
        if inst in seen or inst not in index:
            continue
        seen.add(inst)
        sl, t = inst
        todo += [(r.producer, r.producer_issue) for r in reads.get(inst, ())]
        if inst in sram_read:
            todo += [w for a in set(sram_read[inst].tolist())
                     if (w := last_write(sl, a, t + 1)) is not None]
        if kind[sl] != "MEM":
            todo += [(sl, c) for c in by_slice[sl] if c < t]
    return {(sl, index[(sl, t)]) for sl, t in seen}


def _chunks(xs: list, n: int) -> list[list]:
    k, r = divmod(len(xs), n)
    out, i = [], 0
    for j in range(n):
        m = k + (j < r)
        if m:
            out.append(xs[i:i + m])
        i += m
    return out


@dataclass
class ShrinkStats:
    rounds: int = 0
    candidates: int = 0
    model_rejected: int = 0
    oracle_runs: int = 0


def shrink(case: Case, still_fails: Callable[[list[Case]], list[bool]], *,
           max_oracle_runs: int = 60, focus=(), log: Callable[[str], None] = lambda s: None
           ) -> tuple[Case, ShrinkStats]:
    """A smaller case that `still_fails` (see the module doc); `still_fails` gets a batch
    of model-approved candidates and says which of them still fail.  `focus`: SRAM
    (slice, address) pairs known to mismatch; the first candidate then keeps only their
    `dependency_cone`."""
    st = ShrinkStats()

    def candidate(program: Program, image=None) -> Case | None:
        st.candidates += 1
        c = replace(case, program=program, image=image if image is not None else cur.image,
                    compare={})
        out = model_outcome(c)
        if not out.ok:
            st.model_rejected += 1
            return None
        return replace(c, compare=out.written)

    def first_failing(cands: list[Case | None]) -> Case | None:
        cands = [c for c in cands if c is not None]
        if not cands or st.oracle_runs >= max_oracle_runs:
            return None
        st.oracle_runs += 1
        verdict = still_fails(cands)
        hits = [c for c, f in zip(cands, verdict, strict=True) if f]
        return min(hits, key=lambda c: (c.n_slice_instructions, c.n_instructions)
                   ) if hits else None

    cur = case
    # 0. only what the mismatching addresses depend on
    cone = dependency_cone(case, focus) if focus else None
    if cone:
        shape = _Shape(cur.program)
        keep = {(w[0], shape.word_item[w]) for w in cone if w in shape.word_item}
        found = first_failing([candidate(shape.without(
            [u for u in shape.units() if u not in keep]))])
        if found is not None:
            log(f"shrink: dependency cone of {len(focus)} address(es): "
                f"{cur.n_slice_instructions} -> {found.n_slice_instructions} slice "
                "instructions")
            cur = found
    # 1. delta debugging over the slice instructions
    n = 2
    while True:
        shape = _Shape(cur.program)
        units = shape.units()
        if not units:
            break
        n = min(n, len(units))
        chunks = _chunks(units, n)
        st.rounds += 1
        cands = []
        if n > 1:  # keep one chunk only, then drop one chunk
            cands += [candidate(shape.without([u for u in units if u not in set(ch)]))
                      for ch in chunks]
        cands += [candidate(shape.without(ch)) for ch in chunks]
        found = first_failing(cands)
        if found is not None:
            log(f"shrink: {cur.n_slice_instructions} -> {found.n_slice_instructions} slice "
                "instructions")
            cur = found
            n = 2 if n > 1 and any(c is found for c in cands[:len(chunks)]) else max(n - 1, 2)
            continue
        if n >= len(units) or st.oracle_runs >= max_oracle_runs:
            break
        n = min(2 * n, len(units))
    # 2. fewer repetitions, 3. no start barrier, 4. idle queues just HALT
    while st.oracle_runs < max_oracle_runs:
        shape = _Shape(cur.program)
        cands = [candidate(p) for p in (shape.fewer_repeats(sl, i) for sl, i in shape.units())
                 if p is not None]
        for p in (shape.without_barrier(), shape.idle_queues_halt()):
            if p is not None:
                cands.append(candidate(p))
        found = first_failing(cands)
        if found is None:
            break
        cur = found
    # 5. fewer image vectors (delta debugging over the image)
    keys = [(sl, a) for sl, d in cur.image.items() for a in d]
    n = 2
    while keys and st.oracle_runs < max_oracle_runs:
        chunks = _chunks(keys, min(n, len(keys)))
        cands = []
        for ch in chunks:
            drop = set(ch)
            img = {sl: {a: v for a, v in d.items() if (sl, a) not in drop}
                   for sl, d in cur.image.items()}
            cands.append(candidate(cur.program, {sl: d for sl, d in img.items() if d}))
        found = first_failing(cands)
        if found is not None:
            cur = found
            keys = [(sl, a) for sl, d in cur.image.items() for a in d]
            n = max(n - 1, 2)
        elif n >= len(keys):
            break
        else:
            n = min(2 * n, len(keys))
    log(f"shrink: done, {cur.n_slice_instructions} slice instructions "
        f"({cur.n_instructions} words), "
        f"{sum(len(d) for d in cur.image.values())} image vectors ({st.oracle_runs} oracle "
        f"runs, {st.candidates} candidates, {st.model_rejected} refused by the model)")
    return cur, st

