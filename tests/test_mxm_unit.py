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
from slicebench import Sequence, SliceBench

from arch.config import get_config
from arch.isa import latency
from hdl.mxm import MxmSlice
from hdl.slice import ErrorCode

TINY, SMALL, MEDIUM = get_config("tiny"), get_config("small"), get_config("medium")


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
