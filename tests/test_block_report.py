"""The printed `make sim` report: lock-step stated, cached build figures labelled as
such (never a part larger than the whole), the waveform's format named."""

from __future__ import annotations

from sim.block import print_report

BASE = {
    "config": "small", "shape": {"seq": 16, "d_model": 32, "heads": 2, "d_ff": 64,
                                 "causal": True},
    "seed": 0, "bit_exact": True, "cycles_predicted": 606, "cycles_measured": 606,
    "cycles_clock": 606, "cycles_model": 606, "cycles_lower_bound": 329,
    "ratio_to_lower_bound": 1.84, "lower_bound_terms": {}, "mxm_utilization": 0.145,
    "mxm_utilization_all_mvms": 0.2, "mvm_useful": 176, "mvm_overhead": 66,
    "busy_pct_by_kind": {"VXM": 72.0}, "counters_match_model": True,
    "cosine_vs_float": 0.9997, "max_abs_err_lsb_vs_float": 2,
    "frac_within_1lsb_vs_float": 0.99, "sim_cycles_per_second": 5000.0,
    "wall_seconds": 192.0, "verilog_seconds": 210.7, "verilog_cached": True,
    "verilator_build_seconds": 307.3, "verilator_cached": True, "run_seconds": 3.1,
    "lockstep": False, "lockstep_passed": False, "report_json": "build/sim/x/report.json",
    "waves": None,
}


def printed(**kw) -> str:
    lines: list[str] = []
    print_report({**BASE, **kw}, log=lines.append)
    return "\n".join(lines)


def test_cached_figures_are_labelled():
    out = printed()
    assert "Verilog cached (took 210.7 s when made)" in out
    assert "Verilator build cached (took 307.3 s when made)" in out
    assert "Verilog 210.7 s" not in out  # not presented as part of this wall time
    fresh = printed(verilog_cached=False, verilator_cached=False, wall_seconds=600.0,
                    verilog_seconds=120.0)
    assert "Verilog 120.0 s, Verilator build 307.3 s, chip run 3.1 s" in fresh


def test_lockstep_is_stated():
    assert "lock-step         not run" in printed()
    assert ("lock-step         ran: every stream register of every superlane, every cycle, vs "
            "the machine model: passed") in printed(lockstep=True, lockstep_passed=True)
    assert printed(lockstep=True, lockstep_passed=False).count("FAILED") == 1


def test_wave_format_named():
    assert "waves (VCD)       build/runs/r/dump.vcd" in printed(
        waves="build/runs/r/dump.vcd", wave_format="vcd")
    assert "waves (FST)       build/runs/r/dump.fst" in printed(
        waves="build/runs/r/dump.fst", wave_format="fst")
