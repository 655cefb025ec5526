"""One decode step of a llama decoder layer in the LLM's integer numerics (`compiler/layer.py`)
on the machine model: consecutive positions over the KV cache in SRAM, each step equal, bit
for bit, to `golden.llm.layer_int` with a golden KV cache, every step's cycles == the
prediction.  The weights are a tiny random llama written as a GGUF file (Q4_1/Q8_0 blocks:
`tests/llm_fixture.py`), read by `golden.llm.LlamaModel`."""

import numpy as np
import pytest
from llm_fixture import write_tiny_gguf

from compiler.layer import compile_layer_step
from golden.llm import LlamaModel, layer_steps_int


@pytest.fixture(scope="module")
def tiny_layer(tmp_path_factory):
    path = tmp_path_factory.mktemp("gguf") / "tiny.gguf"
    write_tiny_gguf(path)
    model = LlamaModel(path)
    return model.config, model.int_weights()["layers"]


golden_steps = layer_steps_int  # the reference: golden.llm's layer, step by step


def residual_rows(rng, n, d):
    rows = rng.integers(-(2**27), 2**27, (n, d))
    rows[0, 3] = 2**30 - 9  # a massive activation
    return rows, rng.integers(-30, -18, n)


@pytest.mark.parametrize("layer", [0, 1])
def test_layer_decode_steps_bit_exact(tiny_layer, layer, base_seed):
    print(f"seed={base_seed}")
    lc, layers = tiny_layer
    L = layers[layer]
    cl = compile_layer_step(lc, L, "medium", 16)  # a cache of 16 positions
    rows, es = residual_rows(np.random.default_rng([base_seed, 30, layer]), 6, lc.d_model)
    outs, runs, _ = cl.run_on_model(rows, es)
    want = golden_steps(lc, L, rows, es)
    for p, ((y, e), (gy, ge)) in enumerate(zip(outs, want, strict=True)):
        assert np.array_equal(y, gy) and e == ge, (p, np.argwhere(y != gy)[:4], e, ge)
    assert [r.cycles for r in runs] == [cl.cycles] * len(rows)


def test_layer_decode_over_a_stale_cache(tiny_layer, base_seed):
    """A second sequence from position 0 over the first one's cache: the stale positions
    (keys, values and their exponents) must stay masked."""
    print(f"seed={base_seed}")
    lc, layers = tiny_layer
    cl = compile_layer_step(lc, layers[0], "medium", 16)
    rng = np.random.default_rng([base_seed, 31])
    rows, es = residual_rows(rng, 8, lc.d_model)
    _, _, m = cl.run_on_model(rows, es)
    rows2, es2 = residual_rows(rng, 3, lc.d_model)
    outs, _, _ = cl.run_on_model(rows2, es2, machine=m)
    for (y, e), (gy, ge) in zip(outs, golden_steps(lc, layers[0], rows2, es2), strict=True):
        assert np.array_equal(y, gy) and e == ge
