"""`python -m sim run`: your own program on the machine model (and, marked rtl, on the
Verilated chip with a waveform read back and checked against the documented timing).

Expected values come from the programs' own meaning (y = saturate(3 x)), computed here
with numpy from the input file, not from the simulator's output.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from arch.asm import assemble_file
from arch.config import get_config

ROOT = Path(__file__).resolve().parents[1]
SCALE_S = ROOT / "examples" / "scale.s"
SCALE_JSON = ROOT / "examples" / "scale.json"
#: scale.s: the last WRITE issues in cycle 6 + 3 (REPEAT 3), its SRAM write (latency 1)
#: happens in cycle 10, so the program is 11 cycles long (docs/isa.md: last effect + 1)
SCALE_CYCLES = 11


def scale_expected() -> dict[str, list[int]]:
    x = json.loads(SCALE_JSON.read_text())
    return {f"MEM_E0/{a}": np.clip(3 * np.array(x[f"MEM_W0/{a}"]), -128, 127)
            .astype(np.int8).view(np.uint8).tolist() for a in range(4)}


def sim_run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "TSP_BUILD_DIR": str(tmp_path / "build")}
    return subprocess.run([sys.executable, "-m", "sim", "run", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=3000)


def latest_report(tmp_path: Path) -> dict:
    return json.loads((tmp_path / "build" / "sim" / "latest" / "report.json").read_text())


def test_scale_example_on_the_model(tmp_path):
    r = sim_run(tmp_path, str(SCALE_S), "--image", str(SCALE_JSON), "--dump", "MEM_E0:0:4")
    assert r.returncode == 0, r.stdout + r.stderr
    rep = latest_report(tmp_path)
    assert rep["model"]["error"] is None
    assert rep["model"]["cycles"] == SCALE_CYCLES
    assert rep["model"]["dump"] == scale_expected()
    assert rep["model"]["issued"]["VXM"] == 4 and rep["model"]["issued"]["MEM_E0"] == 4
    # printed: cycles and the dumped vectors as int8 lanes
    assert f"machine model     {SCALE_CYCLES} cycles" in r.stdout
    row2 = " ".join(f"{v:4d}" for v in np.int8(np.uint8(scale_expected()["MEM_E0/2"])))
    assert f"MEM_E0/2          {row2}" in r.stdout


def test_binary_and_python_programs(tmp_path):
    """The same program as a binary and as a .py with its own image and DUMP."""
    binary = tmp_path / "scale.bin"
    binary.write_bytes(assemble_file(SCALE_S).to_bytes())
    r = sim_run(tmp_path, str(binary), "--image", str(SCALE_JSON), "--dump", "MEM_E0:0:4")
    assert r.returncode == 0, r.stdout + r.stderr
    assert latest_report(tmp_path)["model"]["dump"] == scale_expected()

    x = json.loads(SCALE_JSON.read_text())
    py = tmp_path / "scale_prog.py"
    py.write_text(f"""
from pathlib import Path
CONFIG = "tiny"
DUMP = ["MEM_E0:0:4"]
X = {x!r}

def program(cfg):
    return Path({str(SCALE_S)!r}).read_text()

def image(cfg):
    return {{"MEM_W0": {{int(k.split("/")[1]): v for k, v in X.items()}}}}
