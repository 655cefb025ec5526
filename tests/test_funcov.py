"""Functional coverage (tb/funcov.py): the bins follow the ISA and the floorplan of the
config, directed programs hit exactly the bins their timing says (checked against the
rules of docs/isa.md), coverage files merge across processes, and the random program
generators of tb/chip together hit every opcode bin."""

from __future__ import annotations

import time
from collections import defaultdict

import numpy as np
import pytest

from arch.asm import parse_instr
from arch.config import get_config
from arch.isa import DEFS, ICU_DEFS, OPCODES, SLICE_KINDS, TYPES, VXM_OPS, Instr, latency
from arch.program import Program
from tb.chip.programs import random_mem_program
from tb.chip.programs_compute import KINDS, random_compute_program
from tb.funcov import FunctionalCoverage

TINY, SMALL = get_config("tiny"), get_config("small")


def P(cfg, name):
    return cfg.slice(name).index


def program(cfg, items) -> Program:
    """items: (slice, cycle, text[, REPEAT text]): each queue issues its instructions in
    exactly those cycles (NOP gaps) and then HALTs."""
    queues, t_next = defaultdict(list), {}
    for sl, t, text, *rep in sorted(items, key=lambda it: (it[0], it[1])):
        kind = cfg.slice(sl).kind
        tn = t_next.get(sl, 0)
        assert t >= tn, (sl, t, text)
        if t > tn:
            queues[sl].append(Instr("NOP", {"n": t - tn}))
        queues[sl].append(parse_instr(text, kind, cfg))
        t_next[sl] = t + 1
        if rep:
            r = parse_instr(rep[0], kind, cfg)
            queues[sl].append(r)
            t_next[sl] = t + r["n"] * r["d"] + 1
    for q in queues.values():
        q.append(Instr("HALT", {}))
    return Program.from_instrs(cfg, queues)


def sample(cfg, items, init=None) -> FunctionalCoverage:
    cov = FunctionalCoverage(cfg)
    err = cov.sample(program(cfg, items), init)
    assert err is None, err
    assert not cov.unexpected, cov.unexpected
    return cov


def hit(cov, *names):
    for n in names:
        assert n in {b.name for b in cov.bins()}, f"{n} is not a bin"
    return [n for n in names if cov.hits[n]]


def all_hit(cov, *names) -> bool:
    got = hit(cov, *names)
    assert got == list(names), f"not hit: {sorted(set(names) - set(got))}"
    return True


