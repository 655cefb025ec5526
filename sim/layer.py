"""A llama decoder layer's decode steps (`compiler.layer`) on the Verilated chip.

`run_layer_rtl(cl, rows, es, out_dir)` loads the program, the weights, tables and the
zeroed KV cache once through the host interface, then per step writes the token's
residual row, its exponent and the position, STARTs, waits for ``done`` and reads the
next residual row and its exponent and the chip's CYCLES (`tb/chip/test_run.py`, steps
mode).  The caller compares them with `golden.llm.layer_int` and the prediction.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .block import write_program
from .build import build_sim
from .run import run_cocotb


def run_layer_rtl(cl, rows: np.ndarray, es, out_dir: Path, log=print) -> dict:
    """``{"outputs": [(y, e_y)] per step, "cycles_chip": [...], "cycles_clock": [...],
    "step_errors": [...]}``."""
    cfg = cl.cfg
    out_dir.mkdir(parents=True, exist_ok=True)
    prog, image = write_program(out_dir, cl.program, cl.init)
    steps = out_dir / "steps.npz"
    np.savez(steps, **{f"{p}/{s}/{a}": v for p in range(rows.shape[0])
                       for (s, a), v in cl.step_writes(rows[p], int(es[p]), p)})
    wanted = sorted({loc for t in (cl.low.y, cl.low.ey) for locs in t.locs.values()
                     for loc in locs})
    rb = out_dir / "readback.json"
    rb.write_text(json.dumps([[s, int(a)] for s, a in wanted]))
    rtl_out = out_dir / "readback.npz"
    sim = build_sim(cfg, "chip", log=log)
    run = run_cocotb(sim, "tb.chip.test_run", name=f"layer-{cfg.name}",
                     params={"program": str(prog), "image": str(image), "steps": str(steps),
                             "readback": str(rb), "out": str(rtl_out),
                             "max_cycles": 4 * cl.cycles + 10_000}, log=log)
    with np.load(rtl_out) as z:
        vecs = {k: z[k] for k in z.files}
    s = run.summary
    d = rows.shape[1]
    outs = [cl.read_row(lambda sl, a, p=p: vecs[f"{p}/{sl}/{a}"], cl.low.y, cl.low.ey, d)
            for p in range(rows.shape[0])]
    return {"outputs": outs, "cycles_chip": s["cycles_chip_runs"],
            "cycles_clock": s["cycles_clock_runs"], "step_errors": s["step_errors"],
            "log": str(run.log)}


__all__ = ["run_layer_rtl"]
