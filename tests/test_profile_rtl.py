# ruff: noqa: E501  (callgrind_annotate lines are as long as Verilator names them)
"""The instruction profile's bookkeeping (sim/profile_rtl.py): which Verilated class a
function is charged to, and the totals read from callgrind_annotate's listing.  (The
profile itself needs valgrind and a build: `make profile-rtl`.)"""

import pytest

from arch.config import get_config
from sim.profile_rtl import (
    ProfileError,
    annotate_by_class,
    module_class,
    profile_config,
    require_valgrind,
)

LISTING = """\
--------------------------------------------------------------------------------
Ir
--------------------------------------------------------------------------------
1,000,000 (100.0%)  PROGRAM TOTALS

--------------------------------------------------------------------------------
Ir                 file:function
--------------------------------------------------------------------------------
400,000 (40.00%)  ???:Vtsp_tsp_chip___05FMemTile___nba_sequent__TOP__tsp_chip__DOT__slice_MEM_E0__tile0__0(Vtsp_tsp_chip___05FMemTile*) [/b/Vtsp]
250,000 (25.00%)  ???:Vtsp_tsp_chip___05FMemTile___ico_sequent__TOP__tsp_chip__DOT__slice_MEM_W1__tile1__0(Vtsp_tsp_chip___05FMemTile*) [/b/Vtsp]
200,000 (20.00%)  ???:Vtsp_tsp_chip___05FInstructionControlUnit___05F5___nba_sequent__TOP__tsp_chip__DOT__icu_MEM_W0__0(Vtsp_tsp_chip___05FInstructionControlUnit___05F5*) [/b/Vtsp]
 90,000 ( 9.00%)  ???:Vtsp___024root___eval_nba(Vtsp___024root*) [/b/Vtsp]
 10,000 ( 1.00%)  ???:main [/b/Vtsp]
"""


def test_functions_are_charged_to_their_verilated_class():
    assert module_class("???:Vtsp_tsp_chip___05FVxmTile___nba_sequent__TOP__x__3"
                        "(Vtsp_tsp_chip___05FVxmTile*)", "tsp_chip") == "VxmTile"
    # numbered variants of one kind (one class per ICU position) are one kind
    assert module_class("Vtsp_tsp_chip___05FInstructionControlUnit___05F12___nba_sequent",
                        "tsp_chip") == "InstructionControlUnit"
    assert module_class("Vtsp___024root___eval_nba(Vtsp___024root*)", "tsp_chip") == "root"
    assert module_class("Vtsp::eval_step()", "tsp_chip") == "root"
    assert module_class("Vtsp_tsp_chip___05FSxmSlice& std::forward<Vtsp_tsp_chip___05FSxmSlice&>"
                        "(std::remove_reference<Vtsp_tsp_chip___05FSxmSlice&>::type&)",
                        "tsp_chip") == "SxmSlice"
    assert module_class("memcpy", "tsp_chip") == "runtime"


def test_totals_by_class_add_up_to_the_program_total():
    total, by = annotate_by_class(LISTING, "tsp_chip")
    assert total == 1_000_000
    assert by == {"MemTile": 650_000, "InstructionControlUnit": 200_000, "root": 90_000,
                  "runtime": 60_000}  # main + what the listing left out (50,000)
    assert sum(by.values()) == total
    with pytest.raises(ValueError, match="PROGRAM TOTALS"):
        annotate_by_class(LISTING.replace("PROGRAM TOTALS", ""), "tsp_chip")


def test_missing_valgrind_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(ProfileError, match="needs `valgrind` on PATH"):
        require_valgrind()


def test_runs_below_one_is_a_clear_error():
    with pytest.raises(ProfileError, match=r"--runs must be >= 1, got 0"):
        profile_config(get_config("tiny"), runs=0)


def test_idle_program_only_waits_then_halts():
    """The floor's program (`idle_program`): every queue of the chip one NOP of n cycles and
    a HALT, nothing else; the machine model finishes it in n + 1 cycles (the HALT issues
    in cycle n), which the profile requires of the bare harness's runs."""
    from golden.machine import Machine
    from sim.profile_rtl import idle_program

    cfg = get_config("tiny")
    prog = idle_program(cfg, 50)
    assert all(len(prog.words(s.name)) == 2 for s in cfg.slices)  # every queue
    m = Machine(cfg)
    m.load_program(prog)
    assert m.run().cycles == 51