# ============================================================================ bin set
@pytest.mark.parametrize("config", ["tiny", "small", "medium", "full", "tiny3"])
def test_bins_follow_the_isa(config):
    cfg = get_config(config)
    cov = FunctionalCoverage(cfg)
    bins = cov.bins()
    names = [b.name for b in bins]
    assert len(names) == len(set(names))
    assert all(b.doc and b.group for b in bins)
    groups = cov.groups()
    for kind in SLICE_KINDS:
        if not cfg.slices_of(kind):  # C2C: bins only where the config has links
            assert f"{kind} opcodes" not in groups
            continue
        opc = {b.name for b in groups[f"{kind} opcodes"]}
        # every mnemonic of the kind (ICU instructions included) has opcode bins
        for mn in OPCODES[kind]:
            has = any(n == f"{kind}.{mn}" or n.startswith(f"{kind}.{mn}.") for n in opc)
            # (the transposer's instructions only where the config has transposers)
            assert has == (mn not in ("TPUT", "TGET") or bool(cfg.sxm_transpose_rows)), mn
        for mn in ICU_DEFS:
            assert f"{kind}.{mn}" in opc
        # typed stream operands: every type in some direction
        for mn, d in DEFS[kind].items():
            roles = [f.name[:-2] for f in d.fields if f.name.endswith("_s")
                     and f.bounds(cfg)[1] > 0  # (READ's w= needs mem_read_write)
                     and (mn not in ("TPUT", "TGET") or cfg.sxm_transpose_rows)]
            for r in roles:
                ts = TYPES if "type" in d.field_names else None
                got = {n.split(".")[-1] for n in opc if n.startswith(f"{kind}.{mn}.{r}.")}
                assert got, (mn, r)
                if ts:
                    assert got == set(TYPES), (mn, r, got)
            for dr in ("E", "W"):  # both directions: each kind sits in both hemispheres
                for r in roles:
                    assert any(n.startswith(f"{kind}.{mn}.{r}.{dr}.") for n in opc), (mn, r)
    for op in VXM_OPS:
        for t in TYPES:
            assert f"VXM.{op.name}.{t}" in names
    for r in "abc":
        for t in TYPES:
            assert f"VXM.VXM.{r}.E.{t}" in names and f"VXM.VXM.{r}.W.{t}" in names
    assert "MXM.MVM.ld=2" in names and "VXM.VXM.sat=1" in names
    # MEM instructions have no flag/mode fields but READ's wr (with mem_read_write)
    assert ("MEM modes" in groups) == bool(cfg.mem_read_write)
    # REPEAT stride bins only where the kind has fields of that stride class
    # (READ's write address is a B-stride field with mem_read_write)
    assert "repeat.MXM.stride_b" in names
    assert ("repeat.MEM.stride_b" in names) == bool(cfg.mem_read_write)
    # floorplan-dependent bins
    two_mxm = cfg.mxms_per_hemisphere > 1
    assert ("stream.adjacent.MXM>MXM.E" in names) == two_mxm
    assert ("stream.overwrite.MXM.E" in names) == two_mxm  # MXM_x0 is an edge slice
    assert ("stream.adjacent.MEM>MEM.W" in names) == (cfg.mem_slices_per_hemisphere > 1)
    sxm_lat = [latency(m, cfg) for m in DEFS["SXM"] if m in
               ("SHS", "ROTS", "SHV", "ROTV", "DIST", "PERM", "RMAX", "RMIN", "RSUM")
               or (m == "TGET" and cfg.sxm_transpose_rows)]
    assert ("stream.write_reorder.SXM" in names) == (max(sxm_lat) - min(sxm_lat) >= 2)
    tp = ("sxm.tget_after_tput", "sxm.tget_sees_old_row", "SXM.TGET.rows=max",
          "SXM.TPUT.row=max", "SXM.TGET.out.W.i8", "SXM.TPUT.in.E.i8")
    assert all((n in names) == bool(cfg.sxm_transpose_rows) for n in tp)
    print(f"{config}: {len(bins)} bins: "
          + ", ".join(f"{g} {len(b)}" for g, b in groups.items()))


# ============================================================================ directed
def test_docs_example_hits_its_operand_bins_only():
    """READ on MEM_W0 in cycle 0 -> WRITE on MEM_E1 in cycle 1 + d (docs/isa.md)."""
    cfg = SMALL
    d = P(cfg, "MEM_E1") - P(cfg, "MEM_W0")
    cov = sample(cfg, [("MEM_W0", 0, "READ 3, s2.E"), ("MEM_E1", 1 + d, "WRITE s2.E, 7")])
    assert cov.hits["MEM.READ.out.E.i8"] == 1 and cov.hits["MEM.WRITE.in.E.i8"] == 1
    assert cov.hits["MEM.NOP"] == 1  # MEM_E1's gap
    for k in SLICE_KINDS:
        assert cov.hits[f"{k}.HALT"] == len(cfg.slices_of(k))
    assert not hit(cov, "MEM.READ.out.W.i8", "MEM.WRITE.in.W.i8", "MEM.SYNC", "MEM.REPEAT",
                   "stream.multicast.E", "stream.overwrite.MEM.E")
    assert not [n for n in cov.hits if n.startswith("stream.adjacent")]
    assert cov.programs == 1 and cov.refused == 0


def test_refused_program_counts_nothing():
    cfg = SMALL
    cov = FunctionalCoverage(cfg)
    err = cov.sample(program(cfg, [("MEM_W0", 0, "READ 3, s2.E"),
                                   ("MEM_E1", 5, "WRITE s2.E, 7")]))
    assert err and "no valid value" in err
    assert not cov.hits and cov.refused == 1 and cov.programs == 0


def test_adjacent_forwarding_and_multicast():
    """MEM_W1 READs; MEM_W0 (distance 1) and the VXM (distance 2) take the value."""
    cfg = SMALL
    cov = sample(cfg, [("MEM_W1", 0, "READ 0, s1.E"), ("MEM_W0", 2, "WRITE s1.E, 0"),
                       ("VXM", 3, "VXM.i8 s3.E = ADD(s1.E, 1)")])
    assert cov.hits["stream.adjacent.MEM>MEM.E"] == 1
    assert cov.hits["stream.multicast.E"] == 1
    assert not hit(cov, "stream.adjacent.MEM>VXM.E", "stream.multicast.W",
                   "stream.adjacent.MEM>MEM.W")
    assert all_hit(cov, "VXM.VXM.a.E.i8", "VXM.VXM.b.imm", "VXM.VXM.d.E.i8", "VXM.ADD.i8",
               "VXM.op1.ADD")


