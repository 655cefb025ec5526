"""Op lowerings on their own: compiled through the builder, run on the machine model,
compared bit for bit with numpy, cycles predicted == model cycles."""

from __future__ import annotations

import numpy as np
import pytest

from arch.config import get_config
from arch.program import Program
from compiler import tiling as T
from compiler.builder import ProgramBuilder
from compiler.emit import emit
from compiler.lowerings import (
    add_rows,
    lookup_rows,
    matmul_rows,
    narrow_rows,
    requantize_rows,
    rmsnorm_rows,
    rsqrt_seed_table,
)
from compiler.routes import planes_out
from compiler.schedule import list_schedule
from golden.machine import Machine
from golden.norm import NormWeights, rmsnorm_int
from golden.planes import narrow

TWO_MXM = get_config("small").replace(name="small-2mxm", mxms_per_hemisphere=2)


def _run(cfg, pb):
    """Schedule `pb`'s bundles, run them on a fresh machine from the host image; return
    the machine and the cycle count (predicted == model cycles asserted)."""
    pb.mem.check()
    list_schedule(cfg, pb.bundles, order="program")
    em = emit(cfg, pb.bundles, True)
    m = Machine(cfg)
    for (s, a), v in pb.init.items():
        m.write_mem(s, a, v)
    m.load_program(Program.from_instrs(cfg, {k: q.words for k, q in em.queues.items()}))
    assert m.run(max_cycles=4 * em.cycles + 1000).cycles == em.cycles
    return m, em.cycles


def _rows_const(pb, name, x, planes, vl, side=None):
    """Host constant: row i, lane tile t of ``x`` as ``planes`` little-endian byte planes."""
    rows, width = x.shape
    return pb.const(name, {(i, t): T.bytes_of(T.tile_vec(x[i], t, vl), planes)
                           for i in range(rows) for t in range(T.ntiles(width, vl))}, planes,
                    side)


def _read_rows(m, tensor, rows, width, vl):
    out = np.zeros((rows, T.ntiles(width, vl) * vl), np.int64)
    for (i, t), locs in tensor.locs.items():
        out[i, t * vl:(t + 1) * vl] = T.from_bytes(np.stack([m.read_mem(s, a) for s, a in locs]))
    return out[:, :width]


def run_matmul(cfg, mxm: str, n_out: int, k_in: int, rows: int, seed: int):
    """``Y = X W^T`` (int8 x int8 -> int32) by `matmul_rows` on ``mxm``; returns
    (Y from the machine, X, W, cycles: predicted == model, asserted by `_run`)."""
    rng = np.random.default_rng([seed, n_out, k_in, rows])
    w = rng.integers(-127, 128, (n_out, k_in)).astype(np.int8)
    x = rng.integers(-128, 128, (rows, k_in)).astype(np.int8)
    vl = cfg.vector_length
    pb = ProgramBuilder(cfg)
    sd = cfg.slice(mxm if isinstance(mxm, str) else mxm[0]).hemisphere
    wt = pb.weights("w", w, sd)
    xt = _rows_const(pb, "x", x, 1, vl, sd)
    yt = pb.mem.tensor("y", [(i, n) for i in range(rows) for n in range(T.ntiles(n_out, vl))],
                       4, sd)

    def store(b, mv, i, n):  # the int32 sums, 4 byte planes, straight to SRAM
        planes_out(pb.O, b, mv, "out", yt[(i, n)])

    matmul_rows(pb, "w", mxm, wt, n_out, k_in, rows, xt.loc, epilogue=store)
    m, cycles = _run(cfg, pb)
    return _read_rows(m, yt, rows, n_out, vl), x, w, cycles


