"""Generate ``docs/isa.md`` from :mod:`arch.isa` (``python -m arch.isa --doc > docs/isa.md``).

The document is a pure function of the ISA tables and the presets, so a test can check
that the committed file is current.
"""

from __future__ import annotations

import argparse
import sys

from . import program
from .asm import operand_syntax
from .config import PRESETS, get_config
from .isa import (
    DEFS,
    ICU_DEFS,
    MXM_ACC_SLOTS,
    OPCODE_BITS,
    SEL_E,
    SEL_IMM,
    SEL_LANE,
    SEL_NONE,
    SEL_REG,
    SEL_W,
    SLICE_KINDS,
    SXM_MAPS,
    SYNC_RELEASE_DELAY,
    TYPES,
    VXM_OPS,
    VXM_REGS,
    InstrDef,
    latency,
)
from .timing import occupancy_formula

_INTRO = """\
# TSP instruction set

*Generated from `arch/isa.py` by `python -m arch.isa --doc > docs/isa.md`; do not edit by
hand (`tests/test_isa.py` fails when this file is out of date).*

The ISA is the contract between the assembler (`arch/asm.py`) and the compiler (`compiler/`), the
cycle-accurate machine model (`golden/machine.py`) and the RTL decoders (`hdl/`), which
build their `amaranth.lib.data` layouts from `arch.isa.layout(kind, mnemonic)` (ordered
`(field, bit offset, width, signed)`) and `arch.isa.OPCODES[kind][mnemonic]`.  Floorplan,
streams and skew follow [architecture.md](architecture.md).

## Instruction words

* Every slice has one instruction queue of 64-bit words.  Bits `[{ob}:0]` are the opcode in
  every word of every slice kind; operand fields follow from bit {o} upwards.  Bits outside
  an instruction's fields are reserved and must be 0 (the model rejects the word).
* Opcode 0 is illegal (an all-zero word never executes).  Opcodes 1..5 are the ICU
  instructions, identical in every queue; opcodes 8..63 are the slice kind's own space.
* Field layouts do not depend on the config (fields are sized for the largest legal
  config: 32 streams, 8192 addresses, VL = 320); the legal *range* of a field does
  (tables below: `VL` = vector length, `NS` = streams per direction, `A` = MEM addresses).
* A stream operand is an index `s` plus a direction bit (0 = E, eastward; 1 = W,
  westward).  A 16-bit (32-bit) value occupies streams `s..s+1` (`s..s+3`), byte plane `b`
  on stream `s+b` (little-endian); all of them must exist.
* Latencies are written in `S` = `cfg.superlanes`.

Constants: {acc} MXM accumulator slots, {regs} VXM registers per lane (int32), {maps} SXM
permutation maps, SYNC release delay {sync} cycles.
"""