@pytest.mark.parametrize("overwrite", [False, True])
def test_stream_overwrite(overwrite):
    """A value from MEM_W1 passes MEM_W0 in cycle 2; MEM_W0 takes it (WRITE) and, with
    ``overwrite``, its READ of cycle 1 replaces it on the stream in that cycle."""
    cfg = SMALL
    items = [("MEM_W1", 0, "READ 0, s1.E"), ("MEM_W0", 2, "WRITE s1.E, 9"),
             ("MEM_E0", 4, "WRITE s1.E, 3")]
    if overwrite:
        items.append(("MEM_W0", 1, "READ 1, s1.E"))
    cov = sample(cfg, items)
    exp = ["stream.overwrite.MEM.E", "stream.read_and_replace.MEM"] if overwrite else []
    assert hit(cov, "stream.overwrite.MEM.E", "stream.read_and_replace.MEM",
               "stream.overwrite.MEM.W") == exp


def test_mem_bank_switch_and_conflict():
    cfg = SMALL
    depth = cfg.mem_depth
    cov = sample(cfg, [("MEM_W0", 0, "READ 3, s0.E"), ("MEM_W0", 1, f"READ {depth + 3}, s1.E")])
    assert hit(cov, "mem.bank_switch.R0>R1", "mem.bank_switch.R1>R0") == [
        "mem.bank_switch.R0>R1"]
    # WRITE (lands in cycle 3) then READ in cycle 3: other bank legal, same bank refused
    feed = [("MEM_W1", 0, "READ 0, s2.E"), ("MEM_W0", 2, f"WRITE s2.E, {depth + 5}")]
    cov = sample(cfg, feed + [("MEM_W0", 3, "READ 4, s3.E")])
    assert hit(cov, "mem.bank_switch.W1>R0", "mem.bank_switch.R0>W1") == [
        "mem.bank_switch.W1>R0"]
    cov = FunctionalCoverage(cfg)
    err = cov.sample(program(cfg, feed + [("MEM_W0", 3, f"READ {depth + 6}, s3.E")]))
    assert "bank conflict" in err and not cov.hits


@pytest.mark.parametrize("delta", [0, 1])
def test_mem_read_after_write(delta):
    """WRITE issued in t writes the SRAM in t+1; a READ of that address in t+2 is the
    earliest (t+1 would be a bank conflict)."""
    cfg = SMALL
    cov = sample(cfg, [("MEM_W1", 0, "READ 0, s2.E"), ("MEM_W0", 2, "WRITE s2.E, 600"),
                       ("MEM_W0", 4 + delta, "READ 600, s3.E")])
    assert bool(cov.hits["mem.raw_earliest.WRITE>READ"]) == (delta == 0)
    assert not cov.hits["mem.raw_earliest.WRITE>GATHER"]


@pytest.mark.parametrize("delta", [-2, 0, 1])
def test_vxm_register_timing(delta):
    """A register written by an instruction issued in t is visible from t + L + 1."""
    cfg = SMALL
    t = latency("VXM", cfg) + 1 + delta
    cov = sample(cfg, [("VXM", 0, "VXM.i32 r1 = ADD(5, lane)"),
                       ("VXM", t, "VXM.i32 s0.E = ADD(r1, 1)")])
    assert bool(cov.hits["vxm.reg_raw_earliest"]) == (delta == 0)
    assert bool(cov.hits["vxm.reg_read_in_flight"]) == (delta < 0)
    assert all_hit(cov, "VXM.VXM.a.imm", "VXM.VXM.b.lane", "VXM.VXM.d.reg", "VXM.VXM.a.reg",
               "VXM.VXM.d.E.i32", "VXM.ADD.i32", "VXM.VXM.i32:i32", "VXM.VXM.sat=0")
    assert not hit(cov, "vxm.reg_read_modify_write", "VXM.ADD.i8", "VXM.VXM.sat=1")
    cov = sample(cfg, [("VXM", 0, "VXM.i32 r1 = ADD(r1, 1)")])
    assert all_hit(cov, "vxm.reg_read_modify_write")


