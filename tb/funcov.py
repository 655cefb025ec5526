"""Functional coverage of the ISA, measured on the machine model.

``FunctionalCoverage(cfg)`` defines a set of *bins* for a config and counts how often the
programs it samples hit them: ``sample(program, init)`` runs ``golden.machine.Machine``
with an observer (``golden.machine.Observer``) that records every issued instruction
(effective fields after REPEAT strides), every stream register read (with the instruction
that wrote the value), every stream write, every SRAM bank access and every SYNC release,
and counts the bins those events hit.  A program the model refuses counts nothing.  Pure
Python + numpy; no simulator.

Bins (names are dotted; ``report()`` groups them):

* **Opcodes** (group "<KIND> opcodes", derived from ``arch.isa``): for every slice kind
  and every mnemonic of that kind -- the ICU instructions (NOP, REPEAT, SYNC, NOTIFY,
  HALT) included, one bin each per kind (``MEM.SYNC``) -- one bin per stream operand
  role, direction and data type: ``MEM.GATHER.idx.W.u8`` = a GATHER whose ``idx``
  operand is on a westward stream.  An instruction with several stream operands has bins
  for each role separately (not their cross product: the roles are decoded and routed
  independently).  The type of a role is the instruction's ``type`` field (result roles:
  ``otype`` if there is one); instructions without a type field move bytes whose meaning
  is fixed (``_UNTYPED``: i8 for MEM data, MXM weights and activations, u8 for MEM
  indices, i32 for MVM results, u16 for PMAP maps).  Optional operands (MVM ``emit=``,
  ``lw=``/``lwt=``) count only when present.  An instruction without stream operands
  (IW) has one bin.  VXM operands are selectors: ``VXM.VXM.a.E.i16`` (stream) plus
  ``VXM.VXM.a.reg|imm|lane`` and ``VXM.VXM.d.reg``.
* **Modes** (group "<KIND> modes"): every value of every flag/mode field
  (``MXM.MVM.ld=2``, ``VXM.VXM.sat=1``) and every ``type:otype`` pair of the instructions
  that have both (``SXM.RSUM.u8:i32``).
* **VXM groups** (configs with ``vxm_groups`` > 1): every group issues (``vxm.group.VXM1``);
  their stream hand-offs are the ``stream.adjacent.VXM>VXM.*`` bins below.
* **VXM ALU ops**: every op of ``arch.isa.VXM_OPS`` x operand type (``VXM.REQUANT.i32``),
  in either stage; **VXM ALU stages**: every op as op1 and (binary/unary ops but PASS,
  which means "no stage 2") as op2.
* **Field ranges**: every address/row/slot/shift/lane/map/imm field at the minimum and
  maximum of its legal range on the config (and 0 for signed ranges; a multi-row weight
  load's ``extra`` where ``mxm_load_rows`` > 1), stream fields at s0 and with the value's
  last byte plane (a multi-row load's last stream) on the last stream.
* **Timing** (hazard-adjacent cases; the earliest legal cycles are those of
  golden/machine.py): stream forwarding at distance 1 per (producer kind, consumer kind,
  direction), a value read by several slices, a slice overwriting a stream that carries a
  value (and reading that value in the same cycle), out-of-order result writes of one
  slice; MEM bank switches between instructions issued in back-to-back cycles (read/write
  x bank order; WRITE then READ means the write lands in the read's cycle), a
  READ/GATHER of an address in the first cycle after its SRAM write;
  VXM register read in the first cycle its write is visible / while it is in flight /
  read-modify-write; SXM PERM in the first cycle after a PMAP / with the PMAP in flight;
  MXM IW in the cycle the last shadow load lands (per load instruction), MVM right
  after IW, MVM ``lw=``/``lwt=`` at full rate (and, with ``mxm_load_rows`` > 1, with
  ``rows=`` > 1), MVM-IW-MVM, back-to-back accumulation;
  REPEAT with A/B strides, negative strides and d = 1 per slice kind; SYNC/NOTIFY
  barriers.  Each bin family is defined once in ``_FAMILIES`` (name template, one-line
  description); ``bins()`` lists only the bins reachable on the config (directions with a
  slice upstream, adjacent kinds of the floorplan, types whose byte planes fit the
  streams, latencies that can reorder).

Counts are occurrences (an instruction per issue, repetitions included; stream bins per
byte plane).  Runs in several processes merge through ``to_json()`` /
``FunctionalCoverage.from_json(text)`` and ``merge(other)``::

    cov = FunctionalCoverage("small")
    for rp in programs:
        assert cov.sample(rp.program, rp.init) is None
    print(cov.report())
"""

from __future__ import annotations

import json
import textwrap
from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from arch.config import TspConfig, get_config
from arch.isa import (
    DEFS,
    DIRS,
    SEL_REG,
    SLICE_KINDS,
    TYPE_BYTES,
    TYPES,
    VXM_OPS,
    InstrDef,
    available,
    latency,
    sel_kind,
    stride_fields,
)
from arch.program import Program
from golden.machine import Machine, MachineError, Observer

