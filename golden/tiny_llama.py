"""A tiny llama GGUF written on the fly (no download): random seeded weights in the same
block formats as SmolLM2's file (Q4_1 matrices, Q8_0 embeddings, F32 norms), or in
llama.cpp's Q4_K_M mix (Q4_K and Q6_K: rows of a multiple of 256), and a small
byte-level BPE vocabulary with merges and control tokens (or a SentencePiece one).  The
tests' model and `make sim-layer`'s default (needs the `gguf` and `tokenizers` packages:
the dev extra)."""

from __future__ import annotations

import numpy as np

from .tokenizer import BYTE, CONTROL, NORMAL, UNKNOWN

TINY = dict(n_layers=2, d_model=64, n_heads=4, n_kv_heads=2, d_ff=128, eps=1e-5,
            rope_base=10000.0, context=256)
MERGES = ["Ġ t", "h e", "Ġt he", "Ġ a", "i n", "Ġa n", "Ġan d", "o n", "e r", "Ġ s"]
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def tiny_vocab() -> tuple[list[str], list[int]]:
    from tokenizers import pre_tokenizers
    tokens = list(SPECIALS) + sorted(pre_tokenizers.ByteLevel.alphabet())
    for m in MERGES:
        tokens.append(m.replace(" ", ""))
    types = [CONTROL] * len(SPECIALS) + [NORMAL] * (len(tokens) - len(SPECIALS))
    return tokens, types


#: the weight types a tiny model can be written with: SmolLM2's file, or llama.cpp's
#: ``Q4_K_M`` mix (Q4_K matrices, Q6_K for ``attn_v``, ``ffn_down`` and the embeddings);
#: a matrix not named takes ``matrix``
MIXES = {
    "Q4_1": {"matrix": "Q4_1", "embed": "Q8_0"},
    "Q4_K_M": {"matrix": "Q4_K", "attn_v": "Q6_K", "ffn_down": "Q6_K", "embed": "Q6_K"},
}


def _k_scale_bytes(sc: np.ndarray, mn: np.ndarray) -> np.ndarray:
    """Eight 6-bit scales and mins per super-block -> Q4_K's 12 packed bytes (the inverse
    of llama.cpp's ``get_scale_min_k4``)."""
    s = np.zeros((sc.shape[0], 12), np.int64)
    for j in range(4):
        s[:, j] = (sc[:, j] & 63) | ((sc[:, j + 4] >> 4) << 6)
        s[:, j + 4] = (mn[:, j] & 63) | ((mn[:, j + 4] >> 4) << 6)
        s[:, j + 8] = (sc[:, j + 4] & 0xF) | ((mn[:, j + 4] & 0xF) << 4)
    return s.astype(np.uint8)


def _f16_bytes(x: np.ndarray) -> np.ndarray:
    return np.asarray(x, np.float16).reshape(-1, 1).view(np.uint8)


def quantize_q4_k(x: np.ndarray) -> np.ndarray:
    """Float rows (length a multiple of 256) -> Q4_K blocks (144 bytes per 256): per group
    of 32 a 6-bit scale and min of two f16 super-block scales, ``x ~ d sc q - dmin m``,
    ``q`` 0..15.  A plain round-to-nearest encoder (llama.cpp searches its scales)."""
    g = np.asarray(x, np.float64).reshape(-1, 8, 32)
    lo = np.minimum(g.min(axis=2), 0.0)
    scale = (g.max(axis=2) - lo) / 15.0
    d = np.maximum(scale.max(axis=1), 1e-12) / 63.0
    dmin = np.maximum(-lo.min(axis=1), 1e-12) / 63.0
    d, dmin = d.astype(np.float16).astype(np.float64), dmin.astype(np.float16).astype(np.float64)
    sc = np.clip(np.rint(scale / d[:, None]), 1, 63).astype(np.int64)
    mn = np.clip(np.rint(-lo / dmin[:, None]), 0, 63).astype(np.int64)
    step = (d[:, None] * sc)[..., None]
    q = np.clip(np.rint((g + (dmin[:, None] * mn)[..., None]) / step), 0, 15).astype(np.int64)
    qs = np.concatenate([q[:, 2 * c] | (q[:, 2 * c + 1] << 4) for c in range(4)], axis=1)
    return np.concatenate([_f16_bytes(d), _f16_bytes(dmin), _k_scale_bytes(sc, mn),
                           qs.astype(np.uint8)], axis=1).reshape(-1)


def quantize_q6_k(x: np.ndarray) -> np.ndarray:
    """Float rows (length a multiple of 256) -> Q6_K blocks (210 bytes per 256): per group
    of 16 an int8 scale of one f16 ``d``, ``x ~ d sc (q - 32)``, ``q`` 0..63."""
    g = np.asarray(x, np.float64).reshape(-1, 16, 16)
    scale = np.abs(g).max(axis=2) / 31.0
    d = (np.maximum(scale.max(axis=1), 1e-12) / 127.0).astype(np.float16).astype(np.float64)
    sc = np.clip(np.rint(scale / d[:, None]), 1, 127).astype(np.int64)
    v = np.clip(np.rint(g / (d[:, None] * sc)[..., None]), -32, 31).astype(np.int64) + 32
    v = v.reshape(-1, 256)
    ql, qh = [], []
    for h in range(2):
        q1, q2, q3, q4 = (v[:, 128 * h + 32 * k:128 * h + 32 * k + 32] for k in range(4))
        ql += [(q1 & 0xF) | ((q3 & 0xF) << 4), (q2 & 0xF) | ((q4 & 0xF) << 4)]
        qh.append((q1 >> 4) | ((q2 >> 4) << 2) | ((q3 >> 4) << 4) | ((q4 >> 4) << 6))
    return np.concatenate([np.concatenate(ql, axis=1).astype(np.uint8),
                           np.concatenate(qh, axis=1).astype(np.uint8),
                           sc.astype(np.int8).view(np.uint8), _f16_bytes(d)], axis=1).reshape(-1)


