"""Assembler and disassembler for TSP programs (text <-> :class:`arch.program.Program`).

Text format (one instruction per line, ``#`` starts a comment, numbers decimal or 0x hex)::

    .config small            # optional; must match --config / the cfg argument if given
    .slice MEM_W0            # the queue the following lines go to (names: cfg.slices)
        READ 12, s3.E        # stream operands: sN.E (eastward) or sN.W (westward)
        REPEAT 7, 1, 1       # 7 more READs, 1 cycle apart, address +1 each
        HALT
    .slice VXM
        VXM.i32 s4.E:i8 = REQUANT(ADD(s0.E, r2), r4)
        HALT

Slices without a ``.slice`` section get a single ``HALT``.  Command line::

    python -m arch.asm prog.s -o prog.bin [--config NAME]  (a preset or PRESET:field=value,...)
    python -m arch.asm -d prog.bin [-o prog.s]

Python API: :func:`assemble`, :func:`disassemble`, :func:`parse_instr`,
:func:`format_instr`, :class:`ProgramBuilder` (text lines or :class:`Instr` objects) and
:class:`Schedule` (instructions placed at absolute issue cycles; gaps become NOPs).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from .config import DEFAULT_CONFIG, PRESETS, TspConfig, get_config
from .isa import (
    DEF_BY_MNEMONIC,
    DEFS,
    DIRS,
    SEL_IMM,
    SEL_LANE,
    SEL_NONE,
    SEL_REG,
    TYPES,
    VXM_OP_BY_CODE,
    VXM_OP_BY_NAME,
    VXM_REGS,
    Instr,
    IsaError,
    decode,
    int_value,
    sel_kind,
    sel_stream,
    stride_fields,
    validate,
)
from .program import Program, ProgramError

__all__ = [
    "AsmError",
    "ProgramBuilder",
    "assemble",
    "assemble_file",
    "disassemble",
    "format_instr",
    "parse_instr",
]


class AsmError(ValueError):
    """An assembly error; the message names file:line and what was expected."""


class _Err(Exception):
    """An error inside one line (the caller adds file:line)."""


# ----------------------------------------------------------------------------- tokens
_NUM = re.compile(r"^[+-]?(0[xX][0-9a-fA-F]+|[0-9]+)$")
_STREAM = re.compile(r"^[sS]([0-9]+)\.([EeWw])$")
_REG = re.compile(r"^[rR]([0-9]+)$")


def _num(tok: str) -> int:
    """A `_NUM` token's value: 0x hex, else decimal (leading zeros allowed: 012 is 12)."""
    return int(tok, 16 if "x" in tok.lower() else 10)


def _int(tok: str, what: str) -> int:
    tok = tok.strip()
    if not _NUM.match(tok):
        raise _Err(f"bad operand {tok!r}: expected an integer {what} (decimal or 0x hex)")
    return _num(tok)


def _stream(tok: str, what: str) -> tuple[int, int]:
    m = _STREAM.match(tok.strip())
    if not m:
        raise _Err(f"bad operand {tok!r}: expected a stream {what} like s3.E or s3.W")
    return int(m.group(1)), DIRS.index(m.group(2).upper())


def _fmt_stream(s: int, d: int) -> str:
    return f"s{s}.{DIRS[d]}"


def _split_commas(text: str) -> list[str]:
    out, depth, cur = [], 0, []
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            out.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
    tail = "".join(cur).strip()
    if tail or out:
        out.append(tail)
    for o in out:
        if not o:
            raise _Err("empty operand (stray comma?)")
    return out


def _type(tok: str, what: str) -> int:
    if tok not in TYPES:
        raise _Err(f"bad {what} {tok!r}: expected one of {', '.join(TYPES)}")
    return TYPES.index(tok)


# ----------------------------------------------------------------------------- one instruction
def parse_instr(text: str, kind: str, cfg: TspConfig) -> Instr:
    """Parse one instruction line (no comment) for a ``kind`` slice; AsmError if invalid."""
    try:
        return _parse_instr(text, kind, cfg)
    except (_Err, IsaError) as exc:
        raise AsmError(str(exc)) from None


