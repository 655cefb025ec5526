"""The architecture in pure Python: machine parameters (and, later, the ISA).

Everything else (RTL, golden models, compiler, testbenches) reads these
definitions; nothing here imports amaranth.
"""

from .config import PRESETS, SlicePosition, TspConfig, get_config

__all__ = ["PRESETS", "SlicePosition", "TspConfig", "get_config"]

# The ISA, programs and the assembler (issue 4), imported lazily so that
# `python -m arch.isa` / `python -m arch.asm` do not import themselves twice.
_LAZY_EXPORTS = {
    "Instr": "isa", "IsaError": "isa", "encode": "isa", "decode": "isa", "layout": "isa",
    "OPCODES": "isa", "Program": "program", "AsmError": "asm", "assemble": "asm",
    "disassemble": "asm", "ProgramBuilder": "asm",
}
__all__ += list(_LAZY_EXPORTS)


def __getattr__(name):
    if name in _LAZY_EXPORTS:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
