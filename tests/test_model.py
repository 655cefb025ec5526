"""A whole llama decoding on the machine model (`compiler/model.py`): embedding row in,
every layer with its KV cache in SRAM, final RMSNorm, LM head and on-chip argmax, the next
token's id out; the prompt prefilled by the same program one token per step.  The tokens
must equal `golden.llm.LlamaModel.generate_ids` (the int8 golden, which prefills the
prompt in one batch), every step's cycles the prediction."""

import numpy as np
import pytest
from llm_fixture import write_tiny_gguf

from compiler.model import compile_model_step
from golden.llm import LlamaModel


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    # an output matrix of its own: with the tied embedding a random model only repeats
    # its input token, which would not show a wrong argmax
    path = tmp_path_factory.mktemp("gguf") / "tiny-untied.gguf"
    write_tiny_gguf(path, 2, untied=True)
    model = LlamaModel(path)
    return model, compile_model_step(model, "layer", 16)


def test_tiny_llama_generates_the_golden_tokens(tiny_model, base_seed):
    model, cm = tiny_model
    rng = np.random.default_rng([base_seed, 50])
    prompt = [int(t) for t in rng.integers(3, model.config.vocab, 4)]
    print(f"seed={base_seed} prompt={prompt}")
    got, cycles = cm.generate(prompt, 8)
    want = model.generate_ids(prompt, 8)
    assert got == want, (got, want)
    assert len(set(want)) > 1  # a varied continuation, not one repeated token
    assert cycles == [cm.cycles] * (len(prompt) + 8 - 1)
    assert model.config.n_layers == 2 and cm.low.W["output"] is not cm.low.W["embedding"]


def test_tiny_llama_refuses_a_context_overflow(tiny_model):
    _, cm = tiny_model
    with pytest.raises(ValueError, match=r"need 19 positions; the program's context is 16"):
        cm.generate([5] * 12, 8)
    with pytest.raises(ValueError, match=r"prompt >= 1"):
        cm.generate([], 4)


def test_a_model_too_large_for_the_sram_is_refused_by_name(tiny_model):
    """The tiny llama on `medium` with a quarter of its SRAM (mem_depth 256): the error
    names the model step, the SRAM it needs and the parameter to raise."""
    from arch.config import get_config
    from compiler.errors import CompileError

    model, _ = tiny_model
    cfg = get_config("medium").replace(name="medium-256", mem_depth=256)
    with pytest.raises(CompileError, match=r"^the model step \(2 layers\) does not fit the "
                       r"SRAM of config 'medium-256'.*Raise mem_depth \(now 256\).*smaller "
                       r"model\.$"):
        compile_model_step(model, cfg, 16)


def test_make_llm_path_end_to_end_on_a_small_config(tmp_path):
    """`make llm`'s path (`sim.llm.run_llm`) with the tiny 2-layer llama on `small` (its
    VXM queue deepened to hold the step): the generated tokens equal a golden generate
    run here, every step's machine-model cycles equal the prediction, and the report's
    projected figures follow from them at 900 MHz."""
    import json

    from arch.config import get_config
    from sim.llm import run_llm

    cfg = get_config("small").replace(name="small-llm", imem_depth=2048, vxm_imem_depth=4096)
    shown = []
    r = run_llm(cfg, "tiny", "the cat sat", 6, sweep=(32,), out_dir=tmp_path,
                log=lambda *a: None, emit=shown.append)
    model = LlamaModel(r["model"])
    prompt = model.tokenize("the cat sat")
    want = model.generate_ids(prompt, 6)
    assert r["prompt_ids"] == prompt and r["tokens"] == want and not r["problems"]
    assert r["text"] == model.detokenize(want) and "".join(shown).strip().endswith(
        r["text"].strip())
    cyc = r["cycles_per_token"]
    assert r["cycles_steps"] == [cyc] * (len(prompt) + 6 - 1)
    assert r["context"] == 16  # prompt 9 + 6 new - 1 = 14 positions: the 16 bucket
    assert r["tokens_per_second"] == round(900e6 / cyc, 1)
    assert r["time_to_first_token_seconds"] == pytest.approx(len(prompt) * cyc / 900e6)
    b = r["bounds"]
    assert r["ratio_to_bound"] == round(cyc / max(b.values()), 3) >= 1
    assert [x["context"] for x in r["context_sweep"]] == [16, 32]
    assert r["context_sweep"][1]["cycles_per_token"] > cyc  # twice the cache rows to attend
    on_disk = json.loads((tmp_path / "report.json").read_text())
    assert on_disk["tokens"] == want
    for k in ("prompt", "text", "tokens", "cycles_per_token", "tokens_per_second",
              "time_to_first_token_seconds", "bounds"):
        assert k in on_disk
    assert (tmp_path / "schedule.png").stat().st_size > 10_000
    assert (tmp_path / "cycles_vs_context.png").stat().st_size > 10_000


def test_a_model_whose_weights_exceed_the_sram_is_refused_before_lowering(tiny_model):
    """The tiny llama's int8 weights (2 layers and its output matrix) are larger than
    `tiny`'s 32 KiB of SRAM: refused at once, with both sizes (not after lowering every
    layer, which for a real model on a small config would take minutes and gigabytes)."""
    from compiler.errors import CompileError

    model, _ = tiny_model
    need = sum(int(w.q.size) for L in model.int_weights()["layers"]
               for k, w in L.items() if hasattr(w, "q"))
    assert need > 32 * 1024
    with pytest.raises(CompileError, match=r"^the model step \(2 layers\) does not fit the "
                       r"SRAM of config 'tiny': its int8 weights alone are [0-9.]+ KiB .* but "
                       r"the config has 32\.0 KiB\.  Use a config with more SRAM "
                       r"\(mem_slices_per_hemisphere 2 of at most 44, mem_depth 256 of at most "
                       r"4096"):
        compile_model_step(model, "tiny", 16)


def test_a_q4_k_m_llama_generates_the_golden_tokens(tmp_path, base_seed):
    """The whole model from llama.cpp's Q4_K_M mix (Q4_K matrices; Q6_K ``attn_v``,
    ``ffn_down``, embedding and output rows, blocks of 16): the same tokens as the golden."""
    path = tmp_path / "q4km.gguf"
    write_tiny_gguf(path, 2, untied=True, weights="Q4_K_M", d_model=256, d_ff=512)
    model = LlamaModel(path)
    cm = compile_model_step(model, "layer", 16)
    rng = np.random.default_rng([base_seed, 51])
    prompt = [int(t) for t in rng.integers(3, model.config.vocab, 4)]
    print(f"seed={base_seed} prompt={prompt}")
    got, cycles = cm.generate(prompt, 6)
    assert got == model.generate_ids(prompt, 6)
    assert len(set(got)) > 1 and cycles == [cm.cycles] * (len(prompt) + 6 - 1)
    assert model.int_weights()["output"].group == 16