@pytest.mark.parametrize(("config", "mxm", "n_out", "k_in", "rows"), [
    ("tiny", "MXM_W0", 16, 16, 3),  # one tile
    ("tiny", "MXM_E0", 40, 24, 5),  # N and K beyond VL = 16, partial last tiles
    ("tiny", "MXM_W0", 8, 56, 4),  # K over 4 tiles accumulated in the slots
    ("small", "MXM_E0", 70, 33, 6),  # VL = 32
    (TWO_MXM, "MXM_W1", 36, 40, 3),  # the second MXM of a hemisphere
    (TWO_MXM, "MXM_E1", 36, 40, 3),
    # output tiles over every MXM of the config, the far hemisphere's reading across
    ("tiny", ("MXM_W0", "MXM_E0"), 40, 24, 5),
    (TWO_MXM, ("MXM_W0", "MXM_W1", "MXM_E0", "MXM_E1"), 130, 40, 4),
])
def test_matmul_rows_bit_exact(config, mxm, n_out, k_in, rows, base_seed):
    cfg = get_config(config) if isinstance(config, str) else config
    print(f"seed={base_seed} {cfg.name} {mxm} N={n_out} K={k_in} rows={rows}")
    if not isinstance(mxm, str):  # spread over several MXMs: faster than on the first alone
        one = run_matmul(cfg, mxm[0], n_out, k_in, rows, base_seed)[3]
    y, x, w, predicted = run_matmul(cfg, mxm, n_out, k_in, rows, base_seed)
    want = x.astype(np.int64) @ w.astype(np.int64).T  # independent: numpy, exact
    assert np.array_equal(y, want), np.argwhere(y != want)[:5]
    if not isinstance(mxm, str):
        print(f"cycles on {mxm[0]} alone {one}, on {len(mxm)} MXMs {predicted}")
        assert predicted < one


