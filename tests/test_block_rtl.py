"""The compiled transformer block on the Verilated chip: bit-exact with the golden
block, measured cycles == predicted cycles == machine model, counters == model."""

import pytest

from arch.config import get_config
from sim.block import BlockSpec, run_block
from sim.build import build_root

pytestmark = pytest.mark.rtl

CASES = [
    # (config, seq, d_model, heads, d_ff, causal)
    ("tiny", 8, 32, 2, 64, True),  # d_model and d_ff larger than VL = 16
    ("small", 16, 32, 2, 64, True),  # the make-sim default
    ("small", 16, 64, 2, 128, False),  # d_model and d_ff larger than VL = 32, non-causal
    ("tiny3", 16, 32, 2, 64, True),  # 3 superlanes: VL = 48, not a power of two
    ("medium", 16, 32, 2, 64, True),  # 4 superlanes (make sim CONFIG=medium)
]


IDS = [f"{c[0]}-s{c[1]}-d{c[2]}-h{c[3]}-f{c[4]}-{'causal' if c[5] else 'full'}" for c in CASES]


@pytest.mark.parametrize(("config", "seq", "d_model", "heads", "d_ff", "causal"), CASES, ids=IDS)
def test_block_on_rtl(config, seq, d_model, heads, d_ff, causal, base_seed):
    cfg = get_config(config)
    spec = BlockSpec(seq, d_model, heads, d_ff, base_seed, causal)
    print(f"block {spec.tag()} on {config}")
    r = run_block(cfg, spec, out_dir=build_root() / "tests" / f"block-{config}-{spec.tag()}",
                  plot=False, log=print)
    print({k: r[k] for k in ("bit_exact", "cycles_predicted", "cycles_measured",
                             "cycles_clock", "mxm_utilization", "cosine_vs_float")})
    assert r["problems"] == []
    assert r["bit_exact"] is True
    assert r["cycles_measured"] == r["cycles_predicted"] == r["cycles_model"] == r["cycles_clock"]
    assert r["counters_match_model"]
    # every MVM the chip counted is either a useful matmul product or named overhead
    assert r["mvm_useful"] + sum(r["mvm_overhead"].values()) == r["mvm_chip"] > 0


DECODE_CASES = [
    # (config, context, d_model, heads, d_ff, steps)
    ("tiny", 8, 32, 2, 64, 8),  # two lane tiles; every position of the cache
    ("small", 16, 64, 4, 128, 6),  # four heads over two tiles; a partly filled cache
]


@pytest.mark.parametrize(("config", "ctx", "d_model", "heads", "d_ff", "steps"), DECODE_CASES,
                         ids=[f"{c[0]}-c{c[1]}-d{c[2]}-h{c[3]}-f{c[4]}-n{c[5]}"
                              for c in DECODE_CASES])
def test_decode_steps_on_rtl(config, ctx, d_model, heads, d_ff, steps, base_seed):
    """One decode program run once per token on the chip, the KV cache left in SRAM:
    every step bit-exact with the golden prefill row and predicted == chip CYCLES ==
    testbench clock; the cache holds the golden k and v afterwards."""
    from sim.decode import run_decode

    cfg = get_config(config)
    spec = BlockSpec(ctx, d_model, heads, d_ff, base_seed, True)
    print(f"decode {spec.tag()} on {config}, {steps} steps")
    r = run_decode(cfg, spec, steps, out_dir=build_root() / "tests" /
                   f"decode-{config}-{spec.tag()}", plot=False, log=print)
    print({k: r[k] for k in ("bit_exact", "cycles_predicted", "cycles_chip_steps",
                             "cycles_clock_steps", "ratio_to_bound")})
    assert r["problems"] == []
    assert r["bit_exact"] is True and r["cache_matches_golden"] is True
    assert r["cycles_chip_steps"] == r["cycles_clock_steps"] == [r["cycles_predicted"]] * steps


def test_llm_mlp_half_graph_on_rtl(base_seed):
    """The MLP half of a llama layer in the LLM's integer numerics (RMSNorm, block-scaled
    products, narrows, SwiGLU with its table Gathers and reciprocal, the aligned residual
    add: SXM reductions, PERM-free), compiled as a graph and run on the Verilated chip:
    outputs equal the golden graph evaluation, chip CYCLES == clock == prediction."""
    import numpy as np
    from test_graph import llm_mlp_graph

    from compiler.graph import compile_graph, evaluate
    from sim.graph import run_graph_rtl

    g, inputs = llm_mlp_graph(np.random.default_rng([base_seed, 21]))
    cg = compile_graph(g, "medium")
    r = run_graph_rtl(cg, inputs, build_root() / "tests" / "graph-llm-mlp", log=print)
    want = evaluate(g, inputs)
    assert not r["status"]["error"], r["status"]
    for o in g.outputs:
        assert np.array_equal(r["outputs"][o], want[o]), (o, np.argwhere(
            r["outputs"][o] != want[o])[:4])
    assert r["cycles_chip"] == r["cycles_clock"] == cg.cycles


def test_llm_layer_decode_steps_on_rtl(tmp_path, base_seed):
    """One llama decoder layer (a tiny random llama's GGUF blocks) in the LLM's integer
    numerics, 4 consecutive decode steps over a KV cache of 16 positions in SRAM on the
    Verilated chip (medium): every step equal to `golden.llm.layer_int`, every step's chip
    CYCLES == testbench clock == prediction."""
    import numpy as np
    from llm_fixture import write_tiny_gguf
    from test_layer import golden_steps, residual_rows

    from compiler.layer import compile_layer_step
    from golden.llm import LlamaModel
    from sim.layer import run_layer_rtl

    path = tmp_path / "tiny.gguf"
    write_tiny_gguf(path)
    model = LlamaModel(path)
    lc, L = model.config, model.int_weights()["layers"][0]
    cl = compile_layer_step(lc, L, "medium", 16)
    rows, es = residual_rows(np.random.default_rng([base_seed, 32]), 4, lc.d_model)
    r = run_layer_rtl(cl, rows, es, build_root() / "tests" / "llm-layer-medium", log=print)
    assert r["step_errors"] == []
    for p, ((y, e), (gy, ge)) in enumerate(zip(r["outputs"], golden_steps(lc, L, rows, es),
                                              strict=True)):
        assert np.array_equal(y, gy) and e == ge, (p, np.argwhere(y != gy)[:4], e, ge)
    assert r["cycles_chip"] == r["cycles_clock"] == [cl.cycles] * 4
    print(f"{cl.cycles} cycles per step")