_TIMING = """\
## Timing model

All times are **superlane-0 cycles** (superlane `k` of the RTL does everything `k` cycles
later, see architecture.md).  With `P` = position of a slice (`cfg.slices`, west = 0):

* **Start.**  Every queue issues its first instruction in cycle 0 (right after the host's
  start).  A queue issues at most one instruction per cycle.
* **Issue and operands.**  An instruction issued in cycle `t` reads all its stream
  operands from the stream registers at its own position in cycle `t` (and VXM registers,
  SXM maps, MXM active weights as they are in cycle `t`).
* **Result.**  Its last effect happens in cycle `t + L` (`L` = its latency below): a
  result written onto eastward (westward) stream `s` in cycle `t + L` by the slice at `P`
  is in the stream register of position `P + d` (`P - d`) in cycle `t + L + d`, so a
  consumer at distance `d` must issue in cycle **`t + L + d`** -- not one cycle earlier or
  later: a value passes each position in exactly one cycle.
* **Validity.**  A value is valid from its write until it leaves the chip or is
  overwritten by a slice further downstream writing the same stream.  Reading a stream
  register that holds no valid value (never written in this run, or the value has moved
  on) is an error of the machine model.
* **Collision.**  One slice writing the same (direction, stream) twice in the same cycle
  (two in-flight instructions with different latencies) is an error.  Two slices writing
  the same stream index is legal: the downstream write overwrites.
* **NOP n**: the next instruction issues `n` cycles after the NOP (`NOP 1` = no gap).
* **REPEAT n, d, sa, sb** after an instruction issued in `t0`: repetitions `k = 1..n`
  issue in `t0 + k*d` with A-stride fields `+ k*sa` and B-stride fields `+ k*sb` (the
  stride column below); the next instruction issues in `t0 + n*d + 1`.  REPEAT itself
  takes no issue slot.
* **SYNC / NOTIFY**: a SYNC parks its queue.  A NOTIFY issued in cycle `t` releases every
  queue that issued a SYNC in a cycle `<= t`; they and the notifying queue issue their
  next instruction in cycle `t + {sync}`.  (Start barrier: every queue but one SYNCs in
  cycle 0; the last one NOTIFYs in cycle `t`; all continue together in `t + {sync}`.)
* **Occupancy.**  An instruction issued in `t` keeps its slice column working until
  `t + O` (`O` = its occupancy below, `arch/timing.py`): `L + S - 1` for most (its last
  effect, `t + L`, happens in superlane `S - 1` another `S - 1` cycles later), `2S + 1`
  for LW/LWT/IW (the MXM core runs `2S + 1` cycles behind issue), `L` for an MVM without
  emit (it ends with the whole-vector accumulator write).
* **Total cycles** = 1 + the last cycle in which any queue issued an instruction (NOP,
  SYNC, NOTIFY and HALT included) or any instruction still occupied its slice
  (`t + O`): the clock cycles from START to `done`, skew tail included.  The chip's
  `CYCLES` register and the testbench's own clock count measure exactly this.
* **Busy cycles** of a slice = the number of cycles in the union of `[t, t + O]` over the
  slice (non-ICU) instructions it issued (repetitions included).
  `mxm_mvm_cycles` of an MXM = the number of MVM instructions it issued.
* **Skew in latencies.**  A unit whose output superlane `k` depends on input superlane `j`
  receives input `j` in cycle `t + j` (RTL time) and must deliver output `k` in cycle
  `t + L + k`; moving data between superlanes takes one cycle per superlane, so any-to-any
  units need `L >= 2(S - 1) + pipeline`: cross-superlane SXM moves `2S`, reductions
  `2S + 1`, MVM `2S + 2`, LWT `2S - 1`.  Local units (MEM, VXM, LW, SHS/ROTS) have
  constant latencies.
"""

_VXM = """\
## VXM operation

`VXM.type d[:otype][:sat] = OP2(OP1(a, b), c)`, one instruction per cycle, latency 3.
A config with `vxm_groups` G > 1 has G VXM slices (`VXM`, `VXM1`, ...: adjacent positions
in the centre), each with its own queue, ALU stages and registers; `rN` names the issuing
group's register, and groups pass values on the streams (docs/architecture.md, "VXM
groups").

* Operands `a`, `b`, `c` (7-bit selectors): `sN.E` = {e}+N, `sN.W` = {w}+N (a `type`
  value on streams N.. of that direction), `rN` = {r}+N (the 32-bit register value),
  an integer = {i} (the instruction's 15-bit signed `imm`, shared by every immediate
  operand), `lane` = {l} (the lane index 0..VL-1, iota), none = {n}.  Destination `d`:
  `sN.E`, `sN.W` or `rN`.
* Stream operands are `type`-wide and sign-extended (`u8`: zero-extended) to 64 bits.
  Stage 1 computes `r1 = OP1(a, b)` and stage 2 `r2 = OP2(r1, c)`, both exactly in 64-bit
  two's complement (width `w` = bits of `type` matters only for SHR and CLZ).  `OP1(a)` /
  a bare operand mean the other stage is PASS.
* The result is reduced to `otype` (default `type`): wrapped (two's complement), or with
  `:sat` clamped to the otype range first.  A register destination holds the reduced
  value sign-extended (`u8`: zero-extended) to 32 bits.
* Stream and register operands are read at issue; the result is written in cycle `t + 3`
  (a register written in cycle `t + 3` is read by instructions issued from `t + 4` on).
* REQUANT: `golden.quant.requantize(wrap32(x), multiplier=rK, shift=rK+1,
  zero_point=rK+2, qmin/qmax = otype range)` per lane (e.g. `:i8` -> [-128, 127], `:i32`
  -> the wide saturating form used by the softmax reciprocal).
* SEL (stage 1 only) `SEL(a, b, c)` = `a != 0 ? b : c`; it consumes `c`, so OP2 must be
  unary.

| op | code | operands | result |
|---|---:|---:|---|
"""

_EXAMPLES_HEAD = """\
## Worked examples (config `{name}`)

"""

