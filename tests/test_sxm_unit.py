"""SXM slice RTL (hdl/sxm.py) against the machine model, in Amaranth's simulator.

Uses `SliceBench` from tests/slicebench.py: every sequence runs on the machine model
with MEM slices feeding the operands, then the same issue words and stream inputs are
played into the RTL and every stream write (cycle, direction, stream, bytes) is compared.
Configs with an SXM transposer (``tiny3``, ``small:sxm_transpose_rows=16``) add TPUT/TGET.
"""

from __future__ import annotations

import gc
import random
import warnings

import numpy as np
import pytest
from amaranth.hdl import UnusedElaboratable
from slicebench import SliceBench

from arch.config import get_config
from arch.isa import TYPES, Instr, latency, type_bytes
from hdl.slice import ErrorCode
from hdl.sxm import SxmSlice

TINY, SMALL, MEDIUM = get_config("tiny"), get_config("small"), get_config("medium")
TINY3 = get_config("tiny3")  # S = 3, VL = 48, a 32-row transposer
SMALL_T = get_config("small:sxm_transpose_rows=16")  # S = 2, VL = 32, 16 rows
MOVES = ("SHS", "ROTS", "SHV", "ROTV", "DIST", "PERM")
REDUCE = ("RMAX", "RMIN", "RSUM")


def sxm_needs(mn, f):
    if mn == "PMAP":
        return [("in0", f["in_d"], f["in_s"]), ("in1", f["in_d"], f["in_s"] + 1)]
    if mn == "TPUT":
        return [("in0", f["in_d"], f["in_s"])]
    if mn == "TGET":
        return []
    nb = type_bytes(f["type"])
    return [(f"in{p}", f["in_d"], f["in_s"] + p) for p in range(nb)]


def sxm_bench(cfg, seed):
    b = SliceBench(cfg, "SXM", sxm_needs, seed)
    # both SXMs share one set of maps (and transposer) in the model: sequences alternate
    # between SXM_W (operands on westward streams) and SXM_E (eastward), both mirrored by
    # the one DUT
    maps = b.machine.sxm_maps["SXM_W"]
    tp = b.machine.sxm_tp["SXM_W"]
    for s in cfg.slices_of("SXM"):
        b.machine.sxm_maps[s.name] = maps
        b.machine.sxm_tp[s.name] = tp
    return b


def in_dir(name):
    return "W" if name.endswith("W") else "E"


def planes_of(values, nbytes):
    v = np.asarray(values, np.int64)
    return {f"in{p}": ((v >> (8 * p)) & 255).astype(np.uint8) for p in range(nbytes)}


def map_data(entries):
    e = np.asarray(entries, np.int64)
    return {"in0": (e & 255).astype(np.uint8), "in1": (e >> 8).astype(np.uint8)}


