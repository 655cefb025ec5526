"""The cycle-accurate machine model: timing and semantics of every instruction, the
refused hazards, the cycle/busy definitions and a requantised int8 matmul."""

from __future__ import annotations

import importlib.util
import re
import time
from pathlib import Path

import numpy as np
import pytest

from arch.asm import assemble
from arch.config import get_config
from arch.isa import SXM_MAPS, encode, latency
from arch.program import Program
from golden.machine import Machine, MachineError, format_trace, from_planes, to_planes
from golden.quant import quantize_multiplier

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("matmul_example", ROOT / "examples" / "matmul.py")
mm = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(mm)

TINY, SMALL = get_config("tiny"), get_config("small")


def P(cfg, name):
    return cfg.slice(name).index


def build(cfg, items):
    """items: (slice, cycle, text[, n, d, stride]) -> Program (gaps filled with NOPs)."""
    sch = mm.Schedule(cfg)
    for it in items:
        sch.at(*it)
    # check=False: some programs here fault on purpose, for the model's run-time checks
    return assemble(sch.text(), cfg, check=False)


def run(cfg, items, mem=(), trace=False, max_cycles=10_000, setup=None):
    m = Machine(cfg)
    for s, a, v in mem:
        m.write_mem(s, a, v)
    if setup:
        setup(m)
    m.load_program(build(cfg, items))
    return m, m.run(max_cycles=max_cycles, trace=trace)


def expect_error(cfg, items, pattern, mem=(), setup=None, **kw):
    with pytest.raises(MachineError) as ei:
        run(cfg, items, mem, setup=setup, **kw)
    msg = str(ei.value)
    assert re.search(pattern, msg), msg
    return msg


def rand_bytes(rng, n):
    return rng.integers(0, 256, n, dtype=np.int64).astype(np.uint8)


def invalid_read(slice_name, cycle, stream, pos):
    return (rf"{slice_name} instruction \d+ \(.*\) in cycle {cycle}: reads stream {stream} "
            rf"at position {pos}, which holds no valid value")


# ============================================================================ timing
@pytest.mark.parametrize("cfg", [TINY, SMALL], ids=["tiny", "small"])
@pytest.mark.parametrize("delta", [-1, 0, 1])
def test_read_feeds_write_at_exact_cycle(cfg, delta):
    """docs example: READ on MEM_W0 in cycle 0 -> WRITE on MEM_E1 in cycle L + d."""
    rng = np.random.default_rng(1)
    v = rand_bytes(rng, cfg.vector_length)
    d = P(cfg, "MEM_E1") - P(cfg, "MEM_W0")
    t = latency("READ", cfg) + d
    items = [("MEM_W0", 0, "READ 3, s2.E"), ("MEM_E1", t + delta, "WRITE s2.E, 7")]
    mem = [("MEM_W0", 3, v)]
    if delta:
        expect_error(cfg, items, invalid_read("MEM_E1", t + delta, r"s2\.E", P(cfg, "MEM_E1")),
                     mem)
        return
    m, r = run(cfg, items, mem, trace=True)
    assert np.array_equal(m.read_mem("MEM_E1", 7), v)
    # the WRITE's last effect is in superlane 0 in t + L, in superlane S-1 S-1 cycles later
    tail = cfg.superlanes - 1
    assert r.cycles == t + latency("WRITE", cfg) + tail + 1
    writes = [(tc.cycle, w.position, w.direction, w.stream) for tc in r.trace for w in tc.writes]
    assert writes == [(1, P(cfg, "MEM_W0") + 1, "E", 2)]
    assert r.busy["MEM_W0"] == 2 + tail and r.busy["MEM_E1"] == 2 + tail


@pytest.mark.parametrize("delta", [-1, 0, 1])
def test_vxm_result_timing(delta):
    cfg = SMALL
    v = np.arange(cfg.vector_length, dtype=np.uint8)
    t_v = 1 + 1  # READ latency + distance MEM_W0 -> VXM
    t_w = t_v + latency("VXM", cfg) + 1
    items = [("MEM_W0", 0, "READ 0, s2.E"), ("VXM", t_v, "VXM.i8 s3.E = ADD(s2.E, 5)"),
             ("MEM_E0", t_w + delta, "WRITE s3.E, 9")]
    if delta:
        expect_error(cfg, items, invalid_read("MEM_E0", t_w + delta, r"s3\.E", 7),
                     [("MEM_W0", 0, v)])
        return
    m, r = run(cfg, items, [("MEM_W0", 0, v)])
    assert np.array_equal(m.read_mem("MEM_E0", 9), v + 5)
    assert r.busy["VXM"] == latency("VXM", cfg) + 1 + cfg.superlanes - 1


def _identity_mvm_items(cfg, delta_vxm=0):
    """Identity weights from MEM_W0 (LW x VL, IW), x from MEM_W1, MVM emit -> VXM -> MEM_E0."""
    vl = cfg.vector_length
    pm, pw, px, pv = (P(cfg, n) for n in ("MXM_W0", "MEM_W0", "MEM_W1", "VXM"))
    t_lw = 1 + (pw - pm)
    t_iw = t_lw + vl  # last LW at t_lw + vl - 1 writes the shadow in t_lw + vl
    t_m = t_iw + 1
    t_v = t_m + latency("MVM", cfg) + (pv - pm)
    items = [
        ("MEM_W0", 0, "READ 0, s0.W", vl - 1, 1, 1),
        ("MXM_W0", t_lw, "LW 0, s0.W", vl - 1, 1, 1),
        ("MXM_W0", t_iw, "IW"),
        ("MEM_W1", t_m - 1 - (px - pm), "READ 0, s1.W"),
        ("MXM_W0", t_m, "MVM s1.W, 2, emit=s0.E"),
        ("VXM", t_v + delta_vxm, "VXM.i32 s4.E:i8 = s0.E"),
        ("MEM_E0", t_v + 3 + 1, "WRITE s4.E, 0"),
    ]
    x = np.arange(vl, dtype=np.int64) * 7 - 100
    mem = [("MEM_W0", 0, np.eye(vl, dtype=np.uint8)), ("MEM_W1", 0, x.astype(np.int8))]
    return items, mem, x.astype(np.int8), t_v


