"""`make bench`: schedule quality over a table of shapes and configs, and the
Verilator simulation speed of the compiled block.

For every (config, shape) the block is compiled and checked on the machine
model (cycles predicted == model); the table gives cycles, the lower bound, the
ratio and MXM utilisation.  The rows marked ``rtl`` also run on the Verilated
chip (cached builds) for the simulated cycles per second.  Written to
``build/bench.json``.

Then the decode steps (`compiler.decode`): one step's cycles for a maximum context,
checked on the model over every position (each step's cycles == predicted, every
output == the golden prefill row), its lower bounds (weight stream, MACs, VXM,
dependency path) and the ratio to the largest; ``rtl`` rows run every step on the
chip too.  Written to ``build/bench-decode.json``.

Last, a llama decoder layer's decode step in the LLM's integer numerics
(`compiler.layer`; a tiny random llama and SmolLM2-135M's real layer): cycles per step and
its bounds, ``build/bench-layer.json``.
"""

from __future__ import annotations

import json
import time

from arch.config import get_config

from .build import build_root
from .cli import Refused

#: (config, seq, d_model, heads, d_ff, causal, run on the RTL too)
TABLE = [
    ("tiny", 8, 32, 2, 64, True, True),
    ("small", 16, 32, 2, 64, True, True),
    ("small", 16, 64, 2, 128, False, True),
    ("small", 32, 64, 4, 256, True, False),
    ("medium", 16, 32, 2, 64, True, False),
    ("medium", 32, 64, 4, 256, True, False),
    ("medium", 32, 128, 4, 512, True, False),
    # the same shapes with four VXM groups (`TspConfig.vxm_groups`), with a READ and a
    # WRITE per MEM slice and cycle (`TspConfig.mem_read_write`), with both
    ("medium:vxm_groups=4", 32, 64, 4, 256, True, False),
    ("medium:vxm_groups=4", 32, 128, 4, 512, True, False),
    ("medium:mem_read_write=1", 32, 128, 4, 512, True, False),
    ("medium:vxm_groups=4,mem_read_write=1", 32, 64, 4, 256, True, False),
    ("medium:vxm_groups=4,mem_read_write=1", 32, 128, 4, 512, True, False),
    # and with SXM transposers of 32 rows (`TspConfig.sxm_transpose_rows`: P^T and V^T by
    # TPUT/TGET instead of MVMs)
    ("medium:sxm_transpose_rows=32", 32, 128, 4, 512, True, False),
    ("medium:vxm_groups=4,mem_read_write=1,sxm_transpose_rows=32", 32, 64, 4, 256, True,
     False),
    ("medium:vxm_groups=4,mem_read_write=1,sxm_transpose_rows=32", 32, 128, 4, 512, True,
     False),
    # and with weight loads of 2 or 4 rows per cycle (`TspConfig.mxm_load_rows`)
    ("medium:mxm_load_rows=4", 32, 128, 4, 512, True, False),
    ("medium:vxm_groups=4,mem_read_write=1,sxm_transpose_rows=32,mxm_load_rows=4", 32, 64, 4,
     256, True, False),
    ("medium:vxm_groups=4,mem_read_write=1,sxm_transpose_rows=32,mxm_load_rows=2", 32, 128,
     4, 512, True, False),
    ("medium:vxm_groups=4,mem_read_write=1,sxm_transpose_rows=32,mxm_load_rows=4", 32, 128,
     4, 512, True, False),
]

#: decode steps: (config, max context, d_model, heads, d_ff, run on the RTL too)
DECODE_TABLE = [
    ("tiny", 8, 32, 2, 64, True),
    ("small", 16, 32, 2, 64, True),
    ("small", 32, 64, 4, 128, False),
    ("medium", 32, 64, 4, 256, False),
    ("medium", 32, 128, 4, 512, False),
    ("medium:vxm_groups=4", 32, 128, 4, 512, False),
    ("medium:vxm_groups=4,mem_read_write=1", 32, 128, 4, 512, False),
    ("medium:mxm_load_rows=4", 32, 128, 4, 512, False),
    ("medium:vxm_groups=4,mem_read_write=1,mxm_load_rows=4", 32, 128, 4, 512, False),
]


