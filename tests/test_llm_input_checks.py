"""Bad input to the LLM tools is refused by name: GGUF metadata that disagrees with itself
or with the tensors (at load time), and CLI counts the model or the texts cannot take
(an ``error:`` line and a non-zero exit, no traceback).  On a tiny GGUF written here."""

from __future__ import annotations

import numpy as np
import pytest

gguf = pytest.importorskip("gguf", reason="the gguf package (dev extra) is not installed")
pytest.importorskip("tokenizers", reason="the tokenizers package (dev extra) is not installed")

from llm_fixture import write_tiny_gguf  # noqa: E402

from golden import llm, llm_accuracy, real_layer  # noqa: E402
from golden.llm import load_model  # noqa: E402

U32 = gguf.GGUFValueType.UINT32


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory):
    p = tmp_path_factory.mktemp("llm") / "tiny.gguf"
    write_tiny_gguf(p, seed=7)
    return p


def rewrite(src, dst, meta=None, drop=(), tensors=None):
    """Copy the GGUF ``src`` to ``dst`` with metadata ``meta`` (key: uint32) set, keys
    ``drop`` left out and ``tensors`` (name: float32 array) replaced."""
    meta, tensors = meta or {}, tensors or {}
    r = gguf.GGUFReader(str(src))
    w = gguf.GGUFWriter(str(dst), "llama")
    for key, f in r.fields.items():
        if key.startswith("GGUF.") or key == "general.architecture" or key in drop:
            continue
        if key in meta:
            w.add_key_value(key, meta[key], U32)
        elif f.types[0] == gguf.GGUFValueType.ARRAY:
            w.add_key_value(key, f.contents(), f.types[0], sub_type=f.types[-1])
        else:
            w.add_key_value(key, f.contents(), f.types[0])
    for t in r.tensors:
        if t.name in tensors:
            w.add_tensor(t.name, tensors[t.name])
        else:
            data = np.array(t.data)
            w.add_tensor(t.name, data, raw_shape=data.shape, raw_dtype=t.tensor_type)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return dst


