"""A llama layer's decode step tensor-parallel over linked chips (`compiler/tp_layer.py`) on
the system model: every chip's next residual row at every step equal, bit for bit, to
`golden.llm.layer_int` of the *whole* layer (with a golden KV cache), every chip's cycles
== the prediction; and the weight shards it rests on (`RowWeight.shard`).  The weights
are tiny random llamas written as GGUF files (Q4_1 blocks with offsets), one of them
shaped like SmolLM2 (3 KV heads over 3 chips)."""

import numpy as np
import pytest
from llm_fixture import write_tiny_gguf

from arch.config import get_config
from compiler.errors import CompileError
from compiler.tp_layer import compile_tp_layer, run_tp_layer, split_layer
from golden.llm import LlamaModel, layer_steps_int
from golden.planes import RowWeight, linear_int

CFG = get_config("medium").with_links()


def _layer(tmp_path_factory, name, **shape):
    path = tmp_path_factory.mktemp("gguf") / f"{name}.gguf"
    write_tiny_gguf(path, **shape)
    m = LlamaModel(path)
    return m.config, m.int_weights()["layers"][0]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):  # 4 query heads over 2 KV heads of 16, d_ff 128
    return _layer(tmp_path_factory, "tiny")


@pytest.fixture(scope="module")
def tiny3(tmp_path_factory):  # SmolLM2's GQA shape: 3 KV heads, 2 query heads each
    return _layer(tmp_path_factory, "tiny3", d_model=96, n_heads=6, n_kv_heads=3, d_ff=192)


def test_row_weight_shards_add_up_exactly(base_seed):
    """Column shards' int32 sums add up to the whole product's and row shards are its
    rows, with the whole tensor's exponent (the shift is the whole tensor's, not the
    shard's own: a shard alone would pick a smaller one)."""
    print(f"seed={base_seed}")
    rng = np.random.default_rng([base_seed, 70])
    q = rng.integers(-8, 8, (96, 128))
    d = rng.random((96, 4)) * 0.01
    d[5, 0] = 0.5  # one large block scale: the shift of the whole tensor is set by row 5
    w = RowWeight.from_blocks(q, d, -8 * d + rng.random((96, 4)) * 0.01)
    x = rng.integers(-(2**15), 2**15, (3, 128))
    ex = np.zeros((3, 1), np.int64)
    acc, e = linear_int(x, ex, w)
    parts = [linear_int(x[:, c:c + 32], ex, w.shard(cols=slice(c, c + 32)))
             for c in range(0, 128, 32)]
    assert np.array_equal(sum(p for p, _ in parts), acc)
    assert all(np.array_equal(pe, e) for _, pe in parts)
    low = w.shard(rows=slice(32, 96))
    got, ge = linear_int(x, ex, low)
    assert np.array_equal(got, acc[:, 32:96]) and np.array_equal(ge, e)
    own = RowWeight.from_blocks(q[32:96], d[32:96], w.o[32:96] * 0.0)
    assert own.shift(16) < w.shift(16) == low.shift(16)
    with pytest.raises(ValueError, match="blocks of 32"):
        w.shard(cols=slice(0, 48))
    with pytest.raises(ValueError, match="non-empty"):
        w.shard(rows=slice(10, 10))


