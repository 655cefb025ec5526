"""Shared test harness: model-driven stimulus and per-lane checking of one RTL slice in
Amaranth's simulator (used by tests/test_mxm_unit.py and tests/test_sxm_unit.py).

`SliceBench` runs each instruction sequence of one slice on `golden.machine.Machine`, with
MEM slices READing the operand vectors onto the streams so that they arrive at the slice
exactly in the cycles the instructions read them, then plays the same issue words (REPEAT
offsets included) and the stream registers at the slice's position (invalid ones as random
bytes) into the RTL slice with the superlane skew (superlane k in cycle c + k), records every
stream write of every tile, de-skews it and compares it with the model's trace: same (cycle,
direction, stream), same bytes, nothing else.  Sequences run back to back in one simulation;
the model's and the RTL's state (weights, accumulators, maps) carry over from one sequence to
the next.
"""

from __future__ import annotations

import gc
import random
import time

import numpy as np
import pytest
from amaranth import Cat, Elaboratable, Module, Signal
from amaranth.sim import Simulator

from arch.asm import format_instr, parse_instr
from arch.isa import Instr, decode, encode, stride_fields
from arch.program import Program
from golden.machine import Machine, MachineError
from hdl.slice import ErrorCode

DIRS = "EW"
ICU = ("NOP", "REPEAT", "SYNC", "NOTIFY", "HALT")


class StimTop(Elaboratable):
    """The slice under test with all its inputs (issue port, every tile's e_in/w_in)
    packed into one signal: the testbench sets them with one ``ctx.set`` per cycle
    (each set makes the simulator settle the whole design)."""

    def __init__(self, dut):
        self.dut = dut
        self.parts = [dut.issue.as_value()]
        for tile in dut.tiles:
            self.parts += [tile.e_in.as_value(), tile.w_in.as_value()]
        self.stim = Signal(sum(len(p) for p in self.parts))

    def pack(self, values):
        """values: one int per part (issue, then e_in, w_in of tile 0, 1, ...)."""
        word, pos = 0, 0
        for part, v in zip(self.parts, values, strict=True):
            word |= (v & ((1 << len(part)) - 1)) << pos
            pos += len(part)
        return word

    def elaborate(self, platform):
        m = Module()
        m.submodules.dut = self.dut
        m.d.comb += Cat(*self.parts).eq(self.stim)
        return m


class Sequence:
    """One run of the model: the slice's issue words and stream inputs, the writes."""

    def __init__(self, name, text, cycles, issues, streams, writes, extra):
        self.name = name  # slice name
        self.text = text  # the slice's program, for messages
        self.cycles = cycles
        self.issues = issues  # cycle -> (word, off_a, off_b, mnemonic)
        self.streams = streams  # (d, s) -> list over cycles of VL bytes or None
        self.writes = writes  # (cycle, d, s) -> VL bytes
        self.extra = extra


