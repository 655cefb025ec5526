"""Flip-flops of the generated Verilog: the next-state logic written inside the clocked block.

Yosys writes an Amaranth register as two processes: a combinational block that
computes its next value into a temporary, holding the old one unless a condition
says otherwise, and a clocked block that copies the temporary::

    always @(posedge clk)              always @* begin
      cnt <= \\$247 ;                      \\$247  = cnt;
                                          if (\\$2 ) begin
                                            if (\\$3 ) \\$247  = \\$4 ; ...

Verilator keeps that shape: in every cycle it evaluates the temporary and copies it
into the register, even when the register holds (a queue's counters and state, a
unit's pipeline registers).  `fold_next_state` writes the temporary's block into the
clocked one instead::

    always @(posedge clk) begin
      if (\\$2 ) begin
        if (\\$3 ) cnt <= \\$4 ; ...

which means the same (the conditions and values are read at the clock edge, as the
temporary would have been computed from them) and which Verilator translates to a
conditional store.  A temporary is folded only where nothing else reads or writes
it: it is assigned in one combinational block that assigns nothing else, and read
only by the one clocked copy.  Only the block's first statement, if it is the hold
(``\\$247  = cnt;``), is dropped; a hold further in is kept as ``cnt <= cnt``.
Registers wider than 64 bits and registers chosen by a ``case`` of many arms are left
as they are (`MAX_BITS`, `MAX_CASE_ARMS`: measured, folding them costs Verilator more).
"""

from __future__ import annotations

import re
from collections import Counter

_FLOP = re.compile(r"^  always @\(posedge (\S+)\)\n    (\S+ ?) <= (\\\$\d+) ;\n", re.M)
_MODULE = re.compile(r"^module .*?^endmodule\n", re.M | re.S)
_BLOCK = re.compile(r"^  always @\* begin\n(.*?)^  end\n", re.M | re.S)
_ASSIGN = re.compile(r"^(\s*)(\\\$\d+) (\s*(?:\[[^\]]*\]\s*)?)= (.*)$")
#: the target of any assignment statement (an escaped or a plain identifier)
_TARGET = re.compile(r"^\s*(\\\S+ |[A-Za-z_][\w$]*)\s*(?:\[[^\]]*\]\s*)?= ", re.M)
_TRIGGER = "\\$auto$verilog_backend"
#: registers up to this width are folded.  A conditional store to a wider one (a
#: multi-word ``VlWide`` in Verilator's C++) goes through a shadow copy that Verilator
#: writes before and commits after the clocked blocks, in every cycle: two copies of
#: every word, where the unfolded register costs one (measured at `small`: the MXM
#: weight rows went from 7.5k to 15.1k instructions per cycle)
MAX_BITS = 64
#: a register whose next value is chosen by a ``case`` of more arms is not folded.
#: Folded, Verilator computes the alternatives' values in front of the clocked statement
#: rather than only the chosen one: a VXM lane's result register, chosen by the ALU op
#: among 22 values, cost 2,070 more instructions per idle cycle at `small` folded (and
#: 4.5k when its sums were 65 bits wide); the queues' program counter, wait counter and
#: state (3-4 arms) cost 700 fewer (`make profile-rtl`)
MAX_CASE_ARMS = 8
#: one arm of a ``case``: its pattern(s) or ``default``, then ``:`` (no other line of
#: yosys's Verilog starts so: a block without a case has none)
_ARM = re.compile(r"^\s*(?:\d+'[bdh][\w?]+(?:\s*,\s*\d+'[bdh][\w?]+)*|default)\s*:", re.M)


_TEMP = re.compile(r"\\\$\d+(?=\s)")
_DECL = re.compile(r"^  reg (?:signed )?(?:\[(\d+):0\] )?(\\\$\d+) ;\n", re.M)


def _fold_module(text: str) -> tuple[str, int]:
    flops = {m.group(3): m for m in _FLOP.finditer(text)}
    if not flops:
        return text, 0
    uses = Counter(_TEMP.findall(text))  # every temporary's occurrences, in one pass
    decls = {d.group(2): d for d in _DECL.finditer(text)}
    edits = []  # (start, end, replacement)
    for b in _BLOCK.finditer(text):
        body = b.group(1)
        targets = [a.group(1).rstrip() for a in _TARGET.finditer(body)]
        tmp = targets[0] if targets else None
        if tmp not in flops or any(t != tmp for t in targets):
            continue  # not a register's temporary, or the block assigns something else
        decl = decls.get(tmp)
        if decl is None or int(decl.group(1) or 0) >= MAX_BITS:
            continue
        if len(_ARM.findall(body)) > MAX_CASE_ARMS:
            continue  # (see the note under MAX_CASE_ARMS)
        # every use of the temporary: its declaration, its assignments, the copy
        if uses[tmp] != 1 + len(targets) + 1 or Counter(_TEMP.findall(body))[tmp] != len(targets):
            continue
        f = flops[tmp]
        reg = f.group(2)
        out = []
        first = True
        for line in body.splitlines():
            if line.strip().startswith("if (" + _TRIGGER):
                continue  # yosys's run-at-time-0 trigger of combinational blocks
            a = _ASSIGN.match(line)
            if a:
                hold = (not a.group(3).strip()
                        and a.group(4).rstrip(";").strip() == reg.strip())
                if first and hold and a.group(1) == "    ":
                    first = False
                    continue  # the default hold: a register keeps its value anyway
                line = f"{a.group(1)}{reg}{a.group(3)}<= {a.group(4)}"
            first = False
            out.append(line)
        new = (f"  always @(posedge {f.group(1)}) begin\n" + "\n".join(out)
               + ("\n" if out else "") + "  end\n")
        edits += [(f.start(), f.end(), new), (b.start(), b.end(), ""),
                  (decl.start(), decl.end(), "")]
    pieces, pos = [], 0
    for start, end, new in sorted(edits):
        pieces += [text[pos:start], new]
        pos = end
    pieces.append(text[pos:])
    return "".join(pieces), len(edits) // 3


def fold_next_state(text: str) -> tuple[str, int]:
    """`text` with each register's next-state block folded into its clocked block (see
    the module docstring); returns (text, registers folded)."""
    out, pos, total = [], 0, 0
    for m in _MODULE.finditer(text):
        folded, n = _fold_module(m.group(0))
        out += [text[pos:m.start()], folded]
        pos = m.end()
        total += n
    out.append(text[pos:])
    return "".join(out), total