def run_bench(rtl: bool = True, log=print, only: str | None = None) -> list[dict]:
    """The tables (module docstring); ``only``: just the block rows whose config contains
    it, written to ``build/bench-blocks.json``."""
    from compiler.compiled import compile_block
    from golden.block import make_block

    from .block import BlockSpec, run_block

    rows = []
    table = [r for r in TABLE if only is None or only in r[0]]
    if not table:
        raise Refused(f"no block row's config contains {only!r}; configs are "
                      f"{', '.join(sorted({r[0] for r in TABLE}))}")
    for cfg_name, seq, d, h, ff, causal, on_rtl in table:
        cfg = get_config(cfg_name)
        block = make_block(0, seq, d, h, ff, causal=causal)
        x_q = block.quantize_input(block.example_input(0))
        t0 = time.monotonic()
        try:
            comp = compile_block(block, cfg)
        except ValueError as e:
            log(f"{cfg_name:7s} seq {seq:3d} d_model {d:4d} heads {h} d_ff {ff:4d}: "
                f"does not compile: {e}")
            rows.append({"config": cfg_name, "shape": [seq, d, h, ff, causal],
                         "error": str(e)})
            continue
        compile_s = time.monotonic() - t0
        y, res, _ = comp.run_on_model(x_q)
        row = {"config": cfg_name, "shape": {"seq": seq, "d_model": d, "heads": h, "d_ff": ff,
                                             "causal": causal},
               "cycles": comp.cycles, "model_cycles": res.cycles,
               "listed_cycles": comp.variant["listed_cycles"],
               "justified_rounds": comp.variant["justified"],
               "bit_exact_model": bool((y == block.forward_int(x_q)).all()),
               "lower_bound": comp.lower_bound, "bound_terms": comp.bounds.as_dict(),
               "ratio": round(comp.ratio, 3), "mxm_utilization": round(comp.mxm_utilisation, 4),
               "mxm_utilization_all_mvms": round(comp.mxm_utilisation_all, 4),
               "mvm_useful": comp.useful_mvms, "mvm_overhead": comp.overhead_mvms,
               "compile_seconds": round(compile_s, 2)}
        if rtl and on_rtl:
            r = run_block(cfg, BlockSpec(seq, d, h, ff, 0, causal),
                          out_dir=build_root() / "bench" / f"{cfg_name}-{seq}-{d}-{h}-{ff}",
                          plot=False, log=lambda *a: None)
            row.update(rtl_bit_exact=r["bit_exact"], rtl_cycles=r["cycles_measured"],
                       rtl_sim_cycles_per_second=r["sim_cycles_per_second"],
                       verilog_seconds=r["verilog_seconds"],
                       verilator_build_seconds=r["verilator_build_seconds"])
        rows.append(row)
        rtl_txt = (f", RTL {row['rtl_cycles']} cycles bit-exact={row['rtl_bit_exact']} at "
                   f"{row['rtl_sim_cycles_per_second']:.0f} cycles/s"
                   if "rtl_cycles" in row else "")
        log(f"{cfg_name:7s} seq {seq:3d} d_model {d:4d} heads {h} d_ff {ff:4d} "
            f"{'causal' if causal else 'full  '}: {comp.cycles:6d} cycles (model "
            f"{res.cycles}), bound {comp.lower_bound:6d}, ratio {comp.ratio:.2f}, MXM util "
            f"{100 * comp.mxm_utilisation:5.1f} % useful ({100 * comp.mxm_utilisation_all:.1f} % "
            f"with overhead MVMs {comp.overhead_mvms}){rtl_txt}")
    if only is not None:
        _write_rows("bench-blocks.json", rows, log)
        return rows
    _write_rows("bench.json", rows, log)
    run_decode_bench(rtl, log)
    run_layer_bench(log)
    return rows


def run_decode_bench(rtl: bool = True, log=print, only: str | None = None) -> list[dict]:
    """The decode-step table (module docstring); ``only``: just the rows whose config
    contains it, written to ``build/bench-decode-rows.json``."""
    from compiler.decode import compile_decode
    from golden.block import make_block

    from .block import BlockSpec
    from .decode import run_decode

    log("")
    log("decode steps (one token per run, KV cache in SRAM; bounds per step)")
    rows = []
    table = [r for r in DECODE_TABLE if only is None or only in r[0]]
    if not table:
        raise Refused(f"no decode row's config contains {only!r}; configs are "
                      f"{', '.join(sorted({r[0] for r in DECODE_TABLE}))}")
    for cfg_name, ctx, d, h, ff, on_rtl in table:
        block = make_block(0, ctx, d, h, ff, causal=True)
        x_q = block.quantize_input(block.example_input(0))
        t0 = time.monotonic()
        comp = compile_decode(block, cfg_name)
        compile_s = time.monotonic() - t0
        y, runs, _ = comp.run_on_model(x_q)
        bnd = comp.decode_bounds()
        row = {"config": cfg_name, "shape": {"max_context": ctx, "d_model": d, "heads": h,
                                             "d_ff": ff},
               "cycles_per_step": comp.cycles,
               "model_cycles_every_step": sorted({r.cycles for r in runs}),
               "bit_exact_model": bool((y == block.forward_int(x_q)).all()),
               "bounds": bnd["bounds"], "binding": bnd["binding"], "ratio": bnd["ratio"],
               "weight_bytes": bnd["weight_bytes"], "kv_cache_bytes": bnd["kv_bytes"],
               "variant": comp.variant, "compile_seconds": round(compile_s, 2)}
        if rtl and on_rtl:
            r = run_decode(get_config(cfg_name), BlockSpec(ctx, d, h, ff, 0, True), ctx,
                           out_dir=build_root() / "bench" / f"decode-{cfg_name}-{ctx}-{d}-{h}-{ff}",
                           plot=False, log=lambda *a: None)
            row.update(rtl_bit_exact=r["bit_exact"], rtl_cycles_every_step=sorted(
                set(r["cycles_chip_steps"]) | set(r["cycles_clock_steps"])),
                rtl_problems=r["problems"])
        rows.append(row)
        b = bnd["bounds"]
        rtl_txt = (f", RTL {row['rtl_cycles_every_step']} bit-exact={row['rtl_bit_exact']}"
                   if "rtl_bit_exact" in row else "")
        log(f"{cfg_name:7s} context {ctx:3d} d_model {d:4d} heads {h} d_ff {ff:4d}: "
            f"{comp.cycles:5d} cycles/step (model {row['model_cycles_every_step']}), bounds "
            f"weights {b['weight_stream']}, MAC {b['mac']}, VXM {b['vxm']}, path {b['path']}: "
            f"ratio {bnd['ratio']:.2f} to {bnd['binding']}{rtl_txt}")
    _write_rows("bench-decode.json" if only is None else "bench-decode-rows.json", rows, log)
    return rows


