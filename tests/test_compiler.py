"""The block compiler: bit-exact with golden/block.py on the machine model, predicted
cycles == model cycles, lower bound <= cycles, resource errors, host interface, CLI."""

from __future__ import annotations

import dataclasses
import functools
import json

import numpy as np
import pytest

from arch.config import get_config
from arch.program import Program
from compiler import CompileError, compile_block
from compiler.__main__ import first_difference
from compiler.__main__ import main as cli_main
from golden.block import make_block
from golden.machine import Machine

# (config, seq, d_model, heads, d_ff, causal)
SHAPES = {
    "small-default": ("small", 16, 32, 2, 64, True),
    "small-wide-noncausal": ("small", 16, 64, 2, 128, False),
    "tiny-default": ("tiny", 8, 32, 2, 64, True),
}


def _check(cb, blk, x_q):
    """Run on the model; return (model result, golden trace, intermediates)."""
    y, res, inter = cb.run_on_model(x_q)
    tr = blk.trace(x_q)
    assert np.array_equal(y, tr["y"]), first_difference("y", y, tr["y"])
    for name, got in inter.items():
        assert got.dtype == tr[name].dtype, name
        assert np.array_equal(got, tr[name]), first_difference(name, got, tr[name])
    assert res.cycles == cb.cycles, (res.cycles, cb.cycles)
    assert res.busy == cb.busy
    assert res.mxm_mvm_cycles == cb.emitted.mvm
    assert cb.lower_bound <= cb.cycles
    return res, tr, inter


@functools.cache
def _compiled(cfg: str, s: int, d: int, h: int, f: int, causal: bool = True):
    """(block, its compilation for ``cfg`` at the default effort), compiled once per
    process: several tests read the same compilation and none changes it."""
    blk = make_block(0, s, d, h, f, causal=causal)
    return blk, compile_block(blk, cfg)


@pytest.fixture(scope="module", params=list(SHAPES))
def compiled(request):
    return (request.param, *_compiled(*SHAPES[request.param]))


def test_bit_exact_and_cycle_exact(compiled):
    name, blk, cb = compiled
    x_q = blk.quantize_input(blk.example_input())
    _res, _tr, inter = _check(cb, blk, x_q)
    if cb.cfg.name == "small":  # plenty of SRAM: every intermediate stays
        want = {"x8", "q", "k", "v", "exp", "probs", "ctx", "h", "ff1", "gelu", "h_sum", "y",
                "scores_masked" if blk.causal else "scores"}
        assert set(inter) == want
    assert "y" in inter
    # every queue fits the instruction memory, the program binary round-trips
    assert max(cb.words.values()) <= cb.cfg.imem_depth
    assert Program.from_bytes(cb.program.to_bytes(), cb.cfg) == cb.program


def test_other_input_same_program(compiled):
    """The program does not depend on the input: another x_q, same cycles, still exact."""
    _name, blk, cb = compiled
    x_q = blk.quantize_input(blk.example_input(seed=123))
    _check(cb, blk, x_q)


def test_figures(compiled):
    _name, _blk, cb = compiled
    st = cb.stats()
    b = cb.bounds
    assert b.best == max(b.mxm, b.mxm_slots, b.vxm, b.queue, b.path) == st["bounds"]["lower_bound"]
    assert st["ratio"] >= 1.0
    assert 0 < cb.mxm_utilisation <= 1
    assert sum(cb.emitted.mvm.values()) / len(cb.emitted.mvm) <= cb.cycles
    assert st["sram_vectors_peak"] <= st["sram_vectors"]
    sched = cb.schedule()
    assert len(sched) == sum(cb.emitted.issued.values())
    assert all(c1 <= c2 for (c1, *_), (c2, *_) in zip(sched, sched[1:], strict=False))
    js = cb.schedule_json()
    json.dumps(js)
    assert js["instructions"][0]["bundle"]