@pytest.mark.parametrize("delta", [-1, 0, 1])
def test_sxm_perm_after_pmap(delta):
    """PMAP in t writes the map in t+1; PERM sees it from t+2 (earlier: the old map)."""
    cfg = SMALL
    vl = cfg.vector_length
    sxm, m3, m2 = (P(cfg, n) for n in ("SXM_W", "MEM_W3", "MEM_W2"))
    t_pmap = 1 + (m2 - sxm)  # both map planes arrive together, westward
    t_perm = t_pmap + latency("PMAP", cfg) + 1 + delta
    rd = latency("READ", cfg)
    items = [("MEM_W3", t_pmap - rd - (m3 - sxm), "READ 0, s0.W"),
             ("MEM_W2", t_pmap - rd - (m2 - sxm), "READ 0, s1.W"),
             ("SXM_W", t_pmap, "PMAP 0, s0.W"),
             ("MEM_W3", t_perm - rd - (m3 - sxm), "READ 1, s2.W"),
             ("SXM_W", t_perm, "PERM.i8 0, s2.W, s3.E")]
    init = {"MEM_W3": {0: np.arange(vl)[::-1].astype(np.uint8), 1: np.arange(vl, dtype=np.uint8)},
            "MEM_W2": {0: np.zeros(vl, np.uint8)}}
    cov = sample(cfg, items, init)
    assert bool(cov.hits["sxm.perm_after_pmap_earliest"]) == (delta == 0)
    assert bool(cov.hits["sxm.perm_map_in_flight"]) == (delta < 0)
    assert all_hit(cov, "SXM.PMAP.in.W.u16", "SXM.PERM.in.W.i8", "SXM.PERM.out.E.i8",
               "SXM.PERM.map=min", "stream.adjacent.MEM>SXM.W")
    assert not hit(cov, "SXM.PERM.in.E.i8", "SXM.PERM.map=max")


@pytest.mark.parametrize("delta", [0, 1])
def test_mxm_weight_swap_timing(delta):
    """LW lands in t+1 -> IW (earliest when delta = 0) -> MVM next cycle -> accumulating
    MVM -> MVM with lw= -> IW as it lands -> MVM: the double-buffering corner cases."""
    cfg = SMALL
    mxm, m3, m2 = (P(cfg, n) for n in ("MXM_W0", "MEM_W3", "MEM_W2"))
    rd = latency("READ", cfg)

    def feed(src, t, text):  # a READ on src arriving at MXM_W0 in cycle t
        return (src, t - rd - (P(cfg, src) - mxm), text)

    t_lw = rd + (m3 - mxm)
    t_iw = t_lw + latency("LW", cfg) + delta
    items = [feed("MEM_W3", t_lw, "READ 0, s0.W"), ("MXM_W0", t_lw, "LW 0, s0.W"),
             ("MXM_W0", t_iw, "IW"),
             feed("MEM_W3", t_iw + 1, "READ 1, s1.W"), ("MXM_W0", t_iw + 1, "MVM s1.W, 0"),
             feed("MEM_W3", t_iw + 2, "READ 2, s1.W"),
             ("MXM_W0", t_iw + 2, "MVM s1.W, 0, accum"),
             feed("MEM_W3", t_iw + 3, "READ 3, s1.W"), feed("MEM_W2", t_iw + 3, "READ 4, s0.W"),
             ("MXM_W0", t_iw + 3, "MVM s1.W, 1, lw=5@s0.W"),
             ("MXM_W0", t_iw + 3 + latency("LW", cfg), "IW"),
             feed("MEM_W3", t_iw + 5, "READ 5, s1.W"), ("MXM_W0", t_iw + 5, "MVM s1.W, 2")]
    cov = sample(cfg, items)
    assert bool(cov.hits["mxm.iw_at_load_done.LW"]) == (delta == 0)
    assert cov.hits["mxm.mvm_after_iw"] == 2
    assert all_hit(cov, "mxm.accum_b2b", "mxm.mvm_lw_b2b", "mxm.iw_at_load_done.MVM.lw",
               "mxm.mvm_iw_mvm", "MXM.LW.w.W.i8", "MXM.MVM.x.W.i8", "MXM.MVM.w.W.i8",
               "MXM.IW", "MXM.MVM.accum=1", "MXM.MVM.ld=1", "MXM.MVM.ld=0", "MXM.MVM.emit=0")
    assert not hit(cov, "mxm.mvm_lwt_b2b", "mxm.iw_at_load_done.LWT", "MXM.MVM.out.E.i32",
                   "MXM.MVM.ld=2", "MXM.MVM.row=max")
    # an IW before a load lands is refused: nothing counted
    bad = FunctionalCoverage(cfg)
    err = bad.sample(program(cfg, [items[0], ("MXM_W0", t_lw, "LWT 0, s0.W"),
                                   ("MXM_W0", t_lw + latency("LWT", cfg) - 1, "IW")]))
    assert "IW while a weight load is in flight" in err and not bad.hits
    ok = sample(cfg, [items[0], ("MXM_W0", t_lw, "LWT 0, s0.W"),
                      ("MXM_W0", t_lw + latency("LWT", cfg), "IW")])
    assert all_hit(ok, "mxm.iw_at_load_done.LWT", "MXM.LWT.w.W.i8", "MXM.LWT.row=min")


