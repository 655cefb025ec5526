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
