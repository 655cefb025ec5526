# amaranth: UnusedElaboratable=no
"""The VXM slice (hdl/vxm.py) in Amaranth's simulator against the machine model.

Reference: golden.machine.Machine runs the same VXM instruction sequence (with NOP gaps
and REPEATs) and its trace gives every stream write of the VXM with its cycle.  The VXM's
stream operands are injected into the model at the VXM's position (`InjectMachine`:
everything else -- decode, timing, register hazards, ALU, REQUANT, reduction -- is the
model's own code); the RTL gets the same bytes on ``tiles[k].e_in/w_in`` in cycle
``t + k``.  RTL writes of superlane ``k`` in cycle ``T`` are compared, de-skewed, with
the model's writes in cycle ``T - k``; there must be no other write.  Register contents
are checked through the writes of instructions that read them (and a dump at the end).
One test (`test_mem_fed_requant_small`) feeds the VXM from real MEM READs instead and
takes its inputs from the model's stream registers.

Seeds: the base seed is ``--seed``/``$TSP_SEED`` (printed in the header); every
randomised test prints the seeds it used.
"""

from __future__ import annotations

import numpy as np
import pytest
from amaranth import Module, Signal
from amaranth.sim import Simulator

from arch import isa
from arch.asm import assemble, format_instr, parse_instr
from arch.config import get_config
from arch.isa import DIRS, TYPE_BYTES, TYPE_SIGNED, TYPES, Instr
from arch.program import Program
from golden.machine import Machine, MachineError, from_planes, to_planes
from golden.quant import requantize
from hdl.slice import ErrorCode, SliceSignature, view
from hdl.vxm import VxmSlice, vxm_word_legal
from hdl.vxm_alu import N_OPS, OP_BIT, TYPE_RANGE, VxmAlu

E, W = 0, 1
CONFIGS = ["tiny", "small"]
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


# ============================================================================ harness
class InjectMachine(Machine):
    """The machine model with the VXM's stream operands injected: ``inject[(d, s, c)]``
    is the uint8 vector on stream ``s`` of direction ``d`` at the VXM in cycle ``c``."""

    def __init__(self, cfg, inject):
        super().__init__(cfg)
        self.inject = inject

    def _rd(self, q, d, s, c):
        if q.kind != "VXM":
            return super()._rd(q, d, s, c)
        v = self.inject.get((d, s, c))
        if v is None:
            raise self._fail(f"harness: nothing injected on s{s}.{DIRS[d]} in cycle {c}")
        return v


class Schedule:
    """A VXM instruction sequence with issue cycles and the stream operands it reads."""

    def __init__(self, cfg, rng):
        self.cfg, self.rng = cfg, rng
        self.vl = cfg.vector_length
        self.issues = []  # (cycle, Instr, (n, d, stride_a) or None, tag)
        self.inject = {}
        self.next = 0

    def rand_planes(self, nbytes):
        """Random bytes, a third of the lanes an edge byte (0, 0x7f, 0x80, 0xff)."""
        rng = self.rng
        p = rng.integers(0, 256, (nbytes, self.vl))
        edge = rng.random((nbytes, self.vl)) < 0.35
        p[edge] = rng.choice([0, 0x7F, 0x80, 0xFF], int(edge.sum()))
        return p.astype(np.uint8)

    def add(self, text, *, gap=0, rep=None, tag="", **values):
        """Issue ``text`` (asm or Instr) ``gap`` cycles after the previous issue slot;
        ``values[k]``: the (type) values of stream operand ``k`` (tiled to VL), else
        random.  ``rep`` = (n, d, stride_a): a REPEAT after it.  Returns the cycle."""
        ins = parse_instr(text, "VXM", self.cfg) if isinstance(text, str) else text
        isa.validate(ins, "VXM", self.cfg)
        c = self.next + gap
        n, d, _ = rep or (0, 1, 0)
        cycles = [c + k * d for k in range(n + 1)]
        nb = TYPE_BYTES[TYPES[ins["type"]]]
        order = sorted("abc", key=lambda k: k not in values)
        for k in values:
            if ins[k] >= isa.SEL_REG:
                raise ValueError(f"{text}: operand {k} is not a stream")
        for ci in cycles:
            for k in order:
                sel = ins[k]
                if sel >= isa.SEL_REG:
                    continue
                dd, s = sel >> 5, sel & 31
                if k in values:
                    planes = to_planes(np.resize(np.asarray(values[k], np.int64), self.vl), nb)
                else:
                    planes = self.rand_planes(nb)
                for b in range(nb):
                    key = (dd, s + b, ci)
                    if key in self.inject:
                        if k in values and not np.array_equal(self.inject[key], planes[b]):
                            raise ValueError(f"{text}: operand {k} conflicts on {key}")
                        continue
                    self.inject[key] = planes[b]
        self.issues.append((c, ins, rep, tag))
        self.next = cycles[-1] + 1
        return c

    def program(self) -> Program:
        words, t = [], 0
        for c, ins, rep, _ in self.issues:
            if c > t:
                words.append(isa.encode("NOP", n=c - t))
            words.append(ins.encode())
            if rep:
                n, d, sa = rep
                words.append(isa.encode("REPEAT", n=n, d=d, stride_a=sa))
                t = c + n * d + 1
            else:
                t = c + 1
        words.append(isa.encode("HALT"))
        return Program(self.cfg, {"VXM": words})

    def issue_map(self):
        """cycle -> (word, off_a) as the ICU presents them."""
        out = {}
        for c, ins, rep, _ in self.issues:
            n, d, sa = rep or (0, 1, 0)
            for k in range(n + 1):
                out[c + k * d] = (ins.encode(), k * sa)
        return out

    def text_at(self, cycle):
        best = None
        for c, ins, _, tag in self.issues:
            if c <= cycle:
                best = f"{tag + ': ' if tag else ''}{format_instr(ins)} (issued {c})"
        return best

    def last_cycle(self):
        c, _, rep, _ = self.issues[-1]
        n, d, _ = rep or (0, 1, 0)
        return c + n * d


def model_writes(cfg, program, inject=None, machine=None):
    """Run the model; {(cycle, dir, stream): uint8[VL]} of the VXM's stream writes."""
    m = machine or InjectMachine(cfg, inject)
    m.load_program(program)
    res = m.run(trace=True)
    out = {}
    for tc in res.trace:
        for w in tc.writes:
            if w.slice == "VXM":
                out[(tc.cycle, DIRS.index(w.direction), w.stream)] = np.asarray(w.value)
    return out, m