def test_mxm_multirow_load_bins():
    """Multi-row loads (mxm_load_rows = K > 1): the ``extra`` range ends (not for an MVM
    without a load: the field is gated by ``ld``), the last stream of a K-row load, and
    a multi-row MVM lw= at full MVM rate; none of these bins on K = 1."""
    cfg = get_config("small:mxm_load_rows=4")
    K, NS = cfg.mxm_load_rows, cfg.streams_per_direction
    mxm = P(cfg, "MXM_W0")
    rd = latency("READ", cfg)
    mems = ["MEM_W3", "MEM_W2", "MEM_W1", "MEM_W0", "MEM_E0"]

    def feed(src, t, text):  # a READ on src arriving at MXM_W0 in cycle t
        return (src, t - rd - (P(cfg, src) - mxm), text)

    t = rd + (P(cfg, "MEM_E0") - mxm)
    items = [feed(mems[j], t, f"READ {j}, s{NS - K + j}.W") for j in range(K)]
    items.append(("MXM_W0", t, f"LW {K}, s{NS - K}.W, rows={K}"))
    t += 2  # MVM, then MVM lw= rows=K (x on s0, weights on s1..s4)
    items += [feed("MEM_E0", t, "READ 9, s0.W"), ("MXM_W0", t, "MVM s0.W, 0")]
    items += [feed(mems[j], t + 1, f"READ {j}, s{j}.W") for j in range(K + 1)]
    items.append(("MXM_W0", t + 1, f"MVM s0.W, 1, lw=1@s1.W, rows={K - 1}"))
    items += [feed(mems[j], t + 2, f"READ {j}, s{j}.W") for j in range(2)]
    items.append(("MXM_W0", t + 2, "MVM s0.W, 2, lw=8@s1.W"))
    cov = sample(cfg, items)
    assert all_hit(cov, "MXM.LW.extra=max", "MXM.LW.w_s=max", "MXM.MVM.extra=min",
                   "mxm.mvm_lw_rows_b2b", "mxm.mvm_lw_b2b")
    assert cov.hits["MXM.MVM.extra=min"] == 1  # (the MVM without a load does not count)
    assert not hit(cov, "MXM.LW.extra=min", "MXM.MVM.extra=max", "mxm.mvm_lwt_rows_b2b")
    assert cov.hits["MXM.LW.w.W.i8"] == 1
    k1 = {b.name for b in FunctionalCoverage(SMALL).bins()}
    assert not {n for n in k1 if "extra" in n or "rows_b2b" in n}


def test_repeat_bins():
    cfg = SMALL
    cov = sample(cfg, [("MEM_W0", 0, "READ 0, s2.E", "REPEAT 3, 1, 1")])
    assert hit(cov, "repeat.MEM.stride_a", "repeat.MEM.d1", "repeat.MEM.negative",
               "MEM.REPEAT") == ["repeat.MEM.stride_a", "repeat.MEM.d1", "MEM.REPEAT"]
    assert cov.hits["MEM.READ.out.E.i8"] == 4  # the repetitions count too
    cov = sample(cfg, [("MEM_W0", 0, "READ 9, s2.E", "REPEAT 2, 2, -1")])
    assert hit(cov, "repeat.MEM.stride_a", "repeat.MEM.d1", "repeat.MEM.negative") == [
        "repeat.MEM.stride_a", "repeat.MEM.negative"]
    cov = sample(cfg, [("MEM_W0", 0, "READ 9, s2.E", "REPEAT 2, 1")])
    assert hit(cov, "repeat.MEM.stride_a", "repeat.MEM.d1") == ["repeat.MEM.d1"]


