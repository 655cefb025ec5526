"""Random legal instructions and programs (for round-trip tests and RTL decoder fuzzing).

``random_instr(kind, cfg, rng)`` returns an :class:`arch.isa.Instr` that passes
``validate(instr, kind, cfg)``; ``random_program(cfg, rng)`` a :class:`Program` of them
(not meant to run: stream operands are not scheduled).
"""

from __future__ import annotations

import random

from .config import TspConfig
from .isa import (
    DEFS,
    SEL_IMM,
    SEL_LANE,
    SEL_NONE,
    SEL_REG,
    TYPES,
    VXM_OPS,
    VXM_REGS,
    Instr,
    available,
    sel_stream,
    type_bytes,
    validate,
)
from .program import Program


def _rand_field(f, cfg, rng):
    lo, hi = f.bounds(cfg)
    return rng.randint(lo, min(hi, lo + (1 << 20)) if rng.random() < 0.2 else hi)


def _vxm_fields(cfg: TspConfig, rng: random.Random) -> dict:
    ns = cfg.streams_per_direction
    t, ot = rng.randrange(len(TYPES)), rng.randrange(len(TYPES))
    w, ow = type_bytes(t), type_bytes(ot)
    unary = [o for o in VXM_OPS if o.arity == 1]
    op1 = rng.choice([o for o in VXM_OPS])
    op2 = rng.choice(unary if op1.arity == 3 else [o for o in VXM_OPS if o.arity < 3])
    imm = rng.randint(-(2**14), 2**14 - 1)
    used_imm = False

    def src(requant=False):
        nonlocal used_imm
        if requant:
            return SEL_REG + rng.randrange(VXM_REGS - 2)
        k = rng.randrange(4)
        if k == 0:
            return sel_stream(rng.randrange(ns - w + 1), rng.randrange(2))
        if k == 1:
            return SEL_REG + rng.randrange(VXM_REGS)
        if k == 2:
            used_imm = True
            return SEL_IMM
        return SEL_LANE

    f = {"type": t, "otype": ot, "sat": rng.randrange(2), "op1": op1.code, "op2": op2.code,
         "a": src(), "b": SEL_NONE, "c": SEL_NONE}
    if op1.arity >= 2:
        f["b"] = src(op1.name == "REQUANT")
    if op1.arity == 3 or op2.arity == 2:
        f["c"] = src(op2.name == "REQUANT")
    if rng.random() < 0.5:
        f["d"] = sel_stream(rng.randrange(ns - ow + 1), rng.randrange(2))
    else:
        f["d"] = SEL_REG + rng.randrange(VXM_REGS)
    f["imm"] = imm if used_imm else 0
    return f


def random_instr(kind: str, cfg: TspConfig, rng: random.Random, mnemonic: str | None = None
                 ) -> Instr:
    """A random legal instruction of a ``kind`` slice (optionally a given mnemonic)."""
    d = DEFS[kind][mnemonic] if mnemonic else rng.choice(
        [d for m, d in DEFS[kind].items() if available(m, cfg)])
    if d.mnemonic == "VXM":
        ins = Instr("VXM", _vxm_fields(cfg, rng))
        validate(ins, kind, cfg)
        return ins
    # (a multi-row load's row count is drawn below, and only where there is one: configs
    # without it keep their random streams)
    f = {fl.name: 0 if fl.name == "extra" else _rand_field(fl, cfg, rng) for fl in d.fields}
    ns = cfg.streams_per_direction
    k = cfg.mxm_load_rows
    if "extra" in f and k > 1 and (d.mnemonic != "MVM" or f["ld"]):
        f["extra"] = rng.randrange(k - f["row"] % k)  # within the row's aligned group
    width = type_bytes(f["type"]) if "type" in f else 1
    if d.mnemonic == "PMAP":
        width = 2
    for p in ("in", "idx", "x", "w"):
        if f"{p}_s" in f:
            n = width if p == "in" else f["extra"] + 1 if p == "w" else 1
            f[f"{p}_s"] = rng.randrange(ns - n + 1)
    if "out_s" in f:
        ow = type_bytes(f["otype"]) if "otype" in f else width
        if d.mnemonic == "MVM":
            ow = 4
        f["out_s"] = rng.randrange(ns - ow + 1)
    if d.mnemonic == "READ" and not f["wr"]:  # no write part (always, without rw)
        f["waddr"] = f["in_s"] = f["in_d"] = 0
    if d.mnemonic == "MVM":
        if f["ld"] == 0:
            f["row"] = f["w_s"] = f["w_d"] = 0
        if not f["emit"]:
            f["out_s"] = f["out_d"] = 0
    ins = Instr(d.mnemonic, f)
    validate(ins, kind, cfg)
    return ins


def random_program(cfg: TspConfig, rng: random.Random, max_len: int = 12) -> Program:
    """Random legal words in a random subset of the queues."""
    queues = {}
    for s in cfg.slices:
        if rng.random() < 0.7:
            n = rng.randint(1, max_len)
            queues[s.name] = [random_instr(s.kind, cfg, rng).encode() for _ in range(n)]
    return Program(cfg, queues)
