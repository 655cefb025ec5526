"""MXM slice RTL (hdl/mxm.py) against the machine model, in Amaranth's simulator.

`SliceBench` (also used by tests/test_sxm_unit.py) runs each instruction sequence of one
slice on `golden.machine.Machine`, with MEM slices READing the operand vectors onto the
streams so that they arrive at the slice exactly in the cycles the instructions read them,
then plays the same issue words (REPEAT offsets included) and the stream registers at the
slice's position (invalid ones as random bytes) into the RTL slice with the superlane skew
(superlane k in cycle c + k), records every stream write of every tile, de-skews it and
compares it with the model's trace: same (cycle, direction, stream), same bytes, nothing
else.  Sequences run back to back in one simulation; the model's and the RTL's state
(weights, accumulators, maps) carry over from one sequence to the next.
"""

from __future__ import annotations

import gc
import os
import random
import sys
import time
import warnings

import numpy as np
import pytest
from amaranth import Cat, Elaboratable, Module, Signal
from amaranth.hdl import UnusedElaboratable
from amaranth.sim import Simulator

from arch.asm import format_instr, parse_instr
from arch.config import get_config
from arch.isa import Instr, decode, encode, latency, stride_fields
from arch.program import Program
from golden.machine import Machine, MachineError
from hdl.mxm import MxmSlice
from hdl.slice import ErrorCode

sys.path.insert(0, os.path.dirname(__file__))

TINY, SMALL, MEDIUM = get_config("tiny"), get_config("small"), get_config("medium")
DIRS = "EW"
ICU = ("NOP", "REPEAT", "SYNC", "NOTIFY", "HALT")


# ============================================================================ harness
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


# ============================================================================ MXM bench
def mxm_needs(mn, f):
    out = []
    if mn == "MVM":
        out.append(("x", f["x_d"], f["x_s"]))
        if f["ld"]:
            out.append(("w", f["w_d"], f["w_s"]))
    elif mn in ("LW", "LWT"):
        out.append(("w", f["w_d"], f["w_s"]))
    return out


def mxm_bench(cfg, seed):
    b = SliceBench(cfg, "MXM", mxm_needs, seed)
    # the two MXMs share one state in the model: sequences alternate between MXM_W0
    # (operands on westward streams) and MXM_E0 (eastward) and both mirror the one DUT
    st = b.machine.mxm["MXM_W0"]
    for s in cfg.slices_of("MXM"):
        b.machine.mxm[s.name] = st
    return b


def mvm_port_check(expected):
    def check(ctx, seq, c):
        want = int(c in seq.issues and seq.issues[c][3] == "MVM")
        got = ctx.get(expected.mvm)
        assert got == want, f"mvm port {got} in cycle {c}, expected {want}\n{seq.text}"
    return check


def in_dir(name):
    return "W" if name.endswith("W0") else "E"


def i8(v):
    return np.asarray(v, np.int64).astype(np.uint8)


def random_mxm_items(cfg, rng: random.Random, name):
    """A random legal MXM instruction sequence (IW never while a load is in flight)."""
    VL, NS = cfg.vector_length, cfg.streams_per_direction
    d_in = in_dir(name)
    lwt_l = latency("LWT", cfg)
    items = []
    t = 0  # relative issue cycle
    load_done = -1

    def stream():
        return f"s{rng.randrange(NS)}.{d_in}"

    def vec():
        k = rng.random()
        if k < 0.1:
            return i8(np.full(VL, rng.choice([-128, 127])))
        if k < 0.2:
            return i8(np.random.default_rng(rng.getrandbits(32)).choice([-128, 127, -1, 0, 1], VL))
        return None

    for _ in range(rng.randint(8, 20)):
        if rng.random() < 0.25:
            n = rng.randint(1, 4)
            items.append((f"NOP {n}", None))
            t += n
        op = rng.choices(["LW", "LWT", "IW", "MVM", "MVMLD"], [3, 2, 2, 5, 3])[0]
        rep = None
        if op == "IW":
            if load_done > t:
                items.append((f"NOP {load_done - t}", None))
                t = load_done
            items.append(("IW", None))
            t += 1
            continue
        if op in ("LW", "LWT"):
            n = rng.randint(0, 3) if rng.random() < 0.3 else 0
            sa = rng.choice([-1, 1, 2]) if n else 0
            lo, hi = max(0, -sa * n), min(VL - 1, VL - 1 - sa * n)
            row = rng.randint(lo, hi)
            text = f"{op} {row}, {stream()}"
            lat = 1 if op == "LW" else lwt_l
            if n:
                d = rng.randint(1, 2)
                rep = f"REPEAT {n}, {d}, {sa}"
                load_done = max(load_done, t + n * d + lat)
                t += n * d + 1
            else:
                load_done = max(load_done, t + lat)
                t += 1
            items.append((text, {"w": vec()}))
            if rep:
                items.append((rep, None))
            continue
        n = rng.randint(0, 3) if rng.random() < 0.3 else 0
        sa = rng.choice([-1, 1, 3]) if n else 0
        sb = rng.choice([-1, 0, 1] if op == "MVMLD" else [0, 1]) if n else 0
        acc = rng.randint(max(0, -sa * n), min(31, 31 - sa * n))
        text = f"MVM {stream()}, {acc}"
        if rng.random() < 0.5:
            text += ", accum"
        if rng.random() < 0.7:
            text += f", emit=s{rng.randrange(NS - 3)}.{rng.choice('EW')}"
        lat = 0
        if op == "MVMLD":
            kind = rng.choice(["lw", "lwt"])
            row = rng.randint(max(0, -sb * n), min(VL - 1, VL - 1 - sb * n))
            text += f", {kind}={row}@{stream()}"
            lat = 1 if kind == "lw" else lwt_l
        d = rng.randint(1, 2) if n else 1
        items.append((text, {"x": vec(), "w": vec()}))
        if n:
            items.append((f"REPEAT {n}, {d}, {sa}, {sb}", None))
        if lat:
            load_done = max(load_done, t + n * d + lat)
        t += n * d + 1
    return items


