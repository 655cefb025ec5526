"""Chip-to-chip links: config, ISA timing, the machine model of a system, the RTL system.

The timing expectations are written from docs/isa.md ("C2C links"): a message of w planes
sent in t is in the far receive buffer from t + c2c_latency + w * 16 / bytes_per_cycle.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from arch.asm import assemble
from arch.config import PRESETS, TspConfig, get_config
from arch.isa import IsaError, latency
from arch.timing import occupancy
from golden.machine import Machine, MachineError
from golden.system import System
from tb.system.programs import fault_cases, random_traffic

TINY = get_config("tiny").with_links()


# ------------------------------------------------------------------------------ config
def test_links_are_hardware_only_when_present():
    tiny = get_config("tiny")
    # without links the link parameters describe no hardware: same hash
    assert tiny.replace(c2c_latency=99).stable_hash() == tiny.stable_hash()
    assert TINY.stable_hash() != tiny.stable_hash()
    assert TINY.replace(c2c_latency=99).stable_hash() != TINY.stable_hash()
    assert TINY.name == "tiny+c2c" and TINY.with_links() is TINY
    assert [s.name for s in TINY.slices][::len(TINY.slices) - 1] == ["C2C_W", "C2C_E"]
    assert TINY.c2c_beats == 16 // TINY.c2c_bytes_per_cycle
    assert PRESETS["full"].c2c_links == 4


@pytest.mark.parametrize(("field", "value", "needle"), [
    ("c2c_links", 5, "c2c_links must be in [0, 4], got 5"),
    ("c2c_latency", 0, "c2c_latency must be in [1, 1024], got 0"),
    ("c2c_bytes_per_cycle", 3, "c2c_bytes_per_cycle must be a power of two in [1, 16]"),
    ("c2c_buffer", 65, "c2c_buffer must be in [1, 64], got 65"),
])
def test_link_parameters_validated(field, value, needle):
    with pytest.raises(ValueError, match=re.escape(needle)):
        TspConfig(**{**TINY.to_dict(), field: value})


def test_send_timing_from_the_type():
    B = TINY.c2c_beats
    assert latency("SEND", TINY, {"type": 2}) == 4 * B  # an i32: four planes
    assert occupancy("SEND", TINY, {"type": 1}) == 2 * B + TINY.superlanes - 1
    assert latency("RECV", TINY) == 1


def test_send_refuses_streams_beyond_the_config():
    with pytest.raises(Exception, match="s6..s9"):
        assemble(".slice C2C_E\n SEND.i32 0, s6.E\n HALT\n", TINY)
    with pytest.raises(Exception, match=r"link=1 out of range \[0, 0\]"):
        assemble(".slice C2C_E\n SEND 1, s0.E\n HALT\n", TINY)
    with pytest.raises(IsaError):
        from arch.isa import Instr, validate
        validate(Instr.make("RECV", link=0, out_s=7, type=1), "C2C", TINY)


# ------------------------------------------------------------------------------ model
POS = {s.name: s.index for s in TINY.slices}
#: the loopback's SEND: MEM_W1 reads in cycle 1 (MEM_W0, one position further, in 0)
T_SEND = 2 + POS["MEM_W1"] - POS["C2C_W"]


def _loopback(recv_at: int, ty: str = "i16"):
    """MEM_W0/MEM_W1 planes -> C2C_W SEND on the westward streams -> (loopback) C2C_E
    RECV -> MEM_E0/MEM_E1."""
    pos, t = POS, T_SEND
    src = f"""
.slice MEM_W1
    NOP 1
    READ 0, s2.W
    HALT
.slice MEM_W0
    READ 0, s3.W
    HALT
.slice C2C_W
    NOP {t}
    SEND.{ty} 0, s2.W
    HALT
.slice C2C_E
    NOP {recv_at}
    RECV.i16 0, s4.W
    HALT
.slice MEM_E1
    NOP {recv_at + 1 + pos['C2C_E'] - pos['MEM_E1']}
    WRITE s5.W, 9
    HALT
.slice MEM_E0
    NOP {recv_at + 1 + pos['C2C_E'] - pos['MEM_E0']}
    WRITE s4.W, 9
    HALT