class RtlRunner:
    """One simulated VxmSlice per config, reused across tests (building the simulator
    costs seconds): each `run` resets it (signals, register files) and replays a job."""

    _cache: dict = {}

    @classmethod
    def get(cls, cfg):
        if cfg.name not in cls._cache:
            cls._cache[cfg.name] = cls(cfg)
        return cls._cache[cfg.name]

    def __init__(self, cfg):
        self.cfg = cfg
        self.dut = VxmSlice(cfg)
        assert self.dut.signature == SliceSignature(cfg)
        self.sim = Simulator(self.dut)
        self.sim.add_clock(1e-6)
        self.sim.add_testbench(self._bench)
        self.job = None
        self.used = False

    async def _bench(self, ctx):
        if self.job is None:
            return
        issues, stim, ncycles, writes, errors = self.job
        cfg, dut = self.cfg, self.dut
        S, ns = cfg.superlanes, cfg.streams_per_direction

        def part(vec, k):
            return int.from_bytes(bytes(vec[16 * k: 16 * k + 16]), "little")

        for T in range(ncycles):
            word, off = issues.get(T, (0, 0))
            ctx.set(dut.issue.valid, int(T in issues))
            ctx.set(dut.issue.word, word)
            ctx.set(dut.issue.off_a, off)
            for k in range(S):
                for d, s, vec in stim.get(T - k, ()):
                    port = dut.tiles[k].w_in if d else dut.tiles[k].e_in
                    ctx.set(port[s], part(vec, k))
            for k in range(S):
                tile = dut.tiles[k]
                for d, we, out in ((E, tile.e_we, tile.e_out), (W, tile.w_we, tile.w_out)):
                    mask = ctx.get(we)
                    for s in range(ns):
                        if mask >> s & 1:
                            v = ctx.get(out[s]).to_bytes(16, "little")
                            writes.setdefault((T - k, d, s), {})[k] = v
            if ctx.get(dut.error):
                errors.append((T, ctx.get(dut.error_code)))
            await ctx.tick()

    def run(self, issues, stim, ncycles):
        writes, errors = {}, []
        self.job = (issues, stim, ncycles, writes, errors)
        if self.used:
            self.sim.reset()
        self.used = True
        self.sim.run()
        self.job = None
        return writes, errors


def run_rtl(cfg, issues, stim, ncycles):
    """Simulate a VxmSlice.  ``issues``: cycle -> (word, off_a); ``stim``: cycle ->
    [(dir, stream, uint8[VL])] at the VXM in superlane-0 time (driven skewed).  Returns
    ({(cycle, dir, stream): uint8[VL]} de-skewed writes, [(cycle, error code)])."""
    S = cfg.superlanes
    writes, errors = RtlRunner.get(cfg).run(issues, stim, ncycles)
    out = {}
    for key, parts in writes.items():
        if len(parts) != S:
            out[key] = None  # some superlane did not write
        else:
            out[key] = np.frombuffer(b"".join(parts[k] for k in range(S)), np.uint8)
    return out, errors


def compare(expected, got, describe, what=""):
    """Assert the RTL's writes equal the model's, naming the first difference."""
    problems = []
    for key in sorted(set(expected) | set(got)):
        c, d, s = key
        e, g = expected.get(key), got.get(key)
        where = f"cycle {c} s{s}.{DIRS[d]} [{describe(c - 3)}]"
        if e is None:
            problems.append(f"RTL writes {where} but the model does not")
        elif g is None:
            problems.append(f"RTL misses (or writes only some superlanes of) {where}")
        elif not np.array_equal(e, g):
            lanes = np.flatnonzero(e != g)
            problems.append(f"{where}: lanes {lanes[:8].tolist()} model "
                            f"{e[lanes[:8]].tolist()} RTL {g[lanes[:8]].tolist()}")
    assert not problems, f"{what}{len(problems)} mismatches:\n" + "\n".join(problems[:10])


def stim_of(inject):
    stim = {}
    for (d, s, c), v in inject.items():
        stim.setdefault(c, []).append((d, s, v))
    return stim


def run_both(sched):
    """Model and RTL on one schedule; returns (model writes, rtl writes, rtl errors)."""
    cfg = sched.cfg
    exp, _ = model_writes(cfg, sched.program(), sched.inject)
    n = sched.last_cycle() + isa.latency("VXM", cfg) + cfg.superlanes + 2
    got, errors = run_rtl(cfg, sched.issue_map(), stim_of(sched.inject), n)
    return exp, got, errors


def result(writes, cycle, sel, ot):
    """The otype vector a stream-destination instruction wrote (model writes)."""
    nb = TYPE_BYTES[ot]
    d, s = sel >> 5, sel & 31
    return from_planes(np.stack([writes[(cycle, d, s + b)] for b in range(nb)]),
                       TYPE_SIGNED[ot])


def rq_ref(acc, m, s, zp, lo, hi):
    """Requantisation with Python ints: floor(acc * m * 2**(s - 31) + 1/2) + zp, clamped."""
    v = (2 * acc * m + (1 << (31 - s))) >> (32 - s)
    return min(max(v + zp, lo), hi)


# ============================================================================ directed corners
class Corners:
    """Every directed corner case in one schedule (one simulation per config); each adds
    its instructions and returns a check run on the model's writes (which the RTL must
    match bit for bit anyway)."""

    def __init__(self, cfg, rng):
        self.s = Schedule(cfg, rng)
        self.cfg = cfg
        self.vl = cfg.vector_length
        self.checks = {}

    def load_regs(self, regs: dict, tag):
        """rK <- per-lane int32 values, through the stream (VXM.i32 rK = PASS(s0.W))."""
        for k, vals in regs.items():
            self.s.add(f"VXM.i32 r{k} = PASS(s0.W)", a=vals, tag=tag)
        self.s.next += 3  # written in t+3: readable from t+4

    def case(self, name):
        def deco(fn):
            self.checks[name] = (self.s.next, fn(self, name))
            self.s.next += 4
            return fn
        return deco

    def lanes(self, vals):
        return np.resize(np.asarray(vals, np.int64), self.vl)