__all__ = ["Bin", "FunctionalCoverage"]

JSON_FORMAT = 1

#: data type of the stream roles of instructions without a ``type`` field: (kind, role)
_UNTYPED = {
    ("MEM", "in"): "i8", ("MEM", "out"): "i8", ("MEM", "idx"): "u8",
    ("MXM", "w"): "i8", ("MXM", "x"): "i8", ("MXM", "out"): "i32",
    ("SXM", "in"): "u16",  # PMAP: a uint16 lane index per lane
    ("TPUT", "in"): "i8", ("TGET", "out"): "i8",  # the transposer moves bytes
    ("C2C", "in"): "i8", ("C2C", "out"): "i8",
}
_WIDTH = {**TYPE_BYTES, "u16": 2}
#: result roles (all other stream roles are read at issue)
_OUT_ROLES = ("out", "d")
#: optional operands (arch.isa.Operand kinds): gate field and the fields it enables
_GATED = {"emit": ("emit", ("out_s", "out_d")),
          "load": ("ld", ("row", "w_s", "w_d", "extra")),
          "store": ("wr", ("waddr", "in_s", "in_d"))}
#: gate field -> the fields it enables (range bins of an absent operand do not count)
_GATED_FIELDS = dict(_GATED.values())
#: MVM ``ld`` values: the assembler keyword (lw=ROW@s / lwt=COL@s) and the instruction it
#: behaves like
_LD = {1: ("lw", "LW"), 2: ("lwt", "LWT")}
#: field domains whose range ends are bins
_RANGE_DOMAINS = ("addr", "row", "acc", "map", "shift_local", "shift_vector", "lane", "imm",
                  "trow", "tcol", "trows", "ldx")
_MODE_DOMAINS = ("flag", "ld", "rw")
_VXM_SRC = tuple(sorted({sel_kind(v) for v in range(128)} - {"bad", "none", "stream"}))
_VXM_DST = ("reg",)  # besides streams (arch.isa.validate)
_OP = {op.code: op for op in VXM_OPS}

