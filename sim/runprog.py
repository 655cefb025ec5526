"""Run your own program: ``python -m sim run PROG`` (``make run PROG=...``).

PROG is assembly (``.s``, `arch.asm`), a program binary (``.bin``, `arch.program`) or a
Python file (``.py``) that defines ``program(cfg)`` returning assembly text or a
`Program`, and optionally ``image(cfg)`` (SRAM contents, as below) and ``DUMP`` (a list
of ``"SLICE:ADDR[:COUNT]"``).

SRAM image (``--image``): ``.npz`` with keys ``"SLICE/ADDR"`` (as `sim.block` writes),
or ``.json`` ``{"SLICE/ADDR": [VL byte values] or one value for every lane}``; values
are int8 or uint8 (-128..255).

Steps: assemble and load; run on the machine model (cycles, per-slice counters, the
vectors asked for with ``--dump``); with ``--rtl`` generate and build the chip (cached),
load the same program and image through the host interface (`tb/chip/test_run.py`),
run it and compare status, cycles, counters and the dumped vectors with the model.
The report goes to ``build/sim/<run>/report.json`` (`sim.reports`).
"""

from __future__ import annotations

import json
import runpy
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from arch.asm import AsmError, assemble, assemble_file
from arch.config import TspConfig, get_config
from arch.program import Program, ProgramError


class RunError(ValueError):
    """Bad input to ``sim run``: names the file (and line) or argument at fault."""


@dataclass
class UserRun:
    cfg: TspConfig
    program: Program
    image: dict[str, dict[int, np.ndarray]] = field(default_factory=dict)
    dumps: list[tuple[str, int]] = field(default_factory=list)
    source: str = ""


# ------------------------------------------------------------------------------ inputs
def load_program(path: Path, config: str | None) -> tuple[Program, dict]:
    """The program and, for a ``.py``, its module namespace."""
    if not path.is_file():
        raise RunError(f"{path}: no such program file")
    cfg = get_config(config) if config else None
    suffix = path.suffix.lower()
    try:
        if suffix == ".s":
            return assemble_file(path, cfg), {}
        if suffix == ".bin":
            return Program.from_bytes(path.read_bytes(), cfg), {}
        if suffix == ".py":
            ns = runpy.run_path(str(path))
            if not callable(ns.get("program")):
                raise RunError(f"{path}: defines no function program(cfg) returning assembly "
                               "text or a Program")
            chosen = cfg is not None or ns.get("CONFIG") is not None
            cfg = cfg or get_config(ns.get("CONFIG"))
            prog = ns["program"](cfg)
            if isinstance(prog, str):
                try:
                    prog = assemble(prog, cfg, f"{path}:program()")
                except AsmError as e:
                    if chosen or "does not match the requested config" not in str(e):
                        raise
                    raise RunError(f"{e}\n  (neither --config nor CONFIG = '...' in {path.name} "
                                   f"chose one, so program() got the default "
                                   f"{cfg.name!r})") from None
            if not isinstance(prog, Program):
                raise RunError(f"{path}: program(cfg) returned {type(prog).__name__}, expected "
                               "assembly text or a Program")
            return prog, ns
    except (AsmError, ProgramError) as e:
        msg = str(e)
        raise RunError(msg if msg.startswith(str(path)) else f"{path}: {msg}") from None
    raise RunError(f"{path}: unknown program type {suffix or '(no suffix)'!r}; expected .s "
                   "(assembly), .bin (program binary) or .py")


def _vector(cfg: TspConfig, where: str, value) -> np.ndarray:
    vl = cfg.vector_length
    a = np.asarray(value)
    if a.dtype.kind not in "iu" or a.ndim > 1:
        raise RunError(f"{where}: expected {vl} integers (or one for all lanes), got "
                       f"{a.dtype} array of shape {a.shape}")
    if a.ndim == 0:
        a = np.full(vl, int(a), np.int64)
    if a.shape != (vl,):
        raise RunError(f"{where}: {a.shape[0]} lanes, config {cfg.name!r} has a vector length "
                       f"of {vl}")
    bad = np.flatnonzero((a < -128) | (a > 255))
    if bad.size:
        raise RunError(f"{where}: lane {bad[0]} is {int(a[bad[0]])}, not a byte (-128..255)")
    return (a.astype(np.int64) & 0xFF).astype(np.uint8)


