"""MXM slice RTL (hdl/mxm.py) against the machine model, in Amaranth's simulator.

Uses `SliceBench` from tests/slicebench.py: every sequence runs on the machine model with
MEM slices feeding the operands, then the same issue words and stream inputs are played into
the RTL and every stream write (cycle, direction, stream, bytes) is compared.  The two MXMs
share one state in the model and are both mirrored by the one DUT.
"""

from __future__ import annotations

import gc
import random
import warnings

import numpy as np
import pytest
from amaranth.hdl import UnusedElaboratable
from slicebench import SliceBench

from arch.asm import AsmError, parse_instr
from arch.config import get_config
from arch.isa import Instr, latency
from hdl.mxm import MxmSlice, MxmWeights
from hdl.slice import ErrorCode

TINY, SMALL, MEDIUM = get_config("tiny"), get_config("small"), get_config("medium")
#: multi-row weight loads (TspConfig.mxm_load_rows): tiny3 has 8 streams per direction
TINY3_K2 = get_config("tiny3:mxm_load_rows=2")
SMALL_K4 = get_config("small:mxm_load_rows=4")
MEDIUM_K4 = get_config("medium:mxm_load_rows=4")


# ============================================================================ MXM bench
def mxm_needs(mn, f):
    """Operands "x" and "w" (a multi-row load's stream w + j: "w<j>")."""
    out = []
    if mn == "MVM":
        out.append(("x", f["x_d"], f["x_s"]))
    if mn in ("LW", "LWT") or (mn == "MVM" and f["ld"]):
        out += [(f"w{j}" if j else "w", f["w_d"], f["w_s"] + j) for j in range(f["extra"] + 1)]
    return out


def mxm_bench(cfg, seed):
    ns = cfg.streams_per_direction
    # (an illegal load's streams past the last are not fed)
    b = SliceBench(cfg, "MXM", lambda mn, f: [o for o in mxm_needs(mn, f) if o[2] < ns], seed)
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
    VL, NS, K = cfg.vector_length, cfg.streams_per_direction, cfg.mxm_load_rows
    d_in = in_dir(name)
    lwt_l = latency("LWT", cfg)
    items = []
    t = 0  # relative issue cycle
    load_done = -1

    def stream(extra=0):
        return f"s{rng.randrange(NS - extra)}.{d_in}"

    def multi(rows):
        """K > 1: rows=n for a load of these rows (one per repetition; every one keeps its
        n rows in its aligned group of K), or "" (K = 1 draws no random numbers here)."""
        if K == 1 or rng.random() < 0.3:
            return 0, ""
        n = rng.randint(1, K - max(r % K for r in rows))
        return n - 1, f", rows={n}" if n > 1 or rng.random() < 0.2 else ""

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
            if K > 1 and n and rng.random() < 0.5:
                sa = rng.choice([-K, K, 2 * K])  # whole groups
            lo, hi = max(0, -sa * n), min(VL - 1, VL - 1 - sa * n)
            row = rng.randint(lo, hi)
            extra, rows = multi([row + k * sa for k in range(n + 1)])
            text = f"{op} {row}, {stream(extra)}{rows}"
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
            if K > 1 and n and rng.random() < 0.5:
                sb = rng.choice([-K, K])
            row = rng.randint(max(0, -sb * n), min(VL - 1, VL - 1 - sb * n))
            extra, rows = multi([row + k * sb for k in range(n + 1)])
            text += f", {kind}={row}@{stream(extra)}{rows}"
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
    b.sequences.append(b.hand_sequence("MXM_W0", bad, "LWT; IW one cycle too early"))
    iw_cycle = max(b.sequences[0].issues)
    b.simulate(MxmSlice(cfg), error_at={0: (iw_cycle, ErrorCode.ILLEGAL_INSTRUCTION)})


def test_mxm_strided_field_out_of_range_is_illegal():
    cfg = TINY
    b = mxm_bench(cfg, 4)
    items = [("MVM s0.W, 30", None), ("REPEAT 2, 1, 1", None)]
    b.sequences.append(b.hand_sequence("MXM_W0", items, "MVM acc 30, 31, 32"))
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


# ============================================================================ multi-row loads
def random_multirow(cfg, base_seed, offset, dut_class=None, sequences=20):
    seed = base_seed + offset
    print(f"MXM random sequences with multi-row loads: config {cfg.name}, seed {seed}")
    rng = random.Random(seed)
    b = mxm_bench(cfg, seed)
    for n in range(sequences):
        name = ("MXM_W0", "MXM_E0")[n % 2]
        b.run(name, random_mxm_items(cfg, rng, name))
    loads = [ln for s in b.sequences for ln in s.text.splitlines() if "rows=" in ln]
    print(f"  {len(b.sequences)} sequences, {len(loads)} multi-row load issues")
    assert len(loads) > 10
    dut = (dut_class or MxmSlice)(cfg)
    b.simulate(dut, port_checks=mvm_port_check(dut))
    print(f"  {sum(s.cycles + cfg.superlanes for s in b.sequences)} cycles, "
          f"{sum(len(s.writes) for s in b.sequences)} stream writes checked, "
          f"simulation {b.sim_seconds:.1f} s (cpu {b.sim_cpu:.1f} s)")