_ASM = """\
## Assembler

`python -m arch.asm prog.s -o prog.bin [--config NAME]`, `python -m arch.asm -d prog.bin`.
One instruction per line, `#` comments, numbers decimal or `0x` hex, `.config NAME`
(optional) then `.slice NAME` sections; slices without a section get a single `HALT`.

```
.config small
.slice MEM_W0
    READ 0, s2.E          # addr, out stream
    REPEAT 7, 1, 1        # 7 more, 1 cycle apart, addr +1 each
    HALT
.slice MXM_W0
    LW 0, s0.W            # row, weight stream
    MVM s1.W, 3, accum, emit=s0.E, lw=5@s0.W
    HALT
.slice VXM
    VXM.i32 s4.E:i8 = REQUANT(ADD(s0.E, r0), r1)
    VXM.u8 r5:i32 = OR(SHL(s6.W, 8), r5)
    HALT
.slice SXM_E
    RSUM.u8 s2.W, s4.W:i32
    HALT
```

Python: `arch.asm.ProgramBuilder(cfg).add("MEM_W0", "READ 0, s2.E", Instr(...)).build()`,
`arch.isa.encode("READ", addr=0, out_s=2, out_d="E")`, `arch.isa.decode(kind, word)`.

## Program binary
"""


def _cell(text: str) -> str:
    """Escape a markdown table cell."""
    return str(text).replace("|", "\\|")


def _bounds_text(d: InstrDef, f) -> str:
    dom = f.domain
    sym = {"stream": "0..NS-1", "addr": "0..A-1", "row": "0..VL-1", "lane": "0..VL-1",
           "shift_vector": "-(VL-1)..VL-1", "dir": "0 E, 1 W", "flag": "0..1",
           "type": "0 i8, 1 i16, 2 i32, 3 u8", "sel": "selector", "vop": "op code",
           "link": "0..c2c_links-1", "rw": "0..mem_read_write",
           "rw_addr": "0..A-1 (0 without mem_read_write)",
           "rw_stream": "0..NS-1 (0 without mem_read_write)",
           "rw_dir": "0 E, 1 W (0 without mem_read_write)",
           "trow": "0..R-1 (R = sxm_transpose_rows)", "tcol": "0..VL-1 (with a transposer)",
           "trows": "1..R", "ldx": "0..K-1 (K = mxm_load_rows)"}
    if dom in sym:
        return sym[dom]
    lo, hi = f.bounds(PRESETS["small"])
    return f"{lo}..{hi}"


_C2C = """\
### C2C links

* A link joins one end of a chip to one end of another: link `k` of C2C_E of chip `i` and
  link `k` of C2C_W of chip `i+1` (a ring; chip `n-1`'s C2C_E leads back to chip 0's
  C2C_W, and on one chip alone, to its own C2C_W: a loopback).  Each direction is its own
  wire: both ends may send in the same cycle.
* Fixed timing, config parameters: `c2c_latency` (cycles, 1..1024) and
  `c2c_bytes_per_cycle` (per superlane: 1, 2, 4, 8 or 16).  A byte plane (one stream's
  vector) crosses in `B = 16 / c2c_bytes_per_cycle` beats, every superlane's 16 bytes on
  its own lane group of the link, skewed like everything else (superlane `k` sends and
  receives `k` cycles after superlane 0).  A message of type `i32` is 4 planes: `4B`
  beats, plane 0 first.
* `SEND.t` issued in `t`: beats in `t+1 .. t+wB`; the message is in the far end's receive
  buffer from cycle `t + c2c_latency + wB` (a `RECV.t` issued then or later takes it).
  The sending link is busy until `t + wB`.
* Receive buffer: `c2c_buffer` messages per link, first in first out.  A message arriving
  when it is full (and no `RECV` takes one in that cycle) is an overflow.
* Faults (model: an error naming chip, slice, instruction and cycle; RTL: the error code
  at the slice and cycle): `LINK_BUSY` (a `SEND` before the link's last beat left),
  `LINK_EMPTY` (a `RECV` with nothing arrived), `LINK_TYPE` (a `RECV` of another type than
  the message's), `LINK_OVERFLOW`.  A message never received is an error of the machine
  model (the RTL drops it at the next START).
* There is no deskew instruction: the links here are deterministic by construction, so
  the compiler knows every arrival cycle.
"""


def _latency_row(d: InstrDef) -> str:
    if d.latency is None:
        return "-"
    vals = "/".join(str(latency(d.mnemonic, c)) for c in PRESETS.values())
    return f"{d.latency.formula()} ({vals})"