def _mem_addr(cfg: TspConfig, where: str, sl: str, addr) -> tuple[str, int]:
    mems = [s.name for s in cfg.slices if s.kind == "MEM"]
    if sl not in mems:
        raise RunError(f"{where}: {sl!r} is not a MEM slice of config {cfg.name!r}; MEM "
                       f"slices are {', '.join(mems)}")
    try:
        a = int(addr, 0) if isinstance(addr, str) else int(addr)
    except ValueError:
        raise RunError(f"{where}: address {addr!r} is not an integer") from None
    if not 0 <= a < cfg.mem_addresses:
        raise RunError(f"{where}: address {a} out of range [0, {cfg.mem_addresses - 1}]")
    return sl, a


def load_image(path: Path, cfg: TspConfig) -> dict[str, dict[int, np.ndarray]]:
    if not path.is_file():
        raise RunError(f"{path}: no such image file")
    if path.suffix == ".npz":
        with np.load(path) as z:
            items = [(k, z[k]) for k in z.files]
        items = _per_slice_arrays(items, str(path))
    elif path.suffix == ".json":
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise RunError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from None
        if not isinstance(data, dict):
            raise RunError(f"{path}: expected an object {{\"SLICE/ADDR\": vector}}")
        items = list(data.items())
    else:
        raise RunError(f"{path}: unknown image type {path.suffix!r}; expected .npz or .json")
    return image_from_items(items, cfg, str(path))


def _per_slice_arrays(items, where: str) -> list:
    """The compiler's ``sram_image.npz`` layout (`CompiledBlock.write`: per slice
    ``<slice>.addr`` int[n] and ``<slice>.data`` uint8[n, VL]) as SLICE/ADDR items; other
    items pass through."""
    arrays = dict(items)
    out = [(k, v) for k, v in items if not str(k).endswith((".addr", ".data"))]
    for key in sorted(k for k in arrays if str(k).endswith(".addr")):
        sl = key[:-len(".addr")]
        addrs, data = np.asarray(arrays[key]), arrays.get(f"{sl}.data")
        if data is None or np.ndim(data) != 2 or len(data) != addrs.size:
            got = "missing" if data is None else f"shape {np.shape(data)}"
            raise RunError(f"{where}: {key} lists {addrs.size} addresses but {sl}.data is "
                           f"{got} (expected {addrs.size} rows of a vector each)")
        out += [(f"{sl}/{int(a)}", row) for a, row in zip(addrs.ravel(), data, strict=True)]
    stray = [k for k in arrays if str(k).endswith(".data")
             and f"{str(k)[:-len('.data')]}.addr" not in arrays]
    if stray:
        raise RunError(f"{where}: {stray[0]} has no {stray[0][:-len('.data')]}.addr beside it")
    return out


def image_from_items(items, cfg: TspConfig, where: str) -> dict[str, dict[int, np.ndarray]]:
    out: dict[str, dict[int, np.ndarray]] = {}
    for key, value in items:
        sl, sep, addr = str(key).partition("/")
        if not sep:
            raise RunError(f"{where}: key {key!r} is not SLICE/ADDR (e.g. MEM_W0/3; an .npz "
                           f"may also hold the compiler's <slice>.addr + <slice>.data "
                           f"arrays)")
        sl, a = _mem_addr(cfg, f"{where}: {key}", sl, addr)
        out.setdefault(sl, {})[a] = _vector(cfg, f"{where}: {key}", value)
    return out


def parse_dump(text: str, cfg: TspConfig) -> list[tuple[str, int]]:
    """``SLICE:ADDR[:COUNT]`` -> [(slice, addr), ...]."""
    parts = text.split(":")
    if len(parts) not in (2, 3):
        raise RunError(f"--dump {text}: expected SLICE:ADDR or SLICE:ADDR:COUNT "
                       "(e.g. MEM_E0:0:4)")
    sl, a = _mem_addr(cfg, f"--dump {text}", parts[0], parts[1])
    try:
        n = int(parts[2], 0) if len(parts) == 3 else 1
    except ValueError:
        raise RunError(f"--dump {text}: count {parts[2]!r} is not an integer") from None
    if not 1 <= n <= cfg.mem_addresses - a:
        raise RunError(f"--dump {text}: count {n} out of range [1, {cfg.mem_addresses - a}] "
                       f"from address {a}")
    return [(sl, a + i) for i in range(n)]