def _assert_tp_steps(lc, L, chips, seed, n_steps=4):
    steps = compile_tp_layer(lc, L, CFG, 16, chips)
    predicted = [s.cycles for s in steps]
    assert len(set(predicted)) == 1
    rng = np.random.default_rng(seed)
    rows = rng.integers(-(2**27), 2**27, (n_steps, lc.d_model))
    rows[0, 3] = 2**30 - 9  # a massive activation
    es = rng.integers(-30, -18, n_steps)
    outs, cycles = run_tp_layer(steps, rows, es)
    for p, (per_chip, (gy, ge)) in enumerate(zip(outs, layer_steps_int(lc, L, rows, es),
                                                 strict=True)):
        for i, (y, e) in enumerate(per_chip):
            assert np.array_equal(y, gy) and e == ge, (p, i, np.argwhere(y != gy)[:4], e, ge)
    assert cycles == [predicted] * n_steps
    # the work is split: every chip streams 1/chips of the layer's weights
    whole = sum(int(L[k].q.size) for k in ("wq", "wk", "wv", "wo", "w_gate", "w_up",
                                           "w_down"))
    assert [s.low.weight_bytes() for s in steps] == [whole // chips] * chips
    return steps


def test_tp_layer_two_chips_bit_exact(tiny, base_seed):
    print(f"seed={base_seed}")
    lc, L = tiny
    _assert_tp_steps(lc, L, 2, [base_seed, 71])


def test_tp_layer_three_chips_by_kv_head_bit_exact(tiny3, base_seed):
    """3 chips (a ring: both directions of every link), one KV head and its two query
    heads each, as SmolLM2 splits."""
    print(f"seed={base_seed}")
    lc, L = tiny3
    steps = _assert_tp_steps(lc, L, 3, [base_seed, 72], n_steps=3)
    sends = [op for b in steps[0].bundles for op in b.ops if op.mn == "SEND"]
    assert {op.slice for op in sends} == {"C2C_E", "C2C_W"}


def test_tp_layer_refuses_a_split_that_does_not_divide(tiny, tiny3):
    lc, L = tiny
    with pytest.raises(CompileError, match="must divide the 2 KV heads"):
        split_layer(lc, L, 3, 0)
    lc3, L3 = tiny3
    with pytest.raises(CompileError, match="no C2C links"):
        compile_tp_layer(lc3, L3, "medium", 16, 3)


def test_padded_shard_and_split_argmax(base_seed):
    """A vocabulary that does not split evenly: the last chip's part padded with zero rows
    after its own; the argmax split over 2 chips (this chip's entries from ``offset``, the
    padding masked even where it holds the largest value) agrees on the lowest index of
    the largest value, also when the tie spans the two chips."""
    from compiler.graph import Graph, Node
    from compiler.parallel import compile_parallel, run_parallel

    print(f"seed={base_seed}")
    rng = np.random.default_rng([base_seed, 73])
    w = RowWeight.from_blocks(rng.integers(-8, 8, (5, 32)), rng.random((5, 1)) + 0.1)
    s = w.shard(rows=slice(3, 5), pad_rows=3)
    assert np.array_equal(s.q[:2], w.q[3:5]) and not s.q[2].any() and s.shift(16) == w.shift(16)
    V, P = 269, 135
    cfg = get_config("layer").with_links()
    for trial in range(4):
        full = rng.integers(-(2**20), 2**20, V)
        if trial == 1:
            full[200] = 2**25  # on chip 1
        if trial == 2:
            full[134] = full[135] = 2**25  # a tie across the two chips: the lower index
        graphs, inputs = [], []
        for r in range(2):
            a, b = r * P, min((r + 1) * P, V)
            x = np.full((1, P), 2**30, np.int64)  # the padding: larger than any entry
            x[0, :b - a] = full[a:b]
            graphs.append(Graph({"x": (1, P, 4)}, (Node("t", "argmax", ("x",), {
                "chips": 2, "rank": r, "offset": a, "valid": b - a, "valid_min": V - P}),),
                ("t",)))
            inputs.append({"x": x})
        outs, _ = run_parallel(compile_parallel(graphs, cfg), inputs)
        assert [int(o["t"].ravel()[0]) for o in outs] == [int(np.argmax(full))] * 2, trial


def test_tp_model_generates_the_golden_tokens(tmp_path, base_seed):
    """A whole (tiny, 2-layer, untied) llama decoding on 2 linked chips: every layer split,
    the LM head split by vocabulary rows (269 = 135 + 134 + a padding row), the argmax
    agreed over the ring; every token equals golden.llm's generate, every chip's cycles
    the prediction in every step."""
    from compiler.tp_layer import compile_tp_model, generate_tp

    print(f"seed={base_seed}")
    path = tmp_path / "tiny.gguf"
    write_tiny_gguf(path, seed=base_seed, untied=True)
    m = LlamaModel(path)
    ids = [5, 40, 77]
    steps = compile_tp_model(m, get_config("layer").with_links(), 16, 2)
    out, cycles = generate_tp(steps, ids, 5)
    assert out == m.generate_ids(ids, 5)
    assert cycles == [[steps[0].cycles] * 2] * len(cycles)
