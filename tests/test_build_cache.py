"""The Verilator build cache key: versions, flags and the Verilog, never a path (a copied
or moved checkout, or another .venv, reuses the build); the waveform format choice."""

from __future__ import annotations

from pathlib import Path

import pytest

from arch.config import get_config
from sim import build, toolchain

TOP = "module tsp_chip(clk, done);\n  input clk;\n  output done;\nendmodule\n"


def artifact(root: Path, text: str = TOP) -> build.VerilogArtifact:
    d = root / "verilog" / "chip-tiny-0123456789abcdef"
    d.mkdir(parents=True)
    (d / "tsp_chip.v").write_text(text)
    (d / "tsp_chip.noinit.v").write_text(text)
    return build.VerilogArtifact("chip", get_config("tiny"), d / "tsp_chip.v", "tsp_chip",
                                 1.0, True, len(text), 1)


def test_key_ignores_paths(tmp_path, monkeypatch):
    flags = build.verilator_flags()
    a = build.build_key(artifact(tmp_path / "checkout-a"), flags)
    # another checkout, another Verilator install location (another .venv)
    monkeypatch.setattr(toolchain, "verilator_root", lambda: tmp_path / "elsewhere")
    monkeypatch.setenv("PATH", "/somewhere/else/bin")
    b = build.build_key(artifact(tmp_path / "moved" / "checkout-b"), flags)
    assert a == b


def test_key_follows_verilog_flags_and_versions(tmp_path, monkeypatch):
    flags = build.verilator_flags()
    base = build.build_key(artifact(tmp_path / "a"), flags)
    assert build.build_key(artifact(tmp_path / "b", TOP.replace("endmodule", "wire x;\n"
                                                                 "endmodule")), flags) != base
    # which ports VPI may write is part of the build
    assert build.build_key(artifact(tmp_path / "e", TOP.replace("output done", "input done")),
                           flags) != base
    assert build.build_key(artifact(tmp_path / "c"), (*flags, "--x")) != base
    versions = {**toolchain.tool_versions(), "cocotb": "0.0-other"}
    monkeypatch.setattr(toolchain, "tool_versions", lambda: versions)
    assert build.build_key(artifact(tmp_path / "d"), flags) != base


def test_wave_format_choice(monkeypatch):
    monkeypatch.setenv("TSP_WAVES", "vcd")
    assert toolchain.wave_format() == "vcd"
    flags = build.verilator_flags(waves=True)
    assert "--trace-vcd" in flags and "--trace-fst" not in flags
    monkeypatch.setenv("TSP_WAVES", "ghw")
    with pytest.raises(toolchain.ToolchainError, match="TSP_WAVES='ghw': expected fst or vcd"):
        toolchain.wave_format()
    monkeypatch.delenv("TSP_WAVES")
    # FST exactly when the lz4 header the FST writer includes can be compiled
    monkeypatch.setattr(toolchain, "fst_supported", lambda: False)
    assert toolchain.wave_format() == "vcd"
    monkeypatch.setattr(toolchain, "fst_supported", lambda: True)
    assert toolchain.wave_format() == "fst"
    assert "--trace-fst" in build.verilator_flags(waves=True)


def test_vpi_writes_only_the_inputs(tmp_path):
    """Outputs are public read-only: a writable output makes Verilator re-evaluate the
    logic behind it in every evaluation (docs/simulation.md)."""
    vlt = build.public_vlt(artifact(tmp_path))
    assert 'public_flat_rw -module "tsp_chip" -var "clk"' in vlt
    assert 'public_flat_rd -module "tsp_chip" -var "done"' in vlt
    assert "public_flat_rw -module \"tsp_chip\" -var \"done\"" not in vlt


def test_runtime_objects_kept_once_and_reused(tmp_path, monkeypatch):
    """Verilator's runtime objects: kept after the first build of a set of flags, copied
    into later builds (and only for the same flags, tool versions and make settings); the
    runner stamps the copies after Verilating, before make (they depend on Vtop.mk)."""
    monkeypatch.setenv("TSP_BUILD_DIR", str(tmp_path / "root"))
    flags = build.verilator_flags()
    first, later = tmp_path / "first", tmp_path / "later"
    first.mkdir()
    later.mkdir()
    kept = build.runtime_dir(flags)
    assert build.reuse_runtime(later, kept) == []  # nothing kept yet
    for n in build.RUNTIME_OBJECTS:
        (first / f"{n}.o").write_bytes(n.encode())
        (first / f"{n}.d").write_text(f"{n}.o: x\n")
    build.keep_runtime(first, kept)
    (first / "verilated.o").write_bytes(b"changed")  # kept once: not overwritten
    build.keep_runtime(first, kept)
    got = build.reuse_runtime(later, kept)
    assert sorted(p.name for p in got) == sorted(f"{n}.o" for n in build.RUNTIME_OBJECTS)
    assert (later / "verilated.o").read_bytes() == b"verilated"
    assert (later / "verilated_vpi.d").exists()
    assert build.runtime_dir(build.verilator_flags(coverage=True)) != build.runtime_dir(flags)
    monkeypatch.setattr(toolchain, "tool_versions", lambda: {"verilator": "other"})
    assert build.runtime_dir(flags) != kept  # another Verilator: kept elsewhere
    assert build.reuse_runtime(tmp_path, build.runtime_dir(flags)) == []
    runner = build._runner(got)
    monkeypatch.setattr(type(runner).__mro__[1], "_build_command",
                        lambda self: [["verilator", "--public-flat-rw", "x.v"], ["make"]])
    cmds = runner._build_command()
    assert cmds[0] == ["verilator", "x.v"] and cmds[2] == ["make"]
    assert cmds[1][:2] == ["touch", "-c"] and sorted(cmds[1][2:]) == sorted(map(str, got))


