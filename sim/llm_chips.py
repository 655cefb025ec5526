"""`make llm-chips`: SmolLM2-135M decoding on K chips too small to hold it alone, on the
machine model of the system: ``python -m sim llm-chips``.

For each K, the chip is `full` with ``1/K`` of its MEM slices (``ceil(44 / K)`` per
hemisphere: together about the one chip's SRAM) and two C2C links per end; the model is
split into K pipeline stages balanced by weight bytes (`compiler.pipeline`: the layers'
runs, the LM head on the last chip), the residual row passed over the links; and, where
K divides the KV heads (SmolLM2: K = 3), tensor-parallel (`compiler.tp_layer`: every
layer split by KV head and hidden feature, the LM head by vocabulary rows, every chip
running every layer).  K = 1 is the one full chip of `make llm`.  Per K: every
generated token equals `golden.llm.LlamaModel.generate_ids`, every chip's cycles in
every step equal its prediction, and the report projects tokens/s at 900 MHz.  One
token is in flight (a single sequence): a pipeline step is the stages one after another
plus the hops, so pipelined chips make a model fit rather than run faster (beside it the
report projects the rate with a sequence per stage in flight, not built: one token per
slowest stage span); tensor-parallel chips share every layer's work and run one sequence
faster.  Written to ``build/llm/chips.json`` and ``build/llm/tokens_vs_chips.png``.
"""

from __future__ import annotations

import gc
import json
import math
import time
from pathlib import Path

from .llm import CLOCK_HZ, DEFAULT_PROMPT, context_for


def chip_config(k: int):
    from arch.config import get_config

    full = get_config("full")
    if k == 1:
        return full
    return full.replace(name=f"full/{k}", c2c_links=max(full.c2c_links, 2),
                        mem_slices_per_hemisphere=math.ceil(full.mem_slices_per_hemisphere / k))


def tp_config(k: int):
    """The chip of the tensor-parallel rows: `chip_config` with 32k words per MEM, SXM and
    C2C queue (`full`'s 16k hold a one-chip step; every chip of a tensor-parallel step
    runs all 30 layers' replicated work -- norms, residual adds, exponent agreement -- on
    1/K of the MEM slices, and its busiest MEM queue needs ~21k words at K = 3)."""
    cfg = chip_config(k)
    return cfg.replace(name=f"{cfg.name}-i32k", imem_depth=max(cfg.imem_depth, 32768))


def run_llm_chips(model: str = "smollm2-135m", ks=(1, 2, 3, 4), prompt: str = DEFAULT_PROMPT,
                  tokens: int = 4, out_dir: Path | None = None, log=print) -> dict:
    from .model import load_model

    out_dir = Path(out_dir) if out_dir is not None else Path("build") / "llm"
    out_dir.mkdir(parents=True, exist_ok=True)
    path, lm = load_model(model, out_dir)
    ids = lm.tokenize(prompt) if isinstance(prompt, str) else [int(t) for t in prompt]
    context = context_for(len(ids) + tokens - 1)
    want = lm.generate_ids(ids, tokens)
    rows, problems = [], []
    kv = lm.config.n_kv_heads
    for k in ks:
        modes = ["one chip"] if k == 1 else ["pipeline"] + (["tensor"] if kv % k == 0 else [])
        for mode in modes:
            cfg = tp_config(k) if mode == "tensor" else chip_config(k)
            log(f"{k} chip(s) of {cfg.name} ({cfg.sram_bytes / 2**20:.0f} MiB SRAM each), "
                f"{mode}, context {context}")
            row = _run_mode(lm, cfg, k, mode, ids, tokens, context, want, problems, log)
            rows.append(row)
            gc.collect()  # a whole model's bundles take gigabytes: free before the next
    report = {"model": str(path), "prompt_ids": ids, "tokens": want, "context": context,
              "rows": rows, "problems": problems}
    (out_dir / "chips.json").write_text(json.dumps(report, indent=1))
    _plot(rows, out_dir / "tokens_vs_chips.png")
    report["json"] = str(out_dir / "chips.json")
    return report