def corner_cases(c: Corners):
    vl = c.vl

    @c.case("saturation")
    def _(c, tag):
        v16 = [-32768, -129, -128, -1, 0, 1, 127, 128, 255, 256, 32767, -200, 300, 5, -5, 99]
        v32 = [INT32_MIN, -32769, -32768, 32767, 32768, INT32_MAX, 0, -1, 70000, -70000]
        t1 = c.s.add("VXM.i16 s0.E:i8:sat = PASS(s2.W)", a=v16, tag=tag)
        t2 = c.s.add("VXM.i16 s1.E:u8:sat = PASS(s2.W)", a=v16, tag=tag)
        t3 = c.s.add("VXM.i16 s2.E:i8 = PASS(s2.W)", a=v16, tag=tag)  # wrap
        t4 = c.s.add("VXM.i32 s0.E:i16:sat = ADD(s0.W, s4.W)", a=v32, b=[1, -1], tag=tag)
        t5 = c.s.add("VXM.i32 s0.E = SAT8(s0.W)", a=v32, tag=tag)
        t6 = c.s.add("VXM.i32 s4.E = SAT16(s0.W)", a=v32, tag=tag)
        t7 = c.s.add("VXM.i32 s0.E:i8:sat = MUL(s0.W, s4.W)", a=v32, b=[3, -3], tag=tag)

        def check(w):
            a16, a32 = c.lanes(v16), c.lanes(v32)
            np.testing.assert_array_equal(result(w, t1 + 3, 0, "i8"), np.clip(a16, -128, 127))
            np.testing.assert_array_equal(result(w, t2 + 3, 1, "u8"), np.clip(a16, 0, 255))
            np.testing.assert_array_equal(result(w, t3 + 3, 2, "i8"), a16.astype(np.int8))
            np.testing.assert_array_equal(result(w, t4 + 3, 0, "i16"),
                                          np.clip(a32 + c.lanes([1, -1]), -32768, 32767))
            np.testing.assert_array_equal(result(w, t5 + 3, 0, "i32"), np.clip(a32, -128, 127))
            np.testing.assert_array_equal(result(w, t6 + 3, 4, "i32"),
                                          np.clip(a32, -32768, 32767))
            np.testing.assert_array_equal(result(w, t7 + 3, 0, "i8"),
                                          np.clip(a32 * c.lanes([3, -3]), -128, 127))
        return check

    @c.case("requant_ties")
    def _(c, tag):
        # m = 2**30 (0.5 at shift 0, 0.25 at shift -1): odd / 2 mod 4 accumulators are
        # exact .5 ties, positive and negative; round half up
        m = [2**30] * 8 + [2**30] * 8
        s = [0] * 8 + [-1] * 8
        zp = [0, 0, 0, 0, 5, 5, -3, -3] * 2
        c.load_regs({1: m, 2: s, 3: zp}, tag)
        acc = [1, -1, 3, -3, 5, -5, 7, -7, 2, -2, 6, -6, 10, -10, 14, -14]
        t1 = c.s.add("VXM.i32 s0.E:i8 = REQUANT(s0.W, r1)", a=acc, tag=tag)
        t2 = c.s.add("VXM.i16 s4.E:i16 = REQUANT(s0.W, r1)", a=acc, tag=tag)

        def check(w):
            L = c.lanes
            ref = [rq_ref(int(a), int(mm), int(ss), int(z), -128, 127)
                   for a, mm, ss, z in zip(L(acc), L(m), L(s), L(zp), strict=True)]
            np.testing.assert_array_equal(result(w, t1 + 3, 0, "i8"), ref)
            np.testing.assert_array_equal(result(w, t2 + 3, 4, "i16"), ref)
            # the ties themselves: 0.5 -> 1, -0.5 -> 0, 1.5 -> 2, -1.5 -> -1
            assert list(result(w, t1 + 3, 0, "i8")[:4]) == [1, 0, 2, -1]
        return check

    @c.case("requant_extremes")
    def _(c, tag):
        # shift -31 and 30, multiplier 0, 2**30 and 2**31 - 1, INT32_MIN/MAX accumulators
        mults = [0, 2**31 - 1, 2**30, 2**31 - 1]
        shifts = [-31, 30]
        combos = [(mm, ss) for ss in shifts for mm in mults]  # 8 combos
        m = [mm for mm, _ in combos] * 2
        s = [ss for _, ss in combos] * 2
        zp = [0] * 16
        c.load_regs({4: m, 5: s, 6: zp, 0: [1, -1, 0, 2**30] * 4}, tag)
        accs = [[INT32_MIN] * 8 + [INT32_MAX] * 8, [1, -1, 0, 12345] * 4,
                [-(2**30), 2**30, -3, 3] * 4]
        ts = []
        for acc in accs:
            ts.append((c.s.add("VXM.i32 s0.E:i32 = REQUANT(s0.W, r4)", a=acc, tag=tag),
                       acc, "i32", 0))
            ts.append((c.s.add("VXM.i32 s4.W:i8 = REQUANT(s0.W, r4)", a=acc, tag=tag),
                       acc, "i8", 36))
        # stage-2 REQUANT of a wrapped int32 sum (INT32_MAX + 1 -> INT32_MIN), u8 out
        t2 = c.s.add("VXM.i32 s0.E:u8 = REQUANT(ADD(s0.W, r0), r4)",
                     a=[INT32_MAX, INT32_MIN, 77, -77] * 4, tag=tag)

        def check(w):
            L = c.lanes
            for t, acc, ot, sel in ts:
                lo, hi = TYPE_RANGE[TYPES.index(ot)]
                ref = [rq_ref(int(a), int(mm), int(ss), 0, lo, hi)
                       for a, mm, ss in zip(L(acc), L(m), L(s), strict=True)]
                np.testing.assert_array_equal(result(w, t + 3, sel, ot), ref)
            x = L([INT32_MAX, INT32_MIN, 77, -77]) + L([1, -1, 0, 2**30])
            x = (x + 2**31) % 2**32 - 2**31
            ref = [rq_ref(int(a), int(mm), int(ss), 0, 0, 255)
                   for a, mm, ss in zip(x, L(m), L(s), strict=True)]
            np.testing.assert_array_equal(result(w, t2 + 3, 0, "u8"), ref)
        return check

    @c.case("clz")
    def _(c, tag):
        cases = {
            "i8": [0, 1, -1, -128, 127, 64, 3, -2],
            "u8": [0, 1, 255, 128, 127, 16, 2, 254],
            "i16": [0, 1, -1, -32768, 32767, 256, 255, -256],
            "i32": [0, 1, -1, INT32_MIN, INT32_MAX, 65536, 65535, -65536],
        }
        ts = {t: c.s.add(f"VXM.{t} s0.E:i32 = CLZ(s0.W)", a=v, tag=tag)
              for t, v in cases.items()}
        # stage 2: CLZ of a 64-bit stage-1 result whose low w bits are zero / not
        t64 = c.s.add("VXM.i16 s0.E:i32 = CLZ(SHL(s0.W, s2.W))", a=[1, -1, 3, 0x4000],
                      b=[40, 8, 4, 1], tag=tag)

        def check(w):
            for t, v in cases.items():
                bits = 8 * TYPE_BYTES[t]
                ref = [bits - (int(x) & ((1 << bits) - 1)).bit_length() for x in c.lanes(v)]
                np.testing.assert_array_equal(result(w, ts[t] + 3, 0, "i32"), ref)
            x = [(int(a) << int(b)) & 0xFFFF for a, b in
                 zip(c.lanes([1, -1, 3, 0x4000]), c.lanes([40, 8, 4, 1]), strict=True)]
            np.testing.assert_array_equal(result(w, t64 + 3, 0, "i32"),
                                          [16 - v.bit_length() for v in x])
        return check

    @c.case("shifts_srar")
    def _(c, tag):
        xs = [5, -5, 6, -6, 7, -7, 1, -1, INT32_MAX, INT32_MIN, 3, -3, 100, -100, 0, 2]
        ns = [1, 1, 2, 2, 1, 1, 0, 0, 31, 31, 63, 63, 64, 65, 7, 1]
        t1 = c.s.add("VXM.i32 s0.E = SRAR(s0.W, s4.W)", a=xs, b=ns, tag=tag)
        t2 = c.s.add("VXM.i32 s4.E = SRA(s0.W, s4.W)", a=xs, b=ns, tag=tag)
        t3 = c.s.add("VXM.i16 s0.E:i32 = SHR(s0.W, s2.W)", a=[-1, -32768, 5, -1],
                     b=[1, 15, 0, 64], tag=tag)
        # stage 2 SRAR on 64 bits: the rounding add wraps past INT64_MAX (model: int64)
        t4 = c.s.add("VXM.i32 s0.E:i32:sat = SRAR(SHL(s0.W, s4.W), s0.E)",
                     a=[INT32_MAX, INT32_MAX, -1, 1], b=[32, 32, 63, 62], c=[63, 31, 1, 62],
                     tag=tag)

        def check(w):
            ref = []
            for x, n in zip(c.lanes(xs), c.lanes(ns), strict=True):
                n = int(n) & 63
                ref.append((int(x) + (1 << (n - 1) if n else 0)) >> n)
            np.testing.assert_array_equal(result(w, t1 + 3, 0, "i32"), ref)
            np.testing.assert_array_equal(result(w, t2 + 3, 4, "i32"),
                                          [int(x) >> (int(n) & 63) for x, n in
                                           zip(c.lanes(xs), c.lanes(ns), strict=True)])
            np.testing.assert_array_equal(result(w, t3 + 3, 0, "i32"),
                                          c.lanes([0x7FFF, 1, 5, 0xFFFF]))
            got = result(w, t4 + 3, 0, "i32")
            # lane 0: (0x7fffffff << 32) + 2**62 wraps negative, >> 63 = -1
            assert got[0] == -1
            assert got[1] == INT32_MAX  # (0x7fffffff << 32 + 2**30) >> 31: saturated
        return check

    @c.case("sel_lane_misc")
    def _(c, tag):
        cond = [0, 1, -1, 0, 5, 0, 0, 128] * 2
        t1 = c.s.add("VXM.i8 s0.E = SEL(s0.W, s1.W, s2.W)", a=cond, b=[11] * 16,
                     c=[-22] * 16, tag=tag)
        t2 = c.s.add("VXM.i16 s0.E:i16 = ABS(SEL(s0.W, lane, -300))", a=cond, tag=tag)
        t3 = c.s.add("VXM.i16 s2.E = ADD(lane, s0.W)", b=[1000, -1000], tag=tag)
        t4 = c.s.add("VXM.u8 s0.E:i32 = MUL(lane, lane)", tag=tag)
        t5 = c.s.add("VXM.u8 s4.W:i16 = ADD(s0.W, s1.W)", a=[255, 0, 128, 1],
                     b=[255, 255, 128, 254], tag=tag)  # zero-extension: 255 + 255 = 510
        t6 = c.s.add("VXM.i8 s0.W:i16 = ADD(s0.W, s1.W)", a=[-1, 127, -128, 1],
                     b=[-1, 127, -128, 1], tag=tag)  # sign-extension
        t7 = c.s.add("VXM.i32 s0.E:i32 = MIN(MAX(s0.W, -7), s0.E)", a=[-100, 100, 0, 8],
                     c=[9], tag=tag)

        def check(w):
            lane = np.arange(vl)
            cd = c.lanes(cond)
            sel8 = np.where(cd.astype(np.int8) != 0, 11, -22)
            np.testing.assert_array_equal(result(w, t1 + 3, 0, "i8"), sel8)
            np.testing.assert_array_equal(result(w, t2 + 3, 0, "i16"),
                                          np.abs(np.where(cd.astype(np.int8) != 0, lane, -300)))
            np.testing.assert_array_equal(result(w, t3 + 3, 2, "i16"),
                                          lane + c.lanes([1000, -1000]))
            np.testing.assert_array_equal(result(w, t4 + 3, 0, "i32"), lane * lane)
            np.testing.assert_array_equal(result(w, t5 + 3, 36, "i16"),
                                          c.lanes([510, 255, 256, 255]))
            np.testing.assert_array_equal(result(w, t6 + 3, 32, "i16"),
                                          c.lanes([-2, 254, -256, 2]))
            np.testing.assert_array_equal(result(w, t7 + 3, 0, "i32"),
                                          np.clip(c.lanes([-100, 100, 0, 8]), -7, 9))
        return check

    @c.case("register_hazard")
    def _(c, tag):
        old = [1, 2, 3, 4]
        new = [-10, -20, INT32_MIN, INT32_MAX]
        c.load_regs({7: old}, tag)
        tw = c.s.add("VXM.i32 r7 = PASS(s0.W)", a=new, tag=tag)  # written in tw + 3
        t_old = c.s.add("VXM.i32 s0.E = PASS(r7)", gap=2, tag=tag)  # tw + 3: old value
        t_new = c.s.add("VXM.i32 s4.E = PASS(r7)", tag=tag)  # tw + 4: new value
        assert (t_old, t_new) == (tw + 3, tw + 4)
        # back-to-back writes of one register, u8/i8/i16 results sign/zero-extended
        t8 = c.s.add("VXM.i16 r8:u8 = PASS(s0.W)", a=[-1, 300], tag=tag)
        t9 = c.s.add("VXM.i16 r8:i8 = PASS(s0.W)", a=[-1, 300], tag=tag)
        ta = c.s.add("VXM.i32 s0.E = PASS(r8)", gap=t8 + 4 - c.s.next, tag=tag)  # t8's
        tb = c.s.add("VXM.i32 s4.E = PASS(r8)", tag=tag)  # sees t9's
        assert (t9, ta, tb) == (t8 + 1, t8 + 4, t8 + 5)
        c.s.add("VXM.i32 r9:i16 = MUL(r8, 16000)", tag=tag)
        tc = c.s.add("VXM.i32 s0.E = ADD(r9, r9)", gap=3, tag=tag)

        def check(w):
            np.testing.assert_array_equal(result(w, t_old + 3, 0, "i32"), c.lanes(old))
            np.testing.assert_array_equal(result(w, t_new + 3, 4, "i32"), c.lanes(new))
            np.testing.assert_array_equal(result(w, ta + 3, 0, "i32"),
                                          c.lanes([255, 44]))
            np.testing.assert_array_equal(result(w, tb + 3, 4, "i32"), c.lanes([-1, 44]))
            r9 = (c.lanes([-1, 44]) * 16000).astype(np.int16).astype(np.int64)
            np.testing.assert_array_equal(result(w, tc + 3, 0, "i32"), 2 * r9)
        return check

    @c.case("wide_results")
    def _(c, tag):
        ns = c.cfg.streams_per_direction
        a = [INT32_MIN, INT32_MAX, -1, 0x01020304]
        t1 = c.s.add(f"VXM.i32 s{ns - 4}.E = MUL(s0.W, s4.W)", a=a, b=[1, -1, 3, 256], tag=tag)
        t2 = c.s.add(f"VXM.i16 s{ns - 2}.W:i16 = SUB(s0.W, 1)", a=[-32768, 7], tag=tag)
        t3 = c.s.add("VXM.i32 s1.W:i32 = XOR(OR(s0.W, 0x0f0f), s4.W)", a=a, c=[-1, 5], tag=tag)
        # REPEAT with an immediate stride (REPEAT offsets reach imm via off_a)
        t4 = c.s.add("VXM.i16 s0.E = ADD(s0.W, 100)", a=[1, 2], rep=(3, 2, -50), tag=tag)

        def check(w):
            prod = (c.lanes(a) * c.lanes([1, -1, 3, 256]) + 2**31) % 2**32 - 2**31
            np.testing.assert_array_equal(result(w, t1 + 3, ns - 4, "i32"), prod)
            np.testing.assert_array_equal(result(w, t2 + 3, 32 + ns - 2, "i16"),
                                          c.lanes([32767, 6]))
            x = (c.lanes(a) | 0x0F0F) ^ c.lanes([-1, 5])
            np.testing.assert_array_equal(result(w, t3 + 3, 33, "i32"), x)
            for k in range(4):
                np.testing.assert_array_equal(result(w, t4 + 2 * k + 3, 0, "i16"),
                                              c.lanes([1, 2]) + 100 - 50 * k)
        return check


