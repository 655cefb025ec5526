"""A whole llama decoding token by token (`compiler.model`) on the machine model and the
Verilated chip: `make sim-model`.

The reference is `golden.llm.LlamaModel.generate_ids` (the int8 golden: prompt prefilled
in one batch, then one token at a time).  The machine model generates by feeding its own
argmax back; the chip runs one program run per step with the host writing the embedding
row of the golden token sequence (prompt, then the golden continuation), and each step's
token read from SRAM must equal the golden one -- so a wrong token on the chip fails at
the step it appears.  Every step's cycles: predicted == machine model == chip ``CYCLES``
== testbench clock.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np


def load_model(model: str, out_dir: Path, seed: int = 2):
    """``(gguf path, LlamaModel)``: ``"tiny"`` (the random 2-layer llama of
    `golden.tiny_llama` with its own output matrix, written to ``out_dir``) or a llama
    GGUF / model name."""
    from golden.llm import LlamaModel, model_path

    if model == "tiny":
        from golden.tiny_llama import write_tiny_gguf

        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / "tiny.gguf"
        write_tiny_gguf(path, seed, untied=True)
    else:
        path = model_path(model)
    return path, LlamaModel(path)


def run_model(cfg, model: str = "tiny", prompt: list[int] | None = None, tokens: int = 8,
              context: int = 16, seed: int = 2, out_dir: Path | None = None,
              plot: bool = True, log=print) -> dict:
    from compiler.model import compile_model_step

    from .block import run_on_chip, write_report
    from .build import check_simulable
    from .layer import bound_fields, step_problems
    from .reports import run_dir_unless_refused

    t0 = time.monotonic()
    check_simulable(cfg)
    with run_dir_unless_refused(
            out_dir, f"model-{cfg.name}-{model if model == 'tiny' else 'gguf'}") as out_dir:
        path, lm = load_model(model, out_dir, seed)
        if prompt is None:
            rng = np.random.default_rng([seed, 51])
            prompt = [int(t) for t in rng.integers(3, lm.config.vocab, 4)]
        if not isinstance(tokens, int) or tokens < 1:
            raise ValueError(f"tokens={tokens!r} must be an int >= 1")
        if len(prompt) + tokens - 1 > context:
            raise ValueError(f"a prompt of {len(prompt)} tokens and {tokens} new ones need "
                             f"{len(prompt) + tokens - 1} positions; context={context}")
        cm = compile_model_step(lm, cfg, context)
    bnd = cm.bounds()
    log(f"compiled a decode step of {path.name} ({lm.config.n_layers} layers) for "
        f"{cfg.name} (context {context}): {cm.cycles} cycles per token; bounds "
        f"{bnd['bounds']}")
    want = lm.generate_ids(prompt, tokens)
    got_model, cyc_model = cm.generate(prompt, tokens)
    problems = []
    if got_model != want:
        problems.append(f"machine model tokens {got_model} != golden {want}")
    if any(c != cm.cycles for c in cyc_model):
        problems.append(f"machine model cycles {sorted(set(cyc_model))} != {cm.cycles}")
    feed = list(prompt) + want[:-1]
    steps = [cm.token_writes(tok, p) for p, tok in enumerate(feed)]
    vecs, run, _ = run_on_chip(cfg, out_dir, f"model-{cfg.name}", cm.program, cm.init,
                               list(cm.low.token[(0,)]), 4 * cm.cycles + 10_000,
                               steps=steps, log=log)
    s = run.summary
    got_chip = [cm.read_token(lambda sl, a, p=p: vecs[f"{p}/{sl}/{a}"])
                for p in range(len(prompt) - 1, len(feed))]
    if got_chip != want:
        problems.append(f"chip tokens {got_chip} != golden {want}")
    problems += step_problems(cm.cycles, s["cycles_chip_runs"], s["cycles_clock_runs"],
                              s["step_errors"], len(feed))
    report = {"config": cfg.name, "model": str(path), "layers": lm.config.n_layers,
              "context": context, "prompt": prompt, "tokens": want,
              "tokens_machine_model": got_model, "tokens_chip": got_chip,
              "text": lm.detokenize(want), "cycles_per_token": cm.cycles,
              "cycles_model_steps": cyc_model, "cycles_chip_steps": s["cycles_chip_runs"],
              "cycles_clock_steps": s["cycles_clock_runs"], **bound_fields(bnd),
              "problems": problems, "log": str(run.log), "out_dir": str(out_dir),
              "wall_seconds": round(time.monotonic() - t0, 1)}
    return write_report(report, cm, out_dir, plot)


def print_report(r: dict, log=print) -> None:
    log("")
    log("== a whole llama decoding on the Verilated TSP (token in, next token out) ==")
    log(f"config            {r['config']}; model {r['model']} ({r['layers']} layers); "
        f"context {r['context']}")
    log(f"prompt            {r['prompt']}")
    ok = r["tokens"] == r["tokens_chip"] == r["tokens_machine_model"]
    log(f"tokens            {r['tokens_chip']} on the chip "
        f"{'==' if ok else '!='} machine model == golden.llm generate")
    same = len({r["cycles_per_token"], *r["cycles_chip_steps"], *r["cycles_clock_steps"],
                *r["cycles_model_steps"]}) == 1
    log(f"cycles per token  predicted {r['cycles_per_token']} "
        f"{'==' if same else '!='} machine model, chip CYCLES, testbench clock at every "
        f"step ({len(r['cycles_chip_steps'])} steps: the prompt one token per step)")
    b = r["bounds"]
    log(f"bounds            weight stream {b['weight_stream']}, MVM {b['mvm']}, VXM "
        f"{b['vxm']}: {r['binding_bound']} binds, cycles / bound = {r['ratio_to_bound']}")
    if r.get("schedule_png"):
        log(f"schedule          {r['schedule_png']}")
    log(f"report            {r['report_json']}")


__all__ = ["load_model", "print_report", "run_model"]