""")
    r = sim_run(tmp_path, str(py))
    assert r.returncode == 0, r.stdout + r.stderr
    rep = latest_report(tmp_path)
    assert rep["config"] == "tiny" and rep["model"]["dump"] == scale_expected()


def test_runs_keep_their_reports(tmp_path):
    for _ in range(2):
        r = sim_run(tmp_path, str(SCALE_S), "--image", str(SCALE_JSON))
        assert r.returncode == 0, r.stderr
    sim = tmp_path / "build" / "sim"
    runs = sorted(p for p in sim.iterdir() if p.is_dir() and not p.is_symlink())
    assert len(runs) == 2 and all((p / "report.json").exists() for p in runs)
    assert (sim / "latest").is_symlink() and (sim / "latest").resolve() == runs[-1].resolve()


def test_a_faulting_program_is_reported_not_a_traceback(tmp_path):
    bad = tmp_path / "collide.s"
    # MEM_W0 reads bank 0 while the WRITE it issued one cycle earlier writes bank 0
    bad.write_text(".config tiny\n.slice MEM_W1\n    READ 0, s1.E\n    HALT\n"
                   ".slice MEM_W0\n    NOP 2\n    WRITE s1.E, 5\n    READ 7, s2.E\n    HALT\n")
    r = sim_run(tmp_path, str(bad))
    assert r.returncode == 1 and "Traceback" not in r.stdout + r.stderr
    assert "machine model refuses the program: MEM_W0 instruction 2 (READ 7, s2.E) in cycle 3:"\
        " MEM bank conflict" in r.stdout


BAD = {
    # name: (args, fragments of stderr)
    "missing program": (["nope.s"], ["error: nope.s: no such program file"]),
    "unknown suffix": (["README.md"], ["error: README.md: unknown program type '.md'; "
                                       "expected .s (assembly), .bin (program binary) or .py"]),
    "assembly error": (["{bad_s}"], ["error: {bad_s}:3: unknown mnemonic 'FROB'"]),
    "image lanes": ([str(SCALE_S), "--image", "{short_json}"],
                    ["error: {short_json}: MEM_W0/0: 3 lanes, config 'tiny' has a vector "
                     "length of 16"]),
    "image not MEM": ([str(SCALE_S), "--image", "{vxm_json}"],
                      ["error: {vxm_json}: VXM/0: 'VXM' is not a MEM slice of config 'tiny'; "
                       "MEM slices are MEM_W1, MEM_W0, MEM_E0, MEM_E1"]),
    "image address": ([str(SCALE_S), "--image", "{addr_json}"],
                      ["error: {addr_json}: MEM_W0/600: address 600 out of range [0, 511]"]),
    "image value": ([str(SCALE_S), "--image", "{val_json}"],
                    ["error: {val_json}: MEM_W0/1: lane 0 is 300, not a byte (-128..255)"]),
    "image json": ([str(SCALE_S), "--image", "{broken_json}"],
                   ["error: {broken_json}:3: not valid JSON"]),
    "dump syntax": ([str(SCALE_S), "--dump", "MEM_E0"],
                    ["error: --dump MEM_E0: expected SLICE:ADDR or SLICE:ADDR:COUNT"]),
    "dump count": ([str(SCALE_S), "--dump", "MEM_E0:510:5"],
                   ["error: --dump MEM_E0:510:5: count 5 out of range [1, 2] from address 510"]),
    "waves without rtl": ([str(SCALE_S), "--waves"], ["error: --waves and --lockstep need --rtl"]),
    "config mismatch": ([str(SCALE_S), "--config", "small"],
                        ["error: {scale_s}:10: .config tiny does not match the requested "
                         "config 'small'"]),
    "py without program": (["{empty_py}"], ["error: {empty_py}: defines no function "
                                            "program(cfg)"]),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input(case, tmp_path):
    files = {
        "bad_s": (".s", ".config tiny\n.slice VXM\n    FROB 1\n"),
        "short_json": (".json", '{"MEM_W0/0": [1, 2, 3]}'),
        "vxm_json": (".json", '{"VXM/0": 1}'),
        "addr_json": (".json", '{"MEM_W0/600": 1}'),
        "val_json": (".json", '{"MEM_W0/0": 1, "MEM_W0/1": 300}'),
        "broken_json": (".json", '{\n  "MEM_W0/0": [1,\n'),
        "empty_py": (".py", "X = 1\n"),
    }
    names = {"scale_s": str(SCALE_S)}
    for key, (suffix, text) in files.items():
        p = tmp_path / f"{key}{suffix}"
        p.write_text(text)
        names[key] = str(p)
    args, fragments = BAD[case]
    r = sim_run(tmp_path, *[a.format(**names) for a in args])
    out = r.stdout + r.stderr
    assert "Traceback" not in out, out
    assert r.returncode == 2, out  # refused input (sim/cli.py)
    for f in fragments:
        assert f.format(**names) in r.stderr, (f, r.stderr)
    # nothing was generated or built
    assert not (tmp_path / "build" / "verilog").exists()
    assert not (tmp_path / "build" / "verilator").exists()


def test_config_too_large_for_rtl_says_why(tmp_path):
    prog = tmp_path / "p.s"
    prog.write_text(".slice VXM\n    HALT\n")
    r = sim_run(tmp_path, str(prog), "--config", "full", "--rtl")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    cfg = get_config("full")
    assert (f"config 'full' is too large to simulate: {cfg.n_positions} slice positions x "
            f"{cfg.superlanes} superlanes = {cfg.n_positions * cfg.superlanes} tiles") in r.stderr
    assert "Use tiny, tiny3, small, medium or layer for RTL runs" in r.stderr
    assert not (tmp_path / "build" / "verilog").exists()


def test_golden_machine_module_points_to_sim_run(tmp_path):
    r = subprocess.run([sys.executable, "-m", "golden.machine", "prog.bin"], cwd=ROOT,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "python -m sim run" in r.stderr


def test_make_run_target():
    r = subprocess.run(["make", "run"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and "usage: make run PROG=examples/scale.s" in r.stdout
    r = subprocess.run(["make", "-n", "run", "PROG=examples/scale.s", "IMAGE=examples/scale.json",
                        "DUMP=MEM_E0:0:4 MEM_E1:7", "RTL=1", "WAVES=yes"], cwd=ROOT,
                       capture_output=True, text=True, timeout=60)
    cmd = " ".join(r.stdout.replace("\\\n", " ").split())
    assert ("-m sim run examples/scale.s --image examples/scale.json --dump MEM_E0:0:4 "
            "--dump MEM_E1:7 --rtl --waves") in cmd, cmd
    r = subprocess.run(["make", "-n", "run", "PROG=examples/scale.s", "RTL=maybe"], cwd=ROOT,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "RTL=maybe is not a boolean" in r.stderr


def test_the_compilers_files_run_as_written(tmp_path):
    """`python -m compiler --out DIR` writes prog.bin and sram_image.npz (per slice
    ``<slice>.addr`` / ``<slice>.data``); `sim run` takes that image as it is, and the
    program's output rows (where layout.json says) are expected.npz's y_q."""
    from compiler import compile_block
    from golden.block import make_block
    from sim.runprog import RunError, prepare, run_model

    blk = make_block(0, 8, 32, 2, 64)
    cb = compile_block(blk, "tiny", effort="fast")
    files = cb.write(tmp_path)
    y_locs = [loc for locs in json.loads(files["layout.json"].read_text())["output_y_q"].values()
              for loc in locs]
    run = prepare(files["prog.bin"], config="tiny", image=str(files["sram_image.npz"]),
                  dumps=[f"{s}:{a}" for s, a in y_locs])
    out = run_model(run, 100_000)
    assert out["error"] is None and out["cycles"] == cb.cycles
    got = cb.read_output(lambda s, a: np.array(out["dump"][f"{s}/{a}"], np.uint8))
    assert np.array_equal(got, np.load(files["expected.npz"])["y_q"])
    bad = tmp_path / "bad.npz"
    np.savez(bad, **{"MEM_W0.addr": np.arange(3), "MEM_W0.data": np.zeros((2, 16), np.uint8)})
    with pytest.raises(RunError, match=r"MEM_W0.addr lists 3 addresses but MEM_W0.data is "
                                       r"shape \(2, 16\)"):
        prepare(files["prog.bin"], config="tiny", image=str(bad))


def test_a_refused_run_leaves_no_run_directory(tmp_path, monkeypatch):
    """`sim layer` refused before it runs (a layer the model does not have): no run
    directory is left behind and ``latest`` still points at the run before."""
    import pytest

    from sim.layer import run_layer
    from sim.reports import new_run_dir

    monkeypatch.setenv("TSP_BUILD_DIR", str(tmp_path / "build"))
    before = new_run_dir("earlier")
    sim = before.parent
    with pytest.raises(ValueError, match=r"layer=7: the model has layers 0..1"):
        run_layer(get_config("medium"), "tiny", layer=7, context=16, steps=2,
                  log=lambda *a: None)
    assert sorted(p.name for p in sim.iterdir() if not p.is_symlink()) == [before.name]
    assert (sim / "latest").resolve() == before.resolve()


def test_python_program_without_a_config_is_told_where_the_config_came_from(tmp_path):
    """A .py whose assembly names a config, run with neither --config nor CONFIG: the
    mismatch message says program() got the default config."""
    import pytest

    from sim.runprog import RunError, prepare

    p = tmp_path / "p.py"
    p.write_text('def program(cfg):\n    return ".config tiny\\n.slice MEM_W0\\nHALT\\n"\n')
    with pytest.raises(RunError, match=r"neither --config nor CONFIG = '...' in p.py chose "
                                       r"one, so program\(\) got the default 'small'"):
        prepare(p)
    assert prepare(p, config="tiny").cfg.name == "tiny"