_CORNER_NAMES = ["saturation", "requant_ties", "requant_extremes", "clz", "shifts_srar",
                 "sel_lane_misc", "register_hazard", "wide_results"]


@pytest.fixture(scope="module", params=CONFIGS)
def corner_run(request):
    cfg = get_config(request.param)
    c = Corners(cfg, np.random.default_rng(1234))
    corner_cases(c)
    assert list(c.checks) == _CORNER_NAMES
    exp, got, errors = run_both(c.s)
    return cfg, c, exp, got, errors


@pytest.mark.parametrize("name", _CORNER_NAMES)
def test_directed_corner(corner_run, name):
    cfg, c, exp, got, errors = corner_run
    start, check = c.checks[name]
    names = list(c.checks)
    i = names.index(name)
    end = c.checks[names[i + 1]][0] if i + 1 < len(names) else 1 << 30
    sel = lambda d: {k: v for k, v in d.items() if start <= k[0] - 3 < end}  # noqa: E731
    compare(sel(exp), sel(got), c.s.text_at, f"{cfg.name} {name}: ")
    check(exp)
    assert not errors, f"unexpected error report {errors}"


def test_corner_run_has_no_stray_writes(corner_run):
    cfg, c, exp, got, errors = corner_run
    compare(exp, got, c.s.text_at, f"{cfg.name}: ")