def _syntax(d: InstrDef) -> str:
    mn = d.mnemonic + ("[.type]" if d.type_suffix and d.mnemonic != "VXM" else "")
    if d.mnemonic == "VXM":
        mn = "VXM.type"
    ops = operand_syntax(d)
    return f"{mn} {ops}".strip()


def _kind_section(kind: str, defs: list[InstrDef], cfg) -> list[str]:
    out = [f"## {kind}", ""]
    if kind == "C2C":
        with_links = [c for c in PRESETS.values() if c.c2c_links]
        out += ["Slices: C2C_W and C2C_E, at the two ends of the slice row, in configs with "
                "`c2c_links >= 1` (" + ", ".join(
                    f"{c.name}: {c.c2c_links} link(s) per end" for c in with_links)
                + "; every chip of a system: `TspConfig.with_links()`).", ""]
    elif kind != "ICU":
        names = ", ".join(s.name for s in cfg.slices_of(kind))
        out += [f"Slices ({cfg.name}): {names}.", ""]
    out += [f"| mnemonic | opcode | syntax | latency L ({'/'.join(PRESETS)}) "
            "| occupancy O | semantics |",
            "|---|---:|---|---|---|---|"]
    for d in defs:
        occ = occupancy_formula(d.mnemonic) if d.latency is not None else "-"
        out.append(f"| {d.mnemonic} | {d.opcode} | `{_cell(_syntax(d))}` | {_latency_row(d)} | "
                   f"{occ} | {_cell(d.summary)} |")
    out.append("")
    for d in defs:
        if not d.fields:
            continue
        out += [f"**{d.mnemonic}** fields:", "",
                "| field | bits | signed | stride | range | meaning |", "|---|---|---|---|---|---|",
                f"| opcode | [{OPCODE_BITS - 1}:0] | | | {d.opcode} | |"]
        for f in d.fields:
            bits = f"[{f.hi}:{f.offset}]" if f.width > 1 else f"[{f.offset}]"
            out.append(f"| {f.name} | {bits} | {'yes' if f.signed else ''} | {f.stride} | "
                       f"{_bounds_text(d, f)} | {f.doc} |")
        out.append("")
    return out


def _worked_examples(cfg) -> list[str]:
    pos = {s.name: s.index for s in cfg.slices}
    out = [_EXAMPLES_HEAD.format(name=cfg.name).rstrip(), ""]
    # READ on MEM_W0 feeding a WRITE on MEM_E1
    src, dst = "MEM_W0", "MEM_E1"
    lr, lw = latency("READ", cfg), latency("WRITE", cfg)
    d = pos[dst] - pos[src]
    out += [
        f"**READ on {src} feeding a WRITE on {dst}.**  {src} is at position {pos[src]}, "
        f"{dst} at {pos[dst]}: distance d = {d} eastward.",
        "",
        "```",
        f".slice {src}",
        "    READ 3, s2.E      # cycle 0: SRAM read of address 3",
        "    HALT",
        f".slice {dst}",
        f"    NOP {lr + d}             # cycles 0..{lr + d - 1}",
        f"    WRITE s2.E, 7     # cycle {lr + d} = 0 + L(READ) {lr} + d {d}",
        "    HALT",
        "```",
        "",
        f"* cycle 0: {src} issues READ and reads SRAM address 3 (bank 0).",
        f"* cycle {lr}: the READ's result is driven onto s2.E (L = {lr}); at the end of the "
        f"cycle it is in E[{pos[src] + 1}].s2.",
    ]
    for k in range(2, d + 1):
        out.append(f"* cycle {lr + k - 1}: E[{pos[src] + k - 1}].s2 holds it -> E[{pos[src] + k}]"
                   f".s2 at the end of the cycle.")
    out += [
        f"* cycle {lr + d}: the value is in E[{pos[dst]}].s2; {dst} issues WRITE and takes it.",
        f"* cycle {lr + d + lw}: the SRAM write of address 7 (L(WRITE) = {lw}); a READ issued "
        f"by {dst} in this cycle must use the other bank (addresses "
        f"{cfg.mem_depth}..{cfg.mem_addresses - 1}).",
        f"* total cycles = {lr + d + lw + cfg.superlanes} (the WRITE's last effect is in "
        f"cycle {lr + d + lw} in superlane 0 and in cycle {lr + d + lw + cfg.superlanes - 1} "
        f"in superlane {cfg.superlanes - 1}).",
        "",
    ]
    # MXM -> VXM -> MEM chain
    lm, lv = latency("MVM", cfg), latency("VXM", cfg)
    dm = pos["VXM"] - pos["MXM_W0"]
    dv = pos["MEM_E0"] - pos["VXM"]
    out += [
        "**An int8 layer: MVM on MXM_W0 -> requantise on the VXM -> store on MEM_E0.**  "
        f"An `MVM s1.W, 0, emit=s0.E` issued in cycle t emits int32 planes on s0..s3.E in "
        f"t + {lm} (2S + 2); the VXM is {dm} positions east, so "
        f"`VXM.i32 s4.E:i8 = REQUANT(ADD(s0.E, r0), r1)` issues in t + {lm + dm}, writes s4.E "
        f"in t + {lm + dm + lv}, and MEM_E0 ({dv} east) issues `WRITE s4.E, addr` in "
        f"t + {lm + dm + lv + dv}.  The activation row comes from MEM_W0 "
        f"({pos['MEM_W0'] - pos['MXM_W0']} positions east of the MXM) by a `READ a, s1.W` "
        f"issued in t - {latency('READ', cfg) + pos['MEM_W0'] - pos['MXM_W0']}.  "
        "`examples/matmul.py` schedules a whole matmul this way.",
        "",
        "**Row reductions (softmax).**  `RMAX.i16 sN.D, sM.D:i16` and `RSUM.u8 sN.D, "
        "sM.D:i32` on an SXM reduce all VL lanes and broadcast the result to every lane: one "
        f"issue slot, latency 2S + 1 ({latency('RSUM', cfg)} on small).  The alternative, "
        "log2(VL) steps of `ROTV` (2S) + a VXM MAX/ADD (3) plus the stream distance between "
        f"the SXM and the VXM both ways, costs {_log2(cfg.vector_length)} x (2S + 3 + 2 x "
        "distance) cycles of latency and 2 log2(VL) issue slots.",
        "",
    ]
    return out