def _requant_ref(acc: int, m: int, s: int, lo: int, hi: int) -> int:
    """floor(acc * m * 2**(s - 31) + 1/2), saturated: Python integers, exact."""
    num = acc * m * 2 ** max(s, 0) * 2 + 2 ** (31 - min(s, 0))
    return min(max(num // 2 ** (32 - min(s, 0)), lo), hi)


@pytest.mark.parametrize(("config", "src_planes", "dst_planes", "width", "rows"), [
    ("tiny", 4, 1, 40, 3),  # int32 -> int8 (the block's x8), partial last tile
    ("tiny", 4, 2, 16, 2),  # int32 -> int16
    ("small", 2, 1, 70, 4),  # int16 -> int8, VL = 32
])
def test_requantize_rows_bit_exact(config, src_planes, dst_planes, width, rows, base_seed):
    cfg = get_config(config)
    print(f"seed={base_seed} {config} {src_planes}->{dst_planes} bytes width={width}")
    rng = np.random.default_rng([base_seed, src_planes, dst_planes, width])
    vl = cfg.vector_length
    bits = 8 * src_planes
    x = rng.integers(-(2 ** (bits - 1)), 2 ** (bits - 1), (rows, width))
    x[0, :4] = [2 ** (bits - 1) - 1, -(2 ** (bits - 1)), 0, -1]  # the extremes
    mult = rng.integers(2**30, 2**31 - 1, width)
    shift = rng.integers(-20, 3, width)
    pb = ProgramBuilder(cfg)
    src = _rows_const(pb, "x", x, src_planes, vl)
    dst = pb.mem.tensor("y", list(src.locs), dst_planes)
    requantize_rows(pb, "rq", src, dst, rows, width, mult, shift)
    y = _read_rows(_run(cfg, pb)[0], dst, rows, width, vl)
    lo, hi = -(2 ** (8 * dst_planes - 1)), 2 ** (8 * dst_planes - 1) - 1
    for i in range(rows):
        for c in range(width):
            want = _requant_ref(int(x[i, c]), int(mult[c]), int(shift[c]), lo, hi)
            assert y[i, c] == want, (i, c, int(x[i, c]), int(mult[c]), int(shift[c]))


@pytest.mark.parametrize(("config", "requant"), [("tiny", False), ("tiny", True),
                                                 ("small", True)])
def test_add_rows_bit_exact(config, requant, base_seed):
    """The residual add: int32 stream + (requantised) int32 accumulator, saturated."""
    cfg = get_config(config)
    vl, rows, width = cfg.vector_length, 3, 40
    print(f"seed={base_seed} {config} requant={requant}")
    rng = np.random.default_rng([base_seed, 7, int(requant)])
    a = rng.integers(-(2**30), 2**30, (rows, width))
    b = rng.integers(-(2**31), 2**31, (rows, width))
    a[0, 0], b[0, 0] = 2**31 - 1, 2**31 - 1  # saturates (without requantisation)
    mult = rng.integers(2**30, 2**31 - 1, width)
    shift = rng.integers(-12, 0, width)
    pb = ProgramBuilder(cfg)
    at, bt = _rows_const(pb, "a", a, 4, vl), _rows_const(pb, "b", b, 4, vl)
    yt = pb.mem.tensor("y", list(at.locs), 4)
    add_rows(pb, "res", at, bt, yt, rows, width, *((mult, shift) if requant else (None, None)))
    y = _read_rows(_run(cfg, pb)[0], yt, rows, width, vl)
    lo, hi = -(2**31), 2**31 - 1
    for i in range(rows):
        for c in range(width):
            bb = (_requant_ref(int(b[i, c]), int(mult[c]), int(shift[c]), lo, hi) if requant
                  else int(b[i, c]))
            assert y[i, c] == min(max(int(a[i, c]) + bb, lo), hi), (i, c)


def test_lookup_rows_bit_exact(base_seed):
    """A table activation (here the block's GELU table) on an int8 tensor: one Gather per
    vector, index = the byte."""
    cfg = get_config("tiny")
    vl, rows, width = cfg.vector_length, 4, 40
    print(f"seed={base_seed}")
    rng = np.random.default_rng([base_seed, 8])
    x = rng.integers(-128, 128, (rows, width))
    x[0, :3] = [-128, 0, 127]
    table = rng.integers(-128, 128, 256).astype(np.int8)
    pb = ProgramBuilder(cfg)
    xt = _rows_const(pb, "x", x, 1, vl)
    tt = pb.const("table", dict(enumerate(T.table_vectors(table, vl))), 1, "E")
    yt = pb.mem.tensor("y", list(xt.locs), 1, "W")
    lookup_rows(pb, "act", xt, tt.loc(0), yt, list(xt.locs))
    y = _read_rows(_run(cfg, pb)[0], yt, rows, width, vl)
    assert np.array_equal(y, table[x.astype(np.uint8)].astype(np.int64))


def _scaled_rows(rng, rows: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """int32 rows of every magnitude with their exponents, and the hard cases: a row of
    zeros, one at the int32 limit of the residual stream (2**30), a single outlier, a row
    of +-1 at a very small exponent (RMSNorm's eps then exceeds the int32 range and
    saturates) and at a large one."""
    mag = 2.0 ** rng.integers(0, 29, (rows, 1))
    h = np.clip(np.rint(rng.standard_normal((rows, width)) * mag), -2**30, 2**30)
    e = rng.integers(-30, 8, (rows, 1))
    h[0] = 0
    h[1, :], e[1] = rng.choice([-1, 1], width), -45
    h[2, :] = rng.choice([-(2**30), 2**30], width)
    if rows > 3:
        h[3, :] = rng.integers(-3, 4, width)
        h[3, width // 2] = 900_000
    if rows > 4:
        h[4, :], e[4] = rng.integers(-100, 100, width), 20
    return h.astype(np.int64), e.astype(np.int64)


def _run_scaled(cfg, lower, h, e, out_planes):
    """Lower ``lower(pb, h tensor, e tensor, out, e_out)`` over host rows ``h`` with
    exponents ``e``; run; return (out rows, out exponents, cycles)."""
    vl = cfg.vector_length
    rows, width = h.shape
    pb = ProgramBuilder(cfg)
    for z in (2, 5, 8, 11):  # the zero registers every program sets
        pb.set_imm(z, 0, "zero")
    rsqrt_seed_table(pb)  # 256 consecutive addresses, before SRAM fills up
    ht = _rows_const(pb, "h", h, 4, vl)
    et = _rows_const(pb, "e", np.repeat(e, width, axis=1), 2, vl)  # the row's in every lane
    out = pb.mem.tensor("out", list(ht.locs), out_planes)
    eo = pb.mem.tensor("e_out", list(ht.locs), 2)
    lower(pb, ht, et, out, eo)
    m, cycles = _run(cfg, pb)
    eg = _read_rows(m, eo, rows, width, vl)
    assert (eg == eg[:, :1]).all()  # the row's exponent in every lane of every tile
    return _read_rows(m, out, rows, width, vl), eg[:, :1], cycles


@pytest.mark.parametrize(("config", "width", "bits"), [
    ("tiny", 24, 16), ("tiny", 16, 8), ("small", 70, 16), ("medium", 200, 16),
    ("small", 40, 15)])  # 15 bits (q, k, v of the LLM): the upper clamp by MIN
def test_narrow_rows_bit_exact(config, width, bits, base_seed):
    """`golden.planes.narrow` on the machine: row max over every tile, clz, one rounding
    shift per vector, exponent + k."""
    print(f"seed={base_seed}")
    rng = np.random.default_rng([base_seed, 9, width])
    h, e = _scaled_rows(rng, 6, width)
    h[5] = rng.integers(-1000, 1000, width)
    h[5, 1] = 2**(bits) - 1  # rounds up to 2**(bits-1) after the shift by one: clamped
    q, eq, _ = _run_scaled(get_config(config), lambda pb, ht, et, out, eo: narrow_rows(
        pb, "n", ht, et, out, eo, len(h), width, bits), h, e, -(-bits // 8))
    gq, ge = narrow(h, e, bits)
    assert np.array_equal(q, gq) and np.array_equal(eq, ge)


@pytest.mark.parametrize(("config", "width", "eps", "rows"), [
    ("tiny", 24, 1e-5, 4),  # two tiles, the last partial (4 rows: 512-word queues)
    ("tiny", 16, 0.0, 4),  # no eps
    ("small", 70, 1e-6, 6),
    ("small", 576, 1e-5, 3),  # SmolLM2's d_model and eps: 18 tiles
])
def test_rmsnorm_rows_bit_exact(config, width, eps, rows, base_seed):
    """`golden.norm.rmsnorm_int` on the machine, every step in int32 (narrow, sum of
    squares, eps by the row exponent, Newton rsqrt, x G y, narrow)."""
    print(f"seed={base_seed}")
    rng = np.random.default_rng([base_seed, 10, width])
    h, e = _scaled_rows(rng, rows, width)
    nw = NormWeights(rng.standard_normal(width) * 0.4 + 1.0, eps)
    q, eq, _ = _run_scaled(get_config(config), lambda pb, ht, et, out, eo: rmsnorm_rows(
        pb, "rms", ht, et, out, eo, len(h), nw), h, e, 2)
    gq, ge = rmsnorm_int(h, e, nw)
    assert np.array_equal(q, gq), np.argwhere(q != gq)[:5]
    assert np.array_equal(eq, ge)


@pytest.mark.parametrize(("config", "heads", "d_head", "rows"), [
    ("tiny", 2, 8, 3),  # two heads in one tile
    ("tiny", 1, 32, 2),  # one head over two tiles
    ("small", 3, 16, 3),  # a partial last tile
    ("small", 3, 64, 2),  # SmolLM2's head size (its 9 and 3 heads: the same per head)
])
@pytest.mark.parametrize("bits", [16, 15])  # 15: the LLM's q and k
def test_rope_rows_bit_exact(config, heads, d_head, rows, bits, base_seed):
    """`golden.rope.rope_int` on the machine: x C + swap(x) S per lane tile (the swap by an
    SXM permutation), narrowed per head; positions far apart, exponents per head."""
    from compiler.lowerings.rope import rope_rows
    from golden.rope import rope_int, rope_tables

    print(f"seed={base_seed}")
    cfg = get_config(config)
    vl = cfg.vector_length
    rng = np.random.default_rng([base_seed, 11, heads, d_head])
    x = rng.integers(-(2**15), 2**15, (rows, heads, d_head))
    x[0, 0] = 0  # a head of zeros
    x[-1, -1, :2] = [-(2**15), 2**15 - 1]
    e = rng.integers(-20, 5, (rows, heads, 1))
    pos = rng.choice(2048, rows, replace=False)
    cos, sin = rope_tables(pos, d_head, 10000.0)
    width = heads * d_head
    lane_e = np.repeat(e[..., 0], d_head, axis=1)  # [rows, width]: each head's exponent
    pb = ProgramBuilder(cfg)
    for z in (2, 5, 8, 11):
        pb.set_imm(z, 0, "zero")
    xt = _rows_const(pb, "x", x.reshape(rows, width), 2, vl)
    et = _rows_const(pb, "e", lane_e, 2, vl)
    out = pb.mem.tensor("out", list(xt.locs), 2)
    eo = pb.mem.tensor("e_out", list(xt.locs), 2)
    rope_rows(pb, "rope", xt, et, out, eo, rows, heads, d_head, cos, sin, bits)
    m, _ = _run(cfg, pb)
    gq, ge = rope_int(x, e, pos, 10000.0, bits)
    assert np.array_equal(_read_rows(m, out, rows, width, vl), gq.reshape(rows, width))
    assert np.array_equal(_read_rows(m, eo, rows, width, vl),
                          np.repeat(ge[..., 0], d_head, axis=1))


@pytest.mark.parametrize(("config", "n_out", "n_in", "rows", "offsets", "mxm"), [
    ("small", 40, 64, 2, True, "MXM_W0"),  # Q4_1-style blocks with offsets, 1 per lane tile
    ("small", 24, 96, 3, False, "MXM_W0"),  # Q8_0-style (no offsets), three K tiles
    ("medium", 70, 128, 2, True, "MXM_W0"),  # two blocks per lane tile, a partial out tile
    # every MXM (both hemispheres): a wave of two tiles, then the last tile's five K tiles
    # split over both MXMs and the parts added
    ("small", 70, 160, 1, True, None),
    ("small", 40, 96, 2, False, None),  # two rows: one tile per MXM, no split
    # four MXMs, three tiles of two K tiles: runs of 2, 1, 1, 2 -- tile 1 cut in two
    ("layer", 192, 128, 1, True, None),
    # two MEM slices a side: the int32 block sums in the relay layout (reduced on the
    # input's side, so that their planes 2, 3 can come back through the sums' SXM)
    ("medium-2mem", 70, 128, 2, True, "MXM_W0"),
])
def test_linear_rows_bit_exact(config, n_out, n_in, rows, offsets, mxm, base_seed):
    """`golden.planes.linear_int` on the machine: per block and plane an MVM of the masked
    int8 plane, the block scale and rounding shift on the VXM, int32 sums."""
    from compiler.lowerings.linear import linear_rows
    from golden.planes import RowWeight, linear_int

    print(f"seed={base_seed}")
    cfg = (get_config("medium").replace(name=config, mem_slices_per_hemisphere=2)
           if config == "medium-2mem" else get_config(config))
    vl = cfg.vector_length
    rng = np.random.default_rng([base_seed, 12, n_out, n_in])
    nb = n_in // 32
    q = rng.integers(0, 16, (n_out, n_in)) - 8
    d = rng.uniform(0.001, 0.05, (n_out, nb)).astype(np.float16).astype(np.float64)
    m = (-8 * d + rng.normal(0, 0.01, (n_out, nb))).astype(np.float16).astype(np.float64)
    w = RowWeight.from_blocks(q, d, m + 8 * d if offsets else None)
    x = rng.integers(-(2**15), 2**15, (rows, n_in))
    x[0, :3] = [-(2**15), 2**15 - 1, 0]
    e = rng.integers(-20, 5, (rows, 1))
    pb = ProgramBuilder(cfg)
    xt = _rows_const(pb, "x", x, 2, vl, "W")
    et = _rows_const(pb, "e", np.repeat(e, n_in, axis=1), 2, vl)
    keys = [(i, t) for i in range(rows) for t in range(T.ntiles(n_out, vl))]
    out = pb.mem.tensor("out", keys, 4)
    eo = pb.mem.tensor("e_out", keys, 2)
    linear_rows(pb, "lin", xt, et, w, out, eo, rows, mxm=mxm)
    m_, _ = _run(cfg, pb)
    gq, ge = linear_int(x, e, w, 16)
    assert np.array_equal(_read_rows(m_, out, rows, n_out, vl), gq)
    assert np.array_equal(_read_rows(m_, eo, rows, n_out, vl), np.repeat(ge, n_out, axis=1))


@pytest.mark.parametrize(("config", "width"), [("tiny", 24), ("small", 70)])
def test_add_aligned_rows_bit_exact(config, width, base_seed):
    """`golden.planes.add_aligned` (the LLM's residual add) on the machine: each operand's
    row max and exponent, the common exponent, both shifted (left or right) and added."""
    from compiler.lowerings.norm import add_aligned_rows
    from golden.planes import add_aligned

    print(f"seed={base_seed}")
    cfg = get_config(config)
    vl = cfg.vector_length
    rng = np.random.default_rng([base_seed, 13, width])
    a, ea = _scaled_rows(rng, 5, width)
    b, eb = _scaled_rows(rng, 5, width)
    b = b[::-1].copy()  # zero rows against non-zero ones, both ways
    eb[2] = ea[2] - 70  # far apart: one operand shifted out entirely
    pb = ProgramBuilder(cfg)
    for z in (2, 5, 8, 11):
        pb.set_imm(z, 0, "zero")
    at, bt = _rows_const(pb, "a", a, 4, vl, "W"), _rows_const(pb, "b", b, 4, vl, "E")
    eat = _rows_const(pb, "ea", np.repeat(ea, width, axis=1), 2, vl)
    ebt = _rows_const(pb, "eb", np.repeat(eb, width, axis=1), 2, vl)
    out = pb.mem.tensor("out", list(at.locs), 4)
    eo = pb.mem.tensor("e_out", list(at.locs), 2)
    add_aligned_rows(pb, "res", at, eat, bt, ebt, out, eo, 5, width)
    m, _ = _run(cfg, pb)
    gq, ge = add_aligned(a, ea, b, eb, bits=32)
    assert np.array_equal(_read_rows(m, out, 5, width, vl), gq)
    assert np.array_equal(_read_rows(m, eo, 5, width, vl), np.repeat(ge, width, axis=1))


@pytest.mark.parametrize(("config", "width", "rows"), [("small", 40, 3), ("medium", 70, 2)])
def test_silu_and_swiglu_rows_bit_exact(config, width, rows, base_seed):
    """`golden.activation.silu_int` and `swiglu_int` on the machine: log2(e) multiply,
    the two-table 2**-u, the integer reciprocal, the sign mirror, the narrows.  Exponents
    from very small to large (|x| 2**e from ~0 to past exp's saturation)."""
    from compiler.lowerings.activation import activation_tables, swiglu_rows
    from golden.activation import swiglu_int

    print(f"seed={base_seed}")
    cfg = get_config(config)
    vl = cfg.vector_length
    rng = np.random.default_rng([base_seed, 14, width])
    g = rng.integers(-(2**15), 2**15, (rows, width))
    g[0, :4] = [0, -1, 1, -(2**15)]
    u = rng.integers(-(2**15), 2**15, (rows, width))
    eg = rng.integers(-22, -8, (rows, 1))
    eg[-1] = 9  # exp's argument saturates (u = U_MAX) for every non-zero lane
    eu = rng.integers(-20, 0, (rows, 1))
    pb = ProgramBuilder(cfg)
    for z in (2, 5, 8, 11):
        pb.set_imm(z, 0, "zero")
    activation_tables(pb)
    gt = _rows_const(pb, "g", g, 2, vl, "W")
    ut = _rows_const(pb, "u", u, 2, vl, "E")
    egt = _rows_const(pb, "eg", np.repeat(eg, width, axis=1), 2, vl)
    eut = _rows_const(pb, "eu", np.repeat(eu, width, axis=1), 2, vl)
    out = pb.mem.tensor("out", list(gt.locs), 2)
    eo = pb.mem.tensor("e_out", list(gt.locs), 2)
    swiglu_rows(pb, "mlp", gt, egt, ut, eut, out, eo, rows, width)
    m, _ = _run(cfg, pb)
    gq, ge = swiglu_int(g, eg, u, eu, 16)
    assert np.array_equal(_read_rows(m, out, rows, width, vl), gq)
    assert np.array_equal(_read_rows(m, eo, rows, width, vl), np.repeat(ge, width, axis=1))


@pytest.mark.parametrize(("config", "width"), [("tiny", 40), ("small", 96), ("small", 70)])
def test_argmax_rows_bit_exact(config, width, base_seed):
    """`golden.vocab.argmax_int` on the machine: ties resolve to the lowest index, also
    across tiles; all-negative rows (the zero lanes past the row must not win)."""
    from compiler.lowerings import argmax_rows
    from golden.vocab import argmax_int

    print(f"seed={base_seed}")
    cfg = get_config(config)
    vl = cfg.vector_length
    rng = np.random.default_rng([base_seed, 15, width])
    x = rng.integers(-(2**31), 2**31, (6, width))
    x[0, [3, width - 2]] = 2**31 - 1  # a tie across tiles: the lower index wins
    x[1] = -(2**31)  # all equal: index 0
    x[2] = rng.integers(-1000, -1, width)  # all negative (padding lanes hold 0)
    x[3, :] = 5
    x[3, width - 1] = 6  # the maximum in the last lane
    pb = ProgramBuilder(cfg)
    xt = _rows_const(pb, "x", x, 4, vl)
    out = pb.mem.tensor("idx", [(i,) for i in range(6)], 4)
    argmax_rows(pb, "argmax", xt, out, 6, width)
    m, _ = _run(cfg, pb)
    got = [int(T.from_bytes(np.stack([m.read_mem(s, a) for s, a in out[(i,)]]))[0])
           for i in range(6)]
    assert got == list(argmax_int(x)), (got, list(argmax_int(x)))


@pytest.mark.parametrize(("config", "hq", "hkv", "d", "C", "p"), [
    ("small", 4, 2, 16, 8, 5),  # GQA groups of 2, the query row over two lane tiles
    ("small", 4, 1, 16, 16, 0),  # one KV head for four, the first position (one key)
    ("medium", 2, 1, 64, 32, 31),  # SmolLM2's head size, the whole cache visible
    ("medium", 6, 2, 16, 32, 17),  # groups of 3
    ("medium", 12, 6, 16, 16, 9),  # the KV row over two lane tiles, heads at lanes 16..48
    ("small", 6, 3, 16, 16, 15),  # KV heads 0, 1 in tile 0 and 2 in tile 1; groups of 2
])
def test_attention_decode_row_bit_exact(config, hq, hkv, d, C, p, base_seed):
    """`golden.attention.attention_int` for one query row (a decode step) over a KV cache
    in SRAM (int8 key/value digits, exponents over the key lanes), keys past the position
    masked: the scores from four digit MVMs, the masked softmax with the two-table 2**-u and
    the integer reciprocal, E V from four more, the per-head normalisation, the heads in one
    int16 row.  Exponents spread wide (an attention sink key, a head of zeros)."""
    from compiler.lowerings.activation import activation_tables
    from compiler.lowerings.attention import attention_decode_row
    from golden.attention import attention_int
    from golden.planes import signed_digits

    print(f"seed={base_seed}")
    cfg = get_config(config)
    vl = cfg.vector_length
    rng = np.random.default_rng([base_seed, 16, hq, d, C])
    q = rng.integers(-(2**14), 2**14, (1, hq, d))
    k, v = (rng.integers(-(2**14), 2**14, (C, hkv, d)) for _ in range(2))
    q[0, -1] = 0  # a head of zeros: every score equal
    eq = rng.integers(-24, -8, (1, hq, 1))
    ek, ev = (rng.integers(-30, -8, (C, hkv, 1)) for _ in range(2))
    ek[0] = -4  # a sink: one key far larger than the rest
    want, we = attention_int(q, eq, k, ek, v, ev, np.array([p]), 16, 15)
    pb = ProgramBuilder(cfg)
    for z in (2, 5, 8, 11):
        pb.set_imm(z, 0, "zero")
    activation_tables(pb)
    qt = _rows_const(pb, "q", q.reshape(1, hq * d), 2, vl, "W")
    eqt = _rows_const(pb, "eq", np.repeat(eq[..., 0], d, axis=1), 2, vl, "E")
    cache = {}
    for nm, arr in (("k", k), ("v", v)):
        for tag, dig in zip("hl", signed_digits(arr.reshape(C, hkv * d)), strict=True):
            cache[nm + tag] = pb.const(f"{nm}{tag}", {(j, t): T.bytes_of(T.tile_vec(
                dig[j], t, vl), 1) for j in range(C) for t in range(T.ntiles(hkv * d, vl))},
                1)
    for nm, e in (("ek", ek), ("ev", ev)):
        cache[nm] = pb.const(nm, {(h,): T.bytes_of(T.tile_vec(e[:, h, 0], 0, vl), 2)
                                  for h in range(hkv)}, 2)
    pos = pb.const("pos", {(0,): np.full(vl, p, np.uint8)}, 1)
    keys = [(0, t) for t in range(T.ntiles(hq * d, vl))]
    out, eo = pb.mem.tensor("ctx", keys, 2), pb.mem.tensor("e_ctx", keys, 2)
    attention_decode_row(pb, "att", qt, eqt, cache, pos.loc(0), out, eo, hq, hkv, d, C)
    m, _ = _run(cfg, pb)
    assert np.array_equal(_read_rows(m, out, 1, hq * d, vl), want)
    assert (_read_rows(m, eo, 1, hq * d, vl) == we[0, 0]).all()