@pytest.mark.parametrize("cfg", [TINY3_K2, SMALL_K4], ids=["tiny3-K2", "small-K4"])
def test_mxm_multirow_random_sequences(cfg, base_seed):
    random_multirow(cfg, base_seed, 110 + cfg.mxm_load_rows)


def _result(seq, t, out_s, d, lat):
    """The int32 vector an MVM issued in ``t`` emitted onto out_s..out_s+3 (model writes)."""
    planes = np.stack([seq.writes[(t + lat, d, out_s + p)] for p in range(4)])
    return planes.T.copy().view("<i4")[:, 0].astype(np.int64)


def _multirow_directed(cfg, seed=9):
    """A whole tile loaded K rows per cycle (LW, LWT and MVM lw=/lwt= at full rate, each
    with IW in the cycle its last rows land) and checked against numpy; loads of n < K
    rows at offsets inside a group; the last streams; both MXMs."""
    VL, NS, K = cfg.vector_length, cfg.streams_per_direction, cfg.mxm_load_rows
    G = VL // K
    lat, lwt = latency("MVM", cfg), latency("LWT", cfg)
    rng = np.random.default_rng(seed)
    b = mxm_bench(cfg, seed)

    def tile():
        return rng.integers(-128, 128, (VL, VL))

    def rows_of(w, k):  # repetition k of a K-row load: rows (columns) Kk..Kk+K-1 of w
        return {(f"w{j}" if j else "w"): i8(w[K * k + j]) for j in range(K)}

    def wait(n):
        return [(f"NOP {n}", None)] if n > 0 else []

    x = rng.integers(-128, 128, VL)
    # 1. LW K rows per cycle (VL / K issues), IW in the cycle after the last (t + 1)
    w1 = tile()
    seq = b.run("MXM_W0", [(f"LW 0, s1.W, rows={K}", lambda k: rows_of(w1, k)),
                           (f"REPEAT {G - 1}, 1, {K}", None), ("IW", None),
                           ("MVM s0.W, 0, emit=s0.E", {"x": i8(x)})])
    t = max(seq.issues)
    assert (_result(seq, t, 0, 0, lat) == w1 @ x).all()
    # 2. LWT K columns per cycle, stride -K from the last group, IW when the last lands
    w2 = tile()
    seq = b.run("MXM_E0", [(f"LWT {VL - K}, s{NS - K}.E, rows={K}",
                            lambda k: rows_of(w2.T[::-1].reshape(G, K, VL)[:, ::-1]
                                              .reshape(VL, VL), k)),
                           (f"REPEAT {G - 1}, 1, {-K}", None), *wait(lwt - 1), ("IW", None),
                           ("MVM s2.E, 1, emit=s4.W", {"x": i8(x)})])
    t = max(seq.issues)
    assert (_result(seq, t, 4, 1, lat) == w2 @ x).all()
    # 3. MVM lw= rows=K at full rate (the MVMs use tile 2, then tile 3 after the IW)
    w3 = tile()
    xs = rng.integers(-128, 128, (G, VL))
    seq = b.run("MXM_E0", [(f"MVM s0.E, 2, emit=s0.W, lw=0@s1.E, rows={K}",
                            lambda k: {"x": i8(xs[k]), **rows_of(w3, k)}),
                           (f"REPEAT {G - 1}, 1, 1, {K}", None), ("IW", None),
                           ("MVM s0.E, 3, emit=s0.E", {"x": i8(x)})])
    t0, t = min(seq.issues), max(seq.issues)
    assert (_result(seq, t0 + 1, 0, 1, lat) == w2 @ xs[1]).all()
    assert (_result(seq, t, 0, 0, lat) == w3 @ x).all()
    # 4. MVM lwt= rows=K at full rate, IW when the last columns land
    w4 = tile()
    seq = b.run("MXM_W0", [(f"MVM s3.W, 4, lwt=0@s{NS - K}.W, rows={K}",
                            lambda k: rows_of(w4.T, k)),
                           (f"REPEAT {G - 1}, 1, 0, {K}", None), *wait(lwt - 1),
                           ("IW", None), ("MVM s3.W, 5, emit=s1.E", {"x": i8(x)})])
    t = max(seq.issues)
    assert (_result(seq, t, 1, 0, lat) == w4 @ x).all()
    # 5. partial groups: rows=n < K at an offset in the group (LW and LWT), rows=1, a
    # stride of whole groups; then the mixed tile is installed and checked
    w5 = w3.copy()  # the shadow buffer now (IW swapped tiles 3 and 4)
    items = []
    for n, off in ((1, K - 1), (K - 1, 1), (max(1, K // 2), K // 2 - 1 if K > 2 else 0)):
        if off + n > K:
            continue
        r0 = K * int(rng.integers(0, G - 1)) + off
        v = rng.integers(-128, 128, (2, n, VL))
        items += [(f"LW {r0}, s2.W, rows={n}",
                   lambda k, v=v, n=n: {(f"w{j}" if j else "w"): i8(v[k, j])
                                        for j in range(n)}),
                  (f"REPEAT 1, 2, {K}", None)]
        w5[r0:r0 + n] = v[0]
        w5[r0 + K:r0 + K + n] = v[1]
        c0 = K * int(rng.integers(0, G)) + off
        vc = rng.integers(-128, 128, (n, VL))
        items.append((f"LWT {c0}, s{NS - n}.W, rows={n}",
                      {(f"w{j}" if j else "w"): i8(vc[j]) for j in range(n)}))
        items += wait(lwt - 1)  # (lands before the next rows)
        w5[:, c0:c0 + n] = vc.T
    seq = b.run("MXM_W0", items + [("IW", None),
                                   ("MVM s5.W, 6, emit=s2.E", {"x": i8(x)})])
    t = max(seq.issues)
    assert (_result(seq, t, 2, 0, lat) == w5 @ x).all()
    return b


@pytest.mark.parametrize("cfg", [TINY3_K2, SMALL_K4], ids=["tiny3-K2", "small-K4"])
def test_mxm_multirow_directed(cfg):
    b = _multirow_directed(cfg)
    dut = MxmSlice(cfg)
    b.simulate(dut, port_checks=mvm_port_check(dut))


def _illegal(cfg, cases):
    """Each (name, items) as its own sequence: the model refuses its last issue, and the
    RTL flags ILLEGAL_INSTRUCTION in that cycle."""
    b = mxm_bench(cfg, 8)
    b.simulate(MxmSlice(cfg), error_at=b.illegal("MXM_W0", cases))


def _ld(mn, row, w_s, extra, **f):
    if mn == "MVM":
        return Instr("MVM", {"x_s": 0, "x_d": 1, "ld": 1, "row": row, "w_s": w_s, "w_d": 1,
                             "extra": extra, **f})
    return Instr(mn, {"row": row, "w_s": w_s, "w_d": 1, "extra": extra})


@pytest.mark.parametrize("cfg", [TINY3_K2, SMALL_K4], ids=["tiny3-K2", "small-K4"])
def test_mxm_multirow_illegal(cfg):
    """A group crossed (as a word, after a REPEAT A or B stride), streams past the last,
    rows > K, rows without a load: refused by the model and the RTL."""
    K, NS = cfg.mxm_load_rows, cfg.streams_per_direction
    _illegal(cfg, [
        ("LW crosses a group", [(_ld("LW", K - 1, 0, 1), None)]),
        ("LWT crosses a group", [(_ld("LWT", 1, 0, K - 1), None)]),
        ("MVM lw= crosses a group", [(_ld("MVM", K + K // 2, 0, K - 1), None)]),
        ("MVM lwt= crosses a group", [(_ld("MVM", 2 * K - 1, 0, 1, ld=2), None)]),
        ("rows > K", [(_ld("LW", 0, 0, K), None)]),
        ("LW streams past the last", [(_ld("LW", 0, NS - K + 1, K - 1), None)]),
        ("LWT streams past the last", [(_ld("LWT", K, NS - 1, 1), None)]),
        ("MVM lw= streams past the last", [(_ld("MVM", 0, NS - 1, 1), None)]),
        ("MVM rows= without a load", [(Instr("MVM", {"x_s": 0, "x_d": 1, "extra": 1}),
                                        None)]),
        ("LW stride crosses a group", [(f"LW 0, s0.W, rows={K}", None),
                                       (f"REPEAT 2, 1, {K}", None),
                                       (f"LW 0, s0.W, rows={K}", None),
                                       ("REPEAT 1, 1, 1", None)]),
        ("LWT stride crosses a group", [(f"LWT {K}, s0.W, rows=2", None),
                                        (f"REPEAT 1, 2, {K - 1}", None)]),
        ("MVM stride B crosses a group", [(f"MVM s0.W, 0, lw=0@s1.W, rows={K}", None),
                                          (f"REPEAT 1, 1, 0, {K // 2}", None)]),
    ])


def test_mxm_multirow_on_k1_is_illegal():
    """rows > 1 on a config without multi-row loads (K = 1): illegal words."""
    _illegal(TINY, [
        ("LW rows=2", [(_ld("LW", 0, 0, 1), None)]),
        ("LWT rows=2", [(_ld("LWT", 2, 0, 1), None)]),
        ("MVM lw= rows=2", [(_ld("MVM", 0, 0, 1), None)]),
        ("MVM rows=2 without a load", [(Instr("MVM", {"x_s": 0, "x_d": 1, "extra": 1}),
                                        None)]),
    ])
    with pytest.raises(AsmError, match="out of range"):
        parse_instr("LW 0, s0.W, rows=2", "MXM", TINY)


class _WrongLine(MxmWeights):
    """Planted bug: row (column) i is written from line (i + 1) % K."""

    def line_of(self, i):
        return (i + 1) % self.k


class _WrongLineSlice(MxmSlice):
    weights_class = _WrongLine


class _WrongStreamSlice(MxmSlice):
    """Planted bug: weight line j > 0 reads stream w_s + j + 1 (w_s + j - row % K + 1)."""

    @staticmethod
    def line_stream(sel, j):
        return sel.w_s + j + 1


class _LastLineStreamSlice(MxmSlice):
    """Planted bug: the last weight line reads the stream of line 0."""

    def line_stream(self, sel, j):
        return sel.w_s + (0 if j == self.cfg.mxm_load_rows - 1 else j)


@pytest.mark.parametrize("mutant", [_WrongLineSlice, _WrongStreamSlice, _LastLineStreamSlice],
                         ids=["wrong-line", "stream+1", "last-line-stream"])
def test_mxm_multirow_catches_planted_bugs(mutant, base_seed):
    """The directed and the random sequences each find every planted bug (K = 4: four
    lines; tiny3 with K = 2 takes twice as long to simulate)."""
    cfg = SMALL_K4
    b = _multirow_directed(cfg)
    with pytest.raises(AssertionError, match="differs in lanes"):
        b.simulate(mutant(cfg))
    with pytest.raises(AssertionError, match="differs in lanes"):
        random_multirow(cfg, base_seed, 120 + cfg.mxm_load_rows, dut_class=mutant,
                        sequences=8)


@pytest.mark.slow
def test_mxm_multirow_random_sequences_medium(base_seed):
    random_multirow(MEDIUM_K4, base_seed, 124)


@pytest.mark.parametrize("cfg", [TINY3_K2, SMALL_K4, TINY], ids=["tiny3-K2", "small-K4", "tiny"])
def test_mxm_load_words_legal_as_the_isa_says(cfg, base_seed):
    """Random LW/LWT/MVM words around the multi-row rules (row, extra, w_s, ld near their
    limits): the RTL flags ILLEGAL_INSTRUCTION in the issue cycle exactly for the words
    arch.isa.validate refuses."""
    from amaranth.sim import Simulator

    from arch.isa import IsaError, decode, validate

    seed = base_seed + 130 + cfg.mxm_load_rows
    print(f"MXM load word legality: config {cfg.name}, seed {seed}")
    rng = random.Random(seed)
    K, NS, VL = cfg.mxm_load_rows, cfg.streams_per_direction, cfg.vector_length
    words = []
    for _ in range(300):
        mn = rng.choice(["LW", "LWT", "MVM"])
        f = {"row": rng.choice([rng.randrange(VL), rng.randrange(2 * K),
                                VL - 1 - rng.randrange(K)]),
             "w_s": rng.choice([rng.randrange(NS), NS - 1 - rng.randrange(K)]),
             "w_d": rng.randrange(2),
             "extra": rng.choice([0, rng.randrange(K), rng.randrange(16)])}
        if mn == "MVM":
            f.update(x_s=rng.randrange(NS), x_d=rng.randrange(2), acc=rng.randrange(32),
                     ld=rng.choice([0, 1, 2]))
            if not f["ld"] and rng.random() < 0.7:
                f.update(row=0, w_s=0, w_d=0, extra=rng.choice([0, 0, 1]))
        ins = Instr(mn, f)
        try:
            validate(decode("MXM", ins.encode()), "MXM", cfg)
            legal = True
        except IsaError:
            legal = False
        words.append((ins.encode(), legal, mn, f))
    legal_n = sum(w[1] for w in words)
    print(f"  {len(words)} words, {legal_n} legal")
    assert 50 < legal_n < len(words) - 50
    dut = MxmSlice(cfg)
    bad = []

    async def bench(ctx):
        for word, legal, mn, f in words:
            ctx.set(dut.issue.as_value(), 0)
            ctx.set(dut.issue.valid, 1)
            ctx.set(dut.issue.word, word)
            if ctx.get(dut.error) != (not legal):
                bad.append((mn, f, legal))
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert not bad, f"RTL and ISA disagree on {len(bad)} words, e.g. {bad[:3]}"