def _parse_instr(text: str, kind: str, cfg: TspConfig) -> Instr:
    head, *tail = text.strip().split(None, 1)  # spaces or tabs after the mnemonic
    rest = tail[0] if tail else ""
    mnemonic, _, suffix = head.partition(".")
    mnemonic = mnemonic.upper()
    d = DEF_BY_MNEMONIC.get(mnemonic)
    if d is None:
        raise _Err(
            f"unknown mnemonic {mnemonic!r}; {kind} instructions are {', '.join(DEFS[kind])}"
        )
    if mnemonic not in DEFS[kind]:
        raise _Err(
            f"{mnemonic} is a {d.kind} instruction, not allowed on a {kind} slice; "
            f"{kind} instructions are {', '.join(DEFS[kind])}"
        )
    fields: dict[str, int] = {}
    if d.type_suffix:
        fields["type"] = _type(suffix, "type suffix") if suffix else d.type_default
    elif suffix:
        raise _Err(f"{mnemonic} takes no type suffix (got .{suffix})")
    if d.mnemonic == "VXM":
        _parse_vxm(rest, fields)
    else:
        _parse_operands(d, rest, fields)
    instr = Instr(d.mnemonic, fields)
    validate(instr, kind, cfg)
    return instr


def _parse_operands(d, rest: str, fields: dict) -> None:
    toks = _split_commas(rest)
    positional = [o for o in d.operands if o.kind in ("int", "stream", "stream_t")]
    keywords = {o.name: o for o in d.operands
                if o.kind in ("flag", "emit", "load", "store", "rows")}
    if d.mnemonic == "MVM":
        keywords["lwt"] = keywords["lw"]
    required = sum(not o.optional for o in positional)
    npos = 0
    for tok in toks:
        if "=" in tok or tok.strip().lower() in keywords:
            break
        npos += 1
    if npos > len(positional):
        raise _Err(
            f"{d.mnemonic}: unexpected operand {toks[len(positional)]!r}; expects "
            f"{operand_syntax(d)!r}"
        )
    if npos < required:
        raise _Err(
            f"{d.mnemonic} expects operands {operand_syntax(d)!r}, got {npos} positional "
            f"operand(s) {rest.strip()!r}"
        )
    for o, tok in zip(positional, toks[:npos], strict=False):
        if o.kind == "int":
            fields[o.name] = _int(tok, o.name)
        else:
            base, _, ot = tok.partition(":")
            fields[f"{o.name}_s"], fields[f"{o.name}_d"] = _stream(base, o.name)
            if o.kind == "stream_t":
                fields["otype"] = _type(ot, "result type") if ot else fields["type"]
            elif ot:
                raise _Err(f"operand {o.name} takes no :type suffix (got {tok!r})")
    seen = set()
    for tok in toks[npos:]:
        key, eq, val = tok.partition("=")
        key = key.strip().lower()
        o = keywords.get(key)
        if o is None:
            names = ", ".join(sorted(keywords)) or "none"
            raise _Err(f"{d.mnemonic}: unexpected operand {tok!r} (keyword operands: {names})")
        if o.name in seen:
            raise _Err(f"{d.mnemonic}: operand {key} given twice")
        seen.add(o.name)
        if o.kind == "flag":
            if eq:
                raise _Err(f"{d.mnemonic}: flag {key} takes no value")
            fields[o.name] = 1
        elif o.kind == "emit":
            fields["emit"] = 1
            fields["out_s"], fields["out_d"] = _stream(val, "for emit=")
        elif o.kind == "load":
            row, at, st = val.partition("@")
            if not at:
                raise _Err(f"{d.mnemonic}: expected {key}=ROW@sN.D, got {tok!r}")
            fields["ld"] = 1 if key == "lw" else 2
            fields["row"] = _int(row, "row")
            fields["w_s"], fields["w_d"] = _stream(st, f"for {key}=")
        elif o.kind == "rows":
            n = _int(val, "rows=")
            if n < 1:
                raise _Err(f"{d.mnemonic}: rows={n}: a load writes at least 1 row")
            fields["extra"] = n - 1
        elif o.kind == "store":
            addr, at, st = val.partition("@")
            if not at:
                raise _Err(f"{d.mnemonic}: expected w=ADDR@sN.D, got {tok!r}")
            fields["wr"] = 1
            fields["waddr"] = _int(addr, "write address")
            fields["in_s"], fields["in_d"] = _stream(st, "for w=")


