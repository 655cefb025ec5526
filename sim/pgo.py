"""Profile-guided builds of the chip's simulators (``TSP_PGO=1``; ``make sim PGO=1``,
``make bench-rtl PGO=1``).

g++ compiles the evaluation code twice: instrumented (``-fprofile-generate``), and after a
training run once more with the branch and call counts that run measured
(``-fprofile-use``), so that the hot paths of the generated code are laid out straight and
the cold ones (the X handling, the error paths, the units a cycle leaves idle) out of the
way.  The Verilated C++ is mostly long straight-line functions full of data-dependent
branches, which is where g++ gains most from a profile.

The training set is `TRAINING_CASES` random programs of the fuzz generator (`tb.fuzz`,
every kind, seed `TRAINING_SEED`), each loaded through the host interface and run
`TRAINING_REPEAT` times: never a compiled block, so a speed-up measured on the block (``make
bench-rtl``) is one the profile did not see.  The bare harness is trained by itself, the
cocotb simulator by the fuzz testbench (``tb/chip/test_fuzz.py``, one run), each on its
own code.  The training set's programs are part of the build key.

Cost: one more g++ pass over the evaluation code and a training run of a few seconds (at
`small` the cocotb simulator's build 34 -> 62 s).  Gain at `small`: +16 % driven by
cocotb, +19 % bare (docs/simulation.md, "Profile-guided builds").
"""

from __future__ import annotations

import hashlib
import subprocess
from collections.abc import Callable
from functools import cache
from pathlib import Path

from arch.config import TspConfig

from . import toolchain

#: the training programs: how many, from which fuzz seed, runs of each
TRAINING_CASES = 24
TRAINING_SEED = 7
TRAINING_REPEAT = 20

#: objects g++ compiles alike with or without a profile (Verilator's runtime library,
#: compiled with OPT_GLOBAL): kept between the two passes
RUNTIME_PREFIX = "verilated"


def enabled(design: str, *, waves: bool = False, coverage: bool = False) -> bool:
    """Whether a build of ``design`` is profile-guided: $TSP_PGO on, the chip, and neither
    a waves nor a coverage build (their runs are for looking, not for speed)."""
    return toolchain.pgo() and design == "chip" and not waves and not coverage


def training_plan() -> list[tuple[str, int]]:
    """(kind, seed) of each training program (`tb.fuzz.fuzz_plan`)."""
    from tb.fuzz import fuzz_plan

    return fuzz_plan(TRAINING_CASES, TRAINING_SEED)


def training_cases(cfg: TspConfig) -> tuple:
    """The training programs for ``cfg`` (`tb.fuzz.Case`, in plan order; made once per
    config and plan: the build key and the bare harness's training both read them)."""
    return _cases(cfg, tuple(training_plan()))


@cache
def _cases(cfg: TspConfig, plan: tuple) -> tuple:
    from tb.fuzz import generate

    return tuple(generate(cfg, kind, seed) for kind, seed in plan)


def training_key(cfg: TspConfig) -> str:
    """Hash of the training set (every program's words and SRAM image, the repeats) and of
    the two passes' g++ flags: part of a profile-guided build's key."""
    h = hashlib.sha256(f"pgo {TRAINING_REPEAT} {instrument_vars()} {use_vars()}".encode())
    for case in training_cases(cfg):
        h.update(case.program.to_bytes())
        for sl, per in sorted(case.rtl_image().items()):
            for a, v in sorted(per.items()):
                h.update(f"{sl}{a}".encode())
                h.update(bytes(v))
    return h.hexdigest()[:16]


def instrument_vars() -> list[str]:
    """make variables of the instrumented pass (counters updated atomically where the model
    runs in several threads)."""
    return [f"OPT_FAST={toolchain.opt_fast()} -fprofile-generate -fprofile-update=prefer-atomic",
            "LDFLAGS=-fprofile-generate"]


def use_vars() -> list[str]:
    """make variables of the final pass: the profile applied.  Code the training never ran
    (the lock-step capture, say) compiles as without a profile (``-fprofile-partial-
    training``; g++ would otherwise optimise it for size: the lock-step monitor ran 14 %
    slower), and so do objects it never reached or whose code changed."""
    return [f"OPT_FAST={toolchain.opt_fast()} -fprofile-use -fprofile-partial-training "
            f"-fprofile-correction -Wno-missing-profile"]


def rebuild_with_profile(build_dir: Path, make: list[str], train: Callable[[], None],
                         log_file: Path, env: dict[str, str]) -> int:
    """After the instrumented pass in ``build_dir``: run ``train()``, remove the objects that
    pass compiled (not the runtime library's) and run ``make`` (a command, without the PGO
    variables) with the profile.  Returns how many object profiles the training wrote;
    raises `toolchain.ToolchainError` if it wrote none or make fails."""
    for f in build_dir.glob("*.gcda"):
        f.unlink()
    try:
        train()
    except Exception:
        _discard(build_dir)
        raise
    profiles = len(list(build_dir.glob("*.gcda")))
    if profiles == 0:
        _discard(build_dir)
        raise toolchain.ToolchainError(f"profile-guided build in {build_dir}: the training "
                                       f"run wrote no profile (*.gcda)")
    for f in build_dir.iterdir():
        stale = f.suffix in (".a", ".gch") or (f.suffix == ".o" and not
                                                 f.name.startswith(RUNTIME_PREFIX))
        if stale:
            f.unlink()
    with open(log_file, "a") as fh:
        fh.write(f"\n# profile-guided pass ({profiles} object profiles)\n")
        fh.flush()
        proc = subprocess.run([*make, *use_vars()], stdout=fh, stderr=subprocess.STDOUT,
                              env=env)
    if proc.returncode != 0:
        _discard(build_dir)
        raise toolchain.ToolchainError(f"profile-guided pass failed in {build_dir}; log: "
                                       f"{log_file}")
    return profiles


def _discard(build_dir: Path) -> None:
    """Remove a half-made build's objects, profiles and executable (not its log), so that
    the next attempt builds both passes afresh instead of finding objects of either."""
    for f in build_dir.iterdir():
        if f.suffix in (".o", ".a", ".gch", ".gcda") or (f.is_file() and f.stat().st_mode
                                                          & 0o111):
            f.unlink()
