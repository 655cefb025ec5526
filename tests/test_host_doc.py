"""docs/host.md against the RTL's own definitions (`hdl.host`): every command field,
opcode, register and STATUS bit in the document has the bit range / number the RTL
uses, and every one the RTL defines is documented."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from arch.config import PRESETS
from hdl.host import HostOp, Reg, host_command_layout, status_layout

DOC = Path(__file__).resolve().parents[1] / "docs" / "host.md"


def table(heading: str) -> list[list[str]]:
    """The rows (cells, backticks removed) of the first table after `## heading`."""
    text = DOC.read_text()
    m = re.search(rf"^#+ {re.escape(heading)}\n(.*?)(?=^#+ |\Z)", text, re.M | re.S)
    assert m, f"docs/host.md has no section {heading!r}"
    lines = m.group(1).splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith("|"))
    rows = []
    for ln in lines[start:]:
        if not ln.startswith("|"):
            break
        rows.append(ln)
    assert len(rows) > 2, f"no table in section {heading!r}"
    return [[c.strip().replace("`", "") for c in r.strip("|").split("|")] for r in rows[2:]]


def bits(text: str) -> tuple[int, int]:
    """``[hi:lo]`` or ``[b]`` -> (lo, width); ``[27 + 8*VL - 1 : 27]`` -> (27, -1)."""
    m = re.fullmatch(r"\[(\d+)(?::(\d+))?\]", text.replace(" ", ""))
    if m:
        hi, lo = int(m.group(1)), int(m.group(2) if m.group(2) else m.group(1))
        return lo, hi - lo + 1
    m = re.fullmatch(r"\[(\d+)\+8\*VL-1:(\d+)\]", text.replace(" ", ""))
    assert m and m.group(1) == m.group(2), f"cannot read the bit range {text!r}"
    return int(m.group(2)), -1


@pytest.mark.parametrize("cfg", ["tiny", "small", "full"])
def test_command_layout(cfg):
    cfg = PRESETS[cfg]
    lay = host_command_layout(cfg)
    rows = {r[0]: bits(r[1]) for r in table("Command layout")}
    assert set(rows) == {name for name, _ in lay}
    for name, fld in lay:
        lo, width = rows[name]
        assert lo == fld.offset, name
        assert (width if width != -1 else 8 * cfg.vector_length) == fld.width, name


def test_commands():
    rows = {r[0]: int(r[1]) for r in table("Commands")}
    assert rows == {op.name: int(op) for op in HostOp}


def test_registers():
    rows = {}
    for name, num, *_ in table("Registers"):
        m = re.fullmatch(r"(0x[0-9a-f]+)(?: \+ p)?", num)
        assert m, f"register {name}: cannot read {num!r}"
        rows[name] = int(m.group(1), 16)
    assert rows == {r.name: int(r) for r in Reg}


def test_status_bits():
    lay = status_layout()
    text = DOC.read_text()
    sec = text[text.index("`STATUS` (`status_layout()`)"):]
    lines = [ln for ln in sec.splitlines() if ln.startswith("|")]
    rows = [[c.strip().replace("`", "") for c in ln.strip("|").split("|")] for ln in lines[2:]]
    got = {}
    for r in rows:
        if not r[1].startswith("["):
            break
        got[r[0]] = bits(r[1])
    assert got == {name: (fld.offset, fld.width) for name, fld in lay}


def test_no_stale_status_comment():
    """The register comment in hdl/host.py agrees with the layout (it once said [23:8])."""
    src = (Path(__file__).resolve().parents[1] / "hdl" / "host.py").read_text()
    line = next(ln for ln in src.splitlines() if ln.strip().startswith("STATUS = "))
    fld = status_layout()["error_slice"]
    assert f"[{fld.offset + fld.width - 1}:{fld.offset}] slice" in line