H, KV = "llama.attention.head_count", "llama.attention.head_count_kv"
BAD = {
    "heads0": ({"meta": {H: 0}}, f"{H} = 0, must be >= 1"),
    "kv0": ({"meta": {KV: 0}}, f"{KV} = 0, must be >= 1"),
    "layers0": ({"meta": {"llama.block_count": 0}}, "llama.block_count = 0, must be >= 1"),
    "layers1": ({"meta": {"llama.block_count": 1}},
                r"'blk\.1\.\w+\.weight' is beyond metadata llama.block_count = 1"),
    "layers3": ({"meta": {"llama.block_count": 3}}, "no tensor 'blk.2.attn_norm.weight'"),
    "heads3": ({"meta": {H: 3}}, "embedding_length 64, head_count 3, head_count_kv 2"),
    "kv3": ({"meta": {KV: 3}}, "head_count 4, head_count_kv 3"),
    "notokens": ({"drop": ("tokenizer.ggml.tokens",)},
                 "metadata key 'tokenizer.ggml.tokens' missing"),
    "q48": ({"tensors": {"blk.0.attn_q.weight": np.zeros((48, 64), np.float32)}},
            r"tensor 'blk.0.attn_q.weight' has shape \(48, 64\), the metadata implies "
            r"\(64, 64\)"),
    "d96": ({"meta": {"llama.embedding_length": 96}},
            r"tensor 'token_embd.weight' has shape \(\d+, 64\), the metadata implies "
            r"\(\d+, 96\) \(embedding_length 96"),
    "dff96": ({"meta": {"llama.feed_forward_length": 96}},
              r"'blk.0.ffn_gate.weight' has shape \(128, 64\), the metadata implies \(96, 64\)"),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_gguf_is_refused_at_load(tiny_path, tmp_path, name):
    """Before: ZeroDivisionError, an IndexError or reshape error mid-forward, a bare
    KeyError, "partial rotary", or (d_ff) a silent run."""
    change, msg = BAD[name]
    path = rewrite(tiny_path, tmp_path / f"{name}.gguf", **change)
    with pytest.raises(ValueError, match=msg) as e:
        load_model(str(path))
    assert str(path) in str(e.value)


def test_sim_llm_names_a_missing_key(tiny_path, tmp_path, capsys):
    from sim.__main__ import main

    path = rewrite(tiny_path, tmp_path / "notok.gguf", drop=("tokenizer.ggml.tokens",))
    rc = main(["llm", "--config", "tiny", "--model", str(path), "--tokens", "1",
               "--out", str(tmp_path / "out")])
    assert rc == 2
    assert f"error: {path}: metadata key 'tokenizer.ggml.tokens' missing" in capsys.readouterr().err


def test_sim_llm_empty_prompt_ids(tiny_path, tmp_path, capsys):
    """Before: the default text prompt ran instead."""
    from sim.__main__ import main

    assert main(["llm", "--config", "tiny", "--model", str(tiny_path), "--prompt-ids", "",
                 "--tokens", "0", "--out", str(tmp_path / "out")]) == 2
    assert "error: --prompt-ids is empty" in capsys.readouterr().err


def test_llm_cli_tokens_over_context(tiny_path, capsys):
    assert llm.main(["--model", str(tiny_path), "--prompt", "hello", "--tokens", "300"]) == 2
    out, err = capsys.readouterr()
    assert not out
    assert err.startswith("error: --tokens 300: a prompt of") and "context length 256" in err


def test_llm_accuracy_text_over_context(tiny_path, tmp_path, capsys):
    rc = llm_accuracy.main(["--model", str(tiny_path), "--no-heldout",
                            "--json", str(tmp_path / "a.json")])
    assert rc == 2 and not (tmp_path / "a.json").exists()
    err = capsys.readouterr().err
    assert "english.txt is" in err and "over the context length 256" in err


@pytest.mark.parametrize("opt", ["--test 0", "--calib 0", "--seq -2", "--layers 1,x"])
def test_real_layer_counts(tiny_path, capsys, opt):
    name, value = opt.split()
    argv = ["--model", str(tiny_path), "--layers", "1", "--seq", "4", "--calib", "1",
            "--test", "1", name, value]
    with pytest.raises(SystemExit) as e:
        real_layer.main(argv)
    assert e.value.code == 2
    assert f"error: {name} must be" in capsys.readouterr().err


def test_real_layer_seq_over_context(tiny_path, capsys):
    argv = ["--model", str(tiny_path), "--layers", "1", "--seq", "300"]
    assert real_layer.main(argv) == 2
    assert "error: seq 300 is over the model's context length 256" in capsys.readouterr().err


def test_tiny_writer_refuses_k_blocks_on_short_rows_and_unknown_mixes(tmp_path):
    with pytest.raises(ValueError, match=r"token_embd.weight's rows of 64 are not a multiple "
                                         r"of 256 \(Q6_K blocks\)"):
        write_tiny_gguf(tmp_path / "a.gguf", weights="Q4_K_M")
    with pytest.raises(ValueError, match=r"weights='Q3_K_S'; choose one of \['Q4_1', 'Q4_K_M'\]"):
        write_tiny_gguf(tmp_path / "b.gguf", weights="Q3_K_S")


def test_a_sentencepiece_model_decodes_and_refuses_text_by_name(tmp_path):
    """A llama GGUF with a SentencePiece vocabulary (``tokenizer.ggml.model`` 'llama', as
    Llama 2, TinyLlama and the TinyStories models have): it loads and runs from token ids;
    ids decode piece by piece (``▁`` a space, byte tokens assembled as UTF-8, control tokens
    nothing); text is refused, pointing to token ids."""
    from golden.tiny_llama import spm_vocab

    path = tmp_path / "spm.gguf"
    write_tiny_gguf(path, 3, tokenizer="llama")
    model = load_model(str(path))
    tokens, _ = spm_vocab()
    ids = [tokens.index(t) for t in ("<s>", "\u2581the", "\u2581cat", "<0x0A>", "\u2581h",
                                     "llo", "<0xC3>", "<0xA9>", "\u00e9t\u00e9")]
    assert model.detokenize(ids) == " the cat\n hllo\u00e9\u00e9t\u00e9"
    with pytest.raises(ValueError, match=r"tokenizer.ggml.model 'llama' \(SentencePiece\): "
                                         r"encoding text is not supported; give the prompt "
                                         r"as token ids \(--prompt-ids\)"):
        model.tokenize("the cat")
    out = model.generate_ids([5, 9, 200], 3)
    assert len(out) == 3 and all(0 <= t < len(tokens) for t in out)