# ============================================================================ tests
def test_mxm_rejects_bad_parameters():
    with warnings.catch_warnings():  # the half-built object warns when it is collected
        warnings.simplefilter("ignore", UnusedElaboratable)
        with pytest.raises(ValueError, match="cfg must be a TspConfig"):
            MxmSlice("small")
        gc.collect()


def test_mxm_signature():
    from hdl.mxm import MxmSignature
    from hdl.slice import SliceSignature
    sig = MxmSignature(SMALL)
    assert isinstance(sig, SliceSignature) and sig == MxmSignature(SMALL)
    assert sig != SliceSignature(SMALL) and sig != MxmSignature(TINY)
    assert set(sig.members) == set(SliceSignature(SMALL).members) | {"mvm"}


@pytest.mark.parametrize("cfg", [TINY, SMALL], ids=["tiny", "small"])
def test_mxm_random_sequences(cfg, base_seed):
    seed = base_seed + 100 + cfg.superlanes
    print(f"MXM random sequences: config {cfg.name}, seed {seed}")
    rng = random.Random(seed)
    b = mxm_bench(cfg, seed)
    names = [s.name for s in cfg.slices_of("MXM")]
    for n in range(20):
        name = names[n % len(names)]
        b.run(name, random_mxm_items(cfg, rng, name))
    dut = MxmSlice(cfg)
    b.simulate(dut, port_checks=mvm_port_check(dut))
    print(f"  {len(b.sequences)} sequences, "
          f"{sum(s.cycles + cfg.superlanes for s in b.sequences)} cycles, "
          f"{sum(len(s.writes) for s in b.sequences)} stream writes checked, "
          f"simulation {b.sim_seconds:.1f} s (cpu {b.sim_cpu:.1f} s)")


def _directed(cfg, seed=7):
    """Directed corners, one simulation: returns the bench (already simulated)."""
    VL, S = cfg.vector_length, cfg.superlanes
    rng = np.random.default_rng(seed)
    b = mxm_bench(cfg, seed)

    def rnd():
        return i8(rng.integers(-128, 128, VL))

    # 1. -128 * -128 over the whole vector: every lane VL * 16384 (no overflow in the tree)
    neg = i8(np.full(VL, -128))
    b.run("MXM_W0", [("LW 0, s1.W", {"w": neg}), (f"REPEAT {VL - 1}, 1, 1", None),
                     ("IW", None), ("MVM s2.W, 0, emit=s0.E", {"x": neg}),
                     ("MVM s2.W, 1, emit=s4.W", {"x": i8(np.full(VL, 127))})])
    out = b.sequences[-1].writes
    lat = latency("MVM", cfg)
    planes = np.stack([out[(b.lead + VL + 1 + lat, 0, s)] for s in range(4)])
    assert (planes.T.copy().view("<i4")[:, 0] == VL * 16384).all()
    # 2. IW while MVMs stream: MVM at t uses the old weights, t+1 the new
    wa, wb = rnd(), rnd()
    x = [rnd() for _ in range(4)]
    b.run("MXM_E0", [("LW 3, s0.E", {"w": wa}), ("IW", None),
                     ("LW 3, s1.E", {"w": wb}),
                     ("MVM s2.E, 0, emit=s4.E", {"x": x[0]}), ("IW", None),
                     ("MVM s3.E, 1, emit=s4.E", {"x": x[1]}),
                     ("MVM s2.E, 2, emit=s1.W", {"x": x[2]}), ("IW", None), ("IW", None),
                     ("MVM s2.E, 3, emit=s0.W", {"x": x[3]})])
    # 3. accumulate over several passes (K > VL), then emit
    b.run("MXM_W0", [("MVM s5.W, 7", {"x": rnd()}),
                     ("MVM s5.W, 7, accum", None), ("REPEAT 3, 1", None),
                     ("NOP 3", None),
                     ("MVM s6.W, 7, accum", None), ("MVM s6.W, 7, accum, emit=s1.E", None),
                     ("MVM s6.W, 7, accum, emit=s1.W", None)])
    # 4. LWT transposed install, then MVM (IW exactly when the last column has landed)
    wait = [(f"NOP {latency('LWT', cfg) - 1}", None)] if S > 1 else []
    b.run("MXM_E0", [("LWT 0, s2.E", None), (f"REPEAT {VL - 1}, 1, 1", None), *wait,
                     ("IW", None), ("MVM s4.E, 9, emit=s0.E", None),
                     ("LWT 5, s1.E", None), (f"NOP {latency('LWT', cfg)}", None),
                     ("IW", None), ("MVM s4.E, 9, accum, emit=s3.W", None)])
    # 5. MVM with lw= at full rate: the next tile's rows load while this one computes
    b.run("MXM_W0", [("MVM s1.W, 0, emit=s0.E, lw=0@s2.W", None),
                     (f"REPEAT {VL - 1}, 1, 0, 1", None), ("IW", None),
                     ("MVM s1.W, 1, emit=s4.E, lwt=0@s2.W", None),
                     (f"REPEAT {VL - 1}, 1, 0, 1", None), *wait, ("IW", None),
                     ("MVM s3.W, 2, accum, emit=s0.W", None)])
    # 6. emit on both directions from both MXMs, consecutive MVMs on one slot
    b.run("MXM_E0", [("MVM s0.E, 31, emit=s0.W", None),
                     ("MVM s0.E, 31, accum, emit=s0.E", None),
                     ("MVM s0.E, 31, accum, emit=s4.W", None)])
    return b