def test_host_interface(compiled):
    """sram_image + read_output through a plain dict memory (what the testbench does)."""
    _name, blk, cb = compiled
    x_q = blk.quantize_input(blk.example_input())
    img = cb.sram_image(x_q)
    vl = cb.cfg.vector_length
    mems = {s.name for s in cb.cfg.slices_of("MEM")}
    assert set(img) <= mems
    for per in img.values():
        for a, v in per.items():
            assert 0 <= a < cb.cfg.mem_addresses and v.dtype == np.uint8 and v.shape == (vl,)
    # the input appears in the image where input_layout says
    lay = cb.input_layout()
    (i, t), copies = next(iter(cb.inputs.items()))
    assert len(lay[f"{i},{t}"]) == len(copies) == 1
    n = min(vl, blk.d_model - t * vl)
    for locs in copies:  # 4 byte planes, little-endian
        planes = np.stack([img[s][a][:n] for s, a in locs], axis=-1)
        assert np.array_equal(planes.copy().view("<i4")[:, 0], x_q[i, t * vl:t * vl + n])
    # drive a fresh machine only through the host interface, as the RTL testbench will
    m = Machine(cb.cfg)
    for sl, per in img.items():
        for a, v in per.items():
            m.write_mem(sl, a, v)
    m.load_program(Program.from_bytes(cb.program.to_bytes(), cb.cfg))
    assert m.run().cycles == cb.cycles
    y = cb.read_output(lambda sl, a: m.read_mem(sl, a))
    assert np.array_equal(y, blk.forward_int(x_q))
    lay = cb.output_layout()
    assert len(lay) == blk.seq_len * -(-blk.d_model // vl)


def test_medium_target():
    """make sim's second target: CONFIG=medium SEQ=32 DMODEL=64 HEADS=4 DFF=256."""
    blk = make_block(1, 32, 64, 4, 256)
    cb = compile_block(blk, "medium", effort="fast")
    _check(cb, blk, blk.quantize_input(blk.example_input()))


@pytest.mark.parametrize("shape", [
    ("small", 8, 48, 2, 80, True),     # widths not multiples of VL, a head across tiles
    ("small", 16, 64, 1, 64, False),   # one head over two tiles
    ("small", 12, 32, 4, 32, True),    # four heads in one tile
    ("tiny", 8, 16, 2, 16, False),
])
def test_shapes(shape, base_seed):
    cfg, s, d, h, f, causal = shape
    seed = base_seed + 11
    print(f"seed {seed} shape {shape}")
    blk = make_block(seed, s, d, h, f, causal=causal)
    cb = compile_block(blk, cfg, effort="fast")
    _check(cb, blk, blk.quantize_input(blk.example_input()))


def test_random_blocks(base_seed):
    rng = np.random.default_rng(base_seed)
    for _ in range(2):
        seed = int(rng.integers(0, 2**31))
        s = int(rng.integers(1, 33))
        h = int(rng.choice([1, 2, 4]))
        d = h * int(rng.choice([4, 8, 12, 16]))
        f = int(rng.choice([16, 40, 64]))
        causal = bool(rng.integers(0, 2))
        print(f"seed {seed}: small, seq {s}, d_model {d}, heads {h}, d_ff {f}, causal {causal}")
        blk = make_block(seed, s, d, h, f, causal=causal)
        cb = compile_block(blk, "small", effort="fast")
        _check(cb, blk, blk.quantize_input(blk.example_input()))


# ----------------------------------------------------------------------------- errors
def test_too_big_for_sram():
    with pytest.raises(CompileError) as ei:
        compile_block(make_block(0, 16, 128, 2, 512), "tiny")
    msg = str(ei.value)
    assert ei.value.resource == "sram"
    assert "SRAM" in msg and "needs at least" in msg and "has 2048" in msg, msg
    need = int(msg.split("needs at least ")[1].split()[0])
    assert need > 2048


def test_too_big_for_imem():
    cfg = get_config("small").replace(imem_depth=64)
    with pytest.raises(CompileError) as ei:
        compile_block(make_block(0, 16, 32, 2, 64), cfg, effort="fast")
    msg = str(ei.value)
    assert ei.value.resource == "imem"
    assert "instruction memory" in msg and "imem_depth is 64" in msg and "needs" in msg, msg


@pytest.mark.parametrize("bad, pattern", [
    (("tiny", dict(seq=32)), r"seq_len=32 exceeds the vector length 16"),
    (("small", dict(n_heads=3)), r"d_head: d_model=32 is not a multiple of n_heads=3"),
    (("small", dict(d_ff=48)), r"w1: weight shape"),
])
def test_invalid_shapes(bad, pattern):
    cfg, change = bad
    if "seq" in change:
        blk = make_block(0, change["seq"], 32, 2, 64)
    else:
        blk = dataclasses.replace(make_block(0, 16, 32, 2, 64), **change)
    with pytest.raises(CompileError, match=pattern):
        compile_block(blk, cfg)


def test_not_a_block():
    with pytest.raises(TypeError):
        compile_block(object(), "small")


# ----------------------------------------------------------------------------- CLI, plot
def test_cli_and_plot(tmp_path, capsys):
    rc = cli_main(["--config", "tiny", "--seq", "8", "--d-model", "16", "--heads", "2",
                   "--d-ff", "16", "--out", str(tmp_path), "--plot", "--effort", "fast"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "OK: bit-exact" in out and "lower bound" in out and "MXM utilisation" in out
    for f in ("prog.bin", "schedule.json", "layout.json", "schedule.png", "sram_image.npz",
              "expected.npz"):
        assert (tmp_path / f).stat().st_size > 0
    # the files alone drive a fresh machine to the expected output
    cfg = get_config("tiny")
    img = np.load(tmp_path / "sram_image.npz")
    exp = np.load(tmp_path / "expected.npz")
    lay = json.loads((tmp_path / "layout.json").read_text())
    m = Machine(cfg)
    for s in cfg.slices_of("MEM"):
        if f"{s.name}.addr" in img:
            for a, v in zip(img[f"{s.name}.addr"], img[f"{s.name}.data"], strict=True):
                m.write_mem(s.name, int(a), v)
    m.load_program(Program.from_bytes((tmp_path / "prog.bin").read_bytes()))
    m.run()
    y = np.zeros_like(exp["y_q"])
    for key, planes in lay["output_y_q"].items():  # int32: 4 byte planes, little-endian
        i, t = map(int, key.split(","))
        vec = np.stack([m.read_mem(sl, a) for sl, a in planes], axis=-1).copy().view("<i4")
        n = min(16, y.shape[1] - 16 * t)
        y[i, 16 * t:16 * t + n] = vec[:n, 0]
    assert np.array_equal(y, exp["y_q"])
    assert (tmp_path / "schedule.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    prog = Program.from_bytes((tmp_path / "prog.bin").read_bytes())
    assert prog.cfg.name == "tiny"
    js = json.loads((tmp_path / "schedule.json").read_text())
    assert js["stats"]["cycles"] == max(i["cycle"] + i["latency"] for i in js["instructions"]) + 1
    rc = cli_main(["--config", "tiny", "--seq", "32", "--out", str(tmp_path)])
    assert rc == 2 and "seq_len=32" in capsys.readouterr().err


def test_first_difference():
    a = np.zeros((2, 3), np.int8)
    b = a.copy()
    assert first_difference("y", a, b) is None
    b[1, 2] = 5
    assert first_difference("y", a, b) == (
        "y[1, 2]: compiled program 0, golden forward_int 5 (1 of 6 elements differ)")


def _useful_mvms_reference(seq: int, d: int, heads: int, d_ff: int, vl: int) -> int:
    """MVMs the block's own matmuls need on VL x VL weight tiles, counted from the shapes:
    one MVM per input row per non-zero weight tile.  Q, K, V, O, W1, W2 are dense; Q K^T
    is one matmul per head over the feature tiles its lanes span; P V stacks the heads'
    probabilities in one input vector against a block-diagonal V, so only tiles holding
    part of a head's block count."""
    def dense(m, k, n):
        return m * -(-k // vl) * -(-n // vl)

    dh = d // heads
    tiles = {(r // vl, c // vl) for h in range(heads)
             for r in range(h * seq, (h + 1) * seq) for c in range(h * dh, (h + 1) * dh)}
    return (4 * dense(seq, d, d) + dense(seq, d, d_ff) + dense(seq, d_ff, d)
            + sum(seq * len({c // vl for c in range(h * dh, (h + 1) * dh)}) for h in range(heads))
            + seq * len(tiles))


@pytest.mark.parametrize("shape", [("small", 16, 32, 2, 64, True), ("small", 16, 64, 2, 128, False),
                                   ("tiny", 8, 32, 2, 64, True), ("small", 8, 32, 1, 32, False),
                                   ("small", 16, 32, 4, 64, True), ("small", 8, 48, 2, 80, True),
                                   ("small", 12, 32, 4, 32, True)])
def test_useful_and_overhead_mvms(shape):
    """MXM utilisation counts only the block's own matmul products: the useful MVMs are
    what the matmul shapes need, and useful + overhead (by kind) are every MVM the machine
    model executed."""
    cfg, s, d, h, f, causal = shape
    blk = make_block(0, s, d, h, f, causal=causal)
    cb = compile_block(blk, cfg, effort="fast")
    _res, *_ = _check(cb, blk, blk.quantize_input(blk.example_input()))
    executed = sum(_res.mxm_mvm_cycles.values())
    print(shape, cb.useful_mvms, cb.overhead_mvms, executed)
    assert cb.useful_mvms == _useful_mvms_reference(s, d, h, f, cb.cfg.vector_length)
    assert cb.useful_mvms + sum(cb.overhead_mvms.values()) == executed
    assert set(cb.overhead_mvms) <= {"transpose", "re-emit", "row-sum"}
    assert cb.mxm_utilisation == pytest.approx(
        cb.useful_mvms / (cb.cycles * len(cb.cfg.slices_of("MXM"))))
    assert cb.mxm_utilisation < cb.mxm_utilisation_all


def test_every_mxm_gets_work():
    """With two MXMs per hemisphere the block's matrix products spread their output tiles
    over both: every MXM issues MVMs, the result stays bit-exact, the schedule is shorter."""
    blk, one = _compiled("small", 16, 64, 2, 128)
    two = compile_block(blk, get_config("small").replace(name="small-2mxm",
                                                         mxms_per_hemisphere=2))
    assert set(two.emitted.mvm) == {"MXM_W0", "MXM_W1", "MXM_E0", "MXM_E1"}
    assert min(two.emitted.mvm.values()) > 0, two.emitted.mvm
    _check(two, blk, blk.quantize_input(blk.example_input()))
    print(f"cycles: 1 MXM per hemisphere {one.cycles}, 2 per hemisphere {two.cycles}")
    assert two.cycles < 0.9 * one.cycles


def test_vxm_pool_deals_independent_chains_over_the_groups():
    """Chains of dependent register ops go each to the VXM group the rough schedule has
    free soonest: six chains over three groups, two each; every op on its chain's group,
    with its group's registers (dependencies per group); constants made once per group."""
    from compiler.alloc import SINGLES
    from compiler.builder import ProgramBuilder

    cfg = get_config("small:vxm_groups=3")
    pb = ProgramBuilder(cfg)
    made = []

    def consts():
        r = pb.regs.single()
        pb.set_imm(r, 7, "seven")
        made.append(pb.O.vxm_slice)
        return (r,)

    pool = pb.pool(consts)
    where = []
    for i in range(6):
        with pool.chain() as (g, (r7,)):
            r = pb.regs.single()
            pb.vx_bundle(f"chain {i} start", "i32", ("r", r), "PASS", ("r", r7))
            for k in range(4):
                pb.vx_bundle(f"chain {i} op {k}", "i32", ("r", r), "ADD", ("r", r), 1)
            pb.regs.release(r)
            where.append(g)
    pool.release(lambda c: pb.regs.release(*c))
    groups = [s.name for s in cfg.slices_of("VXM")]
    assert sorted(made) == sorted(groups)
    assert sorted(where) == sorted(groups * 2)
    for i, g in enumerate(where):
        ops = [op for b in pb.bundles if b.name.startswith(f"chain {i} ") for op in b.ops]
        assert {op.slice for op in ops} == {g}
    for g in groups:  # every register given back
        with pb.use_vxm(g):
            assert pb.regs.free == set(SINGLES)


def test_a_node_that_keeps_a_vxm_register_is_refused():
    from compiler.builder import ProgramBuilder

    pb = ProgramBuilder(get_config("small:vxm_groups=2"))
    with pytest.raises(AssertionError, match="kept VXM registers"), pb.vxm_group():
        pb.regs.single()


def test_mem_read_write_merges_a_read_and_a_write_per_cycle():
    """With mem_read_write the scheduler gives a MEM slice a READ and a WRITE per cycle and
    the emitter merges them into ``READ ..., w=`` words: the block is still bit-exact,
    its cycles as predicted, and no slower than one MEM instruction per cycle."""
    from arch.isa import decode

    block, one = _compiled("small", 16, 32, 2, 64)
    x = block.quantize_input(block.example_input(0))
    both = compile_block(block, "small:mem_read_write=1")
    y, res, _ = both.run_on_model(x)
    assert (y == block.forward_int(x)).all() and res.cycles == both.cycles
    words = [decode("MEM", w) for s in both.cfg.slices_of("MEM")
             for w in both.program.words(s.name)]
    assert sum(i.mnemonic == "READ" and i.fields["wr"] == 1 for i in words) > 0
    assert both.cycles <= one.cycles


@pytest.mark.parametrize("cfg, shape", [
    ("tiny3", (16, 32, 1, 64)),  # one head: every tile of q, k, v holds one head
    ("small:vxm_groups=2,sxm_transpose_rows=32", (16, 48, 2, 64)),  # tiles of 2 and 1 head
], ids=["tiny3-one-head", "small-mixed-tiles"])
def test_head_masks_skip_tiles_of_one_head(cfg, shape):
    """Per-head outputs by lane masks (VXM groups + transposers) where some weight tile
    holds a single head: that tile's rows are written by its epilogue, no mask (these
    raised KeyError 'mask' in the lowering)."""
    s, d, h, f = shape
    blk = make_block(0, s, d, h, f, causal=True)
    x_q = blk.quantize_input(blk.example_input())
    _check(compile_block(blk, cfg, effort="fast"), blk, x_q)


def test_sxm_transposer_replaces_the_transposing_mvms():
    """With SXM transposers of S rows the block's attention transposes P (and V) by
    TPUT/TGET: no transposing MVM is left (with VXM groups no re-emit either: heads are
    masked; with one group the re-emits stay, see dense.py),
    both SXMs' transposers are used (head groups alternate), the block is still
    bit-exact with its cycles as predicted, and it has fewer MVMs than without them."""
    from arch.isa import decode

    block = make_block(0, 16, 48, 4, 64, causal=True)  # head groups of 3 and 1 at VL 48
    x = block.quantize_input(block.example_input(0))
    base = "tiny3:sxm_transpose_rows=0"  # (tiny3: 2 VXM groups, 32-row transposers)
    tp = compile_block(block, "tiny3")
    y, res, _ = tp.run_on_model(x)
    assert (y == block.forward_int(x)).all() and res.cycles == tp.cycles
    over = tp.overhead_mvms
    assert "transpose" not in over and "re-emit" not in over, over
    for s in tp.cfg.slices_of("SXM"):
        mns = {decode("SXM", w).mnemonic for w in tp.program.words(s.name)}
        assert {"TPUT", "TGET"} <= mns, (s.name, mns)
    no = compile_block(block, base)
    assert no.overhead_mvms.get("transpose", 0) > 0
    assert sum(tp.emitted.mvm_purpose.values()) < sum(no.emitted.mvm_purpose.values())
    print(f"tiny3: {no.cycles} -> {tp.cycles} cycles, overhead MVMs "
          f"{no.overhead_mvms} -> {over}")


def _loads(cb):
    """(load instructions, rows they write) over every MXM, REPEATs expanded."""
    n = rows = 0
    for q in (cb.emitted.queues[s.name] for s in cb.cfg.slices_of("MXM")):
        for _c, ins, _l in q.issued:
            f = ins.fields
            if ins.mnemonic in ("LW", "LWT") or (ins.mnemonic == "MVM" and f["ld"]):
                n += 1
                rows += f["extra"] + 1
    return n, rows


def test_multi_row_weight_loads():
    """With ``mxm_load_rows`` = 4 the compiler loads a weight tile several rows per
    instruction (one READ of each of four MEM slices feeding four streams; two rows where
    four would take every read port of the side the MVMs read their inputs on,
    `ProgramBuilder.load_width`): the same rows are loaded as with one-row loads, in at
    most half the load instructions, the MXM issue bound drops, and the block is still
    bit-exact with its cycles as predicted and no slower."""
    block, one = _compiled("small", 16, 64, 2, 128)
    x = block.quantize_input(block.example_input(0))
    four = compile_block(block, "small:mxm_load_rows=4")
    _check(four, block, x)
    n1, rows1 = _loads(one)
    n4, rows4 = _loads(four)
    print(f"small -> mxm_load_rows=4: {one.cycles} -> {four.cycles} cycles, loads {n1} -> "
          f"{n4} for {rows1} / {rows4} rows, MXM issue bound {one.bounds.mxm_slots} -> "
          f"{four.bounds.mxm_slots}")
    assert rows4 == rows1 and n1 == rows1
    assert n4 <= rows4 // 2, (n4, rows4)
    assert four.bounds.mxm_slots < one.bounds.mxm_slots
    assert four.cycles <= one.cycles


def test_load_chunks_follow_the_hardware_rule():
    """`ProgramBuilder.load_chunks` cuts weight rows into loads the ISA accepts: runs of
    consecutive rows, in one aligned group of mxm_load_rows, each row from another MEM
    slice of one hemisphere."""
    from compiler.builder import ProgramBuilder

    pb = ProgramBuilder(get_config("small:mxm_load_rows=4"))
    w0, w1, w2, e0 = "MEM_W0", "MEM_W1", "MEM_W2", "MEM_E0"
    rows = [(0, (w0, 5)), (1, (w1, 5)), (2, (w2, 5)),  # one load of three
            (3, (w2, 6)),                               # the slice of row 2: a new load
            (4, (w0, 7)),                               # the next group: a new load
            (5, (w1, 7)), (6, (e0, 7)),                 # other hemisphere: a new load
            (8, (w0, 2)), (9, (w1, 2)),                 # a gap: a new load
            (10, (w2, 3)), (11, (e0, 9))]
    got = [[r for r, _ in c] for c in pb.load_chunks(rows)]
    assert got == [[0, 1, 2], [3], [4, 5], [6], [8, 9, 10], [11]], got
    assert [[r for r, _ in c] for c in ProgramBuilder(get_config("small")).load_chunks(
        rows)] == [[r] for r, _ in rows]


def test_load_width_leaves_a_read_port_for_the_inputs():
    """`ProgramBuilder.load_width`: a K-row load reads K MEM slices in one cycle.  When
    that is every slice of a side the MVMs read all their inputs on, the loads take
    the widest divisor of K that leaves a port, if those loads still fit under the
    install's MVMs; else (inputs on the other side or on both, too few MVMs, K = 1, more
    slices than K) the full K."""
    from compiler.builder import ProgramBuilder

    pb = ProgramBuilder(get_config("medium:mxm_load_rows=4"))  # 4 MEM slices per side
    rows = [(r, (f"MEM_W{r % 4}", r // 4)) for r in range(64)]
    assert pb.load_width(rows, (32, {"W"})) == 2  # 32 two-row loads under 32 MVMs
    assert pb.load_width(rows, (32, {"E"})) == 4  # inputs on the other side
    assert pb.load_width(rows, (32, {"W", "E"})) == 4  # half of them on each side
    assert pb.load_width(rows, (31, {"W"})) == 4  # 32 loads do not fit under 31 MVMs
    assert pb.load_width(rows, (64, {"W"})) == 2
    assert pb.load_width(rows, None) == 4
    assert pb.load_width(rows[:8], (4, {"W"})) == 2
    assert ProgramBuilder(get_config("medium:mxm_load_rows=2")).load_width(
        rows, (32, {"W"})) == 2  # two of four ports: one left
    assert ProgramBuilder(get_config("medium")).load_width(rows, (32, {"W"})) == 1
    # and the chunks follow the narrower width: 2-row loads aligned in the 4-row groups
    got = [[r for r, _ in c] for c in pb.load_chunks(rows[:8], 2)]
    assert got == [[0, 1], [2, 3], [4, 5], [6, 7]], got


def test_register_triples_rotate():
    """`Regs.triple` hands out the least recently freed triple, so that a product's next
    output tile loads its constants into other registers than the tile before (no
    write-after-read wait on that tile's last use); singles likewise."""
    from compiler.alloc import TRIPLES, Regs

    r = Regs()
    a = r.triple()
    r.release_triple(a)
    b = r.triple()
    assert b != a
    r.release_triple(b)
    seen = [a, b]
    for _ in range(len(TRIPLES) - 2):
        t = r.triple()
        seen.append(t)
        r.release_triple(t)
    assert sorted(seen) == sorted(TRIPLES)  # every triple once before any comes back
    assert r.triple() == a
    held = [r.triple() for _ in range(len(TRIPLES) - 1)]
    with pytest.raises(CompileError, match="out of VXM register triples"):
        r.triple()
    assert len(set(held)) == len(held)


def test_sram_keeps_a_tensor_out_of_avoided_banks():
    """`Sram.tensor(..., avoid_banks=)`: the tensor goes to another bank of the slice where
    that bank has room (also dealt with ``spread``, and for the space at a bank's top that
    program-written tensors take), and falls back to the avoided bank rather than fail."""
    from compiler.alloc import Sram

    cfg = get_config("medium")
    mem, d = Sram(cfg), cfg.mem_depth
    s = mem.side["W"][0]
    for bank in (0, 1):
        a = mem.tensor(f"a{bank}", range(8), 1, slices=[s])
        (base,) = [b for _s, b, _n in a.ranges]
        other = 1 - base // d
        b = mem.tensor(f"b{bank}", range(8), 1, slices=[s],
                       avoid_banks=mem.banks_of(a))
        assert all(addr // d == other for (_s, addr), in b.locs.values()), (base, b.locs)
    t = mem.tensor("t", range(8), 1, "E", spread=True)
    u = mem.tensor("u", range(8), 1, "E", spread=True, avoid_banks=mem.banks_of(t))
    for sl, banks in mem.banks_of(u).items():
        assert not banks & mem.banks_of(t).get(sl, set()), (sl, banks)
    # the other bank full: the avoided one is used (no error, no address past the SRAM)
    full = Sram(cfg)
    full.tensor("fill", range(d), 1, slices=[s], const=True)
    x = full.tensor("x", range(4), 1, slices=[s])
    y = full.tensor("y", range(4), 1, slices=[s], avoid_banks=full.banks_of(x))
    assert full.banks_of(x) == full.banks_of(y) and not full.failed


@pytest.mark.parametrize("cfg, shape, off_table", [
    ("medium:vxm_groups=4,mem_read_write=1,sxm_transpose_rows=32,mxm_load_rows=4",
     (32, 128, 4, 512), True),  # 32 Gathers per tile >= 64 / 4 loads
    ("small", (16, 64, 4, 128), False)])  # 16 Gathers < 64 one-row loads
# (tiny3's first banks are full: no choice there)
def test_graph_outputs_avoid_their_inputs_banks_and_weights_their_table(cfg, shape,
                                                                        off_table):
    """`lower_graph` keeps each node's output out of the banks its inputs occupy on the same
    slice (a residual's chain reads one row's sum while it writes another's: a READ and a
    WRITE of one bank cannot share a cycle), out of the residual's where the inputs hold
    both banks, and a product's weights off the slice of its own table where its Gathers
    (one per row and output tile) are at least as many as a tile's loads; a decode step's
    one row leaves the weights their slices (its loads keep their width)."""
    from compiler.block import block_graph, decode_graph
    from compiler.graph import lower_graph

    cfg = get_config(cfg)
    pb, tensors = lower_graph(block_graph(make_block(0, *shape), spread_mlp=True), cfg)
    mem = pb.mem
    checked = 0
    for out, ins in (("y", ("gelu", "h_sum")), ("h_sum", ("ctx", "x")), ("h", ("h_sum",)),
                     ("gelu", ("h",))):
        have = mem.banks_of(*(tensors[i] for i in ins))
        res = mem.banks_of(tensors[ins[-1]])
        for sl, banks in mem.banks_of(tensors[out]).items():
            avoid = have.get(sl, set()) if len(have.get(sl, ())) < 2 else res.get(sl, set())
            assert not banks & avoid, (out, sl, banks, have.get(sl), res.get(sl))
            checked += bool(avoid)
    assert checked >= 4, checked
    (table,) = pb.state["gelu"]["exclude"]
    w1 = {s for s, _a, _n in pb.state["gelu"]["weights"].ranges}
    assert len(w1) >= 2 and (table not in w1 if off_table else
                             pb.state["gelu"]["weights_exclude"] == []), (table, w1)
    pb, _ = lower_graph(decode_graph(make_block(0, *shape), 32), cfg)
    assert pb.state["gelu"]["weights_exclude"] == []


def test_dealt_results_rotate_rows_and_tiles_and_span_both_sides_when_spread():
    """`Sram.tensor(spread=True)` deals vector ``(row, tile)`` to slice ``(row + tile) % n``:
    one lane tile's rows (what a K pass streams) use every slice the tensor has, as do one
    row's tiles.  With the MLP spread over both MXMs, its inputs ``h`` and ``gelu`` span both
    sides' slices (each side's ports carry half); without the spread, one side's."""
    from compiler.block import block_graph
    from compiler.graph import lower_graph

    cfg = get_config("medium:vxm_groups=4,mem_read_write=1,sxm_transpose_rows=32,"
                     "mxm_load_rows=4")
    for spread in (True, False):
        pb, tensors = lower_graph(block_graph(make_block(0, 32, 128, 4, 512),
                                              spread_mlp=spread), cfg)
        for name in ("h", "gelu"):
            t = tensors[name]
            slices = {s for s, _a, _n in t.ranges}
            rows = sorted({k[0] for k in t.locs})
            tiles = sorted({k[1] for k in t.locs})
            assert len(slices) >= 3, (name, slices)
            for tile in tiles:  # a K pass reads every slice in turn
                assert {t[(i, tile)][0][0] for i in rows} == slices, (name, tile)
            # and a row's tiles are on as many slices as it has tiles (up to all)
            assert len({t[(0, tile)][0][0] for tile in tiles}) == min(
                len(tiles), len(slices)), name
            sides = {pb.mem.side_of(s) for s in slices}
            assert len(sides) == (2 if spread else 1), (name, spread, slices)


@pytest.mark.parametrize("cfg, shape, res_groups, mask_groups", [
    ("medium:vxm_groups=4,sxm_transpose_rows=32", (16, 64, 4, 128), {"h_sum": 3, "y": 2}, 3),
    ("tiny3", (16, 32, 2, 64), {"h_sum": 2, "y": 2}, 1),
    ("small", (16, 64, 4, 128), {"h_sum": 1, "y": 1}, None)])
def test_dense_rows_deal_their_vxm_words_over_groups(cfg, shape, res_groups, mask_groups):
    """`dense_rows` deals a row's VXM words over as many VXM groups as the row has words,
    one group left to the rest: the output projection's residual rows (4 words with the
    narrow) over 3 of 4 groups, W2's (2 words) over 2; the per-head masks (1 + 2 heads per
    tile) over 3; with 2 groups a residual keeps both, the masks one; with one group,
    one.  W1's kept pre-activation is dealt over the table side's slices, never the
    table's."""
    from compiler.block import block_graph
    from compiler.graph import lower_graph

    cfg = get_config(cfg)
    pb, _tensors = lower_graph(block_graph(make_block(0, *shape)), cfg)

    def groups(kind):
        return {op.slice for b in pb.bundles if b.kind == kind for op in b.ops
                if op.slice.startswith("VXM")}

    for name, n in res_groups.items():
        assert len(groups(f"{name}.res")) == n, (name, groups(f"{name}.res"))
    if mask_groups is not None:
        assert len(groups("q.mask")) == mask_groups, groups("q.mask")
    (table,) = pb.state["gelu"]["exclude"]
    ff1 = {s for s, _a, _n in pb.kept["ff1"][1].ranges}
    others = set(pb.mem.side[pb.mem.side_of(table)]) - {table}
    # every other slice of the table's side (tiny3 has two a side: the one other)
    assert ff1 == others, (ff1, table)


@pytest.mark.parametrize("cfg, distinct", [("medium:vxm_groups=4,sxm_transpose_rows=32", 2),
                                            ("medium", 1)])
def test_attention_head_groups_softmax_on_their_own_vxm_groups(cfg, distinct):
    """The prefill attention's head groups (here 2: 32 queries, VL 64) are independent
    chains: each group's score requantisation, row max, exponentials, reciprocal and
    probabilities run on one VXM group, and with several VXM groups on different ones
    (with one group, on it).  The row max and the reciprocal share the exponentials'
    registers, so they are on that group too."""
    from compiler.block import block_graph
    from compiler.graph import lower_graph

    pb, _tensors = lower_graph(block_graph(make_block(0, 32, 64, 4, 128)), get_config(cfg))

    def vxm_of(prefix):
        return {op.slice for b in pb.bundles if b.name.startswith(prefix) for op in b.ops
                if op.slice.startswith("VXM")}

    per_group = []
    for gi in (0, 1):
        used = set()
        for stage in ("scores", "exp", "rowsum", "probs"):
            used |= vxm_of(f"{stage} group {gi}")
        assert len(used) == 1, (gi, used)
        per_group.append(used.pop())
    assert len(set(per_group)) == distinct, per_group


@pytest.mark.parametrize("cfg, distinct", [("medium:vxm_groups=4", 4), ("medium", 1)])
def test_decode_attention_heads_on_their_own_vxm_groups(cfg, distinct):
    """A decode step's heads are independent chains too (RMAX, exp, RSUM, reciprocal,
    probabilities and context): with four VXM groups its four heads run on four of them,
    each head's ops on one; with one group, on it."""
    from compiler.block import decode_graph
    from compiler.graph import lower_graph

    pb, _tensors = lower_graph(decode_graph(make_block(0, 32, 128, 4, 512), 32),
                               get_config(cfg))

    def vxm_of(prefix):
        return {op.slice for b in pb.bundles if b.name.startswith(prefix) for op in b.ops
                if op.slice.startswith("VXM")}

    per_head = []
    for h in range(4):
        used = vxm_of(f"max + exp head {h}") | vxm_of(f"row sum head {h}") | vxm_of(
            f"probs + ctx head {h} ")
        assert len(used) == 1, (h, used)
        per_head.append(used.pop())
    assert len(set(per_head)) == distinct, per_head


def test_forward_backward_passes_shorten_the_schedule():
    """The list schedule of the chosen variant, scheduled backward from its end and then
    forward again in that order (`schedule.justify`), is shorter on the tiny block (763
    cycles as listed when this was written), and still bit-exact with every intermediate
    on the machine model, predicted cycles == model cycles; every dependency edge holds."""
    blk, comp = _compiled("tiny", 8, 32, 2, 64)
    v = comp.variant
    print(f"listed {v['listed_cycles']} cycles, after {v['justified']} round(s) {comp.cycles}")
    assert v["justified"] >= 1 and comp.cycles < v["listed_cycles"]
    for b in comp.bundles:
        for p, poff, off, d in b.preds:
            assert b.t0 + off >= p.t0 + poff + d, (p.name, b.name)
    _check(comp, blk, blk.quantize_input(blk.example_input()))
    fast = compile_block(blk, "tiny", effort="fast")  # (the fast search does not justify)
    assert fast.variant["justified"] == 0 and fast.cycles == fast.variant["listed_cycles"]