# ============================================================================ random programs
def random_vxm(cfg, rng, *, dest_regs=10):
    """A random legal VXM instruction; REQUANT uses r10 (zero point in [0, 127]) or r13
    (zero point in [-128, 127], signed otypes only); destinations r0..r9 or streams."""
    ns = cfg.streams_per_direction
    ops = isa.VXM_OPS
    t, ot = rng.integers(4), rng.integers(4)
    w, ow = isa.type_bytes(t), isa.type_bytes(ot)
    op1 = ops[rng.integers(len(ops))]
    if op1.arity == 3:
        op2 = rng.choice([o for o in ops if o.arity == 1])
    elif rng.random() < 0.3:
        op2 = ops[0]
    else:
        op2 = rng.choice([o for o in ops if o.arity < 3])
    imm = int(rng.choice([0, 1, -1, 7, 31, 32, 63, 64, -16384, 16383,
                          int(rng.integers(-16384, 16384))]))
    used_imm = False

    def src(requant=False):
        nonlocal used_imm
        if requant:
            return isa.SEL_REG + (13 if TYPE_SIGNED[TYPES[ot]] and rng.random() < 0.5 else 10)
        k = rng.random()
        if k < 0.5:
            return isa.sel_stream(int(rng.integers(ns - w + 1)), int(rng.integers(2)))
        if k < 0.75:
            return isa.SEL_REG + int(rng.integers(isa.VXM_REGS))
        if k < 0.9:
            used_imm = True
            return isa.SEL_IMM
        return isa.SEL_LANE

    f = {"type": int(t), "otype": int(ot), "sat": int(rng.integers(2)), "op1": op1.code,
         "op2": op2.code, "a": src(), "b": isa.SEL_NONE, "c": isa.SEL_NONE}
    if op1.arity >= 2:
        f["b"] = src(op1.name == "REQUANT")
    if op1.arity == 3 or op2.arity == 2:
        f["c"] = src(op2.name == "REQUANT")
    if rng.random() < 0.65:
        f["d"] = isa.sel_stream(int(rng.integers(ns - ow + 1)), int(rng.integers(2)))
    else:
        f["d"] = isa.SEL_REG + int(rng.integers(dest_regs))
    f["imm"] = imm if used_imm else 0
    ins = Instr("VXM", f)
    isa.validate(ins, "VXM", cfg)
    return ins