@pytest.mark.parametrize("cfg", [TINY, SMALL], ids=["tiny", "small"])
def test_mxm_directed_corners(cfg):
    b = _directed(cfg)
    dut = MxmSlice(cfg)
    b.simulate(dut, port_checks=mvm_port_check(dut))


def test_mxm_iw_refused_while_load_in_flight():
    """IW before an LWT's column has landed: the model refuses it, and the RTL raises
    ILLEGAL_INSTRUCTION in the IW's issue cycle (directed test 4 issues IW exactly when
    it becomes legal, test 2 right after an LW)."""
    cfg = SMALL
    b = mxm_bench(cfg, 3)
    lwt = latency("LWT", cfg)
    bad = [("LWT 1, s0.W", None), (f"NOP {lwt - 2}", None), ("IW", None)]
    assert b.run("MXM_W0", bad, expect_error="IW while a weight load is in flight") is None
    b.sequences.append(_hand_sequence(b, bad, "LWT; IW one cycle too early"))
    iw_cycle = max(b.sequences[0].issues)
    b.simulate(MxmSlice(cfg), error_at={0: (iw_cycle, ErrorCode.ILLEGAL_INSTRUCTION)})


def _hand_sequence(b, items, text):
    """A sequence played into the RTL without a model run (no stream inputs)."""
    words, issues = b.schedule(items)
    cycles = issues[-1][0] + 4
    return Sequence("MXM_W0", text, cycles,
                    {t: (words[i], oa, ob, mn) for t, i, _, mn, _, oa, ob, _ in issues},
                    {(d, s): [None] * cycles for d in (0, 1)
                     for s in range(b.cfg.streams_per_direction)}, {}, {})


def test_mxm_strided_field_out_of_range_is_illegal():
    cfg = TINY
    b = mxm_bench(cfg, 4)
    items = [("MVM s0.W, 30", None), ("REPEAT 2, 1, 1", None)]
    b.sequences.append(_hand_sequence(b, items, "MVM acc 30, 31, 32"))
    last = max(b.sequences[0].issues)
    b.simulate(MxmSlice(cfg), error_at={0: (last, ErrorCode.ILLEGAL_INSTRUCTION)})


@pytest.mark.slow
def test_mxm_random_sequences_medium(base_seed):
    seed = base_seed + 104
    print(f"MXM random sequences: config medium, seed {seed}")
    rng = random.Random(seed)
    b = mxm_bench(MEDIUM, seed)
    for n in range(20):
        name = ("MXM_W0", "MXM_E0")[n % 2]
        b.run(name, random_mxm_items(MEDIUM, rng, name))
    dut = MxmSlice(MEDIUM)
    b.simulate(dut, port_checks=mvm_port_check(dut))
    print(f"  {len(b.sequences)} sequences, "
          f"{sum(s.cycles + MEDIUM.superlanes for s in b.sequences)} cycles, "
          f"simulation {b.sim_seconds:.1f} s (cpu {b.sim_cpu:.1f} s)")