def random_sxm_items(cfg, rng: random.Random, name):
    """A random legal SXM sequence: no two writes of one stream in one cycle (with a
    transposer also TPUT/TGET, REPEATed with row/col strides)."""
    VL, NS, R = cfg.vector_length, cfg.streams_per_direction, cfg.sxm_transpose_rows
    d_in = in_dir(name)
    nrng = np.random.default_rng(rng.getrandbits(32))
    reserved = set()  # (cycle, dir, stream)

    def free_out(issue_cycles, lat, width):
        """An output (stream, direction) free in every write cycle (reserved), or None."""
        nonlocal reserved
        for _try in range(20):
            out_s, out_d = rng.randrange(NS - width + 1), rng.choice("EW")
            dd = "EW".index(out_d)
            cells = {(c + lat, dd, out_s + p) for c in issue_cycles for p in range(width)}
            if not cells & reserved:
                reserved |= cells
                return out_s, out_d
        return None
    items = []
    t = 0

    def values(t_code):
        nb = type_bytes(t_code)
        k = rng.random()
        if k < 0.1:
            lo = -(1 << (8 * nb - 1)) if TYPES[t_code] != "u8" else 0
            v = np.full(VL, rng.choice([lo, lo + (1 << (8 * nb)) - 1]))
        elif k < 0.2:
            v = nrng.choice([-128, 127, 0, -1, 255, 1 << 30, -(1 << 31)], VL)
        else:
            return None
        return planes_of(v, nb)

    for _ in range(rng.randint(8, 22)):
        if rng.random() < 0.2:
            n = rng.randint(1, 4)
            items.append((f"NOP {n}", None))
            t += n
        ops, weights = MOVES + REDUCE + ("PMAP",), [2, 2, 2, 2, 1, 2, 1, 1, 2, 1]
        if R:
            ops, weights = ops + ("TPUT", "TGET"), weights + [3, 3]
        op = rng.choices(ops, weights)[0]
        if op in ("TPUT", "TGET"):
            rep_n = rng.randint(1, 3) if rng.random() < 0.3 else 0
            rep_d = rng.randint(1, 2)
            sa = rng.choice([-1, 1, 2]) if rep_n else 0
            hi = R - 1 if op == "TPUT" else VL - 1
            lo_, hi_ = max(0, -sa * rep_n), min(hi, hi - sa * rep_n)
            pos = rng.choice([lo_, hi_, rng.randint(lo_, hi_), rng.randint(lo_, hi_)])
            if op == "TPUT":
                items.append((f"TPUT {pos}, s{rng.randrange(NS)}.{d_in}", values(0)))
            else:
                got = free_out([t + k * rep_d for k in range(rep_n + 1)],
                               latency("TGET", cfg), 1)
                if got is None:
                    items.append(("NOP 4", None))
                    t += 4
                    continue
                out_s, out_d = got
                rows = rng.choice([1, R, rng.randint(1, R), rng.randint(1, R)])
                items.append((f"TGET {pos}, {rows}, s{out_s}.{out_d}", None))
            if rep_n:
                items.append((f"REPEAT {rep_n}, {rep_d}, {sa}", None))
                t += rep_n * rep_d + 1
            else:
                t += 1
            continue
        if op == "PMAP":
            s = rng.randrange(NS - 1)
            k = rng.random()
            if k < 0.4:
                e = nrng.permutation(VL)
            elif k < 0.5:
                e = np.full(VL, rng.randrange(VL))
            else:
                e = nrng.integers(0, VL, VL)
            items.append((f"PMAP {rng.randrange(4)}, s{s}.{d_in}", map_data(e)))
            t += 1
            continue
        tc = rng.randrange(4)
        nb = type_bytes(tc)
        otc = rng.randrange(4) if op in REDUCE else tc
        ob = type_bytes(otc)
        lat = latency(op, cfg)
        rep_n = rng.randint(1, 3) if rng.random() < 0.25 and op in MOVES else 0
        rep_d = rng.randint(1, 2)
        sa = rng.choice([-1, 1, 2]) if rep_n else 0
        got = free_out([t + k * rep_d for k in range(rep_n + 1)], lat, ob)
        if got is None:
            items.append(("NOP 4", None))
            t += 4
            continue
        out_s, out_d = got
        suffix = f".{TYPES[tc]}" if tc or rng.random() < 0.5 else ""
        in_s = rng.randrange(NS - nb + 1)
        src, dst = f"s{in_s}.{d_in}", f"s{out_s}.{out_d}"
        if op in REDUCE:
            ot = f":{TYPES[otc]}" if otc != tc or rng.random() < 0.3 else ""
            text = f"{op}{suffix} {src}, {dst}{ot}"
        elif op == "PERM":
            mp = rng.randrange(4)
            text = f"PERM{suffix} {mp}, {src}, {dst}"
            sa = rng.choice([-1, 1]) if rep_n else 0
            if rep_n:
                mp = rng.randint(max(0, -sa * rep_n), min(3, 3 - sa * rep_n))
                text = f"PERM{suffix} {mp}, {src}, {dst}"
        else:
            if op in ("SHS", "ROTS"):
                lim = 15
            elif op == "DIST":
                lim = None
            else:
                lim = VL - 1
            if op == "DIST":
                lo, hi = max(0, -sa * rep_n), min(VL - 1, VL - 1 - sa * rep_n)
            else:
                lo, hi = max(-lim, -lim - sa * rep_n), min(lim, lim - sa * rep_n)
            nv = rng.choice([lo, hi, rng.randint(lo, hi), rng.randint(lo, hi)])
            text = f"{op}{suffix} {nv}, {src}, {dst}"
        items.append((text, values(tc)))
        if rep_n:
            items.append((f"REPEAT {rep_n}, {rep_d}, {sa}", None))
            t += rep_n * rep_d + 1
        else:
            t += 1
    return items


