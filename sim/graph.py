"""A compiled graph (`compiler.graph`) on the Verilated chip.

`run_graph_rtl(cg, inputs)` writes the program and the host image (constants, weights,
tables and the inputs), loads them through the host interface, runs to ``done``
(`tb/chip/test_run.py`), reads every output tensor back and returns them with the chip's
CYCLES and the testbench's clock count.  The caller compares them with the graph's
golden evaluation and with the compiler's prediction.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .block import write_program
from .build import build_sim
from .run import run_cocotb


def run_graph_rtl(cg, inputs, out_dir: Path, name: str = "graph", log=print) -> dict:
    """Run ``cg`` (a `compiler.graph.CompiledGraph`) on ``inputs``; returns ``{"outputs":
    {name: array}, "cycles_chip": int, "cycles_clock": int, "status": dict}``."""
    cfg = cg.cfg
    out_dir.mkdir(parents=True, exist_ok=True)
    prog, image = write_program(out_dir, cg.program, cg.sram_image(inputs))
    wanted = sorted({loc for o in cg.graph.outputs for locs in cg.tensors[o].locs.values()
                     for loc in locs})
    rb = out_dir / "readback.json"
    rb.write_text(json.dumps([[s, int(a)] for s, a in wanted]))
    rtl_out = out_dir / "readback.npz"
    sim = build_sim(cfg, "chip", log=log)
    run = run_cocotb(sim, "tb.chip.test_run", name=f"{name}-{cfg.name}",
                     params={"program": str(prog), "image": str(image), "readback": str(rb),
                             "out": str(rtl_out), "max_cycles": 4 * cg.cycles + 10_000},
                     log=log)
    with np.load(rtl_out) as z:
        vecs = {k: z[k] for k in z.files}
    s = run.summary
    return {"outputs": {o: cg.read(o, lambda sl, a: vecs[f"{sl}/{a}"])
                        for o in cg.graph.outputs},
            "cycles_chip": s["counters"]["cycles"], "cycles_clock": s["cycles_clock"],
            "status": s["status"], "log": str(run.log)}


__all__ = ["run_graph_rtl"]
