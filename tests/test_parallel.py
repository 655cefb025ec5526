"""Tensor parallelism: the allreduce op kind, SPMD programs, the split MLP on a system.

The reference for every output is the unsplit MLP in numpy (`compiler.parallel.golden_mlp`,
written from the MLP's definition, not from the graph or the compiler)."""

from __future__ import annotations

import numpy as np
import pytest

from arch.config import get_config
from compiler.errors import CompileError
from compiler.graph import Graph, Node, compile_graph, evaluate
from compiler.parallel import (
    compile_parallel,
    golden_mlp,
    mlp_graph,
    random_mlp,
    run_parallel,
)

TINY = get_config("tiny").with_links()


@pytest.mark.parametrize("chips", [2, 3, 4])
def test_allreduce_on_one_chip_is_a_loopback(chips, base_seed):
    """A chip alone: its links loop back, every hop brings its own vector: chips x."""
    seed = base_seed * 10 + chips
    print("seed", seed)
    rng = np.random.default_rng(seed)
    w = rng.integers(-128, 128, (32, 32)).astype(np.int8)
    g = Graph({"x": (4, 32, 1)}, (Node("p", "matmul", ("x",), {"weight": w}),
                                 Node("y", "allreduce", ("p",), {"chips": chips})), ("y",))
    x = rng.integers(-128, 128, (4, 32))
    got, cycles = compile_graph(g, TINY).run_on_model({"x": x})
    assert np.array_equal(got["y"], chips * (x @ w.astype(np.int64).T))
    assert np.array_equal(evaluate(g, {"x": x})["y"], got["y"])


@pytest.mark.parametrize(("config", "chips"), [("tiny", 2), ("tiny", 4), ("medium", 2),
                                               ("medium", 4)])
def test_split_mlp_on_a_system_equals_the_mlp(config, chips, base_seed):
    cfg = get_config(config).with_links()
    seed = base_seed * 10 + chips
    print("seed", seed)
    d, f, rows = (32, 64, 8) if config == "tiny" else (128, 256, 16)
    mlp = random_mlp(d, f, seed)
    x = np.random.default_rng(seed + 1).integers(-128, 128, (rows, d))
    comp = compile_parallel([mlp_graph(mlp, rows, chips, i) for i in range(chips)], cfg)
    outs, cycles = run_parallel(comp, {"x": x})
    want = golden_mlp(mlp, x)
    assert all(np.array_equal(o["y"], want) for o in outs)
    assert cycles == [c.cycles for c in comp]  # the prediction, on every chip
    if config == "medium" and chips == 4:  # the ring (reduce-scatter + all-gather)
        from compiler.graph import lower_graph
        pb, _ = lower_graph(mlp_graph(mlp, rows, chips, 1), cfg)
        assert sum("slot" in b.name for b in pb.bundles) == rows * 2 // chips


def test_shards_that_are_not_one_schedule_are_refused():
    mlp = random_mlp(32, 64, 0)
    graphs = [mlp_graph(mlp, 8, 2, 0), mlp_graph(mlp, 4, 2, 1)]  # different rows
    with pytest.raises(CompileError,
                       match="chip 1.s program: .* bundles, the reference schedule has"):
        compile_parallel(graphs, TINY)


def test_split_must_divide_the_hidden_width():
    with pytest.raises(CompileError, match="hidden width 64 does not split over 3 chips"):
        mlp_graph(random_mlp(32, 64, 0), 8, 3, 0)


@pytest.mark.rtl
@pytest.mark.parametrize("config", ["tiny"])
def test_split_mlp_on_the_verilated_system(config):
    """`make sim CHIPS=2`'s path: bit-exact on every chip, predicted == model == CYCLES ==
    the testbench's clock."""
    from sim.parallel import run_parallel_mlp

    rep = run_parallel_mlp(get_config(config), 2, 8, 32, 64, seed=3, log=lambda *a: None)
    assert rep["problems"] == []
    assert (rep["predicted_cycles"] == rep["model_cycles"] == rep["rtl"]["cycles_chip"]
            == rep["rtl"]["cycles_clock"])


@pytest.mark.parametrize(("chips", "shape"), [(2, (16, 32, 2, 64)), (4, (16, 64, 4, 128))])
def test_split_block_on_a_system_equals_the_block(chips, shape, base_seed):
    """The quantised attention + MLP block, heads and hidden features split over the
    chips (`tp_block_graph`): every chip's output equals the unsplit block's `forward_int`
    (golden/block.py), every chip's cycles the prediction."""
    from compiler.parallel import tp_block_graph
    from golden.block import make_block
    seq, d, h, f = shape
    print("seed", base_seed)
    block = make_block(base_seed, seq, d, h, f)
    x = block.quantize_input(block.example_input(base_seed))
    parts = [tp_block_graph(block, chips, i) for i in range(chips)]
    comp = compile_parallel([g for g, _ in parts], get_config("small").with_links())
    outs, cycles = run_parallel(comp, [{"x": x, **b} for _, b in parts])
    want = block.forward_int(x)
    assert all(np.array_equal(o["y"], want) for o in outs)
    assert cycles == [c.cycles for c in comp]


def test_block_heads_must_split():
    from compiler.parallel import tp_block_graph
    from golden.block import make_block

    with pytest.raises(CompileError, match="2 heads and d_ff 64 must split over 4 chips"):
        tp_block_graph(make_block(0, 8, 32, 2, 64), 4, 0)


def test_chip_counts_and_shards_are_checked():
    from arch.config import get_config
    from compiler import CompileError
    from compiler.parallel import compile_parallel, mlp_graph, random_mlp

    mlp = random_mlp(32, 64, 0)
    for chips, shard in ((0, 0), (2, 5), (2, -1)):
        with pytest.raises(CompileError, match=rf"chips={chips} must be an int >= 1 and "
                                               rf"shard={shard} one of 0..chips-1"):
            mlp_graph(mlp, 4, chips, shard)
    with pytest.raises(CompileError, match=r"compile_parallel: no graphs"):
        compile_parallel([], "tiny")
    # the name TspConfig.with_links gives is a config name too
    assert get_config("tiny+c2c") == get_config("tiny").with_links()
    assert get_config("tiny:vxm_groups=2+c2c").vxm_groups == 2


def test_tp_chip_count_is_checked_first():
    from compiler import CompileError
    from compiler.tp_layer import compile_tp_layer, compile_tp_model

    for chips in (0, -1, 17):
        with pytest.raises(CompileError, match=rf"chips={chips} must be an int in 1..16"):
            compile_tp_layer(None, None, "medium+c2c", 16, chips)
    with pytest.raises(CompileError, match=r"chips=2.5 must be an int"):
        compile_tp_model(None, "medium+c2c", 16, 2.5)