@pytest.mark.parametrize("gap", [0, 3])
def test_barrier_bins(gap):
    """Every queue SYNCs in cycle 0 but the VXM, which NOTIFYs in cycle ``gap``."""
    cfg = SMALL
    vxm = [Instr("NOP", {"n": gap})] if gap else []
    queues = {s.name: ([Instr("SYNC", {})] if s.kind != "VXM" else
                       vxm + [Instr("NOTIFY", {})]) + [Instr("HALT", {})]
              for s in cfg.slices}
    cov = FunctionalCoverage(cfg)
    assert cov.sample(Program.from_instrs(cfg, queues)) is None
    assert all_hit(cov, "barrier.all", "VXM.NOTIFY", "MEM.SYNC", "SXM.SYNC", "MXM.SYNC",
               "barrier.release.MEM", "barrier.release.MXM", "barrier.release.SXM")
    assert cov.hits["barrier.release.MEM"] == len(cfg.slices_of("MEM"))
    assert not hit(cov, "barrier.release.VXM", "MEM.NOTIFY", "VXM.SYNC")
    assert bool(cov.hits["barrier.same_cycle"]) == (gap == 0)


# ============================================================================ merge / json
def test_merge_and_json_round_trip():
    cfg = SMALL
    a = sample(cfg, [("MEM_W0", 0, "READ 0, s2.E", "REPEAT 3, 1, 1")])
    b = sample(cfg, [("MEM_W1", 0, "READ 0, s1.E"), ("MEM_W0", 2, "WRITE s1.E, 0")])
    expected = a.hits + b.hits
    back = FunctionalCoverage.from_json(a.to_json())
    assert back.hits == a.hits and back.programs == 1 and back.cfg == cfg
    back.merge(FunctionalCoverage.from_json(b.to_json()))
    assert back.hits == expected and back.programs == 2
    assert back.report() == FunctionalCoverage.from_json(back.to_json()).report()
    rep = back.report()
    for g in back.groups():
        assert g in rep
    assert "mem.raw_earliest.WRITE>READ" in rep  # a missed bin is listed by name
    with pytest.raises(ValueError, match="cannot merge"):
        back.merge(FunctionalCoverage(TINY))
    doc = a.to_json().replace('"MEM.REPEAT"', '"MEM.NO_SUCH_BIN"')
    with pytest.raises(ValueError, match="does not define"):
        FunctionalCoverage.from_json(doc)


# ============================================================================ random programs
N_SEEDS = 20
MAX_SEEDS = 40  # top-up limit when the first N_SEEDS leave opcode bins unhit


def _sample_seed(covs, seed) -> None:
    for config, cov in covs.items():
        cfg = get_config(config)
        rp = random_mem_program(cfg, seed)
        err = cov.sample(rp.program, rp.init)
        assert err is None, f"{config} MEM seed {seed}: {err}"
        for kind in KINDS:
            rp = random_compute_program(cfg, seed, kind)
            err = cov.sample(rp.program, rp.init)
            assert err is None, f"{config} {kind} seed {seed}: {err}"


def _opcode_missed(covs) -> set[str]:
    """Opcode bins no program of any config hit."""
    missed = None
    for cov in covs.values():
        m = {n for g in cov.groups() if g.endswith(" opcodes") for n in cov.missed(g)}
        missed = m if missed is None else missed & m
    return missed


def test_random_generators_coverage(base_seed):
    """The MEM generator and every kind of the compute generator, N_SEEDS seeds each on
    tiny and small: reports printed; together they hit every opcode bin (more seeds are
    drawn, up to MAX_SEEDS, if the first N_SEEDS do not)."""
    t0 = time.time()
    covs = {c: FunctionalCoverage(c) for c in ("tiny", "small")}
    seeds = [base_seed * 1000 + i for i in range(N_SEEDS)]
    print(f"generators: random_mem_program + random_compute_program kinds {KINDS}; "
          f"seeds {seeds[0]}..{seeds[-1]}")
    for seed in seeds:
        _sample_seed(covs, seed)
    for cov in covs.values():
        print(cov.report())
        assert not cov.unexpected and cov.refused == 0
    missed = _opcode_missed(covs)
    n = N_SEEDS
    while missed and n < MAX_SEEDS:
        print(f"after {n} seeds per kind, opcode bins missed on every config: {sorted(missed)}")
        _sample_seed(covs, base_seed * 1000 + n)
        n += 1
        missed = _opcode_missed(covs)
    print(f"opcode bins all hit after {n} seeds per kind; {time.time() - t0:.1f} s")
    assert not missed, f"opcode bins never hit in {n} seeds per kind: {sorted(missed)}"