"""
    m = Machine(TINY)
    rng = np.random.default_rng(5)
    a, b = rng.integers(0, 256, 16), rng.integers(0, 256, 16)
    m.write_mem("MEM_W0", 0, a)
    m.write_mem("MEM_W1", 0, b)
    m.load_program(assemble(src, TINY))
    return m, t, a, b


def test_loopback_arrives_exactly_when_the_isa_says():
    arrive = T_SEND + TINY.c2c_latency + 2 * TINY.c2c_beats
    m, t, a, b = _loopback(arrive)
    res = m.run()
    # plane 0 came from MEM_W1 (s2), plane 1 from MEM_W0 (s3); RECV wrote them onto s4, s5
    assert (m.read_mem("MEM_E0", 9) == b).all() and (m.read_mem("MEM_E1", 9) == a).all()
    assert res.busy["C2C_W"] == 2 * TINY.c2c_beats + 1  # issue + 2B beats (S = 1)
    m, *_ = _loopback(arrive - 1)
    with pytest.raises(MachineError, match=rf"C2C_E instruction 1 .* in cycle {arrive - 1}: "
                       rf"link 0 empty: .* arrives in cycle {arrive}"):
        m.run()


def test_recv_of_another_type_refused():
    arrive = T_SEND + TINY.c2c_latency + TINY.c2c_beats
    m, *_ = _loopback(arrive, ty="i8")
    with pytest.raises(MachineError, match="RECV.i16 takes the i8 message .* the types differ"):
        m.run()


def test_message_never_received_is_an_error():
    m = Machine(TINY)
    m.load_program(assemble(".slice MEM_W0\n READ 0, s0.W\n HALT\n.slice C2C_W\n NOP 5\n"
                            " SEND 0, s0.W\n HALT\n", TINY))
    with pytest.raises(MachineError, match="C2C_E link 0: 1 message.* never received"):
        m.run()


def test_system_rejects_bad_arguments():
    with pytest.raises(ValueError, match="no C2C links.*with_links"):
        System("tiny", 2)
    with pytest.raises(ValueError, match=r"chips must be an int in \[1, 16\], got 0"):
        System(TINY, 0)
    with pytest.raises(ValueError, match="1 program.* for 2 chips"):
        System(TINY, 2).load_programs([assemble(".slice VXM\n HALT\n", TINY)])


@pytest.mark.parametrize("chips", [1, 2, 4])
def test_random_traffic_model_delivers_every_message(chips, base_seed):
    seed = base_seed * 100 + chips
    print("seed", seed)
    progs, images, readback = random_traffic(TINY, chips, seed)
    sysm = System(TINY, chips)
    for m, img in zip(sysm.machines, images, strict=True):
        for sl, vecs in img.items():
            for a, v in vecs.items():
                m.write_mem(sl, a, v)
    sysm.load_programs(progs)
    res = sysm.run()
    # every byte written by a RECV was read by some SEND of the right chip: the multiset
    # of received vectors equals the multiset of sent ones (nothing lost, nothing made up)
    sent = sorted(v.tobytes() for img in images for vecs in img.values() for v in vecs.values())
    got = sorted(sysm.machines[i].read_mem(sl, a).tobytes()
                 for i in range(chips) for sl, a in readback[i])
    assert got == sent
    assert res.cycles == max(r.cycles for r in res.chips)


@pytest.mark.parametrize("name", ["empty", "busy", "type", "overflow"])
def test_fault_cases_refused_by_the_model(name):
    texts, code, chip, sl = fault_cases(TINY)[name]
    sysm = System(TINY, 2)
    sysm.load_programs([assemble(x, TINY) for x in texts])
    with pytest.raises(MachineError, match=rf"^chip {chip}:? {sl}"):
        sysm.run()


# ------------------------------------------------------------------------------ RTL
@pytest.mark.rtl
@pytest.mark.parametrize("config", ["tiny"])
def test_system_rtl_matches_the_model(config, base_seed):
    """Random traffic over two linked chips: every chip's CYCLES, clock count, counters
    and every received vector equal the system model's."""
    from sim.system import run_system

    cfg = get_config(config).with_links()
    seed = base_seed * 100 + 2
    print("seed", seed)
    progs, images, readback = random_traffic(cfg, 2, seed, actions=32)
    rep = run_system(cfg, progs, images, readback, log=lambda *a: None)
    assert rep["model"]["error"] is None
    assert rep["problems"] == []
    assert sum(len(c["dump"]) for c in rep["rtl"]["chips"]) == sum(map(len, readback)) > 20