def prepare(prog_path: str | Path, *, config: str | None = None, image: str | None = None,
            dumps: list[str] = ()) -> UserRun:
    """Everything checked before anything runs or builds (RunError on bad input)."""
    path = Path(prog_path)
    prog, ns = load_program(path, config)
    cfg = prog.cfg
    run = UserRun(cfg, prog, source=str(path))
    if callable(ns.get("image")):
        run.image = image_from_items(
            [(f"{s}/{a}", v) for s, d in ns["image"](cfg).items() for a, v in d.items()],
            cfg, f"{path}:image()")
    if image:
        for sl, d in load_image(Path(image), cfg).items():
            run.image.setdefault(sl, {}).update(d)
    for d in [*ns.get("DUMP", ()), *dumps]:
        run.dumps += [x for x in parse_dump(d, cfg) if x not in run.dumps]
    return run


# ------------------------------------------------------------------------------ running
def run_model(run: UserRun, max_cycles: int) -> dict:
    """The machine model's result: cycles and counters, or the error, and the dumps."""
    from golden.machine import InvalidReadError, Machine, MachineError

    m = Machine(run.cfg)
    for sl, d in run.image.items():
        for a, v in sorted(d.items()):
            m.write_mem(sl, a, v)
    m.load_program(run.program)
    out: dict = {"error": None}
    try:
        r = m.run(max_cycles=max_cycles)
        out.update(cycles=r.cycles, busy=r.busy, issued=r.issued, mvm=r.mxm_mvm_cycles)
    except MachineError as e:
        out["error"] = str(e)
        out["chip_checks"] = not isinstance(e, InvalidReadError)  # (docs/host.md, STATUS)
    out["dump"] = {f"{sl}/{a}": m.read_mem(sl, a).tolist() for sl, a in run.dumps}
    return out


def run_rtl(run: UserRun, out_dir: Path, *, max_cycles: int, waves: bool, lockstep: bool,
            log=print) -> dict:
    """Load and run on the Verilated chip (`tb/chip/test_run.py`); its summary + dumps."""
    from .build import build_sim
    from .run import run_cocotb

    prog_path = out_dir / "prog.bin"
    prog_path.write_bytes(run.program.to_bytes())
    img_path = out_dir / "image.npz"
    np.savez(img_path, **{f"{s}/{a}": v for s, d in run.image.items() for a, v in d.items()})
    rb_path = out_dir / "readback.json"
    rb_path.write_text(json.dumps([list(x) for x in run.dumps]))
    rtl_out = out_dir / "readback.npz"
    sim = build_sim(run.cfg, "chip", waves=waves, log=log)
    log(f"running on the Verilated chip{' in lock-step with the model' if lockstep else ''}"
        f"{f', {sim.wave_format.upper()} waves' if waves else ''}")
    res = run_cocotb(sim, "tb.chip.test_run", name=f"run-{Path(run.source).stem}-{run.cfg.name}",
                     params={"program": str(prog_path), "image": str(img_path),
                             "readback": str(rb_path), "out": str(rtl_out),
                             "max_cycles": max_cycles, "lockstep": lockstep},
                     waves=waves, log=log)
    s = dict(res.summary)
    with np.load(rtl_out) as z:
        s["dump"] = {k: z[k].tolist() for k in z.files}
    s["log"] = str(res.log)
    s["waves"] = str(res.waves) if res.waves else None
    s["wave_format"] = sim.wave_format
    s["build"] = {"verilog": sim.verilog.describe(), "verilator": sim.describe()}
    return s


def compare(run: UserRun, model: dict, rtl: dict) -> list[str]:
    """Differences between the chip and the model (empty: they agree)."""
    from hdl.slice import ErrorCode

    cfg, st, ctr = run.cfg, rtl["status"], rtl["counters"]
    problems = []
    if model["error"] is not None:
        if not st["error"] and model.get("chip_checks", True):
            problems.append(f"the model refuses the program ({model['error']}) but the chip "
                            "finished without a fault")
        return problems
    if st["error"]:
        problems.append(f"the chip stopped on a fault: {ErrorCode(st['error_code']).name} at "
                        f"slice {cfg.slices[st['error_slice']].name} in cycle "
                        f"{st['error_cycle']}; the model accepts the program")
    if ctr["cycles"] != model["cycles"]:
        problems.append(f"cycles: chip CYCLES {ctr['cycles']}, model {model['cycles']}")
    if rtl["cycles_clock"] != model["cycles"]:
        problems.append(f"cycles: testbench clock {rtl['cycles_clock']}, model "
                        f"{model['cycles']}")
    for what, key in (("busy", "busy"), ("issued", "issued"), ("mvm", "mvm")):
        for name, v in model[key].items():
            if name in ctr[what] and ctr[what][name] != v:
                problems.append(f"counter {what}[{name}]: chip {ctr[what][name]}, model {v}")
    for k, v in model["dump"].items():
        got = rtl["dump"][k]
        if got != v:
            lane = next(i for i, (a, b) in enumerate(zip(got, v, strict=True)) if a != b)
            problems.append(f"SRAM {k} lane {lane}: chip {got[lane]}, model {v[lane]}")
    problems += [f"lock-step: {e}" for e in rtl.get("lockstep_errors", [])]
    return problems


