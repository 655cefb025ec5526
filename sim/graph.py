"""A compiled graph (`compiler.graph`) on the Verilated chip.

`run_graph_rtl(cg, inputs)` writes the program and the host image (constants, weights,
tables and the inputs), loads them through the host interface, runs to ``done``
(`tb/chip/test_run.py`), reads every output tensor back and returns them with the chip's
CYCLES and the testbench's clock count.  The caller compares them with the graph's
golden evaluation and with the compiler's prediction.
"""

from __future__ import annotations

from pathlib import Path

from .block import run_on_chip


def run_graph_rtl(cg, inputs, out_dir: Path, name: str = "graph", log=print) -> dict:
    """Run ``cg`` (a `compiler.graph.CompiledGraph`) on ``inputs``; returns ``{"outputs":
    {name: array}, "cycles_chip": int, "cycles_clock": int, "status": dict}``."""
    wanted = [loc for o in cg.graph.outputs for locs in cg.tensors[o].locs.values()
              for loc in locs]
    vecs, run, _ = run_on_chip(cg.cfg, out_dir, f"{name}-{cg.cfg.name}", cg.program,
                            cg.sram_image(inputs), wanted, 4 * cg.cycles + 10_000, log=log)
    s = run.summary
    return {"outputs": {o: cg.read(o, lambda sl, a: vecs[f"{sl}/{a}"])
                        for o in cg.graph.outputs},
            "cycles_chip": s["counters"]["cycles"], "cycles_clock": s["cycles_clock"],
            "status": s["status"], "log": str(run.log)}


__all__ = ["run_graph_rtl"]