def operand_syntax(d) -> str:
    """The operand syntax of an instruction, for messages and docs."""
    if d.mnemonic == "VXM":
        return "d[:otype][:sat] = OP2(OP1(a, b), c)"
    parts = []
    for o in d.operands:
        if o.kind == "int":
            parts.append(f"[{o.name}]" if o.optional else o.name)
        elif o.kind == "stream":
            parts.append(f"{o.name}:sN.D")
        elif o.kind == "stream_t":
            parts.append(f"{o.name}:sN.D[:otype]")
        elif o.kind == "flag":
            parts.append(f"[{o.name}]")
        elif o.kind == "emit":
            parts.append("[emit=sN.D]")
        elif o.kind == "load":
            parts.append("[lw=ROW@sN.D | lwt=COL@sN.D]")
        elif o.kind == "store":
            parts.append("[w=ADDR@sN.D]")
        elif o.kind == "rows":
            parts.append("[rows=N]")
    return ", ".join(parts)


# -- VXM expression syntax: VXM.type d[:otype][:sat] = OP2(OP1(a, b), c)
_VTOK = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_.]*|[+-]?0[xX][0-9a-fA-F]+|[+-]?[0-9]+|[(),])")


def _vtokens(text: str) -> list[str]:
    pos, out = 0, []
    text = text.rstrip()
    while pos < len(text):
        m = _VTOK.match(text, pos)
        if not m:
            raise _Err(f"VXM: cannot parse {text[pos:]!r}")
        out.append(m.group(1))
        pos = m.end()
    return out


def _vparse(toks: list[str], i: int):
    """Parse a call or operand at toks[i]: returns (node, next index)."""
    if i >= len(toks):
        raise _Err("VXM: expression ends early")
    t = toks[i]
    if i + 1 < len(toks) and toks[i + 1] == "(":
        name = t.upper()
        if name not in VXM_OP_BY_NAME:
            raise _Err(f"VXM: unknown op {t!r}; ops are {', '.join(VXM_OP_BY_NAME)}")
        args, i = [], i + 2
        while True:
            node, i = _vparse(toks, i)
            args.append(node)
            if i >= len(toks):
                raise _Err(f"VXM: missing ')' after {name}(")
            if toks[i] == ")":
                return ("call", name, args), i + 1
            if toks[i] != ",":
                raise _Err(f"VXM: expected ',' or ')' in {name}(...), got {toks[i]!r}")
            i += 1
    if t in "(),":
        raise _Err(f"VXM: unexpected {t!r}")
    return ("opnd", t), i + 1


def _vsel(tok: str, imm: list, what: str) -> int:
    if _STREAM.match(tok):
        return sel_stream(*_stream(tok, what))
    m = _REG.match(tok)
    if m:
        r = int(m.group(1))
        if r >= VXM_REGS:
            raise _Err(f"VXM: register {tok} out of range r0..r{VXM_REGS - 1}")
        return SEL_REG + r
    if tok.lower() == "lane":
        return SEL_LANE
    if _NUM.match(tok):
        v = _num(tok)
        if imm and imm[0] != v:
            raise _Err(f"VXM: immediates {imm[0]} and {v} differ but share one imm field")
        imm[:] = [v]
        return SEL_IMM
    raise _Err(f"VXM: bad operand {tok!r} for {what}: expected sN.E, sN.W, rN, lane or an "
               "integer immediate")


