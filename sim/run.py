"""Run a cocotb testbench on a Verilated build.

`run_cocotb` launches the simulator binary of a `SimBuild` with a cocotb test
module, passes parameters through the environment (``TSP_CONFIG`` is the
config as JSON, ``TSP_RESULT`` a JSON file the testbench writes its summary
to) and returns that summary.  A failing testbench raises `SimFailure` with the
path of its log and, with waves, of its trace (``dump.fst`` or ``dump.vcd``).
"""

from __future__ import annotations

import json
import os
import re
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

from .build import SimBuild, build_root, x_plusargs
from .toolchain import cocotb_libs_dir, setup_environ


class SimFailure(AssertionError):
    pass


@dataclass
class SimRun:
    summary: dict
    tests: int
    failed: int
    seconds: float
    log: Path
    waves: Path | None
    x_seed: int | None = None


#: `run_cocotb`'s default: an X seed derived from the run name and $TSP_SEED
AUTO = "auto"


def auto_x_seed(name: str) -> int:
    return int(os.environ.get("TSP_SEED", "0")) * 1_000_000 + zlib.crc32(name.encode()) % 1_000_000


def _safe(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", s)[:80]


def run_cocotb(sim: SimBuild, test_module: str, *, name: str, testcase: str | None = None,
               params: dict | None = None, seed: int | None = None, waves: bool = False,
               plusargs: tuple[str, ...] = (), x_seed: int | str | None = AUTO,
               log=None) -> SimRun:
    """Run `test_module` (e.g. ``"tb.fabric.test_fabric"``) on `sim`, with the power-up
    state randomised from `x_seed` (`AUTO`: `auto_x_seed`; None: all zeros).  ``log``,
    if given, is told where the simulator's log goes before it starts."""
    from cocotb_tools.runner import get_results, get_runner

    from tb.env import NATIVE_CLOCK_ENV

    setup_environ()
    if x_seed == AUTO:
        x_seed = auto_x_seed(name)
    waves = waves and sim.waves
    run_dir = build_root() / "runs" / _safe(f"{name}-{os.getpid()}")
    run_dir.mkdir(parents=True, exist_ok=True)
    result_json = run_dir / "result.json"
    result_json.unlink(missing_ok=True)
    results_xml = run_dir / "results.xml"
    log_file = run_dir / "sim.log"
    env = {
        "TSP_CONFIG": json.dumps(sim.verilog.cfg.to_dict()),
        "TSP_RESULT": str(result_json),
        "TSP_PARAMS": json.dumps(params or {}),
        "COCOTB_LOG_LEVEL": os.environ.get("COCOTB_LOG_LEVEL", "INFO"),
        # no pytest assertion rewriting in the simulator (every assert of the testbenches
        # says what failed itself; set the variable to get it back): cocotb's default
        # ("*.py") rewrites every module imported after its hook -- numpy, Amaranth, arch,
        # golden -- from source at every launch (no bytecode cache where
        # $PYTHONDONTWRITEBYTECODE is set), and setting the hook up loads pytest and its
        # plugins: 1.8 s of a 3.2 s `sim run --rtl` of a short program (1.3 s with
        # "test_*.py")
        "COCOTB_REWRITE_ASSERTION_FILES": os.environ.get("COCOTB_REWRITE_ASSERTION_FILES", ""),
        # the simulator's own main loop clocks clk (sim/cocotb_main.cpp): the testbench
        # must not start a clock too
        NATIVE_CLOCK_ENV: "1" if sim.native_clock else "0",
        # the simulator links cocotb's VPI library by rpath to the .venv it was built
        # with; a build reused from another checkout finds this one's first
        "LD_LIBRARY_PATH": os.pathsep.join(
            p for p in (str(cocotb_libs_dir()), os.environ.get("LD_LIBRARY_PATH", "")) if p),
    }
    runner = get_runner("verilator")
    if log is not None:
        log(f"simulator log: {log_file}")
    t0 = time.monotonic()
    # The runner checks results itself (sys.exit) when it sees PYTEST_CURRENT_TEST;
    # hide it so that failures come back here as a SimFailure with context.
    saved = os.environ.pop("PYTEST_CURRENT_TEST", None)
    try:
        runner.test(
            test_module=test_module,
            hdl_toplevel=sim.top,
            hdl_toplevel_lang="verilog",
            build_dir=sim.build_dir,
            test_dir=run_dir,
            testcase=testcase,
            seed=seed,
            extra_env=env,
            waves=waves,
            # tiles of one kind are one module (sim/stamp.py): Verilator would merge their
            # coverage points; count them per instance (the report is per slice)
            test_args=["--coverage-per-instance"] if "--coverage-line" in sim.flags else [],
            plusargs=[*(x_plusargs(x_seed) if x_seed is not None else ()), *plusargs],
            results_xml=str(results_xml),
            log_file=log_file,
        )
    except SystemExit as e:
        raise SimFailure(f"simulator exited with {e.code} (X seed {x_seed}); log: {log_file}"
                         ) from None
    except RuntimeError as e:  # the runner's "Command failed with return code"
        raise SimFailure(f"simulator failed ({e}; X seed {x_seed}); log: {log_file}") from None
    finally:
        if saved is not None:
            os.environ["PYTEST_CURRENT_TEST"] = saved
    seconds = time.monotonic() - t0
    try:
        tests, failed = get_results(results_xml)
    except RuntimeError as e:
        raise SimFailure(f"no cocotb results ({e}); log: {log_file}") from None
    wave_file = run_dir / f"dump.{sim.wave_format}" if waves else None
    if wave_file is not None and not wave_file.exists():
        raise SimFailure(f"the simulator wrote no trace {wave_file}; log: {log_file}")
    summary = json.loads(result_json.read_text()) if result_json.exists() else {}
    summary.setdefault("x_seed", x_seed)
    run = SimRun(summary, tests, failed, seconds, log_file, wave_file, x_seed)
    if failed or tests == 0:
        lines = (log_file.read_text(errors="replace").splitlines(True) if log_file.exists()
                 else [])
        tail = "".join(lines[-60:])
        raise SimFailure(
            f"{failed} of {tests} cocotb test(s) failed in {test_module} (X seed {x_seed});"
            f" log: {log_file}"
            + (f"; waves: {wave_file}" if wave_file else "") + "\n" + tail
        )
    return run


