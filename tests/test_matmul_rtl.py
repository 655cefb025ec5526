"""The hand-written tiled int8 matmul (examples/matmul.py: K > VL accumulated over MXM
passes, bias and per-channel requantisation on the VXM) on the Verilated chip:
equal to golden.quant, measured cycles equal to the machine model's."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from arch.asm import assemble
from arch.config import get_config
from sim.build import build_root, build_sim
from sim.run import run_cocotb

pytestmark = pytest.mark.rtl

_spec = importlib.util.spec_from_file_location(
    "matmul_example", Path(__file__).resolve().parents[1] / "examples" / "matmul.py")
matmul = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(matmul)


@pytest.mark.parametrize(("config", "m", "k", "n"), [("tiny", 6, 40, 12), ("small", 8, 80, 30)])
def test_tiled_matmul_on_rtl(config, m, k, n, base_seed):
    cfg = get_config(config)
    case = matmul.random_case(m, k, n, base_seed)
    text, mach, _, placed = matmul.build(cfg, case)
    prog = assemble(text, cfg, "matmul.s")
    out = build_root() / "tests" / f"matmul-{config}-{base_seed}"
    out.mkdir(parents=True, exist_ok=True)
    image = {f"{sl}/{a}": v for sl, d in placed.items() for a, v in d.items()}
    np.savez(out / "image.npz", **image)
    (out / "prog.bin").write_bytes(prog.to_bytes())
    ybase = cfg.mem_depth
    (out / "readback.json").write_text(json.dumps([["MEM_E0", ybase + i] for i in range(m)]))
    mach.load_program(prog)
    res = mach.run()
    expected = case.expected()
    assert np.array_equal(mach.read_mem("MEM_E0", ybase, m, np.int8)[:, :n], expected)

    sim = build_sim(cfg, "chip")
    run = run_cocotb(sim, "tb.chip.test_run", name=f"matmul-{config}",
                     params={"program": str(out / "prog.bin"), "image": str(out / "image.npz"),
                             "readback": str(out / "readback.json"),
                             "out": str(out / "readback.npz"), "lockstep": True})
    s = run.summary
    with np.load(out / "readback.npz") as z:
        y = np.stack([z[f"MEM_E0/{ybase + i}"] for i in range(m)]).view(np.int8)[:, :n]
    print(f"{config}: X[{m}x{k}] @ W[{n}x{k}].T, {-(-k // cfg.vector_length)} passes, "
          f"{s['counters']['cycles']} cycles (model {res.cycles})")
    assert not s["status"]["error"]
    assert np.array_equal(y, expected), "RTL result differs from golden.quant"
    assert s["counters"]["cycles"] == res.cycles
    assert s["counters"]["busy"] == res.busy
    assert s["counters"]["mvm"] == res.mxm_mvm_cycles
    assert s["lockstep_errors"] == []