# ============================================================================ tests
def test_sxm_rejects_bad_parameters():
    with warnings.catch_warnings():  # the half-built object warns when it is collected
        warnings.simplefilter("ignore", UnusedElaboratable)
        with pytest.raises(ValueError, match="cfg must be a TspConfig"):
            SxmSlice(None)
        gc.collect()


@pytest.mark.parametrize("cfg", [TINY, SMALL, SMALL_T, TINY3],
                         ids=["tiny", "small", "small-transposer", "tiny3"])
def test_sxm_random_sequences(cfg, base_seed):
    seed = base_seed + 200 + cfg.superlanes + cfg.sxm_transpose_rows
    print(f"SXM random sequences: config {cfg.name}, seed {seed}")
    rng = random.Random(seed)
    b = sxm_bench(cfg, seed)
    names = [s.name for s in cfg.slices_of("SXM")]
    for n in range(24):
        name = names[n % len(names)]
        b.run(name, random_sxm_items(cfg, rng, name))
    b.simulate(SxmSlice(cfg))
    print(f"  {len(b.sequences)} sequences, "
          f"{sum(s.cycles + cfg.superlanes for s in b.sequences)} cycles, "
          f"{sum(len(s.writes) for s in b.sequences)} stream writes checked, "
          f"simulation {b.sim_seconds:.1f} s (cpu {b.sim_cpu:.1f} s)")
    if cfg.sxm_transpose_rows:
        mns = [mn for s in b.sequences for *_, mn in s.issues.values()]
        print(f"  {mns.count('TPUT')} TPUT, {mns.count('TGET')} TGET issued")
        assert mns.count("TPUT") > 10 and mns.count("TGET") > 10


