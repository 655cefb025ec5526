"""The lock-step monitor's comparison (`tb.chip.lockstep.LockstepMonitor.compare`) on
frames built here, against a stand-in model: every kind of difference is reported with
its cycle, stream, position and lane, bytes that depend on undefined state are skipped,
and identical frames pass.  (The RTL tests run it on captured frames, where it passes.)"""

from __future__ import annotations

import numpy as np
import pytest

from arch.config import get_config
from tb.chip.lockstep import LockstepMonitor

CFG = get_config("small")  # 2 superlanes: lane 21 is lane 5 of superlane 1
P, NS, VL, S = CFG.n_positions, CFG.streams_per_direction, CFG.vector_length, CFG.superlanes
CYCLES = 6


class Model:
    def __init__(self, vals, valid):
        self.vals, self.valid = vals, valid

    def stream_history(self, c0, c1):
        return self.vals[c0:c1].copy(), self.valid[c0:c1].copy()


def setup(seed):
    rng = np.random.default_rng(seed)
    print(f"seed {seed}")
    vals = rng.integers(0, 256, (CYCLES, 2, P, NS, VL), dtype=np.uint8)
    valid = rng.random((CYCLES, 2, P, NS)) < 0.3
    known = np.ones((2, P), bool)
    known[0, 0] = known[1, P - 1] = False  # no eastward register west of position 1, ...
    valid[:, 0, 0] = valid[:, 1, P - 1] = False
    mon = object.__new__(LockstepMonitor)
    mon.cfg, mon.undefined_lanes, mon._history = CFG, 0, {}
    # the monitor's layout: cycle, direction, position, superlane, stream, lane of superlane
    mon.vals = vals.reshape(CYCLES, 2, P, NS, S, 16).transpose(0, 1, 2, 4, 3, 5).copy()
    mon.known = known
    assert all(np.array_equal(mon.frame(c), vals[c]) for c in range(CYCLES))
    return mon, Model(vals, valid), rng