@pytest.mark.parametrize("cfg", [TINY, SMALL], ids=["tiny", "small"])
@pytest.mark.parametrize("delta", [-1, 0, 1])
def test_mvm_latency_includes_skew(cfg, delta):
    items, mem, x, t_v = _identity_mvm_items(cfg, delta)
    if delta:
        expect_error(cfg, items, invalid_read("VXM", t_v + delta, r"s0\.E", P(cfg, "VXM")), mem)
        return
    m, r = run(cfg, items, mem)
    assert np.array_equal(m.read_mem("MEM_E0", 0, dtype=np.int8), x)
    assert np.array_equal(m.mxm["MXM_W0"].acc[2], x.astype(np.int64))
    assert r.mxm_mvm_cycles == {n: (1 if n == "MXM_W0" else 0) for n in r.mxm_mvm_cycles}
    vl = cfg.vector_length
    # LWs..IW, then the MVM, which emits: its last superlane writes S - 1 cycles later
    assert r.busy["MXM_W0"] == (vl + 1) + 1 + latency("MVM", cfg) + cfg.superlanes - 1


# ============================================================================ SXM
def sxm_run(cfg, op, planes_in, n_out, lat, delta=0, extra=()):
    """Feed byte planes k from MEM_E{n-1-k} (distance k+1) on sk.E into SXM_E at cycle T,
    issue ``op`` (output on s{8}.W.., tiny: s4.W..) and store plane k at the MEM at
    distance k+1.  Returns the output planes."""
    nm = cfg.mem_slices_per_hemisphere
    mems = [f"MEM_E{nm - 1 - k}" for k in range(nm)]
    ps = P(cfg, "SXM_E")
    dist = [ps - P(cfg, mems[k]) for k in range(nm)]
    t = 1 + max(dist[: max(len(planes_in), n_out)])
    o = cfg.streams_per_direction // 2
    items = [(mems[k], t - 1 - dist[k], f"READ 0, s{k}.E") for k in range(len(planes_in))]
    items.append(("SXM_E", t + delta, op.format(i="s0.E", o=f"s{o}.W")))
    items += [(mems[k], t + lat + dist[k], f"WRITE s{o + k}.W, 100") for k in range(n_out)]
    items += list(extra)
    mem = [(mems[k], 0, p) for k, p in enumerate(planes_in)]
    m, _ = run(cfg, items, mem)
    return np.stack([m.read_mem(mems[k], 100) for k in range(n_out)])


def _src(kind, n, vl):
    i = np.arange(vl)
    if kind == "SHS":
        g, li = i // 16 * 16, i % 16
        return np.where((li - n >= 0) & (li - n < 16), g + li - n, -1)
    if kind == "ROTS":
        return i // 16 * 16 + (i % 16 - n) % 16
    if kind == "SHV":
        return np.where((i - n >= 0) & (i - n < vl), i - n, -1)
    if kind == "ROTV":
        return (i - n) % vl
    return np.full(vl, n)  # DIST


@pytest.mark.parametrize("cfg", [TINY, SMALL], ids=["tiny", "small"])
@pytest.mark.parametrize("op, n", [("SHS", 3), ("SHS", -5), ("ROTS", 4), ("ROTS", -1),
                                   ("SHV", 17), ("SHV", -3), ("ROTV", 20), ("ROTV", -7),
                                   ("DIST", 5)])
def test_sxm_lane_moves(cfg, op, n):
    vl = cfg.vector_length
    n = max(-(vl - 1), min(vl - 1, n))
    rng = np.random.default_rng(abs(n))
    v = rand_bytes(rng, vl)
    lat = latency(op, cfg)
    assert lat == (2 if op in ("SHS", "ROTS") else 2 * cfg.superlanes)
    out = sxm_run(cfg, f"{op}.i8 {n}, {{i}}, {{o}}", [v], 1, lat)[0]
    src = _src(op, n, vl)
    assert np.array_equal(out, np.where(src >= 0, v[np.maximum(src, 0)], 0))
    for delta in (-1, 1):  # the input passes the SXM in exactly one cycle
        with pytest.raises(MachineError, match="no valid value"):
            sxm_run(cfg, f"{op}.i8 {n}, {{i}}, {{o}}", [v], 1, lat, delta)


def test_sxm_i16_move_moves_both_planes():
    cfg = TINY
    rng = np.random.default_rng(5)
    vals = rng.integers(-30000, 30000, cfg.vector_length)
    out = sxm_run(cfg, "ROTS.i16 2, {i}, {o}", list(to_planes(vals, 2)), 2, 2)
    assert np.array_equal(from_planes(out), np.roll(vals, 2))


