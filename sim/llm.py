"""`make llm`: a whole llama generating text on the cycle-accurate machine model of a
chip, every step's cycles exactly predicted: ``python -m sim llm``.

The default is SmolLM2-135M on `full` (20 superlanes, 220 MiB of SRAM: every weight, the
LM head and a KV cache per layer stay on the chip).  One program (`compiler.model`) is
compiled for a fixed maximum context ``C`` (the smallest power of two >= prompt + new
tokens, at least 16): attention runs over all ``C`` cache rows with a position mask, so
every step takes the same, predicted number of cycles; a longer context is another
program (the sweep below measures what a context costs).  The prompt is prefilled by the
same program one token per step, so the time to first token is ``len(prompt)`` steps.

Checked: the generated tokens equal `golden.llm.LlamaModel.generate_ids` (the int8
golden model, which prefills the prompt in one batch: an independent path), and the
machine model's cycle count of every step equals the compiler's prediction.

Written to ``build/llm/`` (or ``--out``): ``report.json``, ``schedule.png`` (one decode
step) and ``cycles_vs_context.png`` (cycles per token against the compiled context).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

#: the reference chip's clock (tsp-reference.md): the projected figures use it
CLOCK_HZ = 900e6
DEFAULT_PROMPT = "The capital of France is"


def context_for(n_positions: int) -> int:
    """The compiled maximum context for ``n_positions`` positions: a power of two >= 16."""
    c = 16
    while c < n_positions:
        c *= 2
    return c


def _compile(lm, cfg, context: int, log):
    from compiler.model import compile_model_step

    t = time.monotonic()
    cm = compile_model_step(lm, cfg, context, orders=("priority",))
    log(f"  compiled for context {context}: {cm.cycles} cycles per token "
        f"({time.monotonic() - t:.0f} s)")
    return cm


def bounds_row(cm) -> dict:
    """One compiled step's cycles and bounds (`sim.layer.bound_fields`)."""
    from .layer import bound_fields

    return {"context": cm.low.C, "cycles_per_token": cm.cycles, **bound_fields(cm.bounds())}