def poke(mon, c, d, p, s, lane, xor):
    """Flip bits of one RTL byte: stream s, lane `lane` of register (d, p) in cycle c."""
    mon.vals[c, d, p, lane // 16, s, lane % 16] ^= xor


def test_identical_frames_pass(base_seed):
    mon, model, _ = setup(base_seed)
    assert mon.compare(model, CYCLES) == []


def test_a_wrong_byte_is_named(base_seed):
    mon, model, _ = setup(base_seed)
    c, d, p, s = 3, 1, 2, 5
    model.valid[c, d, p, s] = True
    poke(mon, c, d, p, s, 21, 0x5A)
    errs = mon.compare(model, CYCLES)
    assert mon.compare(model, CYCLES, chunk=2) == errs  # windows of 2 cycles
    rtl, ref = mon.frame(c)[d, p, s, 21], model.vals[c, d, p, s, 21]
    assert rtl != ref
    assert errs == [f"cycle {c}: stream W{s} at position {p} ({CFG.slices[p].name}) lane 21: "
                    f"RTL {rtl:#04x}, model {ref:#04x}"]


def test_an_invalid_register_is_not_compared(base_seed):
    mon, model, _ = setup(base_seed)
    model.valid[2, 0, 3, 1] = False
    mon.vals[2, 0, 3, :, 1] ^= 0xFF  # every lane of stream E1 at position 3
    assert mon.compare(model, CYCLES) == []


def test_a_value_with_no_rtl_register_is_an_error(base_seed):
    mon, model, _ = setup(base_seed)
    model.valid[4, 0, 0, 2] = True
    assert mon.compare(model, CYCLES) == ["cycle 4: no RTL register for E[0]"]


def test_bytes_of_undefined_state_are_skipped_and_counted(base_seed):
    mon, model, _ = setup(base_seed)
    model.valid[1, 0, 2, 0] = True
    dirty = Model(model.vals.copy(), model.valid)
    dirty.vals[1, 0, 2, 0, 3] ^= 1  # lane 3 depends on power-up state
    poke(mon, 1, 0, 2, 0, 3, 0x80)  # and differs on the chip: not an error
    assert mon.compare(model, CYCLES, dirty=[dirty]) == []
    assert mon.undefined_lanes == 1
    poke(mon, 1, 0, 2, 0, 4, 0x80)  # lane 4 does not: an error
    assert len(mon.compare(model, CYCLES, dirty=[dirty])) == 1


def test_validity_that_depends_on_undefined_state_is_an_error(base_seed):
    mon, model, _ = setup(base_seed)
    dirty = Model(model.vals, model.valid.copy())
    dirty.valid[2, 0, 1, 0] = not model.valid[2, 0, 1, 0]
    assert mon.compare(model, CYCLES, dirty=[dirty]) == [
        "cycle 2: which stream registers hold a value depends on undefined state (the model "
        "from random state differs)"]


def test_errors_stop_at_the_limit(base_seed):
    mon, model, _ = setup(base_seed)
    model.valid[1:] = True
    model.valid[:, 0, 0] = model.valid[:, 1, P - 1] = False
    for c in range(1, CYCLES):
        mon.vals[c] ^= 1
    assert len(mon.compare(model, CYCLES, limit=4)) == 4


@pytest.mark.parametrize(("config", "kind"), [("tiny", "mem"), ("small", "all"),
                                              ("tiny3", "all")])
def test_stream_history_is_the_snapshot_of_every_cycle(config, kind, base_seed):
    """`Machine.stream_history` (built from the written values, what lock-step compares
    in bulk) equals `stream_snapshot` (register by register) in every cycle."""
    from tb.chip.programs import random_mem_program
    from tb.chip.programs_compute import random_compute_program
    from tb.chip.scoreboard import run_model

    cfg = get_config(config)
    for seed in range(base_seed * 10, base_seed * 10 + 3):
        print(f"{config} {kind} seed {seed}")
        rp = (random_mem_program(cfg, seed) if kind == "mem"
              else random_compute_program(cfg, seed, kind))
        exp = run_model(cfg, rp.program, rp.init, keep_history=True)
        m, n = exp.machine, exp.result.cycles
        vals, valid = m.stream_history(0, n)
        assert valid.any()
        for c in range(n):
            sv, sm = m.stream_snapshot(c)
            assert np.array_equal(valid[c], sm), f"cycle {c}: which registers hold a value"
            assert np.array_equal(vals[c], sv), f"cycle {c}: values"
        part, _ = m.stream_history(5, 9)  # a window
        assert np.array_equal(part, vals[5:9])
        none, only = m.stream_history(0, n, values=False)  # validity alone
        assert none is None and np.array_equal(only, valid)


FABRIC = """module top__SuperlaneStreams(taps__1__e_in, clk);
  input clk;
  output [255:0] taps__1__e_in;
  wire [255:0] taps__1__e_in;
endmodule
module top(clk);
  input clk;
endmodule
"""


def test_capture_hooks_go_into_every_stream_fabric_module():
    """`tapcap.add_hooks`: one DPI call per register bank (eastward east of position 0,
    westward west of the last), in the stamped module or each superlane's own."""
    from tb.chip.tapcap import add_hooks

    out = add_hooks(FABRIC, "top", 3)
    body = out[:out.index("endmodule")]
    assert "input bit [255:0] v" in body and "always @(posedge clk)" in body
    calls = [ln.strip() for ln in body.splitlines() if ln.strip().startswith("tapcap_bank")]
    assert calls == ["tapcap_bank(0, 1, taps__1__e_in);", "tapcap_bank(0, 2, taps__2__e_in);",
                     "tapcap_bank(1, 0, taps__0__w_in);", "tapcap_bank(1, 1, taps__1__w_in);"]
    assert out.count("tapcap_on()") == 2  # the import and the call, in one module
    assert out.endswith(FABRIC[FABRIC.index("module top(clk)"):])  # the rest unchanged
    in_place = FABRIC.replace("module top__SuperlaneStreams(", "module \\top.fabric.superlane0 (")
    in_place += in_place[:in_place.index("module top(")].replace("superlane0", "superlane1")
    assert add_hooks(in_place, "top", 3).count("always @(posedge clk)") == 2


def test_capture_hooks_refuse_a_verilog_without_the_fabric():
    from tb.chip.tapcap import add_hooks

    with pytest.raises(ValueError, match="no stream-fabric module of top"):
        add_hooks("module top(clk);\n  input clk;\nendmodule\n", "top", 3)
    with pytest.raises(ValueError, match="has no clk or taps ports"):
        add_hooks(FABRIC.replace("  input clk;\n", "", 1), "top", 3)