#: family -> (group, name template, description template).  The name is formatted with
#: the parameters a hit knows; the description may use more.
_FAMILIES: dict[str, tuple[str, str, str]] = {
    "icu": ("{k} opcodes", "{k}.{m}", "{m} issued by a {k} queue"),
    "op": ("{k} opcodes", "{k}.{m}", "{m} issued"),
    "role": ("{k} opcodes", "{k}.{m}.{r}.{d}.{t}",
             "{m} with operand {r} on a {d}-ward stream, as {t}"),
    "vsel": ("VXM opcodes", "VXM.VXM.{r}.{src}", "VXM operand {r} is a {src}"),
    "vgroup": ("VXM groups", "vxm.group.{g}", "a VXM word issued by group {g} (configs "
               "with two or more VXM groups)"),
    "mode": ("{k} modes", "{k}.{m}.{f}={v}", "{m} with field {f} = {v}"),
    "conv": ("{k} modes", "{k}.{m}.{t}:{o}", "{m} of type {t} with result type {o}"),
    "valu": ("VXM ALU ops", "VXM.{op}.{t}", "ALU op {op} (either stage) on type {t}"),
    "vstage": ("VXM ALU stages", "VXM.op{n}.{op}", "{op} as the stage-{n} op"),
    "range": ("field ranges", "{k}.{m}.{f}={w}", "{m} with {f} = {v} ({how})"),
    "srange": ("field ranges", "{k}.{m}.{f}={w}", "{m} with operand {r} {v}"),
    # -- streams
    "adjacent": ("streams", "stream.adjacent.{p}>{c}.{d}",
                 "a {c} reads a value that the {p} next to it wrote on a {d}-ward stream, in "
                 "the first cycle it can arrive (write cycle + 1)"),
    "multicast": ("streams", "stream.multicast.{d}",
                  "one value on a {d}-ward stream read by two or more slices as it passes"),
    "overwrite": ("streams", "stream.overwrite.{k}.{d}",
                  "a {k} writes a {d}-ward stream in the cycle a value from upstream is at its "
                  "position (replacing it downstream)"),
    "replace": ("streams", "stream.read_and_replace.{k}",
                "a {k} reads a stream value and overwrites that stream in the same cycle"),
    "reorder": ("streams", "stream.write_reorder.{k}",
                "a {k} writes a result before an instruction it issued earlier writes its "
                "own (shorter latency overtakes)"),
    # -- MEM
    "bank_switch": ("MEM timing", "mem.bank_switch.{a}{b}>{c}{e}",
                    "one MEM slice issues an SRAM {an} of bank {b} in cycle t and a {cn} of "
                    "bank {e} in t+1{note}"),
    "raw": ("MEM timing", "mem.raw_earliest.{w}>{r}",
            "{r} reads an address (in some lane) in the first cycle after a {w} wrote it "
            "(issue + 2; issue + 1 is a bank conflict)"),
    # -- VXM
    "reg_raw": ("VXM timing", "vxm.reg_raw_earliest",
                "an operand register read in the first cycle its write is visible "
                "(write cycle + 1)"),
    "requant_raw": ("VXM timing", "vxm.requant_param_earliest",
                    "REQUANT reads a parameter register rK..rK+2 in the first cycle its write "
                    "is visible"),
    "reg_inflight": ("VXM timing", "vxm.reg_read_in_flight",
                     "a register read while an earlier instruction's write to it is in flight "
                     "(the old value is read)"),
    "reg_rmw": ("VXM timing", "vxm.reg_read_modify_write",
                "one instruction reads a register and writes it"),
    # -- SXM
    "perm_raw": ("SXM timing", "sxm.perm_after_pmap_earliest",
                 "PERM with map m in the first cycle a PMAP to m is visible (write cycle + 1)"),
    "perm_inflight": ("SXM timing", "sxm.perm_map_in_flight",
                      "PERM with map m while a PMAP to m is in flight (the old map is used)"),
    "tget_raw": ("SXM timing", "sxm.tget_after_tput",
                 "TGET reading a transposer row in the first cycle a TPUT's write of it is "
                 "visible (write cycle + 1)"),
    "tget_inflight": ("SXM timing", "sxm.tget_sees_old_row",
                      "TGET reading a transposer row while a TPUT to it is in flight (the old "
                      "row is read)"),
    # -- MXM
    "iw_earliest": ("MXM timing", "mxm.iw_at_load_done.{src}",
                    "IW in the cycle the last shadow load ({src}) lands: the earliest legal IW"),
    "mvm_after_iw": ("MXM timing", "mxm.mvm_after_iw",
                     "MVM in the cycle after an IW (the first MVM on the new weights)"),
    "mvm_load_b2b": ("MXM timing", "mxm.mvm_{ld}_b2b",
                     "MVM with {ld}= the cycle after another MVM (shadow load at full MVM rate)"),
    "mvm_rows_b2b": ("MXM timing", "mxm.mvm_{ld}_rows_b2b",
                     "MVM with {ld}= and rows > 1 the cycle after another MVM (a multi-row "
                     "shadow load at full MVM rate; configs with mxm_load_rows > 1)"),
    "swap_b2b": ("MXM timing", "mxm.mvm_iw_mvm",
                 "MVM, IW, MVM in consecutive cycles (weights swapped between two MVMs)"),
    "accum_b2b": ("MXM timing", "mxm.accum_b2b",
                  "MVM accumulating into the slot the MVM of the previous cycle wrote"),
    # -- ICU
    "rep_stride": ("REPEAT", "repeat.{k}.stride_{x}",
                   "REPEAT of a {k} instruction advancing its {X}-stride fields"),
    "rep_neg": ("REPEAT", "repeat.{k}.negative",
                "REPEAT of a {k} instruction with a negative stride"),
    "rep_b2b": ("REPEAT", "repeat.{k}.d1",
                "REPEAT of a {k} instruction with d = 1 (repetitions back to back)"),
    "release": ("barrier", "barrier.release.{k}", "a {k} queue parked by SYNC released by "
                "a NOTIFY"),
    "same_cycle": ("barrier", "barrier.same_cycle",
                   "a SYNC released by a NOTIFY issued in the same cycle"),
    "all": ("barrier", "barrier.all", "one NOTIFY releases every other queue (start barrier)"),
}


@dataclass(frozen=True)
class Bin:
    name: str
    group: str
    doc: str


@dataclass(frozen=True)
class _Role:
    name: str
    output: bool
    #: gate field (the role is used only when it is nonzero) or None
    gate: str | None
    #: data types the role can carry ("" = a VXM selector)
    dtypes: tuple[str, ...]
    #: field whose value is the type (None: fixed, dtypes[0])
    type_field: str | None


def _roles(d: InstrDef) -> list[_Role]:
    """Stream operand roles of a slice instruction (VXM: the selectors a, b, c, d)."""
    gates = {}  # field -> gate field of its optional operand
    for o in d.operands:
        if o.kind in _GATED:
            g, fs = _GATED[o.kind]
            gates.update(dict.fromkeys(fs, g))
    names = d.field_names
    if d.mnemonic == "VXM":
        return [_Role(r, r in _OUT_ROLES, None, TYPES, "otype" if r in _OUT_ROLES else "type")
                for r in "abcd"]
    out = []
    for f in d.fields:
        if f.domain not in ("stream", "rw_stream"):
            continue
        r = f.name[:-2]
        output = r in _OUT_ROLES
        if "type" in names:
            tf = "otype" if output and "otype" in names else "type"
            out.append(_Role(r, output, gates.get(f.name), TYPES, tf))
        else:
            dt = _UNTYPED.get((d.mnemonic, r)) or _UNTYPED[(d.kind, r)]
            out.append(_Role(r, output, gates.get(f.name), (dt,), None))
    return out


def _strides(d: InstrDef, cfg) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """`stride_fields` that can change on ``cfg`` (READ's waddr only with mem_read_write)."""
    return tuple(tuple(n for n in fs if d.field(n).bounds(cfg)[1] > d.field(n).bounds(cfg)[0])
                 for fs in stride_fields(d))