#: a SentencePiece ("llama") vocabulary: unknown, control, the 256 byte tokens, a few pieces
SPM_PIECES = ["\u2581", "\u2581the", "\u2581cat", "he", "llo", "\u2581h", "\u00e9t\u00e9"]


def spm_vocab() -> tuple[list[str], list[int]]:
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)] + SPM_PIECES
    types = [UNKNOWN, CONTROL, CONTROL] + [BYTE] * 256 + [NORMAL] * len(SPM_PIECES)
    return tokens, types


def write_tiny_gguf(path, seed: int = 0, arch: str = "llama", outlier: float = 8.0,
                    untied: bool = False, weights: str = "Q4_1", tokenizer: str = "gpt2",
                    **shape) -> dict:
    """Write the tiny model (``shape``: changes to `TINY`, e.g. ``n_kv_heads=4``;
    ``untied``: an output matrix of its own instead of the embedding's, so that greedy
    decoding does not just repeat the input token; ``weights``: the types, `MIXES`; the K
    types need rows of a multiple of 256; ``tokenizer``: byte-level BPE ``"gpt2"`` or a
    SentencePiece ``"llama"`` vocabulary, `spm_vocab`); return its float weights as written
    (before quantisation)."""
    import gguf
    from gguf import GGMLQuantizationType as Q

    rng = np.random.default_rng(seed)
    unknown = sorted(set(shape) - set(TINY))
    if unknown:
        raise ValueError(f"write_tiny_gguf: unknown shape field(s) {unknown}; fields are "
                         f"{sorted(TINY)}")
    if weights not in MIXES:
        raise ValueError(f"write_tiny_gguf: weights={weights!r}; choose one of {sorted(MIXES)}")
    mix = MIXES[weights]
    c = {**TINY, **shape}
    if tokenizer not in ("gpt2", "llama"):
        raise ValueError(f"write_tiny_gguf: tokenizer={tokenizer!r}; choose 'gpt2' or 'llama'")
    tokens, types = tiny_vocab() if tokenizer == "gpt2" else spm_vocab()
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
    w.add_tokenizer_model(tokenizer)
    w.add_token_list(tokens)
    w.add_token_types(types)
    if tokenizer == "gpt2":
        w.add_tokenizer_pre("smollm")
        w.add_token_merges(MERGES)
    else:
        w.add_token_scores([0.0] * len(tokens))
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)

    def q(name, arr, kind):
        arr = np.asarray(arr, dtype=np.float32)
        kind = getattr(Q, kind)
        if kind in (Q.Q4_K, Q.Q6_K):
            if arr.shape[-1] % 256:
                raise ValueError(f"write_tiny_gguf: {name}'s rows of {arr.shape[-1]} are not "
                                 f"a multiple of 256 ({kind.name} blocks)")
            raw = (quantize_q4_k if kind == Q.Q4_K else quantize_q6_k)(arr)
            per, size = gguf.GGML_QUANT_SIZES[kind]
            raw = raw.reshape(*arr.shape[:-1], arr.shape[-1] // per * size)
        else:
            raw = gguf.quants.quantize(arr, kind)
        w.add_tensor(name, raw, raw_dtype=kind)

    emb = rng.normal(0, 1.0, (vocab, d))
    q("token_embd.weight", emb, mix["embed"])
    shapes = {"attn_q": (d, d), "attn_k": (c["n_kv_heads"] * hd, d),
              "attn_v": (c["n_kv_heads"] * hd, d), "attn_output": (d, d),
              "ffn_gate": (dff, d), "ffn_up": (dff, d), "ffn_down": (d, dff)}
    for i in range(c["n_layers"]):
        g = rng.normal(1.0, 0.2, d)
        g[3] = outlier  # a structured outlier channel, as real layers have
        w.add_tensor(f"blk.{i}.attn_norm.weight", g.astype(np.float32))
        w.add_tensor(f"blk.{i}.ffn_norm.weight", rng.normal(1.0, 0.2, d).astype(np.float32))
        for name, shp in shapes.items():
            q(f"blk.{i}.{name}.weight", rng.normal(0, 1.0 / np.sqrt(shp[1]), shp),
              mix.get(name, mix["matrix"]))
    w.add_tensor("output_norm.weight", rng.normal(1.0, 0.2, d).astype(np.float32))
    if untied:
        q("output.weight", rng.normal(0, 1.0, (vocab, d)), mix["embed"])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return {"tokens": tokens, "vocab": vocab}