def _stdout(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def _generate_on_machine(cm, lm, prompt_ids, tokens: int, prompt_text: str, emit):
    """Load the machine model and generate ``tokens`` from ``prompt_ids``, the prompt and
    each token's text to ``emit`` as they come: ``(token ids, cycles of every step, load
    seconds, run seconds)``.  Run `paused` (`compiler.collector`): the compiled step (~20M
    objects at `full`) stays out of the collector's scans, which loading the machine and
    every step would otherwise repeat (SmolLM2 on `full`: load 20.8 -> 4.7 s, a step 18.6
    -> 17.6 s, measured with the heap frozen)."""
    t = time.monotonic()
    machine = cm.new_machine()
    load_s = time.monotonic() - t
    got: list[int] = []
    emit(f"\n{prompt_text}")

    def on_token(tok: int) -> None:
        before = lm.detokenize(got)
        got.append(tok)
        emit(lm.detokenize(got)[len(before):])

    t = time.monotonic()
    out, cycles = cm.generate(prompt_ids, tokens, machine=machine, on_token=on_token)
    return out, cycles, load_s, time.monotonic() - t


def run_llm(cfg, model: str = "smollm2-135m", prompt: str | list[int] = DEFAULT_PROMPT,
            tokens: int = 16, context: int | None = None, sweep=(), out_dir: Path | None = None,
            plot: bool = True, log=print, emit=None) -> dict:
    """Compile, generate ``tokens`` greedily from ``prompt`` (text, or token ids) on the
    machine model, check against the golden, and write the report.  ``sweep``: other
    maximum contexts to compile (cycles and bounds only) for the context plot.  ``emit``
    (text) receives the prompt and then each token's text as it is generated."""
    from arch.config import get_config
    from compiler.collector import paused

    from .model import load_model

    t0 = time.monotonic()
    cfg = get_config(cfg)
    if not isinstance(tokens, int) or tokens < 1:
        raise ValueError(f"tokens={tokens!r} must be an int >= 1")
    out_dir = Path(out_dir) if out_dir is not None else Path("build") / "llm"
    out_dir.mkdir(parents=True, exist_ok=True)
    path, lm = load_model(model, out_dir)
    if isinstance(prompt, str):
        if not prompt:
            raise ValueError("the prompt is empty: give some text (PROMPT=...)")
        prompt_text, prompt_ids = prompt, lm.tokenize(prompt)
    else:
        prompt_ids = [int(t) for t in prompt]
        prompt_text = lm.detokenize(prompt_ids)
    if not prompt_ids:
        raise ValueError(f"the prompt {prompt!r} has no tokens")
    need = len(prompt_ids) + tokens - 1
    if context is None:
        context = context_for(need)
    elif context < need:
        raise ValueError(f"context={context} is too short: a prompt of {len(prompt_ids)} "
                         f"tokens and {tokens} new ones need {need} positions")
    bad = [c for c in sweep if c < 1]
    if bad:
        raise ValueError(f"sweep context {bad[0]} must be >= 1")
    from compiler.layer import check_layer_shape

    check_layer_shape(cfg, lm.config.head_dim, context)
    for c in sweep:  # before the run, not after it
        check_layer_shape(cfg, lm.config.head_dim, c, "--sweep context")
    log(f"{lm.config.n_layers}-layer llama {path.name} on {cfg.name}: prompt "
        f"{len(prompt_ids)} tokens {prompt_ids}, {tokens} new, context {context}")
    t = time.monotonic()
    cm = _compile(lm, cfg, context, log)
    compile_s = time.monotonic() - t
    row = bounds_row(cm)
    log(f"  bounds {row['bounds']}: {row['binding_bound']} binds, cycles / bound "
        f"{row['ratio_to_bound']}")

    want = lm.generate_ids(prompt_ids, tokens)
    emit = emit or _stdout
    out, cycles, load_s, run_s = paused(_generate_on_machine)(cm, lm, prompt_ids, tokens,
                                                              prompt_text, emit)
    emit("\n\n")
    problems = []
    if out != want:
        first = next(i for i, (a, b) in enumerate(zip(out, want, strict=False)) if a != b)
        problems.append(f"machine model tokens differ from golden.llm generate at token "
                        f"{first}: {out} != {want}")
    if any(c != cm.cycles for c in cycles):
        problems.append(f"machine model cycles {sorted(set(cycles))} != predicted {cm.cycles}")
    rows = [row]
    for c in sorted(set(sweep) - {context}):
        rows.append(bounds_row(_compile(lm, cfg, c, log)))
    rows.sort(key=lambda r: r["context"])

    steps = len(cycles)
    report = {
        "model": str(path), "config": cfg.name, "layers": lm.config.n_layers,
        "prompt": prompt_text, "prompt_ids": prompt_ids,
        "text": lm.detokenize(out), "tokens": out, "tokens_golden": want,
        "context": context, "clock_hz": CLOCK_HZ,
        "cycles_per_token": cm.cycles,
        "tokens_per_second": round(CLOCK_HZ / cm.cycles, 1),
        "prefill_cycles": len(prompt_ids) * cm.cycles,
        "time_to_first_token_seconds": len(prompt_ids) * cm.cycles / CLOCK_HZ,
        "prefill": "the decode program, one prompt token per step",
        "cycles_steps": cycles,
        **{k: v for k, v in row.items() if k not in ("context", "cycles_per_token")},
        "sram_bytes_peak": cm.low.mem.peak * cfg.vector_length,
        "sram_bytes": cfg.sram_bytes,
        "imem_words": {k: q.nwords for k, q in cm.emitted.queues.items()},
        "imem_bytes": cfg.imem_bytes,
        "context_sweep": rows,
        "wall": {"compile_seconds": round(compile_s, 1), "load_seconds": round(load_s, 1),
                 "run_seconds": round(run_s, 1), "steps": steps,
                 "seconds_per_step": round(run_s / steps, 2),
                 "total_seconds": round(time.monotonic() - t0, 1)},
        "problems": problems,
    }
    report["report_json"] = str(out_dir / "report.json")
    if plot:
        from compiler.plot import plot_schedule

        report["schedule_png"] = str(plot_schedule(cm, out_dir / "schedule.png"))
        lc = cm.low.lc
        title = (f"{cfg.name}: {lc.n_layers}-layer llama, d_model {lc.d_model}, at "
                 f"{CLOCK_HZ / 1e6:.0f} MHz: {CLOCK_HZ / cm.cycles:,.0f} tokens/s (context "
                 f"{context})")
        report["context_png"] = str(plot_context(rows, context, title,
                                                 out_dir / "cycles_vs_context.png"))
    (out_dir / "report.json").write_text(json.dumps(report, indent=1))
    return report


def plot_context(rows: list[dict], run_context: int, title: str, path: Path) -> Path:
    """Cycles per token against the compiled maximum context, with each bound; the
    context that was run on the machine model marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = [r["context"] for r in rows]
    fig, ax = plt.subplots(figsize=(7, 4.2))
    ax.plot(x, [r["cycles_per_token"] for r in rows], "o-", color="black",
            label="cycles per token (compiled schedule)")
    run = [r for r in rows if r["context"] == run_context]
    ax.plot([r["context"] for r in run], [r["cycles_per_token"] for r in run], "*",
            color="tab:red", markersize=14, label="run on the machine model: every step "
            "== prediction")
    for name, style in (("weight_stream", "--"), ("vxm", ":"), ("mvm", "-.")):
        ax.plot(x, [r["bounds"][name] for r in rows], style, label=f"{name} bound")
    ax.set_xscale("log", base=2)
    ax.set_xticks(x, [str(c) for c in x])
    ax.set_ylim(bottom=0)
    ax.set_xlabel("compiled maximum context (KV cache rows every step attends over)")
    ax.set_ylabel("cycles per decode token")
    ax.set_title(title, fontsize="medium")
    ax.legend(fontsize="small")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def print_report(r: dict, log=print) -> None:
    b = r["bounds"]
    log("")
    log(f"== {r['layers']}-layer llama generating on the machine model of {r['config']} ==")
    log(f"model             {r['model']}")
    log(f"prompt            {r['prompt']!r} ({len(r['prompt_ids'])} tokens)")
    ok = r["tokens"] == r["tokens_golden"]
    log(f"text              {r['text']!r}")
    log(f"tokens            {r['tokens']} {'==' if ok else '!='} golden.llm int8 generate")
    same = set(r["cycles_steps"]) == {r["cycles_per_token"]}
    log(f"cycles per token  {r['cycles_per_token']} predicted "
        f"{'==' if same else '!='} machine model at every one of {len(r['cycles_steps'])} "
        f"steps (context {r['context']})")
    log(f"tokens/s          {r['tokens_per_second']} at {r['clock_hz'] / 1e6:.0f} MHz, one chip")
    log(f"first token       {r['time_to_first_token_seconds'] * 1e3:.3f} ms "
        f"({r['prefill_cycles']} cycles: {r['prefill']})")
    log(f"bounds            weight stream {b['weight_stream']}, MVM {b['mvm']}, VXM "
        f"{b['vxm']}: {r['binding_bound']} binds; cycles / bound = {r['ratio_to_bound']}")
    log("context sweep     " + ", ".join(f"{x['context']}: {x['cycles_per_token']}"
                                         for x in r["context_sweep"]))
    w = r["wall"]
    log(f"wall              compile {w['compile_seconds']} s, load {w['load_seconds']} s, "
        f"{w['seconds_per_step']} s per step on the machine model")
    for k in ("schedule_png", "context_png", "report_json"):
        if r.get(k):
            log(f"{k.split('_')[0]:<17} {r[k]}")


__all__ = ["CLOCK_HZ", "context_for", "plot_context", "print_report", "run_llm"]