def _used(role: _Role, f: Mapping[str, int]) -> bool:
    return role.gate is None or bool(f[role.gate])


def _dtype(role: _Role, f: Mapping[str, int]) -> str:
    return TYPES[f[role.type_field]] if role.type_field else role.dtypes[0]


class _Collector(Observer):
    def __init__(self):
        self.issues, self.reads, self.writes, self.srams, self.releases = [], [], [], [], []

    def on_issue(self, ev):
        self.issues.append(ev)

    def on_stream_read(self, ev):
        self.reads.append(ev)

    def on_stream_write(self, ev):
        self.writes.append(ev)

    def on_sram(self, ev):
        self.srams.append(ev)

    def on_release(self, ev):
        self.releases.append(ev)


class FunctionalCoverage:
    """Bins of ``cfg`` (see the module doc) and their hit counts over sampled programs.

    ``hits`` counts hits per bin name; ``programs``/``refused`` count sampled programs;
    ``unexpected`` counts hits of names that are not bins (a bug of the bin derivation:
    something ``bins()`` calls unreachable happened)."""

    def __init__(self, cfg: TspConfig | str | None = None):
        self.cfg = cfg = get_config(cfg)
        self.hits: Counter = Counter()
        self.unexpected: Counter = Counter()
        self.programs = 0
        self.refused = 0
        self._kind_at = [s.kind for s in cfg.slices]
        #: the slice kinds this config has (C2C only with links)
        self._kinds = [k for k in SLICE_KINDS if cfg.slices_of(k)]
        # (a stream operand the config cannot use has no role: READ's w= without
        # mem_read_write)
        self._roles = {(k, m): [r for r in _roles(d)
                                if m == "VXM" or d.field(f"{r.name}_s").bounds(cfg)[1] > 0]
                       for k in SLICE_KINDS for m, d in DEFS[k].items() if not d.is_icu}
        #: the instructions of each kind this config has (no TPUT/TGET without transposers)
        self._defs = {k: {m: d for m, d in DEFS[k].items() if available(m, cfg)}
                      for k in SLICE_KINDS}
        self._bins: dict[str, Bin] = {}
        self._define()

    # ------------------------------------------------------------------ definitions
    def _add(self, family: str, **p) -> None:
        group, name, doc = _FAMILIES[family]
        name = name.format(**p)
        assert name not in self._bins, name
        self._bins[name] = Bin(name, group.format(**p), doc.format(**p))

    def _reads_dir(self, kind: str, d: str) -> bool:
        """Some slice of ``kind`` has a slice upstream in direction ``d``."""
        last = self.cfg.n_positions - 1
        return any((s.index > 0) if d == "E" else (s.index < last)
                   for s in self.cfg.slices_of(kind))

    def _writes_dir(self, kind: str, d: str) -> bool:
        """Some slice of ``kind`` has a slice downstream in direction ``d``."""
        return self._reads_dir(kind, "W" if d == "E" else "E")

    def _passes(self, kind: str) -> bool:
        """Values flow past some slice of ``kind`` (it has neighbours on both sides, so a
        slice upstream and one downstream in either direction)."""
        last = self.cfg.n_positions - 1
        return any(0 < s.index < last for s in self.cfg.slices_of(kind))

    def _fits(self, t: str) -> bool:
        return _WIDTH[t] <= self.cfg.streams_per_direction

    def _define(self) -> None:
        cfg = self.cfg
        ns = cfg.streams_per_direction
        if cfg.vxm_groups > 1:
            for s in cfg.slices_of("VXM"):
                self._add("vgroup", g=s.name)
        for k in self._kinds:
            for m, d in self._defs[k].items():
                if d.is_icu:
                    self._add("icu", k=k, m=m)
                    continue
                roles = self._roles[(k, m)]
                if not roles:
                    self._add("op", k=k, m=m)
                for r in roles:
                    ok_dir = self._writes_dir if r.output else self._reads_dir
                    for dr in DIRS:
                        if not ok_dir(k, dr):
                            continue
                        for t in r.dtypes:
                            if self._fits(t):
                                self._add("role", k=k, m=m, r=r.name, d=dr, t=t)
                    if m == "VXM":
                        for src in (_VXM_DST if r.output else _VXM_SRC):
                            self._add("vsel", r=r.name, src=src)
                for f in d.fields:
                    if f.domain in _MODE_DOMAINS:
                        lo, hi = f.bounds(cfg)
                        for v in range(lo, hi + 1) if hi > lo else ():  # (READ's wr w/o rw)
                            self._add("mode", k=k, m=m, f=f.name, v=v)
                if "type" in d.field_names and "otype" in d.field_names:
                    for t in TYPES:
                        for o in TYPES:
                            if self._fits(t) and self._fits(o):
                                self._add("conv", k=k, m=m, t=t, o=o)
        for op in VXM_OPS:
            for t in TYPES:
                if self._fits(t):
                    self._add("valu", op=op.name, t=t)
        for op in VXM_OPS:
            self._add("vstage", n=1, op=op.name)
        for op in VXM_OPS:
            if op.arity < 3 and op.name != "PASS":
                self._add("vstage", n=2, op=op.name)
        # field ranges
        for k in self._kinds:
            for m, d in self._defs[k].items():
                if d.is_icu:
                    continue
                for f in d.fields:
                    if f.domain in _RANGE_DOMAINS:
                        lo, hi = f.bounds(cfg)
                        if lo == hi:
                            continue
                        self._add("range", k=k, m=m, f=f.name, w="min", v=lo,
                                  how="the lowest legal value")
                        self._add("range", k=k, m=m, f=f.name, w="max", v=hi,
                                  how="the highest legal value")
                        if lo < 0 < hi:
                            self._add("range", k=k, m=m, f=f.name, w="0", v=0,
                                      how="zero in a signed range")
                for r in self._roles[(k, m)]:
                    if m == "VXM":
                        continue
                    self._add("srange", k=k, m=m, f=f"{r.name}_s", w="min", r=r.name,
                              v="starting on s0")
                    self._add("srange", k=k, m=m, f=f"{r.name}_s", w="max", r=r.name,
                              v=f"ending on the last stream s{ns - 1}")
        # streams
        kinds_at = self._kind_at
        for dr in DIRS:
            step = 1 if dr == "E" else -1
            pairs = {(kinds_at[p], kinds_at[p + step]) for p in range(cfg.n_positions)
                     if 0 <= p + step < cfg.n_positions}
            for p, c in sorted(pairs):
                self._add("adjacent", p=p, c=c, d=dr)
        for dr in DIRS:
            if cfg.n_positions >= 3:
                self._add("multicast", d=dr)
        for k in self._kinds:
            for dr in DIRS:
                if self._passes(k):
                    self._add("overwrite", k=k, d=dr)
        for k in self._kinds:
            if self._passes(k):
                self._add("replace", k=k)
        for k in self._kinds:
            lats = {latency(m, cfg) for m, d in self._defs[k].items() if not d.is_icu
                    and any(r.output for r in self._roles[(k, m)])}
            if lats and max(lats) - min(lats) >= 2:
                self._add("reorder", k=k)
        # MEM: SRAM readers have a result stream, writers take a data stream
        ops = {"R": "read", "W": "write"}
        banks = range(cfg.mem_banks)
        for a in ops:
            for b in banks:
                for c in ops:
                    for e in banks:
                        if b != e:
                            note = (" (the write lands in the cycle of the read: same bank "
                                    "is a conflict)") if a + c == "WR" else ""
                            self._add("bank_switch", a=a, b=b, c=c, e=e, an=ops[a], cn=ops[c],
                                      note=note)
        readers, writers = self._mem_readers_writers()
        for w in writers:
            for r in readers:
                self._add("raw", w=w, r=r)
        for fam in ("reg_raw", "requant_raw", "reg_inflight", "reg_rmw", "perm_raw",
                    "perm_inflight"):
            self._add(fam)
        if cfg.sxm_transpose_rows:
            self._add("tget_raw")
            self._add("tget_inflight")
        for src in self._loaders():
            self._add("iw_earliest", src=src)
        self._add("mvm_after_iw")
        for ld, _ in _LD.values():
            self._add("mvm_load_b2b", ld=ld)
        if cfg.mxm_load_rows > 1:
            for ld, _ in _LD.values():
                self._add("mvm_rows_b2b", ld=ld)
        self._add("swap_b2b")
        self._add("accum_b2b")
        # REPEAT
        for k in self._kinds:
            classes = set()
            for d in self._defs[k].values():
                fa, fb = _strides(d, self.cfg)
                classes |= {x for x, fs in (("a", fa), ("b", fb)) if fs}
            for x in sorted(classes):
                self._add("rep_stride", k=k, x=x, X=x.upper())
            if classes:
                self._add("rep_neg", k=k)
            self._add("rep_b2b", k=k)
        for k in self._kinds:
            self._add("release", k=k)
        self._add("same_cycle")
        self._add("all")

    @staticmethod
    def _mem_readers_writers() -> tuple[list[str], list[str]]:
        readers, writers = [], []
        for m, d in DEFS["MEM"].items():
            if d.is_icu:
                continue
            roles = {r.name for r in _roles(d)}
            (readers if "out" in roles else writers).append(m)
        return readers, writers

    @staticmethod
    def _loaders() -> list[str]:
        """MXM instructions that load the shadow buffer: those with a weight operand."""
        out = []
        for m, d in DEFS["MXM"].items():
            if d.is_icu:
                continue
            for r in _roles(d):
                if r.name == "w":
                    out += ([f"{m}.{kw}" for kw, _ in _LD.values()] if r.gate else [m])
        return out

    # ------------------------------------------------------------------ API
    def bins(self) -> list[Bin]:
        """Every bin defined for the config, in report order."""
        return list(self._bins.values())

    def groups(self) -> dict[str, list[Bin]]:
        out: dict[str, list[Bin]] = {}
        for b in self._bins.values():
            out.setdefault(b.group, []).append(b)
        return out

    def missed(self, group: str | None = None) -> list[str]:
        return [b.name for b in self._bins.values()
                if not self.hits[b.name] and (group is None or b.group == group)]

    def coverage(self) -> float:
        """Fraction of the bins hit."""
        return sum(1 for n in self._bins if self.hits[n]) / len(self._bins)

    def sample(self, program: Program, init: Mapping[str, Mapping[int, np.ndarray]] | None
               = None, max_cycles: int = 1_000_000) -> str | None:
        """Run ``program`` on a fresh model (SRAM from ``init``: slice -> {addr: vector})
        and count the bins it hits.  Returns None, or the model's error for a refused
        program (which counts nothing)."""
        col = _Collector()
        m = Machine(self.cfg, observer=col)
        for sl, d in (init or {}).items():
            for a, v in d.items():
                m.write_mem(sl, a, v)
        try:
            m.load_program(program)
            m.run(max_cycles=max_cycles)
        except MachineError as exc:
            self.refused += 1
            return str(exc)
        hits = _Analysis(self, col).hits
        for name, n in hits.items():
            (self.hits if name in self._bins else self.unexpected)[name] += n
        self.programs += 1
        return None

    def merge(self, other: FunctionalCoverage) -> FunctionalCoverage:
        """Add ``other``'s counts (same config) to this one; returns self."""
        if other.cfg.stable_hash() != self.cfg.stable_hash():
            raise ValueError(f"cannot merge coverage of config {other.cfg.name!r} into "
                             f"{self.cfg.name!r}")
        self.hits.update(other.hits)
        self.unexpected.update(other.unexpected)
        self.programs += other.programs
        self.refused += other.refused
        return self

    def to_json(self) -> str:
        return json.dumps({
            "format": JSON_FORMAT, "config": self.cfg.to_dict(), "programs": self.programs,
            "refused": self.refused, "hits": dict(sorted(self.hits.items())),
            "unexpected": dict(sorted(self.unexpected.items())),
        }, indent=1)

    @classmethod
    def from_json(cls, text: str) -> FunctionalCoverage:
        d = json.loads(text)
        if d.get("format") != JSON_FORMAT:
            raise ValueError(f"not a functional coverage file of format {JSON_FORMAT}")
        cov = cls(TspConfig.from_dict(d["config"]))
        unknown = sorted(set(d["hits"]) - set(cov._bins))
        if unknown:
            raise ValueError(f"coverage file has hits of bins this version does not define: "
                             f"{unknown[:5]}{' ...' if len(unknown) > 5 else ''}")
        cov.hits.update(d["hits"])
        cov.unexpected.update(d.get("unexpected", {}))
        cov.programs, cov.refused = d["programs"], d["refused"]
        return cov

    def report(self, width: int = 100) -> str:
        """Per group: bins hit / defined, percent and the names of the missed bins."""
        total = len(self._bins)
        hit = sum(1 for n in self._bins if self.hits[n])
        lines = [f"functional coverage, config {self.cfg.name}: {self.programs} programs "
                 f"({self.refused} refused), {hit}/{total} bins hit ({100 * hit / total:.1f} %)",
                 f"  {'group':<18} {'hit':>5} / {'bins':<5} {'%':>6}"]
        for g, bins in self.groups().items():
            h = sum(1 for b in bins if self.hits[b.name])
            lines.append(f"  {g:<18} {h:>5} / {len(bins):<5} {100 * h / len(bins):6.1f}")
            miss = [b.name for b in bins if not self.hits[b.name]]
            if miss:
                lines += textwrap.wrap("missed: " + ", ".join(miss), width,
                                       initial_indent="      ", subsequent_indent="        ")
        if self.unexpected:
            lines.append(f"  NOT A BIN (bin derivation bug): {dict(self.unexpected)}")
        return "\n".join(lines)