class SliceBench:
    """Model-driven stimulus and checking for one RTL slice (see the module docstring).

    ``needs(mnemonic, fields)`` lists the stream operands an instruction reads, as
    ``(name, direction, stream)``; an item's ``data`` gives vectors by operand name
    (missing ones are random bytes).
    """

    def __init__(self, cfg, kind, needs, seed, lead=None):
        self.cfg = cfg
        self.kind = kind
        self.needs = needs
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self.machine = Machine(cfg, keep_history=True)
        self.vl = cfg.vector_length
        self.lead = lead if lead is not None else cfg.n_positions + 2
        self.sequences: list[Sequence] = []

    # -- building and running one sequence on the model ---------------------------------
    def _instr(self, x):
        if isinstance(x, Instr):
            return x
        if isinstance(x, int):
            return decode(self.kind, x)
        return parse_instr(x, self.kind, self.cfg)

    def schedule(self, items):
        """items: [(instr or text, data dict or callable(k) or None)] -> words, issue list."""
        entries = [(self._instr(x), d) for x, d in items]
        words = [encode("NOP", n=self.lead)] + [e.encode() for e, _ in entries]
        words.append(encode("HALT"))
        issues = []  # (cycle, idx, k, fields, off_a, off_b, data)
        t, i = self.lead, 0
        while i < len(entries):
            ins, data = entries[i]
            if ins.mnemonic == "NOP":
                t += ins["n"]
                i += 1
                continue
            assert ins.mnemonic not in ICU, ins
            nxt = entries[i + 1][0] if i + 1 < len(entries) else None
            if nxt is not None and nxt.mnemonic == "REPEAT":
                n, d, sa, sb = nxt["n"], nxt["d"], nxt["stride_a"], nxt["stride_b"]
            else:
                n, d, sa, sb = 0, 1, 0, 0
            fa, fb = stride_fields(ins.definition)
            for k in range(n + 1):
                f = dict(ins.fields)
                for name in fa:
                    f[name] += k * sa
                for name in fb:
                    f[name] += k * sb
                dk = data(k) if callable(data) else (data or {})
                issues.append((t + k * d, i + 1, k, ins.mnemonic, f, k * sa, k * sb, dk))
            t += n * d + 1
            i += 2 if nxt is not None and nxt.mnemonic == "REPEAT" else 1
        return words, issues

    def hand_sequence(self, name, items, text, extra_cycles=4) -> Sequence:
        """``items`` on slice ``name`` as a sequence played into the RTL without a model run
        (no stream inputs), ``extra_cycles`` after its last issue."""
        words, issues = self.schedule(items)
        cycles = issues[-1][0] + extra_cycles
        return Sequence(name, text, cycles,
                        {t: (words[i], oa, ob, mn) for t, i, _, mn, _, oa, ob, _ in issues},
                        {(d, s): [None] * cycles for d in (0, 1)
                         for s in range(self.cfg.streams_per_direction)}, {}, {})

    def illegal(self, name, cases) -> dict:
        """Each (text, items) of ``cases`` on slice ``name`` as its own sequence: the model
        must refuse its last issue (`run` with an expected error); returns the ``error_at``
        for `simulate`: ILLEGAL_INSTRUCTION in that cycle of each sequence."""
        for text, items in cases:
            seq = self.hand_sequence(name, items, text)
            self.run(name, items, expect_error=rf"in cycle {max(seq.issues)}: "
                                               r"(illegal instruction|after REPEAT stride)")
            self.sequences.append(seq)
        return {n: (max(seq.issues), ErrorCode.ILLEGAL_INSTRUCTION)
                for n, seq in enumerate(self.sequences)}

    def run(self, name, items, expect_error=None):
        """Run ``items`` on slice ``name`` of the model; queue the sequence for the RTL.
        With ``expect_error`` (a regex), the model must refuse the program instead."""
        cfg, m = self.cfg, self.machine
        q = cfg.slice(name).index
        words, issues = self.schedule(items)
        mems = [s for s in cfg.slices_of("MEM")]
        busy = {s.name: {} for s in mems}  # mem -> read cycle -> (addr, d, s)
        next_addr = {s.name: 0 for s in mems}
        fed = {}
        for t, _, _, mn, f, _, _, data in issues:
            for opname, d, s in self.needs(mn, f):
                if (t, d, s) in fed:
                    continue
                vec = data.get(opname)
                if vec is None:
                    vec = self.rng.integers(0, 256, self.vl).astype(np.uint8)
                vec = np.asarray(vec).astype(np.int64).astype(np.uint8)
                side = [p for p in mems if (p.index > q if d == 1 else p.index < q)]
                self.rng.shuffle(side)
                for p in side:
                    rc = t - 1 - abs(p.index - q)
                    if rc >= 0 and rc not in busy[p.name]:
                        a = next_addr[p.name]
                        next_addr[p.name] += 1
                        m.write_mem(p.name, a, vec)
                        busy[p.name][rc] = (a, d, s)
                        fed[(t, d, s)] = vec
                        break
                else:
                    raise AssertionError(f"no MEM slice can feed s{s}.{DIRS[d]} at cycle {t}")
        queues = {name: words}
        for mem, reads in busy.items():
            if not reads:
                continue
            qw, tcur = [], 0
            for rc in sorted(reads):
                if rc > tcur:
                    qw.append(encode("NOP", n=rc - tcur))
                a, d, s = reads[rc]
                qw.append(encode("READ", addr=a, out_s=s, out_d=d))
                tcur = rc + 1
            qw.append(encode("HALT"))
            queues[mem] = qw
        prog = Program(cfg, queues)
        text = "\n".join(
            f"  {t:4d}: {format_instr(Instr(mn, f))}" + (f"  (rep {k})" if k else "")
            for t, _, k, mn, f, _, _, _ in issues)
        m.load_program(prog)
        if expect_error is not None:
            with pytest.raises(MachineError, match=expect_error):
                m.run(trace=True)
            return None
        res = m.run(trace=True)
        # the model issued what we scheduled
        got = sorted((tc.cycle, i, k) for tc in res.trace for sl, i, k, tx in tc.issued
                     if sl == name and tx.split()[0].split(".")[0] not in ICU)
        want = sorted((t, i, k) for t, i, k, *_ in issues)
        assert got == want, f"schedule mismatch:\n{got}\n{want}"
        cycles = res.cycles
        streams = {}
        for d in (0, 1):
            for s in range(cfg.streams_per_direction):
                streams[(d, s)] = [m.stream_value(q, DIRS[d], s, c) for c in range(cycles)]
        writes = {}
        for tc in res.trace:
            for w in tc.writes:
                if w.slice == name:
                    key = (tc.cycle, DIRS.index(w.direction), w.stream)
                    assert key not in writes
                    writes[key] = np.asarray(w.value, np.uint8)
        iss = {t: (words[i], oa, ob, mn) for t, i, _, mn, _, oa, ob, _ in issues}
        seq = Sequence(name, text, cycles, iss, streams, writes, {"res": res})
        self.sequences.append(seq)
        return seq

    # -- the RTL ------------------------------------------------------------------------
    def simulate(self, dut, port_checks=None, error_at=None):
        """Play every queued sequence into ``dut``; return the RTL's writes per sequence.

        ``port_checks(ctx, seq, c)`` may check extra ports in model cycle ``c``;
        ``error_at`` = {sequence index: (cycle, code)} for expected errors."""
        cfg = self.cfg
        S, NS = cfg.superlanes, cfg.streams_per_direction
        rnd = random.Random(self.seed)
        results = [dict() for _ in self.sequences]
        errors = [[] for _ in self.sequences]

        def stream_word(seq, k, d, c):
            parts = []
            for s in range(NS):
                v = seq.streams[(d, s)][c] if 0 <= c < seq.cycles else None
                parts.append(v[16 * k:16 * k + 16].tobytes() if v is not None
                             else rnd.getrandbits(128).to_bytes(16, "little"))
            return int.from_bytes(b"".join(parts), "little")

        top = StimTop(dut)
        lay = dut.issue.shape()

        def issue_bits(valid, word, oa, ob):
            v = 0
            for name, val in (("valid", valid), ("word", word), ("off_a", oa), ("off_b", ob)):
                f = lay[name]
                v |= (val & ((1 << f.width) - 1)) << f.offset
            return v

        async def bench(ctx):
            for n, seq in enumerate(self.sequences):
                out = results[n]
                for c in range(seq.cycles + S):
                    if c in seq.issues:
                        word, oa, ob, _ = seq.issues[c]
                        vals = [issue_bits(1, word, oa, ob)]
                    else:
                        vals = [issue_bits(0, rnd.getrandbits(64), 0, 0)]
                    for k in range(S):
                        vals += [stream_word(seq, k, 0, c - k), stream_word(seq, k, 1, c - k)]
                    ctx.set(top.stim, top.pack(vals))
                    for k in range(S):
                        tile = dut.tiles[k]
                        for d, we, val in ((0, tile.e_we, tile.e_out), (1, tile.w_we, tile.w_out)):
                            mask = ctx.get(we)
                            if not mask:
                                continue
                            raw = ctx.get(val.as_value()).to_bytes(16 * NS, "little")
                            for s in range(NS):
                                if mask >> s & 1:
                                    out.setdefault((c - k, d, s), {})[k] = raw[16 * s:16 * s + 16]
                    if ctx.get(dut.error):
                        errors[n].append((c, ctx.get(dut.error_code)))
                    if port_checks is not None:
                        port_checks(ctx, seq, c)
                    await ctx.tick()

        sim = Simulator(top)
        sim.add_clock(1e-6)
        sim.add_testbench(bench)
        t0, p0 = time.time(), time.process_time()
        # the simulator allocates many short-lived objects: without this the garbage
        # collector re-scans the (large) elaborated design over and over (6x slower)
        gc.disable()
        try:
            sim.run()
        finally:
            gc.enable()
        self.sim_seconds = time.time() - t0
        self.sim_cpu = time.process_time() - p0
        error_at = error_at or {}
        for n, seq in enumerate(self.sequences):
            want = [error_at[n]] if n in error_at else []
            assert errors[n][:1] == want, (
                f"seed {self.seed} sequence {n} ({seq.name}): error port {errors[n][:3]}, "
                f"expected {want}\n{seq.text}")
            if n in error_at:
                continue
            self.compare(n, seq, results[n])
        return results

    def compare(self, n, seq, rtl):
        S = self.cfg.superlanes
        where = f"seed {self.seed} sequence {n} on {seq.name}:\n{seq.text}"
        got = {}
        for key, parts in rtl.items():
            missing = [k for k in range(S) if k not in parts]
            assert not missing, (f"write {self._key(key)}: superlanes {missing} not written "
                                 f"(the others were)\n{where}")
            got[key] = np.frombuffer(b"".join(parts[k] for k in range(S)), np.uint8)
        extra = sorted(set(got) - set(seq.writes))
        lost = sorted(set(seq.writes) - set(got))
        assert not extra, f"RTL writes the model does not: {[self._key(k) for k in extra]}\n{where}"
        assert not lost, f"model writes the RTL does not: {[self._key(k) for k in lost]}\n{where}"
        for key in sorted(got):
            if not np.array_equal(got[key], seq.writes[key]):
                bad = np.flatnonzero(got[key] != seq.writes[key])
                raise AssertionError(
                    f"write {self._key(key)} differs in lanes {bad[:8].tolist()}: RTL "
                    f"{got[key][bad[:8]].tolist()} model {seq.writes[key][bad[:8]].tolist()}"
                    f"\n{where}")

    @staticmethod
    def _key(key):
        c, d, s = key
        return f"cycle {c} s{s}.{DIRS[d]}"
