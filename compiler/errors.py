"""Errors raised by the compiler."""

from __future__ import annotations


class CompileError(ValueError):
    """The block cannot be compiled for this config; the message says which resource
    (SRAM, instruction memory, accumulators, shape) and how much is needed vs available.

    ``resource`` names it ("sram", "imem", "accumulators", "registers", "shape");
    ``final`` is True when no other compilation variant can help."""

    def __init__(self, msg: str, resource: str = "shape", final: bool = False):
        super().__init__(msg)
        self.resource = resource
        self.final = final


def imem_error(what: str, cfg, words: dict[str, int]) -> CompileError:
    """The instruction memory of ``cfg`` is too small for ``what`` ("the block", "the
    graph"): names the fullest queue, what it needs, the depth to raise to, every queue."""
    q = max(words, key=lambda k: words[k] / cfg.imem_depth_of(k))
    field = cfg.imem_field_of(q)
    return CompileError(
        f"{what} does not fit the instruction memory of config {cfg.name!r}: queue "
        f"{q} needs {words[q]} words but {field} is {cfg.imem_depth_of(q)} (raise "
        f"{field} to {1 << (words[q] - 1).bit_length()}; words per queue: "
        f"{', '.join(f'{k} {v}' for k, v in words.items())})", "imem")
