"""A tiny llama GGUF written on the fly (no download): random seeded weights in the same
block formats as SmolLM2's file (Q4_1 matrices, Q8_0 embeddings, F32 norms) and a small
byte-level BPE vocabulary with merges and control tokens.  The tests' model and `make
sim-layer`'s default (needs the `gguf` and `tokenizers` packages: the dev extra)."""

from __future__ import annotations

import numpy as np

TINY = dict(n_layers=2, d_model=64, n_heads=4, n_kv_heads=2, d_ff=128, eps=1e-5,
            rope_base=10000.0, context=256)
MERGES = ["Ġ t", "h e", "Ġt he", "Ġ a", "i n", "Ġa n", "Ġan d", "o n", "e r", "Ġ s"]
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def tiny_vocab() -> tuple[list[str], list[int]]:
    from tokenizers import pre_tokenizers
    tokens = list(SPECIALS) + sorted(pre_tokenizers.ByteLevel.alphabet())
    for m in MERGES:
        tokens.append(m.replace(" ", ""))
    types = [3] * len(SPECIALS) + [1] * (len(tokens) - len(SPECIALS))
    return tokens, types


def write_tiny_gguf(path, seed: int = 0, arch: str = "llama", outlier: float = 8.0,
                    untied: bool = False, **shape) -> dict:
    """Write the tiny model (``shape``: changes to `TINY`, e.g. ``n_kv_heads=4``;
    ``untied``: an output matrix of its own instead of the embedding's, so that greedy
    decoding does not just repeat the input token); return its float weights as written
    (before quantisation)."""
    import gguf
    from gguf import GGMLQuantizationType as Q

    rng = np.random.default_rng(seed)
    unknown = sorted(set(shape) - set(TINY))
    if unknown:
        raise ValueError(f"write_tiny_gguf: unknown shape field(s) {unknown}; fields are "
                         f"{sorted(TINY)}")
    c = {**TINY, **shape}
    tokens, types = tiny_vocab()
    vocab, d, dff = len(tokens), c["d_model"], c["d_ff"]
    hd = d // c["n_heads"]
    w = gguf.GGUFWriter(str(path), arch)
    w.add_block_count(c["n_layers"])
    w.add_context_length(c["context"])
    w.add_embedding_length(d)
    w.add_feed_forward_length(dff)
    w.add_head_count(c["n_heads"])
    w.add_head_count_kv(c["n_kv_heads"])
    w.add_rope_freq_base(c["rope_base"])
    w.add_layer_norm_rms_eps(c["eps"])
    w.add_rope_dimension_count(hd)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("smollm")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(MERGES)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)

    def q(name, arr, kind):
        arr = np.asarray(arr, dtype=np.float32)
        w.add_tensor(name, gguf.quants.quantize(arr, kind), raw_dtype=kind)

    emb = rng.normal(0, 1.0, (vocab, d))
    q("token_embd.weight", emb, Q.Q8_0)
    shapes = {"attn_q": (d, d), "attn_k": (c["n_kv_heads"] * hd, d),
              "attn_v": (c["n_kv_heads"] * hd, d), "attn_output": (d, d),
              "ffn_gate": (dff, d), "ffn_up": (dff, d), "ffn_down": (d, dff)}
    for i in range(c["n_layers"]):
        g = rng.normal(1.0, 0.2, d)
        g[3] = outlier  # a structured outlier channel, as real layers have
        w.add_tensor(f"blk.{i}.attn_norm.weight", g.astype(np.float32))
        w.add_tensor(f"blk.{i}.ffn_norm.weight", rng.normal(1.0, 0.2, d).astype(np.float32))
        for name, shp in shapes.items():
            q(f"blk.{i}.{name}.weight", rng.normal(0, 1.0 / np.sqrt(shp[1]), shp), Q.Q4_1)
    w.add_tensor("output_norm.weight", rng.normal(1.0, 0.2, d).astype(np.float32))
    if untied:
        q("output.weight", rng.normal(0, 1.0, (vocab, d)), Q.Q8_0)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return {"tokens": tokens, "vocab": vocab}