def execute(run: UserRun, *, rtl: bool = False, waves: bool = False, lockstep: bool = False,
            max_cycles: int = 100_000, log=print) -> dict:
    from .reports import new_run_dir

    out_dir = new_run_dir(f"run-{Path(run.source).stem}-{run.cfg.name}")
    model = run_model(run, max_cycles)
    report: dict = {"program": run.source, "config": run.cfg.name, "out_dir": str(out_dir),
                    "model": model, "rtl": None, "problems": []}
    if model["error"] is None:
        log(f"machine model: {model['cycles']} cycles")
    else:
        log(f"machine model refuses the program: {model['error']}")
    if rtl:
        r = run_rtl(run, out_dir, max_cycles=4 * model.get("cycles", max_cycles) + 1000
                    if model["error"] is None else max_cycles, waves=waves,
                    lockstep=lockstep and model["error"] is None, log=log)
        report["rtl"] = r
        report["mismatches"] = compare(run, model, r)
        report["problems"] = list(report["mismatches"])
    if model["error"] is not None:  # a faulting program fails the run either way
        report["problems"].insert(0, f"the program faults: {model['error']}")
    (out_dir / "report.json").write_text(json.dumps(report, indent=1))
    report["report_json"] = str(out_dir / "report.json")
    return report


def _fmt_vec(v: list[int]) -> str:
    return " ".join(f"{int(np.int8(np.uint8(x))):4d}" for x in v)


def print_report(rep: dict, run: UserRun, log=print) -> None:
    from hdl.slice import ErrorCode

    cfg, model, rtl = run.cfg, rep["model"], rep["rtl"]
    log("")
    log(f"== {rep['program']} on {cfg.name} ==")
    if model["error"] is None:
        log(f"machine model     {model['cycles']} cycles; issued "
            + ", ".join(f"{k} {v}" for k, v in model["issued"].items() if v))
    else:
        log(f"machine model     refuses the program: {model['error']}")
    if rtl is not None:
        st, ctr = rtl["status"], rtl["counters"]
        how = ("fault " + ErrorCode(st["error_code"]).name + f" at slice "
               f"{cfg.slices[st['error_slice']].name} in cycle {st['error_cycle']}"
               if st["error"] else "done, no fault" if st["done"] else "not done")
        log(f"chip (Verilator)  {ctr['cycles']} cycles (CYCLES register), "
            f"{rtl['cycles_clock']} counted by the testbench clock; status: {how}")
        if rtl.get("lockstep"):
            n = len(rtl.get("lockstep_errors", []))
            log(f"lock-step         ran: every stream register every cycle vs the model: "
                f"{'passed' if not n else f'{n} difference(s)'}")
        unchecked = model["error"] is not None and not model.get("chip_checks", True)
        log("chip vs model     " + ("DIFFER" if rep["mismatches"] else
                                    "agree as far as the chip checks (its streams carry no "
                                    "valid bits: it reads what the register holds)"
                                    if unchecked and not st["error"] else "agree"))
    for k, v in model["dump"].items():
        log(f"{k:<17} {_fmt_vec(v)}   (int8 lanes{'; model' if rtl is not None else ''})")
        if rtl is not None and rtl["dump"][k] != v:
            log(f"{'':<17} {_fmt_vec(rtl['dump'][k])}   (chip)")
    log(f"report            {rep['report_json']}")
    if rtl is not None:
        log(f"simulator log     {rtl['log']}")
        if rtl.get("waves"):
            log(f"waves ({rtl['wave_format'].upper()})       {rtl['waves']}")
    for p in rep["problems"]:
        log(f"PROBLEM: {p}")


__all__ = ["RunError", "UserRun", "compare", "execute", "prepare", "print_report"]