@pytest.mark.parametrize("op, t, ot, ref", [
    ("RMAX", "i8", "i8", np.max), ("RMIN", "i16", "i16", np.min),
    ("RSUM", "u8", "i32", np.sum), ("RSUM", "i32", "i32", np.sum), ("RSUM", "i8", "i16", np.sum),
])
def test_sxm_reductions(op, t, ot, ref):
    cfg = SMALL
    rng = np.random.default_rng(7)
    nb = {"i8": 1, "u8": 1, "i16": 2, "i32": 4}
    lo, hi = {"i8": (-128, 128), "u8": (0, 256), "i16": (-32768, 32768),
              "i32": (-2**31, 2**31)}[t]
    vals = rng.integers(lo, hi, cfg.vector_length)
    lat = latency(op, cfg)
    assert lat == 2 * cfg.superlanes + 1
    out = sxm_run(cfg, f"{op}.{t} {{i}}, {{o}}:{ot}", list(to_planes(vals, nb[t])), nb[ot], lat)
    got = from_planes(out)
    bits = 8 * nb[ot]
    want = ((int(ref(vals)) + 2 ** (bits - 1)) % 2**bits) - 2 ** (bits - 1)
    assert np.all(got == want)


def test_sxm_perm_with_loaded_map():
    cfg = SMALL
    vl = cfg.vector_length
    rng = np.random.default_rng(3)
    perm = rng.permutation(vl)
    v = rand_bytes(rng, vl)
    # PMAP in cycle T from planes s0/s1.E; PERM of v (third READ, MEM_E1 -> s2.E) in T+2
    mp = to_planes(perm, 2)
    ps = P(SMALL, "SXM_E")
    t = 3
    items = [("MEM_E3", t - 1 - (ps - P(cfg, "MEM_E3")), "READ 0, s0.E"),
             ("MEM_E2", t - 1 - (ps - P(cfg, "MEM_E2")), "READ 0, s1.E"),
             ("SXM_E", t, "PMAP 2, s0.E"),
             ("MEM_E1", t + 2 - 1 - (ps - P(cfg, "MEM_E1")), "READ 0, s2.E"),
             ("SXM_E", t + 2, "PERM.i8 2, s2.E, s5.W"),
             ("MEM_E3", t + 2 + latency("PERM", cfg) + 1, "WRITE s5.W, 50")]
    m, _ = run(cfg, items, [("MEM_E3", 0, mp[0]), ("MEM_E2", 0, mp[1]), ("MEM_E1", 0, v)])
    assert np.array_equal(m.read_mem("MEM_E3", 50), v[perm])
    assert np.array_equal(m.sxm_maps["SXM_E"][2], perm)
    assert m.sxm_maps["SXM_E"].shape == (SXM_MAPS, vl)
    # PERM one cycle after PMAP still sees the old (identity) map
    items[4] = ("SXM_E", t + 1, "PERM.i8 2, s2.E, s5.W")
    items[3] = ("MEM_E1", t + 1 - 1 - (ps - P(cfg, "MEM_E1")), "READ 0, s2.E")
    items[5] = ("MEM_E3", t + 1 + latency("PERM", cfg) + 1, "WRITE s5.W, 50")
    m, _ = run(cfg, items, [("MEM_E3", 0, mp[0]), ("MEM_E2", 0, mp[1]), ("MEM_E1", 0, v)])
    assert np.array_equal(m.read_mem("MEM_E3", 50), v)


# ============================================================================ MEM
def test_gather_and_scatter():
    cfg = TINY
    vl = cfg.vector_length
    rng = np.random.default_rng(11)
    table = rng.integers(0, 256, (256, vl), dtype=np.int64).astype(np.uint8)  # per-lane tables
    idx = rand_bytes(rng, vl)
    data = rand_bytes(rng, vl)
    # GATHER on MEM_W0 (idx from MEM_W1, distance 1) -> MEM_E0 (distance 2);
    # SCATTER on MEM_E1: idx from MEM_W1 (distance 4), data from MEM_W0 (distance 3)
    items = [("MEM_W1", 0, "READ 0, s1.E"), ("MEM_W0", 2, "GATHER 256, s1.E, s3.E"),
             ("MEM_E0", 2 + 1 + 2, "WRITE s3.E, 5"),
             ("MEM_W1", 2, "READ 0, s1.E"), ("MEM_W0", 3, "READ 1, s2.E"),
             ("MEM_E1", 7, "SCATTER 0, s1.E, s2.E")]
    m, _ = run(cfg, items, [("MEM_W1", 0, idx), ("MEM_W0", 1, data), ("MEM_W0", 256, table)])
    lanes = np.arange(vl)
    assert np.array_equal(m.read_mem("MEM_E0", 5), table[idx, lanes])
    assert np.array_equal(m.mem["MEM_E1"][idx, lanes], data)


# ============================================================================ VXM
TYPE_NB = {"i8": 1, "i16": 2, "i32": 4, "u8": 1}
TYPE_RANGE = {"i8": (-128, 127), "i16": (-32768, 32767), "i32": (-2**31, 2**31 - 1),
              "u8": (0, 255)}


def vxm_eval(t, expr, a, b=None, ot=None, sat=False, regs=None):
    """Evaluate ``VXM.t s8.E:ot = expr`` on small: a on E s0.. (from MEM_W0..W3), b on W s0..
    (MEM_E0..E3), result planes stored by MEM_E0..E3.  Returns the int64 result."""
    cfg = SMALL
    ot = ot or t
    nb, onb = TYPE_NB[t], TYPE_NB[ot]
    tv = 6
    items, mem = [], []
    for k, p in enumerate(to_planes(a, nb)):
        items.append((f"MEM_W{k}", tv - 2 - k, f"READ 0, s{k}.E"))
        mem.append((f"MEM_W{k}", 0, p))
    if b is not None:
        for k, p in enumerate(to_planes(b, nb)):
            items.append((f"MEM_E{k}", tv - 2 - k, f"READ 0, s{k}.W"))
            mem.append((f"MEM_E{k}", 0, p))
    dst = f"s8.E:{ot}" + (":sat" if sat else "")
    items.append(("VXM", tv, f"VXM.{t} {dst} = {expr}"))
    for k in range(onb):
        items.append((f"MEM_E{k}", tv + 3 + 1 + k, f"WRITE s{8 + k}.E, 100"))

    def setup(m):
        for r, v in (regs or {}).items():
            m.vxm_regs[r] = v

    m, _ = run(cfg, items, mem, setup=setup)
    planes = np.stack([m.read_mem(f"MEM_E{k}", 100) for k in range(onb)])
    return from_planes(planes, signed=ot != "u8")