def _directed(cfg, seed=11):
    VL, S = cfg.vector_length, cfg.superlanes
    rng = np.random.default_rng(seed)
    b = sxm_bench(cfg, seed)
    lanes = np.arange(VL)

    def rnd(nb=1):
        return planes_of(rng.integers(-(1 << 31), 1 << 31, VL), nb)

    # wrap-around rotates and zero-filling shifts, both ends, local and across superlanes
    items = []
    for op, ns in (("ROTV", (VL - 1, -(VL - 1), -1, 1, 17 % VL, -17 % VL)),
                   ("SHV", (3, -3, VL - 1, -(VL - 1), 16 % VL, -(16 % VL))),
                   ("ROTS", (15, -15, 1, -1)), ("SHS", (5, -5, 15, -15))):
        out = "s5.E" if op in ("ROTS", "SHS") else "s2.E"
        for n in ns:
            items.append((f"{op} {n}, s1.W, {out}", {"in0": lanes.astype(np.uint8)}))
    items += [(f"DIST {VL - 1}, s1.W, s3.W", None), ("DIST 0, s1.W, s3.W", None),
              ("DIST.i32 15, s0.W, s4.E", rnd(4)), ("SHV.i32 -5, s0.W, s4.E", rnd(4)),
              (f"ROTV.i16 {-(VL // 2 + 3)}, s0.W, s6.W", rnd(2)),
              ("ROTS.i32 -7, s0.W, s4.W", rnd(4))]
    b.run("SXM_W", items)
    # reductions: RMAX of all -128, RSUM of i32 with wrap, RMIN of u8, i16 -> u8 wrap
    b.run("SXM_E", [("RMAX s0.E, s1.E", planes_of(np.full(VL, -128), 1)),
                    ("RMAX.u8 s0.E, s1.E:i16", planes_of(np.full(VL, 128), 1)),
                    ("RSUM.i32 s0.E, s4.W", planes_of(np.full(VL, (1 << 31) - 3), 4)),
                    ("RSUM.i32 s0.E, s4.W:i8", planes_of(np.full(VL, -(1 << 31)), 4)),
                    ("RMIN.i32 s0.E, s4.E", planes_of(rng.integers(-9, 9, VL) << 28, 4)),
                    ("RSUM.u8 s0.E, s4.W:i32", planes_of(np.full(VL, 255), 1)),
                    ("RSUM.i16 s0.E, s2.E:u8", rnd(2)),
                    ("RMIN.u8 s3.E, s2.W", None)])
    # PERM after PMAP: issued in t + 1 the old map, from t + 2 the new one
    perm = rng.permutation(VL)
    b.run("SXM_W", [("PMAP 2, s4.W", map_data(perm)), ("PERM 2, s0.W, s1.E", None),
                    ("PERM 2, s0.W, s1.E", None), ("PERM.i32 2, s0.W, s4.E", rnd(4)),
                    ("PMAP 3, s4.W", map_data(np.full(VL, VL - 1))),
                    ("PMAP 3, s4.W", map_data(VL - 1 - lanes)),
                    ("PERM 3, s0.W, s1.W", None), ("PERM.i16 1, s0.W, s1.W", None),
                    ("REPEAT 2, 1, 1", None)])
    # two units due in one cycle on different streams (legal): RSUM at t, SHS at
    # t + 2S - 1 and SHV at t + 1 all write in t + 2S + 1
    if S == 1:
        same = [("RSUM.i32 s0.E, s0.W", None), ("SHS.i16 1, s0.E, s4.W", None)]
    else:
        gap = [(f"NOP {2 * S - 3}", None)] if 2 * S - 3 > 0 else []
        same = [("RSUM.i32 s0.E, s0.W", None), ("SHV 1, s0.E, s4.W", None), *gap,
                ("SHS.i16 1, s0.E, s8.W", None)]
    seq = b.run("SXM_E", same)
    due = min(seq.issues) + latency("RSUM", cfg)
    assert len({k for k in seq.writes if k[0] == due}) == (6 if S == 1 else 7)
    return b


@pytest.mark.parametrize("cfg", [TINY, SMALL, MEDIUM], ids=["tiny", "small", "medium"])
def test_sxm_directed_corners(cfg):
    b = _directed(cfg)
    b.simulate(SxmSlice(cfg))


def test_sxm_collision_is_an_error():
    """RSUM (L = 2S + 1) at t and SHS (L = 2) at t + 2S - 1 both write s0.W in t + 2S + 1:
    the model refuses it, the RTL raises STREAM_COLLISION in that cycle."""
    cfg = SMALL
    S = cfg.superlanes
    b = sxm_bench(cfg, 5)
    items = [("RSUM s0.E, s0.W", None), (f"NOP {2 * S - 2}", None), ("SHS 1, s0.E, s0.W", None)]
    b.run("SXM_E", items, expect_error="stream collision")
    b.sequences.append(b.hand_sequence("SXM_E", items, "RSUM / SHS collision", 2 * S + 4))
    t0 = min(b.sequences[0].issues)
    b.simulate(SxmSlice(cfg), error_at={0: (t0 + latency("RSUM", cfg),
                                            ErrorCode.STREAM_COLLISION)})


