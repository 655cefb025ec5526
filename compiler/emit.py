"""From placed bundles to per-queue instruction words, and the predicted run statistics.

Per slice queue: the placed instructions sorted by cycle (an MVM and a weight load placed
in the same cycle on one MXM become one ``MVM ..., lw=ROW@s`` word, a READ and a WRITE on
one MEM slice with ``mem_read_write`` one ``READ ..., w=ADDR@s`` word); runs of instructions
that differ only by constant strides of their stride fields at a constant spacing become
``instr; REPEAT n, d, stride_a, stride_b``; gaps become ``NOP n``; then ``HALT``.

The statistics follow the ISA's definitions exactly (docs/isa.md, "Timing model"):
total cycles = 1 + the last cycle in which a queue issued anything (HALT included) or an
instruction made its last effect; busy cycles of a slice = the size of the union of
``[t, t + L]`` over its slice instructions; MVM cycles = MVMs issued per MXM.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from arch.config import TspConfig
from arch.isa import DEF_BY_MNEMONIC, Instr, latency, stride_fields, validate
from arch.timing import SliceTimeline, occupancy

from .ir import Bundle, Op

MAX_STRIDE = 2047


@dataclass
class QueueCode:
    slice: str
    words: list[Instr] = field(default_factory=list)
    #: (cycle, Instr, latency) of every slice instruction, repetitions expanded
    issued: list[tuple[int, Instr, int]] = field(default_factory=list)
    halt_cycle: int = 0
    nwords: int = 0
    #: busy cycles and the last cycle the slice works (`arch.timing`)
    timeline: SliceTimeline = field(default_factory=SliceTimeline)


def _merge(cycle: int, ops: list[Op]) -> tuple[str, dict]:
    """(mnemonic, every field) of the word issued in ``cycle`` by one queue."""
    if len(ops) == 1:
        mn, f = ops[0].mn, ops[0].instr_fields()
    elif ops[0].kind == "MEM":  # a READ and a WRITE: one READ ..., w= word
        rd = [o for o in ops if o.mn == "READ"]
        wr = [o for o in ops if o.mn == "WRITE"]
        if len(ops) != 2 or len(rd) != 1 or len(wr) != 1:
            raise AssertionError(f"{ops[0].slice} cycle {cycle}: cannot merge {ops}")
        mn, f = "READ", rd[0].instr_fields()
        wf = wr[0].instr_fields()
        f.update(wr=1, waddr=wf["addr"], in_s=wf["in_s"], in_d=wf["in_d"])
    else:
        mv = [o for o in ops if o.mn == "MVM"]
        ld = [o for o in ops if o.mn in ("LW", "LWT")]
        if len(ops) != 2 or len(mv) != 1 or len(ld) != 1:
            raise AssertionError(f"{ops[0].slice} cycle {cycle}: cannot merge {ops}")
        mn, f = "MVM", mv[0].instr_fields()
        lf = ld[0].instr_fields()
        f.update(ld=1 if ld[0].mn == "LW" else 2, row=lf["row"], w_s=lf["w_s"], w_d=lf["w_d"],
                 extra=lf.get("extra", 0))
    full = _ZEROS[mn].copy()
    full.update(f)
    return mn, full


#: every field of each mnemonic, zero (what a word's unset fields are)
_ZEROS = {mn: dict.fromkeys(d.field_names, 0) for mn, d in DEF_BY_MNEMONIC.items()}


def _run(items: list[tuple[int, str, dict]], i: int) -> tuple[int, int, int, int]:
    """Longest j >= i such that items[i..j] is one REPEAT-able run: (j, d, sa, sb)."""
    if i + 1 >= len(items):
        return i, 0, 0, 0
    c0, mn, a = items[i]
    c1, mn1, b = items[i + 1]
    if mn != mn1:
        return i, 0, 0, 0
    fa, fb = _STRIDES[mn]
    d = c1 - c0

    def diffs(x: dict, y: dict):
        sa = sb = None
        for name, v in y.items():
            delta = v - x[name]
            if name in fa:
                if sa is None:
                    sa = delta
                elif sa != delta:
                    return None
            elif name in fb:
                if sb is None:
                    sb = delta
                elif sb != delta:
                    return None
            elif delta:
                return None
        return sa or 0, sb or 0

    st = diffs(a, b)
    if st is None or d > 65535 or abs(st[0]) > MAX_STRIDE or abs(st[1]) > MAX_STRIDE:
        return i, 0, 0, 0
    j = i + 1
    while j + 1 < len(items) and j - i < 65535:
        c2, m2, y = items[j + 1]
        if c2 - items[j][0] != d or m2 != mn or diffs(items[j][2], y) != st:
            break
        j += 1
    return j, d, st[0], st[1]


_STRIDES = {mn: tuple(set(x) for x in stride_fields(d)) for mn, d in DEF_BY_MNEMONIC.items()}


def encode_queue(slice_: str, items: list[tuple[int, str, dict]], cfg: TspConfig,
                 full: bool = True) -> QueueCode:
    """Words of one queue (``full``: as validated Instr objects, else only counted)."""
    q = QueueCode(slice_)
    t = 0
    i = 0
    kind = cfg.slice(slice_).kind
    nwords = 0
    lat = {}
    while i < len(items):
        c, mn, f = items[i]
        if c < t:
            raise AssertionError(f"{slice_}: two instructions in cycle {c}")
        ins = None
        if full:
            ins = Instr(mn, f)
            validate(ins, kind, cfg)
        if c > t:
            nwords += 1
            if full:
                q.words.append(Instr("NOP", {"n": c - t}))
        j, d, sa, sb = _run(items, i)
        n = j - i
        if n >= 2 or (n == 1 and d > 1):
            nwords += 2
            if full:
                q.words.append(ins)
                q.words.append(Instr("REPEAT", {"n": n, "d": d, "stride_a": sa,
                                                "stride_b": sb}))
            t = c + n * d + 1
        else:
            j = i
            nwords += 1
            if full:
                q.words.append(ins)
            t = c + 1
        for k in range(i, j + 1):
            ck, mk, fk = items[k]
            L = lat.get(mk)
            if L is None:
                L = lat[mk] = latency(mk, cfg)
            q.issued.append((ck, Instr(mk, fk) if full else mk, L))
            q.timeline.add(ck, ck + occupancy(mk, cfg, fk))
        i = j + 1
    nwords += 1
    if full:
        q.words.append(Instr("HALT", {}))
    q.nwords = nwords
    q.halt_cycle = t
    return q


@dataclass
class Emitted:
    queues: dict[str, QueueCode]
    cycles: int
    busy: dict[str, int]
    mvm: dict[str, int]
    issued: dict[str, int]
    #: MVMs by purpose over all MXMs ("matmul" = the model's own products)
    mvm_purpose: dict[str, int] = field(default_factory=dict)


def emit(cfg: TspConfig, bundles: list[Bundle], full: bool = True) -> Emitted:
    per: dict[str, dict[int, list[Op]]] = {s.name: {} for s in cfg.slices}
    purpose: dict[str, int] = {}
    for b in bundles:
        for op in b.ops:
            per[op.slice].setdefault(op.cycle, []).append(op)
            if op.mn == "MVM":
                purpose[op.purpose] = purpose.get(op.purpose, 0) + 1
    queues = {}
    last = 0
    busy, mvm, issued = {}, {}, {}
    for s in cfg.slices:
        cyc = per[s.name]
        items = [(c, *_merge(c, cyc[c])) for c in sorted(cyc)]
        q = encode_queue(s.name, items, cfg, full)
        queues[s.name] = q
        last = max(last, q.halt_cycle)
        last = max(last, q.timeline.until)
        busy[s.name] = q.timeline.busy
        issued[s.name] = len(q.issued)
        if s.kind == "MXM":
            mvm[s.name] = sum(1 for _c, ins, _l in q.issued
                              if (ins if isinstance(ins, str) else ins.mnemonic) == "MVM")
    return Emitted(queues, last + 1, busy, mvm, issued, purpose)