def _parse_vxm(rest: str, fields: dict) -> None:
    lhs, eq, rhs = rest.partition("=")
    if not eq:
        raise _Err("VXM: expected 'VXM.type d[:otype][:sat] = OP2(OP1(a, b), c)'")
    parts = [p.strip() for p in lhs.split(":")]
    imm: list[int] = []
    dst = parts[0]
    if _REG.match(dst) or _STREAM.match(dst):
        fields["d"] = _vsel(dst, imm, "destination d")
    else:
        raise _Err(f"VXM: bad destination {dst!r}: expected sN.E, sN.W or rN")
    fields["otype"], fields["sat"] = fields["type"], 0
    for p in parts[1:]:
        if p == "sat":
            fields["sat"] = 1
        else:
            fields["otype"] = _type(p, "result type")
    toks = _vtokens(rhs)
    node, i = _vparse(toks, 0)
    if i != len(toks):
        raise _Err(f"VXM: unexpected {' '.join(toks[i:])!r} after the expression")
    if node[0] == "opnd":
        op1, args1, op2, args2 = "PASS", [node], "PASS", []
    elif node[2][0][0] == "call":
        op2, args2 = node[1], node[2][1:]
        inner = node[2][0]
        op1, args1 = inner[1], inner[2]
    else:
        op1, args1, op2, args2 = node[1], node[2], "PASS", []
    a1, a2 = VXM_OP_BY_NAME[op1].arity, VXM_OP_BY_NAME[op2].arity
    if len(args1) != a1:
        raise _Err(f"VXM: {op1} takes {a1} operand(s), got {len(args1)}")
    if op2 != "PASS" and len(args2) != a2 - 1:
        raise _Err(f"VXM: {op2} takes {a2} operand(s) (the inner result first), got "
                   f"{1 + len(args2)}")
    if op2 == "PASS" and args2:
        raise _Err("VXM: PASS takes 1 operand")
    for a in args1 + args2:
        if a[0] != "opnd":
            raise _Err("VXM: only two ops can be chained: OP2(OP1(a, b), c)")
    slots = dict(zip("abc", [a[1] for a in args1], strict=False))
    if args2:
        slots["c"] = args2[0][1]
    fields["op1"] = VXM_OP_BY_NAME[op1].code
    fields["op2"] = VXM_OP_BY_NAME[op2].code
    for k in "abc":
        fields[k] = _vsel(slots[k], imm, f"operand {k}") if k in slots else SEL_NONE
    fields["imm"] = imm[0] if imm else 0


def _fmt_sel(sel: int, imm: int) -> str:
    k = sel_kind(sel)
    if k == "stream":
        return _fmt_stream(sel & 31, sel >> 5)
    if k == "reg":
        return f"r{sel - SEL_REG}"
    if k == "imm":
        return str(imm)
    if k == "lane":
        return "lane"
    return f"?{sel}"


def format_instr(instr: Instr) -> str:
    """Canonical text of one instruction (parse_instr of it gives the same Instr)."""
    d = instr.definition
    f = instr.fields
    mn = d.mnemonic + (f".{TYPES[f['type']]}" if d.type_suffix else "")
    if d.mnemonic == "VXM":
        return f"{mn} {_fmt_vxm(f)}"
    parts = []
    for o in d.operands:
        if o.kind == "int":
            parts.append(str(f[o.name]))
        elif o.kind in ("stream", "stream_t"):
            s = _fmt_stream(f[f"{o.name}_s"], f[f"{o.name}_d"])
            parts.append(s + (f":{TYPES[f['otype']]}" if o.kind == "stream_t" else ""))
        elif o.kind == "flag" and f[o.name]:
            parts.append(o.name)
        elif o.kind == "emit" and f["emit"]:
            parts.append(f"emit={_fmt_stream(f['out_s'], f['out_d'])}")
        elif o.kind == "load" and f["ld"]:
            key = "lw" if f["ld"] == 1 else "lwt"
            parts.append(f"{key}={f['row']}@{_fmt_stream(f['w_s'], f['w_d'])}")
        elif o.kind == "store" and f["wr"]:
            parts.append(f"w={f['waddr']}@{_fmt_stream(f['in_s'], f['in_d'])}")
        elif o.kind == "rows" and f["extra"]:
            parts.append(f"rows={f['extra'] + 1}")
    if d.mnemonic == "REPEAT":  # trailing zero strides are omitted
        while len(parts) > 2 and parts[-1] == "0":
            parts.pop()
    return mn + (" " + ", ".join(parts) if parts else "")


