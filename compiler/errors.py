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