def random_schedule(cfg, seeds, n_instr):
    """Register init (r10..r15 valid REQUANT parameters, r0..r9 random), one random
    segment per seed (gaps of 0..4 cycles, some REPEATs), then a dump of r0..r15."""
    rng = np.random.default_rng(seeds[0])
    s = Schedule(cfg, rng)
    vl = cfg.vector_length

    def pick(n, special, lo, hi):
        v = rng.integers(lo, hi + 1, n)
        e = rng.random(n) < 0.4
        v[e] = rng.choice(special, int(e.sum()))
        return v

    init = {
        10: pick(vl, [0, 2**31 - 1, 2**30, 1], 0, 2**31 - 1),
        11: pick(vl, [-31, 30, 0, -1], -31, 30),
        12: pick(vl, [0, 127], 0, 127),
        13: pick(vl, [0, 2**31 - 1, 2**30], 0, 2**31 - 1),
        14: pick(vl, [-31, 30, 0], -31, 30),
        15: pick(vl, [-128, 127, 0], -128, 127),
    }
    for k in range(10):
        init[k] = pick(vl, [INT32_MIN, INT32_MAX, 0, -1, 1], INT32_MIN, INT32_MAX)
    for k, v in init.items():
        s.add(f"VXM.i32 r{k} = PASS(s{k % 4}.E)", a=v, tag="init")
    s.next += 3
    for seed in seeds:
        rng = s.rng = np.random.default_rng(seed)
        for _ in range(n_instr):
            ins = random_vxm(cfg, rng)
            gap = int(rng.choice([0, 0, 0, 0, 1, 2, 3, 4]))
            rep = None
            if rng.random() < 0.1:
                n, d = int(rng.integers(1, 4)), int(rng.integers(1, 3))
                sa = int(rng.integers(-40, 41))
                if abs(ins["imm"]) + n * abs(sa) <= 16383 - 1:
                    rep = (n, d, sa)
            s.add(ins, gap=gap, rep=rep, tag=f"seed {seed}")
    s.next += 3
    for k in range(isa.VXM_REGS):
        s.add(f"VXM.i32 s{4 * (k % 2)}.{'EW'[k // 8]} = PASS(r{k})", tag="dump")
    return s


@pytest.mark.parametrize("config", CONFIGS)
def test_random_sequences(config, base_seed):
    cfg = get_config(config)
    seeds = [base_seed * 1000 + 100 * CONFIGS.index(config) + i for i in range(24)]
    print(f"VXM random sequences on {config}: seeds {seeds}")
    s = random_schedule(cfg, seeds, n_instr=12)
    exp, got, errors = run_both(s)
    compare(exp, got, s.text_at, f"{config} seeds {seeds[0]}..{seeds[-1]}: ")
    assert not errors, f"unexpected error report {errors}"
    assert len(exp) > 200


# ============================================================================ end to end
def test_mem_fed_requant_small():
    """The ISA's worked example on `small`: an int32 vector from four MEM_W slices (one
    byte plane each, arriving together), registers loaded from MEM_E streams, then
    ``VXM.i32 s4.E:i8 = REQUANT(ADD(s0.E, r0), r1)`` and a WRITE on MEM_E0.  The VXM's
    inputs are the model's stream registers at the VXM (no injection)."""
    cfg = get_config("small")
    rng = np.random.default_rng(7)
    vl = cfg.vector_length
    acc = rng.integers(-(2**20), 2**20, (3, vl))
    acc[0, :4] = [INT32_MIN, INT32_MAX, 0, -1]
    bias = rng.integers(-1000, 1000, vl)
    mult = rng.integers(2**30, 2**31, vl)
    shift = rng.integers(-12, -5, vl)
    zp = rng.integers(-5, 5, vl)
    m = Machine(cfg, keep_history=True)
    # MEM_Wj holds byte plane j of the acc rows at 10.., MEM_Ej byte plane j of the
    # register values (bias, multiplier, shift, zero point) at 20..
    for j in range(4):
        m.write_mem(f"MEM_W{j}", 10, to_planes(acc.reshape(-1), 4)[j].reshape(3, vl))
        for r, vals in enumerate((bias, mult, shift, zp)):
            m.write_mem(f"MEM_E{j}", 20 + r, to_planes(vals, 4)[j])
    t_reg, t_rq = 6, 13  # VXM: r0..r3 = PASS(s0.W) in 6..9 (written by 12), REQUANT 13..15
    text = [".config small", ".slice VXM", f"    NOP {t_reg}"]
    text += [f"    VXM.i32 r{r} = PASS(s0.W)" for r in range(4)]
    text += [f"    NOP {t_rq - t_reg - 4}", "    VXM.i32 s4.E:i8 = REQUANT(ADD(s0.E, r0), r1)",
             "    REPEAT 2, 1", "    HALT"]
    for j in range(4):  # MEM_Ej is j + 1 west of the VXM: READ at t - (j + 1) - 1
        text += [f".slice MEM_E{j}", f"    NOP {t_reg - j - 2}", f"    READ 20, s{j}.W",
                 "    REPEAT 3, 1, 1"]
        if j == 0:  # MEM_E0 also stores the result (1 east): WRITE at t_rq + 3 + 1
            text += [f"    NOP {t_rq + 4 - (t_reg - 2 + 4)}", "    WRITE s4.E, 100",
                     "    REPEAT 2, 1, 1"]
        text += ["    HALT"]
    for j in range(4):  # the int32 rows: MEM_Wj is j + 1 east of the VXM
        text += [f".slice MEM_W{j}", f"    NOP {t_rq - j - 2}", f"    READ 10, s{j}.E",
                 "    REPEAT 2, 1, 1", "    HALT"]
    prog_text = "\n".join(text) + "\n"
    exp, m = model_writes(cfg, assemble(prog_text, cfg), machine=m)
    pos = cfg.slice("VXM").index
    ns = cfg.streams_per_direction
    stim = {}
    for c in range(t_rq + 3):
        for d in (E, W):
            for st in range(ns):
                v = m.stream_value(pos, DIRS[d], st, c)
                if v is not None:
                    stim.setdefault(c, []).append((d, st, np.asarray(v)))
    issues = {}
    for c, ins in [(t_reg + r, f"VXM.i32 r{r} = PASS(s0.W)") for r in range(4)] + \
            [(t_rq + k, "VXM.i32 s4.E:i8 = REQUANT(ADD(s0.E, r0), r1)") for k in range(3)]:
        issues[c] = (parse_instr(ins, "VXM", cfg).encode(), 0)
    got, errors = run_rtl(cfg, issues, stim, t_rq + 10)
    compare(exp, got, lambda c: f"cycle {c}")
    assert not errors
    # and the numbers are golden.quant.requantize's
    out = m.read_mem("MEM_E0", 100, 3, np.int8).astype(np.int64)
    for row in range(3):
        x = (acc[row] + bias + 2**31) % 2**32 - 2**31
        ref = [int(requantize(np.array([x[i]]), mult[i], shift[i], int(zp[i]))[0])
               for i in range(vl)]
        np.testing.assert_array_equal(out[row], ref)


