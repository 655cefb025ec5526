"""Decode steps of the block on the machine model (`compiler.decode`): one program run
once per token with the KV cache in SRAM.  The reference is the golden *prefill* of the
whole sequence (`QuantBlock.forward_int`, row p for step p), computed without the decode
program; every step's cycles must equal the prediction."""

import numpy as np
import pytest

from compiler import CompileError
from compiler.decode import compile_decode
from golden.block import make_block
from sim.decode import golden_cache, read_caches

CASES = [
    # (config, context, d_model, heads, d_ff)
    ("tiny", 8, 32, 2, 64),  # d_model, d_ff > VL = 16: two lane tiles, heads in one each
    ("tiny", 16, 16, 1, 32),  # one head over the whole tile, context = VL
    ("tiny", 8, 32, 1, 32),  # one head spanning two tiles (scores accumulate)
    ("tiny", 12, 24, 3, 40),  # partial tiles, heads of 8 lanes, context not a power of 2
    ("small", 32, 64, 4, 128),  # four heads, two tiles, full context of VL = 32
]


def _block(seed, ctx, d, h, f):
    blk = make_block(seed, ctx, d, h, f, causal=True)
    return blk, blk.quantize_input(blk.example_input(seed))


@pytest.mark.parametrize(("config", "ctx", "d", "h", "f"), CASES,
                         ids=[f"{c}-c{x}-d{d}-h{h}-f{f}" for c, x, d, h, f in CASES])
def test_decode_steps_equal_prefill_rows(config, ctx, d, h, f, base_seed):
    print(f"seed {base_seed}")
    blk, x = _block(base_seed, ctx, d, h, f)
    comp = compile_decode(blk, config, effort="fast")
    y, runs, m = comp.run_on_model(x)
    gold = blk.forward_int(x)
    assert np.array_equal(y, gold), np.argwhere(y != gold)[:5]
    assert [r.cycles for r in runs] == [comp.cycles] * ctx
    kv = read_caches(comp, m.read_mem, ctx)
    ref = golden_cache(blk, x, ctx)
    assert np.array_equal(kv["k"], ref["k"]) and np.array_equal(kv["v"], ref["v"])


def test_new_sequence_over_a_stale_cache(base_seed):
    """A second sequence from position 0 on the same machine: the first sequence's
    positions beyond the current one stay in the cache and must be masked."""
    print(f"seed {base_seed}")
    blk, x = _block(base_seed, 8, 32, 2, 64)
    comp = compile_decode(blk, "tiny", effort="fast")
    _, _, m = comp.run_on_model(x)  # fills all 8 positions
    x2 = blk.quantize_input(np.random.default_rng([base_seed, 9]).standard_normal(
        (8, 32)))
    y2, runs, _ = comp.run_on_model(x2[:5], machine=m)
    assert np.array_equal(y2, blk.forward_int(x2)[:5])
    assert {r.cycles for r in runs} == {comp.cycles}


def test_mask_is_what_hides_the_future(base_seed, monkeypatch):
    """Mutant: the position mask replaced by 'every key visible'.  On a fresh cache the
    unwritten positions hold zeros, on a stale one the old sequence: both must show."""
    print(f"seed {base_seed}")
    from compiler.lowerings.block_attention import CachedAttention

    def all_visible(self):
        pb = self.pb
        self.rmask, self.rdm = pb.regs.single(), pb.regs.single()
        pb.reg_const(self.rmask, np.full(pb.vl, 32767), "no score mask")
        pb.set_imm(self.rdm, 0, "no exp mask")

    blk, x = _block(base_seed, 8, 32, 2, 64)
    monkeypatch.setattr(CachedAttention, "position_masks", all_visible)
    comp = compile_decode(blk, "tiny", effort="fast")
    y, _, m = comp.run_on_model(x[:4])
    assert not np.array_equal(y, blk.forward_int(x)[:4])


def test_decode_refusals():
    blk = make_block(0, 8, 32, 2, 64, causal=False)
    with pytest.raises(CompileError, match="causal"):
        compile_decode(blk, "tiny")
    blk = make_block(0, 32, 32, 2, 64, causal=True)
    with pytest.raises(CompileError, match=r"max_context=32 .* VL = 16.*superlanes"):
        compile_decode(blk, "tiny")
    with pytest.raises(CompileError, match="exceeds the block's calibrated seq_len"):
        compile_decode(make_block(0, 8, 32, 2, 64), "small", max_context=16)
    comp = compile_decode(make_block(0, 8, 32, 2, 64), "tiny", effort="fast")
    with pytest.raises(ValueError, match=r"pos=8: .* 0\.\.7"):
        comp.step_writes(np.zeros(32, np.int32), 8)
    with pytest.raises(ValueError, match=r"x_row: expected an int32 array of shape \(32,\)"):
        comp.step_writes(np.zeros(31, np.int32), 0)


def test_decode_bounds_name_the_weight_stream():
    comp = compile_decode(make_block(0, 32, 64, 4, 128), "small", effort="fast")
    d = comp.decode_bounds()
    # 4 * 64*64 + 2 * 64*128 weight bytes and 2 * 32 * 64 cache bytes, 32-byte rows,
    # 2 MXMs
    assert d["weight_bytes"] == 32768 and d["kv_bytes"] == 4096
    assert d["bounds"]["weight_stream"] == (32768 + 4096) // 32 // 2
    assert d["binding"] == "weight_stream"
    assert d["ratio"] == round(comp.cycles / d["bounds"]["weight_stream"], 3) > 1


def test_write_gives_a_step_program_its_own_files(tmp_path):
    """`CompiledDecode.write` (inherited from the block's, which fed it the whole sequence
    and failed): the image holds step 0's row, expected.npz the steps' rows and outputs,
    layout.json where the position goes; a wrong x_q is refused by shape."""
    blk = make_block(0, 8, 32, 2, 64)
    c = compile_decode(blk, "tiny", effort="fast")
    x = blk.quantize_input(blk.example_input(1))[:5]
    files = c.write(tmp_path, x_q=x)
    e = np.load(files["expected.npz"])
    y, _runs, _m = c.run_on_model(x)
    assert np.array_equal(e["x_q"], x) and np.array_equal(e["y_q"], y)
    img = np.load(files["sram_image.npz"])
    step0 = dict(c.step_writes(x[0].astype(np.int32), 0))
    for (s, a), v in step0.items():
        row = int(np.flatnonzero(img[f"{s}.addr"] == a)[0])
        assert np.array_equal(img[f"{s}.data"][row], v)
    import json
    lay = json.loads(files["layout.json"].read_text())
    assert [tuple(p) for p in lay["position_p"]] == [tuple(p) for p in c.pos_locs]
    with pytest.raises(ValueError, match=r"x_q: expected the steps' rows, shape \(T, 32\)"):
        c.write(tmp_path / "bad", x_q=x[0])