def test_sxm_pmap_entry_out_of_range():
    """A PMAP entry >= VL in the last superlane: VALUE_RANGE when that tile reads it."""
    cfg = SMALL
    S, VL = cfg.superlanes, cfg.vector_length
    b = sxm_bench(cfg, 6)
    e = np.arange(VL)
    e[VL - 1] = VL
    b.run("SXM_W", [("PMAP 0, s2.W", map_data(e))], expect_error="PMAP entry")
    seq = b.hand_sequence("SXM_W", [("PMAP 0, s2.W", None)], "PMAP bad entry", S + 2)
    t0 = min(seq.issues)
    good = map_data(np.arange(VL))
    for d in (0, 1):
        for s in range(cfg.streams_per_direction):
            seq.streams[(d, s)] = [good["in0"]] * seq.cycles
    seq.streams[(1, 2)] = [map_data(e)["in0"]] * seq.cycles
    seq.streams[(1, 3)] = [map_data(e)["in1"]] * seq.cycles
    b.sequences.append(seq)
    b.simulate(SxmSlice(cfg), error_at={0: (t0 + S - 1, ErrorCode.VALUE_RANGE)})


def test_sxm_strided_shift_out_of_range_is_illegal():
    cfg = TINY
    b = sxm_bench(cfg, 7)
    items = [("SHS 14, s0.W, s1.W", None), ("REPEAT 2, 1, 1", None)]
    b.sequences.append(b.hand_sequence("SXM_W", items, "SHS n 14, 15, 16"))
    last = max(b.sequences[0].issues)
    b.simulate(SxmSlice(cfg), error_at={0: (last, ErrorCode.ILLEGAL_INSTRUCTION)})


def _transpose_directed(cfg, seed=12):
    """R TPUTs (one REPEAT, distinct rows) and VL TGETs (one REPEAT over every column)
    transpose an R x VL tile; a row written again is seen by a TGET 2 cycles later, not
    1; TGETs of 1, R - 1 and R rows, of the last column, with col strides of 2 and -1 and
    repetition distance 2, TPUT row stride -1, the last stream in and out; both SXMs."""
    R, VL, NS = cfg.sxm_transpose_rows, cfg.vector_length, cfg.streams_per_direction
    rng = np.random.default_rng(seed)
    b = sxm_bench(cfg, seed)
    tile = rng.integers(0, 256, (R, VL)).astype(np.uint8)
    b.run("SXM_W", [("TPUT 0, s1.W", lambda k: {"in0": tile[k]}),
                    (f"REPEAT {R - 1}, 1, 1", None),
                    (f"TGET 0, {R}, s2.E", None), (f"REPEAT {VL - 1}, 1, 1", None)])
    new = rng.integers(0, 256, VL).astype(np.uint8)
    new[5] = tile[3, 5] ^ 0x55
    seq = b.run("SXM_W", [("TPUT 3, s1.W", {"in0": new}),
                    (f"TGET 5, {R}, s2.E", None),  # the old row 3
                    (f"TGET 5, {R}, s3.E", None),  # the new one
                    (f"TGET {VL - 1}, 1, s{NS - 1}.W", None),
                    (f"TGET 0, {R - 1}, s0.E", None), ("REPEAT 3, 2, 2", None),
                    (f"TPUT {R - 1}, s{NS - 1}.W", None), ("REPEAT 2, 1, -1", None),
                    (f"TGET {VL - 1}, {R}, s4.W", None), ("REPEAT 3, 1, -1", None)])
    t0, lat = min(seq.issues), latency("TGET", cfg)
    assert seq.writes[(t0 + 1 + lat, 0, 2)][3] == tile[3, 5]  # (the model's rule)
    assert seq.writes[(t0 + 2 + lat, 0, 3)][3] == new[5]
    seq = b.run("SXM_E", [("TPUT 0, s0.E", {"in0": np.full(VL, 0x80, np.uint8)}),
                          ("NOP 1", None), (f"TGET 7, {R}, s6.W", None),
                          ("ROTV 1, s2.E, s6.E", None), (f"TGET 2, {R // 2}, s7.W", None)])
    t0 = min(seq.issues)
    assert seq.writes[(t0 + 2 + lat, 1, 6)][0] == 0x80  # row 0 read 2 cycles after its TPUT
    return b


