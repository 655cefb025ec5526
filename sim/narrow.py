"""Arithmetic of the generated Verilog computed in the bits that are used.

Amaranth gives a sum one bit more than its widest operand and a product or a left
shift the sum of its operands' widths, and yosys writes each as a wire of that width::

    wire [64:0] \\$53 ;
    assign \\$53  = $signed(r1) + $signed(c2);
    ...  \\$187  = \\$53 [63:0];

Where every use reads only the low bits (a VXM lane's 64-bit result register takes the
65-bit sum, the 127-bit shift and the 96-bit product), Verilator still computes the
whole width: a value over 64 bits is a multi-word ``VlWide``, built in temporaries in
front of the statement that reads it -- outside the ``if`` that would have skipped it
-- in every cycle.  `narrow_arithmetic` declares such a wire as wide as its widest use::

    wire [63:0] \\$53 ;

The low N bits of ``a + b``, ``a - b``, ``a * b``, ``a << k`` and ``- a`` do not depend on
how many bits above N the operation is computed in (two's complement arithmetic modulo
2**N), and Verilog computes an assignment's operation at least as wide as its target, so
every bit anything reads is the same.  Only those five operations, as one ``assign`` of a
wire that nothing else drives, and only where every read of the wire is a constant
part-select or bit-select, are narrowed.  (Yosys's ``wreduce`` pass does the same for
cells, but it does not see through the processes that read these wires.)
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict

_MODULE = re.compile(r"^module .*?^endmodule\n", re.M | re.S)
_DECL = re.compile(r"^  wire (signed )?\[(\d+):0\] (\\\$\d+) ;\n", re.M)
_ASSIGN = re.compile(r"^  assign (\\\$\d+)\s+= (.*);\n", re.M)
_MENTION = re.compile(r"\\\$\d+(?=\s)")
_SELECTED = re.compile(r"(\\\$\d+) ?\[(\d+)(?::\d+)?\]")
_ATTR = re.compile(r"\(\*.*?\*\)\s*")
_SELECT = re.compile(r"\[[^\]]*\]")
#: one operation yosys writes per cell: a binary +, -, * or <<, or a unary minus
_BINARY = re.compile(r"^(?P<a>[^?:<>=!&|^~%/]+?) (?P<op>\+|-|\*|<<) (?P<b>[^?:<>=!&|^~%/]+)$")
_UNARY = re.compile(r"^- (?P<a>[^?:<>=!&|^~%/+*-]+)$")


def _operation(rhs: str) -> bool:
    rhs = _SELECT.sub("", _ATTR.sub("", rhs)).strip()  # (a part-select is no operator)
    m = _BINARY.match(rhs)
    if m is not None:
        # the operands hold no further operator (concatenations and $signed() are fine)
        return not any(f" {o} " in f" {m['a']} {m['b']} " for o in ("+", "-", "*", "<<"))
    return _UNARY.match(rhs) is not None


def _narrow_module(text: str) -> tuple[str, int]:
    assigns: dict[str, list[str]] = defaultdict(list)
    for a in _ASSIGN.finditer(text):
        assigns[a[1]].append(a[2])
    mentions = Counter(_MENTION.findall(text))
    selects: dict[str, list[int]] = defaultdict(list)
    for name, hi in _SELECTED.findall(text):
        selects[name].append(int(hi))
    n = 0
    for decl in list(_DECL.finditer(text)):
        name, width = decl[3], int(decl[2]) + 1
        rhs = assigns.get(name, [])
        if len(rhs) != 1 or not _operation(rhs[0]):
            continue
        # every other mention (the declaration, the assign) is a read through a constant select
        sel = selects.get(name, [])
        if mentions[name] != 2 + len(sel) or not sel:
            continue
        used = max(sel) + 1
        if used >= width:
            continue
        text = text.replace(decl[0], f"  wire {decl[1] or ''}[{used - 1}:0] {name} ;\n", 1)
        n += 1
    return text, n


def narrow_arithmetic(text: str) -> tuple[str, int]:
    """`text` with every narrowable wire narrowed (see the module docstring), and how many
    were."""
    total = 0

    def one(m: re.Match) -> str:
        nonlocal total
        out, k = _narrow_module(m[0])
        total += k
        return out

    return _MODULE.sub(one, text), total