def _fmt_vxm(f) -> str:
    imm = f["imm"]
    op1, op2 = VXM_OP_BY_CODE[f["op1"]], VXM_OP_BY_CODE[f["op2"]]
    args1 = [_fmt_sel(f[k], imm) for k in "abc"[: op1.arity]]
    if op2.name == "PASS":
        expr = args1[0] if op1.name == "PASS" else f"{op1.name}({', '.join(args1)})"
    else:
        inner = f"{op1.name}({', '.join(args1)})"
        extra = f", {_fmt_sel(f['c'], imm)}" if op2.arity == 2 else ""
        expr = f"{op2.name}({inner}{extra})"
    dst = _fmt_sel(f["d"], imm)
    if f["otype"] != f["type"]:
        dst += f":{TYPES[f['otype']]}"
    if f["sat"]:
        dst += ":sat"
    return f"{dst} = {expr}"


# ----------------------------------------------------------------------------- programs
def _strip_comment(line: str) -> str:
    return line.split("#", 1)[0].strip()


def _check_repeat(prev: Instr | None, rep: Instr, cfg: TspConfig) -> None:
    """A REPEAT must follow a slice instruction, and its strides must keep every field it
    advances in range up to the last repetition (fields advance linearly, so the last
    one is the extreme)."""
    if prev is None or prev.definition.latency is None:
        after = f"follows {prev.mnemonic}" if prev is not None else "is first in the queue"
        raise _Err(f"REPEAT must directly follow a slice instruction (it repeats the one "
                   f"before it); here it {after}")
    n = rep["n"]
    fa, fb = stride_fields(prev.definition)
    for names, step, which in ((fa, rep["stride_a"], "stride_a"),
                               (fb, rep["stride_b"], "stride_b")):
        for name in names:
            if not step or not n:
                continue
            lo, hi = prev.definition.field(name).bounds(cfg)
            v = prev[name] + n * step
            if not lo <= v <= hi:
                k = next(k for k in range(1, n + 1) if not lo <= prev[name] + k * step <= hi)
                raise _Err(f"REPEAT {n}: {which}={step} walks {prev.mnemonic} {name} from "
                           f"{prev[name]} out of range [{lo}, {hi}] at repetition {k} "
                           f"({name}={prev[name] + k * step}); at most "
                           f"{k - 1} repetitions fit")


