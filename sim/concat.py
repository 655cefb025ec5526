"""Concatenations of the generated Verilog: a run of one item written as a replication.

Yosys writes every sign or zero extension and every ``Value.replicate`` as a
concatenation listing the repeated bit once per copy (``{ x[31], x[31], ..., x }``:
32 copies for an int32 widened to 64 bits).  Verilator translates such a
concatenation item by item, and when the item is an expression rather than a
signal (a multiplexer of constants, a slice of a sum) it writes the whole
expression again for every copy: the C++ of one VXM lane was 2.4x larger for it,
and the C++ compiler's time grows with it.  `collapse_replications` writes each
run as ``{n{item}}``, which means the same in Verilog (IEEE 1800 11.4.12.1) and
which Verilator evaluates once and replicates.
"""

from __future__ import annotations

import re

_NEXT = re.compile(r'[{"]')
_OPEN = "{(["
_CLOSE = "})]"


def _items(text: str, start: int) -> tuple[list[str], int] | None:
    """The top-level items of the concatenation whose ``{`` is ``text[start]`` and the
    index after its ``}`` (a replication
    ``{n{...}}`` or a nested concatenation shows as an item holding a brace) or None
    if the brace is not closed before a ``;``."""
    depth = 0
    items: list[str] = []
    item_start = start + 1
    i = start + 1
    n = len(text)
    while i < n:
        c = text[i]
        if c == '"':
            end = text.find('"', i + 1)
            if end < 0:
                return None
            i = end
        elif c == ";":
            return None
        elif c in _OPEN:
            depth += 1
        elif c in _CLOSE:
            if depth == 0:
                if c != "}":
                    return None
                items.append(text[item_start:i])
                return items, i + 1
            depth -= 1
        elif c == "," and depth == 0:
            items.append(text[item_start:i])
            item_start = i + 1
        i += 1
    return None


def collapse_replications(text: str) -> tuple[str, int]:
    """`text` with every run of two or more equal adjacent items of a concatenation
    written as one replication; returns (text, runs collapsed).  Items are compared
    without their surrounding spaces; concatenations holding a nested brace are left
    as they are (their inner concatenations are still collapsed)."""
    out: list[str] = []
    runs = 0
    pos = 0
    while True:
        m = _NEXT.search(text, pos)
        if m is None:
            out.append(text[pos:])
            break
        k = m.start()
        if text[k] == '"':  # a string (an attribute's source path): copied as it is
            end = text.find('"', k + 1)
            end = len(text) if end < 0 else end + 1
            out.append(text[pos:end])
            pos = end
            continue
        out.append(text[pos:k])
        parsed = _items(text, k)
        if parsed is None or len(parsed[0]) < 2 or any("{" in it for it in parsed[0]):
            out.append("{")
            pos = k + 1
            continue
        items, end = parsed
        new: list[str] = []
        j = 0
        while j < len(items):
            item = items[j].strip()
            m = j
            while m + 1 < len(items) and items[m + 1].strip() == item:
                m += 1
            if m > j:
                new.append(f" {{{m - j + 1}{{{item}}}}}")
                runs += 1
            else:
                new.append(items[j])
            j = m + 1
        out.append("{" + ",".join(new) + "}")
        pos = end
    return "".join(out), runs


__all__ = ["collapse_replications"]
