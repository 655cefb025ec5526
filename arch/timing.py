"""How long a program runs and how long each slice is busy: the one definition.

A program's cycle count is what the chip measures with its clock: the number of
cycles from the one after START is accepted (cycle 0) to the last cycle in which
anything still happens, in any superlane.  Something happens in cycle ``c`` when

* a queue has not halted yet: it issues in ``c`` (NOP, SYNC, NOTIFY and HALT
  included), waits out a NOP or a REPEAT gap, or is parked on a SYNC; or
* a slice column still holds work of an instruction issued in ``t`` with
  ``t <= c <= t + occupancy``.

The *occupancy* of an instruction is the last cycle, counted from its issue in
superlane-0 time, in which a tile of its slice still works on it.  Superlane
``k`` does everything ``k`` cycles after superlane 0, so for most instructions
it is ``L + S - 1`` (the last effect ``t + L``, in the topmost superlane).  The
exceptions come from the MXM's structure (`hdl/mxm.py`): its core (weights,
MACs, accumulators) takes every instruction ``D = 2S + 1`` cycles after issue,
so weight loads and IW occupy it until ``t + 2S + 1``; an MVM that does not
emit ends with its accumulator write, which is one whole-vector memory, in
``t + L``.

So ``cycles = 1 + max(halt cycle of every queue, t + occupancy of every
instruction)``, and a slice's busy cycles are the union of its instructions'
``[t, t + occupancy]``.  The compiler predicts both from this module, the
machine model counts them from this module, and the RTL counts them from its
own pipeline valid bits (no RTL block reads this table): their agreement is the
check that the table describes the hardware.
"""

from __future__ import annotations

from collections.abc import Mapping

from .config import TspConfig
from .isa import DEF_BY_MNEMONIC, IsaError, Latency, latency

#: MXM instructions that pass through the shifted core: D = 2S + 1 cycles after issue
_MXM_CORE = Latency(1, 2)
_CORE_ONLY = frozenset({"LW", "LWT", "IW"})


def occupancy(mnemonic: str, cfg: TspConfig, fields: Mapping[str, int] | None = None) -> int:
    """Cycles from issue (superlane-0 time) to the last cycle in which any superlane
    tile of the slice still works on the instruction (``fields`` matter for MVM:
    without ``emit`` it ends with the accumulator write in ``t + L``; and for SEND: its
    type sets how many beats it sends)."""
    d = DEF_BY_MNEMONIC.get(mnemonic.upper())
    if d is None or d.latency is None:
        raise IsaError(f"{mnemonic!r} is not a slice instruction and has no occupancy")
    L = latency(d.mnemonic, cfg, fields)
    if d.kind == "MXM":
        if d.mnemonic in _CORE_ONLY:
            return _MXM_CORE(cfg)
        if d.mnemonic == "MVM" and not (fields or {}).get("emit", 0):
            return L
    return L + cfg.superlanes - 1


def occupancy_formula(mnemonic: str) -> str:
    """``occupancy`` written in S, for docs/isa.md."""
    d = DEF_BY_MNEMONIC[mnemonic.upper()]
    if d.kind == "MXM" and d.mnemonic in _CORE_ONLY:
        return _MXM_CORE.formula()
    base = Latency(d.latency.base - 1, d.latency.per_superlane + 1,
                   d.latency.per_beat).formula()
    if d.mnemonic == "MVM":
        return f"{base} (emit), {d.latency.formula()} (no emit)"
    if d.mnemonic == "SEND":
        return "wB + S - 1"
    return base


class SliceTimeline:
    """Busy cycles of one slice (the union of ``[t, t + occupancy]``) and the last
    cycle anything of it happens; instructions are added in issue order."""

    __slots__ = ("busy", "until")

    def __init__(self) -> None:
        self.busy = 0
        self.until = -1

    def add(self, t: int, end: int) -> None:
        if t > self.until:
            self.busy += end - t + 1
            self.until = end
        elif end > self.until:
            self.busy += end - self.until
            self.until = end


__all__ = ["SliceTimeline", "occupancy", "occupancy_formula"]