def assemble(text: str, cfg: TspConfig | str | None = None, filename: str = "<input>", *,
             check: bool = True) -> Program:
    """Assemble program text.  ``cfg`` None: the ``.config`` directive, else the default.

    ``check``: also refuse what the machine would only refuse at run time and the text
    alone shows (a REPEAT not after a slice instruction, a REPEAT stride that walks a
    field out of range).  ``check=False`` assembles any encodable program (reproducers
    of faulting programs, round trips of random words)."""
    given = get_config(cfg) if cfg is not None else None
    cur: str | None = None
    queues: dict[str, list[int]] = {}
    last: dict[str, Instr] = {}  # the previous instruction of each queue
    config = given
    for lineno, raw in enumerate(text.splitlines(), 1):
        where = f"{filename}:{lineno}"
        line = _strip_comment(raw)
        if not line:
            continue
        try:
            if line.startswith("."):
                directive, *arg = line.split(None, 1)
                arg = arg[0].strip() if arg else ""
                if directive in (".config", ".slice") and not arg:
                    raise _Err(f"{directive} needs a name (e.g. "
                               f"{'.config small' if directive == '.config' else '.slice VXM'})")
                if directive == ".config":
                    try:
                        named = given if given and arg == given.name else get_config(arg)
                    except ValueError as exc:
                        raise _Err(str(exc)) from None
                    if queues or cur is not None:
                        raise _Err(".config must come before the first .slice")
                    if given is not None and named.stable_hash() != given.stable_hash():
                        raise _Err(f".config {arg} does not match the requested config "
                                   f"{given.name!r}")
                    config = named
                elif directive == ".slice":
                    config = config or get_config(DEFAULT_CONFIG)
                    names = [s.name for s in config.slices]
                    if arg not in names:
                        raise _Err(f"unknown slice {arg!r} for config {config.name!r}; "
                                   f"slices are: {', '.join(names)}")
                    if arg in queues:
                        raise _Err(f"duplicate .slice {arg}")
                    cur = arg
                    queues[cur] = []
                else:
                    raise _Err(f"unknown directive {directive!r}; expected .config or .slice")
                continue
            if cur is None:
                raise _Err("instruction before the first '.slice NAME' directive")
            kind = config.slice(cur).kind
            if len(queues[cur]) == config.imem_depth_of(cur):
                raise _Err(f"slice {cur}: instruction {len(queues[cur])} does not fit: the "
                           f"queue holds {config.imem_field_of(cur)}="
                           f"{config.imem_depth_of(cur)} words in config "
                           f"{config.name!r}")
            ins = _parse_instr(line, kind, config)
            if check and ins.mnemonic == "REPEAT":
                _check_repeat(last.get(cur), ins, config)
            last[cur] = ins
            queues[cur].append(ins.encode())
        except (_Err, IsaError) as exc:
            raise AsmError(f"{where}: {exc}\n    {raw.strip()}") from None
    config = config or get_config(DEFAULT_CONFIG)
    try:
        return Program(config, queues)
    except ProgramError as exc:
        raise AsmError(f"{filename}: {exc}") from None


def assemble_file(path: str | Path, cfg: TspConfig | str | None = None, *,
                  check: bool = True) -> Program:
    path = Path(path)
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise AsmError(f"{path}:{line}: not a UTF-8 text file ({exc.reason} at byte "
                       f"{exc.start}; is it a program binary? use -d)") from None
    return assemble(text, cfg, str(path), check=check)


def disassemble(program: Program, all_slices: bool = False) -> str:
    """Program text; queues that are just ``HALT`` are omitted unless ``all_slices``."""
    cfg = program.cfg
    lines = [f"# config {cfg.name} (hash {cfg.stable_hash()})", f".config {cfg.name}"]
    for s in cfg.slices:
        words = program.words(s.name)
        if not all_slices and words == Program(cfg).words(s.name):
            continue
        lines.append(f".slice {s.name}")
        for i, w in enumerate(words):
            try:
                lines.append(f"    {format_instr(decode(s.kind, w))}")
            except IsaError as exc:
                raise AsmError(f"{s.name}[{i}]: {exc}") from None
    return "\n".join(lines) + "\n"


class ProgramBuilder:
    """Build a Program from Python: ``b.add("MEM_W0", "READ 0, s1.W", Instr(...), word)``."""

    def __init__(self, cfg: TspConfig | str | None = None):
        self.cfg = get_config(cfg)
        self.queues: dict[str, list[int]] = {}

    def add(self, slice_name: str, *instrs: str | Instr | int) -> ProgramBuilder:
        try:
            kind = self.cfg.slice(slice_name).kind
        except ValueError as exc:
            raise AsmError(str(exc)) from None
        q = self.queues.setdefault(slice_name, [])
        for ins in instrs:
            where = f"{slice_name}[{len(q)}]"
            try:
                if isinstance(ins, str):
                    ins = _parse_instr(_strip_comment(ins), kind, self.cfg)
                elif isinstance(ins, int):
                    ins = decode(kind, ins)
                validate(ins, kind, self.cfg)
            except (_Err, IsaError) as exc:
                raise AsmError(f"{where}: {exc}") from None
            q.append(ins.encode())
        return self

    def __len__(self) -> int:
        return sum(len(q) for q in self.queues.values())

    def build(self) -> Program:
        return Program(self.cfg, self.queues)