class _Analysis:
    """The bins one run hit (from the events a _Collector recorded)."""

    def __init__(self, cov: FunctionalCoverage, col: _Collector):
        self.cov, self.cfg = cov, cov.cfg
        self.hits: Counter = Counter()
        self._kind_at = cov._kind_at
        self._issues(col.issues)
        self._streams(col.reads, col.writes)
        self._sram(col.srams)
        self._barrier(col.issues, col.releases)

    def hit(self, family: str, **p) -> None:
        self.hits[_FAMILIES[family][1].format(**p)] += 1

    # -- instructions ---------------------------------------------------------------
    def _issues(self, issues) -> None:
        ns = self.cfg.streams_per_direction
        last = {}  # slice -> its last slice-instruction IssueEvent (for REPEAT)
        per_slice = defaultdict(list)
        for e in issues:
            k, m, f = e.kind, e.mnemonic, e.fields
            if e.latency is None:
                self.hit("icu", k=k, m=m)
                if m == "REPEAT":
                    self._repeat(k, DEFS[k][last[e.slice].mnemonic], f)
                continue
            last[e.slice] = e
            per_slice[e.slice].append(e)
            if k == "VXM" and self.cfg.vxm_groups > 1:
                self.hit("vgroup", g=e.slice)
            d = DEFS[k][m]
            roles = self.cov._roles[(k, m)]
            if not roles:
                self.hit("op", k=k, m=m)
            for r in roles:
                if not _used(r, f):
                    continue
                if m == "VXM":
                    sk = sel_kind(f[r.name])
                    if sk == "none":
                        continue
                    if sk != "stream":
                        self.hit("vsel", r=r.name, src=sk)
                        continue
                    dr = DIRS[f[r.name] >> 5]
                else:
                    dr = DIRS[f[f"{r.name}_d"]]
                    s = f[f"{r.name}_s"]
                    if s == 0:
                        self.hit("srange", k=k, m=m, f=f"{r.name}_s", w="min")
                    # (a multi-row weight load's last stream is w + extra)
                    n = f["extra"] + 1 if r.name == "w" and "extra" in f else _WIDTH[_dtype(r, f)]
                    if s + n == ns:
                        self.hit("srange", k=k, m=m, f=f"{r.name}_s", w="max")
                self.hit("role", k=k, m=m, r=r.name, d=dr, t=_dtype(r, f))
            gated = {fn for r in roles if not _used(r, f) for fn in _GATED_FIELDS.get(r.gate, ())}
            for fd in d.fields:
                if fd.domain in _MODE_DOMAINS:
                    if fd.bounds(self.cfg)[1] > fd.bounds(self.cfg)[0]:  # (see _define)
                        self.hit("mode", k=k, m=m, f=fd.name, v=f[fd.name])
                elif fd.domain in _RANGE_DOMAINS and fd.name not in gated:
                    lo, hi = fd.bounds(self.cfg)
                    v = f[fd.name]
                    if lo == hi:
                        continue
                    for w, x in (("min", lo), ("max", hi), ("0", 0)):
                        if v == x and (w != "0" or lo < 0 < hi):
                            self.hit("range", k=k, m=m, f=fd.name, w=w)
            if "otype" in f and "type" in f:
                self.hit("conv", k=k, m=m, t=TYPES[f["type"]], o=TYPES[f["otype"]])
            if m == "VXM":
                t = TYPES[f["type"]]
                op1, op2 = _OP[f["op1"]], _OP[f["op2"]]
                self.hit("valu", op=op1.name, t=t)
                self.hit("vstage", n=1, op=op1.name)
                if op2.name != "PASS":
                    self.hit("valu", op=op2.name, t=t)
                    self.hit("vstage", n=2, op=op2.name)
        for evs in per_slice.values():
            kind = evs[0].kind
            if kind == "VXM":
                self._vxm_timing(evs)
            elif kind == "SXM":
                self._sxm_timing(evs)
            elif kind == "MXM":
                self._mxm_timing(evs)

    def _repeat(self, k: str, d: InstrDef, f) -> None:
        if f["n"] < 1:
            return
        if f["d"] == 1:
            self.hit("rep_b2b", k=k)
        fa, fb = _strides(d, self.cfg)
        for x, fs in (("a", fa), ("b", fb)):
            st = f[f"stride_{x}"]
            if fs and st:
                self.hit("rep_stride", k=k, x=x)
                if st < 0:
                    self.hit("rep_neg", k=k)

    def _vxm_timing(self, evs) -> None:
        writes: dict[int, list[tuple[int, int]]] = defaultdict(list)  # reg -> (issue, write)
        for e in evs:
            f, c = e.fields, e.cycle
            ops = [r - SEL_REG for r in (f[x] for x in "abc") if sel_kind(r) == "reg"]
            params = []
            for op, x in ((_OP[f["op1"]], "b"), (_OP[f["op2"]], "c")):
                if op.name == "REQUANT":
                    params += [f[x] - SEL_REG + i for i in range(3)]
            for regs, fam in ((ops, "reg_raw"), (params, "requant_raw")):
                for r in regs:
                    ws = writes.get(r, ())
                    if any(w == c - 1 for _, w in ws):
                        self.hit(fam)
                    if any(t < c <= w for t, w in ws):
                        self.hit("reg_inflight")
            if sel_kind(f["d"]) == "reg":
                r = f["d"] - SEL_REG
                if r in ops or r in params:
                    self.hit("reg_rmw")
                writes[r].append((c, c + e.latency))

    def _sxm_timing(self, evs) -> None:
        pmaps: dict[int, tuple[int, int]] = {}  # map -> (issue, write cycle) of the last PMAP
        trows: dict[int, tuple[int, int]] = {}  # transposer row -> (issue, write) of a TPUT
        for e in evs:
            f, c = e.fields, e.cycle
            if e.mnemonic == "TPUT":
                trows[f["row"]] = (c, c + e.latency)
            elif e.mnemonic == "TGET":
                ws = [trows[r] for r in range(f["rows"]) if r in trows]
                if any(w == c - 1 for _, w in ws):
                    self.hit("tget_raw")
                if any(t < c <= w for t, w in ws):
                    self.hit("tget_inflight")
            elif e.mnemonic == "PMAP":
                pmaps[f["map"]] = (c, c + e.latency)
            elif "map" in f and f["map"] in pmaps:
                t, w = pmaps[f["map"]]
                if w == c - 1:
                    self.hit("perm_raw")
                elif t < c <= w:
                    self.hit("perm_inflight")

    def _mxm_timing(self, evs) -> None:
        land, land_src = -1, ""
        mvm: dict[int, Mapping[str, int]] = {}
        iws = set()
        for e in evs:
            f, c, m = e.fields, e.cycle, e.mnemonic
            if m == "IW":
                iws.add(c)
                if land == c:
                    self.hit("iw_earliest", src=land_src)
                continue
            if m == "MVM":
                mvm[c] = f
                if c - 1 in iws:
                    self.hit("mvm_after_iw")
                prev = mvm.get(c - 1)
                if prev is not None:
                    if f["ld"]:
                        self.hit("mvm_load_b2b", ld=_LD[f["ld"]][0])
                        if f["extra"]:
                            self.hit("mvm_rows_b2b", ld=_LD[f["ld"]][0])
                    if f["accum"] and prev["acc"] == f["acc"]:
                        self.hit("accum_b2b")
                if f["ld"]:
                    kw, like = _LD[f["ld"]]
                    w, src = c + latency(like, self.cfg), f"MVM.{kw}"
                else:
                    continue
            else:  # LW, LWT
                w, src = c + e.latency, m
            if w >= land:
                land, land_src = w, src
        for c in iws:
            if c - 1 in mvm and c + 1 in mvm:
                self.hit("swap_b2b")

    # -- streams ----------------------------------------------------------------------
    def _streams(self, reads, writes) -> None:
        kind_at = self._kind_at
        consumers = defaultdict(set)  # value (dir, stream, producer pos, write cycle) -> pos
        read_at = set()
        for r in reads:
            if abs(r.position - r.producer_position) == 1:
                self.hit("adjacent", p=kind_at[r.producer_position], c=r.kind, d=r.direction)
            consumers[(r.direction, r.stream, r.producer_position, r.producer_cycle)].add(
                r.position)
            read_at.add((r.direction, r.stream, r.position, r.cycle))
        for (dr, *_), pos in consumers.items():
            if len(pos) > 1:
                self.hit("multicast", d=dr)
        diag = defaultdict(list)
        for w in writes:
            key = w.cycle - w.position if w.direction == "E" else w.cycle + w.position
            diag[(w.direction, w.stream, key)].append(w)
        last = self.cfg.n_positions - 1
        for (dr, s, _), ws in diag.items():
            ws.sort(key=lambda w: w.position if dr == "E" else -w.position)
            for w in ws[1:]:
                if w.position == (last if dr == "E" else 0):
                    continue  # the write leaves the chip: nothing downstream to replace
                self.hit("overwrite", k=w.kind, d=dr)
                if (dr, s, w.position, w.cycle) in read_at:
                    self.hit("replace", k=w.kind)
        # out-of-order results of one slice
        by_slice = defaultdict(dict)  # slice -> issue cycle -> write cycle
        for w in writes:
            by_slice[(w.slice, w.kind)][w.issue_cycle] = w.cycle
        for (_, kind), iw in by_slice.items():
            latest = -1
            for t in sorted(iw):
                if iw[t] < latest:
                    self.hit("reorder", k=kind)
                latest = max(latest, iw[t])

    # -- SRAM ------------------------------------------------------------------------
    def _sram(self, srams) -> None:
        by = defaultdict(lambda: defaultdict(list))  # slice -> SRAM cycle -> events
        issued = defaultdict(dict)  # slice -> issue cycle -> event
        for e in srams:
            by[e.slice][e.cycle].append(e)
            issued[e.slice][e.issue_cycle] = e
        for iss in issued.values():
            for t, a in iss.items():
                b = iss.get(t + 1)
                if b is not None and len(a.banks) == len(b.banks) == 1 and a.banks != b.banks:
                    self.hit("bank_switch", a=a.op[0].upper(), b=a.banks[0],
                             c=b.op[0].upper(), e=b.banks[0])
        vl = self.cfg.vector_length
        for cyc in by.values():
            for c, evs in cyc.items():
                for r in evs:
                    if r.op != "read":
                        continue
                    for w in cyc.get(c - 1, ()):
                        if w.op == "write" and np.any(np.broadcast_to(r.addrs, vl)
                                                      == np.broadcast_to(w.addrs, vl)):
                            # (the write of a READ ..., w= word is a WRITE)
                            wm = "WRITE" if w.mnemonic == "READ" else w.mnemonic
                            self.hit("raw", w=wm, r=r.mnemonic)

    # -- barriers ----------------------------------------------------------------------
    def _barrier(self, issues, releases) -> None:
        if not releases:
            return
        notifiers = defaultdict(set)
        for e in issues:
            if e.mnemonic == "NOTIFY":
                notifiers[e.cycle].add(e.slice)
        kind = {s.name: s.kind for s in self.cfg.slices}
        for ev in releases:
            for sl, t in ev.released:
                self.hit("release", k=kind[sl])
                if t == ev.cycle:
                    self.hit("same_cycle")
            if len(ev.released) + len(notifiers[ev.cycle]) == self.cfg.n_positions:
                self.hit("all")