def _run_mode(lm, cfg, k: int, mode: str, ids, tokens: int, context: int, want,
              problems: list, log) -> dict:
    """One row of the report: ``k`` chips of ``cfg`` running ``mode`` ("one chip",
    "pipeline" or "tensor" parallel)."""
    from compiler.model import compile_model_step
    from compiler.pipeline import compile_pipeline
    from compiler.tp_layer import compile_tp_model, generate_tp

    n = lm.config.n_layers
    t0 = time.monotonic()
    if mode == "one chip":
        one = compile_model_step(lm, cfg, context, orders=("priority",))
        compile_s = time.monotonic() - t0
        out, cyc = one.generate(ids, tokens)
        per_chip, predicted, layers = [[c] for c in cyc], [one.cycles], [n]
    elif mode == "pipeline":
        pm = compile_pipeline(lm, cfg, context, k, log=log)
        compile_s = time.monotonic() - t0
        out, per_chip = pm.generate(ids, tokens)
        predicted, layers = [s.cycles for s in pm.stages], [b - a for a, b in pm.split]
    else:  # every layer and the head split over the k chips
        steps = compile_tp_model(lm, cfg, context, k)
        compile_s = time.monotonic() - t0
        out, per_chip = generate_tp(steps, ids, tokens)
        predicted, layers = [s.cycles for s in steps], [f"{n} (1/{k})"] * k
    run_s = time.monotonic() - t0 - compile_s
    step = max(predicted)
    ok_tokens = out == want
    ok_cycles = all(c == predicted for c in per_chip)
    if not ok_tokens:
        problems.append(f"{k} chips ({mode}): tokens {out} != golden {want}")
    if not ok_cycles:
        problems.append(f"{k} chips ({mode}): machine model cycles {per_chip[0]} != "
                        f"predicted {predicted}")
    # pipeline: a stage's own span runs from the previous chip's end (its row's departure)
    # to its end; with a sequence per stage in flight the slowest stage sets the rate
    spans = ([b - a for a, b in zip([0, *predicted], predicted, strict=False)]
             if mode == "pipeline" else [step])
    row = {"chips": k, "mode": mode, "config": cfg.name,
           "sram_mib_per_chip": cfg.sram_bytes / 2**20, "layers_per_chip": layers,
           "cycles_per_token": step, "chip_cycles": predicted, "stage_spans": spans,
           "tokens_per_second": round(CLOCK_HZ / step, 1),
           "pipelined_tokens_per_second": round(CLOCK_HZ / max(spans), 1),
           "tokens_equal_golden": ok_tokens, "cycles_equal_prediction": ok_cycles,
           "compile_seconds": round(compile_s, 1), "run_seconds": round(run_s, 1)}
    log(f"  {step} cycles per token ({row['tokens_per_second']} tokens/s at 900 MHz); "
        f"chips end in {predicted}; tokens == golden: {ok_tokens}; cycles == prediction "
        f"in every step: {ok_cycles}")
    return row


def _plot(rows, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.2, 3.8))
    pipe = [r for r in rows if r["mode"] != "tensor"]
    tens = [r for r in rows if r["mode"] in ("tensor", "one chip")]
    ks = sorted({r["chips"] for r in rows})
    ax.plot([r["chips"] for r in pipe], [r["tokens_per_second"] for r in pipe], "o-",
            label="pipeline, one sequence")
    ax.plot([r["chips"] for r in pipe], [r["pipelined_tokens_per_second"] for r in pipe],
            ":", label="pipeline, a sequence per stage in flight (projection)")
    if len(tens) > 1:
        ax.plot([r["chips"] for r in tens], [r["tokens_per_second"] for r in tens], "s-",
                label="tensor parallel (every layer split), one sequence")
    ax.set_xlabel("chips (each 1/K of full's SRAM)")
    ax.set_ylabel("tokens/s at 900 MHz")
    ax.set_xticks(ks)
    ax.set_title("SmolLM2-135M over K chips (machine model)", fontsize=10)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


__all__ = ["chip_config", "run_llm_chips", "tp_config"]