def test_a_config_named_by_its_changes_builds_in_a_plain_directory():
    """``layer:vxm_groups=4,mem_read_write=1`` names a config; its build directories must
    not carry the characters make treats specially (':' '=' ','); presets keep theirs."""
    from arch.config import get_config
    from sim.build import path_name

    assert path_name(get_config("layer:vxm_groups=4,mem_read_write=1")) == \
        "layer_vxm_groups_4_mem_read_write_1"
    assert path_name(get_config("small").with_links()) == "small+c2c"
    assert path_name(get_config("tiny3")) == "tiny3"


def test_a_generation_that_does_not_fit_memory_is_refused_before_it_starts(tmp_path,
                                                                            monkeypatch):
    """Verilog generation's peak memory grows with tiles x streams (full's was killed by the
    kernel at 23.9 GB after ten minutes): where the estimate passes the memory available,
    `generate_verilog` refuses at once, naming both, and writes nothing."""
    monkeypatch.setenv("TSP_BUILD_DIR", str(tmp_path / "root"))
    monkeypatch.setattr(build, "_memory_available", lambda: 10_000_000)  # 10 MB
    cfg = get_config("tiny")
    with pytest.raises(build.BuildError, match=r"chip/tiny needs about \d+\.\d GB of memory "
                       rf"\({cfg.n_positions * cfg.superlanes} tiles x "
                       rf"{cfg.streams_per_direction} streams .* 0\.0 GB available"):
        build.generate_verilog(cfg, "chip")
    assert not list((tmp_path / "root").rglob("*.v"))
    # a system of two chips needs twice one chip's
    assert build.generation_bytes(cfg, "system2") == 2 * build.generation_bytes(cfg, "chip")


def test_sources_changed_since_import_are_refused(tmp_path, monkeypatch):
    """A source this process imported that changed on disk since is refused by name (the
    Verilog would come from the old code, cached under the new code's key); as imported,
    or not imported at all (elaborating imports the new code), it passes."""
    import importlib.util
    import sys

    src = tmp_path / "tsp_probe_mod.py"
    src.write_text("X = 1\n")
    spec = importlib.util.spec_from_file_location("tsp_probe_mod", src)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    monkeypatch.setitem(sys.modules, "tsp_probe_mod", mod)
    monkeypatch.setitem(build._STARTED, src.resolve(), build._digest(src))
    build.check_sources_unchanged([src])
    src.write_text("X = 2\n")
    with pytest.raises(build.BuildError, match=r"tsp_probe_mod\.py changed on disk after this "
                                               r"process imported it.*nothing was generated"):
        build.check_sources_unchanged([src])
    monkeypatch.delitem(sys.modules, "tsp_probe_mod")
    build.check_sources_unchanged([src])


def test_generation_checks_its_sources_first(tmp_path, monkeypatch):
    """`generate_verilog` runs the check before it elaborates: a design source recorded at
    start with other contents stops it, and nothing is written."""
    import hdl.stream  # imported, as the fabric's elaboration would have it

    monkeypatch.setenv("TSP_BUILD_DIR", str(tmp_path))
    monkeypatch.setitem(build._STARTED, Path(hdl.stream.__file__).resolve(), "0" * 64)
    with pytest.raises(build.BuildError, match=r"hdl/stream\.py changed on disk"):
        build.generate_verilog(get_config("tiny"), "fabric", force=True)
    assert not list(tmp_path.glob("verilog/*/*.v"))


def test_main_loop_with_the_clock_where_nothing_is_traced(tmp_path, monkeypatch):
    """Simulators without tracing or coverage run sim/cocotb_main.cpp (the clock toggled
    in the main loop, with the testbench's period compiled in); traced and coverage builds
    keep cocotb's main.  The main loop's source is part of such a build's key."""
    assert build.native_clock(build.verilator_flags())
    assert not build.native_clock(build.verilator_flags(waves=True))
    assert not build.native_clock(build.verilator_flags(coverage=True))
    assert build.clock_cflags() == ["-CFLAGS", "-DTSP_CLOCK_PERIOD_PS=10000"]  # 10 ns
    flags, traced = build.verilator_flags(), build.verilator_flags(waves=True)
    base = build.build_key(artifact(tmp_path / "a"), flags)
    traced_base = build.build_key(artifact(tmp_path / "b"), traced)
    main = tmp_path / "cocotb_main.cpp"
    main.write_text(build.COCOTB_MAIN.read_text() + "\n// changed\n")
    monkeypatch.setattr(build, "COCOTB_MAIN", main)
    assert build.build_key(artifact(tmp_path / "c"), flags) != base
    assert build.build_key(artifact(tmp_path / "d"), traced) == traced_base