def _wrap(v, bits, signed=True):
    v %= 2**bits
    return v - 2**bits if signed and v >= 2 ** (bits - 1) else v


def ref_op(op, x, y, w):
    n = y & 63 if y is not None else 0
    return _wrap({
        "ADD": lambda: x + y, "SUB": lambda: x - y, "MUL": lambda: x * y,
        "MIN": lambda: min(x, y), "MAX": lambda: max(x, y), "AND": lambda: x & y,
        "OR": lambda: x | y, "XOR": lambda: x ^ y, "SHL": lambda: x << n,
        "SHR": lambda: (x % 2**w) >> n, "SRA": lambda: x >> n,
        "SRAR": lambda: x if n == 0 else (x + (1 << (n - 1))) >> n,
        "EQ": lambda: int(x == y), "NE": lambda: int(x != y), "LT": lambda: int(x < y),
        "LE": lambda: int(x <= y), "GT": lambda: int(x > y), "GE": lambda: int(x >= y),
        "RELU": lambda: max(x, 0), "ABS": lambda: abs(x), "SAT8": lambda: min(max(x, -128), 127),
        "SAT16": lambda: min(max(x, -32768), 32767),
        "CLZ": lambda: w - (x % 2**w).bit_length(), "PASS": lambda: x,
    }[op](), 64)


def ref_out(v, ot, sat):
    lo, hi = TYPE_RANGE[ot]
    if sat:
        v = min(max(v, lo), hi)
    return _wrap(v, 8 * TYPE_NB[ot], ot != "u8")


BINARY = ["ADD", "SUB", "MUL", "MIN", "MAX", "AND", "OR", "XOR", "SHL", "SHR", "SRA", "SRAR",
          "EQ", "NE", "LT", "LE", "GT", "GE"]
UNARY = ["RELU", "ABS", "SAT8", "SAT16", "CLZ"]


@pytest.mark.parametrize("t", ["i8", "i16", "i32", "u8"])
def test_vxm_alu_ops_against_reference(t):
    rng = np.random.default_rng(TYPE_NB[t] * 13 + (t == "u8"))
    vl = SMALL.vector_length
    lo, hi = TYPE_RANGE[t]
    w = 8 * TYPE_NB[t]
    for op in BINARY + UNARY:
        a = rng.integers(lo, hi + 1, vl)
        a[:4] = [lo, hi, 0, 1]
        b = rng.integers(lo, hi + 1, vl) if op not in ("SHL", "SHR", "SRA", "SRAR") else \
            rng.integers(0, w + 2, vl)
        b[:4] = [hi, lo, 0, 3] if op not in ("SHL", "SHR", "SRA", "SRAR") else [1, 0, 5, 2]
        expr = f"{op}(s0.E, s0.W)" if op in BINARY else f"{op}(s0.E)"
        for ot, sat in ((t, False), ("i32", False), ("i8", True)):
            got = vxm_eval(t, expr, a, b if op in BINARY else None, ot, sat)
            want = [ref_out(ref_op(op, int(x), int(y) if op in BINARY else None, w), ot, sat)
                    for x, y in zip(a, b, strict=True)]
            assert list(got) == want, (op, t, ot, sat)


def test_vxm_chained_stages_registers_imm_lane():
    vl = SMALL.vector_length
    rng = np.random.default_rng(2)
    a = rng.integers(-2**31, 2**31, vl)
    b = rng.integers(-2**20, 2**20, vl)
    r5 = rng.integers(-1000, 1000, vl)
    # 64-bit intermediate: rounding multiply-shift in one instruction
    got = vxm_eval("i32", "SRAR(MUL(s0.E, s0.W), 20)", a, b)
    want = [_wrap((int(x) * int(y) + (1 << 19)) >> 20, 32) for x, y in zip(a, b, strict=True)]
    assert list(got) == want
    got = vxm_eval("i32", "MAX(SUB(s0.E, r5), lane)", a, regs={5: r5})
    assert list(got) == [_wrap(max(int(x) - int(r), i), 32)
                         for i, (x, r) in enumerate(zip(a, r5, strict=True))]
    got = vxm_eval("i16", "SAT8(ADD(s0.E, -100))", b % 30000)
    assert list(got) == [ref_out(min(max(int(x) - 100, -128), 127), "i16", False)
                         for x in b % 30000]
    got = vxm_eval("i8", "SEL(s0.E, s0.W, -128)", a % 3 - 1, b % 100)
    assert list(got) == [int(y) if (x % 3 - 1) != 0 else -128
                         for x, y in zip(a, b % 100, strict=True)]
    got = vxm_eval("i32", "SHR(CLZ(s0.E), 1)", np.abs(a) >> 3)
    assert list(got) == [(32 - int(x).bit_length()) >> 1 for x in np.abs(a) >> 3]