def _log2(n: int) -> int:
    return max(1, (n - 1).bit_length())


def render_isa_doc(cfg=None) -> str:
    """The full text of docs/isa.md; ``cfg`` (default small) is used for the slice lists and
    the worked examples (the encodings and latency formulas do not depend on it)."""
    cfg = get_config(cfg)
    out = [_INTRO.format(ob=OPCODE_BITS - 1, o=OPCODE_BITS, acc=MXM_ACC_SLOTS, regs=VXM_REGS,
                         maps=SXM_MAPS, sync=SYNC_RELEASE_DELAY)]
    out.append(_TIMING.format(sync=SYNC_RELEASE_DELAY))
    out += _kind_section("ICU", list(ICU_DEFS.values()), cfg)
    for kind in SLICE_KINDS:
        out += _kind_section(kind, [d for d in DEFS[kind].values() if d.kind == kind], cfg)
        if kind == "VXM":
            out.append(_VXM.format(e=SEL_E, w=SEL_W, r=SEL_REG, i=SEL_IMM, l=SEL_LANE,
                                   n=SEL_NONE).rstrip())
            for op in VXM_OPS:
                out.append(f"| {op.name} | {op.code} | {op.arity} | {_cell(op.summary)} |")
            out.append("")
            out.append(f"Types: {', '.join(f'{i} = {t}' for i, t in enumerate(TYPES))}.")
            out.append("")
        if kind == "C2C":
            out.append(_C2C.rstrip())
            out.append("")
    out += _worked_examples(cfg)
    out.append(_ASM.rstrip())
    out.append("")
    out.append("```")
    table = program.__doc__.split("::", 1)[1].split("\n\n")[1]
    out.append("\n".join(line[4:] for line in table.splitlines()))
    out.append("```")
    out.append("")
    out.append("Every queue holds at least one word; a slice given no instructions gets "
               "`[HALT]`.  `arch.program.Program(cfg, {slice: [word, ...]})`, "
               "`.to_bytes()`, `Program.from_bytes(data, cfg=None)` (the preset with the "
               "header's hash when `cfg` is None).")
    return "\n".join(out).rstrip() + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m arch.isa")
    ap.add_argument("--doc", action="store_true", help="print docs/isa.md (the default)")
    ap.add_argument("--config", default=None, help="config of the examples (default small)")
    args = ap.parse_args(argv)
    try:
        text = render_isa_doc(args.config)
    except ValueError as e:  # an unknown or invalid config
        ap.error(str(e))
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