class Schedule:
    """Instructions placed at absolute issue cycles per slice; the gaps become NOPs and
    ``text()`` is assembly (with each instruction's cycle as a comment)::

        sch = Schedule(cfg)
        sch.at("MEM_W1", 0, "READ 0, s0.W", n=15, stride=1)   # + REPEAT 15, 1, 1
        sch.at("MXM_W0", 3, "LW 0, s0.W", n=15, stride=1)
        program = sch.program()
    """

    def __init__(self, cfg: TspConfig | str | None = None):
        self.cfg = get_config(cfg)
        self.pos = {s.name: s.index for s in self.cfg.slices}
        self.items: dict[str, list[tuple[int, str, int, int, str]]] = {}

    def at(self, slice_name: str, cycle: int, text: str, n: int = 0, d: int = 1,
           stride: int = 0, stride_b: int = 0) -> Schedule:
        """Issue ``text`` at ``cycle``, then ``n`` repetitions ``d`` apart (+strides)."""
        if slice_name not in self.pos:
            raise AsmError(f"unknown slice {slice_name!r} for config {self.cfg.name!r}")
        for what, v, lo in (("cycle", cycle, 0), ("n", n, 0), ("d", d, 1)):
            if int_value(v) is None or v < lo:
                raise AsmError(f"{slice_name}: {text!r}: {what} must be an int >= {lo}, "
                               f"got {v!r}")
        strides = f"{stride}, {stride_b}" if stride_b else f"{stride}"
        self.items.setdefault(slice_name, []).append((cycle, text, n, d, strides))
        return self

    def text(self) -> str:
        lines = [f".config {self.cfg.name}"]
        for s in self.cfg.slices:
            items = sorted(self.items.get(s.name, []))
            if not items:
                continue
            lines.append(f".slice {s.name}")
            t = 0
            for cycle, text, n, d, strides in items:
                if cycle < t:
                    raise AsmError(f"{s.name}: {text!r} at cycle {cycle} overlaps the "
                                   f"previous instruction (queue free from cycle {t})")
                if cycle > t:
                    lines.append(f"    NOP {cycle - t}")
                lines.append(f"    {text}    # cycle {cycle}")
                if n:
                    lines.append(f"    REPEAT {n}, {d}, {strides}")
                t = cycle + n * d + 1
            lines.append("    HALT")
        return "\n".join(lines) + "\n"

    def program(self, filename: str = "<schedule>") -> Program:
        return assemble(self.text(), self.cfg, filename)


# ----------------------------------------------------------------------------- CLI
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m arch.asm", description=__doc__.split("\n")[0])
    ap.add_argument("input", help="assembly file (or, with -d, a program binary)")
    ap.add_argument("-o", "--output", help="output file (default: input with .bin; "
                    "stdout for -d)")
    ap.add_argument("-d", "--disassemble", action="store_true", help="disassemble a binary")
    ap.add_argument("--config", default=None,
                    help=f"a preset ({', '.join(PRESETS)}) or PRESET:field=value,... (default: "
                         f"the .config directive or {DEFAULT_CONFIG})")
    args = ap.parse_args(argv)
    try:
        cfg = get_config(args.config) if args.config else None
        if args.disassemble:
            try:
                prog = Program.from_bytes(Path(args.input).read_bytes(), cfg)
                text = disassemble(prog)
            except (AsmError, ProgramError) as exc:
                raise ProgramError(f"{args.input}: {exc}") from None
            if args.output:
                Path(args.output).write_text(text)
            else:
                sys.stdout.write(text)
        else:
            prog = assemble_file(args.input, cfg)
            out = Path(args.output) if args.output else Path(args.input).with_suffix(".bin")
            out.write_bytes(prog.to_bytes())
    except (AsmError, ProgramError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2  # refused input, as argparse's usage errors (sim/cli.py)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
