"""`python -m sim run ... --rtl --waves` on the Verilated chip: the program runs, agrees
with the machine model, and writes a waveform that reads back (pywellen) and shows the
run-control contract of docs/host.md / hdl/host.py:

- START is accepted at a rising edge E0 (``cmd__valid`` & ``cmd__ready``, op 5);
- during program cycle t (after edge E0 + t) the chip's ``cycle`` counter reads t and
  ``running`` is high, for t < N; ``done`` rises right after edge E0 + N, where N is the
  CYCLES register (and the model's count);
- a slice instruction the model issues in cycle t is on its ICU's ``issue`` port
  (``icu_<NAME>.issue.valid``) in exactly that clock cycle.

The expected SRAM contents come from the program's meaning (saturate(3 x)), the issue
cycles from the machine model; the rest is measured in the waveform.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from arch.asm import assemble_file
from golden.machine import Machine, Observer
from hdl.host import HostOp, host_command_layout
from sim.runprog import image_from_items
from tb.env import PERIOD_NS

pytestmark = pytest.mark.rtl
pywellen = pytest.importorskip("pywellen")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_run_cli import SCALE_JSON, SCALE_S, scale_expected  # noqa: E402


class Issues(Observer):
    def __init__(self):
        self.events = []

    def on_issue(self, ev):
        if ev.latency is not None:  # slice instructions (ICU ones drive no issue port)
            self.events.append((ev.slice, ev.cycle))


def model_issues(prog, image) -> set[tuple[str, int]]:
    obs = Issues()
    m = Machine(prog.cfg, observer=obs)
    for sl, d in image.items():
        for a, v in d.items():
            m.write_mem(sl, a, v)
    m.load_program(prog)
    m.run()
    return set(obs.events)


class Wave:
    def __init__(self, path: Path):
        self.w = pywellen.Waveform(str(path))
        ts = self.w.timescale
        unit_ns = {"fs": 1e-6, "ps": 1e-3, "ns": 1.0, "us": 1e3}[str(ts.unit)]
        self.period = round(PERIOD_NS / (ts.factor * unit_ns))
        self.vars = {v.full_name: v for v in self.w.all_vars()}

    def var(self, suffix: str):
        hits = [v for n, v in self.vars.items() if n.endswith(suffix)]
        hits.sort(key=lambda v: len(v.full_name))
        assert hits, f"no signal ...{suffix} in the waveform"
        return hits[0]

    def at(self, var, t: int) -> int:
        v = var.signal.value_at(t)
        assert isinstance(v, int), f"{var.full_name} at {t}: {v!r}"
        return v

    def rising_edges(self, clk, t_end: int) -> list[int]:
        step = max(1, self.period // 20)
        edges, prev = [], None
        for t in range(0, t_end, step):
            v = clk.signal.value_at(t)
            if prev == 0 and v == 1:
                # refine to the exact change time
                lo = t - step
                while self.at(clk, lo + 1) == 0:
                    lo += 1
                edges.append(lo + 1)
            prev = v
        return edges


def test_run_cli_on_the_chip_with_waves(tmp_path):
    r = subprocess.run([sys.executable, "-m", "sim", "run", str(SCALE_S), "--image",
                        str(SCALE_JSON), "--dump", "MEM_E0:0:4", "--rtl", "--waves"],
                       cwd=ROOT, capture_output=True, text=True, timeout=3000,
                       env={**os.environ})
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    report_path = next(ln.split()[-1] for ln in r.stdout.splitlines()
                       if ln.startswith("report "))
    rep = json.loads(Path(report_path).read_text())
    rtl, model = rep["rtl"], rep["model"]
    assert rep["problems"] == []
    assert rtl["status"]["done"] and not rtl["status"]["error"]
    n = rtl["counters"]["cycles"]
    assert n == model["cycles"] == rtl["cycles_clock"]
    assert rtl["dump"] == scale_expected() == model["dump"]
    fmt = rtl["wave_format"]
    assert fmt in ("fst", "vcd") and f"waves ({fmt.upper()})" in r.stdout
    path = Path(rtl["waves"])
    assert path.exists() and path.suffix == f".{fmt}"

    wv = Wave(path)
    assert wv.w.file_format.lower() == fmt
    clk, valid, ready = wv.var(".clk"), wv.var(".cmd__valid"), wv.var(".cmd__ready")
    payload, done = wv.var(".cmd__payload"), wv.var(".done")
    running, cycle = wv.var("tsp_chip.running"), wv.var("tsp_chip.cycle")
    op_lay = host_command_layout(rep_cfg := assemble_file(SCALE_S).cfg)["op"]
    edges = wv.rising_edges(clk, t_end=wv.period * 10_000)
    assert len(edges) > n + 10
    before, after = wv.period // 4, wv.period // 4  # sample a quarter period around edges

    def accepted_op(e):
        p = wv.at(payload, e - before)
        return (wv.at(valid, e - before) and wv.at(ready, e - before)
                and (p >> op_lay.offset) & ((1 << op_lay.width) - 1))

    starts = [i for i, e in enumerate(edges) if accepted_op(e) == HostOp.START]
    assert len(starts) == 1, starts
    e0 = starts[0]
    for t in range(n):
        e = edges[e0 + t] + after
        assert wv.at(running, e) == 1 and wv.at(done, e) == 0, f"cycle {t}"
        assert wv.at(cycle, e) == t, f"cycle {t}: counter {wv.at(cycle, e)}"
    e_n = edges[e0 + n] + after
    assert wv.at(done, e_n) == 1 and wv.at(running, e_n) == 0
    assert wv.at(cycle, e_n) == n

    # issue alignment with the model, per slice
    image = image_from_items(json.loads(SCALE_JSON.read_text()).items(), rep_cfg, "img")
    want = model_issues(assemble_file(SCALE_S), image)
    assert len(want) == 12  # 4 READs, 4 VXM ops, 4 WRITEs
    got = set()
    for s in rep_cfg.slices:
        issue = wv.var(f"icu_{s.name}.issue.valid")
        for t in range(n):
            if wv.at(issue, edges[e0 + t] + after):
                got.add((s.name, t))
    assert got == want


def test_run_cli_reports_the_chips_fault(tmp_path):
    """A program the model refuses (a bank conflict) faults on the chip too: the run says
    where and when, from the chip's STATUS and ERROR_CYCLE registers, and exits 1."""
    bad = tmp_path / "conflict.s"
    # tiny: MEM_W1 (position 2) READ in cycle 0 -> s1.E readable at MEM_W0 (3) in cycle 2;
    # the WRITE issued in cycle 2 writes bank 0 in cycle 3, when READ 7 (bank 0) issues
    bad.write_text(".config tiny\n.slice MEM_W1\n    READ 0, s1.E\n    HALT\n"
                   ".slice MEM_W0\n    NOP 2\n    WRITE s1.E, 5\n    READ 7, s2.E\n    HALT\n")
    r = subprocess.run([sys.executable, "-m", "sim", "run", str(bad), "--rtl"], cwd=ROOT,
                       capture_output=True, text=True, timeout=3000)
    assert r.returncode == 1 and "Traceback" not in r.stdout + r.stderr, r.stdout + r.stderr
    assert "in cycle 3: MEM bank conflict" in r.stdout  # the model
    assert "status: fault BANK_CONFLICT at slice MEM_W0 in cycle 3" in r.stdout  # the chip
    assert "chip vs model     agree" in r.stdout


def test_run_cli_an_invalid_read_is_the_models_fault_only(tmp_path):
    """A WRITE one cycle before its data arrives: the model refuses the program (an invalid
    stream read); the chip, whose streams carry no valid bits, runs it without a fault.  The
    run fails (exit 1) on the model's fault, and reports the chip as agreeing as far as it
    checks, not as a difference."""
    early = tmp_path / "early.s"
    early.write_text(".config tiny\n.slice MEM_W1\n    READ 0, s1.E\n    HALT\n"
                     ".slice MEM_W0\n    NOP 1\n    WRITE s1.E, 5\n    HALT\n")
    r = subprocess.run([sys.executable, "-m", "sim", "run", str(early), "--rtl"], cwd=ROOT,
                       capture_output=True, text=True, timeout=3000)
    out = r.stdout + r.stderr
    assert r.returncode == 1 and "Traceback" not in out, out
    assert "which holds no valid value in this cycle" in r.stdout  # the model
    assert "status: done, no fault" in r.stdout  # the chip
    assert "chip vs model     agree as far as the chip checks" in r.stdout
    assert "DIFFER" not in r.stdout and "but the chip finished without a fault" not in out
