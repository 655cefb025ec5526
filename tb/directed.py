"""Directed programs for the functional-coverage bins the random generators do not reach
(``make coverage`` names them): hand-placed programs, each a `tb.fuzz.Case` (program,
SRAM image, the addresses it writes), accepted by the model from any power-up state and
run on the chip like fuzz cases.  ``DIRECTED`` maps a name to (builder, the bins it
exists for); `tests/test_directed.py` checks on the model that each program hits its
bins, `tests/test_fuzz_rtl.py` runs them on the chip.

Placement: a value written by the slice at position ``p`` in cycle ``t`` is at ``p +- d``
in cycle ``t + d`` (docs/isa.md), so a consumer ``d`` positions downstream of a READ issued
in ``t`` issues in ``t + 1 + d``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from arch.asm import Schedule
from arch.config import TspConfig
from arch.isa import latency
from tb.fuzz import Case, model_outcome


def _case(cfg: TspConfig, name: str, sch: Schedule, image) -> Case:
    c = Case(cfg, sch.program(f"<directed {name}>"), image, {},
             {"name": f"{cfg.name}-directed-{name}"})
    out = model_outcome(c, compare={})
    if not out.ok:
        raise AssertionError(f"directed program {name} on {cfg.name}: {out.error}\n"
                             + sch.text())
    c.compare = out.written
    return c


def _rng(cfg, name):
    return np.random.default_rng([sum(map(ord, name)), cfg.superlanes])


def _mems(cfg: TspConfig, side: str) -> list[str]:
    """MEM slices of one hemisphere, from the VXM outwards."""
    v = cfg.slices_of("VXM")[0].index
    return [s.name for s in sorted(cfg.slices_of("MEM"), key=lambda s: abs(s.index - v))
            if s.name.startswith(f"MEM_{side}")]


def sxm_feeds_mxm(cfg: TspConfig) -> Case:
    """On each side the SXM next to the MXM shifts VL weight rows (SHS) straight into the
    MXM's LW (adjacent positions, first cycle), IW at the earliest cycle, one MVM whose
    int32 result two MEM slices store (planes 0 and 1)."""
    sch = Schedule(cfg)
    vl = cfg.vector_length
    rng = _rng(cfg, "sxm_feeds_mxm")
    l_shs, l_lw, l_mvm = latency("SHS", cfg), latency("LW", cfg), latency("MVM", cfg)
    image: dict[str, dict[int, np.ndarray]] = {}
    for side, out in (("W", "E"), ("E", "W")):
        sxm, mxm = f"SXM_{side}", f"MXM_{side}0"
        mems = _mems(cfg, side)
        p = sch.pos
        m_w = mems[-1]  # the MEM next to the SXM: weight rows
        m_x = mems[-2] if len(mems) > 1 else mems[-1]
        m_y0, m_y1 = mems[0], mems[1]
        d_wm = abs(p[m_w] - p[sxm])
        t_rd = 0
        t_shs = t_rd + 1 + d_wm
        t_lw = t_shs + l_shs + 1  # adjacent: one hop
        t_iw = t_lw + (vl - 1) + l_lw  # the last row lands
        t_mvm = t_iw + 1
        d_xm = abs(p[m_x] - p[mxm])
        t_x = t_mvm - 1 - d_xm
        image.setdefault(m_w, {}).update(
            {a: rng.integers(0, 256, vl, dtype=np.uint8) for a in range(vl)})
        image.setdefault(m_x, {})[vl] = rng.integers(0, 256, vl, dtype=np.uint8)
        sd = side  # towards the MXM: W on the west side
        sch.at(m_w, t_rd, f"READ 0, s0.{sd}", n=vl - 1, stride=1)
        sch.at(sxm, t_shs, f"SHS.i8 1, s0.{sd}, s1.{sd}", n=vl - 1)
        sch.at(mxm, t_lw, f"LW 0, s1.{sd}", n=vl - 1, stride=1)
        sch.at(mxm, t_iw, "IW")
        if m_x == m_w:
            t_x = max(t_x, t_rd + vl)
            t_mvm = t_x + 1 + d_xm
        sch.at(m_x, t_x, f"READ {vl}, s2.{sd}")
        sch.at(mxm, t_mvm, f"MVM s2.{sd}, 0, emit=s4.{out}")
        t_out = t_mvm + l_mvm
        for plane, m in enumerate((m_y0, m_y1)):
            sch.at(m, t_out + abs(p[m] - p[mxm]), f"WRITE s{4 + plane}.{out}, {2 * vl + plane}")
    return _case(cfg, "sxm_feeds_mxm", sch, image)


def mem_extremes(cfg: TspConfig) -> Case:
    """GATHER and SCATTER at the last address (zero offsets), a WRITE then a GATHER of the
    same address in the first cycle after it lands, a SCATTER then a GATHER likewise, and
    a VXM immediate at its maximum."""
    sch = Schedule(cfg)
    vl, top = cfg.vector_length, cfg.mem_addresses - 1
    rng = _rng(cfg, "mem_extremes")
    w = _mems(cfg, "W")  # W0 next to the VXM
    e = _mems(cfg, "E")
    p = sch.pos
    zero = np.zeros(vl, np.uint8)
    image = {w[-1]: {0: zero, 1: rng.integers(0, 256, vl, dtype=np.uint8), 2: zero,
                     3: rng.integers(0, 256, vl, dtype=np.uint8), 4: zero},
             w[0]: {top: rng.integers(0, 256, vl, dtype=np.uint8)},
             e[0]: {}, e[-1]: {}}
    src, g = w[-1], w[0]  # eastward from the outer W MEM to the inner one
    d = p[g] - p[src]
    # GATHER top with zero offsets (read at src addr 0), result -> WRITE at e[0]
    sch.at(src, 0, "READ 0, s0.E")
    sch.at(g, 1 + d, f"GATHER {top}, s0.E, s1.E")
    sch.at(e[0], 1 + d + 1 + (p[e[0]] - p[g]), "WRITE s1.E, 10")
    # SCATTER top at e[0]: offsets (zeros, from src addr 2) and data (src addr 1 via g)
    t_sc = 20
    sch.at(src, t_sc - 1 - (p[e[0]] - p[src]), "READ 2, s2.E")
    sch.at(g, t_sc - 1 - (p[e[0]] - p[g]), f"READ {top}, s3.E")
    sch.at(e[0], t_sc, f"SCATTER {top}, s2.E, s3.E")
    # WRITE a at t, GATHER a (zero offsets) at t + 2 on e[-1]; then SCATTER a, GATHER a
    a, t_w = 7, 40
    dst = e[-1]
    sch.at(src, t_w - 1 - (p[dst] - p[src]), "READ 3, s4.E")
    sch.at(dst, t_w, f"WRITE s4.E, {a}")
    sch.at(src, t_w + 2 - 1 - (p[dst] - p[src]), "READ 4, s5.E")
    sch.at(dst, t_w + 2, f"GATHER {a}, s5.E, s6.W")
    sch.at(e[0], t_w + 2 + 1 + (p[dst] - p[e[0]]), "WRITE s6.W, 11")
    t_s = 60
    sch.at(src, t_s - 1 - (p[dst] - p[src]), "READ 4, s7.E")
    sch.at(g, t_s - 1 - (p[dst] - p[g]), f"READ {top}, s3.E")
    sch.at(dst, t_s, f"SCATTER {a + 1}, s7.E, s3.E")
    sch.at(src, t_s + 2 - 1 - (p[dst] - p[src]), "READ 4, s5.E")
    sch.at(dst, t_s + 2, f"GATHER {a + 1}, s5.E, s6.W")
    sch.at(e[0], t_s + 2 + 1 + (p[dst] - p[e[0]]), "WRITE s6.W, 12")
    # the largest VXM immediate
    t_v = 80
    sch.at(src, t_v - 1 - (p["VXM"] - p[src]), "READ 1, s0.E")
    sch.at("VXM", t_v, "VXM.i8 s1.E = ADD(s0.E, 16383)")
    sch.at(e[0], t_v + latency("VXM", cfg) + (p[e[0]] - p["VXM"]), "WRITE s1.E, 13")
    return _case(cfg, "mem_extremes", sch, image)


def sxm_overwrite_and_maps(cfg: TspConfig) -> Case:
    """The west SXM writes a westward stream in the cycle a value from upstream passes it
    (and reads that value with another instruction in the same cycle); a PERM while a
    PMAP to its map is in flight (the old map applies)."""
    sch = Schedule(cfg)
    vl = cfg.vector_length
    rng = _rng(cfg, "sxm_overwrite_and_maps")
    p = sch.pos
    sxm, mem = "SXM_W", _mems(cfg, "W")[-1]
    e0 = _mems(cfg, "E")[0]
    d = p[mem] - p[sxm]
    l_shs = latency("SHS", cfg)
    image = {mem: {a: rng.integers(0, 256, vl, dtype=np.uint8) for a in range(2)}}
    # SHS #1 reads v1 (s3.W) at t1 and writes s0.W at t1 + L; v2 on s0.W reaches the SXM
    # in that cycle, where SHS #2 reads it (and sends it east to be stored)
    t1 = 1 + d
    sch.at(mem, 0, "READ 0, s3.W")
    sch.at(sxm, t1, "SHS.i8 1, s3.W, s0.W")
    t2 = t1 + l_shs
    sch.at(mem, t2 - 1 - d, "READ 1, s0.W")
    sch.at(sxm, t2, "SHS.i8 2, s0.W, s5.E")
    sch.at(e0, t2 + l_shs + (p[e0] - p[sxm]), "WRITE s5.E, 20")
    # maps: PMAP m = A; PERM (uses A); PMAP m = B and a PERM in the next cycle (still A)
    perm_a = rng.permutation(vl).astype(np.uint16)
    perm_b = rng.permutation(vl).astype(np.uint16)
    for k, perm in ((2, perm_a), (4, perm_b)):
        image[mem][k] = (perm & 0xFF).astype(np.uint8)
        image[mem][k + 1] = (perm >> 8).astype(np.uint8)
    image[mem][6] = rng.integers(0, 256, vl, dtype=np.uint8)
    l_perm = latency("PERM", cfg)
    t_a = 30
    # the two byte planes of a map come from two READs: one MEM slice reads one per cycle,
    # so use the two outer W MEM slices (the map planes must arrive together)
    m2 = _mems(cfg, "W")[-2]
    d2 = p[m2] - p[sxm]
    image.setdefault(m2, {})
    for k in (2, 3, 4, 5):
        image[m2][k] = image[mem][k]
    sch.at(mem, t_a - 1 - d, "READ 2, s6.W")
    sch.at(m2, t_a - 1 - d2, "READ 3, s7.W")
    sch.at(sxm, t_a, "PMAP 1, s6.W")
    t_p = t_a + latency("PMAP", cfg) + 1
    sch.at(mem, t_p - 1 - d, "READ 6, s1.W")
    sch.at(sxm, t_p, "PERM.i8 1, s1.W, s2.E")
    sch.at(e0, t_p + l_perm + (p[e0] - p[sxm]), "WRITE s2.E, 21")
    t_b = t_p + 3
    sch.at(mem, t_b - 1 - d, "READ 4, s6.W")
    sch.at(m2, t_b - 1 - d2, "READ 5, s7.W")
    sch.at(sxm, t_b, "PMAP 1, s6.W")
    sch.at(mem, t_b - d, "READ 6, s1.W")
    sch.at(sxm, t_b + 1, "PERM.i8 1, s1.W, s4.E")
    sch.at(e0, t_b + 1 + l_perm + (p[e0] - p[sxm]), "WRITE s4.E, 22")
    return _case(cfg, "sxm_overwrite_and_maps", sch, image)


def vxm_groups_pass(cfg: TspConfig) -> Case:
    """Every VXM group sets its own r0 (10, 20, ...: the same register name, private to
    each group), then a value goes through the groups eastward and back westward, each
    group adding its r0 in the first cycle the previous one's result reaches it (one hop:
    issue L + 1 cycles after the previous group); MEM_W0 -> groups -> MEM_E0 and MEM_E0 ->
    groups -> MEM_W0.  With one group, the same through the one VXM."""
    sch = Schedule(cfg)
    vl, p, lv = cfg.vector_length, sch.pos, latency("VXM", cfg)
    rng = _rng(cfg, "vxm_groups_pass")
    groups = [s.name for s in cfg.slices_of("VXM")]
    w0, e0 = _mems(cfg, "W")[0], _mems(cfg, "E")[0]
    image = {w0: {0: rng.integers(0, 256, vl, dtype=np.uint8)},
             e0: {0: rng.integers(0, 256, vl, dtype=np.uint8)}}
    for k, g in enumerate(groups):
        sch.at(g, 0, f"VXM.i32 r0 = {10 * (k + 1)}")
    for d, src, dst, order in (("E", w0, e0, groups), ("W", e0, w0, groups[::-1])):
        t = lv + 1 if d == "E" else 4 * lv + 2 * len(groups) + 8
        sch.at(src, t - 1 - abs(p[order[0]] - p[src]), f"READ 0, s0.{d}")
        for k, g in enumerate(order):
            sch.at(g, t, f"VXM.i8 s{k + 1}.{d} = ADD(s{k}.{d}, r0)")
            t += lv + 1
        sch.at(dst, t - 1 + abs(p[dst] - p[order[-1]]), f"WRITE s{len(order)}.{d}, 1")
    return _case(cfg, "vxm_groups_pass", sch, image)


def mem_read_write(cfg: TspConfig) -> Case:
    """On configs with ``mem_read_write``: READ ..., w= words on MEM_W0 -- a read of bank 0
    and a write of bank 1 in one word, back to back (the read of the second word in the
    cycle the first one's write lands, the other bank), the old value read where the same
    word writes, then the written vectors read back (the second in the first cycle after its
    write lands); the results stored on MEM_E0.  Without it, the same reads and writes one
    instruction per cycle."""
    sch = Schedule(cfg)
    vl, p, depth = cfg.vector_length, sch.pos, cfg.mem_depth
    rng = _rng(cfg, "mem_read_write")
    w0, w1, e0 = _mems(cfg, "W")[0], _mems(cfg, "W")[1], _mems(cfg, "E")[0]
    image = {w1: {a: rng.integers(0, 256, vl, dtype=np.uint8) for a in (2, 3)},
             w0: {5: rng.integers(0, 256, vl, dtype=np.uint8)}, e0: {}}
    d1, de = p[w0] - p[w1], p[e0] - p[w0]
    t = 1 + d1  # the first vector from w1 is at w0
    last = f"s{cfg.streams_per_direction - 1}.E"  # (the write data on the last stream)
    sch.at(w1, 0, "READ 2, s0.E")
    sch.at(w1, 1, f"READ 3, {last}")
    writes = [(depth + 5, "s0.E"), (depth + 6, last)]
    if cfg.mem_read_write:
        for k, (wa, st) in enumerate(writes):
            sch.at(w0, t + k, f"READ 5, s{2 + k}.E, w={wa}@{st}")
        t_back = t + 3  # the second write lands at t + 2 in bank 1
    else:
        for k, (wa, st) in enumerate(writes):
            sch.at(w0, t + k, f"WRITE {st}, {wa}")
        for k in range(2):
            sch.at(w0, t + 3 + k, f"READ 5, s{2 + k}.E")
        t_back = t + 6
    sch.at(w0, t_back, f"READ {depth + 6}, s4.E")  # (read-write: the first cycle it can)
    sch.at(w0, t_back + 1, f"READ {depth + 5}, s5.E")
    t_r = [t, t + 1] if cfg.mem_read_write else [t + 3, t + 4]
    for k, tr in enumerate([*t_r, t_back, t_back + 1]):
        sch.at(e0, tr + 1 + de, f"WRITE s{2 + k}.E, {k + 1}")
    return _case(cfg, "mem_read_write", sch, image)


def sxm_transpose(cfg: TspConfig) -> Case | None:
    """On configs with SXM transposers, on each side: the R rows of a tile read from the
    MEM next to the SXM into the transposer in a shuffled row order (TPUT, one per cycle),
    then every column read back (TGET of all R rows, one per cycle) and stored; a row
    written again (the TGET in the next cycle still sees the old row, the one after the
    new); TGETs of fewer rows (zeros beyond) and of the last column.  None without a
    transposer (nothing to direct)."""
    R = cfg.sxm_transpose_rows
    if not R:
        return None
    sch = Schedule(cfg)
    vl, p = cfg.vector_length, sch.pos
    rng = _rng(cfg, "sxm_transpose")
    l_get = latency("TGET", cfg)
    image: dict[str, dict[int, np.ndarray]] = {}
    for side, toward, away in (("W", "W", "E"), ("E", "E", "W")):
        sxm, mem = f"SXM_{side}", _mems(cfg, side)[-1]
        d = abs(p[mem] - p[sxm])
        image[mem] = {a: rng.integers(0, 256, vl, dtype=np.uint8) for a in range(R + 1)}
        order = rng.permutation(R)
        for a in range(R):  # address a -> row order[a]
            sch.at(mem, a, f"READ {a}, s{a % 2}.{toward}")
            sch.at(sxm, a + 1 + d, f"TPUT {order[a]}, s{a % 2}.{toward}")
        t = R + 1 + d  # first cycle after the last TPUT
        outs = [(t + 1 + c, c, R) for c in range(vl)]  # every column
        t2 = t + vl + 2
        # row order[0] again (address R): a TGET at +1 sees the old row, at +2 the new
        m2 = _mems(cfg, side)[0]  # (mem is busy writing the columns by then)
        image.setdefault(m2, {})[R] = image[mem].pop(R)
        sch.at(m2, t2 - 1 - abs(p[m2] - p[sxm]), f"READ {R}, s2.{toward}")
        sch.at(sxm, t2, f"TPUT {order[0]}, s2.{toward}")
        outs += [(t2 + 1, 3, R), (t2 + 2, 3, R), (t2 + 3, vl - 1, max(1, R // 2)),
                 (t2 + 4, 0, 1)]
        for k, (tg, c, n) in enumerate(outs):
            st = f"s{3 + k % 2}.{away}"
            sch.at(sxm, tg, f"TGET {c}, {n}, {st}")
            sch.at(mem, tg + l_get + d, f"WRITE {st}, {cfg.mem_depth + k}")
    return _case(cfg, "sxm_transpose", sch, image)


#: name -> (builder, the functional-coverage bins it is there for)
DIRECTED: dict[str, tuple[Callable[[TspConfig], Case], tuple[str, ...]]] = {
    "sxm_feeds_mxm": (sxm_feeds_mxm, ("stream.adjacent.SXM>MXM.E",
                                      "stream.adjacent.SXM>MXM.W")),
    "mem_extremes": (mem_extremes, ("MEM.GATHER.addr=max", "MEM.SCATTER.addr=max",
                                    "VXM.VXM.imm=max", "mem.raw_earliest.WRITE>GATHER",
                                    "mem.raw_earliest.SCATTER>GATHER")),
    "sxm_overwrite_and_maps": (sxm_overwrite_and_maps, ("stream.overwrite.SXM.W",
                                                        "stream.read_and_replace.SXM",
                                                        "sxm.perm_map_in_flight")),
    # (bins of configs with two or more VXM groups)
    "vxm_groups_pass": (vxm_groups_pass, ("stream.adjacent.VXM>VXM.E",
                                          "stream.adjacent.VXM>VXM.W")),
    # (a bin of configs with mem_read_write)
    "mem_read_write": (mem_read_write, ("MEM.READ.wr=1", "MEM.READ.in_s=max")),
    # (bins of configs with SXM transposers; no program on the others)
    "sxm_transpose": (sxm_transpose, ("sxm.tget_after_tput", "sxm.tget_sees_old_row",
                                      "SXM.TGET.col=max", "SXM.TGET.rows=min")),
}


def directed_cases(cfg: TspConfig) -> list[Case]:
    """Every directed program that exists on ``cfg``."""
    return [c for c in (build(cfg) for build, _ in DIRECTED.values()) if c is not None]