LAYER_BENCH = (("tiny", "medium"), ("tiny", "medium:vxm_groups=4"),
               ("tiny", "medium:vxm_groups=4,mem_read_write=1"), ("smollm2-135m", "layer"),
               ("smollm2-135m", "layer:mem_read_write=1"), ("smollm2-135m", "layer:vxm_groups=4"),
               ("smollm2-135m", "layer:vxm_groups=4,mem_read_write=1"),
               ("smollm2-135m", "layer:mxm_load_rows=4"),
               ("smollm2-135m", "layer:vxm_groups=4,mem_read_write=1,mxm_load_rows=4"))


def _write_rows(name: str, rows, log) -> None:
    out = build_root() / name
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rows, indent=1))
    log(f"written {out}")


def run_layer_bench(log=print) -> dict:
    """A llama decoder layer's decode step (`compiler.layer`, layer 0, a 16-position
    cache): the tiny random llama of `golden.tiny_llama` on `medium`, and SmolLM2-135M's
    real layer on `layer` (where the models extra is installed: `make bench` installs it);
    4 steps each on the machine model, checked against `golden.llm.layer_int`; cycles per
    step and the bounds.  Written to ``build/bench-layer.json``."""
    import tempfile
    from pathlib import Path

    import numpy as np

    from compiler.layer import compile_layer_step
    from golden.llm import layer_steps_int

    from .layer import layer_inputs, load_layer

    rows = []
    for model, config in LAYER_BENCH:
        with tempfile.TemporaryDirectory() as tmp:
            try:
                path, lc, L = load_layer(model, 0, Path(tmp))
            except FileNotFoundError as e:
                log(f"llama layer decode step ({model}): skipped, {e}")
                rows.append({"config": config, "model": model, "skipped": str(e)})
                continue
        t0 = time.monotonic()
        cl = compile_layer_step(lc, L, config, 16)
        compile_s = time.monotonic() - t0
        x, es = layer_inputs(lc.d_model, 4, 0)
        outs, runs, _ = cl.run_on_model(x, es)
        exact = all(np.array_equal(y, gy) and e == ge for (y, e), (gy, ge) in
                    zip(outs, layer_steps_int(lc, L, x, es), strict=True))
        b = cl.bounds()
        row = {"config": config, "model": ("tiny random llama (golden.tiny_llama)"
                                           if model == "tiny" else path.name) + ", layer 0",
               "shape": {"d_model": lc.d_model, "heads": lc.n_heads,
                         "kv_heads": lc.n_kv_heads, "head_dim": lc.head_dim, "d_ff": lc.d_ff,
                         "context": 16},
               "cycles_per_step": cl.cycles, "model_cycles_every_step": sorted(
                   {r.cycles for r in runs}), "bit_exact_model_4_steps": exact, **b,
               "compile_seconds": round(compile_s, 2)}
        rows.append(row)
        log("")
        log(f"llama layer decode step ({row['model']}, {config}, context 16): {cl.cycles} "
            f"cycles/step (model {row['model_cycles_every_step']}, bit-exact {exact}); "
            f"bounds {b['bounds']}: {b['binding']} binds, ratio {b['ratio']}; dependency "
            f"path {b['dependency_path']}")
    _write_rows("bench-layer.json", rows, log)
    return rows
