"""The tiny llama GGUF of the tests: `golden.tiny_llama` (also `make sim-layer`'s default)."""

from golden.tiny_llama import MERGES, SPECIALS, TINY, tiny_vocab, write_tiny_gguf

__all__ = ["MERGES", "SPECIALS", "TINY", "tiny_vocab", "write_tiny_gguf"]