# ============================================================================ faults
@pytest.mark.parametrize("config", CONFIGS)
def test_faults(config):
    """VALUE_RANGE for REQUANT parameters out of range (in the cycle after the tile that
    reads them acts: t + k + 1), ILLEGAL_INSTRUCTION in t + 1 for a word the model
    refuses or an immediate pushed out of range by a REPEAT offset; the model refuses
    the same programs."""
    cfg = get_config(config)
    S, vl = cfg.superlanes, cfg.vector_length
    good = {"m": [2**30] * vl, "s": [0] * vl, "z": [0] * vl}
    scenarios = []  # (name, regs {k: values}, instruction, superlanes expected to fault)
    bad_lane = vl - 1  # last superlane only
    for name, reg, val in (("shift 31", "s", 31), ("shift -32", "s", -32),
                           ("multiplier 2**31", "m", -(2**31)), ("multiplier -1", "m", -1),
                           ("zero point 128 for i8", "z", 128)):
        regs = {k: list(v) for k, v in good.items()}
        regs[reg][bad_lane] = val
        scenarios.append((name, regs, "VXM.i32 s0.E:i8 = REQUANT(s0.W, r1)", [S - 1]))
    regs = {k: list(v) for k, v in good.items()}
    regs["z"] = [-1] * vl
    scenarios.append(("zero point -1 for u8 (stage 2)", regs,
                      "VXM.i32 s0.E:u8 = REQUANT(ADD(s0.W, 1), r1)", list(range(S))))
    regs = {k: list(v) for k, v in good.items()}
    regs["z"] = [-1] * vl
    scenarios.append(("fine: zero point -1 for i8", regs,
                      "VXM.i32 s0.E:i8 = REQUANT(s0.W, r1)", []))

    rng = np.random.default_rng(3)
    s = Schedule(cfg, rng)
    expect = {}  # cycle -> code
    for name, regs, text, tiles in scenarios:
        for k, key in ((1, "m"), (2, "s"), (3, "z")):
            s.add(f"VXM.i32 r{k} = PASS(s0.W)", a=regs[key], tag=name)
        t = s.add(text, gap=3, tag=name)
        for k in tiles:
            expect[t + k + 1] = ErrorCode.VALUE_RANGE
        # the model refuses it too (and accepts the fine one)
        one = Schedule(cfg, rng)
        for k, key in ((1, "m"), (2, "s"), (3, "z")):
            one.add(f"VXM.i32 r{k} = PASS(s0.W)", a=regs[key])
        one.add(text, gap=3)
        if tiles:
            with pytest.raises(MachineError, match="REQUANT"):
                model_writes(cfg, one.program(), one.inject)
        else:
            model_writes(cfg, one.program(), one.inject)
        s.next += S + 2
    issues = s.issue_map()
    t0 = s.next
    # illegal words: a bad selector, a SEL in stage 2, imm set but unused, an opcode
    # that is no VXM/ICU opcode, an imm out of range after the REPEAT offset
    vxm = parse_instr("VXM.i8 s0.E = ADD(s0.W, 5)", "VXM", cfg)
    bad_words = [
        vxm.replace(b=90).encode(),
        vxm.replace(op2=OP_BIT["SEL"]).encode(),
        parse_instr("VXM.i8 s0.E = ADD(s0.W, s1.W)", "VXM", cfg).replace(imm=3).encode(),
        (vxm.encode() & ~0x3F) | 9,
        parse_instr(f"VXM.i8 s{cfg.streams_per_direction - 1}.E:i16 = PASS(s0.W)", "VXM",
                    cfg.replace(streams_per_direction=32)).encode(),
    ]
    for i, w in enumerate(bad_words):
        issues[t0 + 2 * i] = (w, 0)
        expect[t0 + 2 * i + 1] = ErrorCode.ILLEGAL_INSTRUCTION
    t1 = t0 + 2 * len(bad_words)
    issues[t1] = (parse_instr("VXM.i8 s0.E = ADD(s0.W, 16000)", "VXM", cfg).encode(), 384)
    expect[t1 + 1] = ErrorCode.ILLEGAL_INSTRUCTION
    issues[t1 + 2] = (parse_instr("VXM.i8 s0.E = ADD(s0.W, 16000)", "VXM", cfg).encode(), 383)
    issues[t1 + 3] = (isa.encode("NOP", n=5), 0)  # an ICU word: ignored, no error
    stim = stim_of(s.inject)
    stim[t1 + 2] = [(W, 0, np.zeros(vl, np.uint8))]
    got, errors = run_rtl(cfg, issues, stim, t1 + 8)
    assert dict(errors) == expect, f"errors {errors}, expected {sorted(expect.items())}"
    # illegal words write nothing; the last legal one writes 16383 wrapped to i8 (-1)
    late = {k: v for k, v in got.items() if k[0] >= t0 + 3}
    assert list(late) == [(t1 + 2 + 3, E, 0)]
    assert (late[(t1 + 5, E, 0)] == 0xFF).all()
    for w in bad_words:  # the model refuses these words too
        with pytest.raises(MachineError, match="illegal instruction"):
            model_writes(cfg, Program(cfg, {"VXM": [w, isa.encode("HALT")]}), {})
    with pytest.raises(MachineError, match="REPEAT stride"):
        p = Program(cfg, {"VXM": [issues[t1][0], isa.encode("REPEAT", n=1, d=1, stride_a=384),
                                  isa.encode("HALT")]})
        model_writes(cfg, p, {(W, 0, 0): np.zeros(vl, np.uint8),
                              (W, 0, 1): np.zeros(vl, np.uint8)})


