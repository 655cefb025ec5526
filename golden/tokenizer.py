"""The tokenizer of a GGUF file, built from its own vocabulary.

* ``tokenizer.ggml.model == "gpt2"`` (byte-level BPE, SmolLM2's): encode and decode.  The BPE
  itself runs in the ``tokenizers`` library; the pre-tokenizer follows the GGUF
  ``tokenizer.ggml.pre`` name as llama.cpp does: ``smollm`` (StarCoder family) splits every
  digit, then the GPT-2 regex.  Control tokens (``token_type == 3``, e.g. ``<|im_start|>``)
  are special: matched whole.
* ``"llama"`` (SentencePiece, as in Llama 2, TinyLlama and the TinyStories models): decode
  only, piece by piece as llama.cpp's ``token_to_piece``: ``▁`` is a space, a byte token
  ``<0xNN>`` that byte (UTF-8 assembled across tokens), control tokens nothing.  Encoding
  text is refused with a pointer to token ids (``--prompt-ids``): SentencePiece's
  score-ordered merges are not built here.
"""

from __future__ import annotations

__all__ = ["Tokenizer"]

_PRE_DIGITS = {"smollm", "starcoder", "refact", "codeshell", "command-r", "exaone", "minerva"}
NORMAL, UNKNOWN, CONTROL, BYTE = 1, 2, 3, 6  # tokenizer.ggml.token_type values


class Tokenizer:
    def __init__(self, meta: dict, source: str = "GGUF"):
        try:
            from tokenizers import AddedToken, decoders, models, pre_tokenizers
            from tokenizers import Tokenizer as HFTokenizer
        except ImportError as exc:  # pragma: no cover - environment
            raise ImportError("tokenizing needs the 'tokenizers' package: "
                              "pip install -e .[models]") from exc
        kind = meta.get("tokenizer.ggml.model")
        if kind not in ("gpt2", "llama"):
            raise ValueError(f"{source}: tokenizer.ggml.model {kind!r} is not supported "
                             f"(byte-level BPE 'gpt2'; SentencePiece 'llama' to decode)")
        self.kind, self.source = kind, source
        tokens = list(meta["tokenizer.ggml.tokens"])
        types = [int(t) for t in meta.get("tokenizer.ggml.token_type", [])]
        self.vocab_size = len(tokens)
        self.bos_id = meta.get("tokenizer.ggml.bos_token_id")
        self.eos_id = meta.get("tokenizer.ggml.eos_token_id")
        if kind == "llama":
            self._pieces = [_spm_piece(t, types[i] if i < len(types) else NORMAL)
                            for i, t in enumerate(tokens)]
            return
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
        special = [tokens[i] for i, ty in enumerate(types) if ty == CONTROL]
        if special:
            tok.add_special_tokens([AddedToken(s, special=True, normalized=False)
                                    for s in special])
        self._tok = tok

    def encode(self, text: str) -> list[int]:
        if not isinstance(text, str):
            raise TypeError(f"tokenize: text must be a str, got {type(text).__name__}")
        if self.kind == "llama":
            raise ValueError(f"{self.source}: tokenizer.ggml.model 'llama' (SentencePiece): "
                             "encoding text is not supported; give the prompt as token ids "
                             "(--prompt-ids)")
        return self._tok.encode(text, add_special_tokens=False).ids

    def decode(self, ids) -> str:
        ids = [int(i) for i in ids]
        bad = [i for i in ids if not 0 <= i < self.vocab_size]
        if bad:
            raise ValueError(f"detokenize: id {bad[0]} outside the vocabulary "
                             f"[0, {self.vocab_size})")
        if self.kind == "llama":
            return b"".join(self._pieces[i] for i in ids).decode("utf-8", errors="replace")
        return self._tok.decode(ids, skip_special_tokens=False)


def _spm_piece(token: str, kind: int) -> bytes:
    """The bytes a SentencePiece token stands for (llama.cpp's ``token_to_piece``)."""
    if kind == BYTE and len(token) == 6 and token.startswith("<0x") and token.endswith(">"):
        return bytes([int(token[3:5], 16)])
    if kind == CONTROL:
        return b""
    return token.replace("\u2581", " ").encode("utf-8")
