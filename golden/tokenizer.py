"""Byte-level BPE tokenizer built from a GGUF file's own vocabulary and merges.

``tokenizer.ggml.model == "gpt2"`` (byte-level BPE).  The BPE itself runs in the
``tokenizers`` library; the pre-tokenizer follows the GGUF ``tokenizer.ggml.pre`` name as
llama.cpp does: ``smollm`` (StarCoder family) splits every digit, then the GPT-2 regex.
Control tokens (``token_type == 3``, e.g. ``<|im_start|>``) are special: matched whole.
"""

from __future__ import annotations

__all__ = ["Tokenizer"]

_PRE_DIGITS = {"smollm", "starcoder", "refact", "codeshell", "command-r", "exaone", "minerva"}
CONTROL = 3


class Tokenizer:
    def __init__(self, meta: dict, source: str = "GGUF"):
        try:
            from tokenizers import AddedToken, decoders, models, pre_tokenizers
            from tokenizers import Tokenizer as HFTokenizer
        except ImportError as exc:  # pragma: no cover - environment
            raise ImportError("tokenizing needs the 'tokenizers' package: "
                              "pip install -e .[models]") from exc
        kind = meta.get("tokenizer.ggml.model")
        if kind != "gpt2":
            raise ValueError(f"{source}: tokenizer.ggml.model {kind!r} is not supported "
                             f"(only byte-level BPE 'gpt2')")
        tokens = list(meta["tokenizer.ggml.tokens"])
        merges = [tuple(m.split(" ", 1)) for m in meta.get("tokenizer.ggml.merges", [])]
        vocab = {t: i for i, t in enumerate(tokens)}
        bpe = models.BPE(vocab=vocab, merges=merges, ignore_merges=False)
        tok = HFTokenizer(bpe)
        pre = meta.get("tokenizer.ggml.pre", "default")
        byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        if pre in _PRE_DIGITS:
            tok.pre_tokenizer = pre_tokenizers.Sequence(
                [pre_tokenizers.Digits(individual_digits=True), byte_level])
        else:
            tok.pre_tokenizer = byte_level
        tok.decoder = decoders.ByteLevel()
        types = list(meta.get("tokenizer.ggml.token_type", []))
        special = [tokens[i] for i, ty in enumerate(types) if int(ty) == CONTROL]
        if special:
            tok.add_special_tokens([AddedToken(s, special=True, normalized=False)
                                    for s in special])
        self._tok = tok
        self.vocab_size = len(tokens)
        self.bos_id = meta.get("tokenizer.ggml.bos_token_id")
        self.eos_id = meta.get("tokenizer.ggml.eos_token_id")

    def encode(self, text: str) -> list[int]:
        if not isinstance(text, str):
            raise TypeError(f"tokenize: text must be a str, got {type(text).__name__}")
        return self._tok.encode(text, add_special_tokens=False).ids

    def decode(self, ids) -> str:
        ids = [int(i) for i in ids]
        bad = [i for i in ids if not 0 <= i < self.vocab_size]
        if bad:
            raise ValueError(f"detokenize: id {bad[0]} outside the vocabulary "
                             f"[0, {self.vocab_size})")
        return self._tok.decode(ids, skip_special_tokens=False)