# ============================================================================ ALU alone
def test_alu_stages_match_model(base_seed):
    """Each ALU stage alone (VxmAlu, combinational) against the model's ``_alu`` for
    every op and type on edge-biased random operands (REQUANT with valid parameters)."""
    rng = np.random.default_rng(base_seed + 99)
    print(f"VXM ALU: seed {base_seed + 99}")
    model = Machine("tiny")
    n = model.vl
    model.vxm_regs = np.zeros((isa.VXM_REGS, n), np.int64)
    specials32 = [0, 1, -1, INT32_MIN, INT32_MAX, 63, 64, -64, 2**30, -(2**30)]
    specials64 = specials32 + [INT64_MIN, INT64_MAX, 2**62, -(2**62), 2**32, -(2**32)]

    def vec(bits, specials):
        v = np.array([int(x) for x in rng.integers(-(2**(bits - 1)), 2**(bits - 1), n,
                                                    dtype=np.int64)], dtype=np.int64)
        e = rng.random(n) < 0.4
        v[e] = rng.choice(np.array(specials, dtype=np.int64), int(e.sum()))
        return v

    for x_width, stage in ((32, 1), (64, 2)):
        dut = VxmAlu(x_width, ternary=stage == 1, clamp_requant=stage == 1)
        cases = []
        for op in isa.VXM_OPS:
            if op.arity == 3 and stage == 2:
                continue
            for t in range(4):
                ot = int(rng.integers(4))
                x = vec(x_width, specials64 if x_width == 64 else specials32)
                y = vec(32, specials32)
                z = vec(32, specials32)
                m = rng.integers(0, 2**31, n)
                m[:3] = [0, 2**31 - 1, 2**30]
                sh = rng.integers(-31, 31, n)
                sh[:3] = [-31, 30, 0]
                lo, hi = TYPE_RANGE[ot]
                zp = int(rng.integers(max(lo, -1000), min(hi, 1000) + 1))
                if op.name == "REQUANT":
                    y = m
                    model.vxm_regs[0], model.vxm_regs[1], model.vxm_regs[2] = m, sh, zp
                ref = model._alu(op, x.copy(), y.copy(), z.copy(), TYPES[t], 0, TYPES[ot])
                if op.name == "REQUANT" and stage == 2:
                    ref = None  # clamp done by the output stage: compare after clamping
                cases.append((op, t, ot, x, y, z, sh, zp, ref))

        async def bench(ctx, dut=dut, cases=cases, stage=stage):
            for op, t, ot, x, y, z, sh, zp, ref in cases:
                ctx.set(dut.op, 1 << op.code)
                ctx.set(dut.w8, int(t in (0, 3)))
                ctx.set(dut.w16, int(t == 1))
                if stage == 1:
                    ctx.set(dut.qlo, TYPE_RANGE[ot][0])
                    ctx.set(dut.qhi, TYPE_RANGE[ot][1])
                ctx.set(dut.rq_zp, zp)
                for i in range(n):
                    ctx.set(dut.x, int(x[i]))
                    ctx.set(dut.y, int(y[i]))
                    if stage == 1:
                        ctx.set(dut.z, int(z[i]))
                    ctx.set(dut.rq_n, (31 - int(sh[i])) & 63)
                    r = ctx.get(dut.r)
                    if ref is None:
                        lo, hi = TYPE_RANGE[ot]
                        acc = (int(x[i]) + 2**31) % 2**32 - 2**31
                        want = rq_ref(acc, int(y[i]), int(sh[i]), zp, lo, hi)
                        r = min(max(r, lo), hi)
                    else:
                        want = int(ref[i])
                    assert r == want, (f"stage {stage} {op.name} type {TYPES[t]} otype "
                                       f"{TYPES[ot]} x={x[i]} y={y[i]} z={z[i]} "
                                       f"shift={sh[i]} zp={zp}: RTL {r}, model {want}")

        sim = Simulator(dut)
        sim.add_testbench(bench)
        sim.run()


@pytest.mark.parametrize("config", CONFIGS)
def test_word_check_matches_isa_validate(config, base_seed):
    """The slice's legality check of a VXM word (`vxm_word_legal`, ILLEGAL_INSTRUCTION
    otherwise) accepts exactly the words `arch.isa.validate` accepts: random legal words
    with 0..2 fields replaced by random values."""
    cfg = get_config(config)
    seed = base_seed + 7 + CONFIGS.index(config)
    rng = np.random.default_rng(seed)
    print(f"VXM word check on {config}: seed {seed}")
    d = isa.instr_def("VXM", "VXM")
    words, want = [], []
    for _ in range(1500):
        f = dict(random_vxm(cfg, rng, dest_regs=16).fields)
        for _ in range(int(rng.integers(3))):
            fld = d.fields[int(rng.integers(len(d.fields)))]
            lo, hi = ((-(1 << (fld.width - 1)), (1 << (fld.width - 1)) - 1) if fld.signed
                      else (0, (1 << fld.width) - 1))
            f[fld.name] = int(rng.integers(lo, hi + 1))
        w = Instr("VXM", f).encode()
        try:
            isa.validate(isa.decode("VXM", w), "VXM", cfg)
            ok = 1
        except isa.IsaError:
            ok = 0
        words.append(w)
        want.append(ok)
    assert 0.2 < np.mean(want) < 0.8
    word = Signal(64)
    ok = Signal()
    m = Module()
    m.d.comb += ok.eq(vxm_word_legal(view(word, "VXM", "VXM"), cfg))

    async def bench(ctx):
        for w, exp in zip(words, want, strict=True):
            ctx.set(word, w)
            got = ctx.get(ok)
            assert got == exp, f"{isa.decode('VXM', w)}: RTL says {got}, isa says {exp}"

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()


def test_parameter_validation():
    with pytest.raises(ValueError, match="cfg"):
        VxmSlice("small")
    with pytest.raises(ValueError, match="x_width"):
        VxmAlu(16, ternary=False, clamp_requant=False)
    assert N_OPS == len(isa.VXM_OPS) and OP_BIT["SEL"] == 25