@pytest.mark.rtl
def test_system_rtl_reruns_the_loaded_programs(tmp_path, base_seed):
    """Decode steps on a system: a second case without programs runs the loaded ones
    again over new SRAM data (`make sim-layer CHIPS=N`'s steps); its received vectors,
    cycles and counters equal the model's run of the same programs on the new data."""
    from sim.system import compare, rtl_cases, run_model, write_case

    cfg = get_config("tiny").with_links()
    seed = base_seed * 100 + 3
    print("seed", seed)
    progs, images, readback = random_traffic(cfg, 2, seed, actions=16)
    rng = np.random.default_rng(seed)
    again = [{s: {a: rng.integers(0, 256, v.shape).astype(np.uint8) for a, v in d.items()}
              for s, d in img.items()} for img in images]
    cases = [write_case(tmp_path / "0", progs, images, readback),
             write_case(tmp_path / "1", None, again, readback)]
    got = rtl_cases(cfg, 2, cases, name="rerun", max_cycles=100_000, log=lambda *a: None)
    for case, img in zip(got["cases"], (images, again), strict=True):
        model = run_model(cfg, progs, img, readback)
        assert model["error"] is None and compare(cfg, model, case) == []
    first, second = (c["chips"][0]["dump"] for c in got["cases"])
    assert first != second  # the second run did move the new data


@pytest.mark.rtl
@pytest.mark.parametrize("config", ["tiny"])
def test_system_rtl_flags_link_faults(config):
    """Each C2C fault is flagged by the RTL with its code, at the slice and in the cycle
    the model names."""
    from hdl.slice import ErrorCode
    from sim.system import run_system

    cfg = get_config(config).with_links()
    for name, (texts, code, chip, sl) in fault_cases(cfg).items():
        rep = run_system(cfg, [assemble(x, cfg) for x in texts], [{}, {}], [[], []],
                         log=lambda *a: None)
        err = rep["model"]["error"]
        cycle = int(re.search(r"in cycle (\d+)", err).group(1))
        st = rep["rtl"]["chips"][chip]["status"]
        assert st["error"], (name, err)
        assert (ErrorCode(st["error_code"]).name, cfg.slices[st["error_slice"]].name,
                st["error_cycle"]) == (code, sl, cycle), (name, err)


def test_system_compare_reports_every_difference():
    """The scoreboard of the system runs (and of the fuzzer): a wrong vector, cycle count
    or fault is reported per chip (negative controls)."""
    from sim.system import compare

    chip = {"cycles": 10, "busy": {"C2C_E": 3}, "issued": {"C2C_E": 1}, "mvm": {},
            "dump": {"MEM_E0/5": [1, 2, 3]}}
    model = {"error": None, "chips": [chip, chip]}
    ok = {"status": {"error": False}, "counters": {"cycles": 10, "busy": {"C2C_E": 3},
                                                   "issued": {"C2C_E": 1}, "mvm": {}},
          "cycles_clock": 10, "dump": {"MEM_E0/5": [1, 2, 3]}}
    assert compare(TINY, model, {"chips": [ok, ok]}) == []
    bad = {**ok, "dump": {"MEM_E0/5": [1, 9, 3]}, "cycles_clock": 11}
    got = compare(TINY, model, {"chips": [ok, bad]})
    assert any("chip 1 SRAM MEM_E0/5 lane 1: chip 9, model 2" in p for p in got)
    assert any("chip 1 cycles: testbench clock 11, model 10" in p for p in got)
    refused = {"error": "chip 0: C2C_W ... link 0 empty", "chips": []}
    assert compare(TINY, refused, {"chips": [ok, ok]})  # the chips did not fault: reported


@pytest.mark.rtl
@pytest.mark.parametrize("config", ["tiny"])
def test_system_fuzz_agrees(config, base_seed):
    from sim.fuzz_system import fuzz_system

    print("seed", base_seed)
    rep = fuzz_system(get_config(config), 8, base_seed, 2, log=lambda *a: None)
    assert rep["failures"] == [] and rep["messages"] > 50