def _requant_ref(acc, m, s, zp, lo, hi):
    """REQUANT from its definition, in Python integers: round(acc * m * 2**(s - 31)) with
    halves rounded up, plus the zero point, clamped; written independently of
    golden.quant.requantize (which the machine model calls)."""
    out = []
    for a, mm_, ss, z in zip(acc, m, s, zp, strict=True):
        a, mm_, ss, z = int(a), int(mm_), int(ss), int(z)
        num = 2 * a * mm_ + (1 << (31 - ss))  # 2*x + 1, x = a*m / 2**(31-s), scaled by 2**(31-s)
        out.append(min(hi, max(lo, num // (1 << (32 - ss)) + z)))
    return np.array(out)


def test_vxm_requant_matches_definition():
    vl = SMALL.vector_length
    rng = np.random.default_rng(9)
    acc = rng.integers(-2**31 + 5000, 2**31 - 5000, vl)
    bias = rng.integers(-5000, 5000, vl)
    acc[:3] = [2**31 - 1, -2**31, 0]
    bias[:3] = 0
    pairs = [quantize_multiplier(x) for x in rng.uniform(1e-6, 0.5, vl)]
    m = np.array([p[0] for p in pairs])
    s = np.array([p[1] for p in pairs])
    s[3:6] = [-31, 30, -5]
    # exact halves: acc * m * 2**(s-31) = k + 1/2 rounds up (towards +inf), also when negative
    m[6], s[6], acc[6], bias[6] = 1 << 30, 0, -3, 0  # -1.5 -> -1
    m[7], s[7], acc[7], bias[7] = 1 << 30, 0, 5, 0  # 2.5 -> 3
    zp = rng.integers(-5, 5, vl)
    regs = {1: m, 2: s, 3: zp, 0: bias}
    got = vxm_eval("i32", "REQUANT(ADD(s0.E, r0), r1)", acc, ot="i8", regs=regs)
    assert np.array_equal(got, _requant_ref(acc + bias, m, s, zp, -128, 127))
    assert got[6] == -1 + zp[6] and got[7] == 3 + zp[7]
    zero = np.zeros(vl, dtype=np.int64)
    wide = vxm_eval("i32", "REQUANT(s0.E, r1)", acc, ot="i32", regs={1: m, 2: s, 3: zero})
    assert np.array_equal(wide, _requant_ref(acc, m, s, zero, -2**31, 2**31 - 1))
    i16 = vxm_eval("i32", "REQUANT(s0.E, r1)", acc, ot="i16", regs={1: m, 2: s, 3: zero})
    assert np.array_equal(i16, _requant_ref(acc, m, s, zero, -32768, 32767))


def test_vxm_register_write_visible_after_latency():
    """r2 written by an instruction issued at T is read as new by instructions from T+4."""
    cfg = SMALL
    items = [("VXM", 0, "VXM.i32 r2 = 77")]
    outs = []
    for k, dt in enumerate((3, 4)):
        items.append(("VXM", dt, f"VXM.i8 s{k}.E = r2"))
        outs.append(("MEM_E0", dt + 3 + 1, f"WRITE s{k}.E, {k}"))
    m, _ = run(cfg, items + outs, setup=lambda m: m.vxm_regs.__setitem__(2, 5))
    assert m.read_mem("MEM_E0", 0)[0] == 5 and m.read_mem("MEM_E0", 1)[0] == 77
    assert np.all(m.vxm_regs[2] == 77)


# ============================================================================ MXM
def _mxm_program(cfg, w_rows, xs, transposed=False, compound=None):
    """Load w_rows (LW or LWT) from MEM_W0, IW, then MVM each x (from MEM_W1) into acc slot
    k; ``compound``: rows loaded into the shadow by the MVMs themselves (lw=)."""
    vl = cfg.vector_length
    pm, pw, px = (P(cfg, n) for n in ("MXM_W0", "MEM_W0", "MEM_W1"))
    lw = "LWT" if transposed else "LW"
    t_lw = 1 + (pw - pm)
    t_iw = t_lw + vl - 1 + latency(lw, cfg)
    t_m = t_iw + 1
    items = [("MEM_W0", 0, "READ 0, s0.W", vl - 1, 1, 1),
             ("MXM_W0", t_lw, f"{lw} 0, s0.W", vl - 1, 1, 1),
             ("MXM_W0", t_iw, "IW"),
             ("MEM_W1", t_m - 1 - (px - pm), "READ 0, s1.W", len(xs) - 1, 1, 1)]
    mem = [("MEM_W0", 0, w_rows), ("MEM_W1", 0, np.asarray(xs))]
    if compound is None:
        items.append(("MXM_W0", t_m, "MVM s1.W, 0", len(xs) - 1, 1, 1))
    else:
        items.append(("MEM_W0", t_m - 1 - (pw - pm), f"READ {vl}, s0.W", len(xs) - 1, 1, 1))
        items.append(("MXM_W0", t_m, "MVM s1.W, 0, lw=0@s0.W", len(xs) - 1, 1, 1, 1))
        mem.append(("MEM_W0", vl, compound))
    return items, mem


@pytest.mark.parametrize("transposed", [False, True])
def test_mxm_loads_and_mvm(transposed):
    cfg = SMALL
    vl = cfg.vector_length
    rng = np.random.default_rng(21)
    w = rng.integers(-128, 128, (vl, vl)).astype(np.int8)
    xs = rng.integers(-128, 128, (3, vl)).astype(np.int8)
    items, mem = _mxm_program(cfg, w.T if transposed else w, xs, transposed)
    m, r = run(cfg, items, mem)
    st = m.mxm["MXM_W0"]
    assert np.array_equal(st.active, w)
    for k in range(3):
        assert np.array_equal(st.acc[k], w.astype(np.int64) @ xs[k].astype(np.int64))
    assert r.mxm_mvm_cycles["MXM_W0"] == 3


def test_mxm_compound_load_double_buffers():
    cfg = TINY
    vl = cfg.vector_length
    rng = np.random.default_rng(4)
    w1 = rng.integers(-128, 128, (vl, vl)).astype(np.int8)
    w2 = rng.integers(-128, 128, (vl, vl)).astype(np.int8)
    xs = rng.integers(-128, 128, (vl, vl)).astype(np.int8)
    items, mem = _mxm_program(cfg, w1, xs, compound=w2)
    m, _ = run(cfg, items, mem)
    st = m.mxm["MXM_W0"]
    assert np.array_equal(st.active, w1) and np.array_equal(st.shadow, w2)
    for k in range(vl):  # every MVM used w1 while w2 streamed into the shadow
        assert np.array_equal(st.acc[k], w1.astype(np.int64) @ xs[k].astype(np.int64))


def test_mxm_accumulate_and_emit_planes():
    cfg = SMALL
    vl = cfg.vector_length
    rng = np.random.default_rng(8)
    w = rng.integers(-128, 128, (vl, vl)).astype(np.int8)
    xs = rng.integers(-128, 128, (2, vl)).astype(np.int8)
    items, mem = _mxm_program(cfg, w, xs)
    t_m = items[-1][1]
    items[-1] = ("MXM_W0", t_m, "MVM s1.W, 4")
    items.append(("MXM_W0", t_m + 1, "MVM s1.W, 4, accum, emit=s0.E"))
    # emitted planes pass MEM_W3 (distance 2), W2, W1, W0: each stores one plane
    pm = P(cfg, "MXM_W0")
    te = t_m + 1 + latency("MVM", cfg)
    for k in range(4):
        name = f"MEM_W{3 - k}"
        items.append((name, te + P(cfg, name) - pm, f"WRITE s{k}.E, 200"))
    m, _ = run(cfg, items, mem)
    want = w.astype(np.int64) @ (xs[0].astype(np.int64) + xs[1])
    planes = np.stack([m.read_mem(f"MEM_W{3 - k}", 200) for k in range(4)])
    assert np.array_equal(from_planes(planes), want)
    assert np.array_equal(m.mxm["MXM_W0"].acc[4], want)


# ============================================================================ ICU
def test_nop_repeat_strides_and_issue_cycles():
    cfg = SMALL
    prog = assemble("""
    .slice MXM_W0
        NOP 3
        IW                          # cycle 3
        REPEAT 2, 4                 # cycles 7, 11
        NOP 2                       # cycle 12
        HALT                        # cycle 14
    .slice MEM_W0
        READ 10, s1.E               # cycle 0
        REPEAT 3, 2, -3             # cycles 2, 4, 6: addresses 7, 4, 1
        HALT                        # cycle 7
    """, cfg)
    m = Machine(cfg)
    m.load_program(prog)
    r = m.run(trace=True)
    issued = [(tc.cycle, s, i, rep, txt) for tc in r.trace for s, i, rep, txt in tc.issued
              if s in ("MXM_W0", "MEM_W0")]
    assert issued == [
        (0, "MXM_W0", 0, 0, "NOP 3"), (0, "MEM_W0", 0, 0, "READ 10, s1.E"),
        (2, "MEM_W0", 0, 1, "READ 7, s1.E"), (3, "MXM_W0", 1, 0, "IW"),
        (4, "MEM_W0", 0, 2, "READ 4, s1.E"), (6, "MEM_W0", 0, 3, "READ 1, s1.E"),
        (7, "MXM_W0", 1, 1, "IW"), (7, "MEM_W0", 2, 0, "HALT"), (11, "MXM_W0", 1, 2, "IW"),
        (12, "MXM_W0", 3, 0, "NOP 2"), (14, "MXM_W0", 4, 0, "HALT")]
    # the MXM's core takes IW 2S + 1 cycles after issue (docs/isa.md, occupancy)
    assert r.cycles == 11 + 2 * cfg.superlanes + 1 + 1
    assert r.halt_cycle["MXM_W0"] == 14 and r.halt_cycle["MEM_W0"] == 7
    assert r.busy["MEM_W0"] == 9  # [0,2] [2,4] [4,6] [6,8]: L = 1, one more superlane
    assert r.busy["MXM_W0"] == 14  # IW occupies the MXM's core until t + 2S + 1: [3,16]
    assert r.issued["MEM_W0"] == 4


def test_mvm_repeat_advances_acc_and_row():
    cfg = TINY  # acc is an A-stride field, the load row a B-stride field
    d = P(cfg, "MEM_W0") - P(cfg, "MXM_W0")
    items = [("MEM_W0", 0, "READ 0, s0.W", 2, 1, 1),
             ("MXM_W0", 1 + d, "MVM s0.W, 1, lw=2@s0.W", 2, 1, 3, -1)]
    rows = np.arange(48).reshape(3, 16) - 20
    m, r = run(cfg, items, [("MEM_W0", 0, rows)], trace=True)
    mvms = [txt for tc in r.trace for s, _, _, txt in tc.issued if s == "MXM_W0"]
    assert mvms[1:4] == ["MVM s0.W, 1, lw=2@s0.W", "MVM s0.W, 4, lw=1@s0.W",
                         "MVM s0.W, 7, lw=0@s0.W"]
    assert np.array_equal(m.mxm["MXM_W0"].shadow[:3], rows[::-1])


def test_busy_is_union_of_pipeline_intervals():
    cfg = SMALL
    lm = latency("MVM", cfg)
    items, mem = _mxm_program(cfg, np.zeros((cfg.vector_length,) * 2, np.int8),
                              np.zeros((2, cfg.vector_length), np.int8))
    m, r = run(cfg, items, mem)
    vl = cfg.vector_length
    # LW x VL (each [t, t+1]) and IW [t_iw, t_iw]: VL + 1 cycles; MVMs in t_m, t_m+1: lm + 2
    assert r.busy["MXM_W0"] == vl + 1 + lm + 2
    t_m = items[-1][1]
    assert r.cycles == t_m + 1 + lm + 1


@pytest.mark.parametrize("sync_at", [0, 10])
def test_sync_notify_release_cycle(sync_at):
    prog = assemble(f"""
    .slice MEM_W0
        {'NOP ' + str(sync_at) if sync_at else ''}
        SYNC
        HALT
    .slice MEM_E0
        SYNC
        HALT
    .slice VXM
        NOP 10
        NOTIFY                      # cycle 10: everyone continues in cycle 12
        HALT
    """, SMALL)
    m = Machine(SMALL)
    m.load_program(prog)
    r = m.run()
    assert r.halt_cycle["MEM_W0"] == r.halt_cycle["MEM_E0"] == r.halt_cycle["VXM"] == 12
    assert r.cycles == 13


def test_sync_after_notify_deadlocks():
    prog = assemble("""
    .slice MEM_W0
        NOP 11
        SYNC
        HALT
    .slice VXM
        NOP 10
        NOTIFY
        HALT
    """, SMALL)
    m = Machine(SMALL)
    m.load_program(prog)
    with pytest.raises(MachineError,
                       match=r"deadlock: MEM_W0 \(SYNC, instruction 1, in cycle 11\)"):
        m.run()


# ============================================================================ hazards
def test_collision_within_one_slice():
    cfg = TINY  # RSUM (2S+1 = 3) in cycle 3 and SHS (2) in cycle 4 both write s4.W in cycle 6
    ps = P(cfg, "SXM_E")
    d = ps - P(cfg, "MEM_E1")
    items = [("MEM_E1", 3 - 1 - d, "READ 0, s0.E", 1, 1, 0),
             ("SXM_E", 3, "RSUM.i8 s0.E, s4.W:i8"), ("SXM_E", 4, "SHS.i8 1, s0.E, s4.W")]
    expect_error(cfg, items, r"SXM_E instruction 2 \(SHS.i8 1, s0.E, s4.W\) in cycle 4: stream "
                             r"collision: writes s4.W in cycle 6, which instruction 1 \(RSUM\) "
                             r"issued in cycle 3 also writes")
    # the same stream written by two different slices is legal (downstream overwrites)
    items2 = [("MEM_W1", 0, "READ 0, s2.E"), ("MEM_W0", 0, "READ 1, s2.E"),
              ("MEM_E0", 3, "WRITE s2.E, 9")]
    m, _ = run(cfg, items2, [("MEM_W1", 0, np.full(16, 1)), ("MEM_W0", 1, np.full(16, 2))])
    assert np.all(m.read_mem("MEM_E0", 9) == 2)


@pytest.mark.parametrize("read_addr, ok", [(7, False), (300, True)])
def test_bank_conflict(read_addr, ok):
    cfg = TINY  # mem_depth 256: bank 0 = 0..255, bank 1 = 256..511
    items = [("MEM_W1", 0, "READ 0, s1.E"),
             ("MEM_W0", 2, "WRITE s1.E, 5"),  # SRAM write in cycle 3
             ("MEM_W0", 3, f"READ {read_addr}, s2.E")]
    if ok:
        run(cfg, items)
        return
    expect_error(cfg, items, r"MEM_W0 instruction 2 \(READ 7, s2.E\) in cycle 3: MEM bank "
                             r"conflict: reads bank 0 in cycle 3 while a write issued in cycle 2")


def test_address_out_of_range():
    cfg = TINY
    a = cfg.mem_addresses
    expect_error(cfg, [("MEM_W0", 0, f"READ {a - 2}, s2.E", 3, 1, 1)],
                 rf"MEM_W0 instruction 0 \(READ {a}, s2.E, repetition 2\) in cycle 2: after "
                 rf"REPEAT stride: addr={a} out of range \[0, {a - 1}\]")
    items = [("MEM_W1", 0, "READ 0, s1.E"), ("MEM_W0", 2, f"GATHER {a - 10}, s1.E, s2.E")]
    expect_error(cfg, items, rf"MEM_W0 instruction 1 \(GATHER {a - 10}, s1.E, s2.E\) in cycle "
                             rf"2: address {a + 245} out of range",
                 [("MEM_W1", 0, np.full(16, 255))])


def test_illegal_opcode_and_running_off_the_queue():
    cfg = TINY
    prog = Program(cfg, {"MEM_W0": [encode("NOP", n=3), 63, encode("HALT")]})
    m = Machine(cfg)
    m.load_program(prog)
    with pytest.raises(MachineError, match=r"MEM_W0 instruction 1 in cycle 3: illegal "
                                           r"instruction: illegal MEM opcode 63"):
        m.run()
    m.load_program(Program(cfg, {"VXM": [encode("NOP", n=2)]}))
    with pytest.raises(MachineError, match="VXM: ran past the end of its queue"):
        m.run()
    m.load_program(Program(cfg, {"VXM": [encode("NOP", n=2), encode("REPEAT", n=1, d=1),
                                         encode("HALT")]}))
    with pytest.raises(MachineError, match=r"VXM instruction 1 \(REPEAT 1, 1\) in cycle 2: "
                                           "REPEAT must directly follow"):
        m.run()


def test_max_cycles():
    m = Machine(TINY)
    m.load_program(assemble(".slice VXM\nNOP 100\nHALT\n", TINY))
    with pytest.raises(MachineError, match="did not halt within max_cycles=50.*VXM"):
        m.run(max_cycles=50)
    assert m.run(max_cycles=101).cycles == 101


def test_iw_refused_while_load_in_flight():
    cfg = SMALL  # LWT latency 2S-1 = 3
    pm, pw = P(cfg, "MXM_W0"), P(cfg, "MEM_W0")
    t = 1 + pw - pm
    base = [("MEM_W0", 0, "READ 0, s0.W"), ("MXM_W0", t, "LWT 5, s0.W")]
    expect_error(cfg, base + [("MXM_W0", t + 2, "IW")],
                 rf"MXM_W0 instruction 3 \(IW\) in cycle {t + 2}: IW while a weight load is in "
                 rf"flight \(it writes the shadow buffer in cycle {t + 3}\)")
    run(cfg, base + [("MXM_W0", t + 3, "IW")])


def test_requant_and_pmap_value_errors():
    def setup(m):
        m.vxm_regs[1] = -1
    expect_error(SMALL, [("VXM", 0, "VXM.i32 s0.E:i8 = REQUANT(lane, r1)")],
                 r"VXM instruction 0 .* in cycle 0: REQUANT with r1..r3 .*multiplier out of "
                 r"range", setup=setup)
    cfg = TINY
    bad = np.full(16, 16, np.uint8)
    ps = P(cfg, "SXM_E")
    t = 1 + ps - P(cfg, "MEM_E0")
    items = [("MEM_E1", t - 1 - (ps - P(cfg, "MEM_E1")), "READ 0, s0.E"),
             ("MEM_E0", 0, "READ 1, s1.E"), ("SXM_E", t, "PMAP 0, s0.E")]
    expect_error(cfg, items, "PMAP entry 16 in lane 0 is not a lane index < 16",
                 [("MEM_E1", 0, bad), ("MEM_E0", 1, np.zeros(16))])


# ============================================================================ matmul
@pytest.mark.parametrize("cfgname, m_, k, n", [
    ("tiny", 4, 40, 12),   # K > VL: three passes accumulated in the MXM
    ("tiny", 6, 16, 16),
    ("small", 5, 32, 32),
    ("small", 3, 70, 20),  # K > VL on small
])
def test_matmul_with_requantisation(cfgname, m_, k, n):
    case = mm.random_case(m_, k, n, seed=k + n)
    y, res, _ = mm.run(cfgname, case)
    assert y.dtype == np.int8
    assert np.array_equal(y, case.expected())
    cfg = get_config(cfgname)
    assert res.mxm_mvm_cycles["MXM_W0"] == m_ * -(-k // cfg.vector_length)


def test_example_script_runs(capsys):
    assert mm.main(["--config", "tiny", "--m", "3", "--k", "20", "--n", "5"]) == 0
    out = capsys.readouterr().out
    assert "matches golden.quant: True" in out


def test_long_program_is_fast():
    n = 20_000
    prog = assemble(f"""
    .slice MEM_W0
        READ 0, s2.E
        REPEAT {n}, 1
        HALT
    .slice VXM
        NOP 2
        VXM.i8 s3.E = ADD(s2.E, 1)
        REPEAT {n}, 1
        HALT
    .slice MEM_E1
        NOP 7
        WRITE s3.E, 0
        REPEAT {n}, 1
        HALT
    """, SMALL)
    m = Machine(SMALL)
    m.load_program(prog)
    t0 = time.perf_counter()
    r = m.run()
    dt = time.perf_counter() - t0
    # the last WRITE issues in n + 7; superlane 1 writes in n + 8 + 1
    assert r.cycles == n + 10
    assert r.busy["VXM"] == n + 1 + 3 + 1
    print(f"{r.cycles} cycles in {dt:.2f} s")
    assert dt < 20


def test_stream_history_snapshot_and_trace_format():
    cfg = SMALL
    p = P(cfg, "MEM_W0")
    m = Machine(cfg, keep_history=True)
    m.write_mem("MEM_W0", 3, np.arange(32))
    m.load_program(assemble(".slice MEM_W0\nREAD 3, s2.E\nHALT\n", cfg))
    r = m.run(trace=True)
    # written in cycle 1 -> E[p+1] in cycle 2, E[p+k] in cycle 1+k, gone after the east edge
    for k in range(1, cfg.n_positions - p):
        assert np.array_equal(m.stream_value(p + k, "E", 2, 1 + k), np.arange(32))
        assert m.stream_value(p + k, "E", 2, 2 + k) is None
        assert m.stream_value(p + k, "E", 2, k) is None
    assert m.stream_value(p, "E", 2, 1) is None  # a slice never sees its own write
    vals, valid = m.stream_snapshot(3)
    assert valid.sum() == 1 and valid[0, p + 2, 2] and vals[0, p + 2, 2, 5] == 5
    text = format_trace(r.trace)
    assert f"MEM_W0   -> E[{p + 1}].s2 00 01 02" in text


def test_state_persists_across_runs():
    cfg = TINY
    m = Machine(cfg)
    m.write_mem("MEM_W1", 0, np.full(16, 9))
    m.load_program(assemble(".slice MEM_W1\nREAD 0, s1.E\nHALT\n.slice MEM_W0\nNOP 2\n"
                            "WRITE s1.E, 4\nHALT\n", cfg))
    r1 = m.run()
    m.write_mem("MEM_W1", 0, np.full(16, 7))
    r2 = m.run()
    assert r1.cycles == r2.cycles == 4
    assert np.all(m.read_mem("MEM_W0", 4) == 7)