@pytest.mark.parametrize("cfg", [SMALL_T, TINY3, get_config("small:sxm_transpose_rows=32")],
                         ids=["small-transposer", "tiny3", "small-R=VL"])
def test_sxm_transpose_directed(cfg):
    _transpose_directed(cfg).simulate(SxmSlice(cfg))


def _illegal(cfg, cases):
    """Each (name, items) as its own sequence: the model refuses its last issue, and the
    RTL flags ILLEGAL_INSTRUCTION in that cycle."""
    b = sxm_bench(cfg, 8)
    b.simulate(SxmSlice(cfg), error_at=b.illegal("SXM_W", cases))


def test_sxm_transpose_out_of_range_is_illegal():
    """Row >= R, col >= VL, rows 0 and > R as words and row/col after REPEAT strides."""
    cfg = SMALL_T
    R, VL = cfg.sxm_transpose_rows, cfg.vector_length

    def word(mn, **f):
        return Instr(mn, {"in_d": 1, **f} if mn == "TPUT" else {"out_d": 1, **f})

    _illegal(cfg, [
        ("TPUT row = R", [(word("TPUT", row=R, in_s=1), None)]),
        ("TPUT row = 1023", [(word("TPUT", row=1023, in_s=1), None)]),
        ("TGET col = VL", [(word("TGET", col=VL, rows=R, out_s=2), None)]),
        ("TGET rows = 0", [(word("TGET", col=0, rows=0, out_s=2), None)]),
        ("TGET rows = R + 1", [(word("TGET", col=0, rows=R + 1, out_s=2), None)]),
        ("TPUT row R - 2 + 2 strides", [(f"TPUT {R - 2}, s0.W", None),
                                        ("REPEAT 2, 1, 1", None)]),
        ("TPUT row 1 - 2 strides", [("TPUT 1, s0.W", None), ("REPEAT 2, 1, -1", None)]),
        ("TGET col VL - 1 + 1 stride", [(f"TGET {VL - 1}, 1, s0.W", None),
                                        ("REPEAT 1, 2, 1", None)]),
        ("TGET col 0 - 1 stride", [(f"TGET 0, {R}, s0.W", None), ("REPEAT 1, 1, -1", None)]),
    ])


def test_sxm_transpose_without_transposer_is_illegal():
    """TPUT/TGET on a config without a transposer (R = 0): illegal words."""
    _illegal(TINY, [
        ("TPUT 0", [(Instr("TPUT", {"row": 0, "in_s": 0, "in_d": 1}), None)]),
        ("TGET 0, 1", [(Instr("TGET", {"col": 0, "rows": 1, "out_s": 0, "out_d": 0}),
                        None)]),
    ])


@pytest.mark.slow
def test_sxm_random_sequences_medium(base_seed):
    seed = base_seed + 204
    print(f"SXM random sequences: config medium, seed {seed}")
    rng = random.Random(seed)
    b = sxm_bench(MEDIUM, seed)
    for n in range(20):
        name = ("SXM_W", "SXM_E")[n % 2]
        b.run(name, random_sxm_items(MEDIUM, rng, name))
    b.simulate(SxmSlice(MEDIUM))
    print(f"  {len(b.sequences)} sequences, "
          f"{sum(s.cycles + MEDIUM.superlanes for s in b.sequences)} cycles, "
          f"simulation {b.sim_seconds:.1f} s (cpu {b.sim_cpu:.1f} s)")
